"""The U-Net noise predictor ``eps = UNet(x, t, y=None)`` (Ho et al. 2020, with the
scale-shift conditioning of Nichol & Dhariwal 2021).

Shapes for the defaults (MNIST, 28×28, base 32, mults (1, 2, 2))::

    stem       1 -> 32                         28×28
    down  L0   ResBlock 32->32                 28×28   (skip)
          L1   Down, ResBlock 32->64           14×14   (skips)
          L2   Down, ResBlock 64->64 + Attn     7×7    (skips)
    mid        ResBlock, Attn, ResBlock         7×7
    up    L2   2 × ResBlock(cat skip) + Attn, Up        7×7 -> 14×14
          L1   2 × ResBlock(cat skip), Up              14×14 -> 28×28
          L0   2 × ResBlock(cat skip)                  28×28
    out        GN, SiLU, Conv3x3 32 -> 1 (zero-initialised, so eps ≡ 0 at init)

The conditioning vector is ``emb = TimeMLP(t) + ClassEmbedding(y)``; class row
``num_classes`` is the null class (``y=None`` uses it for every sample), which is
what classifier-free guidance trains with label dropout and queries at sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import batch_times, check_int, check_positive
from ..registry import register
from .blocks import Downsample, ResBlock, SelfAttention2d, Upsample, group_norm
from .embeddings import ClassEmbedding, TimeMLP

__all__ = ["UNet"]


class _ResAttn(nn.Module):
    """A ResBlock, optionally followed by self-attention."""

    def __init__(self, in_ch, out_ch, time_dim, dropout, groups, attention, heads):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, time_dim, dropout, groups)
        self.attn = SelfAttention2d(out_ch, heads, groups) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


@register
class UNet(nn.Module):
    """Noise predictor for images ``[B, in_channels, image_size, image_size]``.

    ``channel_mults[i]·base_channels`` channels at level ``i``; the resolution halves
    between levels, so ``image_size`` must be divisible by ``2^(len(channel_mults)−1)``.
    Self-attention follows every ResBlock at the sizes in ``attention_resolutions``
    (which must be among the level sizes) and sits in the middle block always.
    The last convolution is zero-initialised, so a fresh network predicts ``eps = 0``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None,
                 base_channels: int = 32, channel_mults=(1, 2, 2), num_res_blocks: int = 1,
                 attention_resolutions=(7,), dropout: float = 0.0,
                 num_classes: int | None = None, image_size: int = 28, groups: int = 8,
                 heads: int = 4):
        super().__init__()
        check_int(in_channels, "in_channels")
        if out_channels is None:
            out_channels = in_channels
        check_int(out_channels, "out_channels")
        check_int(base_channels, "base_channels")
        check_int(num_res_blocks, "num_res_blocks")
        check_int(image_size, "image_size")
        if num_classes is not None:
            check_int(num_classes, "num_classes")
        check_positive(dropout, "dropout", allow_zero=True)
        channel_mults = tuple(channel_mults)
        if not channel_mults:
            raise ValueError("channel_mults must be a non-empty sequence of positive ints, got ()")
        for m in channel_mults:
            check_int(m, "channel_mults[i]")
        attention_resolutions = tuple(attention_resolutions)
        factor = 2 ** (len(channel_mults) - 1)
        if image_size % factor:
            raise ValueError(
                f"image_size ({image_size}) must be divisible by 2^(len(channel_mults)-1) = "
                f"{factor} for channel_mults={channel_mults}"
            )
        sizes = [image_size // 2**i for i in range(len(channel_mults))]
        unknown = [r for r in attention_resolutions if r not in sizes]
        if unknown:
            raise ValueError(
                f"attention_resolutions {attention_resolutions} must be among the feature-map "
                f"sizes {sizes} of image_size={image_size}; got {unknown}"
            )
        self._config = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mults=list(channel_mults), num_res_blocks=num_res_blocks,
            attention_resolutions=list(attention_resolutions), dropout=float(dropout),
            num_classes=num_classes, image_size=image_size, groups=groups, heads=heads,
        )
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        self.num_classes = num_classes
        time_dim = 4 * base_channels
        block = dict(time_dim=time_dim, dropout=float(dropout), groups=groups, heads=heads)

        self.time_mlp = TimeMLP(base_channels, time_dim)
        self.class_emb = ClassEmbedding(num_classes, time_dim) if num_classes is not None else None
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        skips, ch = [base_channels], base_channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mults):
            if level > 0:
                self.down.append(Downsample(ch))
                skips.append(ch)
            for _ in range(num_res_blocks):
                attn = sizes[level] in attention_resolutions
                self.down.append(_ResAttn(ch, mult * base_channels, attention=attn, **block))
                ch = mult * base_channels
                skips.append(ch)

        self.mid = nn.ModuleList([
            _ResAttn(ch, ch, attention=True, **block), _ResAttn(ch, ch, attention=False, **block)
        ])

        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mults))):
            out = channel_mults[level] * base_channels
            for _ in range(num_res_blocks + 1):
                attn = sizes[level] in attention_resolutions
                self.up.append(_ResAttn(ch + skips.pop(), out, attention=attn, **block))
                ch = out
            if level > 0:
                self.up.append(Upsample(ch))

        self.out_norm = group_norm(ch, groups, "base_channels")
        self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict: ``UNet(**net.config())`` rebuilds it."""
        return dict(self._config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        shape = [self.in_channels, self.image_size, self.image_size]
        if not isinstance(x, Tensor) or x.dim() != 4 or list(x.shape[1:]) != shape:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [B, {', '.join(map(str, shape))}], got {got}")
        t = batch_times(t, x, "t")
        emb = self.time_mlp(t)
        if self.class_emb is not None:
            emb = emb + self.class_emb(y, x.shape[0])
        elif y is not None:
            raise ValueError("y must be None: this UNet has no classes (num_classes=None)")

        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _ResAttn) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, _ResAttn):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.out_conv(F.silu(self.out_norm(h)))

