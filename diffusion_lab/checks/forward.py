"""Checkers for lesson 01, the forward process (``exercises/01_*.ipynb``)."""

from __future__ import annotations

import math

import torch

from ..ddpm import DiscreteDDPM
from ._common import (
    F64,
    FAIL,
    PASS,
    _as_result,
    _call,
    _close,
    _compare,
    _gen,
    _randn,
    _say,
    _Stop,
    _view,
    checker,
)


@checker("alpha_bars")
def check_alpha_bars(fn) -> bool:
    """``fn(betas [T]) -> [T + 1]``: ᾱ_0 = 1, ᾱ_i = ∏_{j≤i} (1 − β_j)."""
    name = "alpha_bars"
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    want = torch.cat([torch.ones(1, dtype=F64), torch.cumprod(1 - betas, 0)])
    got = _as_result(name, _call(name, fn, betas.clone()))
    if got.shape == (1000,):
        if _close(got, want[1:], 1e-9, 1e-12):
            _say(FAIL, name, "ᾱ_0 = 1 is missing: return T + 1 values, ᾱ_0 .. ᾱ_T")
            raise _Stop
        _say(FAIL, name, "return T + 1 values ᾱ_0 .. ᾱ_T (with ᾱ_0 = 1), you returned T")
        raise _Stop
    wrong = {
        "used β where α = 1 − β belongs (∏ β_j instead of ∏ (1 − β_j))":
            torch.cat([torch.ones(1, dtype=F64), torch.cumprod(betas, 0)]),
        "a sum where a product belongs (cumsum instead of cumprod)":
            torch.cat([torch.ones(1, dtype=F64), torch.cumsum(1 - betas, 0)]),
        "the product is shifted by one step (ᾱ_i must include β_i)":
            torch.cat([torch.ones(2, dtype=F64), torch.cumprod(1 - betas, 0)[:-1]]),
    }
    return _compare(name, got, want, wrong, rtol=1e-9, atol=1e-12,
                    ok="matches DiscreteDDPM.linear().alpha_bars for T = 1000")


@checker("q_sample")
def check_q_sample(fn) -> bool:
    """``fn(x0 [B, ...], alpha_bar [B], noise) -> x_i = √ᾱ x_0 + √(1 − ᾱ) ε``."""

    name = "q_sample"
    ddpm = DiscreteDDPM.linear()
    g = _gen(1)
    i = torch.tensor([1, 10, 250, 600, 1000])
    x0, noise = _randn((5, 2, 3), g), _randn((5, 2, 3), g)
    ab = ddpm.alpha_bars[i]
    want = ddpm.q_sample(x0, i, noise)[0]
    got = _call(name, fn, x0.clone(), ab.clone(), noise.clone())
    a = _view(ab, x0)
    wrong = {
        "a square root is missing: use √ᾱ and √(1 − ᾱ), the standard deviations, "
        "not the variances ᾱ and 1 − ᾱ": a * x0 + (1 - a) * noise,
        "√ᾱ and √(1 − ᾱ) are swapped": (1 - a).sqrt() * x0 + a.sqrt() * noise,
        "the noise term needs √(1 − ᾱ), not 1 − √ᾱ": a.sqrt() * x0 + (1 - a.sqrt()) * noise,
        "the noise term is missing": a.sqrt() * x0,
    }
    return _compare(name, got, want, wrong, ok="matches the closed form (and "
                    "DiscreteDDPM.q_sample) on 5 random cases")


@checker("forward_step")
def check_forward_step(fn, n_paths: int = 4000) -> bool:
    """``fn(x_prev, beta, z) -> √(1 − β) x_prev + √β z``; then the iterated chain of
    1000 such steps must match the closed form q(x_T | x_0) in mean and variance."""
    name = "forward_step"
    g = _gen(2)
    x, z = _randn((4, 3), g), _randn((4, 3), g)
    beta = torch.tensor(0.3, dtype=F64)
    want = torch.sqrt(1 - beta) * x + torch.sqrt(beta) * z
    wrong = {
        "the shrink factor √(1 − β) is missing, so the variance grows by β at every step":
            x + beta.sqrt() * z,
        "square roots are missing: the coefficients are standard deviations √(1 − β), √β":
            (1 - beta) * x + beta * z,
        "β and 1 − β are swapped": beta.sqrt() * x + (1 - beta).sqrt() * z,
    }
    _compare(name, _call(name, fn, x.clone(), beta.clone(), z.clone()), want, wrong,
             ok="", report=False)
    # iterate the learner's step 1000 times: statistics must match the closed form
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    x0 = torch.tensor([1.0, -0.5], dtype=F64)
    xs = x0.expand(n_paths, 2).clone()
    checkpoints = {10: None, 100: None, 1000: None}
    for k in range(1, 1001):
        xs = _as_result(name, _call(name, fn, xs, betas[k - 1], _randn(xs.shape, g)))
        if k in checkpoints:
            checkpoints[k] = xs
    ab = torch.cumprod(1 - betas, 0)
    for k, xk in checkpoints.items():
        a = ab[k - 1]
        mean_err = (xk.mean(0) - a.sqrt() * x0).abs().max()
        var_err = (xk.var(0) - (1 - a)).abs().max()
        if mean_err > 5 * math.sqrt((1 - a) / n_paths) or \
                var_err > 5 * (1 - a) * math.sqrt(2 / n_paths):
            _say(FAIL, name, f"one step is right but after {k} steps the chain's mean/variance "
                             f"{xk.mean(0).tolist()} / {xk.var(0).tolist()} differ from the closed "
                             f"form {(a.sqrt() * x0).tolist()} / {float(1 - a):.4f} by more than "
                             "5 standard errors")
            raise _Stop
    _say(PASS, name, f"is exact on a random case, and {n_paths} paths of 1000 iterated steps "
                     "match N(√ᾱ_i x_0, (1 − ᾱ_i) I) at i = 10, 100, 1000 (5 standard errors)")
    return True
