r"""Noise schedules β(t) on continuous time t ∈ [0, 1].

A schedule is a non-negative rate β(t). Everything else follows from its
integral B(t) = ∫_0^t β(s) ds:

    ᾱ(t)      = exp(−B(t))                  (the VP signal fraction, m(t)²)
    log-SNR(t) = log(ᾱ / (1 − ᾱ))            (= 2 λ(t) for the VP SDE)
    β_i        = 1 − ᾱ(i/T) / ᾱ((i−1)/T)      (discrete DDPM betas, i = 1..T)

The discrete betas are chosen so that ∏_{j≤i}(1 − β_j) = ᾱ(i/T) *exactly*: the
DDPM chain with T steps visits the continuous marginals at t = i/T, and
T·β_i → β(t_i) as T → ∞.

Writing a schedule of your own takes a few lines: subclass :class:`Schedule`
and implement ``beta``; ``integral`` defaults to Gauss–Legendre quadrature of
``beta`` (override it with the closed form when you have one). The worked
example of the course is the "exponential" rate β(t) = β_min + tᵉ (β_max − β_min)::

    class PowerSchedule(dl.Schedule):
        def __init__(self, beta_min=0.1, beta_max=20.0, e=2.0):
            self.beta_min, self.beta_max, self.e = beta_min, beta_max, e
        def beta(self, t):
            t = self.check_t(t)
            return self.beta_min + t**self.e * (self.beta_max - self.beta_min)
        # optional closed form: B(t) = β_min t + t^(e+1)/(e+1) (β_max − β_min)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._checks import as_time, check_int, check_positive

__all__ = [
    "Schedule",
    "LinearSchedule",
    "CosineSchedule",
    "QuadraticSchedule",
    "SigmoidSchedule",
    "PowerSchedule",
    "get_schedule",
]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


class Schedule:
    """Base class: a rate β(t) ≥ 0 on t ∈ [0, 1] and its integral B(t) = ∫_0^t β.

    Subclasses must implement :meth:`beta`; :meth:`integral` falls back to
    64-point Gauss–Legendre quadrature on [0, t], exact for polynomials of
    degree ≤ 127 and accurate to ~1e-12 for smooth rates.
    """

    #: constructor arguments, recorded for checkpoints (``name`` -> value)
    def config(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @staticmethod
    def check_t(t) -> Tensor:
        """Validate a time argument (finite, in [0, 1]) and return it as a tensor."""
        return as_time(t, "t")

    def beta(self, t) -> Tensor:  # pragma: no cover - abstract
        """β(t), the instantaneous noise rate."""
        raise NotImplementedError(f"{type(self).__name__} must implement beta(t)")

    def integral(self, t) -> Tensor:
        """B(t) = ∫_0^t β(s) ds (Gauss–Legendre quadrature unless overridden)."""
        t = self.check_t(t)
        nodes = torch.as_tensor(_GL_NODES, dtype=torch.float64)
        weights = torch.as_tensor(_GL_WEIGHTS, dtype=torch.float64)
        t64 = t.to(torch.float64)
        s = 0.5 * t64.unsqueeze(-1) * (nodes + 1.0)  # [..., 64] nodes mapped to [0, t]
        b = self.beta(s.reshape(-1)).to(torch.float64).reshape(s.shape)
        return (0.5 * t64 * (b * weights).sum(-1)).to(t.dtype)

    def alpha_bar(self, t) -> Tensor:
        """ᾱ(t) = exp(−B(t))."""
        return torch.exp(-self.integral(t))

    def log_snr(self, t) -> Tensor:
        """log SNR(t) = log(ᾱ/(1 − ᾱ)) = log(e^{−B}/(1 − e^{−B})) = −log(e^B − 1) = −log expm1(B)."""
        b = self.integral(t)
        return -torch.log(torch.expm1(b))

    def discrete_betas(self, T: int, dtype=torch.float64) -> Tensor:
        """DDPM betas β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T), i = 1..T, so ∏(1 − β_j) = ᾱ(i/T) exactly."""
        T = check_int(T, "T")
        grid = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
        b = self.integral(grid)
        return (-torch.expm1(-(b[1:] - b[:-1]))).to(dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class LinearSchedule(Schedule):
    """β(t) = β_min + t (β_max − β_min); B(t) = β_min t + ½ t² (β_max − β_min).

    With β_min = 0.1, β_max = 20 this is the continuous limit of DDPM's linear
    betas from 1e-4 to 0.02 over T = 1000 steps (Song et al. 2021).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive(beta_min, "beta_min", allow_zero=True)
        self.beta_max = check_positive(beta_max, "beta_max")
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)


class QuadraticSchedule(Schedule):
    """β(t) = (√β_min + t (√β_max − √β_min))², the "quadratic" DDPM schedule.

    With a = √β_min, b = √β_max − √β_min: B(t) = ((a + b t)³ − a³) / (3 b).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive(beta_min, "beta_min", allow_zero=True)
        self.beta_max = check_positive(beta_max, "beta_max")
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must be > beta_min, got {beta_max} <= {beta_min}")

    def _ab(self):
        a = math.sqrt(self.beta_min)
        return a, math.sqrt(self.beta_max) - a

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        a, b = self._ab()
        return (a + b * t) ** 2

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        a, b = self._ab()
        return ((a + b * t) ** 3 - a**3) / (3.0 * b)


class CosineSchedule(Schedule):
    r"""Nichol & Dhariwal's cosine schedule, ᾱ(t) = f(t)/f(0), f(t) = cos²(θ(t)),
    θ(t) = (t + s)/(1 + s) · π/2.

    Unclipped, B(t) = −log ᾱ(t) and β(t) = B'(t) = π/(1 + s) · tan θ(t), which
    diverges at t = 1. The rate is therefore clipped at ``beta_max`` — and the
    integral is the integral of the *clipped* rate: with t_c the time where
    β(t_c) = β_max, B(t) = −log ᾱ_cos(t) for t ≤ t_c and
    B(t_c) + β_max (t − t_c) beyond. ``beta_max=None`` keeps the unclipped
    schedule (then ᾱ(1) = 0 and log-SNR(1) = −∞).
    """

    def __init__(self, s: float = 0.008, beta_max: float | None = 50.0):
        self.s = check_positive(s, "s")
        self.beta_max = None if beta_max is None else check_positive(beta_max, "beta_max")
        self._t_clip = 1.0
        if self.beta_max is not None:
            # β(t) = c tan θ(t) = β_max  <=>  θ = atan(β_max / c)
            c = math.pi / (1.0 + self.s)
            theta_c = math.atan(self.beta_max / c)
            self._t_clip = min(1.0, theta_c * 2.0 / math.pi * (1.0 + self.s) - self.s)
            if self._t_clip <= 0:
                raise ValueError(f"beta_max={beta_max} is below β(0) of the cosine schedule")

    def config(self) -> dict:
        return {"s": self.s, "beta_max": self.beta_max}

    def _theta(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1.0 + self.s) * (math.pi / 2.0)

    def _neg_log_f_ratio(self, t: Tensor) -> Tensor:
        """−log(cos² θ(t) / cos² θ(0)), the unclipped B(t)."""
        theta0 = torch.tensor(self.s / (1.0 + self.s) * math.pi / 2.0, dtype=t.dtype)
        return -2.0 * (torch.log(torch.cos(self._theta(t))) - torch.log(torch.cos(theta0)))

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        b = math.pi / (1.0 + self.s) * torch.tan(self._theta(t))
        if self.beta_max is not None:
            b = torch.where(t <= self._t_clip, b, torch.full_like(b, self.beta_max))
        return b

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        if self.beta_max is None:
            return self._neg_log_f_ratio(t)
        tc = torch.full_like(t, self._t_clip)
        inside = self._neg_log_f_ratio(torch.minimum(t, tc))
        return inside + self.beta_max * torch.clamp(t - tc, min=0.0)

    def clip_time(self) -> float:
        """t_c, the time from which β(t) is held at ``beta_max``."""
        return self._t_clip

    def kinks(self) -> tuple[float, ...]:
        """Times in (0, 1) where β(t) is not smooth: t_c, where the clipped rate has a corner.
        A step across it costs RK4 its order (4 → 2.1, measured); samplers' grids put a point there."""
        return (self._t_clip,) if self._t_clip < 1.0 else ()


class SigmoidSchedule(Schedule):
    """β(t) = β_min + (β_max − β_min) · sigmoid(k (t − ½)) (a sigmoid ramp, as in GeoDiff).

    B(t) = β_min t + (β_max − β_min)/k · [softplus(k(t − ½)) − softplus(−k/2)].
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, k: float = 10.0):
        self.beta_min = check_positive(beta_min, "beta_min", allow_zero=True)
        self.beta_max = check_positive(beta_max, "beta_max")
        self.k = check_positive(k, "k")
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must be > beta_min, got {beta_max} <= {beta_min}")

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        return self.beta_min + (self.beta_max - self.beta_min) * torch.sigmoid(self.k * (t - 0.5))

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        sp = torch.nn.functional.softplus
        d = self.beta_max - self.beta_min
        k = self.k
        return self.beta_min * t + d / k * (sp(k * (t - 0.5)) - sp(torch.full_like(t, -k / 2)))


class PowerSchedule(Schedule):
    """The course's custom example: β(t) = β_min + tᵉ (β_max − β_min).

    B(t) = β_min t + t^(e+1)/(e+1) · (β_max − β_min). e = 1 is the linear schedule.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, e: float = 2.0):
        self.beta_min = check_positive(beta_min, "beta_min", allow_zero=True)
        self.beta_max = check_positive(beta_max, "beta_max")
        self.e = check_positive(e, "e")

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        return self.beta_min + t**self.e * (self.beta_max - self.beta_min)

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        return self.beta_min * t + t ** (self.e + 1) / (self.e + 1) * (self.beta_max - self.beta_min)


SCHEDULES = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "quadratic": QuadraticSchedule,
    "sigmoid": SigmoidSchedule,
    "power": PowerSchedule,
}


def get_schedule(name: str | Schedule, **kwargs) -> Schedule:
    """Build a schedule from its name (``"linear"``, ``"cosine"``, ...) or pass one through."""
    if isinstance(name, Schedule):
        if kwargs:
            raise ValueError("keyword arguments are only accepted with a schedule name")
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name](**kwargs)
