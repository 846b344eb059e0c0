"""Restart sampling (diffusion_lab.restart) against closed forms and exact oracles (float64)."""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import prior_2d as _prior

from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle, eight_gaussians_oracle
from diffusion_lab.restart import restart, restart_jump
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import coefficients

F64 = torch.float64
MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["vp", "ve", "rectified_flow"])
def test_jump_is_the_forward_transition(name):
    """Covariance of the jump r² C_lo + v I equals p_{t_hi}'s m_hi² Σ + σ_hi² I exactly, and
    the sampled jump of exact p_{t_lo} samples has p_{t_hi}'s moments (5 SE, n = 20000)."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    lo, hi = coefficients(sde, 0.3), coefficients(sde, 0.4)
    mu_lo, c_lo = o.marginal_mean_cov(0.3)
    mu_hi, c_hi = o.marginal_mean_cov(0.4)
    r = hi.m / lo.m
    v = hi.sigma**2 - r**2 * lo.sigma**2
    torch.testing.assert_close(r**2 * c_lo + v * torch.eye(2, dtype=F64), c_hi, rtol=1e-12,
                               atol=1e-12)
    g = _gen(1)
    x_lo = mu_lo + torch.randn(20000, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(c_lo).T
    x_hi = restart_jump(x_lo, lo.m, lo.sigma, hi.m, hi.sigma,
                        torch.randn(20000, 2, generator=g, dtype=F64))
    assert_moments(x_hi, mu_hi, c_hi)
    with pytest.raises(ValueError, match="noise level must grow"):
        restart_jump(x_lo, hi.m, hi.sigma, lo.m, lo.sigma, x_lo)


def test_no_restart_is_dpm_solver_2m():
    """K = 0 walks the main grid with the same 2M steps as dpm_solver (another implementation)."""
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 64)
    for grid in ("logsnr", "uniform"):
        info = {}
        a = restart(o, sde, x1, steps=12, grid=grid, restarts=0, info=info)
        torch.testing.assert_close(a, S.dpm_solver(o, sde, x1, steps=12, grid=grid), rtol=0,
                                   atol=1e-12)
        assert info["nfe"] == 12 and info["restarts"] == 0


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_restart_reaches_the_data_law(name):
    """Exact ε, 40 main steps and K = 2 restarts of 15 steps over [0.3, 0.45]: moments within
    5 SE at n = 4000; NFE = 40 + 2·15 (+1 with denoise)."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde(name)
    o = GaussianOracle(sde, MEAN, COV)
    info = {}
    x = restart(o, sde, _prior(sde, 4000), steps=40, t_restart=(0.3, 0.45), restarts=2,
                restart_steps=15, generator=_gen(2), denoise=True, info=info)
    assert info["nfe"] == 71 and info["steps"] == 70
    t_lo, t_hi = info["t_restart"]
    assert abs(t_lo - 0.3) < 0.05 and t_hi == 0.45
    assert_moments(x, o.mean(), o.cov())


def test_restart_keeps_mixture_weights():
    """Eight Gaussians (VP): the jumps must not move mass between the modes. Each of the 8
    components holds 1/8 of n = 4000 samples within 5 binomial SE."""
    sde = get_sde("vp")
    o = eight_gaussians_oracle(sde)
    x = restart(o, sde, _prior(sde, 4000, seed=3), steps=30, t_restart=(0.3, 0.7), restarts=2,
                restart_steps=10, generator=_gen(4))
    d = torch.cdist(x, o.means.to(F64))
    assert float(d.min(1).values.max()) < 0.6  # every sample near some mode
    counts = torch.bincount(d.argmin(1), minlength=8).to(F64)
    se = (4000 * (1 / 8) * (7 / 8)) ** 0.5
    assert float((counts - 500).abs().max()) < 5 * se, counts.tolist()


def test_reproducible_and_bad_input():
    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 16)
    a = restart(o, sde, x1, steps=6, generator=_gen(5))
    assert torch.equal(a, restart(o, sde, x1, steps=6, generator=_gen(5)))
    assert float((a - restart(o, sde, x1, steps=6, restarts=0)).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="t_restart"):
        restart(o, sde, x1, steps=6, t_restart=(0.5, 0.3))
    with pytest.raises(ValueError, match="t_restart"):
        restart(o, sde, x1, steps=6, t_restart=0.3)
    with pytest.raises(ValueError, match="restarts"):
        restart(o, sde, x1, steps=6, restarts=-1)
    with pytest.raises(ValueError, match="steps >= 2"):
        restart(o, sde, x1, steps=1)


def test_default_segments_follow_the_main_grid_so_restart_converges():
    """``restart_steps=None`` takes the main grid's own step count over [t_lo, t_hi], so the
    segments refine with ``steps``: at 100 steps (sub-VP, Gaussian data, n = 20000) the moments
    are within 5 SE. A fixed 2-step segment does not refine: its covariance stays off by ~10 %
    (measured 0.099 relative at n = 10⁵), far outside 5 SE."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde("subvp")
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(sde, 20000, seed=6)
    mean, cov = o.marginal_mean_cov(sde.t_min)
    info = {}
    x = restart(o, sde, x1, steps=100, generator=_gen(7), info=info)
    assert info["restart_steps"] >= 10 and info["nfe"] == 100 + info["restart_steps"]
    assert_moments(x, mean, cov)
    fixed = restart(o, sde, x1, steps=100, restart_steps=2, generator=_gen(7))
    with pytest.raises(AssertionError, match="cov"):
        assert_moments(fixed, mean, cov)
    small = {}
    restart(o, sde, _prior(sde, 4), steps=6, info=small)
    assert small["restart_steps"] == 2  # the floor at coarse grids
