r"""Rectified flow's two measurements: how straight an ODE's paths are, and one reflow step.

**Straightness** of a path x(t) on [t_end, T] (L = T − t_end):

    S = ‖x(T) − x(t_end)‖² / (L ∫ ‖ẋ‖² dt)  ∈ [0, 1]

(0 for a path that returns to its start) by Cauchy–Schwarz (‖∫ẋ dt‖² ≤ L ∫‖ẋ‖² dt), with
S = 1 exactly for a straight path walked at constant speed — the only paths that one Euler step
integrates exactly. On a recorded trajectory x_0 … x_K at times t_0 … t_K the integral is
Σ ‖x_{k+1} − x_k‖²/|t_{k+1} − t_k|
(the same inequality holds for the sums, so the discrete S is ≤ 1 too). With Δ = x(T) − x(t_end),
∫‖ẋ − Δ/L‖² dt = ∫‖ẋ‖² dt − ‖Δ‖²/L, so S = 1 − ∫‖ẋ − Δ/L‖² dt / ∫‖ẋ‖² dt: Liu et al.'s
straightness measure (the numerator, 0 for a straight path), made relative.

**Reflow** (Liu et al. 2023): push fresh noise z through a trained flow, x̂_0 = ODE(z), and
train again on the *coupled* pairs (x̂_0, z) with x_t = (1 − t) x̂_0 + t z and the target
z − x̂_0. The ODE's paths never cross, so the straight segments between their end points cross
far less than independent pairs do, and the new flow is straighter: fewer Euler steps reach the
same error. (The flow-matching floor is 0 only for a coupling whose segments never meet at the
same t — a *straight* coupling; a deterministic one, such as x̂_0 = −z, need not be.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite

__all__ = ["straightness", "reflow_pairs"]


def straightness(traj, times) -> Tensor:
    """S per sample, ``[N]``, for ``traj`` ``[K+1, N, ...]`` recorded at ``times`` ``[K+1]``."""
    traj = torch.stack(list(traj)) if isinstance(traj, (list, tuple)) else traj
    if not isinstance(traj, Tensor) or traj.dim() < 3:
        got = list(traj.shape) if isinstance(traj, Tensor) else type(traj).__name__
        raise ValueError(f"traj must be a tensor [K+1, N, ...] with K >= 1, got {got}")
    check_finite(traj, "traj")
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.shape != (traj.shape[0],) or traj.shape[0] < 2:
        raise ValueError(f"times must have one entry per recorded state ({traj.shape[0]} >= 2), "
                         f"got shape {list(times.shape)}")
    dt = times.diff().abs()
    if bool((dt == 0).any()):
        raise ValueError("times must be strictly monotone")
    flat = traj.reshape(traj.shape[0], traj.shape[1], -1).to(torch.float64)
    steps = flat.diff(dim=0)
    energy = ((steps**2).sum(-1) / dt[:, None]).sum(0)  # ≈ ∫‖ẋ‖² dt, [N]
    chord = ((flat[-1] - flat[0]) ** 2).sum(-1)
    length = (times[-1] - times[0]).abs()
    return chord / (length * energy)


@torch.no_grad()
def reflow_pairs(eps_model, sde, z: Tensor, *, steps: int = 16, solver: str = "rk4"
                 ) -> tuple[Tensor, Tensor]:
    """(x̂_0, z): where the model's PF ODE takes t_max·z from t_max to t_min (uniform grid)."""
    from .samplers import probability_flow  # samplers import nothing from here; keep it lazy

    check_finite(z, "z")
    x0 = probability_flow(eps_model, sde, sde.t_max * z, steps=steps, solver=solver,
                          grid="uniform")
    return x0, z
