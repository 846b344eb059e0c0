"""Checkers for lesson 03, the reverse process and training (``exercises/03_*.ipynb``)."""

from __future__ import annotations

import torch

from ..ddpm import DiscreteDDPM
from ._common import FAIL, PASS, _call, _compare, _gen, _randn, _say, _Stop, _uniform, _view, checker


def _ddpm_cases():

    ddpm = DiscreteDDPM.linear()
    g = _gen(6)
    idx = [2, 17, 300, 750, 1000]
    x0, xi = _randn((5, 3), g), _randn((5, 3), g)
    return ddpm, g, idx, x0, xi


@checker("posterior")
def check_posterior(fn) -> bool:
    """``fn(x_i, x0, beta_i, alpha_bar_i, alpha_bar_prev) -> (mean, variance)`` of
    q(x_{i−1} | x_i, x_0), all coefficients 0-d float64 tensors."""
    name = "posterior"
    ddpm, _, idx, x0, xi = _ddpm_cases()
    for i in idx:
        b, ab, abp = ddpm.betas[i - 1], ddpm.alpha_bars[i], ddpm.alpha_bars[i - 1]
        want_mean, want_var = ddpm.posterior(xi, x0, i)
        out = _call(name, fn, xi.clone(), x0.clone(), b.clone(), ab.clone(), abp.clone())
        if not (isinstance(out, tuple) and len(out) == 2):
            _say(FAIL, name, "return a pair (mean, variance)")
            raise _Stop
        c0, ci = abp.sqrt() * b / (1 - ab), (1 - b).sqrt() * (1 - abp) / (1 - ab)
        _compare(name, out[0], want_mean, {
            "the coefficients of x_0 and x_i are swapped": ci * x0 + c0 * xi,
            "a square root is missing: x_0's coefficient has √ᾱ_{i−1}, x_i's √α_i":
                abp * b / (1 - ab) * x0 + (1 - b) * (1 - abp) / (1 - ab) * xi,
            "the denominator is 1 − ᾱ_i, not 1 − ᾱ_{i−1}":
                abp.sqrt() * b / (1 - abp) * x0 + (1 - b).sqrt() * (1 - abp) / (1 - abp) * xi,
        }, what=f"the mean (i = {i})", ok="", report=False)
        _compare(name, out[1], want_var, {
            "that is the forward variance β_i; the posterior's is β̃_i = "
            "(1 − ᾱ_{i−1})/(1 − ᾱ_i) β_i": b,
            "the ratio is upside down: β̃_i = (1 − ᾱ_{i−1})/(1 − ᾱ_i) β_i":
                (1 - ab) / (1 - abp) * b,
        }, what=f"the variance (i = {i})", ok="", report=False)
    _say(PASS, name, "mean and variance match DiscreteDDPM.posterior at i = 2, 17, 300, "
                     "750, 1000")
    return True


@checker("predict_x0")
def check_predict_x0(fn) -> bool:
    """``fn(x_i, eps, alpha_bar [B]) -> x̂_0 = (x_i − √(1 − ᾱ) ε)/√ᾱ``."""
    name = "predict_x0"
    ddpm, g, idx, _, xi = _ddpm_cases()
    i = torch.tensor(idx)
    eps = _randn(xi.shape, g)
    ab = ddpm.alpha_bars[i]
    a = _view(ab, xi)
    want = ddpm.predict_x0(xi, eps, i)
    wrong = {
        "square roots are missing: x̂_0 = (x_i − √(1 − ᾱ) ε)/√ᾱ": (xi - (1 - a) * eps) / a,
        "the noise must be subtracted, not added": (xi + (1 - a).sqrt() * eps) / a.sqrt(),
        "divide by √ᾱ, don't multiply": (xi - (1 - a).sqrt() * eps) * a.sqrt(),
    }
    return _compare(name, _call(name, fn, xi.clone(), eps.clone(), ab.clone()), want, wrong,
                    ok="matches DiscreteDDPM.predict_x0 on 5 random cases")


@checker("ancestral_mean")
def check_ancestral_mean(fn) -> bool:
    """``fn(x_i, eps, beta_i, alpha_bar_i) -> (x_i − β_i/√(1 − ᾱ_i) ε)/√(1 − β_i)``, the
    posterior mean with x_0 replaced by x̂_0(x_i, ε)."""
    name = "ancestral_mean"
    ddpm, g, idx, _, xi = _ddpm_cases()
    eps = _randn(xi.shape, g)
    for i in idx:
        b, ab = ddpm.betas[i - 1], ddpm.alpha_bars[i]
        x0_hat = ddpm.predict_x0(xi, eps, i)
        want = ddpm.posterior(xi, x0_hat, i)[0]
        _compare(name, _call(name, fn, xi.clone(), eps.clone(), b.clone(), ab.clone()), want, {
            "√(1 − ᾱ_i) is missing its square root": (xi - b / (1 - ab) * eps) / (1 - b).sqrt(),
            "the division by √α_i = √(1 − β_i) is missing": xi - b / (1 - ab).sqrt() * eps,
            "the noise must be subtracted, not added": (xi + b / (1 - ab).sqrt() * eps)
            / (1 - b).sqrt(),
            "the weight of ε is β_i/√(1 − ᾱ_i), not √(1 − ᾱ_i)":
                (xi - (1 - ab).sqrt() * eps) / (1 - b).sqrt(),
        }, what=f"the mean (i = {i})", ok="", report=False)
    _say(PASS, name, "equals the posterior mean at x̂_0(x_i, ε) for i = 2, 17, 300, 750, 1000")
    return True


@checker("gaussian_kl")
def check_gaussian_kl(fn) -> bool:
    """``fn(mu1 [B, D], var1 [B], mu2 [B, D], var2 [B]) -> [B]``:
    KL(N(μ₁, v₁ I) ‖ N(μ₂, v₂ I)) = ½ Σ_d [v₁/v₂ − 1 + log(v₂/v₁) + (μ₁ − μ₂)²/v₂]."""
    name = "gaussian_kl"
    g = _gen(7)
    B, D = 5, 3
    mu1, mu2 = _randn((B, D), g), _randn((B, D), g)
    v1, v2 = _uniform(B, 0.1, 2.0, g), _uniform(B, 0.1, 2.0, g)
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu1, v1[:, None].sqrt()),
        torch.distributions.Normal(mu2, v2[:, None].sqrt())).sum(-1)

    def kl(a1, w1, a2, w2, logterm=None):
        lt = torch.log(w2 / w1) if logterm is None else logterm
        return 0.5 * (D * (w1 / w2 - 1 + lt) + ((a1 - a2) ** 2).sum(-1) / w2)

    wrong = {
        "the arguments are swapped: KL(p‖q) is not symmetric": kl(mu2, v2, mu1, v1),
        "the log term is log(σ₂/σ₁) for *standard deviations*, i.e. ½ log(v₂/v₁) per "
        "coordinate; with variances it is log(v₂/v₁) inside the ½":
            kl(mu1, v1, mu2, v2, logterm=0.5 * torch.log(v2 / v1)),
        "the −1 (the −D) is missing": want + 0.5 * D,
        "the sum over the D coordinates is missing for the trace and log terms":
            0.5 * (v1 / v2 - 1 + torch.log(v2 / v1) + ((mu1 - mu2) ** 2).sum(-1) / v2),
        "you averaged over coordinates instead of summing": want / D,
    }
    return _compare(name, _call(name, fn, mu1.clone(), v1.clone(), mu2.clone(), v2.clone()),
                    want, wrong, ok="matches torch.distributions.kl_divergence on 5 random pairs")


def _l_simple_model(x, t):
    """A fixed stand-in for ε_θ that depends on both x and t (so every slip shows)."""
    return 0.4 * x + torch.sin(3.0 * t)[:, None] - 0.2 * x**2


@checker("l_simple_loss")
def check_l_simple_loss(fn) -> bool:
    """``fn(eps_model, x0 [B, D], alpha_bar [B], t [B], noise [B, D]) -> scalar``: the
    L_simple loss of one training batch, mean over batch and coordinates of
    (ε_θ(√ᾱ x_0 + √(1 − ᾱ) ε, t) − ε)²."""
    name = "l_simple_loss"
    g = _gen(8)
    idx = torch.tensor([1, 10, 100, 400, 800, 1000])
    ab = DiscreteDDPM.linear().alpha_bars[idx]
    t = idx.to(torch.float64) / 1000
    x0, noise = _randn((6, 3), g), _randn((6, 3), g)
    a = _view(ab, x0)

    def loss(x_in, target):
        return ((_l_simple_model(x_in, t) - target) ** 2).mean()

    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    wrong = {
        "x_t = √ᾱ x_0 + √(1 − ᾱ) ε: the square roots are missing":
            loss(a * x0 + (1 - a) * noise, noise),
        "ᾱ and 1 − ᾱ are swapped: the signal keeps √ᾱ, the noise gets √(1 − ᾱ)":
            loss((1 - a).sqrt() * x0 + a.sqrt() * noise, noise),
        "the target of ε-prediction is the noise ε, not x_0": loss(x_t, x0),
        "the network must see the noisy x_t, not the clean x_0": loss(x0, noise),
        "L_simple averages over batch and coordinates; you summed":
            ((_l_simple_model(x_t, t) - noise) ** 2).sum(),
    }
    got = _call(name, fn, _l_simple_model, x0.clone(), ab.clone(), t.clone(), noise.clone())
    return _compare(name, got, loss(x_t, noise), wrong,
                    ok="the L_simple loss of a 6-sample batch at i = 1 … 1000 matches")


@checker("tweedie_x0")
def check_tweedie_x0(fn) -> bool:
    """``fn(x [B, D], score [B, D], m [B], sigma [B]) -> E[x_0 | x_t = x]``, Tweedie's
    formula (x + σ² ∇log p_t(x))/m (``parameterizations.score_to_x0``)."""
    from ..parameterizations import score_to_x0

    name = "tweedie_x0"
    g = _gen(9)
    x, score = _randn((5, 2), g), _randn((5, 2), g)
    m = _uniform(5, 0.2, 0.99, g)
    sigma = (1 - m**2).sqrt()
    mv, sv = _view(m, x), _view(sigma, x)
    wrong = {
        "the score is multiplied by σ², not σ (differentiate N(x; m x_0, σ²I))":
            (x + sv * score) / mv,
        "divide by m: x_t = m x_0 + σ ε, so x_0 carries the factor 1/m": x + sv**2 * score,
        "the sign: σ² ∇log p_t(x) = m E[x_0 | x] − x, so the score is *added*":
            (x - sv**2 * score) / mv,
        "divide by m, don't multiply": (x + sv**2 * score) * mv,
    }
    got = _call(name, fn, x.clone(), score.clone(), m.clone(), sigma.clone())
    return _compare(name, got, score_to_x0(x, score, m, sigma), wrong,
                    ok="matches parameterizations.score_to_x0 on 5 random points")
