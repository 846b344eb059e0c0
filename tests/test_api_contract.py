"""The public API contract of DESIGN.md, exercised exactly as written there.

Outside checks import these names; this file fails if one disappears or changes
meaning. The numbers are checked against closed forms, not just shapes.
"""

import math

import pytest
import torch

import diffusion_lab as dl


def test_schedule_contract():
    sched = dl.LinearSchedule(beta_min=0.1, beta_max=20.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sched.beta(t), 0.1 + t * 19.9)
    torch.testing.assert_close(sched.integral(t), 0.1 * t + 0.5 * t**2 * 19.9)
    torch.testing.assert_close(sched.alpha_bar(t), torch.exp(-(0.1 * t + 0.5 * t**2 * 19.9)))
    cos = dl.CosineSchedule(s=0.008)
    assert float(cos.alpha_bar(0.0)) == pytest.approx(1.0, abs=1e-12)


def test_sde_contract():
    sched = dl.LinearSchedule(beta_min=0.1, beta_max=20.0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((5,), 0.3, dtype=torch.float64)
    for sde in (dl.VPSDE(sched), dl.SubVPSDE(sched), dl.VESDE(sigma_min=0.01, sigma_max=50.0)):
        assert sde.drift(x, t).shape == x.shape
        assert sde.diffusion(t).shape == (5,)
        m, s = sde.marginal(t)
        assert m.shape == s.shape == (5,)
        z = sde.prior_sample((7, 2), generator=torch.Generator().manual_seed(1))
        assert z.shape == (7, 2)
        assert sde.prior_logp(x).shape == (5,)
    # VP drift is −½β x; VE prior is N(0, σ_max²): its log-density at 0 is −D/2 log(2π σ_max²)
    vp = dl.VPSDE(sched)
    torch.testing.assert_close(vp.drift(x, t), -0.5 * (0.1 + 0.3 * 19.9) * x)
    ve = dl.VESDE(sigma_min=0.01, sigma_max=50.0)
    zero = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    expected = -0.5 * 48 * math.log(2 * math.pi * 50.0**2)
    assert float(ve.prior_logp(zero)) == pytest.approx(expected, rel=1e-12)


METHODS = ["euler_maruyama", "predictor_corrector", "probability_flow",
           "exponential_integrator", "ddim", "dpm_solver", "ancestral"]


@pytest.mark.parametrize("method", METHODS)
def test_sample_contract(method):
    """dl.sample with every advertised method name lands near point-mass data at 0.5."""
    sde = dl.VPSDE(dl.LinearSchedule())
    oracle = dl.GaussianOracle(sde, mean=[0.5, 0.5], cov=[[0.0, 0.0], [0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    # a log-SNR-uniform grid keeps the last steps as fine as σ(t_min) ≈ 0.01 requires
    x0 = dl.sample(oracle, sde, (64, 2), method=method, steps=200, generator=g,
                   dtype=torch.float64, grid="logsnr")
    assert x0.shape == (64, 2)
    # the t_min = 1e-3 marginal of a point mass has std σ(1e-3) ≈ 0.01: 64 draws stay within 5σ
    assert float((x0 - 0.5).abs().max()) < 0.05


def test_bits_per_dim_contract():
    """bits/dim of uniform-ish data under an exact isotropic Gaussian oracle equals the
    analytic value −log p(x_deq)/(D ln 2) + 7 computed from the oracle's density."""
    sde = dl.VPSDE(dl.LinearSchedule())
    oracle = dl.GaussianOracle(sde, mean=torch.zeros(4), cov=torch.full((4,), 0.25))
    g = torch.Generator().manual_seed(3)
    x = (torch.randint(0, 256, (3, 4), generator=g).double() / 127.5) - 1.0
    info = {}
    bpd = dl.bits_per_dim(oracle, sde, x, generator=torch.Generator().manual_seed(0),
                          divergence="exact", info=info, t_min=1e-5)
    assert bpd.shape == (3,)
    x_deq = info["x_deq"]
    exact = -oracle.log_prob(x_deq, 0.0) / (4 * math.log(2)) + 7
    torch.testing.assert_close(bpd, exact, rtol=2e-3, atol=0)


def test_generative_model_contract(tmp_path):
    model = dl.GenerativeModel.load("data/checkpoints/mnist_cond")
    a = model.generate(4, method="dpm_solver", steps=5, seed=0)
    assert a.shape == (4, 1, 28, 28)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    model.save(tmp_path / "copy")
    b = dl.GenerativeModel.load(tmp_path / "copy").generate(4, method="dpm_solver", steps=5,
                                                           seed=0)
    assert torch.equal(a, b)


def test_rectified_flow_and_edm_contract():
    """DESIGN: ``dl.get_sde("rectified_flow")`` has m = 1 − t, σ = t and every sampler works on
    it; ``method="edm", grid="karras"`` is a sampler. On a point mass at μ every sampler's mean
    must land on μ (the stochastic ones keep the noise of their last step, so not each sample)."""
    rf = dl.get_sde("rectified_flow")
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    m, s = rf.marginal(t)
    torch.testing.assert_close(m, 1 - t)
    torch.testing.assert_close(s, t)
    oracle = dl.GaussianOracle(rf, mean=[0.5, -0.25], cov=[[0.0, 0.0], [0.0, 0.0]])
    for method in dl.SAMPLERS:
        x0 = dl.sample(oracle, rf, (64, 2), method=method, steps=40,
                       generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        err = float((x0.mean(0) - torch.tensor([0.5, -0.25], dtype=torch.float64)).abs().max())
        assert err < 0.02, (method, err)
    sde = dl.VPSDE()
    eps_model = dl.GaussianOracle(sde, mean=[0.5, -0.25], cov=[[0.0, 0.0], [0.0, 0.0]])
    x0 = dl.sample(eps_model, sde, (8, 2), method="edm", grid="karras", steps=40,
                   dtype=torch.float64)
    assert float((x0 - torch.tensor([0.5, -0.25], dtype=torch.float64)).abs().max()) < 0.05
