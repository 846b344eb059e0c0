"""The discrete DDPM chain: closed form vs iterated chain (simulation), posterior vs
Bayes' rule, the continuum limit (VP SDE), ancestral sampling with the exact oracle
vs an independent moment recursion, L_simple's expectation, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from diffusion_lab.ddpm import DiscreteDDPM, StepSchedule, ddpm_linear_betas
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.schedules import CosineSchedule, LinearSchedule
from diffusion_lab.sde import VPSDE

F64 = torch.float64
MU = np.array([0.8, -0.4])
SIGMA = np.array([[0.3, 0.12], [0.12, 0.1]])


def _chains(T=100):
    return {
        "from_linear": DiscreteDDPM.from_schedule(LinearSchedule(0.1, 20.0), T),
        "from_cosine": DiscreteDDPM.from_schedule(CosineSchedule(), T),
        "paper_linear": DiscreteDDPM(ddpm_linear_betas(T, 0.1 / T, 20.0 / T)),
    }


@pytest.mark.parametrize("name", list(_chains()))
def test_q_sample_equals_iterated_q_step(name, gen, check_mean_var):
    ddpm = _chains(100)[name]
    n = 20_000
    x0 = torch.tensor([-1.0, 0.5, 2.0], dtype=F64).expand(n, 3)
    ab = np.cumprod(1.0 - ddpm.betas.numpy())  # independent of the class's tables
    x = x0.clone()
    for i in range(1, ddpm.T + 1):
        x = ddpm.q_step(x, i, generator=gen)
        if i in (1, 10, 50, 100):
            mean, var = math.sqrt(ab[i - 1]) * x0[0], 1.0 - ab[i - 1]
            check_mean_var(x, mean, var)
            xq, noise = ddpm.q_sample(x0, i, generator=gen)
            check_mean_var(xq, mean, var)
            want = math.sqrt(ab[i - 1]) * x0 + math.sqrt(1 - ab[i - 1]) * noise
            torch.testing.assert_close(xq, want)


def test_per_sample_indices_and_reproducibility():
    ddpm = _chains(50)["from_linear"]
    x0 = torch.linspace(-1, 1, 8, dtype=F64).reshape(4, 2)
    i = torch.tensor([1, 7, 30, 50])
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    xi, _ = ddpm.q_sample(x0, i, noise=noise)
    for b in range(4):
        row, _ = ddpm.q_sample(x0[b:b + 1], int(i[b]), noise=noise[b:b + 1])
        torch.testing.assert_close(xi[b:b + 1], row, rtol=0, atol=0)
    state = torch.random.get_rng_state()
    a = ddpm.q_step(x0, i, generator=torch.Generator().manual_seed(5))
    b = ddpm.q_step(x0, i, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG was touched"
    torch.testing.assert_close(ddpm.time(i), i.double() / 50)


def _bayes_posterior(betas, i, x_i, x0):
    """Condition the joint Gaussian of (x_{i−1}, x_i) | x0 on x_i with the 2×2 formula."""
    ab = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
    a_prev, alpha, beta = ab[i - 1], 1.0 - betas[i - 1], betas[i - 1]
    mu1, mu2 = math.sqrt(a_prev) * x0, math.sqrt(alpha * a_prev) * x0
    v11 = 1.0 - a_prev
    v12 = math.sqrt(alpha) * v11
    v22 = alpha * v11 + beta
    return mu1 + v12 / v22 * (x_i - mu2), v11 - v12**2 / v22


@pytest.mark.parametrize("name", list(_chains()))
def test_posterior_equals_bayes_rule(name, gen):
    ddpm = _chains(100)[name]
    betas = ddpm.betas.numpy()
    x0 = torch.randn(5, 3, generator=gen, dtype=F64)
    x_i = torch.randn(5, 3, generator=gen, dtype=F64)
    for i in (1, 2, 17, 60, 100):
        mean, var = ddpm.posterior(x_i, x0, i)
        want_mean, want_var = _bayes_posterior(betas, i, x_i.numpy(), x0.numpy())
        torch.testing.assert_close(mean, torch.tensor(want_mean), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(var, torch.tensor(want_var, dtype=F64), rtol=1e-10, atol=1e-14)
    mean, var = ddpm.posterior(x_i, x0, 1)
    torch.testing.assert_close(mean, x0)
    assert float(var) == 0.0
    # per-sample indices
    idx = torch.tensor([3, 40, 99, 100, 1])
    mean, var = ddpm.posterior(x_i, x0, idx)
    for b in range(5):
        m_b, v_b = _bayes_posterior(betas, int(idx[b]), x_i[b].numpy(), x0[b].numpy())
        torch.testing.assert_close(mean[b], torch.tensor(m_b), rtol=1e-10, atol=1e-12)
        assert abs(float(var[b]) - v_b) <= 1e-12


def test_predict_x0_inverts_q_sample_and_ancestral_step_is_posterior_with_x0_hat(gen):
    ddpm = _chains(100)["from_cosine"]
    x0 = torch.randn(6, 2, generator=gen, dtype=F64)
    calls = []

    def eps_model(x, t, y=None):  # an arbitrary (wrong) noise predictor
        calls.append((t.clone(), y))
        return torch.tanh(x) * (1 + t[:, None])

    for i in (1, 2, 50, 100):
        xi, eps = ddpm.q_sample(x0, i, generator=gen)
        torch.testing.assert_close(ddpm.predict_x0(xi, eps, i), x0)
        for variance in ("posterior", "beta"):
            out = ddpm.ancestral_step(eps_model, xi, i, torch.Generator().manual_seed(9),
                                      variance=variance, y=torch.arange(6))
            z = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
            x0_hat = ddpm.predict_x0(xi, eps_model(xi, torch.full((6,), i / 100, dtype=F64)), i)
            mean, post_var = ddpm.posterior(xi, x0_hat, i)
            var = post_var if variance == "posterior" else ddpm.betas[i - 1]
            var = 0.0 * var if i == 1 else var  # Algorithm 2: no noise on the last step
            torch.testing.assert_close(out, mean + torch.sqrt(var) * z, rtol=1e-10, atol=1e-12)
    t, y = calls[0]
    assert t.dtype == F64 and t.shape == (6,) and float(t[0]) == 0.01 and y is not None


@pytest.mark.parametrize("schedule", [LinearSchedule(0.1, 20.0), CosineSchedule()])
def test_from_schedule_hits_vp_marginals_exactly(schedule):
    for T in (10, 1000):
        ddpm = DiscreteDDPM.from_schedule(schedule, T)
        t = torch.arange(1, T + 1, dtype=F64) / T
        m, _ = VPSDE(schedule).marginal(t)
        torch.testing.assert_close(ddpm.alpha_bars[1:], m**2, rtol=1e-12, atol=1e-15)
        assert ddpm.continuum_gap() < 1e-13


def test_paper_linear_betas_converge_to_vp_at_first_order():
    paper = DiscreteDDPM.linear(1000)
    torch.testing.assert_close(paper.betas, ddpm_linear_betas())  # 1e-4 .. 0.02, T = 1000
    assert float(paper.betas[0]) == pytest.approx(1e-4) and float(paper.betas[-1]) == 0.02
    Ts = np.array([250, 500, 1000, 2000])
    gaps = []
    for T in Ts:
        ddpm = DiscreteDDPM(ddpm_linear_betas(int(T), 0.1 / T, 20.0 / T))
        m, _ = VPSDE(LinearSchedule(0.1, 20.0)).marginal(torch.arange(1, T + 1, dtype=F64) / T)
        gaps.append(float((ddpm.alpha_bars[1:] - m**2).abs().max()))
        assert gaps[-1] == pytest.approx(DiscreteDDPM.linear(int(T)).continuum_gap(), rel=1e-9)
    slope = np.polyfit(np.log(Ts), np.log(gaps), 1)[0]
    assert -1.1 < slope < -0.9, (gaps, slope)
    assert gaps[2] < 1e-3  # at T = 1000 the paper's chain is within 1e-3 of the VP SDE


def test_step_schedule_embeds_any_chain_exactly(gen):
    T = 12
    betas = 0.02 + 0.3 * torch.rand(T, generator=gen, dtype=F64)
    ddpm = DiscreteDDPM(betas)
    assert ddpm.continuum_gap() < 1e-14
    sched = StepSchedule(betas)
    torch.testing.assert_close(sched.discrete_betas(T), betas, rtol=1e-12, atol=1e-15)
    for t in (0.0, 0.05, 1 / 12, 0.5, 0.999, 1.0):
        want = quad(lambda s: float(sched.beta(torch.tensor(s, dtype=F64))), 0, t,
                    points=[k / T for k in range(1, T) if k / T < t] or None, limit=100)[0]
        assert float(sched.integral(torch.tensor(t, dtype=F64))) == pytest.approx(want, rel=1e-10,
                                                                                  abs=1e-13)


def _ancestral_moments(betas, variance, mu=MU, sigma=SIGMA):
    """Exact output mean/cov of Algorithm 2 with the exact Gaussian ε* (linear in x):
    x_{i−1} = M_i x + c_i + s_i z, M_i = (I − β_i C_i⁻¹)/√α_i, c_i = β_i C_i⁻¹ √ᾱ_i μ/√α_i,
    C_i = ᾱ_i Σ + (1 − ᾱ_i) I; started from x_T ~ N(0, I)."""
    T = len(betas)
    ab = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
    mean, cov, eye = np.zeros(2), np.eye(2), np.eye(2)
    for i in range(T, 0, -1):
        beta, alpha = betas[i - 1], 1.0 - betas[i - 1]
        C_inv = np.linalg.inv(ab[i] * sigma + (1 - ab[i]) * eye)
        M = (eye - beta * C_inv) / math.sqrt(alpha)
        c = beta * C_inv @ (math.sqrt(ab[i]) * mu) / math.sqrt(alpha)
        post = (1 - ab[i - 1]) / (1 - ab[i]) * beta
        s2 = 0.0 if i == 1 else (beta if variance == "beta" else post)
        mean, cov = M @ mean + c, M @ cov @ M.T + s2 * eye
    return mean, cov


def test_moment_recursion_converges_to_the_data():
    """The exact-ε* ancestral sampler is biased only by discretisation: bias → 0 as T grows."""
    Ts = np.array([100, 200, 400, 800])
    for variance in ("posterior", "beta"):
        errs = []
        for T in Ts:
            betas = LinearSchedule(0.1, 20.0).discrete_betas(int(T)).numpy()
            mean, cov = _ancestral_moments(betas, variance)
            errs.append(max(np.abs(mean - MU).max(), np.abs(cov - SIGMA).max()))
        slope = np.polyfit(np.log(Ts), np.log(errs), 1)[0]
        assert -1.1 < slope < -0.8, (variance, errs, slope)  # first order in 1/T
        assert errs[-1] < 6e-3


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ancestral_sampling_with_exact_oracle_reproduces_data(variance):
    T, n = 200, 4000
    ddpm = DiscreteDDPM.from_schedule(LinearSchedule(0.1, 20.0), T)
    oracle = GaussianOracle(ddpm.vp_sde(), MU, SIGMA)
    steps = []
    x = ddpm.ancestral_sample(oracle, (n, 2), generator=torch.Generator().manual_seed(11),
                              variance=variance, dtype=F64, progress=False,
                              callback=lambda k, t, x, x0: steps.append((k, t)))
    assert len(steps) == T and steps[0] == (0, 1.0) and steps[-1] == (T - 1, 1 / T)
    mean, cov = _ancestral_moments(ddpm.betas.numpy(), variance)
    bias = max(np.abs(mean - MU).max(), np.abs(cov - SIGMA).max())
    assert bias < 0.025  # O(1/T); β̃ underestimates, β overestimates the variance
    # sample mean and covariance vs the exact recursion, within 5 CLT standard errors
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0).numpy() - mean) <= 5 * se_mean)
    c = (x - x.mean(0)).numpy()
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - cov) <= 5 * se_cov)
    # and therefore vs the data, within 5 SE plus the (small) discretisation bias
    assert np.all(np.abs(x.mean(0).numpy() - MU) <= 5 * se_mean + bias)
    assert np.all(np.abs(prods.mean(0) - SIGMA) <= 5 * se_cov + bias)
    again = ddpm.ancestral_sample(oracle, (n, 2), generator=torch.Generator().manual_seed(11),
                                  variance=variance, dtype=F64, progress=False)
    assert torch.equal(x, again)


def test_loss_simple_with_exact_oracle_has_known_expectation():
    """For N(μ, diag s²) data, E‖ε − ε*‖²/D = mean_i mean_d ᾱ_i s_d²/(ᾱ_i s_d² + 1 − ᾱ_i)."""
    T = 50
    ddpm = DiscreteDDPM.from_schedule(LinearSchedule(0.1, 20.0), T)
    s2 = torch.tensor([0.5, 2.0], dtype=F64)
    oracle = GaussianOracle(ddpm.vp_sde(), [0.3, -1.0], s2)
    ab = ddpm.alpha_bars[1:, None]
    want = float((ab * s2 / (ab * s2 + 1 - ab)).mean())
    gen = torch.Generator().manual_seed(2)
    state = torch.random.get_rng_state()
    losses = torch.stack([ddpm.loss_simple(oracle, oracle.sample(200, generator=gen), gen)
                          for _ in range(100)])
    assert torch.equal(torch.random.get_rng_state(), state)
    se = float(losses.std()) / math.sqrt(len(losses))
    assert abs(float(losses.mean()) - want) <= 5 * se, (float(losses.mean()), want, se)
    # a predictor that ignores x does worse: E‖ε‖²/D = 1
    x0 = oracle.sample(20000, generator=gen)
    zero = ddpm.loss_simple(lambda x, t: torch.zeros_like(x), x0, gen)
    assert abs(float(zero) - 1.0) < 5 * math.sqrt(2 / 40000)


def test_loss_simple_draws_uniform_indices_and_passes_labels():
    T, n = 10, 20_000
    ddpm = DiscreteDDPM.from_schedule(LinearSchedule(), T)
    seen = {}

    def model(x, t, y=None):
        seen["t"], seen["y"] = t, y
        return torch.zeros_like(x)

    ddpm.loss_simple(model, torch.zeros(n, 1, dtype=F64), torch.Generator().manual_seed(4),
                     y=torch.zeros(n, dtype=torch.long))
    i = torch.round(seen["t"] * T).long()
    torch.testing.assert_close(seen["t"], i.double() / T)
    counts = torch.bincount(i, minlength=T + 1)
    assert counts[0] == 0 and int(counts.sum()) == n
    p = 1 / T
    assert bool(((counts[1:] - n * p).abs() <= 5 * math.sqrt(n * p * (1 - p))).all()), counts
    assert seen["y"] is not None


@pytest.mark.parametrize("bad,exc", [
    (0, ValueError), (101, ValueError), (-3, ValueError), (torch.tensor([1, 101]), ValueError),
    (torch.tensor([[1, 2]]), ValueError), (1.0, TypeError), (torch.tensor([0.5]), TypeError),
    (True, TypeError), ("3", TypeError),
])
def test_bad_index_is_rejected(bad, exc):
    ddpm = _chains(100)["from_linear"]
    x = torch.zeros(2, 3, dtype=F64)
    match = r"1\.\.(T = 1\.\.)?100"
    with pytest.raises(exc, match=match):
        ddpm.q_sample(x, bad)
    with pytest.raises(exc, match=match):
        ddpm.q_step(x, bad)
    with pytest.raises(exc, match=match):
        ddpm.posterior(x, x, bad)
    with pytest.raises(exc, match=match):
        ddpm.ancestral_step(lambda x, t: x, x, bad)


def test_bad_arguments():
    ddpm = _chains(100)["from_linear"]
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"\[B\]"):
        ddpm.q_sample(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="variance"):
        ddpm.ancestral_step(lambda x, t: x, x, 5, variance="fixed_large")
    with pytest.raises(ValueError, match="noise"):
        ddpm.q_sample(x, 3, noise=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="x0"):
        ddpm.posterior(x, torch.zeros(2, 2, dtype=F64), 3)
    for betas, exc in [(torch.tensor([0.1, 0.0]), ValueError),
                       (torch.tensor([0.1, 1.0]), ValueError),
                       (torch.tensor([0.1, float("nan")]), ValueError),
                       (torch.tensor([[0.1]]), ValueError), (torch.tensor([1, 2]), TypeError),
                       ([0.1, 0.2], TypeError)]:
        with pytest.raises(exc, match="betas"):
            DiscreteDDPM(betas)
    with pytest.raises(ValueError, match="beta_end"):
        ddpm_linear_betas(10, 1e-4, 1.5)
    with pytest.raises(TypeError, match="schedule"):
        DiscreteDDPM.from_schedule("linear", 10)
