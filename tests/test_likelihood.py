"""Probability-flow log-likelihood and bits/dim, checked against exact Gaussian densities."""

import math

import pytest
import torch

from diffusion_lab.likelihood import (
    bits_per_dim,
    check_on_256_grid,
    log_likelihood,
    nats_to_bits_per_dim,
)
from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE

F64 = torch.float64
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}



def gen(seed):
    return torch.Generator().manual_seed(seed)


def rel_err(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def gaussian_2d(sde):
    A = torch.tensor([[1.0, 0.4], [-0.3, 0.8]], dtype=F64)
    return GaussianOracle(sde, [0.5, -0.3], A @ A.T + 0.2 * torch.eye(2, dtype=F64))


def gaussian_16d_diag(sde):
    return GaussianOracle(sde, torch.linspace(-0.5, 0.5, 16, dtype=F64),
                          torch.linspace(0.2, 1.0, 16, dtype=F64))


def gaussian_8d_full(sde):
    A = torch.randn(8, 8, generator=gen(3), dtype=F64)
    cov = A @ A.T / 8 + 0.3 * torch.eye(8, dtype=F64)
    return GaussianOracle(sde, torch.zeros(8, dtype=F64), cov)


def exact_prior(oracle):
    return lambda x1: oracle.log_prob(x1, 1.0)


# -- exact divergence against analytic densities ----------------------------------------------
@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("make", [gaussian_2d, gaussian_16d_diag], ids=["2d", "16d-diag"])
def test_exact_divergence_matches_gaussian_log_density(sde_name, make):
    sde = SDES[sde_name]()
    oracle = make(sde)
    x = oracle.sample(5, generator=gen(1))
    info = {}
    lp = log_likelihood(oracle, sde, x, divergence="exact", prior_logp=exact_prior(oracle),
                        info=info)
    # with the exact prior the only error is the ODE solver's (measured <= 2e-5)
    assert rel_err(lp, oracle.log_prob(x, sde.t_min)) < 1e-4
    # the state part lands where the closed-form probability-flow map says
    x1_ref = oracle.pf_map(x, sde.t_min, 1.0)
    assert (info["x1"] - x1_ref).abs().max().item() < 1e-4 * (1 + x1_ref.abs().max().item())
    # the package default: the SDE's prior N(0, std^2 I) (mismatch measured <= 4.4e-3 rel.)
    lp_default = log_likelihood(oracle, sde, x, divergence="exact")
    assert rel_err(lp_default, oracle.log_prob(x, 0.0)) < 0.01  # the requirement
    assert rel_err(lp_default, oracle.log_prob(x, sde.t_min)) < 0.01


def test_gaussian_mixture_matches_analytic_log_prob_and_class_conditional():
    sde = VPSDE()
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.25, -0.05], [-0.05, 0.4]],
                         [[0.2, 0.0], [0.0, 0.2]]], dtype=F64)
    oracle = GaussianMixtureOracle(sde, [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], covs,
                                   weights=[0.5, 0.3, 0.2], labels=[0, 1, 1])
    x = oracle.sample(6, generator=gen(2))
    lp = log_likelihood(oracle, sde, x, divergence="exact", prior_logp=exact_prior(oracle))
    assert rel_err(lp, oracle.log_prob(x, sde.t_min)) < 1e-4
    lp = log_likelihood(oracle, sde, x, divergence="exact")
    assert rel_err(lp, oracle.log_prob(x, 0.0)) < 0.01
    # class-conditional: y reaches the model and the prior of class 1 is the exact p_1(.|y)
    y = torch.ones(6, dtype=torch.long)
    lp_y = log_likelihood(oracle, sde, x, divergence="exact", y=y,
                          prior_logp=lambda x1: oracle.log_prob(x1, 1.0, y=y))
    assert rel_err(lp_y, oracle.log_prob(x, sde.t_min, y=y)) < 1e-4


def test_fixed_step_heun_converges_to_the_same_answer():
    sde = VPSDE()
    oracle = gaussian_2d(sde)
    x = oracle.sample(4, generator=gen(5))
    ref = oracle.log_prob(x, sde.t_min)
    errs = [rel_err(log_likelihood(oracle, sde, x, solver="heun", steps=n, divergence="exact",
                                   prior_logp=exact_prior(oracle)), ref) for n in (25, 100)]
    assert errs[1] < 1e-3
    assert errs[1] < errs[0] / 4  # second order: 4x the steps, ~16x smaller error


# -- Hutchinson ------------------------------------------------------------------------------
def log_var_se2(h):
    z = h - h.mean()
    kurtosis = ((z**4).mean() / (z**2).mean() ** 2).item()
    return (kurtosis - 1) / h.numel()


def test_hutchinson_is_unbiased_and_variance_shrinks_with_probes():
    sde = VPSDE()
    oracle = gaussian_8d_full(sde)  # non-diagonal Jacobian, so the estimator has variance
    n = 200
    x = oracle.sample(1, generator=gen(4)).expand(n, 8).clone()
    exact = log_likelihood(oracle, sde, x[:1], divergence="exact", rtol=1e-7, atol=1e-7)[0]
    h1 = log_likelihood(oracle, sde, x, n_probes=1, generator=gen(10))
    h4 = log_likelihood(oracle, sde, x, n_probes=4, generator=gen(11))
    for h in (h1, h4):
        assert abs(h.mean().item() - exact.item()) < 5 * h.std().item() / math.sqrt(n)
    v1, v4 = h1.var().item(), h4.var().item()
    assert v1 > 1e-4  # the estimate is genuinely noisy here
    # var(mean of 4 probes) = var(1 probe) / 4 exactly (independent probes, same trajectory).
    # CLT for a sample variance: sd(log s^2) ~ sqrt((kurtosis - 1) / n)
    se = math.sqrt(log_var_se2(h1) + log_var_se2(h4))
    assert abs(math.log(v1 / v4) - math.log(4)) < 5 * se


def test_generator_reproducibility_and_nfe_count():
    sde = VPSDE()
    oracle = gaussian_8d_full(sde)
    calls = []

    def counting(x, t):
        calls.append(1)
        return oracle(x, t)

    x = oracle.sample(3, generator=gen(6))
    info = {}
    a = log_likelihood(counting, sde, x, generator=gen(7), info=info)
    b = log_likelihood(oracle, sde, x, generator=gen(7))
    c = log_likelihood(oracle, sde, x, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert info["nfe"] == len(calls) == 1 + 6 * (info["steps"] + info["rejected"])
    assert torch.allclose(info["prior_logp"] + info["delta_logp"], a)


# -- bits per dimension ----------------------------------------------------------------------
def quantised_images(oracle, n, seed):
    x = oracle.sample(n, generator=gen(seed))
    k = torch.round((x + 1) * 127.5).clamp(0, 255)
    return 2 * k / 255 - 1


def image_oracle(sde):
    mean = 0.2 * torch.sin(torch.arange(16, dtype=F64)).reshape(1, 4, 4)
    return GaussianOracle(sde, mean, torch.linspace(0.05, 0.15, 16, dtype=F64))


def test_bits_per_dim_against_explicit_change_of_variables():
    sde = VPSDE()
    oracle = image_oracle(sde)
    x = quantised_images(oracle, 6, seed=9)
    info = {}
    bpd = bits_per_dim(oracle, sde, x, generator=gen(12), divergence="exact",
                       prior_logp=exact_prior(oracle), info=info)
    x_deq = info["x_deq"]
    offset = x_deq - x
    w = 2 / 256
    assert bool((offset >= 0).all()) and bool((offset < w).all())
    assert abs(offset.mean().item() - w / 2) < 5 * (w / math.sqrt(12)) / math.sqrt(offset.numel())
    # the documented draw: u ~ U[0, 1) first from the generator, scaled to one bin of width 2/256
    u01 = torch.rand(x.shape, generator=gen(12), dtype=F64)
    assert torch.allclose(offset, w * u01, rtol=0, atol=1e-15)
    # independent: the density of u = (x_deq + 1) * 128 in [0, 256)^D, with no "+7" anywhere
    m, s = (v.item() for v in sde.marginal(torch.tensor(sde.t_min, dtype=F64)))
    mean_x = m * oracle.means[0]
    std_x = torch.sqrt(m**2 * oracle.diag[0] + s**2)
    u = ((x_deq + 1) * 128).reshape(6, 16)
    log_pu = torch.distributions.Normal(128 * (mean_x + 1), 128 * std_x).log_prob(u).sum(-1)
    bpd_ref = -log_pu / (16 * math.log(2))
    assert rel_err(bpd, bpd_ref) < 1e-4
    # the default prior against the data density of the dequantised points, same formula
    bpd_default = bits_per_dim(oracle, sde, x, generator=gen(12), divergence="exact")
    ref0 = -oracle.log_prob(x_deq, 0.0) / (16 * math.log(2)) + 7
    assert rel_err(bpd_default, ref0) < 0.01


def test_bpd_offset_uniform_pixels_are_8_bits():
    D = 784
    log_uniform = torch.full((3,), -D * math.log(2.0), dtype=F64)  # U[-1, 1]^D
    assert torch.allclose(nats_to_bits_per_dim(log_uniform, D), torch.full((3,), 8.0, dtype=F64),
                          rtol=0, atol=1e-12)


def test_bits_per_dim_hutchinson_reproducible():
    sde = VPSDE()
    oracle = image_oracle(sde)
    x = quantised_images(oracle, 2, seed=13)
    a = bits_per_dim(oracle, sde, x, generator=gen(1))
    b = bits_per_dim(oracle, sde, x, generator=gen(1))
    c = bits_per_dim(oracle, sde, x, generator=gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grid_check_accepts_both_256_level_grids():
    k = torch.arange(256, dtype=F64)
    assert torch.equal(check_on_256_grid(2 * k / 255 - 1), k.long())
    assert torch.equal(check_on_256_grid(k / 128 - 1), k.long())
    assert torch.equal(check_on_256_grid((2 * k / 255 - 1).float()), k.long())


# -- errors ----------------------------------------------------------------------------------
def test_bits_per_dim_input_errors():
    sde = VPSDE()
    oracle = image_oracle(sde)
    x = quantised_images(oracle, 2, seed=14)
    with pytest.raises(ValueError, match="x is not on a 256-level grid"):
        bits_per_dim(oracle, sde, x + 0.001)
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        bits_per_dim(oracle, sde, x * 0 + 1 + 2 / 255)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains non-finite"):
        bits_per_dim(oracle, sde, bad)


def test_log_likelihood_argument_errors():
    sde = VPSDE()
    oracle = gaussian_2d(sde)
    x = oracle.sample(2, generator=gen(0))
    with pytest.raises(ValueError, match="unknown divergence 'trace'"):
        log_likelihood(oracle, sde, x, divergence="trace")
    with pytest.raises(ValueError, match="unknown solver"):
        log_likelihood(oracle, sde, x, solver="dopri")
    with pytest.raises(ValueError, match="needs steps"):
        log_likelihood(oracle, sde, x, solver="heun")
    with pytest.raises(ValueError, match="steps is only for fixed-step"):
        log_likelihood(oracle, sde, x, steps=10)
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        log_likelihood(oracle, sde, x, n_probes=0)
    with pytest.raises(ValueError, match=r"t_min must lie in \(0, 1\)"):
        log_likelihood(oracle, sde, x, t_min=0.0)
    big = torch.zeros(2, 65, dtype=F64)
    with pytest.raises(ValueError, match="force_exact"):
        log_likelihood(lambda x, t: x, sde, big, divergence="exact")


def test_model_failures_are_errors():
    sde = VPSDE()
    oracle = gaussian_2d(sde)
    x = oracle.sample(2, generator=gen(0))

    def nan_late(x, t):
        eps = oracle(x, t)
        return eps * float("nan") if t[0] > 0.5 else eps

    with pytest.raises(FloatingPointError, match="non-finite"):
        log_likelihood(nan_late, sde, x, solver="euler", steps=4)

    def detached(x, t):
        with torch.no_grad():
            return oracle(x, t)

    with pytest.raises(RuntimeError, match="no_grad"):
        log_likelihood(detached, sde, x, solver="euler", steps=2)
    with pytest.raises(ValueError, match="shaped like x"):
        log_likelihood(lambda x, t: x[:, :1], sde, x, solver="euler", steps=2)
