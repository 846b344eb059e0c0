"""ODE integrators against closed-form solutions: accuracy, observed order of
convergence, adaptive tolerance control, NFE counting, backwards integration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from diffusion_lab.ode import FIXED_METHODS, integrate_fixed, rk45

F64 = torch.float64
A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)  # a damped rotation
Y0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64)  # two initial conditions (rows)


def linear_rhs(t, y):
    return y @ A.T


def linear_exact(t0, t1, y0=Y0):
    return y0 @ torch.tensor(expm(A.numpy() * (t1 - t0)), dtype=F64).T


def nonautonomous_rhs(t, y):
    """dy/dt = cos(t) y  =>  y(t) = y0 exp(sin t − sin t0)."""
    return math.cos(t) * y


class Counter:
    def __init__(self, fn):
        self.fn, self.calls, self.times = fn, 0, []

    def __call__(self, t, y):
        assert isinstance(t, float)
        self.calls += 1
        self.times.append(t)
        return self.fn(t, y)


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
@pytest.mark.parametrize("problem", ["linear", "nonautonomous"])
def test_fixed_step_convergence_order(method, order, problem):
    t0, t1 = 0.0, 2.0
    if problem == "linear":
        fn, exact = linear_rhs, linear_exact(t0, t1)
    else:
        fn, exact = nonautonomous_rhs, Y0 * math.exp(math.sin(t1) - math.sin(t0))
    Ns = np.array([20, 40, 80, 160])
    errs = []
    for N in Ns:
        counted = Counter(fn)
        res = integrate_fixed(counted, Y0, np.linspace(t0, t1, N + 1), method=method)
        assert res.nfe == counted.calls == order * N and res.steps == N  # 1, 2, 4 stages
        errs.append(float((res.y - exact).abs().max()))
    slope = -np.polyfit(np.log(Ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.2, (method, errs, slope)
    assert errs[-1] < {1: 5e-2, 2: 1e-3, 4: 1e-7}[order]


@pytest.mark.parametrize("method", list(FIXED_METHODS))
def test_fixed_step_backwards_and_callback(method):
    grid = torch.linspace(1.0, 0.0, 201, dtype=F64)  # a tensor grid, decreasing
    seen = []
    res = integrate_fixed(linear_rhs, Y0, grid, method=method,
                          callback=lambda i, t, y: seen.append((i, t)))
    tol = {"euler": 3e-2, "heun": 1e-4, "rk4": 1e-9}[method]
    torch.testing.assert_close(res.y, linear_exact(1.0, 0.0), rtol=tol, atol=tol)
    assert [i for i, _ in seen] == list(range(200))
    assert seen[-1][1] == 0.0 and seen[0][1] == pytest.approx(0.995)


@pytest.mark.parametrize("tol", [1e-4, 1e-7, 1e-10])
def test_rk45_respects_tolerance_and_counts_nfe(tol):
    counted = Counter(linear_rhs)
    res = rk45(counted, Y0, 0.0, 3.0, rtol=tol, atol=tol)
    exact = linear_exact(0.0, 3.0)
    err = float((res.y - exact).abs().max())
    assert err < 5 * tol, (tol, err)  # the global error stays within a small multiple of tol
    assert res.nfe == counted.calls == 1 + 6 * (res.steps + res.rejected)  # FSAL
    assert counted.times[0] == 0.0 and max(counted.times) <= 3.0 + 1e-12


def test_rk45_tighter_tolerance_costs_more_and_is_fifth_order():
    nfes, errs = [], []
    for tol in (1e-5, 1e-7, 1e-9, 1e-11):
        res = rk45(nonautonomous_rhs, Y0, 0.0, 4.0, rtol=tol, atol=tol)
        nfes.append(res.nfe)
        errs.append(float((res.y - Y0 * math.exp(math.sin(4.0))).abs().max()))
    assert nfes == sorted(nfes) and nfes[-1] > 2 * nfes[0]
    assert errs == sorted(errs, reverse=True)
    # steps scale like tol^(−1/5) for a 5th-order local error control
    steps_ratio = nfes[-1] / nfes[0]
    assert 4 < steps_ratio < 40, nfes  # (10^6)^(1/5) ≈ 15.8


def test_rk45_backwards_and_round_trip():
    fwd = rk45(nonautonomous_rhs, Y0, 0.5, 2.5, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fwd.y, Y0 * math.exp(math.sin(2.5) - math.sin(0.5)), rtol=1e-8,
                               atol=1e-9)
    back = rk45(nonautonomous_rhs, fwd.y, 2.5, 0.5, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(back.y, Y0, rtol=1e-8, atol=1e-9)
    times = []
    res = rk45(linear_rhs, Y0, 1.0, 0.0, rtol=1e-8, atol=1e-8,
               callback=lambda i, t, y: times.append(t))
    torch.testing.assert_close(res.y, linear_exact(1.0, 0.0), rtol=1e-6, atol=1e-7)
    assert len(times) == res.steps and times == sorted(times, reverse=True)
    assert times[-1] == pytest.approx(0.0, abs=1e-12)


def test_rk45_edge_cases():
    res = rk45(linear_rhs, Y0, 0.3, 0.3)
    assert res.nfe == 0 and res.steps == 0 and torch.equal(res.y, Y0)
    with pytest.raises(RuntimeError, match="max_steps"):
        rk45(linear_rhs, Y0, 0.0, 10.0, rtol=1e-12, atol=1e-12, max_steps=5)
    with pytest.raises(ValueError, match="rtol"):
        rk45(linear_rhs, Y0, 0.0, 1.0, rtol=0.0)
    with pytest.raises(FloatingPointError):
        rk45(lambda t, y: y / (1.0 - t) ** 3 * float("inf"), Y0, 0.0, 1.0)
    with pytest.raises(ValueError, match="method"):
        integrate_fixed(linear_rhs, Y0, [0.0, 1.0], method="rk5")
    # a constant right-hand side is integrated exactly by every method
    for m in FIXED_METHODS:
        out = integrate_fixed(lambda t, y: torch.ones_like(y), Y0, [0.0, 0.25, 1.0], method=m)
        torch.testing.assert_close(out.y, Y0 + 1.0)
