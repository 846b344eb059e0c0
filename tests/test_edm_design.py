"""Lesson 12's package pieces: σ-parameterisation, EDM preconditioning, DPM-Solver++(3M) and
SDE-DPM-Solver++ (``dpm_solver(order=3)``, ``dpm_solver(eta=...)``), against closed forms,
simulation and exact oracles (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from oracle_helpers import prior_2d as _prior
from oracle_helpers import rms as _rms

from diffusion_lab import dpm_multistep as M
from diffusion_lab import preconditioning as P
from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import coefficients, time_grid

F64 = torch.float64
MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]


def _target(oracle, t):
    m, s = (float(v) for v in oracle.sde.marginal(torch.tensor(t, dtype=F64)))
    return m * oracle.mean(), m**2 * oracle.cov() + s**2 * torch.eye(2, dtype=F64)


# -- σ-parameterisation --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "rectified_flow"])
def test_every_process_is_s_times_x0_plus_sigma_tilde_z(name):
    sde = get_sde(name)
    t = torch.linspace(0.01, 0.99 * sde.t_max, 9, dtype=F64)
    m, s = sde.marginal(t)
    torch.testing.assert_close(P.sigma_tilde(sde, t), s / m, rtol=1e-12, atol=0)
    x0, z = torch.randn(9, 3, dtype=F64), torch.randn(9, 3, dtype=F64)
    st = P.sigma_tilde(sde, t)[:, None]
    torch.testing.assert_close(m[:, None] * (x0 + st * z), m[:, None] * x0 + s[:, None] * z)


# -- preconditioning ------------------------------------------------------------------------
def test_edm_coefficients_closed_forms_and_limits():
    sd = 0.5
    sigma = torch.tensor([1e-4, 0.1, 0.5, 2.0, 80.0], dtype=F64)
    c = P.edm_preconditioning(sigma, sd)
    torch.testing.assert_close(c.c_skip, 0.25 / (sigma**2 + 0.25))
    torch.testing.assert_close(c.c_out, 0.5 * sigma / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c.c_in, 1 / (sigma**2 + 0.25).sqrt())
    torch.testing.assert_close(c.c_noise, torch.log(sigma) / 4)
    assert abs(float(c.c_skip[0]) - 1) < 1e-7 and float(c.c_out[0]) < 1e-3  # σ → 0: D → x
    assert float(c.c_skip[-1]) < 1e-4  # σ → ∞: D → c_out F (pure prediction)
    # σ = σ_d: c_skip = ½ and c_out = σ_d/√2
    h = P.edm_preconditioning(torch.tensor(sd, dtype=F64), sd)
    assert math.isclose(float(h.c_skip), 0.5) and math.isclose(float(h.c_out), sd / math.sqrt(2))
    torch.testing.assert_close(P.edm_loss_weight(sigma, sd), 1 / c.c_out**2)


def test_unit_variance_of_input_and_target_by_simulation():
    """Data with per-dimension variance σ_d² (a two-point law ±σ_d, far from Gaussian): the
    network input c_in x̃ and the target (x_0 − c_skip x̃)/c_out have unit variance at every σ,
    and c_skip is the variance-minimising skip weight."""
    g = torch.Generator().manual_seed(0)
    sd, n = 0.5, 400000
    x0 = sd * (2 * torch.randint(0, 2, (n,), generator=g, dtype=F64) - 1)
    for sigma in (0.02, 0.3, 1.0, 5.0, 40.0):
        x = x0 + sigma * torch.randn(n, generator=g, dtype=F64)
        c = P.edm_preconditioning(torch.tensor(sigma, dtype=F64), sd)
        assert abs(float((c.c_in * x).var()) - 1) < 0.01
        tgt = P.effective_target(x0, x, c)
        assert abs(float(tgt.var()) - 1) < 0.01, (sigma, float(tgt.var()))
        for k in (0.9, 1.1):  # another skip weight gives a larger target variance
            if sigma <= 1.0:  # (above, c_skip ≈ 0 and the difference is within sampling noise)
                    assert float(((x0 - k * c.c_skip * x) / c.c_out).var()) > float(tgt.var())


def test_eps_and_x0_prediction_are_special_cases():
    """D = c_skip x̃ + c_out F: with ε-preconditioning and F = ε̂, D = x̃ − σ ε̂ (Tweedie);
    with x_0-preconditioning and F = x̂_0, D = x̂_0; the effective targets are z and x_0."""
    g = torch.Generator().manual_seed(1)
    x0, z = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    sigma = torch.exp(torch.randn(6, generator=g, dtype=F64))
    x = x0 + sigma[:, None] * z
    pe, px = P.eps_preconditioning(sigma), P.x0_preconditioning(sigma)
    torch.testing.assert_close(P.effective_target(x0, x, pe), z)
    torch.testing.assert_close(P.effective_target(x0, x, px), x0)
    d = pe.c_skip[:, None] * x + pe.c_out[:, None] * z
    torch.testing.assert_close(d, x - sigma[:, None] * z)
    torch.testing.assert_close(d, x0)


def test_lognormal_sigmas_and_bad_input():
    s = P.lognormal_sigmas(200000, torch.Generator().manual_seed(2))
    assert abs(float(s.log().mean()) + 1.2) < 0.01 and abs(float(s.log().std()) - 1.2) < 0.01
    with pytest.raises(ValueError, match="sigma"):
        P.edm_preconditioning(torch.tensor([0.5, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="sigma_data"):
        P.edm_preconditioning(1.0, sigma_data=-1.0)
    with pytest.raises(ValueError, match="n must"):
        P.lognormal_sigmas(0)
    with pytest.raises(TypeError, match="sde"):
        P.sigma_tilde("vp", 0.5)


# -- DPM-Solver++(3M), SDE-DPM-Solver++ ------------------------------------------------------
def test_min_step_ratio_is_the_samplers_one():
    assert M.MIN_STEP_RATIO == S.DPM_MIN_STEP_RATIO


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_the_multistep_code_at_order_2_is_the_2m_sampler(name):
    """The general kM/η code path, forced at order 2, η = 0, reproduces ``dpm_solver``'s own
    (separately tested) 2M on the uniform grid, where the step-ratio rule switches orders."""
    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 64)
    for grid in ("uniform", "logsnr"):
        run = S._Run("dpm_solver", o, sde, x1, 12, None, grid, None, None, False, None, None)
        a = S._dpm_multistep(run, x1, 2, 0.0)  # denoise: _Run(..., denoise=False)
        b = S.dpm_solver(o, sde, x1, steps=12, grid=grid)
        assert _rms(a, b) < 1e-12


@pytest.mark.parametrize("name", ["vp", "ve", "rectified_flow"])
def test_3m_is_exact_for_point_mass_data(name):
    sde = get_sde(name)
    o = GaussianOracle(sde, [0.7, -0.4], [[0.0, 0.0], [0.0, 0.0]])
    x1 = _prior(sde, 128)
    ref = o.pf_map(x1, sde.t_max, sde.t_min)
    for steps in (1, 3, 10):
        assert _rms(S.dpm_solver(o, sde, x1, steps=steps, order=3), ref) < 1e-10


@pytest.mark.parametrize("name", ["vp", "ve", "rectified_flow"])
def test_3m_step_has_local_order_four_from_exact_history(name):
    """One 3M step from exact states and exact x̂_0 history (on a log-SNR grid of step h):
    the local error falls as h⁴ (fitted 3.7–4.3), where 2M's falls as h³; with the coefficient
    −φ_3 d_2 of diffusers / k-diffusion instead of −2 φ_3 d_2 it falls only as h^3.3–3.5."""
    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 128)
    lam0 = float(sde.half_log_snr(torch.tensor(0.5, dtype=F64)))
    errs = {2: [], 3: [], "φ3": []}
    hs = [0.4, 0.2, 0.1, 0.05]
    for h in hs:
        lams = torch.tensor([lam0 - 2 * h, lam0 - h, lam0, lam0 + h], dtype=F64)
        ts = [float(v) for v in sde.t_from_half_log_snr(lams)]
        xs = [o.pf_map(x1, sde.t_max, t) for t in ts]
        cs = [coefficients(sde, t) for t in ts]
        x0s = [(x - c.sigma * o(x, torch.full((x.shape[0],), t, dtype=F64))) / c.m
               for x, c, t in zip(xs[:3], cs[:3], ts[:3], strict=True)]
        steps = [cs[k + 1].lam - cs[k].lam for k in range(3)]
        for order in (2, 3):
            xt = M.multistep_update(xs[2] / cs[2].m, x0s, steps, math.exp(-cs[3].lam), 0.0,
                                    order, None)
            errs[order].append(_rms(cs[3].m * xt, xs[3]))
        # diffusers' / k-diffusion's coefficient −φ_3 d_2 (half of ours) on the same step
        d1_0, d1_1 = x0s[2] - x0s[1], x0s[1] - x0s[0]
        phi3 = (-math.expm1(-h) * -1 / h + 1) / h - 0.5
        x_half = xt + phi3 * (d1_0 - d1_1) / 2
        errs["φ3"].append(_rms(cs[3].m * x_half, xs[3]))
    p3 = np.polyfit(np.log(hs), np.log(errs[3]), 1)[0]
    p2 = np.polyfit(np.log(hs), np.log(errs[2]), 1)[0]
    assert 3.7 < p3 < 4.3 and 2.7 < p2 < 3.3, (p2, p3, errs)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_3m_global_error_beats_2m_from_20_steps_and_converges(name):
    """Global error against the exact flow map, log-SNR grid. Measured (VP): 2M 1.8e-2, 4.7e-3,
    1.2e-3, 3.0e-4 and 3M 3.8e-3, 2.3e-4, 1.4e-5, 7.8e-7 at 20, 40, 80, 160 steps (fitted order
    4.1 on this Gaussian problem); at 10 steps the two are equal (4.8e-2) and at 5 steps 3M is
    worse (0.55 vs 0.07): its extrapolation from three far-apart points overshoots."""
    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 256)
    ref = o.pf_map(x1, 1.0, sde.t_min)
    ks = [20, 40, 80, 160]
    e3 = [_rms(S.dpm_solver(o, sde, x1, steps=k, order=3), ref) for k in ks]
    e2 = [_rms(S.dpm_solver(o, sde, x1, steps=k), ref) for k in ks]
    assert all(a < 0.3 * b for a, b in zip(e3, e2, strict=True)), (e3, e2)
    slope = -np.polyfit(np.log(ks), np.log(e3), 1)[0]
    assert 3.3 < slope < 4.7, (slope, e3)


@pytest.mark.slow
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("name", ["vp", "rectified_flow"])
def test_sde_dpm_solver_reaches_the_data_law(name, order):
    """η = 1 (the reverse SDE), 100 log-SNR steps: moments within 5 SE at n = 4000."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    x = S.sample(o, sde, (4000, 2), method="dpm_solver", steps=100, dtype=F64, eta=1.0,
                 order=order, generator=torch.Generator().manual_seed(3))
    assert_moments(x, *_target(o, sde.t_min))


def test_sde_variant_is_reproducible_and_differs_from_the_ode():
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 32)
    a = S.dpm_solver(o, sde, x1, steps=8, eta=1.0, generator=torch.Generator().manual_seed(4))
    b = S.dpm_solver(o, sde, x1, steps=8, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and _rms(a, S.dpm_solver(o, sde, x1, steps=8)) > 1e-2
    with pytest.raises(ValueError, match="order"):
        S.dpm_solver(o, sde, x1, steps=4, order=4)
    with pytest.raises(ValueError, match="eta"):
        S.dpm_solver(o, sde, x1, steps=4, eta=-0.5)
    assert time_grid(sde, 4, kind="logsnr").shape == (5,)
