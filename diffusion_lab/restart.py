r"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes").

The probability-flow ODE is deterministic, so an error made early (of the discretisation or of
the network) is carried to the end; the reverse SDE contracts such errors with its noise but
needs many small steps. Restart alternates the two: integrate the ODE down to a low noise level
t_lo, then K times

    jump:  x̃ ← x̃ + √(σ̃(t_hi)² − σ̃(t_lo)²) z,   z ~ N(0, I),   x̃ = x/m, σ̃ = σ/m,
    ODE:   back from t_hi to t_lo in ``restart_steps`` steps,

and finish the ODE from t_lo to ``t_end``. The jump is the forward process's exact transition
from t_lo to t_hi (in x̃ every process is variance exploding: x̃_t = x̃_s + √(σ̃_t² − σ̃_s²) z),
so if x is distributed as p_{t_lo} before it, it is distributed as p_{t_hi} after; with exact
scores the ODE then maps p_{t_hi} back to p_{t_lo} and the loop keeps the law. Errors of the
incoming law shrink by the forward process's contraction over [t_lo, t_hi] on every loop
(the paper's Theorem 2), which is why the jump helps a network whose ODE alone is biased.

The ODE solver is DPM-Solver++(2M) (:mod:`diffusion_lab.dpm_multistep`, η = 0), one network
call per step; its history is dropped at each jump (the state is new there) and the first step
after a jump is first order. NFE = ``steps`` + K · ``restart_steps`` (+ 1 with ``denoise``).
The main grid is the method's ``grid`` with ``steps`` steps; t_lo is snapped to its nearest
interior point (``info["t_restart"]`` gives the pair used), and each restart segment is the same
kind of grid from t_hi down to t_lo.

``restart_steps=None`` (the default) gives each segment as many steps as the main grid spends
between its points nearest t_hi and t_lo (at least 2), so the segments refine with ``steps``
and the sampler converges. A fixed count does not: with exact scores (sub-VP, Gaussian data,
Karras grid, n = 10⁵) ``restart_steps=2`` leaves a covariance error of 0.067 at 25 steps and
0.10 at 100 and 400, against 0.028 / 0.002 / 0.004 with 8 segment steps; the default gives
0.033 / 0.002 / 0.004 (``info["restart_steps"]`` gives the count used: 4 / 15 / 59).
"""

from __future__ import annotations

import math

from torch import Tensor

from ._checks import check_int, check_positive
from .dpm_multistep import multistep_update
from .sampler_run import DEFAULT_GRIDS, _Run
from .timegrid import time_grid

__all__ = ["restart", "restart_jump", "DEFAULT_GRID"]

#: the grid ``grid=None`` takes: ``samplers.DEFAULT_GRIDS["restart"]`` (measured; one source of truth)
DEFAULT_GRID = DEFAULT_GRIDS["restart"]


def restart_jump(x: Tensor, m_lo: float, sig_lo: float, m_hi: float, sig_hi: float,
                 noise: Tensor) -> Tensor:
    r"""The forward transition from t_lo to t_hi > t_lo applied to x (m, σ at both times):

        x_hi = (m_hi/m_lo) x + √(σ_hi² − (m_hi/m_lo)² σ_lo²) z,

    i.e. x̃_hi = x̃_lo + √(σ̃_hi² − σ̃_lo²) z in x̃ = x/m."""
    ratio = m_hi / m_lo
    var = sig_hi**2 - ratio**2 * sig_lo**2
    if not var > 0:
        raise ValueError(f"restart_jump: the noise level must grow (σ_hi={sig_hi:.6g}, "
                         f"(m_hi/m_lo) σ_lo={ratio * sig_lo:.6g})")
    return ratio * x + math.sqrt(var) * noise


def _snap(grid: list[float], t_lo: float) -> int:
    """Index of the interior grid point nearest to t_lo (the restart starts there)."""
    if len(grid) < 3:
        raise ValueError("restart needs steps >= 2 (the restart point is an interior grid point)")
    return min(range(1, len(grid) - 1), key=lambda i: abs(grid[i] - t_lo))


def _segment_steps(grid: list[float], j: int, t_hi: float) -> int:
    """The main grid's number of steps from its point nearest t_hi down to t_lo = grid[j], >= 2."""
    i_hi = min(range(j), key=lambda i: abs(grid[i] - t_hi))
    return max(2, j - i_hi)


def restart(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
            generator=None, progress=False, denoise=False, info=None,
            t_restart=(0.1, 0.3), restarts=1, restart_steps=None) -> Tensor:
    r"""Restart sampling with DPM-Solver++(2M) segments (see the module docstring).

    ``t_restart = (t_lo, t_hi)`` are times, t_end < t_lo < t_hi ≤ t_max (t_lo snapped to the
    main grid); ``restarts`` is K ≥ 0 (K = 0 is plain DPM-Solver++(2M) on the main grid) and
    ``restart_steps`` the ODE steps of each restart segment (``None``: the main grid's own count
    over [t_lo, t_hi], at least 2; an explicit count needs ``restarts >= 1``). Randomness:
    only the jumps.
    ``progress`` draws no bar here (the segments are short).
    """
    restarts = check_int(restarts, "restarts", minimum=0)
    if restart_steps is not None:
        restart_steps = check_int(restart_steps, "restart_steps", minimum=1)
        if restarts == 0:
            raise ValueError(f"restart_steps={restart_steps} has no effect with restarts=0 (no "
                             "restart segment); pass restarts >= 1 or restart_steps=None")
    if not (isinstance(t_restart, (tuple, list)) and len(t_restart) == 2):
        raise ValueError(f"t_restart must be a pair (t_lo, t_hi), got {t_restart!r}")
    t_lo, t_hi = (check_positive(v, f"t_restart[{i}]") for i, v in enumerate(t_restart))
    run = _Run("restart", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    if not run.t_end < t_lo < t_hi <= sde.t_max:
        raise ValueError(f"t_restart must satisfy t_end < t_lo < t_hi <= t_max = {sde.t_max:g}, "
                         f"got t_end={run.t_end:g}, t_restart={tuple(t_restart)}")
    j = _snap(run.grid, t_lo)
    t_lo = run.grid[j]
    if not t_lo < t_hi:
        raise ValueError(f"t_restart: t_hi={t_hi:g} must exceed the snapped t_lo={t_lo:g} (the "
                         f"{run.grid_kind!r} grid's interior point nearest t_lo at steps={run.steps}"
                         "); use more steps or pass t_restart=(t_lo, t_hi) with a larger t_hi")
    if restart_steps is None:
        restart_steps = _segment_steps(run.grid, j, t_hi)
    loop = time_grid(sde, restart_steps, t_lo, run.grid_kind, t_start=t_hi).tolist()
    segments = [(False, run.grid[:j + 1])]
    segments += [(True, loop)] * restarts
    segments += [(False, run.grid[j:])]
    total = sum(len(ts) - 1 for _, ts in segments)
    x = _restart_loop(run, x, segments)
    run.steps = total
    return run.finish(x, t_restart=(t_lo, t_hi), restarts=restarts,
                      restart_steps=restart_steps)


def _restart_loop(run: _Run, x: Tensor, segments) -> Tensor:
    """Walk the segments (jump_first, times) with 2M steps in x̃ = x/m; return x at t_end."""
    x0s, hs, i = [], [], 0
    xt = x / run.coef(segments[0][1][0]).m
    t_prev = segments[0][1][0]
    for jump, ts in segments:
        if jump:
            lo, hi = run.coef(t_prev), run.coef(ts[0])
            x = restart_jump(lo.m * xt, lo.m, lo.sigma, hi.m, hi.sigma, run.noise())
            xt, x0s, hs = x / hi.m, [], []
        for s, t in zip(ts[:-1], ts[1:], strict=True):
            run.step = i
            cs, ct = run.coef(s), run.coef(t)
            x0s = [*x0s[-1:], run.x0(cs.m * xt, run.eps(cs.m * xt, s), s)]
            hs = [*hs[-1:], ct.lam - cs.lam]
            xt = multistep_update(xt, x0s, hs, math.exp(-ct.lam), 0.0, 2, None)
            run.emit(i, t, ct.m * xt, x0s[-1])
            i += 1
        t_prev = ts[-1]
    return run.coef(t_prev).m * xt
