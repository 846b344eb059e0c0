"""SDE-DPM-Solver++(2M) with Langevin strength η > 1 and the few-step ending (t_end, x̂_0), as
used by benchmarks/few_step_fid.py, against exact oracles (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from oracle_helpers import prior_2d as _prior

from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import coefficients

F64 = torch.float64
MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0, 3.0])
def test_point_mass_law_is_exact_for_every_eta(eta):
    """Data δ_μ: x̂_0 ≡ μ, so each step's only error could be its noise coefficient. The law of
    x at t_end must be N(m μ, σ² I) exactly, at any step count (here 5 uniform steps to 0.1):
    mean within 5 SE and variance within 5 SE (n = 20000, 2 coordinates)."""
    sde = get_sde("vp")
    mu = torch.tensor([0.7, -0.4], dtype=F64)
    o = GaussianOracle(sde, mu.tolist(), [[0.0, 0.0], [0.0, 0.0]])
    n = 20000
    x = S.dpm_solver(o, sde, _prior(sde, n), steps=5, grid="uniform", t_end=0.1, eta=eta,
                     generator=torch.Generator().manual_seed(1))
    c = coefficients(sde, 0.1)
    z = (x - c.m * mu) / c.sigma  # must be N(0, I)
    assert float(z.mean(0).abs().max()) < 5 / math.sqrt(n)
    assert float((z.var(0) - 1).abs().max()) < 5 * math.sqrt(2 / n), z.var(0)


@pytest.mark.parametrize("eta", [2.0, 3.0])
def test_large_eta_reaches_the_data_law(eta):
    """Gaussian data, 60 log-SNR steps to t_min: moments within 5 SE at n = 4000."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x = S.dpm_solver(o, sde, _prior(sde, 4000), steps=60, eta=eta,
                     generator=torch.Generator().manual_seed(2))
    m, cov = o.marginal_mean_cov(sde.t_min)
    assert_moments(x, m, cov)


def test_few_step_ending_gives_the_posterior_mean_law():
    """``grid="uniform", t_end=t_e, denoise=True`` returns x̂_0 = E[x_0 | x_{t_e}]; for Gaussian
    data its law is N(μ, m² Σ v⁻¹ Σ), v = m² Σ + σ² I (m, σ at t_e). t_e = 0.2 (the benchmark
    uses 0.1, where the shrinkage is too small to reject Σ at this n), η = 1.5, 60 steps:
    moments within 5 SE (n = 4000); the data law itself (Σ) is rejected."""
    from test_samplers_accuracy import assert_moments

    sde = get_sde("vp")
    o = GaussianOracle(sde, MEAN, COV)
    x = S.dpm_solver(o, sde, _prior(sde, 4000), steps=60, grid="uniform", t_end=0.2,
                     denoise=True, eta=1.5, generator=torch.Generator().manual_seed(3))
    c = coefficients(sde, 0.2)
    sigma = torch.tensor(COV, dtype=F64)
    v = c.m**2 * sigma + c.sigma**2 * torch.eye(2, dtype=F64)
    post_cov = c.m**2 * sigma @ torch.linalg.solve(v, sigma)
    assert_moments(x, torch.tensor(MEAN, dtype=F64), post_cov)
    with pytest.raises(AssertionError):
        assert_moments(x, torch.tensor(MEAN, dtype=F64), sigma)
