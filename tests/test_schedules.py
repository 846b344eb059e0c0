"""Schedules: integrals against scipy quadrature, derived quantities against their
definitions, discrete DDPM betas against ᾱ and the continuum limit, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from diffusion_lab.schedules import (
    CosineSchedule,
    LinearSchedule,
    PowerSchedule,
    QuadraticSchedule,
    Schedule,
    SigmoidSchedule,
    get_schedule,
)

F64 = torch.float64
TS = [0.0, 0.013, 0.2, 0.5, 0.77, 0.9, 0.97, 1.0]


class SineSquaredSchedule(Schedule):
    """A user schedule implementing only ``beta``: integral comes from the base class."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t):
        t = self.check_t(t)
        return self.beta_min + (self.beta_max - self.beta_min) * torch.sin(0.5 * math.pi * t) ** 2


class PowerOnlyBeta(Schedule):
    """PowerSchedule's rate without its closed-form integral."""

    def __init__(self, e: float):
        self.e = e

    def beta(self, t):
        t = self.check_t(t)
        return 0.1 + t**self.e * 19.9


SCHEDULES = {
    "linear": LinearSchedule(0.1, 20.0),
    "cosine_clipped": CosineSchedule(s=0.008, beta_max=50.0),
    "cosine_clipped_low": CosineSchedule(s=0.008, beta_max=5.0),
    "quadratic": QuadraticSchedule(0.1, 20.0),
    "sigmoid": SigmoidSchedule(0.1, 20.0, k=10.0),
    "power_2": PowerSchedule(0.1, 20.0, e=2.0),
    "power_half": PowerSchedule(0.1, 20.0, e=0.5),
    "custom_sine2": SineSquaredSchedule(),
}


def _beta_float(sched: Schedule, s: float) -> float:
    return float(sched.beta(torch.tensor(s, dtype=F64)))


def _quad_integral(sched: Schedule, t: float) -> float:
    points = None
    if isinstance(sched, CosineSchedule) and sched.beta_max is not None and sched.clip_time() < t:
        points = [sched.clip_time()]  # the kink of the clipped rate
    val, err = quad(lambda s: _beta_float(sched, s), 0.0, t, points=points,
                    epsabs=1e-13, epsrel=1e-12, limit=200)
    return val


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_integral_equals_quadrature_of_beta(name):
    sched = SCHEDULES[name]
    t = torch.tensor(TS, dtype=F64)
    got = sched.integral(t)
    want = torch.tensor([_quad_integral(sched, float(s)) for s in TS], dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_unclipped_cosine_integral_equals_quadrature():
    sched = CosineSchedule(s=0.008, beta_max=None)
    ts = [0.0, 0.1, 0.5, 0.9, 0.99]
    got = sched.integral(torch.tensor(ts, dtype=F64))
    want = torch.tensor([_quad_integral(sched, s) for s in ts], dtype=F64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_base_class_quadrature_matches_closed_forms():
    t = torch.linspace(0, 1, 11, dtype=F64)
    for e in (1.0, 2.0, 3.5):
        want = PowerSchedule(0.1, 20.0, e=e).integral(t)
        torch.testing.assert_close(PowerOnlyBeta(e).integral(t), want, rtol=1e-12, atol=1e-13)
    # ∫ sin²(πs/2) ds = t/2 − sin(πt)/(2π)
    want = 0.1 * t + 19.9 * (t / 2 - torch.sin(math.pi * t) / (2 * math.pi))
    torch.testing.assert_close(SineSquaredSchedule().integral(t), want, rtol=1e-12, atol=1e-13)
    # scalar (0-d) input keeps its shape
    assert SineSquaredSchedule().integral(torch.tensor(0.5, dtype=F64)).shape == ()


def test_closed_forms_from_the_literature():
    t = torch.linspace(0, 1, 21, dtype=F64)
    lin = LinearSchedule(0.1, 20.0)
    torch.testing.assert_close(lin.beta(t), 0.1 + 19.9 * t)
    torch.testing.assert_close(lin.integral(t), 0.1 * t + 0.5 * 19.9 * t**2)
    quadr = QuadraticSchedule(0.1, 20.0)
    a, b = math.sqrt(0.1), math.sqrt(20) - math.sqrt(0.1)
    torch.testing.assert_close(quadr.beta(t), (a + b * t) ** 2)
    sig = SigmoidSchedule(0.1, 20.0, k=10.0)
    torch.testing.assert_close(sig.beta(t), 0.1 + 19.9 / (1 + torch.exp(-10 * (t - 0.5))))


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_alpha_bar_and_log_snr_definitions(name):
    sched = SCHEDULES[name]
    t = torch.tensor([0.01, 0.1, 0.3, 0.6, 0.9, 1.0], dtype=F64)
    quad_b = torch.tensor([_quad_integral(sched, float(s)) for s in t], dtype=F64)
    ab = sched.alpha_bar(t)
    torch.testing.assert_close(ab, torch.exp(-quad_b), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(sched.log_snr(t), torch.log(ab / (1 - ab)), rtol=1e-9, atol=1e-9)
    assert float(sched.alpha_bar(torch.tensor(0.0, dtype=F64))) == 1.0
    assert bool((torch.diff(sched.log_snr(t)) < 0).all()), "log-SNR must decrease in t"


def test_cosine_matches_cos2_formula_below_clip_and_is_clipped_above():
    s = 0.008
    sched = CosineSchedule(s=s, beta_max=50.0)
    tc = sched.clip_time()
    assert 0.5 < tc < 1.0
    f = lambda t: torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    t = torch.linspace(0, tc, 50, dtype=F64)
    torch.testing.assert_close(sched.alpha_bar(t), f(t) / f(torch.zeros((), dtype=F64)), rtol=1e-11,
                               atol=1e-14)
    # the rate is continuous at t_c and constant beyond
    torch.testing.assert_close(sched.beta(torch.tensor(tc, dtype=F64)),
                               torch.tensor(50.0, dtype=F64), rtol=1e-9, atol=0)
    above = torch.linspace(tc + 1e-6, 1.0, 7, dtype=F64)
    torch.testing.assert_close(sched.beta(above), torch.full_like(above, 50.0))
    # beyond t_c, B grows linearly with slope β_max
    b = sched.integral(above)
    torch.testing.assert_close(torch.diff(b) / torch.diff(above), torch.full((6,), 50.0, dtype=F64))
    # unclipped: ᾱ = f(t)/f(0) everywhere, and it reaches (numerically) zero at t = 1
    un = CosineSchedule(s=s, beta_max=None)
    t = torch.linspace(0, 0.999, 50, dtype=F64)
    torch.testing.assert_close(un.alpha_bar(t), f(t) / f(torch.zeros((), dtype=F64)), rtol=1e-9,
                               atol=1e-14)
    assert float(un.alpha_bar(torch.tensor(1.0, dtype=F64))) < 1e-20


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("T", [7, 1000])
def test_discrete_betas_product_equals_alpha_bar(name, T):
    sched = SCHEDULES[name]
    betas = sched.discrete_betas(T)
    assert betas.shape == (T,) and betas.dtype == F64
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    grid = torch.arange(1, T + 1, dtype=F64) / T
    torch.testing.assert_close(torch.cumprod(1 - betas, 0), sched.alpha_bar(grid), rtol=1e-10,
                               atol=1e-15)


@pytest.mark.parametrize("name", ["linear", "cosine_clipped", "sigmoid", "custom_sine2"])
def test_T_times_beta_converges_to_rate_at_first_order(name):
    sched = SCHEDULES[name]
    Ts = np.array([100, 200, 400, 800])
    errs = []
    for T in Ts:
        t_i = torch.arange(1, T + 1, dtype=F64) / T
        errs.append(float((T * sched.discrete_betas(int(T)) - sched.beta(t_i)).abs().max()))
    slope = np.polyfit(np.log(Ts), np.log(errs), 1)[0]
    assert -1.15 < slope < -0.85, (errs, slope)


def test_linear_schedule_gives_ddpm_betas_at_T_1000():
    sched = LinearSchedule(0.1, 20.0)
    T = 1000
    betas = sched.discrete_betas(T)
    assert abs(float(betas[0]) - 1e-4) / 1e-4 < 0.11  # β(1/(2T))/T = 1.0995e-4
    assert abs(float(betas[-1]) - 0.02) / 0.02 < 0.02
    # sharper: each step integrates the linear rate exactly, β_i = 1 − exp(−β(t_mid)/T)
    mid = (torch.arange(1, T + 1, dtype=F64) - 0.5) / T
    torch.testing.assert_close(betas, -torch.expm1(-sched.beta(mid) / T), rtol=1e-9, atol=1e-15)


BAD_T = [
    (-0.1, ValueError),
    (1.0001, ValueError),
    (float("nan"), ValueError),
    (float("inf"), ValueError),
    (torch.tensor([0.5, 1.5], dtype=F64), ValueError),
    (torch.tensor([0.5, float("nan")], dtype=F64), ValueError),
    (torch.tensor([0, 1]), TypeError),
    (True, TypeError),
    ("0.5", TypeError),
]


@pytest.mark.parametrize("name", ["linear", "cosine_clipped", "sigmoid", "custom_sine2"])
@pytest.mark.parametrize("method", ["beta", "integral", "alpha_bar", "log_snr"])
@pytest.mark.parametrize("bad,exc", BAD_T)
def test_bad_time_is_rejected_naming_t(name, method, bad, exc):
    with pytest.raises(exc, match=r"\bt\b"):
        getattr(SCHEDULES[name], method)(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="beta_max"):
        LinearSchedule(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="beta_min"):
        LinearSchedule(beta_min=-0.1)
    with pytest.raises(ValueError, match="beta_max"):
        CosineSchedule(beta_max=1e-3)  # below β(0) of the cosine rate
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("cosin")
    with pytest.raises(ValueError, match="T"):
        LinearSchedule().discrete_betas(0)
    with pytest.raises(TypeError, match="T"):
        LinearSchedule().discrete_betas(10.0)
    assert isinstance(get_schedule("cosine", s=0.01), CosineSchedule)
