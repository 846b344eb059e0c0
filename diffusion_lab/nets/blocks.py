"""U-Net building blocks: a time-conditioned residual block, spatial self-attention,
and resolution changes. Every block maps ``[B, C, H, W]`` feature maps.

ResBlock (the DDPM / improved-DDPM block, time injected by scale and shift)::

    h   = Conv3x3(SiLU(GN(x)))
    a,b = Linear(SiLU(emb)).chunk(2)                 # per-channel scale a and shift b
    h   = GN(h) · (1 + a) + b
    out = Conv3x3(Dropout(SiLU(h))) + skip(x)        # skip = 1x1 conv when channels change

SelfAttention2d (positions are tokens, no positional encoding, so it is
equivariant to any permutation of the H·W positions)::

    q, k, v = Conv1x1(GN(x)) split into `heads` heads of size d = C / heads
    out     = x + Conv1x1(softmax(q kᵀ / √d) v)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int, check_positive

__all__ = ["ResBlock", "SelfAttention2d", "Downsample", "Upsample", "group_norm"]


def group_norm(channels: int, groups: int, name: str = "channels") -> nn.GroupNorm:
    """``nn.GroupNorm(groups, channels)``, with an error naming the argument when
    ``channels`` is not a multiple of ``groups``."""
    check_int(groups, "groups")
    if channels % groups:
        raise ValueError(
            f"{name} ({channels}) must be divisible by groups ({groups}) for GroupNorm"
        )
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Residual block with time (and class) conditioning by per-channel scale and shift."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, dropout: float = 0.0,
                 groups: int = 8):
        super().__init__()
        for value, name in ((in_ch, "in_ch"), (out_ch, "out_ch"), (time_dim, "time_dim")):
            check_int(value, name)
        dropout = check_positive(dropout, "dropout", allow_zero=True)
        if dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_ch, self.out_ch, self.time_dim = in_ch, out_ch, time_dim
        self.norm1 = group_norm(in_ch, groups, "in_ch")
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch, groups, "out_ch")
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"x must have shape [B, {self.in_ch}, H, W], got {list(x.shape)}")
        if emb.shape != (x.shape[0], self.time_dim):
            raise ValueError(
                f"emb must have shape [B, time_dim] = [{x.shape[0]}, {self.time_dim}], "
                f"got {list(emb.shape)}"
            )
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the ``H·W`` positions, with a residual connection."""

    def __init__(self, ch: int, heads: int = 4, groups: int = 8):
        super().__init__()
        check_int(ch, "ch")
        check_int(heads, "heads")
        if ch % heads:
            raise ValueError(f"ch ({ch}) must be divisible by heads ({heads})")
        self.ch, self.heads = ch, heads
        self.norm = group_norm(ch, groups, "ch")
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.ch:
            raise ValueError(f"x must have shape [B, {self.ch}, H, W], got {list(x.shape)}")
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)          # each [B, heads, HW, d]
        out = F.scaled_dot_product_attention(q, k, v)          # softmax(q kᵀ/√d) v
        out = out.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve the resolution with a 3x3 convolution of stride 2 (``H -> ceil(H/2)``)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(check_int(ch, "ch"), ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(check_int(ch, "ch"), ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
