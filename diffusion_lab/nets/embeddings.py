"""Conditioning vectors: a sinusoidal embedding of continuous time, its MLP, and a
class embedding with an extra "null" row for classifier-free guidance.

Time ``t ∈ [0, 1]`` is first multiplied by ``time_scale = 1000`` so that the
frequencies of the Transformer embedding (designed for integer positions
0..1000 in DDPM) see the same range as a DDPM step index ``i = 1000 t``:

    ω_k = max_period^(−k / half),   k = 0, …, half − 1,   half = dim / 2
    emb(t) = [sin(s t ω_0), …, sin(s t ω_{half−1}), cos(s t ω_0), …, cos(s t ω_{half−1})]

with ``s = time_scale``. The highest frequency ω_0 = 1 rad per DDPM step, the
lowest 1/max_period.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import check_int, check_positive

__all__ = ["SinusoidalTimeEmbedding", "TimeMLP", "ClassEmbedding", "check_labels"]


class SinusoidalTimeEmbedding(nn.Module):
    """``t [B] -> [B, dim]``: sines and cosines of ``time_scale · t`` at geometric frequencies."""

    def __init__(self, dim: int, max_period: float = 10000.0, time_scale: float = 1000.0):
        super().__init__()
        check_int(dim, "dim", minimum=2)
        if dim % 2:
            raise ValueError(f"dim must be even (half sines, half cosines), got {dim}")
        self.dim = dim
        self.max_period = check_positive(max_period, "max_period")
        self.time_scale = check_positive(time_scale, "time_scale")

    def forward(self, t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or t.dim() != 1 or not t.is_floating_point():
            got = f"shape {list(t.shape)}, dtype {t.dtype}" if isinstance(t, Tensor) else type(t)
            raise ValueError(f"t must be a float tensor of shape [B], got {got}")
        angles = (self.time_scale * t)[:, None] * self.frequencies(t.dtype, t.device)[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    def frequencies(self, dtype=torch.float32, device=None) -> Tensor:
        """``ω_k = max_period^(−k/half)``, ``k = 0..half−1``, per unit of ``time_scale·t``."""
        half = self.dim // 2
        k = torch.arange(half, dtype=dtype, device=device)
        return torch.exp(-math.log(self.max_period) * k / half)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}, time_scale={self.time_scale:g}"


class TimeMLP(nn.Module):
    """``t [B] -> [B, out_dim]``: sinusoidal embedding, then Linear → SiLU → Linear."""

    def __init__(self, embed_dim: int, out_dim: int, max_period: float = 10000.0):
        super().__init__()
        self.embed = SinusoidalTimeEmbedding(embed_dim, max_period)
        self.net = nn.Sequential(
            nn.Linear(embed_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.net(self.embed(t))


def check_labels(y, batch: int, num_classes: int | None) -> Tensor | None:
    """Validate class labels ``y``: None, or an integer tensor ``[B]`` with values in
    ``[0, num_classes]``, where the value ``num_classes`` means "no label" (null class)."""
    if y is None:
        return None
    if num_classes is None:
        raise ValueError("y must be None: this network has no classes (num_classes=None)")
    integer = isinstance(y, Tensor) and not (y.is_floating_point() or y.is_complex())
    if not integer or y.dtype == torch.bool:
        got = y.dtype if isinstance(y, Tensor) else type(y).__name__
        raise TypeError(f"y must be an integer (long) tensor of class labels, got {got}")
    if y.shape != (batch,):
        raise ValueError(f"y must have shape [B] = [{batch}], got shape {list(y.shape)}")
    if y.numel() and (bool((y < 0).any()) or bool((y > num_classes).any())):
        raise ValueError(
            f"y must lie in [0, {num_classes}] ({num_classes} = null class), "
            f"got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


class ClassEmbedding(nn.Module):
    """``y [B] -> [B, dim]`` with ``num_classes + 1`` rows; the last row is the null class
    used for unconditional predictions in classifier-free guidance. ``y=None`` means
    "null class for every sample"."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes")
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: Tensor | None, batch: int) -> Tensor:
        y = check_labels(y, batch, self.num_classes)
        if y is None:
            device = self.table.weight.device
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        return self.table(y)
