r"""Small ODE integrators on tensors: fixed-step Euler / Heun / RK4 and adaptive
Dormand–Prince RK45 (the method of scipy's ``RK45`` and torchdiffeq's ``dopri5``).

``fn(t, y) -> dy/dt`` takes a Python float ``t`` and a tensor ``y`` (any shape;
the whole tensor is one system, so the step size is shared across a batch).
Time may run backwards (t1 < t0), as it does for sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_choice, check_positive

__all__ = ["ODEResult", "integrate_fixed", "rk45", "FIXED_METHODS"]


@dataclass
class ODEResult:
    y: Tensor
    nfe: int  # evaluations of fn
    steps: int  # accepted steps
    rejected: int = 0


def _euler(fn, t, y, h):
    return y + h * fn(t, y), 1


def _heun(fn, t, y, h):
    k1 = fn(t, y)
    k2 = fn(t + h, y + h * k1)
    return y + 0.5 * h * (k1 + k2), 2


def _rk4(fn, t, y, h):
    k1 = fn(t, y)
    k2 = fn(t + 0.5 * h, y + 0.5 * h * k1)
    k3 = fn(t + 0.5 * h, y + 0.5 * h * k2)
    k4 = fn(t + h, y + h * k3)
    return y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), 4


FIXED_METHODS = {"euler": _euler, "heun": _heun, "rk4": _rk4}


def integrate_fixed(fn, y0: Tensor, grid, method: str = "heun", callback=None) -> ODEResult:
    """Integrate along the time ``grid`` (a sequence of floats) with a fixed-step method.

    ``callback(i, t_next, y_next)`` is called after each step.
    """
    check_choice(method, "method", FIXED_METHODS)
    step = FIXED_METHODS[method]
    y, nfe = y0, 0
    grid = [float(t) for t in grid]
    for i, (t, t_next) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        y, n = step(fn, t, y, t_next - t)
        nfe += n
        if callback is not None:
            callback(i, t_next, y)
    return ODEResult(y, nfe, len(grid) - 1)


# Dormand–Prince 5(4) tableau (Dormand & Prince 1980), FSAL.
_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]
_E = [b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True)]


def rk45(fn, y0: Tensor, t0: float, t1: float, *, rtol: float = 1e-5, atol: float = 1e-5,
         first_step: float | None = None, max_steps: int = 100_000, callback=None) -> ODEResult:
    """Adaptive Dormand–Prince RK45 from ``t0`` to ``t1``.

    A step is accepted when the RMS of err / (atol + rtol·max(|y|, |y_new|)) is
    ≤ 1; the next step size is h · clip(0.9 · err^(−1/5), 0.2, 10).
    ``callback(i, t, y)`` is called after each accepted step. Raises
    ``RuntimeError`` if ``max_steps`` is exceeded (never returns a partial result).
    """
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    t0, t1 = float(t0), float(t1)
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    if span == 0.0:
        return ODEResult(y0, 0, 0)
    h = abs(first_step) if first_step is not None else 0.01 * span
    t, y = t0, y0
    k1 = fn(t, y)
    nfe, steps, rejected = 1, 0, 0
    while direction * (t1 - t) > 1e-12 * span:
        if steps + rejected >= max_steps:
            raise RuntimeError(f"rk45 exceeded max_steps={max_steps} (t={t:.6g}); loosen rtol/atol")
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            yi = y + hs * sum(a * k for a, k in zip(_A[i], ks, strict=False))
            ks.append(fn(t + _C[i] * hs, yi))
        nfe += 6
        y_new = y + hs * sum(b * k for b, k in zip(_B5, ks, strict=True) if b != 0.0)
        err = hs * sum(e * k for e, k in zip(_E, ks, strict=True) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err_norm = float(torch.sqrt(torch.mean((err / scale) ** 2)))
        if not math.isfinite(err_norm):
            raise FloatingPointError(f"rk45: non-finite error estimate at t={t:.6g}")
        if err_norm <= 1.0:
            t, y, k1 = t + hs, y_new, ks[6]  # FSAL: last stage is f(t_new, y_new)
            steps += 1
            if callback is not None:
                callback(steps - 1, t, y)
        else:
            rejected += 1
        factor = 10.0 if err_norm == 0.0 else min(10.0, max(0.2, 0.9 * err_norm ** (-0.2)))
        h = h * factor
    return ODEResult(y, nfe, steps, rejected)
