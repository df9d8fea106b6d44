"""The Vision Transformer of Dosovitskiy et al. (2020), Section 3.1, one module per equation.

Read top to bottom beside the paper:
    Eq. 1  z_0  = [x_class; x_p^1 E; ...; x_p^N E] + E_pos          -> PatchEmbedding + ViT.embed
    Eq. 2  z'_l = MSA(LN(z_{l-1})) + z_{l-1}                          -> MultiHeadSelfAttention, EncoderBlock
    Eq. 3  z_l  = MLP(LN(z'_l)) + z'_l                                -> MLP, EncoderBlock
    Eq. 4  y    = LN(z_L^0), then the classification head            -> ViT.head

Letters in shape comments: B batch, C channels, H x W image, P patch size, N = HW/P^2 patches,
T = N + 1 tokens, D hidden size, h heads, d = D/h head size, K classes.

Every forward takes an optional `record` dict. When given, each stage is written into it under a stable dotted
name (see explorer.trace). The dict belongs to the caller, so nothing is stored on the modules and one model can
serve many threads at once. Stages are stored detached, unless the record has `keep_graph = True` (a dict subclass,
explorer.explain.GraphRecord): then they stay in the autograd graph, for gradients w.r.t. attention weights.
A record gets the attention weights A (and so the explicit path) unless it says `attention_weights = False`
(explorer.trace's does: it keeps q and k and recomputes A from them with `attention_weights` when asked).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ViTConfig

Record = dict | None


def _keep(record: Record, name: str, tensor: torch.Tensor) -> None:
    if record is not None:
        record[name] = tensor if getattr(record, "keep_graph", False) else tensor.detach()


def _records_attention(record: Record) -> bool:
    """Does this record want the attention weights A? Then attention takes the explicit path, whatever the switch."""
    return record is not None and getattr(record, "attention_weights", True)


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
        if record is not None:
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
        if self.fused and not _records_attention(record):
            p = self.attention_dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, T, d)
        else:
            weights = attention_weights(q, k)  # A: (B, h, T, T)
            if _records_attention(record):
                _keep(record, f"{name}.weights", weights)
            out = self.attention_dropout(weights) @ v  # (B, h, T, T) @ (B, h, T, d) -> (B, h, T, d)
        return out

    def combine_heads(self, heads: torch.Tensor) -> torch.Tensor:
        """Concatenate the h heads and project with U_msa: (B, h, T, d) -> (B, T, D)."""
        B, h, T, d = heads.shape
        out = heads.transpose(1, 2).reshape(B, T, h * d)  # concatenate heads: (B, h, T, d) -> (B, T, D)
        return self.dropout(self.projection(out))


class MLP(nn.Module):
    """The MLP of Eq. 3: two dense layers with a GELU between them."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_dim, config.mlp_dim)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(config.mlp_dim, config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.activation(self.fc1(x)))  # (B, T, D) -> (B, T, MLP)
        return self.dropout(self.fc2(x))  # (B, T, MLP) -> (B, T, D)


class EncoderBlock(nn.Module):
    """One Transformer encoder layer l: Eq. 2 then Eq. 3, both pre-norm with a residual connection."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm_1 = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        self.msa = MultiHeadSelfAttention(config)
        self.norm_2 = nn.LayerNorm(config.hidden_dim, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, z: torch.Tensor, record: Record = None, name: str = "") -> torch.Tensor:
        # Eq. 2: z'_l = MSA(LN(z_{l-1})) + z_{l-1}
        normed = self.norm_1(z)
        _keep(record, f"{name}.ln_1", normed)
        attention_output = self.msa(normed, record, f"{name}.attn")
        _keep(record, f"{name}.attn.output", attention_output)
        z_mid = attention_output + z  # (B, T, D)
        _keep(record, f"{name}.z_mid", z_mid)
        # Eq. 3: z_l = MLP(LN(z'_l)) + z'_l
        normed = self.norm_2(z_mid)
        _keep(record, f"{name}.ln_2", normed)
        mlp_output = self.mlp(normed)
        _keep(record, f"{name}.mlp.output", mlp_output)
        z = mlp_output + z_mid  # (B, T, D)
        _keep(record, f"{name}.z", z)
        return z


class ViT(nn.Module):
    """Vision Transformer: Eq. 1 embeddings, L encoder blocks (Eq. 2, 3), Eq. 4 head."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        D = config.hidden_dim
        self.patch_embedding = PatchEmbedding(config)  # E
        # Built on the meta device (to take a file's weights, explorer.weights / .families), nothing is initialised:
        # there is nothing to fill, and normal_ there imports torch._dynamo (seconds, at the app's first load).
        on_meta = torch.get_default_device().type == "meta"
        self.class_token = nn.Parameter(torch.zeros(1, 1, D))  # x_class = z_0^0, learnable
        position_embedding = torch.empty(1, config.seq_len, D)  # E_pos
        self.position_embedding = nn.Parameter(position_embedding if on_meta else position_embedding.normal_(std=0.02))
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([EncoderBlock(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)  # the LN of Eq. 4
        if config.representation_size is None:
            self.pre_logits = None
            self.head = nn.Linear(D, config.num_classes)
        else:  # pre-training head: one hidden layer with tanh
            self.pre_logits = nn.Sequential(nn.Linear(D, config.representation_size), nn.Tanh())
            self.head = nn.Linear(config.representation_size, config.num_classes)
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
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def fused_attention(self) -> bool:
        return all(block.msa.fused for block in self.blocks)

    @fused_attention.setter
    def fused_attention(self, value: bool) -> None:
        for block in self.blocks:
            block.msa.fused = bool(value)

    def embed(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 1: z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos."""
        B, C, H, W = x.shape
        expected = self.config.image_hw
        if (H, W) != expected or C != self.config.channels:
            raise ValueError(
                f"Wrong input shape: expected (B, {self.config.channels}, {expected[0]}, {expected[1]}) "
                f"but got {tuple(x.shape)}."
            )
        patch_embeddings = self.patch_embedding(x, record)  # (B, N, D)
        class_token = self.class_token.expand(B, -1, -1)  # (1, 1, D) -> (B, 1, D)
        _keep(record, "embed.class_token", class_token[:, 0])  # (B, D)
        sequence = torch.cat([class_token, patch_embeddings], dim=1)  # (B, N + 1, D) = (B, T, D)
        _keep(record, "embed.sequence", sequence)
        _keep(record, "embed.position_embedding", self.position_embedding.expand(B, -1, -1))  # (B, T, D)
        z0 = self.dropout(sequence + self.position_embedding)  # (B, T, D)
        _keep(record, "embed.z0", z0)
        return z0

    def encode(self, z: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 2 and Eq. 3 for l = 1..L. Stage names are 1-based, as in the paper: blocks.l.z is z_l."""
        for l, block in enumerate(self.blocks, start=1):
            z = block(z, record, f"blocks.{l}")
        return z  # z_L: (B, T, D)

    def classify(self, z_L: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Eq. 4: y = LN(z_L^0), then the head."""
        class_token = z_L[:, 0]  # z_L^0: (B, T, D) -> (B, D)
        _keep(record, "head.class_token", class_token)
        y = self.norm(class_token)  # (B, D)
        _keep(record, "head.y", y)
        if self.pre_logits is not None:
            y = self.pre_logits(y)  # (B, D) -> (B, representation_size)
        logits = self.head(y)  # (B, K)
        _keep(record, "head.logits", logits)
        _keep(record, "head.probabilities", logits.softmax(-1))
        return logits

    def head_of(self, class_tokens: torch.Tensor) -> torch.Tensor:
        """LN then head on any class-token vectors (..., D) -> (..., K): the 'logit lens' of explorer.analysis."""
        y = self.norm(class_tokens)
        if self.pre_logits is not None:
            y = self.pre_logits(y)
        return self.head(y)

    def forward(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        """(B, C, H, W) -> logits (B, K)."""
        return self.classify(self.encode(self.embed(x, record), record), record)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
