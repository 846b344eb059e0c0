r"""Linear observations as coordinates in an orthonormal basis: c = T x (T⁻¹ = Tᵀ), of which
the ``observed`` ones are known, c_O(x_0) = k (:class:`Constraint`; used by the replacement
sampler of :mod:`diffusion_lab.tasks` and the x̂_0 methods of :mod:`diffusion_lab.inpainting`).
T is orthonormal, so N(0, I) noise stays N(0, I) and a sampler can run on c unchanged:

    inpainting        T = I, O = {mask = 0}                      (mask: 1 = generate, 0 = known)
    colorization      T = Q on each pixel's RGB, Q's row 0 = w/‖w‖ (w = LUMA_WEIGHTS), O = {row 0}:
                      Y = w·x = ‖w‖ c_0 is kept, the 2 chroma coordinates are generated
    super-resolution  T = an orthonormal basis of each f×f block with row 0 = 1/f (c_0 = f·mean),
                      O = {row 0}: the average pooling A x (A⁺ = nearest upsampling, A A⁺ = I)
                      is kept, the high-pass I − A⁺A is generated
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_finite, check_int
from .data import LUMA_WEIGHTS

__all__ = [
    "Constraint", "inpainting_constraint", "colorization_constraint",
    "super_resolution_constraint", "luma_chroma_basis", "block_basis", "downsample", "upsample",
]


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class Constraint:
    """Observed coordinates in an orthonormal basis: ``encode`` = T, ``decode`` = Tᵀ,
    ``observed`` (bool, broadcastable to c = T x) and ``known`` (c-shaped, used where observed)."""

    observed: Tensor
    known: Tensor
    encode: Callable[[Tensor], Tensor] = _identity
    decode: Callable[[Tensor], Tensor] = _identity

    def impose(self, c: Tensor, m, sigma, z: Tensor) -> Tensor:
        """c with its observed coordinates replaced by the forward sample m k + σ z."""
        return torch.where(self.observed, m * self.known + sigma * z, c)

    def finish(self, c: Tensor) -> Tensor:
        """c with its observed coordinates set exactly to k."""
        return torch.where(self.observed, self.known, c)

def _image(x, name: str, channels: int | None = None) -> Tensor:
    check_finite(x, name)
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"[B, {channels}, H, W]" if channels else "[B, C, H, W]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    return x


def _check_range(x: Tensor, name: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [-1, 1] (images), got values in [{lo:.4g}, {hi:.4g}]")


def inpainting_constraint(x_known: Tensor, mask: Tensor) -> Constraint:
    """T = I, observed = {mask = 0}; ``mask`` (bool or 0/1, broadcastable to ``x_known``):
    1 = generate, 0 = known."""
    check_finite(x_known, "x_known")
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a tensor of 0/1 (1 = generate), got {type(mask).__name__}")
    try:
        mask = torch.broadcast_to(mask, x_known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {list(mask.shape)} does not broadcast to x_known's "
                         f"shape {list(x_known.shape)}") from None
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must contain only 0 (known) and 1 (generate)")
    return Constraint(observed=(mask == 0).to(x_known.device), known=x_known)


def _orthonormal_completion(v: Tensor) -> Tensor:
    """Orthonormal ``[n, n]`` (float64) whose row 0 is v/‖v‖ (QR of [v, e_1, …, e_{n−1}])."""
    n = v.numel()
    cols = torch.cat([v.reshape(n, 1), torch.eye(n, dtype=torch.float64)[:, : n - 1]], 1)
    q, _ = torch.linalg.qr(cols)
    q = q.T
    return q * torch.sign(q[0] @ v)


def luma_chroma_basis(dtype=torch.float64) -> Tensor:
    """Orthonormal Q ``[3, 3]``: row 0 = w/‖w‖ (luminance direction), rows 1-2 span its
    complement (chroma); c = Q rgb per pixel and Y = w·rgb = ‖w‖ c_0."""
    return _orthonormal_completion(torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)).to(dtype)


def block_basis(factor: int, dtype=torch.float64) -> Tensor:
    """Orthonormal H ``[f², f²]`` for a flattened f×f block: row 0 = 1/f (c_0 = f · block mean),
    the other rows span the zero-mean (high-pass) blocks."""
    f = check_int(factor, "factor", minimum=1)
    return _orthonormal_completion(torch.ones(f * f, dtype=torch.float64)).to(dtype)


def _grayscale(gray: Tensor) -> Tensor:
    """Luminance ``[B, 1, H, W]`` from a grey image or an RGB one (Y = w·rgb), range-checked."""
    _image(gray, "gray")
    if gray.shape[1] == 3:
        w = torch.tensor(LUMA_WEIGHTS, dtype=gray.dtype, device=gray.device)
        gray = torch.einsum("bchw,c->bhw", gray, w)[:, None]
    elif gray.shape[1] != 1:
        raise ValueError(f"gray must be [B, 1, H, W] (luminance) or [B, 3, H, W] (RGB to take "
                         f"the luminance of), got {list(gray.shape)}")
    _check_range(gray, "gray")
    return gray


def colorization_constraint(gray: Tensor) -> Constraint:
    """T = Q per pixel (:func:`luma_chroma_basis`), observed c_0 = Y/‖w‖: the luminance
    Y = w·x of ``gray`` (``[B, 1, H, W]``, or RGB ``[B, 3, H, W]`` to take it from) is kept."""
    y = _grayscale(gray)
    q = luma_chroma_basis(y.dtype).to(y.device)
    norm_w = float(torch.linalg.vector_norm(torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)))
    observed = torch.tensor([True, False, False], device=y.device).reshape(1, 3, 1, 1)
    known = torch.cat([y / norm_w, torch.zeros_like(y), torch.zeros_like(y)], 1)
    return Constraint(observed, known, lambda x: torch.einsum("ij,bjhw->bihw", q, x),
                      lambda c: torch.einsum("ji,bjhw->bihw", q, c))


def downsample(x: Tensor, factor: int) -> Tensor:
    """A x: ``factor`` × ``factor`` average pooling."""
    return F.avg_pool2d(x, check_int(factor, "factor", minimum=1))


def upsample(y: Tensor, factor: int) -> Tensor:
    """A⁺ y: nearest-neighbour upsampling, the pseudo-inverse of average pooling (A A⁺ = I)."""
    f = check_int(factor, "factor", minimum=1)
    return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


def super_resolution_constraint(low_res: Tensor, factor: int = 2) -> Constraint:
    """T = :func:`block_basis` on each f×f block (c ``[B, C, h, w, f²]``), observed c_0 = f·y:
    the ``factor``-times average pooling of the output is ``low_res`` ``[B, C, h, w]``."""
    _image(low_res, "low_res")
    f = check_int(factor, "factor", minimum=2)
    hb = block_basis(f, low_res.dtype).to(low_res.device)
    b, ch, h, w = low_res.shape

    def encode(x: Tensor) -> Tensor:
        blocks = x.reshape(b, ch, h, f, w, f).permute(0, 1, 2, 4, 3, 5).reshape(b, ch, h, w, f * f)
        return blocks @ hb.T

    def decode(c: Tensor) -> Tensor:
        blocks = (c @ hb).reshape(b, ch, h, w, f, f).permute(0, 1, 2, 4, 3, 5)
        return blocks.reshape(b, ch, h * f, w * f)

    observed = torch.zeros(f * f, dtype=torch.bool, device=low_res.device)
    observed[0] = True
    known = torch.zeros(b, ch, h, w, f * f, dtype=low_res.dtype, device=low_res.device)
    known[..., 0] = f * low_res
    return Constraint(observed, known, encode, decode)
