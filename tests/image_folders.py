"""A tiny image-folder data set for the data and training tests: root/{train,test}/<colour>/*.jpg."""
from __future__ import annotations

import numpy as np
from PIL import Image

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def write_image_folder(root, per_class=(4, 2), size=(40, 30), noise: int = 25):
    """root/{train,test}/<colour>/*.jpg: noisy, non-square images of one colour per class, `per_class` (train, test)
    images of each; uniform noise of ±`noise` on every channel."""
    rng = np.random.default_rng(0)
    for part, n in zip(("train", "test"), per_class):
        for name, rgb in COLOURS.items():
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                array = np.clip(np.array(rgb) + rng.integers(-noise, noise + 1, (size[1], size[0], 3)), 0, 255)
                Image.fromarray(array.astype(np.uint8)).save(root / part / name / f"{i}.jpg", quality=95)
    return root
