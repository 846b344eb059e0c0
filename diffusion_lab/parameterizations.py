r"""Prediction targets: one network output, four names — ε, x̂_0, score, velocity (and v).

With the forward marginal x_t = m x_0 + σ ε (m = m(t), σ = σ(t), derivatives m', σ'), a
network that predicts any one of these determines the others *at the same (x, t)*:

    x̂_0   = (x − σ ε̂) / m                       ε̂ = (x − m x̂_0) / σ
    score = −ε̂ / σ                               ε̂ = −σ · score
    u     = m' x̂_0 + σ' ε̂                        (flow-matching velocity = PF-ODE drift)
          = (m' x + W ε̂) / m,   W = m σ' − m' σ  ε̂ = (m u − m' x) / W
    v     = m ε̂ − σ x̂_0                          (Salimans & Ho's v-prediction)
          ε̂ = (σ x + m v)/(m² + σ²),  x̂_0 = (m x − σ v)/(m² + σ²)

**The velocity u.** Differentiating the path x_t = m x_0 + σ ε in t at fixed (x_0, ε) gives
the *conditional* velocity u(x_t | x_0, ε) = m' x_0 + σ' ε. Its posterior mean given x_t is
u(x, t) = E[m' x_0 + σ' ε | x_t = x] = m' x̂_0 + σ' ε̂ (x̂_0 = E[x_0|x], ε̂ = E[ε|x]), which is
exactly the probability-flow drift f x + ½ g² ε̂/σ (with f = m'/m, ½g²/σ = σ' − m'σ/m):
the ODE dx/dt = u(x, t) transports p_t along t. W = m σ' − m' σ = −m σ λ' > 0 for every
process in the package (λ = log(m/σ) decreases), so the conversion u → ε̂ is always defined;
dividing by W rather than by m keeps it finite where m → 0. For rectified flow (m = 1 − t,
σ = t): u = ε̂ − x̂_0, W = 1 and ε̂ = x + (1 − t) u.

**v-prediction.** v = m ε − σ x_0 is an invertible linear change of variables for *any*
(m, σ) (the matrix [[m, σ], [−σ, m]] has determinant m² + σ² > 0), so it is well defined for
every process; only on VP (m² + σ² = 1, m = cos φ, σ = sin φ) is it also the derivative
dx/dφ of the path in the angle φ. On rectified flow it is *not* the flow velocity u.

Every function takes ``m``, ``sigma`` (and ``dm``, ``dsigma``) as numbers or ``[B]`` tensors,
broadcast against the batch dimension of ``x``; ``sde`` forms look them up at time ``t``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import batch_times, check_finite, expand_like
from .sde import SDE

__all__ = [
    "eps_to_x0", "x0_to_eps", "eps_to_score", "score_to_eps", "eps_to_v", "v_to_eps",
    "eps_to_velocity", "velocity_to_eps", "conditional_velocity", "velocity_model_as_eps",
    "eps_model_as_velocity",
]


def _coef(c, x: Tensor, name: str) -> Tensor:
    """A scalar or ``[B]`` coefficient as a tensor broadcastable against ``x``."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    if not bool(torch.isfinite(c).all()):
        raise ValueError(f"{name} must be finite, got {c}")
    if c.dim() == 0:
        return c
    if c.dim() != 1 or c.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must be a number or a [B] = [{x.shape[0]}] tensor, "
                         f"got shape {list(c.shape)}")
    return expand_like(c, x)


def _nonzero(c: Tensor, name: str, why: str) -> Tensor:
    if bool((c == 0).any()):
        raise ValueError(f"{name} must be nonzero ({why})")
    return c


def eps_to_x0(x: Tensor, eps: Tensor, m, sigma) -> Tensor:
    """Tweedie's denoised estimate x̂_0 = (x − σ ε̂) / m (undefined where m = 0)."""
    m = _nonzero(_coef(m, x, "m"), "m", "x̂_0 = (x − σ ε̂)/m; at m = 0, x_t holds no x_0")
    return (x - _coef(sigma, x, "sigma") * eps) / m


def x0_to_eps(x: Tensor, x0: Tensor, m, sigma) -> Tensor:
    """ε̂ = (x − m x̂_0) / σ (undefined where σ = 0)."""
    sigma = _nonzero(_coef(sigma, x, "sigma"), "sigma", "ε̂ = (x − m x̂_0)/σ")
    return (x - _coef(m, x, "m") * x0) / sigma


def eps_to_score(eps: Tensor, sigma) -> Tensor:
    """score = ∇log p_t = −ε̂ / σ."""
    sigma = _nonzero(_coef(sigma, eps, "sigma"), "sigma", "score = −ε̂/σ")
    return -eps / sigma


def score_to_eps(score: Tensor, sigma) -> Tensor:
    """ε̂ = −σ · score."""
    return -_coef(sigma, score, "sigma") * score


def eps_to_v(x: Tensor, eps: Tensor, m, sigma) -> Tensor:
    """v = m ε̂ − σ x̂_0 = ((m² + σ²) ε̂ − σ x) / m (Salimans & Ho 2022, any (m, σ))."""
    return _coef(m, x, "m") * eps - _coef(sigma, x, "sigma") * eps_to_x0(x, eps, m, sigma)


def v_to_eps(x: Tensor, v: Tensor, m, sigma) -> Tensor:
    """ε̂ = (σ x + m v) / (m² + σ²), the inverse of :func:`eps_to_v`."""
    m, s = _coef(m, x, "m"), _coef(sigma, x, "sigma")
    return (s * x + m * v) / (m**2 + s**2)


def _at(sde: SDE, x: Tensor, t) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """m, σ, m', σ' at t (a number or ``[B]``), computed in float64 and broadcast to ``x``."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    tb = batch_times(t, x).to(torch.float64)
    m, s = sde.marginal(tb)
    dm, ds = sde.marginal_rates(tb)
    return tuple(expand_like(c.to(device=x.device, dtype=x.dtype), x) for c in (m, s, dm, ds))


def eps_to_velocity(x: Tensor, eps: Tensor, sde: SDE, t) -> Tensor:
    """u = m' x̂_0 + σ' ε̂ = (m' x + W ε̂)/m, W = m σ' − m' σ: the PF-ODE drift f x + ½ g² ε̂/σ."""
    check_finite(x, "x")
    m, s, dm, ds = _at(sde, x, t)
    m = _nonzero(m, "m", "u = (m' x + W ε̂)/m needs m > 0; use t < 1")
    return (dm * x + (m * ds - dm * s) * eps) / m


def velocity_to_eps(x: Tensor, u: Tensor, sde: SDE, t) -> Tensor:
    """ε̂ = (m u − m' x) / W, W = m σ' − m' σ > 0 (rectified flow: ε̂ = x + (1 − t) u)."""
    check_finite(x, "x")
    m, s, dm, ds = _at(sde, x, t)
    w = m * ds - dm * s
    if bool((w <= 0).any()):
        raise ValueError("W = m σ' − m' σ must be > 0 (λ = log(m/σ) decreasing); "
                         f"{sde!r} gives W <= 0 at some t")
    return (m * u - dm * x) / w


def conditional_velocity(x0: Tensor, noise: Tensor, sde: SDE, t) -> Tensor:
    """The flow-matching target u(x_t | x_0, z) = d/dt (m x_0 + σ z) = m' x_0 + σ' z
    (rectified flow: z − x_0)."""
    check_finite(x0, "x0")
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {list(x0.shape)}, got {list(noise.shape)}")
    _, _, dm, ds = _at(sde, x0, t)
    return dm * x0 + ds * noise


class velocity_model_as_eps:  # noqa: N801 - used like a function that returns a model
    """Wrap a velocity network ``u_model(x, t[, y])`` as ``eps_model(x, t, y=None)``:
    ε̂(x, t) = (m û − m' x)/W (rectified flow: x + (1 − t) û), so every sampler runs on it."""

    def __init__(self, u_model, sde: SDE):
        if not callable(u_model):
            raise TypeError(f"u_model must be callable, got {type(u_model).__name__}")
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
        self.u_model, self.sde = u_model, sde

    def __call__(self, x: Tensor, t, y=None) -> Tensor:
        u = self.u_model(x, t) if y is None else self.u_model(x, t, y)
        return velocity_to_eps(x, u, self.sde, t)


class eps_model_as_velocity:  # noqa: N801
    """The inverse wrapper: ``u(x, t, y=None) = eps_to_velocity(x, ε̂(x, t, y), sde, t)``."""

    def __init__(self, eps_model, sde: SDE):
        if not callable(eps_model):
            raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
        self.eps_model, self.sde = eps_model, sde

    def __call__(self, x: Tensor, t, y=None) -> Tensor:
        eps = self.eps_model(x, t) if y is None else self.eps_model(x, t, y)
        return eps_to_velocity(x, eps, self.sde, t)
