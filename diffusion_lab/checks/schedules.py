"""Checkers for lesson 02, noise schedules (``exercises/02_*.ipynb``)."""

from __future__ import annotations

import math

import torch

from ..schedules import CosineSchedule, LinearSchedule, Schedule
from ._common import F64, FAIL, PASS, _call, _close, _compare, _gen, _say, _Stop, _uniform, checker


@checker("linear_integral")
def check_linear_integral(fn) -> bool:
    """``fn(t, beta_min, beta_max) -> B(t) = β_min t + ½ t² (β_max − β_min)``."""

    name = "linear_integral"
    t = _uniform(6, 0.0, 1.0, _gen(3))
    sched = LinearSchedule(0.1, 20.0)
    want = sched.integral(t)
    wrong = {
        "you returned the rate β(t), not its integral B(t) = ∫_0^t β": sched.beta(t),
        "the ½ of ∫ s ds = ½ t² is missing": 0.1 * t + t**2 * 19.9,
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t)": torch.exp(-want),
    }
    return _compare(name, _call(name, fn, t.clone(), 0.1, 20.0), want, wrong,
                    ok="matches LinearSchedule.integral on 6 random times")


@checker("cosine_integral")
def check_cosine_integral(fn) -> bool:
    """``fn(t, s) -> B(t) = −log(cos² θ(t) / cos² θ(0))``, θ(t) = (t + s)/(1 + s) · π/2
    (the unclipped cosine schedule, ᾱ = exp(−B))."""

    name = "cosine_integral"
    s = 0.008
    t = torch.cat([torch.zeros(1, dtype=F64), _uniform(6, 0.0, 0.98, _gen(4))])
    want = CosineSchedule(s, beta_max=None).integral(t)
    theta = (t + s) / (1 + s) * math.pi / 2
    theta0 = s / (1 + s) * math.pi / 2
    wrong = {
        "ᾱ(0) must be 1 (B(0) = 0): divide f(t) = cos² θ(t) by f(0)":
            -2 * torch.log(torch.cos(theta)),
        "the square is missing: f(t) = cos² θ(t), so B = −2 log(cos θ(t)/cos θ(0))":
            -torch.log(torch.cos(theta) / math.cos(theta0)),
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t) = −log ᾱ(t)": torch.exp(-want),
        "θ(t) must be (t + s)/(1 + s) · π/2; the π/2 is missing":
            -2 * torch.log(torch.cos((t + s) / (1 + s)) / math.cos(s / (1 + s))),
    }
    return _compare(name, _call(name, fn, t.clone(), s), want, wrong,
                    ok="matches CosineSchedule(beta_max=None).integral on 7 times, t = 0 included")


@checker("discrete_betas")
def check_discrete_betas(fn) -> bool:
    """``fn(schedule, T) -> [T]``: β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T), ᾱ = exp(−schedule.integral(t))."""

    name = "discrete_betas"
    for sched, T in ((LinearSchedule(0.1, 20.0), 1000), (CosineSchedule(), 50)):
        want = sched.discrete_betas(T)
        grid = torch.linspace(0, 1, T + 1, dtype=F64)
        ab = sched.alpha_bar(grid)
        wrong = {
            "this is the Riemann approximation β(t_i)/T; the exact betas are "
            "1 − ᾱ(i/T)/ᾱ((i−1)/T), so that ∏ (1 − β_j) = ᾱ(i/T)": sched.beta(grid[1:]) / T,
            "the ratio is upside down: ᾱ(i/T)/ᾱ((i−1)/T) ≤ 1 is α_i, β_i = 1 − α_i":
                1 - ab[:-1] / ab[1:],
            "you returned α_i = ᾱ(i/T)/ᾱ((i−1)/T), not β_i = 1 − α_i": ab[1:] / ab[:-1],
            "the grid is shifted: β_i uses t = i/T and (i−1)/T, for i = 1..T":
                torch.cat([1 - ab[1:2] / ab[:1], 1 - ab[1:-1] / ab[:-2]]),
        }
        got = _call(name, fn, sched, T)
        _compare(name, got, want, wrong, rtol=1e-7, atol=1e-10, ok="", report=False,
                 what=f"β_i for {sched!r}, T={T},")
    _say(PASS, name, "match Schedule.discrete_betas for the linear (T=1000) and cosine "
                     "(T=50) schedules")
    return True


@checker("custom_schedule")
def check_custom_schedule(cls) -> bool:
    """``cls(beta_min, beta_max)``, a :class:`~diffusion_lab.schedules.Schedule` subclass with
    the geometric rate β(t) = β_min (β_max/β_min)^t and its closed-form integral
    B(t) = β_min ((β_max/β_min)^t − 1)/log(β_max/β_min)."""

    name = "custom_schedule"
    if not (isinstance(cls, type) and issubclass(cls, Schedule)):
        _say(FAIL, name, f"pass the class itself, a subclass of diffusion_lab.schedules.Schedule "
                         f"(got {cls!r})")
        return False
    lo, hi = 0.1, 20.0
    sched = _call(name, cls, lo, hi)
    t = torch.cat([torch.zeros(1, dtype=F64), _uniform(5, 0.0, 1.0, _gen(5)),
                   torch.ones(1, dtype=F64)])
    r = hi / lo
    want_beta = lo * r**t
    _compare(name, _call(name, sched.beta, t.clone()), want_beta, {
        "the rate must grow from β_min at t = 0 to β_max at t = 1: β_min (β_max/β_min)^t":
            hi * (lo / hi) ** t,
    }, what="beta(t)", ok="", report=False)
    want_int = lo * (r**t - 1) / math.log(r)
    quad = Schedule.integral(sched, t)  # the base class's quadrature of *your* beta
    _compare(name, _call(name, sched.integral, t.clone()), want_int, {
        "the − 1 is missing: B(0) must be 0": lo * r**t / math.log(r),
        "divide by log(β_max/β_min), the derivative of r^t is r^t log r":
            lo * (r**t - 1) * math.log(r),
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t)": torch.exp(-want_int),
        "you returned the rate β(t), not its integral": want_beta,
    }, what="integral(t)", ok="", report=False)
    if not _close(quad, want_int, 1e-8, 1e-10):
        _say(FAIL, name, "integral(t) is right but does not match quadrature of beta(t)")
        raise _Stop
    _say(PASS, name, "beta(t) is the geometric rate and integral(t) equals the closed form "
                     "and the Gauss–Legendre quadrature of beta on 7 times")
    return True
