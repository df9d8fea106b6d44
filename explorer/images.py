"""Images in: open any file a person may upload, and turn it into what a given model expects.

`open_image` accepts a path, bytes, a file object, a PIL image or an array, applies the EXIF orientation, takes the
first frame of an animation, converts every PIL mode to RGB, and refuses what is not an image or is too large, with
one sentence that says what to do (ImageError). `Preprocessing` is a model's resize / crop / normalise recipe.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .common import reason
from .deferred import deferred

torch = deferred("torch")  # imported when first used (explorer/deferred.py)

# Decoded images above this many pixels are refused (a defence against decompression bombs).
MAX_PIXELS = 64_000_000
# Files above this many bytes are refused before decoding.
MAX_FILE_BYTES = 50 * 1024 * 1024
# Longer side / shorter side above this: only a central part of the long side is kept before resizing.
MAX_ASPECT = 4.0


class ImageError(ValueError):
    """A user's file that can't be used as an image; str(error) is one sentence that says what to do."""


@dataclass
class OpenedImage:
    image: Image.Image  # RGB, upright
    notes: list[str] = field(default_factory=list)  # plain sentences about what was done to it
    original_size: tuple[int, int] = (0, 0)  # (width, height) as stored in the file
    original_mode: str = ""


def open_image(source) -> OpenedImage:
    """Open `source` (path, bytes, file object, PIL image or H x W [x C] array) as an upright RGB image."""
    notes: list[str] = []
    if isinstance(source, np.ndarray):
        source = _from_array(source)
    if isinstance(source, Image.Image):
        image, subject = source, "The image"
    else:
        image = _open_file(source)
        subject = f"The file {Path(source).name}" if isinstance(source, (str, os.PathLike)) else "The uploaded file"
    try:
        return _upright_rgb(image, notes, subject)
    finally:
        if image is not source:
            image.close()  # release the file (kept open by PIL for animations); the result is a separate image


def _upright_rgb(image: Image.Image, notes: list[str], subject: str = "The image") -> OpenedImage:
    original_size, original_mode = image.size, image.mode
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels), over the "
            f"{MAX_PIXELS / 1e6:.0f}-megapixel limit; scale it down and upload it again."
        )
    if getattr(image, "is_animated", False) and getattr(image, "n_frames", 1) > 1:
        image.seek(0)
        notes.append(f"The file is animated ({image.n_frames} frames); the first frame is used.")
    if image.format == "JPEG" and max(width, height) > 2048:
        image.draft("RGB", (1024, 1024))  # decode at a reduced scale: much faster, still far above model size
    try:
        image.load()
        transposed = ImageOps.exif_transpose(image)
        orientation = _exif_orientation(image)
        rgb = _to_rgb(transposed, notes)
        if rgb is image:
            rgb = image.copy()  # detached from the file, which open_image closes
    except ImageError:
        raise
    except Exception as error:  # decoding a user's file: PIL raises OSError, SyntaxError, struct.error, ...
        raise ImageError(f"{subject} is damaged or incomplete ({reason(error)}); upload a complete file.") from None
    if orientation not in (None, 1):
        notes.append("The photo's EXIF orientation was applied, so it is shown upright.")
    image = rgb
    if min(image.size) < 8:
        notes.append(f"The image is only {image.width}×{image.height} pixels; it is scaled up, so expect blur.")
    return OpenedImage(image, notes, original_size, original_mode)


def _open_file(source) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No file at {path}; choose an image file to upload.")
        size = path.stat().st_size
        subject = f"The file {path.name}"
        opener = lambda: Image.open(path)  # noqa: E731
        head = lambda: _read_head(path)  # noqa: E731
    else:
        data = source if isinstance(source, (bytes, bytearray)) else source.read()
        size, subject = len(data), "The uploaded file"
        opener = lambda: Image.open(io.BytesIO(data))  # noqa: E731
        head = lambda: bytes(data[:1024])  # noqa: E731
    if size == 0:
        raise ImageError(f"{subject} is empty; upload a JPEG, PNG, WebP, GIF or BMP image.")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{subject} is {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES / 2**20:.0f} MB limit; upload a smaller image."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return opener()
    except Image.DecompressionBombError:
        raise ImageError(
            f"{subject} declares far too many pixels (a decompression bomb?); the limit is "
            f"{MAX_PIXELS / 1e6:.0f} megapixels, so upload a smaller image."
        ) from None
    except UnidentifiedImageError:
        hint = " (SVG is a vector format: export it as PNG first)" if b"<svg" in head().lower() else ""
        raise ImageError(
            f"{subject} is not an image this app can read{hint}; upload a JPEG, PNG, WebP, GIF or BMP image."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{subject} could not be read as an image ({reason(error)}); upload a JPEG or PNG.") from None


def _read_head(path: Path, size: int = 1024) -> bytes:
    with path.open("rb") as file:
        return file.read(size)



def _exif_orientation(image: Image.Image):
    try:
        return image.getexif().get(0x0112)
    except Exception:
        return None


def _from_array(array: np.ndarray) -> Image.Image:
    """H x W, H x W x 1, H x W x 3 or H x W x 4 array -> PIL image (L, RGB or RGBA)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.size == 0 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(f"An array of shape {array.shape} is not an image; give H x W, H x W x 3 or H x W x 4 values.")
    return Image.fromarray(_to_uint8(array))


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] are scaled by 255; values in [0, 255] are kept; any other range is min-max scaled."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    floating = array.dtype.kind == "f"
    array = np.nan_to_num(array.astype(np.float64))
    low, high = array.min(), array.max()
    if (floating or array.dtype == bool) and low >= 0.0 and high <= 1.0:
        array = array * 255.0
    elif low < 0.0 or high > 255.0:
        array = (array - low) / max(high - low, 1e-12) * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode -> RGB. Transparency is composited on white; high bit depths are scaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and array.max() <= 65535 and array.min() >= 0) else None
        if top is None:
            array = (array - array.min()) / max(array.max() - array.min(), 1e-12) * 255.0
        else:
            array = array / top * 255.0
        notes.append(f"The image has {'16-bit' if mode.startswith('I;16') else 'high-depth'} values; they are scaled to 8 bits.")
        return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        if rgba.getchannel("A").getextrema()[0] < 255:
            notes.append("Transparent parts of the image are shown on white.")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("The CMYK image was converted to RGB.")
    if mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:  # e.g. LAB or HSV TIFFs: PIL has no conversion to RGB
        raise ImageError(f"The image uses the {mode} colour mode, which can't be shown; save it as an RGB JPEG or PNG.") from None


_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,  # the remaining PIL filters, which timm and Hugging Face configs may name
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """A model's input recipe: resize the shorter side, centre-crop, to tensor, normalise.

    Mirrors torchvision's ImageClassification transform (used by its ViT weights), which timm's eval transform also is
    (resize_size = floor(crop_size / crop_pct)). With `resize_to=(H, W)` the whole image is instead resized to exactly
    H x W, aspect ratio not kept, before the centre crop: Hugging Face's ViTImageProcessor (crop_size = H = W, so no
    crop) and timm's crop_mode="squash". For light-on-dark grayscale models (Fashion-MNIST) `invert="auto"` flips
    photos whose border is bright, so that the object is light.
    """

    resize_size: int = 256
    crop_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channels: int = 3
    invert: str = "never"  # "never" | "auto"
    resize_to: tuple[int, int] | None = None  # (H, W): resize to exactly this (no aspect kept); None: shorter side

    @classmethod
    def from_torchvision(cls, transforms) -> "Preprocessing":
        """From a torchvision ImageClassification transform (weights.transforms())."""
        return cls(
            resize_size=int(transforms.resize_size[0]),
            crop_size=int(transforms.crop_size[0]),
            interpolation=transforms.interpolation.value,
            mean=tuple(float(m) for m in transforms.mean),
            std=tuple(float(s) for s in transforms.std),
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        if self.resize_to is not None:
            out["resize_to"] = list(self.resize_to)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        data = dict(data)
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        if data.get("resize_to") is not None:
            data["resize_to"] = tuple(int(v) for v in data["resize_to"])  # JSON gives a list
        return cls(**data)

    def describe(self) -> str:
        if self.resize_to is None:
            parts = [
                f"shorter side resized to {self.resize_size} ({self.interpolation})",
                f"centre crop {self.crop_size}×{self.crop_size}",
            ]
        else:
            height, width = self.resize_to
            parts = [f"resized to {width}×{height} ({self.interpolation}), aspect ratio not kept"]
            if self.crop_size < min(height, width):
                parts.append(f"centre crop {self.crop_size}×{self.crop_size}")
        if self.channels == 1:
            parts.insert(0, "converted to grayscale")
        if self.invert == "auto":
            parts.append("inverted when the background is light (the model expects a light object on black)")
        parts.append(f"normalised per channel with mean {_fmt(self.mean)} and std {_fmt(self.std)}")
        return "; ".join(parts) + "."

    def crop(self, image: Image.Image) -> tuple[Image.Image, list[str]]:
        """What the model sees, before normalisation: a crop_size square PIL image (grayscale for C = 1)."""
        notes: list[str] = []
        image = image.convert("L") if self.channels == 1 else image.convert("RGB")
        if self.resize_to is not None:
            height, width = self.resize_to
            image = image.resize((width, height), _INTERPOLATIONS[self.interpolation])  # (W, H) -> (width, height)
            return self._centre_crop(image, notes)
        width, height = image.size
        # Keep only the central part of a very long side: the centre crop below would discard the rest anyway.
        short = min(width, height)
        keep = int(np.ceil(short * max(MAX_ASPECT, self.crop_size / self.resize_size)))
        if max(width, height) > keep:
            if width > height:
                left = (width - keep) // 2
                image = image.crop((left, 0, left + keep, height))
            else:
                top = (height - keep) // 2
                image = image.crop((0, top, width, top + keep))
            notes.append(f"The image is {width}×{height}; only its central part is used.")
        width, height = image.size
        # As torchvision's resize: the shorter side becomes resize_size, the longer is truncated to an int.
        if width <= height:
            new_size = (self.resize_size, int(self.resize_size * height / width))
        else:
            new_size = (int(self.resize_size * width / height), self.resize_size)
        image = image.resize(new_size, _INTERPOLATIONS[self.interpolation])
        return self._centre_crop(image, notes)

    def _centre_crop(self, image: Image.Image, notes: list[str]) -> tuple[Image.Image, list[str]]:
        """The central crop_size square, placed as torchvision's CenterCrop places it; then the optional inversion."""
        left = int(round((image.width - self.crop_size) / 2.0))
        top = int(round((image.height - self.crop_size) / 2.0))
        image = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        if self.invert == "auto" and _border_mean(image) > 127:
            image = ImageOps.invert(image)
            notes.append("The image has a light background, so it was inverted to light-on-dark as the model was trained.")
        return image, notes

    def normalise(self, image: Image.Image) -> torch.Tensor:
        """PIL image (already cropped) -> (1, C, H, W) float tensor."""
        array = np.asarray(image, dtype=np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]  # (H, W) -> (H, W, 1)
        x = torch.from_numpy(array).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return ((x - mean) / std).unsqueeze(0)  # (1, C, H, W)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalise(self.crop(image)[0])

    def at_size(self, side: int) -> "Preprocessing":
        """The same recipe for a side x side input (Sec. 3.2's higher resolutions): the crop is `side`, the resize
        before it grows in proportion, and an exact resize (resize_to) becomes side x side."""
        changes = dict(crop_size=side, resize_size=int(round(self.resize_size * side / self.crop_size)))
        if self.resize_to is not None:
            changes["resize_to"] = (side, side)
        return replace(self, **changes)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _border_mean(image: Image.Image) -> float:
    array = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    return float(border.mean())
