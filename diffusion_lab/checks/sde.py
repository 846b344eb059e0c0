"""Checkers for lesson 05, scores and SDEs (``exercises/05_*.ipynb``)."""

from __future__ import annotations

import math

import torch

from ..oracles import GaussianMixtureOracle
from ..sde import VPSDE, SubVPSDE
from ._common import (
    F64,
    FAIL,
    PASS,
    _as_result,
    _call,
    _compare,
    _gen,
    _randn,
    _say,
    _Stop,
    _uniform,
    _view,
    checker,
)


@checker("gaussian_score")
def check_gaussian_score(fn) -> bool:
    """``fn(x [B, D], mean [D], var) -> ∇ log N(x; mean, var I) = −(x − mean)/var``."""
    name = "gaussian_score"
    g = _gen(10)
    x, mu = _randn((5, 3), g), _randn(3, g)
    var = torch.tensor(0.37, dtype=F64)
    xg = x.clone().requires_grad_(True)  # the truth, independently: autograd of log N
    logp = torch.distributions.Normal(mu, var.sqrt()).log_prob(xg).sum()
    want = torch.autograd.grad(logp, xg)[0]
    wrong = {
        "divide by the variance, not by the standard deviation": -(x - mu) / var.sqrt(),
        "the score points towards the mean: −(x − μ)/v": (x - mu) / var,
        "the score is −(x − μ)/v; you returned the log-density's value, not its gradient":
            -0.5 * (x - mu) ** 2 / var,
    }
    return _compare(name, _call(name, fn, x.clone(), mu.clone(), var.clone()), want, wrong,
                    ok="matches the autograd gradient of log N(x; μ, v I) on 5 random points")


@checker("vp_marginal")
def check_vp_marginal(fn) -> bool:
    """``fn(t [B], beta_min, beta_max) -> (m, sigma)``, each ``[B]``, of the VP SDE."""

    name = "vp_marginal"
    t = _uniform(6, 0.001, 1.0, _gen(11))
    want_m, want_s = VPSDE().marginal(t)
    out = _call(name, fn, t.clone(), 0.1, 20.0)
    if not (isinstance(out, tuple) and len(out) == 2):
        _say(FAIL, name, "return a pair (m, sigma)")
        raise _Stop
    b = 0.1 * t + 0.5 * t**2 * 19.9
    _compare(name, out[0], want_m, {
        "m = exp(−½ B(t)): the ½ is missing (that is ᾱ = m², not m)": torch.exp(-b),
        "B(t) = β_min t + ½ t² (β_max − β_min); you used β(t)·t":
            torch.exp(-0.5 * (0.1 + 19.9 * t) * t),
    }, what="m", ok="", report=False)
    _compare(name, out[1], want_s, {
        "σ = √(1 − m²); without the square root it is sub-VP's σ = 1 − m²":
            SubVPSDE().marginal(t)[1],
        "σ² = 1 − m², not 1 − m": torch.sqrt(1 - want_m),
    }, what="sigma", ok="", report=False)
    _say(PASS, name, "(m, σ) match VPSDE().marginal on 6 random times")
    return True


def _sde_case(seed: int):

    sde = VPSDE()
    oracle = GaussianMixtureOracle(sde, [[1.0, 0.5], [-1.0, -1.0]], [0.05, 0.2])
    g = _gen(seed)
    x = _randn((6, 2), g)
    t = _uniform(6, 0.05, 0.95, g)
    return sde, oracle.score, g, x, t


@checker("reverse_em_step")
def check_reverse_em_step(fn) -> bool:
    """``fn(x, t [B], dt, sde, score_fn, z) -> x − [f(x, t) − g(t)² s(x, t)] dt + g(t) √dt z``,
    one Euler–Maruyama step of the reverse SDE from t to t − dt."""
    name = "reverse_em_step"
    sde, score, g, x, t = _sde_case(12)
    z, dt = _randn(x.shape, g), 0.01
    f, gg = sde.drift(x, t), _view(sde.diffusion(t), x)
    s = score(x, t)
    want = x - (f - gg**2 * s) * dt + gg * math.sqrt(dt) * z
    wrong = {
        "the score term has the wrong sign: the reverse drift is f − g² s": x - (f + gg**2 * s)
        * dt + gg * math.sqrt(dt) * z,
        "that is the probability-flow drift f − ½ g² s; the reverse SDE has f − g² s":
            x - (f - 0.5 * gg**2 * s) * dt + gg * math.sqrt(dt) * z,
        "the noise scales with √dt, not dt": x - (f - gg**2 * s) * dt + gg * dt * z,
        "the noise term g √dt z is missing": x - (f - gg**2 * s) * dt,
        "the drift is multiplied by g, not g²": x - (f - gg * s) * dt + gg * math.sqrt(dt) * z,
        "going backwards in time, the drift is subtracted: x − [f − g² s] dt":
            x + (f - gg**2 * s) * dt + gg * math.sqrt(dt) * z,
    }
    return _compare(name, _call(name, fn, x.clone(), t.clone(), dt, sde, score, z.clone()), want,
                    wrong, ok="matches one Euler–Maruyama step with an exact mixture score on "
                              "6 random cases")


@checker("pf_drift")
def check_pf_drift(fn) -> bool:
    """``fn(x, t [B], sde, score_fn) -> f(x, t) − ½ g(t)² s(x, t)``, the probability-flow ODE."""
    name = "pf_drift"
    sde, score, g, x, t = _sde_case(13)
    want = sde.reverse(score, probability_flow=True).drift(x, t)
    f, gg, s = sde.drift(x, t), _view(sde.diffusion(t), x), score(x, t)
    wrong = {
        "the ½ is missing: f − g² s is the reverse *SDE*'s drift, the ODE has f − ½ g² s":
            f - gg**2 * s,
        "the score term has the wrong sign: f − ½ g² s": f + 0.5 * gg**2 * s,
        "g must be squared: f − ½ g² s": f - 0.5 * gg * s,
        "the forward drift f(x, t) is missing": -0.5 * gg**2 * s,
    }
    return _compare(name, _call(name, fn, x.clone(), t.clone(), sde, score), want, wrong,
                    ok="matches sde.reverse(score, probability_flow=True).drift on 6 random "
                       "cases")


@checker("langevin_step")
def check_langevin_step(fn, n_chains: int = 4000, n_steps: int = 200) -> bool:
    """``fn(x, score_fn, step_size, z) -> x + ε s(x) + √(2ε) z``; the chain must then keep
    N(0, v) (almost) stationary: variance v/(1 − ε/(2v))."""
    name = "langevin_step"
    g = _gen(14)
    x, z = _randn((5, 2), g), _randn((5, 2), g)
    v, eps = 0.5, 0.05

    def score(y):
        return -y / v

    want = x + eps * score(x) + math.sqrt(2 * eps) * z
    wrong = {
        "the noise is √(2ε) z, not √ε z": x + eps * score(x) + math.sqrt(eps) * z,
        "the drift is ε s(x), not ½ ε s(x) (with noise √(2ε) z)": x + 0.5 * eps * score(x)
        + math.sqrt(2 * eps) * z,
        "the score term must be added: x + ε s(x)": x - eps * score(x) + math.sqrt(2 * eps) * z,
        "the noise term √(2ε) z is missing": x + eps * score(x),
    }
    _compare(name, _call(name, fn, x.clone(), score, eps, z.clone()), want, wrong, ok="",
             report=False)
    y = _randn((n_chains,), g) * math.sqrt(v)
    for _ in range(n_steps):
        y = _as_result(name, _call(name, fn, y, score, eps, _randn(y.shape, g)))
    target = v / (1 - eps / (2 * v))
    se = target * math.sqrt(2 / n_chains)
    if abs(float(y.var()) - target) > 5 * se:
        _say(FAIL, name, f"the chain's variance {float(y.var()):.4f} is not the stationary "
                         f"{target:.4f} within 5 standard errors")
        raise _Stop
    _say(PASS, name, f"exact on 5 random cases; {n_chains} chains × {n_steps} steps on N(0, {v}) "
                     f"keep variance {float(y.var()):.3f} ≈ v/(1 − ε/2v) = {target:.3f}")
    return True


@checker("dsm_loss")
def check_dsm_loss(fn) -> bool:
    """``fn(score_pred [B, D], noise [B, D], sigma [B]) -> [B]``: the denoising score
    matching loss per sample, ‖s_θ(x_t) − ∇log q(x_t | x_0)‖² = ‖s_θ + ε/σ‖²."""
    name = "dsm_loss"
    g = _gen(31)
    s, e = _randn((6, 3), g), _randn((6, 3), g)
    sigma = _uniform(6, 0.1, 0.9, g)
    sv = _view(sigma, s)
    want = ((s + e / sv) ** 2).sum(1)
    wrong = {
        "the conditional score is ∇log q(x_t | x_0) = −(x_t − m x_0)/σ² = −ε/σ: the loss is "
        "‖s + ε/σ‖², not ‖s − ε/σ‖²": ((s - e / sv) ** 2).sum(1),
        "one power of σ: (x_t − m x_0)/σ² = σε/σ² = ε/σ": ((s + e / sv**2) ** 2).sum(1),
        "the target is −ε/σ; the 1/σ is missing (that compares a score with a noise)":
            ((s + e) ** 2).sum(1),
        "one value per sample: sum over the coordinates, don't average": ((s + e / sv) ** 2).mean(1),
    }
    got = _call(name, fn, s.clone(), e.clone(), sigma.clone())
    if not _compare(name, got, want, wrong, ok="", report=False):
        return False
    _say(PASS, name, "matches ‖s + ε/σ‖² per sample (= ‖ε − ε_θ‖²/σ² for ε_θ = −σ s)")
    return True
