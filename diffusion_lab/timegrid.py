r"""Time grids for samplers, and the per-time coefficients every sampler is built from.

A sampler walks a grid T = t_0 > t_1 > … > t_N = t_end, T = ``sde.t_max`` (1 but for rectified
flow). Four spacings (u = i/N):

    uniform    t_i = T − u (T − t_end)
    quadratic  t_i = t_end + (T − t_end)(1 − u)²          (DDIM's "quad": dense near t_end)
    logsnr     λ(t_i) = λ(T) + u (λ(t_end) − λ(T))          (DPM-Solver's choice; λ = log(m/σ))
    karras     σ̃_i = (σ̃_max^{1/ρ} + u (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ,  ρ = 7   (EDM)
               with σ̃ = σ/m = e^{−λ}, σ̃_max = σ̃(T), σ̃_min = σ̃(t_end)

Where the SDE's coefficients have a corner (``sde.kinks()``: the clipped cosine schedule's t_c),
the grid point nearest to it is moved onto it, so that no step straddles it: RK4 on VP-cosine
then keeps its order 4 (it fell to 2.1 across the corner).

The EDM paper's grid has N points plus σ̃_N = 0; here the last point is σ̃(t_end) > 0, so the
grid reaches t_end like the others (``denoise=True`` then takes the final step to x̂_0).

At each grid time the samplers need only m, σ, λ = log(m/σ), the drift
coefficient f and the squared diffusion g² of the forward SDE
dx = f x dt + g dw; :func:`coefficients` returns them as float64 Python floats.
For every linear SDE in the package g² = −2σ²λ'(t), which is why the same
formulas serve VP, sub-VP and VE.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import check_choice, check_int
from .sde import SDE

__all__ = ["GRIDS", "Coefficients", "coefficients", "time_grid", "check_t_end"]

GRIDS = ("uniform", "quadratic", "logsnr", "karras")
KARRAS_RHO = 7.0


class Coefficients(NamedTuple):
    """m(t), σ(t), λ(t) = log(m/σ), f(t) and g(t)² at one time (float64 Python floats)."""

    m: float
    sigma: float
    lam: float
    f: float
    g2: float


def coefficients(sde: SDE, t: float) -> Coefficients:
    """Evaluate the SDE's scalar coefficients at time ``t`` in float64."""
    tt = torch.tensor(float(t), dtype=torch.float64)
    m, s = sde.marginal(tt)
    m, s = float(m), float(s)
    f = float(sde.drift_coef(tt))
    g2 = float(sde.diffusion(tt)) ** 2
    return Coefficients(m, s, math.log(m) - math.log(s), f, g2)


def check_t_end(sde: SDE, t_end) -> float:
    """Default ``t_end`` to ``sde.t_min`` and check it lies in the open interval (0, ``sde.t_max``)."""
    if t_end is None:
        t_end = sde.t_min
    if isinstance(t_end, Tensor) and t_end.numel() == 1:
        t_end = t_end.item()
    if isinstance(t_end, bool) or not isinstance(t_end, (int, float)):
        raise TypeError(f"t_end must be a float in (0, 1), got {type(t_end).__name__}")
    t_end = float(t_end)
    if not (math.isfinite(t_end) and 0.0 < t_end < sde.t_max):
        raise ValueError(f"t_end must lie in the open interval (0, {sde.t_max:g}), got {t_end!r}")
    return t_end


def time_grid(sde: SDE, steps: int, t_end: float | None = None, kind: str = "uniform") -> Tensor:
    """The decreasing float64 grid ``[steps + 1]`` from exactly ``sde.t_max`` down to exactly ``t_end``."""
    steps = check_int(steps, "steps", minimum=1)
    t_end = check_t_end(sde, t_end)
    check_choice(kind, "grid", GRIDS)
    top = float(sde.t_max)
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)  # fraction of the way
    if kind == "uniform":
        grid = top - u * (top - t_end)
    elif kind == "quadratic":
        grid = t_end + (top - t_end) * (1.0 - u) ** 2
    else:
        lam_hi, lam_lo = sde.half_log_snr(torch.tensor([top, t_end], dtype=torch.float64))
        if kind == "logsnr":
            lam = lam_hi + u * (lam_lo - lam_hi)
        else:  # karras: uniform in σ̃^{1/ρ}, σ̃ = e^{−λ}, so σ̃^{1/ρ} = e^{−λ/ρ}
            a, b = torch.exp(-lam_hi / KARRAS_RHO), torch.exp(-lam_lo / KARRAS_RHO)
            lam = -KARRAS_RHO * torch.log(a + u * (b - a))
        grid = sde.t_from_half_log_snr(lam).to(torch.float64)
    grid[0], grid[-1] = top, t_end
    for kink in sde.kinks():  # move the nearest interior point onto it: no step straddles a corner
        if steps > 1 and t_end < kink < top:
            i = 1 + int(torch.argmin((grid[1:-1] - kink).abs()))
            if grid[i + 1] < kink < grid[i - 1]:
                grid[i] = kink
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(
            f"time grid {kind!r} with steps={steps}, t_end={t_end} is not strictly decreasing; "
            "use fewer steps or a larger t_end"
        )
    return grid
