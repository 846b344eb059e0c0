"""Oracles: score = autograd of log_prob, ε* = −σ·score, densities against scipy,
Tweedie / Stein identities against simulation, the closed-form probability-flow map
against an ODE solve, class-conditional selection, and sampling moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from diffusion_lab.ode import rk45
from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle, eight_gaussians_oracle
from diffusion_lab.schedules import LinearSchedule
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE

F64 = torch.float64
SDES = {"vp": VPSDE(LinearSchedule()), "subvp": SubVPSDE(LinearSchedule()),
        "ve": VESDE(0.01, 50.0)}

MEANS = [[-1.0, 0.5], [1.5, -0.5], [0.2, 1.2]]
FULL = [[[0.3, 0.1], [0.1, 0.2]], [[0.05, -0.02], [-0.02, 0.1]], [[0.5, 0.3], [0.3, 0.4]]]
WEIGHTS = [0.5, 0.3, 0.2]


def _oracles(sde):
    return {
        "gauss_full": GaussianOracle(sde, [0.5, -0.3], FULL[0]),
        "gauss_diag": GaussianOracle(sde, [0.5, -0.3], [0.2, 0.05]),
        "mix_iso": GaussianMixtureOracle(sde, MEANS, [0.1, 0.2, 0.05], WEIGHTS),
        "mix_diag": GaussianMixtureOracle(sde, MEANS, [[0.1, 0.3], [0.2, 0.02], [0.05, 0.05]],
                                          WEIGHTS),
        "mix_full": GaussianMixtureOracle(sde, MEANS, FULL, WEIGHTS),
        "mix_point": GaussianMixtureOracle(sde, MEANS, [0.0, 0.0, 0.0], WEIGHTS),
        "labelled": GaussianMixtureOracle(sde, MEANS, FULL, WEIGHTS, labels=[0, 1, 0]),
        "image_shape": GaussianMixtureOracle(sde, torch.arange(12, dtype=F64).reshape(2, 2, 3) / 6,
                                             [0.1, 0.3]),
    }


ORACLE_NAMES = list(_oracles(SDES["vp"]))


def _scipy_log_prob(oracle, x, t):
    """Σ_k w_k N(x; m μ_k, m² Σ_k + σ² I), evaluated with scipy (independent of the oracle)."""
    m, s = oracle.sde.marginal(torch.tensor(t, dtype=F64))
    m, s = float(m), float(s)
    means = oracle.means.numpy()
    covs = oracle.full_covs().numpy()
    dens = 0.0
    for w, mu, cov in zip(oracle.weights.numpy(), means, covs, strict=True):
        c = m**2 * cov + s**2 * np.eye(oracle.D)
        dens = dens + w * multivariate_normal(m * mu, c).pdf(x.reshape(x.shape[0], -1).numpy())
    return np.log(dens)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name", ORACLE_NAMES)
def test_score_is_autograd_of_log_prob_and_eps_is_minus_sigma_score(sde_name, name, gen):
    oracle = _oracles(SDES[sde_name])[name]
    B = 6
    x = torch.randn((B,) + oracle.data_shape, generator=gen, dtype=F64).requires_grad_(True)
    t = torch.tensor([0.02, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=F64)
    ys = [None] if oracle.labels is None else [None, 0, 1, torch.tensor([0, 1, 2, 0, 1, 2])]
    for y in ys:
        lp = oracle.log_prob(x, t, y=y)
        (grad,) = torch.autograd.grad(lp.sum(), x)
        score = oracle.score(x.detach(), t, y=y)
        torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-10)
        _, s = oracle.sde.marginal(t)
        eps = oracle(x.detach(), t, y)
        torch.testing.assert_close(eps, -s.reshape((B,) + (1,) * len(oracle.data_shape)) * score)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name", [n for n in ORACLE_NAMES if n != "mix_point"])
@pytest.mark.parametrize("t", [0.0, 0.4])
def test_log_prob_matches_scipy_mixture(sde_name, name, t, gen):
    oracle = _oracles(SDES[sde_name])[name]
    x = 1.5 * torch.randn((7,) + oracle.data_shape, generator=gen, dtype=F64)
    want = torch.tensor(_scipy_log_prob(oracle, x, t), dtype=F64)
    torch.testing.assert_close(oracle.log_prob(x, t), want, rtol=1e-10, atol=1e-10)


def test_data_mean_cov_and_sample_moments(gen, check_mean_var):
    oracle = _oracles(SDES["vp"])["mix_full"]
    w, mu, cov = np.array(WEIGHTS), np.array(MEANS), np.array(FULL)
    mean = (w[:, None] * mu).sum(0)
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)
    torch.testing.assert_close(oracle.mean(), torch.tensor(mean))
    torch.testing.assert_close(oracle.cov(), torch.tensor(second - np.outer(mean, mean)))
    n = 20_000
    x = oracle.sample(n, generator=gen)
    assert x.shape == (n, 2) and x.dtype == F64
    check_mean_var(x, oracle.mean(), torch.diagonal(oracle.cov()))
    # the off-diagonal covariance, with the CLT error of the product's mean
    c = x - x.mean(0)
    prod = c[:, 0] * c[:, 1]
    assert abs(float(prod.mean() - oracle.cov()[0, 1])) <= 5 * float(prod.std()) / math.sqrt(n)
    a = oracle.sample(50, generator=torch.Generator().manual_seed(1))
    b = oracle.sample(50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_tweedie_and_stein_identities_by_simulation(sde_name, gen):
    """x_t = m x0 + σ z with x0 ~ data: ε*(x_t) = E[z | x_t] so E[(z − ε*) h(x_t)] = 0;
    Stein: E[∇log p_t(x_t)] = 0 and E[∇log p_t(x_t) x_tᵀ] = −I; and p_t has mean m·μ̄
    and covariance m² Cov + σ² I. Each within 5 CLT standard errors."""
    oracle = _oracles(SDES[sde_name])["mix_full"]
    n = 20_000
    x0 = oracle.sample(n, generator=gen)
    z = torch.randn(n, 2, generator=gen, dtype=F64)
    for t in (0.1, 0.5):
        m, s = (float(v) for v in oracle.sde.marginal(torch.tensor(t, dtype=F64)))
        xt = m * x0 + s * z
        eps = oracle(xt, t)
        score = oracle.score(xt, t)
        stats = {
            "residual": (z - eps, torch.zeros(2, dtype=F64)),
            "residual*x": ((z - eps)[:, :, None] * xt[:, None, :],
                           torch.zeros(2, 2, dtype=F64)),
            "score": (score, torch.zeros(2, dtype=F64)),
            "score*x": (score[:, :, None] * xt[:, None, :], -torch.eye(2, dtype=F64)),
            "x": (xt, m * oracle.mean()),
        }
        cov_t = m**2 * oracle.cov() + s**2 * torch.eye(2, dtype=F64)
        c = xt - m * oracle.mean()
        stats["xx"] = (c[:, :, None] * c[:, None, :], cov_t)
        for key, (samples, expected) in stats.items():
            err = (samples.mean(0) - expected).abs()
            se = samples.std(0) / math.sqrt(n)
            assert bool((err <= 5 * se + 1e-12).all()), (sde_name, t, key, err, se)


@pytest.mark.parametrize("sde_name,cov", [("vp", "full"), ("subvp", "full"), ("ve", "full"),
                                          ("vp", "diag")])
def test_gaussian_pf_map_solves_the_probability_flow_ode(sde_name, cov, gen):
    sde = SDES[sde_name]
    oracle = GaussianOracle(sde, [0.5, -0.3], FULL[2] if cov == "full" else [0.4, 0.02])
    x = 2 * torch.randn(5, 2, generator=gen, dtype=F64)
    ode = sde.reverse(oracle.score, probability_flow=True)
    for s, u in ((0.9, 0.05), (0.05, 0.9), (0.3, 0.6)):
        res = rk45(lambda tt, y: ode.drift(y, tt), x, s, u, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(oracle.pf_map(x, s, u), res.y, rtol=1e-6, atol=1e-6)
    # composition: pf(s→u) = pf(t→u) ∘ pf(s→t), and pf(s→s) = id
    torch.testing.assert_close(oracle.pf_map(oracle.pf_map(x, 0.8, 0.4), 0.4, 0.1),
                               oracle.pf_map(x, 0.8, 0.1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(oracle.pf_map(x, 0.3, 0.3), x, rtol=1e-13, atol=1e-13)
    # the affine map pushes N(m_s μ, v_s) onto N(m_t μ, v_t): A v_s Aᵀ = v_t
    mu_s, v_s = oracle.marginal_mean_cov(0.7)
    mu_t, v_t = oracle.marginal_mean_cov(0.2)
    basis = torch.cat([mu_s[None], mu_s[None] + torch.eye(2, dtype=F64)])
    img = oracle.pf_map(basis, 0.7, 0.2)
    torch.testing.assert_close(img[0], mu_t)
    A = (img[1:] - img[0]).T
    torch.testing.assert_close(A @ v_s @ A.T, v_t)


def test_class_conditional_selects_components(gen):
    sde = SDES["vp"]
    oracle = _oracles(sde)["labelled"]  # labels [0, 1, 0]
    assert oracle.num_classes == 2 and oracle.null_label == 2
    class0 = GaussianMixtureOracle(sde, [MEANS[0], MEANS[2]], [FULL[0], FULL[2]],
                                   [WEIGHTS[0], WEIGHTS[2]])
    class1 = GaussianOracle(sde, MEANS[1], FULL[1])
    x = torch.randn(4, 2, generator=gen, dtype=F64)
    t = torch.tensor([0.05, 0.2, 0.5, 0.9], dtype=F64)
    torch.testing.assert_close(oracle.score(x, t, y=0), class0.score(x, t))
    torch.testing.assert_close(oracle.score(x, t, y=1), class1.score(x, t))
    torch.testing.assert_close(oracle.log_prob(x, t, y=1), class1.log_prob(x, t))
    uncond = _oracles(sde)["mix_full"]
    torch.testing.assert_close(oracle.score(x, t, y=oracle.null_label), uncond.score(x, t))
    torch.testing.assert_close(oracle(x, t, None), uncond(x, t))
    per_sample = oracle.score(x, t, y=torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(per_sample[1], class1.score(x[1:2], t[1:2])[0])
    torch.testing.assert_close(per_sample[2], uncond.score(x[2:3], t[2:3])[0])
    # sampling one class: moments of that class's mixture
    xs, labels = oracle.sample(8000, generator=gen, y=1, return_labels=True)
    assert bool((labels == 1).all())
    se = torch.sqrt(torch.diagonal(class1.cov()) / 8000)
    assert bool(((xs.mean(0) - class1.mean()).abs() <= 5 * se).all())
    with pytest.raises(ValueError, match="y"):
        oracle.score(x, t, y=3)
    with pytest.raises(ValueError, match="y"):
        uncond.score(x, t, y=0)


def test_eight_gaussians_oracle():
    oracle = eight_gaussians_oracle(SDES["vp"], radius=2.0, std=0.1)
    torch.testing.assert_close(oracle.means.norm(dim=-1), torch.full((8,), 2.0, dtype=F64))
    torch.testing.assert_close(oracle.mean(), torch.zeros(2, dtype=F64), atol=1e-12, rtol=0)
    # 8 symmetric points at radius 2: covariance (r²/2 + std²) I
    torch.testing.assert_close(oracle.cov(), (2.0 + 0.01) * torch.eye(2, dtype=F64))
    assert oracle.labels.tolist() == list(range(8))


def test_validation():
    sde = SDES["vp"]
    with pytest.raises(TypeError, match="sde"):
        GaussianMixtureOracle("vp", MEANS, [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="covs"):
        GaussianMixtureOracle(sde, MEANS, [0.1, 0.1])
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixtureOracle(sde, MEANS[:1], [[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianMixtureOracle(sde, MEANS[:1], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixtureOracle(sde, MEANS, [0.1, 0.1, 0.1], weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="means"):
        GaussianMixtureOracle(sde, [float("nan"), 0.0], [0.1])
    oracle = GaussianOracle(sde, [0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="x"):
        oracle(torch.zeros(3, 3, dtype=F64), 0.5)
    with pytest.raises(ValueError, match=r"\bt\b"):
        oracle(torch.zeros(3, 2, dtype=F64), 1.5)
