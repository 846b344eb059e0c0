"""Linear SDEs: marginals against Euler–Maruyama simulation, the identities
f = m'/m and g² = (σ²)' − 2fσ², closed forms from the literature, priors,
log-SNR inversion, reverse drifts and reproducible sampling."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from diffusion_lab.schedules import CosineSchedule, LinearSchedule
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE, get_sde

F64 = torch.float64

SDES = {
    "vp": VPSDE(LinearSchedule(0.1, 20.0)),
    "vp_cosine": VPSDE(CosineSchedule()),
    "subvp": SubVPSDE(LinearSchedule(0.1, 20.0)),
    "ve": VESDE(sigma_min=0.01, sigma_max=50.0),
}


def _added_variance(sde, t):
    """Variance the SDE adds from t = 0: σ(t)² for VP / sub-VP, σ(t)² − σ_min² for VE."""
    m, s = sde.marginal(torch.tensor(t, dtype=F64))
    if isinstance(sde, VESDE):
        return float(m), float(s**2 - sde.sigma_min**2)
    return float(m), float(s**2)


def _euler_maruyama(sde, x0, gen, n_steps, record):
    """x ← x + f(t) x dt + g(t) √dt z on a uniform grid; also the same scheme's exact moments
    (mean factor and added variance), so the discretisation bias is known, not guessed."""
    dt = 1.0 / n_steps
    x, a, v = x0.clone(), 1.0, 0.0
    out = {}
    for k in range(n_steps):
        t = torch.tensor(k * dt, dtype=F64)
        g = float(sde.diffusion(t))
        f = float(sde.drift_coef(t))
        x = x + sde.drift(x, t) * dt + g * math.sqrt(dt) * torch.randn(
            x.shape, generator=gen, dtype=F64)
        a, v = a * (1 + f * dt), v * (1 + f * dt) ** 2 + g**2 * dt
        if (k + 1) in record:
            out[record[k + 1]] = (x.clone(), a, v)
    return out


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("gaussian_x0", [False, True])
def test_marginal_matches_euler_maruyama_simulation(name, gaussian_x0, gen, check_mean_var):
    sde = SDES[name]
    n, n_steps = 10_000, 500
    mu0, s0 = 1.5, 0.7
    if gaussian_x0:
        x0 = mu0 + s0 * torch.randn(n, generator=gen, dtype=F64)
    else:
        x0 = torch.full((n,), mu0, dtype=F64)
    var0 = s0**2 if gaussian_x0 else 0.0
    times = {125: 0.25, 250: 0.5, 500: 1.0}
    sims = _euler_maruyama(sde, x0, gen, n_steps, times)
    for t, (xt, a_em, v_em) in sims.items():
        m, added = _added_variance(sde, t)
        # the Euler–Maruyama scheme's own bias, known exactly from its moment recursion
        bias_mean, bias_var = abs(a_em - m) * mu0, abs(v_em - added) + abs(a_em**2 - m**2) * var0
        mean, var = m * mu0, m**2 * var0 + added
        assert bias_var < 0.025 * var and bias_mean < 0.025 * abs(mean) + 1e-3
        se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
        assert abs(float(xt.mean()) - mean) <= 5 * se_mean + bias_mean, (t, float(xt.mean()), mean)
        assert abs(float(xt.var()) - var) <= 5 * se_var + bias_var, (t, float(xt.var()), var)


@pytest.mark.parametrize("name", list(SDES))
def test_f_is_dlogm_and_g2_is_variance_ode(name):
    sde = SDES[name]
    t = torch.tensor([0.05, 0.2, 0.5, 0.8, 0.95], dtype=F64)
    h = 1e-6
    m_p, s_p = sde.marginal(t + h)
    m_m, s_m = sde.marginal(t - h)
    m, s = sde.marginal(t)
    dm = (m_p - m_m) / (2 * h)
    ds2 = (s_p**2 - s_m**2) / (2 * h)
    f = sde.drift_coef(t)
    g2 = sde.diffusion(t) ** 2
    torch.testing.assert_close(f, dm / m, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(g2, ds2 - 2 * f * s**2, rtol=1e-6, atol=1e-8)
    # g² = −2 σ² λ'(t) with λ = log(m/σ)
    dlam = (sde.half_log_snr(t + h) - sde.half_log_snr(t - h)) / (2 * h)
    torch.testing.assert_close(g2, -2 * s**2 * dlam, rtol=1e-6, atol=1e-8)


def test_closed_forms_from_the_literature():
    t = torch.linspace(0.0, 1.0, 21, dtype=F64)
    beta = 0.1 + 19.9 * t
    log_m = -0.25 * t**2 * 19.9 - 0.5 * t * 0.1
    vp, subvp, ve = SDES["vp"], SDES["subvp"], SDES["ve"]
    m, s = vp.marginal(t)
    torch.testing.assert_close(torch.log(m), log_m)
    torch.testing.assert_close(s**2, 1 - m**2)
    torch.testing.assert_close(vp.drift_coef(t), -0.5 * beta)
    torch.testing.assert_close(vp.diffusion(t), torch.sqrt(beta))
    m2, s2 = subvp.marginal(t)
    torch.testing.assert_close(m2, m)
    torch.testing.assert_close(s2, 1 - m**2)  # σ = 1 − m², no square root
    torch.testing.assert_close(subvp.diffusion(t) ** 2, beta * (1 - m**4))
    m3, s3 = ve.marginal(t)
    torch.testing.assert_close(m3, torch.ones_like(t))
    torch.testing.assert_close(s3, 0.01 * 5000.0**t)
    torch.testing.assert_close(ve.diffusion(t), 0.01 * 5000.0**t * math.sqrt(2 * math.log(5000.0)))
    torch.testing.assert_close(ve.drift_coef(t), torch.zeros_like(t))


def test_subvp_variance_solves_its_ode():
    """Integrate d(σ²)/dt = 2fσ² + g² from σ²(0) = 0 with RK4 and compare with (1 − m²)²."""
    sde = SDES["subvp"]
    n = 400
    dt = 1.0 / n

    def rhs(t, v):
        tt = torch.tensor(t, dtype=F64)
        return 2 * float(sde.drift_coef(tt)) * v + float(sde.diffusion(tt)) ** 2

    v = 0.0
    for k in range(n):
        t = k * dt
        k1 = rhs(t, v)
        k2 = rhs(t + dt / 2, v + dt / 2 * k1)
        k3 = rhs(t + dt / 2, v + dt / 2 * k2)
        k4 = rhs(t + dt, v + dt * k3)
        v += dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if k + 1 in (80, 200, 400):
            _, s = sde.marginal(torch.tensor(t + dt, dtype=F64))
            assert abs(v - float(s) ** 2) < 1e-9


@pytest.mark.parametrize("name", list(SDES))
def test_prior_logp_is_normal_log_density(name, gen):
    sde = SDES[name]
    std = 50.0 if name == "ve" else 1.0
    assert sde.prior_std() == std
    x = std * torch.randn(4, 2, 3, generator=gen, dtype=F64) + 0.3
    want = torch.tensor(norm.logpdf(x.numpy(), scale=std).reshape(4, -1).sum(-1), dtype=F64)
    torch.testing.assert_close(sde.prior_logp(x), want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_prior_sample_moments_and_reproducibility(name, check_mean_var):
    sde = SDES[name]
    a = sde.prior_sample((4000, 3), generator=torch.Generator().manual_seed(3), dtype=F64)
    b = sde.prior_sample((4000, 3), generator=torch.Generator().manual_seed(3), dtype=F64)
    assert torch.equal(a, b)
    check_mean_var(a, 0.0, sde.prior_std() ** 2)


@pytest.mark.parametrize("name", list(SDES))
def test_t_from_log_snr_inverts_log_snr(name):
    sde = SDES[name]
    t = torch.linspace(0.01, 0.99, 25, dtype=F64)
    lam = sde.half_log_snr(t)
    assert bool((torch.diff(lam) < 0).all())
    torch.testing.assert_close(sde.t_from_half_log_snr(lam), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-10, atol=1e-12)
    m, s = sde.marginal(t)
    torch.testing.assert_close(lam, torch.log(m / s))
    torch.testing.assert_close(sde.log_snr(t), torch.log(m**2 / s**2))
    with pytest.raises(ValueError, match="lam"):
        sde.t_from_half_log_snr(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="log_snr must lie in"):
        sde.t_from_log_snr(torch.tensor([-1e3]))


def test_vp_log_snr_is_the_schedule_log_snr_and_twice_lambda():
    """One notation: ``log_snr`` = log(m²/σ²) on schedules and SDEs, λ = ``half_log_snr``."""
    sde = SDES["vp"]
    t = torch.tensor([0.01, 0.3, 0.7, 1.0], dtype=F64)
    m, s = sde.marginal(t)
    torch.testing.assert_close(sde.log_snr(t), torch.log(m**2 / (1 - m**2)))
    torch.testing.assert_close(sde.log_snr(t), sde.schedule.log_snr(t))
    torch.testing.assert_close(2 * sde.half_log_snr(t), sde.log_snr(t))


# -- rectified flow: x_t = (1 − t) x_0 + t z ---------------------------------------------------
def test_rectified_flow_coefficients_follow_from_its_marginal():
    """f = m'/m = −1/(1 − t) and g² = (σ²)' − 2fσ² = 2t/(1 − t), by finite differences of the
    marginal (m, σ) = (1 − t, t); the PF-ODE drift f x + ½ g² ε/σ is the velocity (ε − x)/(1 − t)."""
    sde = get_sde("rectified_flow")
    t = torch.tensor([0.01, 0.2, 0.5, 0.8, 0.99], dtype=F64)
    m, s = sde.marginal(t)
    torch.testing.assert_close(m, 1 - t)
    torch.testing.assert_close(s, t)
    h = 1e-6
    (mp, sp), (mm, sm) = sde.marginal(t + h), sde.marginal(t - h)
    f, g2 = sde.drift_coef(t), sde.diffusion(t) ** 2
    torch.testing.assert_close(f, (mp - mm) / (2 * h) / m, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(g2, (sp**2 - sm**2) / (2 * h) - 2 * f * s**2, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(f, -1 / (1 - t))
    torch.testing.assert_close(g2, 2 * t / (1 - t))
    x, eps = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    velocity = f[:, None] * x + 0.5 * g2[:, None] / s[:, None] * eps
    torch.testing.assert_close(velocity, (eps - x) / (1 - t[:, None]))
    x0_hat = (x - s[:, None] * eps) / m[:, None]
    torch.testing.assert_close(velocity, eps - x0_hat)


def test_rectified_flow_refuses_t_one_and_starts_at_t_max():
    sde = get_sde("rectified_flow")
    assert 0.99 < sde.t_max < 1.0 and sde.prior_std() == sde.t_max
    m, s = sde.marginal(torch.tensor(1.0, dtype=F64))
    assert float(m) == 0.0 and float(s) == 1.0
    for fn in (sde.drift_coef, sde.diffusion):
        with pytest.raises(ValueError, match="infinite at t = 1"):
            fn(torch.tensor([0.5, 1.0], dtype=F64))
    t = torch.linspace(0.01, 0.99, 9, dtype=F64)
    torch.testing.assert_close(sde.t_from_half_log_snr(sde.half_log_snr(t)), t, rtol=1e-10,
                               atol=1e-12)
    torch.testing.assert_close(sde.half_log_snr(t), torch.log((1 - t) / t))


@pytest.mark.parametrize("name", list(SDES))
def test_reverse_drift_and_probability_flow(name, gen):
    sde = SDES[name]
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    t = torch.tensor([0.05, 0.2, 0.5, 0.8, 1.0], dtype=F64)

    def score(x, t):
        return -x**3 + torch.sin(3 * t)[:, None]

    f = sde.drift_coef(t)[:, None]
    g = sde.diffusion(t)
    rev = sde.reverse(score)
    ode = sde.reverse(score, probability_flow=True)
    torch.testing.assert_close(rev.drift(x, t), f * x - g[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(ode.drift(x, t), f * x - 0.5 * g[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(rev.diffusion(t), g)
    torch.testing.assert_close(ode.diffusion(t), torch.zeros_like(g))
    torch.testing.assert_close(sde.drift(x, t), f * x)
    with pytest.raises(TypeError, match="score_fn"):
        sde.reverse("not a function")


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_sample_reproducible_and_consistent(name):
    sde = SDES[name]
    x0 = torch.linspace(-1, 1, 12, dtype=F64).reshape(4, 3)
    t = torch.tensor([0.0, 0.3, 0.6, 1.0], dtype=F64)
    state = torch.random.get_rng_state()
    a, za = sde.marginal_sample(x0, t, generator=torch.Generator().manual_seed(7))
    b, zb = sde.marginal_sample(x0, t, generator=torch.Generator().manual_seed(7))
    c, _ = sde.marginal_sample(x0, t, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG was touched"
    assert torch.equal(a, b) and torch.equal(za, zb) and not torch.equal(a, c)
    m, s = sde.marginal(t)
    torch.testing.assert_close(a, m[:, None] * x0 + s[:, None] * za)
    d, zd = sde.marginal_sample(x0, 0.5, noise=za)
    assert zd is za
    m, s = sde.marginal(torch.tensor(0.5, dtype=F64))
    torch.testing.assert_close(d, m * x0 + s * za)
    with pytest.raises(ValueError, match="noise"):
        sde.marginal_sample(x0, 0.5, noise=za[:2])


def test_input_validation():
    sde = SDES["vp"]
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"\bt\b"):
        sde.drift(x, 1.5)
    with pytest.raises(ValueError, match=r"\bt\b"):
        sde.drift(x, torch.tensor([0.1, 0.2], dtype=F64))  # wrong batch
    with pytest.raises(TypeError, match=r"\bt\b"):
        sde.marginal(torch.tensor([1]))
    with pytest.raises(ValueError, match="x"):
        sde.drift(torch.tensor([[float("nan"), 0.0]]), 0.5)
    with pytest.raises(ValueError, match="sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="unknown sde"):
        get_sde("vpp")
    with pytest.raises(ValueError, match="shape"):
        sde.prior_sample((0, 2))
    assert isinstance(get_sde("sub-vp"), SubVPSDE) and isinstance(get_sde("VE"), VESDE)
