r"""Forward SDEs dx = f(t) x dt + g(t) dw on t ∈ [0, 1] and their reverses (Song et al. 2021).

All three SDEs here have a *linear* drift f(t)·x, so the marginal given x_0 is
Gaussian, x_t = m(t) x_0 + σ(t) z, and every sampler can be written with m, σ
and the half log-SNR λ(t) = log(m/σ) alone. One identity ties them together,
and the tests check it for each SDE:

    f = m'/m,    g² = (σ²)' − 2 f σ² = −2 σ² λ'(t).

Reverse time (Anderson 1982): dx = [f x − g² ∇log p_t(x)] dt + g dw̄, and the
probability-flow ODE dx/dt = f x − ½ g² ∇log p_t(x) has the same marginals.
:meth:`SDE.reverse` returns either, given a score function.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import (
    as_time,
    batch_times,
    check_device,
    check_dtype,
    check_finite,
    check_generator,
    check_positive,
    check_shape,
    expand_like,
)
from .schedules import LinearSchedule, Schedule, get_schedule

__all__ = ["SDE", "VPSDE", "SubVPSDE", "VESDE", "RectifiedFlow", "ReverseSDE", "get_sde"]


class SDE:
    """A linear forward SDE dx = f(t) x dt + g(t) dw with Gaussian marginals.

    Subclasses define :meth:`drift_coef` (f), :meth:`diffusion` (g),
    :meth:`marginal` ((m, σ)), :meth:`prior_std` and ``t_min`` (the smallest
    time samplers and training use; the score blows up as t → 0).
    """

    T: float = 1.0
    t_min: float = 1e-3
    t_max: float = 1.0  # where sampling starts; < 1 only where m(1) = 0 (rectified flow)

    # -- coefficients -------------------------------------------------------------------
    def drift_coef(self, t) -> Tensor:  # pragma: no cover - abstract
        """f(t), the scalar drift coefficient: drift(x, t) = f(t) x."""
        raise NotImplementedError

    def diffusion(self, t) -> Tensor:  # pragma: no cover - abstract
        """g(t), the diffusion coefficient."""
        raise NotImplementedError

    def marginal(self, t) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """(m(t), σ(t)) with x_t | x_0 ~ N(m x_0, σ² I)."""
        raise NotImplementedError

    def prior_std(self) -> float:  # pragma: no cover - abstract
        """Standard deviation of the prior p_1 = N(0, std² I)."""
        raise NotImplementedError

    def config(self) -> dict:
        """Constructor arguments (for checkpoints)."""
        raise NotImplementedError

    # -- derived quantities ---------------------------------------------------------------
    def kinks(self) -> tuple[float, ...]:
        """Times in (0, 1) where the coefficients are not smooth (a clipped schedule's corner)."""
        schedule = getattr(self, "schedule", None)
        return schedule.kinks() if hasattr(schedule, "kinks") else ()

    def marginal_rates(self, t) -> tuple[Tensor, Tensor]:
        """(m'(t), σ'(t)), the time derivatives of the marginal, from f and g²:

            m' = f m,    σ' = (g² + 2 f σ²) / (2σ)

        (the identity f = m'/m, g² = (σ²)' − 2 f σ² solved for m', σ'). Subclasses whose
        f or g is singular somewhere m', σ' are not (rectified flow at t = 1) override it.
        """
        t = as_time(t)
        m, s = self.marginal(t)
        f, g2 = self.drift_coef(t), self.diffusion(t) ** 2
        return f * m, (g2 + 2.0 * f * s**2) / (2.0 * s)

    def drift(self, x: Tensor, t) -> Tensor:
        """f(x, t) = f(t) · x, shaped like ``x``."""
        check_finite(x, "x")
        t = batch_times(t, x)
        return expand_like(self.drift_coef(t), x) * x

    def log_snr(self, t) -> Tensor:
        """log SNR(t) = log(m²/σ²), the same quantity as :meth:`Schedule.log_snr` for VP."""
        return 2.0 * self.half_log_snr(t)

    def half_log_snr(self, t) -> Tensor:
        """λ(t) = log(m/σ) = ½ log SNR, the variable of DDIM, DPM-Solver and the EDM σ̃ = e^{−λ}."""
        m, s = self.marginal(t)
        return torch.log(m) - torch.log(s)

    def t_from_log_snr(self, log_snr: Tensor, *, iters: int = 100) -> Tensor:
        """Invert log SNR(t) = log(m²/σ²): the time at which the log-SNR equals ``log_snr``."""
        return self.t_from_half_log_snr(0.5 * torch.as_tensor(log_snr, dtype=torch.float64),
                                        iters=iters, _name="log_snr", _scale=2.0)

    def t_from_half_log_snr(self, lam: Tensor, *, iters: int = 100, _name: str = "lam",
                            _scale: float = 1.0) -> Tensor:
        """Invert λ(t) = log(m/σ) (strictly decreasing) by bisection on [0, t_max] in float64."""
        lam64 = torch.as_tensor(lam, dtype=torch.float64)
        if not bool(torch.isfinite(lam64).all()):
            raise ValueError(f"{_name} must be finite")
        ends = self.half_log_snr(torch.tensor([self.t_max, 0.0], dtype=torch.float64))
        lo_lam, hi_lam = float(ends[0]), float(ends[1])  # λ(t_max) < λ(0)
        if bool((lam64 < lo_lam).any()) or bool((lam64 > hi_lam).any()):
            a, b = _scale * lo_lam, _scale * hi_lam
            got_lo, got_hi = _scale * float(lam64.min()), _scale * float(lam64.max())
            raise ValueError(
                f"{_name} must lie in [{a:.6g}, {b:.6g}] (its values at t = t_max and 0) for "
                f"{self!r}, got values in [{got_lo:.6g}, {got_hi:.6g}]"
            )
        lo = torch.zeros_like(lam64)
        hi = torch.full_like(lam64, self.t_max)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = self.half_log_snr(mid) > lam64  # λ decreasing: still too early in time
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        out = 0.5 * (lo + hi)
        return out.to(lam.dtype) if isinstance(lam, Tensor) and lam.is_floating_point() else out

    def marginal_sample(self, x0: Tensor, t, generator: torch.Generator | None = None,
                        noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw x_t = m(t) x_0 + σ(t) z; returns (x_t, z)."""
        check_finite(x0, "x0")
        t = batch_times(t, x0)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {list(x0.shape)}, got {list(noise.shape)}")
        m, s = self.marginal(t)
        return expand_like(m, x0) * x0 + expand_like(s, x0) * noise, noise

    def prior_sample(self, shape, generator: torch.Generator | None = None,
                     dtype=None, device=None) -> Tensor:
        """x ~ N(0, prior_std² I), the law sampling starts from at t = ``t_max``."""
        shape, dtype = check_shape(shape), check_dtype(dtype)
        device = None if device is None else check_device(device)
        check_generator(generator, device)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return self.prior_std() * z

    def prior_logp(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std² I), summed over all but the batch dimension: ``[B]``."""
        check_finite(x, "x")
        s2 = self.prior_std() ** 2
        d = x[0].numel()
        flat = x.reshape(x.shape[0], -1)
        return -0.5 * d * math.log(2 * math.pi * s2) - 0.5 * (flat**2).sum(-1) / s2

    def reverse(self, score_fn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or, with ``probability_flow=True``, the probability-flow ODE)."""
        return ReverseSDE(self, score_fn, probability_flow)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class ReverseSDE:
    """dx = [f x − c g² s(x, t)] dt + [c = 1] g dw̄, with c = 1 (SDE) or ½ (ODE).

    ``drift`` is the coefficient of dt in *forward* time: integrating from t to
    t − Δ means x ← x − drift·Δ (+ g √Δ z for the SDE).
    """

    def __init__(self, sde: SDE, score_fn, probability_flow: bool):
        if not callable(score_fn):
            raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")
        self.sde, self.score_fn, self.probability_flow = sde, score_fn, bool(probability_flow)

    def drift(self, x: Tensor, t) -> Tensor:
        t = batch_times(t, x)
        g2 = expand_like(self.sde.diffusion(t) ** 2, x)
        c = 0.5 if self.probability_flow else 1.0
        return self.sde.drift(x, t) - c * g2 * self.score_fn(x, t)

    def diffusion(self, t) -> Tensor:
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g


class VPSDE(SDE):
    """Variance preserving: f = −½β(t), g = √β(t); m = exp(−½B(t)), σ² = 1 − m²; prior N(0, I)."""

    t_min = 1e-3

    def __init__(self, schedule: Schedule | str | None = None, **schedule_kwargs):
        if schedule is None:
            schedule = LinearSchedule(**schedule_kwargs)
        else:
            schedule = get_schedule(schedule, **schedule_kwargs)
        self.schedule = schedule

    def config(self) -> dict:
        return {"schedule": type(self.schedule).__name__, **self.schedule.config()}

    def drift_coef(self, t) -> Tensor:
        return -0.5 * self.schedule.beta(t)

    def diffusion(self, t) -> Tensor:
        return torch.sqrt(self.schedule.beta(t))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        b = self.schedule.integral(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def prior_std(self) -> float:
        return 1.0


class SubVPSDE(SDE):
    """sub-VP: f = −½β(t), g² = β(t)(1 − e^{−2B(t)}); m = e^{−½B}, σ = 1 − m² (no square root)."""

    t_min = 1e-3

    def __init__(self, schedule: Schedule | str | None = None, **schedule_kwargs):
        if schedule is None:
            schedule = LinearSchedule(**schedule_kwargs)
        else:
            schedule = get_schedule(schedule, **schedule_kwargs)
        self.schedule = schedule

    def config(self) -> dict:
        return {"schedule": type(self.schedule).__name__, **self.schedule.config()}

    def drift_coef(self, t) -> Tensor:
        return -0.5 * self.schedule.beta(t)

    def diffusion(self, t) -> Tensor:
        b = self.schedule.integral(t)
        return torch.sqrt(self.schedule.beta(t) * -torch.expm1(-2.0 * b))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        b = self.schedule.integral(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def prior_std(self) -> float:
        return 1.0


class VESDE(SDE):
    """Variance exploding: σ(t) = σ_min (σ_max/σ_min)^t, f = 0, g = σ(t) √(2 ln(σ_max/σ_min)).

    m = 1. The perturbation kernel's std is σ(t) (score SDE's convention); the
    variance the SDE itself adds from t = 0 is σ(t)² − σ_min². Prior N(0, σ_max² I).
    """

    t_min = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min = check_positive(sigma_min, "sigma_min")
        self.sigma_max = check_positive(sigma_max, "sigma_max")
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min, got {sigma_max} <= {sigma_min}")

    def config(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    def sigma(self, t) -> Tensor:
        t = as_time(t)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def drift_coef(self, t) -> Tensor:
        return torch.zeros_like(as_time(t))

    def diffusion(self, t) -> Tensor:
        return self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        s = self.sigma(t)
        return torch.ones_like(s), s

    def prior_std(self) -> float:
        return self.sigma_max


class RectifiedFlow(SDE):
    r"""The linear path of flow matching / rectified flow: x_t = (1 − t) x_0 + t z.

    m = 1 − t and σ = t, so λ = log((1 − t)/t). From f = m'/m and g² = (σ²)' − 2 f σ²:

        f(t) = −1/(1 − t),   g²(t) = 2t + 2t²/(1 − t) = 2t/(1 − t),

    and the probability-flow ODE is dx/dt = f x + ½ g² ε̂/σ = (ε̂ − x)/(1 − t) = ε̂ − x̂_0 = v(x, t),
    the flow-matching velocity. At t = 1, m = 0: x_1 = z carries no information about x_0, f and g²
    are infinite, and x̂_0 = (x − σ ε̂)/m is undefined. Sampling therefore starts at
    ``t_max = 1 − 10⁻³`` from N(0, t_max² I) — the exact law there but for the m² Cov(x_0) = 10⁻⁶ Cov(x_0)
    term — and every coefficient raises at t ≥ 1 instead of returning inf.
    """

    t_min = 1e-3
    t_max = 1.0 - 1e-3

    def config(self) -> dict:
        return {}

    @staticmethod
    def _below_one(t) -> Tensor:
        t = as_time(t)
        if bool((t >= 1.0).any()):
            raise ValueError("rectified flow: f(t) and g(t) are infinite at t = 1 (m = 0); "
                             f"use t <= t_max = {RectifiedFlow.t_max}")
        return t

    def drift_coef(self, t) -> Tensor:
        return -1.0 / (1.0 - self._below_one(t))

    def diffusion(self, t) -> Tensor:
        t = self._below_one(t)
        return torch.sqrt(2.0 * t / (1.0 - t))

    def marginal(self, t) -> tuple[Tensor, Tensor]:
        t = as_time(t)
        return 1.0 - t, t.clone()

    def marginal_rates(self, t) -> tuple[Tensor, Tensor]:
        """(m', σ') = (−1, 1) exactly, at every t ∈ [0, 1] (t = 1 included)."""
        t = as_time(t)
        return -torch.ones_like(t), torch.ones_like(t)

    def prior_std(self) -> float:
        return self.t_max


SDES = {"vp": VPSDE, "subvp": SubVPSDE, "sub-vp": SubVPSDE, "ve": VESDE,
        "rectified_flow": RectifiedFlow, "rf": RectifiedFlow}


def get_sde(name: str | SDE, **kwargs) -> SDE:
    """Build an SDE by name (``"vp"``, ``"subvp"``, ``"ve"``, ``"rectified_flow"``) or pass one through."""
    if isinstance(name, SDE):
        if kwargs:
            raise ValueError("keyword arguments are only accepted with an SDE name")
        return name
    if not isinstance(name, str) or name.lower() not in SDES:
        raise ValueError(f"unknown sde {name!r}; valid: {', '.join(sorted(SDES))}")
    return SDES[name.lower()](**kwargs)
