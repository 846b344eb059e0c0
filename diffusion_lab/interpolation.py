r"""Deterministic DDIM between any two noise levels, SDEdit and interpolation at a noise level.

**The DDIM step in either direction.** With x̂_0 = (x_s − σ_s ε̂(x_s, s))/m_s,

    x_t = m_t x̂_0 + σ_t ε̂(x_s, s)                                               (1)

moves x from level s to level t, downwards (t < s: the deterministic DDIM sampler, the
first-order solver of the probability-flow ODE) or upwards (t > s: DDIM *inversion*).
:func:`ddim_walk` applies (1) along any grid. Run up and back down on the same grid, the
round trip is not exact: step (1) upwards takes ε̂ at its *start* x_s, the matching step
downwards at its start x_t; the two differ by O(h) per step, O(h²) locally, so the round-trip
error is O(1/steps) (first order), and zero only where ε̂ is constant along the path.

**SDEdit** (Meng et al. 2022): noise an image to level t with the forward marginal,
x_t = m_t x_0 + σ_t z, and decode it by (1) from t down to t_end. Small t keeps the image,
t = 1 forgets it.

**Interpolation at level t** (the stochastic encoder): encode a and b with the *same* z,
mix, decode. Because both encodings share σ_t z,

    (1 − α)(m_t a + σ_t z) + α (m_t b + σ_t z) = m_t ((1 − α) a + α b) + σ_t z,   (2)

it is SDEdit of the pixel blend (1 − α) a + α b with noise z: the noise part keeps its norm
(no dip as for two independent noises), and t sets how much of the blend is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_int
from .samplers import DEFAULT_GRIDS
from .sde import SDE
from .timegrid import coefficients, time_grid

__all__ = ["ddim_walk", "ddim_decode", "noise_to_level", "sdedit", "interpolate_at_level"]


def _level(sde: SDE, t, name: str = "t") -> float:
    if isinstance(t, Tensor) and t.numel() == 1:
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"{name} must be a float noise level, got {type(t).__name__}")
    t = float(t)
    if not (sde.t_min < t <= sde.t_max):
        raise ValueError(f"{name} must lie in (t_min, t_max] = ({sde.t_min:g}, {sde.t_max:g}], "
                         f"got {t!r}")
    return t


def ddim_walk(eps_model, sde: SDE, x: Tensor, times, *, y=None, callback=None) -> Tensor:
    """Apply step (1) of the module docstring along ``times`` (a monotone sequence of floats,
    either direction; x is at ``times[0]``). ``y`` goes to ``eps_model(x, t, y)`` when given.
    ``callback(step, t, x, x0_hat)`` sees each new state."""
    check_finite(x, "x")
    ts = [float(t) for t in times]
    if len(ts) < 2:
        raise ValueError(f"times must hold at least 2 levels, got {len(ts)}")
    d = [b - a for a, b in zip(ts[:-1], ts[1:], strict=True)]
    if not (all(v > 0 for v in d) or all(v < 0 for v in d)):
        raise ValueError("times must be strictly increasing or strictly decreasing")
    for i, (s, t) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        cs, ct = coefficients(sde, s), coefficients(sde, t)
        tb = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
        eps = eps_model(x, tb) if y is None else eps_model(x, tb, y)
        x0_hat = (x - cs.sigma * eps) / cs.m
        x = ct.m * x0_hat + ct.sigma * eps
        if callback is not None:
            callback(i, t, x, x0_hat)
    return x


def ddim_decode(eps_model, sde: SDE, x_t: Tensor, t: float, steps: int, *, y=None,
                t_end=None, grid: str | None = None, callback=None) -> Tensor:
    """Deterministic DDIM from level ``t`` down to ``t_end`` in ``steps`` steps on
    :func:`~diffusion_lab.timegrid.time_grid` (``t_start=t``; ``grid=None``: DDIM's default,
    ``DEFAULT_GRIDS["ddim"]``). With t = t_max it is :func:`~diffusion_lab.samplers.ddim`."""
    t = _level(sde, t)
    kind = DEFAULT_GRIDS["ddim"] if grid is None else grid
    ts = time_grid(sde, check_int(steps, "steps"), t_end, kind, t_start=t)
    return ddim_walk(eps_model, sde, x_t, ts.tolist(), y=y, callback=callback)


def noise_to_level(sde: SDE, x0: Tensor, t: float, noise: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """The stochastic encoder x_t = m_t x_0 + σ_t z (z = ``noise``, else drawn from
    ``generator``); ``t`` a float level, the same for the whole batch."""
    t = _level(sde, t)
    check_finite(x0, "x0")
    if noise is not None and noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {list(x0.shape)}, got {list(noise.shape)}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    c = coefficients(sde, t)
    return c.m * x0 + c.sigma * noise


def sdedit(eps_model, sde: SDE, x0: Tensor, t: float, steps: int, *, noise: Tensor | None = None,
           generator: torch.Generator | None = None, y=None, t_end=None,
           grid: str | None = None, callback=None) -> Tensor:
    """SDEdit: :func:`noise_to_level` to ``t``, then :func:`ddim_decode` back in ``steps``."""
    x_t = noise_to_level(sde, x0, t, noise, generator)
    return ddim_decode(eps_model, sde, x_t, t, steps, y=y, t_end=t_end, grid=grid,
                       callback=callback)


def interpolate_at_level(eps_model, sde: SDE, a: Tensor, b: Tensor, alphas, t: float,
                         steps: int, *, noise: Tensor | None = None,
                         generator: torch.Generator | None = None, y=None, t_end=None,
                         grid: str | None = None) -> Tensor:
    """Encode ``a`` and ``b`` (each ``[1, *shape]``) with the same z to level ``t``, mix
    (1 − α) x_t^a + α x_t^b for each α in ``alphas`` (K values in [0, 1]) and decode:
    ``[K, *shape]``. By (2) this is SDEdit of each pixel blend with the same z."""
    if a.shape != b.shape or a.dim() < 1 or a.shape[0] != 1:
        raise ValueError(f"a and b must both have shape [1, ...], got {list(a.shape)} and "
                         f"{list(b.shape)}")
    al = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    if al.numel() == 0 or not bool(((al >= 0) & (al <= 1)).all()):
        raise ValueError(f"alphas must be values in [0, 1], got {alphas!r}")
    if noise is None:
        noise = torch.randn(a.shape, generator=generator, dtype=a.dtype, device=a.device)
    xa, xb = noise_to_level(sde, a, t, noise), noise_to_level(sde, b, t, noise)
    w = al.to(a.dtype).reshape(-1, *([1] * (a.dim() - 1)))
    mixed = (1 - w) * xa + w * xb
    return ddim_decode(eps_model, sde, mixed, t, steps, y=y, t_end=t_end, grid=grid)
