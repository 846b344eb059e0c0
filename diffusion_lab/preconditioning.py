r"""The EDM design space (Karras et al. 2022): σ-parameterisation and preconditioning.

Every process of the package is x_t = m(t) x_0 + σ(t) z = s(t)(x_0 + σ̃ z) with s = m and
σ̃ = σ/m = e^{−λ} (λ = log(m/σ), the half log-SNR); :func:`sigma_tilde` gives σ̃(t).
In x̃ = x/m the sample is x_0 + σ̃ z, the "VE" form every sampler can work in.

The denoiser is D(x̃; σ) = c_skip(σ) x̃ + c_out(σ) F(c_in(σ) x̃; c_noise(σ)). With data of
variance σ_d² per dimension (``sigma_data``) and x̃ = x_0 + σ n, EDM chooses

    c_in    = 1/√(σ² + σ_d²)              (the network input has unit variance)
    c_skip  = σ_d²/(σ² + σ_d²)           (minimises the variance of the target, hence:)
    c_out   = σ σ_d/√(σ² + σ_d²)          (the effective target (x_0 − c_skip x̃)/c_out has
                                           unit variance)
    c_noise = ¼ ln σ

and trains with the loss weight λ(σ) = 1/c_out², so that λ(σ) ‖D − x_0‖² = ‖F − F_target‖²,
on σ drawn log-normally, ln σ ~ N(P_mean, P_std²) (−1.2, 1.2). ε-prediction is c_skip = 1,
c_out = −σ (D = x̃ − σ ε̂); x_0-prediction is c_skip = 0, c_out = 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import check_positive
from .sde import SDE

__all__ = ["Preconditioning", "edm_preconditioning", "eps_preconditioning",
           "x0_preconditioning", "effective_target", "edm_loss_weight", "lognormal_sigmas",
           "sigma_tilde", "P_MEAN", "P_STD"]

P_MEAN, P_STD = -1.2, 1.2  # EDM's log-normal σ distribution for training


class Preconditioning(NamedTuple):
    """c_skip, c_out, c_in, c_noise at the given σ (tensors shaped like σ)."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def _sigma(sigma) -> Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64) if not isinstance(sigma, Tensor) else sigma
    if not s.is_floating_point():
        raise TypeError(f"sigma must be a float tensor or number, got dtype {s.dtype}")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"sigma must be finite and > 0, got min {float(s.min()):.6g}")
    return s


def edm_preconditioning(sigma, sigma_data: float = 0.5) -> Preconditioning:
    r"""EDM's c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²), c_in = 1/√(σ²+σ_d²),
    c_noise = ¼ ln σ (Karras et al. 2022, Table 1)."""
    s = _sigma(sigma)
    sd = check_positive(sigma_data, "sigma_data")
    r = torch.sqrt(s**2 + sd**2)
    return Preconditioning(sd**2 / r**2, s * sd / r, 1.0 / r, 0.25 * torch.log(s))


def eps_preconditioning(sigma) -> Preconditioning:
    r"""ε-prediction in the same form: D = x̃ − σ ε̂, i.e. c_skip = 1, c_out = −σ,
    c_in = 1/√(σ² + 1) (the VP network input x = x̃/√(1 + σ²)), c_noise = σ (any monotone
    label of σ works; the package's nets take t instead)."""
    s = _sigma(sigma)
    return Preconditioning(torch.ones_like(s), -s, 1.0 / torch.sqrt(s**2 + 1.0), s)


def x0_preconditioning(sigma) -> Preconditioning:
    r"""x_0-prediction: c_skip = 0, c_out = 1 (D = F), c_in = 1/√(σ² + 1), c_noise = σ."""
    s = _sigma(sigma)
    return Preconditioning(torch.zeros_like(s), torch.ones_like(s), 1.0 / torch.sqrt(s**2 + 1.0), s)


def effective_target(x0: Tensor, x: Tensor, pre: Preconditioning) -> Tensor:
    r"""The network's regression target F_target = (x_0 − c_skip x̃)/c_out (c's broadcast over
    the trailing dimensions of a per-sample σ)."""
    shape = (-1,) + (1,) * (x.dim() - 1) if pre.c_out.dim() == 1 else ()
    c_skip = pre.c_skip.reshape(shape) if shape else pre.c_skip
    c_out = pre.c_out.reshape(shape) if shape else pre.c_out
    return (x0 - c_skip * x) / c_out


def edm_loss_weight(sigma, sigma_data: float = 0.5) -> Tensor:
    r"""λ(σ) = (σ² + σ_d²)/(σ σ_d)² = 1/c_out²: then λ(σ) ‖D − x_0‖² = ‖F − F_target‖²."""
    return 1.0 / edm_preconditioning(sigma, sigma_data).c_out ** 2


def lognormal_sigmas(n: int, generator: torch.Generator | None = None, *, p_mean: float = P_MEAN,
                     p_std: float = P_STD, dtype=torch.float64) -> Tensor:
    r"""n training noise levels with ln σ ~ N(P_mean, P_std²)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    p_std = check_positive(p_std, "p_std")
    if not math.isfinite(float(p_mean)):
        raise ValueError(f"p_mean must be finite, got {p_mean!r}")
    z = torch.randn(n, generator=generator, dtype=dtype)
    return torch.exp(p_mean + p_std * z)


def sigma_tilde(sde: SDE, t) -> Tensor:
    r"""σ̃(t) = σ(t)/m(t) = e^{−λ(t)}: the noise level of x̃ = x/m = x_0 + σ̃ z."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    return torch.exp(-sde.half_log_snr(torch.as_tensor(t, dtype=torch.float64)))
