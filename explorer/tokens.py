"""The token layout of a ViT's sequence, in one place: which tokens precede the N patches, and the one accessor that
cuts a sequence into them.

    z_0 = [x_class; x_dist; x_reg^1; ...; x_reg^k; x_p^1 E; ...; x_p^N E] + E_pos (over the tokens it covers)

T = prefix + N tokens: the prefix first, in the order timm and transformers put them (CLS, DIST, REG1..REGk; each
only where the model has it), then the patches row-major. The paper's ViT has the class token alone (T = N + 1).
Every other module reaches the patch tokens, the prefix tokens, the pooled token and the rows of E_pos through a
TokenLayout; none slices the token axis by hand (tests/test_tokens.py scans explorer/ for such slices).

Pure Python indexing, no torch: a TokenLayout cuts torch tensors and numpy arrays alike, so explorer.render uses it.
"""
from __future__ import annotations

from dataclasses import dataclass

CLASS, DISTILLATION = "CLS", "DIST"
MEAN_OF_PATCHES = "mean of the patches"  # the query a mean-pooled output attends with: the mean of the patch rows
POOLINGS = ("class", "mean", "class_and_distillation")  # Eq. 4 reads z_L^0; the patches' mean; DeiT's two heads
POSITION_COVERS = ("all", "class_and_patches", "patches")  # which tokens E_pos is added to


def register_label(j: int) -> str:
    """"REG1".."REGk" for register j = 1..k."""
    return f"REG{j}"


@dataclass(frozen=True)
class TokenLayout:
    """The tokens of one model's sequence. `num_patches` may be None where only the prefix matters."""

    prefix_labels: tuple[str, ...] = (CLASS,)  # the tokens before the patches, in sequence order
    num_patches: int | None = None  # N
    pooling: str = "class"  # one of POOLINGS
    position_covers: str = "all"  # one of POSITION_COVERS

    @classmethod
    def of(cls, config) -> "TokenLayout":
        """The layout a ViTConfig (explorer.config) describes."""
        labels = ((CLASS,) if config.class_token else ()) + ((DISTILLATION,) if config.distillation_token else ())
        labels += tuple(register_label(j) for j in range(1, config.register_tokens + 1))
        return cls(labels, config.num_patches, config.pooling, config.position_covers)

    @property
    def num_prefix(self) -> int:
        """How many tokens precede the patches (1 in the paper)."""
        return len(self.prefix_labels)

    @property
    def num_registers(self) -> int:
        return sum(label.startswith("REG") for label in self.prefix_labels)

    @property
    def T(self) -> int:
        """T = prefix + N tokens."""
        return self.num_prefix + self._N()

    def _N(self) -> int:
        if self.num_patches is None:
            raise ValueError("This token layout was made without N, the number of patches.")
        return self.num_patches

    def labels(self) -> list[str]:
        """A label for each of the T tokens: "CLS", "DIST", "REG1".., then "patch 0".."patch N-1"."""
        return list(self.prefix_labels) + [f"patch {i}" for i in range(self._N())]

    def label(self, token: int) -> str:
        """The label of token `token` (0-based, in 0..T-1)."""
        if not 0 <= token < self.T:
            raise ValueError(f"Token {token} is outside 0..{self.T - 1}.")
        return self.prefix_labels[token] if token < self.num_prefix else f"patch {token - self.num_prefix}"

    def index(self, label: str) -> int | None:
        """The token index of a prefix token ("CLS", "DIST", "REG2"), or None when the model has none."""
        return self.prefix_labels.index(label) if label in self.prefix_labels else None

    def patch_token(self, i: int) -> int:
        """The token index of patch i (0-based): i + prefix."""
        return i + self.num_prefix

    def patch_tokens(self) -> range:
        """The token indices of the N patches."""
        return range(self.num_prefix, self.T)

    @property
    def pooled(self) -> int | None:
        """The index of the token Eq. 4 reads (the class token, DeiT's first head too), or None for mean pooling."""
        return None if self.pooling == "mean" else self.index(CLASS)

    @property
    def query_token(self) -> int | None:
        """The token whose row the class-token views read (rollout, relevance, the logit lens): the pooled token, else
        the class token; None when the model has neither."""
        return self.index(CLASS) if self.pooled is None else self.pooled

    def require_query_token(self) -> int:
        """query_token, or a one-sentence ValueError for a model without a class token."""
        if self.query_token is None:
            raise ValueError("This model has no class token (it pools the mean of the patch tokens), so there is no "
                             "class token's row to read.")
        return self.query_token

    def query_labels(self) -> tuple[str, ...]:
        """What can be the attention query when no patch is picked: each prefix token, and for mean pooling the mean
        of the patches (the pooled output is the mean of the patch tokens, so it attends with their rows' mean)."""
        return self.prefix_labels + ((MEAN_OF_PATCHES,) if self.pooling == "mean" or not self.prefix_labels else ())

    @property
    def default_query_label(self) -> str:
        """The query when none is chosen: the class token, else the mean of the patches."""
        return CLASS if CLASS in self.prefix_labels else self.query_labels()[0]

    def query(self, label: str | None = None) -> int | range:
        """The query named `label` (one of query_labels(); None or one this model lacks: default_query_label): a
        token index, or the range of the patch tokens whose rows are averaged (query_row)."""
        label = label if label in self.query_labels() else self.default_query_label
        return self.patch_tokens() if label == MEAN_OF_PATCHES else self.index(label)

    def query_name(self, query: int | range) -> str:
        """A query in words: its label ("CLS", "REG2", "patch 17") or "mean of the patches"."""
        return MEAN_OF_PATCHES if isinstance(query, range) else self.label(query)

    @property
    def pooled_query(self) -> int | range:
        """The query the pooled output attends with, where rollout and relevance start: the pooled token (DeiT: the
        class token, its first head's), or for mean pooling the patch tokens, whose rows are averaged."""
        return self.patch_tokens() if self.pooled is None else self.pooled

    def query_row(self, z, query: int | range, axis: int = -2):
        """Row `query` of any (..., T, ...) tensor or array on `axis`, that axis removed: token `query`'s, or for a
        range the mean of those tokens' rows (explorer.analysis: e_qᵀ M, or (1/N) Σ_i e_iᵀ M)."""
        if isinstance(query, range):
            return _along(z, slice(query.start, query.stop), axis).mean(axis % z.ndim)
        return _along(z, query, axis)

    @property
    def distillation(self) -> int | None:
        """The index of DeiT's distillation token, which its second head reads, or None."""
        return self.index(DISTILLATION)

    def patches(self, z, axis: int = -2):
        """The patch tokens of any (..., T, ...) tensor or array on `axis`: (..., N, ...)."""
        return _along(z, slice(self.num_prefix, None), axis)

    def prefix(self, z, axis: int = -2):
        """The prefix tokens of any (..., T, ...) tensor or array on `axis`: (..., prefix, ...)."""
        return _along(z, slice(0, self.num_prefix), axis)

    def token(self, z, index: int, axis: int = -2):
        """Token `index` of any (..., T, ...) tensor or array on `axis`, that axis removed: (..., ...)."""
        return _along(z, index, axis)

    @property
    def position_tokens(self) -> tuple[int, ...]:
        """The token indices E_pos is added to, in the order of its rows: all T; the class token and the patches
        (DINOv2 with registers in transformers: the registers go in after); or the patches only (timm's
        no_embed_class)."""
        patches = tuple(self.patch_tokens())
        if self.position_covers == "all":
            return tuple(range(self.num_prefix)) + patches
        if self.position_covers == "class_and_patches":
            return (self.index(CLASS),) + patches
        return patches

    @property
    def position(self) -> "TokenLayout":
        """The layout of E_pos's own rows: the prefix tokens it covers, then the N patches."""
        covered = self.position_tokens[: len(self.position_tokens) - self._N()]
        return TokenLayout(tuple(self.prefix_labels[t] for t in covered), self.num_patches, self.pooling, "all")


def _along(z, index, axis: int):
    """z[..., index, ...] with `index` on `axis` (negative counts from the end), for torch and numpy alike."""
    axis = axis % z.ndim
    return z[(slice(None),) * axis + (index,)]
