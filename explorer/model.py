"""The Vision Transformer of Dosovitskiy et al. (2020), Section 3.1, one module per equation.

Read top to bottom beside the paper:
    Eq. 1  z_0  = [x_class; x_p^1 E; ...; x_p^N E] + E_pos          -> PatchEmbedding + ViT.embed
    Eq. 2  z'_l = MSA(LN(z_{l-1})) + z_{l-1}                          -> MultiHeadSelfAttention, EncoderBlock
    Eq. 3  z_l  = MLP(LN(z'_l)) + z'_l                                -> MLP, EncoderBlock
    Eq. 4  y    = LN(z_L^0), then the classification head            -> ViT.pool, ViT.classify

The paper's descendants, each a field of the config (explorer.config; the defaults are the paper's ViT): more tokens
before the patches (DeiT's distillation token, k registers) and E_pos over some of them (explorer.tokens owns the
layout), layer scale (z'_l = diag(gamma_1) MSA(LN(z_{l-1})) + z_{l-1}, likewise gamma_2 in Eq. 3), a LayerNorm on z_0
before the blocks (CLIP), Eq. 4 pooling the mean of the patch tokens (with LN after the mean: fc_norm) or DeiT's two
heads averaged, QuickGELU, and no classifier (a backbone: the forward returns y).

Letters in shape comments: B batch, C channels, H x W image, P patch size, N = HW/P^2 patches,
T = prefix + N tokens (N + 1 in the paper), D hidden size, h heads, d = D/h head size, K classes.

Every forward takes an optional `record` dict. When given, each stage is written into it under a stable dotted
name (see explorer.trace). The dict belongs to the caller, so nothing is stored on the modules and one model can
serve many threads at once. Stages are stored detached, unless the record has `keep_graph = True` (a dict subclass,
explorer.explain.GraphRecord): then they stay in the autograd graph, for gradients w.r.t. attention weights.
A record gets the attention weights A (and so the explicit path) unless it says `attention_weights = False`
(explorer.trace's does: it keeps q and k and recomputes A from them with `attention_weights` when asked).
A record with a `wants(name) -> bool` method (explorer.trace's names filter) is given only the stages it wants: the
others are never detached or copied, and a stage computed only to be recorded (the patches x_p^i, A, the
probabilities) is not computed at all; without the method it is given every stage.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig

Record = dict | None


def _wants(record: Record, name: str) -> bool:
    """Is stage `name` to be given to this record? Every stage, unless the record has a names filter (`wants`)."""
    if record is None:
        return False
    wants = getattr(record, "wants", None)
    return wants is None or bool(wants(name))


def _keep(record: Record, name: str, tensor: torch.Tensor) -> None:
    if _wants(record, name):
        record[name] = tensor if getattr(record, "keep_graph", False) else tensor.detach()


def _records_attention(record: Record, name: str) -> bool:
    """Does this record want the attention weights A of `name` (blocks.l.attn)? Then attention takes the explicit path,
    whatever the switch."""
    return _wants(record, f"{name}.weights") and getattr(record, "attention_weights", True)


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A = softmax(q k^T / sqrt(d)) per head (Appendix A): q (..., h, Tq, d), k (..., h, T, d) -> (..., h, Tq, T).

    The one place this is computed: the explicit path below and explorer.trace's on-demand A both call it.
    """
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (..., h, Tq, d) @ (..., h, d, T) -> (..., h, Tq, T)
    return scores.softmax(dim=-1)  # each row sums to 1


class PatchEmbedding(nn.Module):
    """Eq. 1, x_p^i E: split the image into N patches of P x P x C and project each linearly to D.

    A Conv2d with kernel = stride = P is exactly the matrix E applied to every flattened patch.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(
            config.channels, config.hidden_dim, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        if _wants(record, "embed.patches"):  # computed only to be recorded
            B, C, H, W = x.shape
            P = self.patch_size
            patches = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)
            _keep(record, "embed.patches", patches.reshape(B, -1, P, P, C))  # (B, N, P, P, C)
        feature_maps = self.projection(x)  # (B, C, H, W) -> (B, D, H/P, W/P)
        _keep(record, "embed.feature_maps", feature_maps)
        patch_embeddings = feature_maps.flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) -> (B, N, D)
        _keep(record, "embed.patch_embeddings", patch_embeddings)
        return patch_embeddings


class MultiHeadSelfAttention(nn.Module):
    """MSA of Eq. 2 (Appendix A): h heads of softmax(q k^T / sqrt(d)) v, concatenated and projected back to D."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_dim, 3 * config.hidden_dim)  # U_qkv, rows [W_q; W_k; W_v]
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        self.projection = nn.Linear(config.hidden_dim, config.hidden_dim)  # U_msa
        self.dropout = nn.Dropout(config.dropout)
        # The one switch for the fused kernel. A record that wants A (see _records_attention) takes the explicit path.
        self.fused = True

    def forward(self, x: torch.Tensor, record: Record = None, name: str = "") -> torch.Tensor:
        return self.combine_heads(self.head_outputs(x, record, name))  # (B, T, D) -> (B, h, T, d) -> (B, T, D)

    def head_outputs(self, x: torch.Tensor, record: Record = None, name: str = "") -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v of each head, before concatenation: (B, T, D) -> (B, h, T, d)."""
        B, T, D = x.shape
        qkv = self.qkv(x)  # (B, T, D) -> (B, T, 3D)
        q, k, v = qkv.reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, h, T, d)
        _keep(record, f"{name}.q", q)
        _keep(record, f"{name}.k", k)
        recorded = _records_attention(record, name)
        if self.fused and not recorded:
            p = self.attention_dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, T, d)
        else:
            weights = attention_weights(q, k)  # A: (B, h, T, T)
            if recorded:
                _keep(record, f"{name}.weights", weights)
            out = self.attention_dropout(weights) @ v  # (B, h, T, T) @ (B, h, T, d) -> (B, h, T, d)
        return out

    def combine_heads(self, heads: torch.Tensor) -> torch.Tensor:
        """Concatenate the h heads and project with U_msa: (B, h, T, d) -> (B, T, D)."""
        B, h, T, d = heads.shape
        out = heads.transpose(1, 2).reshape(B, T, h * d)  # concatenate heads: (B, h, T, d) -> (B, T, D)
        return self.dropout(self.projection(out))


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's approximation of GELU, which its image towers were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    """The MLP of Eq. 3: two dense layers with a GELU (or CLIP's QuickGELU) between them."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_dim, config.mlp_dim)
        self.activation = QuickGELU() if config.activation == "quick_gelu" else nn.GELU()
        self.fc2 = nn.Linear(config.mlp_dim, config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.activation(self.fc1(x)))  # (B, T, D) -> (B, T, MLP)
        return self.dropout(self.fc2(x))  # (B, T, MLP) -> (B, T, D)


class EncoderBlock(nn.Module):
    """One Transformer encoder layer l: Eq. 2 then Eq. 3, both pre-norm with a residual connection (each branch
    scaled by diag(gamma) with layer scale)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm_1 = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        self.msa = MultiHeadSelfAttention(config)
        self.norm_2 = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        if config.layer_scale:  # Touvron et al. 2021 (CaiT; DeiT III, DINOv2): one learned scale per dimension
            self.gamma_1 = nn.Parameter(torch.ones(config.hidden_dim))  # (D,)
            self.gamma_2 = nn.Parameter(torch.ones(config.hidden_dim))  # (D,)
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, z: torch.Tensor, record: Record = None, name: str = "") -> torch.Tensor:
        # Eq. 2: z'_l = MSA(LN(z_{l-1})) + z_{l-1}
        normed = self.norm_1(z)
        _keep(record, f"{name}.ln_1", normed)
        attention_output = self.msa(normed, record, f"{name}.attn")
        if self.gamma_1 is not None:
            attention_output = self.gamma_1 * attention_output  # diag(gamma_1) MSA(...): (B, T, D)
        _keep(record, f"{name}.attn.output", attention_output)
        z_mid = attention_output + z  # (B, T, D)
        _keep(record, f"{name}.z_mid", z_mid)
        # Eq. 3: z_l = MLP(LN(z'_l)) + z'_l
        normed = self.norm_2(z_mid)
        _keep(record, f"{name}.ln_2", normed)
        mlp_output = self.mlp(normed)
        if self.gamma_2 is not None:
            mlp_output = self.gamma_2 * mlp_output  # diag(gamma_2) MLP(...): (B, T, D)
        _keep(record, f"{name}.mlp.output", mlp_output)
        z = mlp_output + z_mid  # (B, T, D)
        _keep(record, f"{name}.z", z)
        return z


class ViT(nn.Module):
    """Vision Transformer: Eq. 1 embeddings, L encoder blocks (Eq. 2, 3), Eq. 4 head."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.layout = config.layout  # which tokens precede the patches (explorer.tokens)
        D, layout = config.hidden_dim, self.layout
        self.patch_embedding = PatchEmbedding(config)  # E
        # Built on the meta device (to take a file's weights, explorer.weights / .families), nothing is initialised:
        # there is nothing to fill, and normal_ there imports torch._dynamo (seconds, at the app's first load).
        on_meta = torch.get_default_device().type == "meta"
        # x_class = z_0^0, learnable; DeiT's x_dist; k registers: the prefix tokens, in the layout's order
        self.class_token = nn.Parameter(torch.zeros(1, 1, D)) if config.class_token else None
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, D)) if config.distillation_token else None
        self.register_tokens = nn.Parameter(torch.zeros(1, config.register_tokens, D)) if config.register_tokens else None
        position_embedding = torch.empty(1, len(layout.position_tokens), D)  # E_pos: (1, T, D) in the paper
        self.position_embedding = nn.Parameter(position_embedding if on_meta else position_embedding.normal_(std=0.02))
        self.dropout = nn.Dropout(config.dropout)
        self.norm_pre = nn.LayerNorm(D, eps=config.layer_norm_eps) if config.pre_norm else None  # CLIP's ln_pre
        self.blocks = nn.ModuleList([EncoderBlock(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)  # the LN of Eq. 4 (after the mean, with fc_norm)
        self.pre_logits = self.head = self.head_distillation = None
        if config.representation_size is not None:  # pre-training head: one hidden layer with tanh
            self.pre_logits = nn.Sequential(nn.Linear(D, config.representation_size), nn.Tanh())
        if config.has_classifier:
            self.head = nn.Linear(config.representation_size or D, config.num_classes)
        if config.has_classifier and config.pooling == "class_and_distillation":
            self.head_distillation = nn.Linear(D, config.num_classes)  # DeiT's second head, on z_L^DIST
        if not on_meta:
            self._init_weights()

    def _init_weights(self) -> None:
        # Like torchvision's VisionTransformer where the layers match: the patch projection LeCun-normal (truncated,
        # std sqrt(1 / fan_in)), zero bias; the MLP Xavier-uniform with N(0, 1e-6) biases; a zero head. torchvision
        # leaves attention to nn.MultiheadAttention (Xavier-uniform qkv, zero biases, PyTorch's default Linear init for
        # the output projection); here qkv and the output projection are initialised like the MLP instead.
        fan_in = self.patch_embedding.projection.in_channels * self.config.patch_size ** 2
        nn.init.trunc_normal_(self.patch_embedding.projection.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.patch_embedding.projection.bias)
        for block in self.blocks:
            for linear in (block.msa.qkv, block.msa.projection, block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
        for head in (self.head, self.head_distillation):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @property
    def fused_attention(self) -> bool:
        return all(block.msa.fused for block in self.blocks)

    @fused_attention.setter
    def fused_attention(self, value: bool) -> None:
        for block in self.blocks:
            block.msa.fused = bool(value)

    def embed(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 1: z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos (the layout's prefix tokens in front; with pre_norm,
        z_0 is LN of that, what the first block reads)."""
        B, C, H, W = x.shape
        expected = self.config.image_hw
        if (H, W) != expected or C != self.config.channels:
            raise ValueError(
                f"Wrong input shape: expected (B, {self.config.channels}, {expected[0]}, {expected[1]}) "
                f"but got {tuple(x.shape)}."
            )
        patch_embeddings = self.patch_embedding(x, record)  # (B, N, D)
        prefix = [t.expand(B, -1, -1) for t in (self.class_token, self.distillation_token, self.register_tokens)
                  if t is not None]  # (B, 1, D), (B, 1, D), (B, k, D): the layout's order
        if self.class_token is not None:
            _keep(record, "embed.class_token", self.layout.token(prefix[0], 0))  # (B, D)
        sequence = torch.cat([*prefix, patch_embeddings], dim=1)  # (B, prefix + N, D) = (B, T, D)
        _keep(record, "embed.sequence", sequence)
        position_embedding = self.position_over_sequence()  # (1, T, D)
        _keep(record, "embed.position_embedding", position_embedding.expand(B, -1, -1))  # (B, T, D)
        z0 = self.dropout(sequence + position_embedding)  # (B, T, D)
        if self.norm_pre is not None:
            _keep(record, "embed.sum", z0)
            z0 = self.norm_pre(z0)  # (B, T, D)
        _keep(record, "embed.z0", z0)
        return z0

    def position_over_sequence(self) -> torch.Tensor:
        """E_pos as added to the T tokens: (1, T, D), zero on the tokens it does not cover (registers in DINOv2)."""
        covered = self.layout.position_tokens
        if len(covered) == self.layout.T:
            return self.position_embedding  # the paper: E_pos covers every token
        full = self.position_embedding.new_zeros(1, self.layout.T, self.config.hidden_dim)  # (1, T, D)
        full[:, list(covered)] = self.position_embedding  # (1, covered, D) into its tokens' rows
        return full

    def encode(self, z: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 2 and Eq. 3 for l = 1..L. Stage names are 1-based, as in the paper: blocks.l.z is z_l."""
        for l, block in enumerate(self.blocks, start=1):
            z = block(z, record, f"blocks.{l}")
        return z  # z_L: (B, T, D)

    def pool(self, z_L: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 4 before the head: y = LN(z_L^0) (class pooling), LN(mean_i z_L^i) (fc_norm) or mean_i LN(z_L^i) over
        the patch tokens (mean pooling): (B, T, D) -> (B, D)."""
        layout = self.layout
        if _wants(record, "head.tokens"):  # computed only to be recorded: every token as Eq. 4's LN leaves it
            _keep(record, "head.tokens", z_L if self.config.fc_norm else self.norm(z_L))  # (B, T, D)
        if layout.pooled is not None:
            class_token = layout.token(z_L, layout.pooled, 1)  # z_L^0: (B, T, D) -> (B, D)
            _keep(record, "head.class_token", class_token)
            y = self.norm(class_token)  # (B, D)
        elif self.config.fc_norm:
            y = self.norm(layout.patches(z_L, 1).mean(dim=1))  # (B, N, D) -> (B, D)
        else:
            y = self.norm(layout.patches(z_L, 1)).mean(dim=1)  # (B, N, D) -> (B, D)
        _keep(record, "head.y", y)
        return y

    def classify(self, z_L: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 4: y = LN(z_L^0), then the head (DeiT: the mean of its two heads' logits). A backbone returns y."""
        y = self.pool(z_L, record)  # (B, D)
        if self.head is None:
            return y  # a backbone: the pooled features, as its source's forward returns them
        logits = self.head_of_y(y)  # (B, K)
        if self.head_distillation is not None:
            y_distillation = self.norm(self.layout.token(z_L, self.layout.distillation, 1))  # (B, T, D) -> (B, D)
            _keep(record, "head.y_distillation", y_distillation)
            logits = (logits + self.head_distillation(y_distillation)) / 2  # (B, K), as DeiT at inference
        _keep(record, "head.logits", logits)
        if _wants(record, "head.probabilities"):  # computed only to be recorded
            _keep(record, "head.probabilities", logits.softmax(-1))
        return logits

    def head_of_y(self, y: torch.Tensor) -> torch.Tensor:
        """The head on pooled features y (..., D) -> (..., K) (through pre_logits, if any); y itself for a backbone."""
        if self.pre_logits is not None:
            y = self.pre_logits(y)  # (..., D) -> (..., representation_size)
        return y if self.head is None else self.head(y)

    def head_of(self, class_tokens: torch.Tensor) -> torch.Tensor:
        """LN then head on any class-token vectors (..., D) -> (..., K): the 'logit lens' of explorer.analysis."""
        return self.head_of_y(self.norm(class_tokens))

    def forward(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, K); a backbone's pooled features (B, D)."""
        return self.classify(self.encode(self.embed(x, record), record), record)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
