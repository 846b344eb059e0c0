"""UniPC (diffusion_lab.unipc) against closed forms and exact oracles (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracle_helpers import prior_2d as _prior
from oracle_helpers import rms as _rms

from diffusion_lab import samplers as S
from diffusion_lab import unipc as U
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import coefficients

F64 = torch.float64
MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]


@pytest.mark.parametrize("grid", ["logsnr", "uniform"])
def test_predictor_alone_is_dpm_solver_2m(grid):
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 64)
    a = U.unipc(o, sde, x1, steps=12, grid=grid, corrector=False)
    torch.testing.assert_close(a, S.dpm_solver(o, sde, x1, steps=12, grid=grid), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_point_mass_is_exact(name):
    """x̂_0 ≡ μ: every D_k and m̂_t − m_0 vanish, each step is the exact exponential integrator."""
    sde = get_sde(name)
    o = GaussianOracle(sde, [0.7, -0.4], [[0.0, 0.0], [0.0, 0.0]])
    x1 = _prior(sde, 128)
    for steps in (1, 3, 10):
        out = U.unipc(o, sde, x1, steps=steps)
        torch.testing.assert_close(out, o.pf_map(x1, sde.t_max, sde.t_min), rtol=1e-9, atol=1e-9)


def test_corrector_of_order_2_is_exact_for_a_quadratic_denoiser():
    """A 'network' whose x̂_0 is a fixed quadratic in λ, D(λ) = a + bλ + cλ²: the ODE in x̃ = x/m
    is dx̃/dλ = D(λ) − x̃, solved by x̃_t = e^{−h} x̃_s + ∫_0^h e^{−(h−u)} D(λ_s + u) du
    (Simpson, 20001 points). UniC-2 uses three x̂_0 (s_1, s_0, t) and must reproduce it; the
    predictor (2M) alone must not."""
    sde = get_sde("vp")
    a, b, c = 0.3, -0.7, 0.25
    lam1, lam0, lamt = -1.0, -0.2, 0.9  # s_1, s_0, t
    ts = [float(sde.t_from_half_log_snr(torch.tensor(v, dtype=F64))) for v in (lam1, lam0, lamt)]
    c1, c0, ct = (coefficients(sde, t) for t in ts)

    def D(lam):
        return a + b * lam + c * lam**2

    h = lamt - lam0
    u = np.linspace(0.0, h, 20001)
    f = np.exp(-(h - u)) * D(lam0 + u)
    integral = (u[1] - u[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    xt0 = 1.7  # x̃ at s_0
    exact = ct.m * (math.exp(-h) * xt0 + integral)
    x_s0 = torch.tensor([c0.m * xt0], dtype=F64)
    hist = [(c1.lam, torch.tensor([D(c1.lam)], dtype=F64)),
            (c0.lam, torch.tensor([D(c0.lam)], dtype=F64))]
    m_t = torch.tensor([D(ct.lam)], dtype=F64)
    corrected = float(U._correct(x_s0, c0, m_t, hist, ct, 2)[0])
    predicted = float(U._predict(x_s0, hist, c0, ct, 2)[0])
    assert abs(corrected - exact) < 1e-10, (corrected, exact)
    assert abs(predicted - exact) > 1e-3
    assert U.unic_coefficients(0.4, []) == [0.5]


def test_order_three_on_a_gaussian():
    """Log-SNR grid, error against the exact flow map at 20, 40, 80 steps: fitted order ≈ 3
    (UniC lifts 2M's order 2 by one) and below DPM-Solver++(2M) at each."""
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 256)
    ref = o.pf_map(x1, 1.0, sde.t_min)
    ks = [20, 40, 80]
    e_u = [_rms(U.unipc(o, sde, x1, steps=k), ref) for k in ks]
    e_d = [_rms(S.dpm_solver(o, sde, x1, steps=k), ref) for k in ks]
    order = -np.polyfit(np.log(ks), np.log(e_u), 1)[0]
    assert 2.6 < order < 3.5, (order, e_u)
    assert all(u < d for u, d in zip(e_u, e_d, strict=True)), (e_u, e_d)


def test_bad_input():
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 4)
    with pytest.raises(ValueError, match="order"):
        U.unipc(o, sde, x1, steps=4, order=4)
    with pytest.raises(ValueError, match="variant"):
        U.unipc(o, sde, x1, steps=4, variant="bh3")
    with pytest.raises(TypeError, match="corrector"):
        U.unipc(o, sde, x1, steps=4, corrector=1)
    info = {}
    U.unipc(o, sde, x1, steps=5, denoise=True, info=info)
    assert info["nfe"] == 6 and info["method"] == "unipc"


def _polynomial_step(coeffs, lams):
    """The points λ (oldest first; the last is t) of one step s_0 → t with x̂_0 a polynomial in λ
    (``coeffs``: a_0, a_1, …), the exact x_t (Simpson, 20001 points) and the pieces the step
    functions take: x_{s0}, its coefficients, the history up to s_0, m̂_t, the coefficients at t."""
    sde = get_sde("vp")

    def D(lam):
        return sum(a * lam**k for k, a in enumerate(coeffs))

    ts = [float(sde.t_from_half_log_snr(torch.tensor(v, dtype=F64))) for v in lams]
    cs = [coefficients(sde, t) for t in ts]
    c0, ct = cs[-2], cs[-1]
    h = ct.lam - c0.lam
    u = np.linspace(0.0, h, 20001)
    f = np.exp(-(h - u)) * D(c0.lam + u)
    integral = (u[1] - u[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    xt0 = 1.7  # x̃ at s_0
    exact = ct.m * (math.exp(-h) * xt0 + integral)
    hist = [(c.lam, torch.tensor([D(c.lam)], dtype=F64)) for c in cs[:-1]]
    return exact, torch.tensor([c0.m * xt0], dtype=F64), c0, hist, torch.tensor([D(ct.lam)], dtype=F64), ct


@pytest.mark.parametrize("variant", U.VARIANTS)
def test_order_three_steps_are_exact_for_their_polynomials(variant):
    """UniC-3 (x̂_0 at s_2, s_1, s_0 and t) is exact for a cubic x̂_0(λ), UniP-3 (s_2, s_1, s_0)
    for a quadratic; neither is exact one degree higher, and UniC-2 is not exact for the cubic.
    Unequal steps (r_1 ≠ r_2 / 2), so the solved ρ, not an equal-step formula, is tested."""
    lams = [-1.6, -1.0, -0.2, 0.9]
    cubic = [0.3, -0.7, 0.25, 0.12]
    exact, x_s0, c0, hist, m_t, ct = _polynomial_step(cubic, lams)
    corrected = float(U._correct(x_s0, c0, m_t, hist, ct, 3, variant)[0])
    assert abs(corrected - exact) < 1e-10, (corrected, exact)
    assert abs(float(U._correct(x_s0, c0, m_t, hist, ct, 2, variant)[0]) - exact) > 1e-4
    assert abs(float(U._predict(x_s0, hist, c0, ct, 3, variant)[0]) - exact) > 1e-4
    exact_q, x_s0, c0, hist_q, _, ct = _polynomial_step(cubic[:3], lams)
    predicted = float(U._predict(x_s0, hist_q, c0, ct, 3, variant)[0])
    assert abs(predicted - exact_q) < 1e-10, (predicted, exact_q)


@pytest.mark.parametrize("variant", U.VARIANTS)
def test_corrector_of_order_2_is_exact_for_a_quadratic_with_either_b(variant):
    exact, x_s0, c0, hist, m_t, ct = _polynomial_step([0.3, -0.7, 0.25], [-1.0, -0.2, 0.9])
    assert abs(float(U._correct(x_s0, c0, m_t, hist, ct, 2, variant)[0]) - exact) < 1e-10


def test_bh1_and_bh2_weights_agree_to_first_order_in_h():
    """B(h) only reweights the higher-order terms: ρ^c·B(h) is the same to O(h²) for both."""
    for h in (1e-2, 1e-3):
        a = U.unic_coefficients(h, [-1.0], "bh1")
        b = U.unic_coefficients(h, [-1.0], "bh2")
        scaled = [abs(x * (-h) - y * math.expm1(-h)) for x, y in zip(a, b, strict=True)]
        assert max(scaled) < 2 * h**2, (h, scaled)


@pytest.mark.parametrize("variant", U.VARIANTS)
def test_order_three_converges_with_order_four_on_a_gaussian(variant):
    """UniPC-3 (UniP-3 + UniC-3): the error against the exact flow map falls like h⁴ (fitted
    on 64, 128, 256 log-SNR steps, VP), and is below UniPC-2's at each of 16…256 steps."""
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 256)
    ref = o.pf_map(x1, 1.0, sde.t_min)
    ks = [16, 32, 64, 128, 256]
    e3 = [_rms(U.unipc(o, sde, x1, steps=k, order=3, variant=variant), ref) for k in ks]
    e2 = [_rms(U.unipc(o, sde, x1, steps=k, order=2, variant=variant), ref) for k in ks]
    order = -np.polyfit(np.log(ks[2:]), np.log(e3[2:]), 1)[0]
    assert 3.5 < order < 4.5, (order, e3)
    assert all(a < b for a, b in zip(e3, e2, strict=True)), (e3, e2)
