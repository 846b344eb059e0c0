"""Checkers for lesson 11, flow matching and rectified flow (``exercises/11_*.ipynb``).

All on the straight path x_t = (1 − t) x_0 + t z (``get_sde("rectified_flow")``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..reflow import straightness
from ._common import F64, PASS, _call, _compare, _gen, _randn, _say, _uniform, _view, checker


def _cases(seed: int, n: int = 4):
    """n random (a [5, 2], b [5, 2], t [5]) with t in (0.05, 0.95)."""
    g = _gen(seed)
    return [(_randn((5, 2), g), _randn((5, 2), g), _uniform(5, 0.05, 0.95, g)) for _ in range(n)]


@checker("conditional_velocity")
def check_conditional_velocity(fn) -> bool:
    """``fn(x0, z, t) -> u_c``: d/dt [(1 − t) x_0 + t z] = z − x_0 (the flow-matching target)."""
    name = "conditional_velocity"
    for x0, z, t in _cases(110):
        tt = _view(t, x0)
        want = z - x0
        wrong = {
            "the sign of the velocity is flipped: d/dt[(1 − t) x_0 + t z] = z − x_0, not x_0 − z":
                x0 - z,
            "that is the ε-prediction target z; the velocity also moves away from x_0 (z − x_0)":
                z,
            "that is the point x_t = (1 − t) x_0 + t z on the path, not its time derivative":
                (1 - tt) * x0 + tt * z,
        }
        got = _call(name, fn, x0.clone(), z.clone(), t.clone())
        _compare(name, got, want, wrong, what="u_c", ok="", report=False)
    _say(PASS, name, "u_c = z − x_0 on 4 random batches")
    return True


@checker("velocity_to_eps")
def check_velocity_to_eps(fn) -> bool:
    """``fn(x, u, t) -> ε̂ = (m u − m' x)/W = x + (1 − t) u`` on rectified flow."""
    name = "velocity_to_eps"
    for x, u, t in _cases(111):
        tt = _view(t, x)
        want = x + (1 - tt) * u
        wrong = {
            "the (1 − t) factor is missing: ε̂ = x + (1 − t) û (from x = (1 − t) x̂_0 + t ε̂ and "
            "û = ε̂ − x̂_0)": x + u,
            "the sign of the velocity: û = ε̂ − x̂_0, so ε̂ = x + (1 − t) û, not x − (1 − t) û":
                x - (1 - tt) * u,
            "the factor is (1 − t) (the weight of x_0 in x_t), not t": x + tt * u,
            "the x term is missing: ε̂ = x + (1 − t) û": (1 - tt) * u,
        }
        got = _call(name, fn, x.clone(), u.clone(), t.clone())
        _compare(name, got, want, wrong, what="ε̂", ok="", report=False)
    _say(PASS, name, "ε̂ = x + (1 − t) û on 4 random batches")
    return True


def _field(x: Tensor, t: Tensor) -> Tensor:
    """A test velocity field that depends on x and t (so evaluation points matter)."""
    tt = _view(torch.as_tensor(t, dtype=F64).expand(x.shape[0]), x)
    return torch.sin(2 * x) + 3 * tt * x.flip(-1)


@checker("flow_euler_step")
def check_flow_euler_step(fn) -> bool:
    """``fn(x, u_model, t, dt) -> x − dt · u(x, t)``: one Euler step of dx/dt = u from t to
    t − dt (sampling runs from noise at t ≈ 1 to data at t = 0); ``t`` is a float,
    ``u_model(x, t_batch)`` takes a ``[B]`` time."""
    name = "flow_euler_step"
    g = _gen(112)
    for _ in range(4):
        x = _randn((5, 2), g)
        t = float(_uniform(1, 0.3, 0.95, g))
        dt = float(_uniform(1, 0.05, 0.25, g))
        tb = torch.full((5,), t, dtype=F64)
        want = x - dt * _field(x, tb)
        wrong = {
            "the step goes the wrong way: sampling runs backwards in time (t → t − dt), so "
            "x ← x − dt·u, not x + dt·u": x + dt * _field(x, tb),
            "the step size dt is missing: x ← x − dt·u(x, t)": x - _field(x, tb),
            "evaluate u at the start of the step, u(x, t), not at t − dt (that is not Euler)":
                x - dt * _field(x, tb - dt),
        }
        got = _call(name, fn, x.clone(), _field, t, dt)
        _compare(name, got, want, wrong, what="x after the step", ok="", report=False)
    _say(PASS, name, "x − dt·u(x, t) on 4 random steps")
    return True


def _paths(g, n_steps: int = 12) -> tuple[Tensor, Tensor]:
    """Curved test paths [K+1, 4, 2] on a non-uniform time grid from 0.9 down to 0.1."""
    u = torch.sort(torch.rand(n_steps - 1, generator=g, dtype=F64)).values
    times = torch.cat([torch.tensor([0.9], dtype=F64), 0.9 - 0.8 * u, torch.tensor([0.1], dtype=F64)])
    a, b, c = _randn((4, 2), g), _randn((4, 2), g), _randn((4, 2), g)
    s = times[:, None, None]
    return a + s * b + torch.sin(3 * s) * c, times


@checker("straightness")
def check_straightness(fn) -> bool:
    """``fn(traj [K+1, N, D], times [K+1]) -> S [N]``,
    S = ‖x_K − x_0‖² / (L Σ_k ‖x_{k+1} − x_k‖²/|t_{k+1} − t_k|), L = |t_K − t_0|."""
    name = "straightness"
    g = _gen(113)
    for _ in range(3):
        traj, times = _paths(g)
        want = straightness(traj, times)
        d = traj.diff(dim=0)
        dt = times.diff().abs()[:, None]
        chord = ((traj[-1] - traj[0]) ** 2).sum(-1)
        energy = ((d**2).sum(-1) / dt).sum(0)
        length = (times[-1] - times[0]).abs()
        wrong = {
            "the length L = |t_K − t_0| of the time interval is missing from the denominator "
            "(S must be 1 for a straight constant-speed path on any interval)": chord / energy,
            "divide each ‖Δx_k‖² by its Δt_k: Σ ‖Δx‖²/Δt approximates ∫‖ẋ‖² dt "
            "(without it the sum vanishes as the grid is refined)": chord / (length * (d**2).sum(-1).sum(0)),
            "the ratio is inverted: S = chord² / (L ∫‖ẋ‖²) ≤ 1": length * energy / chord,
            "the chord must be squared: ‖x_K − x_0‖², not ‖x_K − x_0‖": chord.sqrt() / (length * energy),
        }
        got = _call(name, fn, traj.clone(), times.clone())
        _compare(name, got, want, wrong, what="S", ok="", report=False)
    _say(PASS, name, "matches on 3 sets of curved paths with uneven time steps")
    return True
