"""Checkers for lesson 12, the EDM design space (``exercises/12_*.ipynb``).

All in σ-space: x̃ = x_0 + σ z, the denoiser D(x̃; σ) ≈ E[x_0 | x̃] (Karras et al. 2022)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..preconditioning import edm_preconditioning
from ._common import F64, FAIL, PASS, _call, _compare, _gen, _randn, _say, _Stop, _uniform, checker


def _karras(smin: float, smax: float, n: int, rho: float) -> Tensor:
    u = torch.linspace(0.0, 1.0, n, dtype=F64)
    return (smax ** (1 / rho) + u * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho


@checker("karras_sigmas")
def check_karras_sigmas(fn) -> bool:
    """``fn(sigma_min, sigma_max, n, rho) -> [n]`` decreasing, σ_i = (σ_max^{1/ρ} +
    i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0 … n−1 (EDM eq. 5, without the final 0)."""
    name = "karras_sigmas"
    for smin, smax, n, rho in [(0.002, 80.0, 18, 7.0), (0.01, 50.0, 10, 7.0), (0.05, 20.0, 6, 3.0)]:
        want = _karras(smin, smax, n, rho)
        u_n = torch.arange(n, dtype=F64) / n
        wrong = {
            "ρ is applied the wrong way round: interpolate σ^{1/ρ} linearly and raise to the "
            "power ρ (you interpolated σ^ρ and took the ρ-th root)":
                (smax**rho + torch.linspace(0, 1, n, dtype=F64) * (smin**rho - smax**rho))
                ** (1 / rho),
            "that is uniform in σ (ρ = 1); interpolate σ^{1/ρ}": _karras(smin, smax, n, 1.0),
            "the grid must end exactly at σ_min: the fraction is i/(n − 1), not i/n":
                (smax ** (1 / rho) + u_n * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho,
            "the grid runs the wrong way: sampling starts at σ_max and decreases": want.flip(0),
        }
        got = _call(name, fn, smin, smax, n, rho)
        _compare(name, got, want, wrong, what="the σ grid", ok="", report=False)
    _say(PASS, name, "matches EDM's grid for 3 (σ_min, σ_max, n, ρ)")
    return True


@checker("edm_preconditioning")
def check_edm_preconditioning(fn) -> bool:
    """``fn(sigma [B], sigma_data) -> (c_skip, c_out, c_in, c_noise)``, each ``[B]``."""
    name = "edm_preconditioning"
    g = _gen(120)
    sigma = torch.exp(_uniform(7, -4.0, 4.0, g))
    for sd in (0.5, 1.3):
        want = edm_preconditioning(sigma, sd)
        got = _call(name, fn, sigma.clone(), sd)
        if not isinstance(got, (tuple, list)) or len(got) != 4:
            _say(FAIL, name, "return the four coefficients as a tuple (c_skip, c_out, c_in, "
                             "c_noise)")
            raise _Stop
        r2 = sigma**2 + sd**2
        wrongs = {
            "c_skip": {
                "c_skip is missing (0): the network then predicts x_0 outright, and at small σ "
                "it must reproduce its own input": torch.zeros_like(sigma),
                "c_skip = σ_d²/(σ² + σ_d²), not σ²/(σ² + σ_d²) (it → 1 as σ → 0)":
                    sigma**2 / r2,
                "c_skip = σ_d²/(σ² + σ_d²): σ_d enters squared": sd / r2,
            },
            "c_out": {
                "c_out = σ σ_d/√(σ² + σ_d²): the σ_d factor is missing": sigma / r2.sqrt(),
                "c_out = σ σ_d/√(σ² + σ_d²): a square root is missing in the denominator":
                    sigma * sd / r2,
                "c_out = σ σ_d/√(σ² + σ_d²), not σ (that is ε-prediction's |c_out|)": sigma,
            },
            "c_in": {
                "c_in = 1/√(σ² + σ_d²) (the input x_0 + σ n has variance σ² + σ_d²), not 1/σ":
                    1 / sigma,
                "c_in = 1/√(σ² + σ_d²), not 1/√(σ² + 1)": 1 / (sigma**2 + 1).sqrt(),
            },
            "c_noise": {
                "c_noise = ¼ ln σ: the factor ¼ is missing": torch.log(sigma),
                "c_noise = ¼ ln σ, not σ/4": sigma / 4,
            },
        }
        for (label, w), value in zip(wrongs.items(), want, strict=True):
            _compare(name, got[list(wrongs).index(label)], value, w, what=label, ok="",
                     report=False)
    _say(PASS, name, "c_skip, c_out, c_in, c_noise match EDM's for σ ∈ [e⁻⁴, e⁴], two σ_d")
    return True


def _denoiser(x: Tensor, sigma) -> Tensor:
    """A test denoiser that depends on x and σ (Gaussian data N(0.3, 0.5²) per coordinate)."""
    v = 0.25
    return 0.3 + v / (v + float(sigma) ** 2) * (x - 0.3)


def _heun(x, smax, snext):
    d = (x - _denoiser(x, smax)) / smax
    xe = x + (snext - smax) * d
    if snext == 0:
        return xe, xe, d
    d2 = (xe - _denoiser(xe, snext)) / snext
    return x + (snext - smax) * 0.5 * (d + d2), xe, d


@checker("edm_heun_step")
def check_edm_heun_step(fn) -> bool:
    """``fn(x, denoiser, sigma, sigma_next) -> x_next``: one step of EDM's Algorithm 1 on
    dx/dσ = (x − D(x; σ))/σ: Euler, then Heun's correction unless σ_next = 0."""
    name = "edm_heun_step"
    g = _gen(121)
    cases = [(2.5, 1.2), (0.8, 0.3), (0.3, 0.0)]
    for s, sn in cases:
        x = _randn((5, 2), g) * math.sqrt(0.25 + s**2) + 0.3
        want, xe, d = _heun(x, s, sn)
        wrong = {"that is the Euler step only: add Heun's correction with d' at (x', σ_next)": xe}
        if sn > 0:
            d_at_s = (xe - _denoiser(xe, s)) / s
            wrong.update({
                "evaluate the second slope at σ_next, d' = (x' − D(x'; σ_next))/σ_next, not at σ":
                    x + (sn - s) * 0.5 * (d + d_at_s),
                "Heun averages the two slopes: (d + d')/2 — the ½ is missing":
                    x + (sn - s) * (d + (xe - _denoiser(xe, sn)) / sn),
            })
        got = _call(name, fn, x.clone(), _denoiser, s, sn)
        if sn == 0 and isinstance(got, Tensor) and not bool(torch.isfinite(got).all()):
            _say(FAIL, name, "NaN/inf at σ_next = 0: the last step is a plain Euler step "
                             "(the slope (x − D)/σ is undefined at σ = 0)")
            raise _Stop
        _compare(name, got, want, wrong, what=f"x after the step σ={s} → {sn}", ok="",
                 report=False)
    _say(PASS, name, "Heun steps match (and the last step to σ = 0 is Euler)")
    return True


@checker("churn")
def check_churn(fn) -> bool:
    """``fn(x, sigma, gamma, noise) -> (x_hat, sigma_hat)``: σ̂ = (1 + γ) σ,
    x̂ = x + √(σ̂² − σ²) · noise (raise the noise level from σ to σ̂)."""
    name = "churn"
    g = _gen(122)
    for s, gamma in [(1.5, 0.2), (0.4, 0.414), (3.0, 0.05)]:
        x, z = _randn((5, 2), g), _randn((5, 2), g)
        sh = (1 + gamma) * s
        want = x + math.sqrt(sh**2 - s**2) * z
        wrong = {
            "variances add, not standard deviations: the extra noise has std √(σ̂² − σ²), "
            "not σ̂ − σ": x + (sh - s) * z,
            "σ̂ = (1 + γ) σ, not σ + γ": x + math.sqrt((s + gamma) ** 2 - s**2) * z,
            "the noise std is √(σ̂² − σ²), not σ̂": x + sh * z,
        }
        got = _call(name, fn, x.clone(), s, gamma, z.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            _say(FAIL, name, "return (x_hat, sigma_hat)")
            raise _Stop
        _compare(name, torch.tensor(float(got[1]), dtype=F64), torch.tensor(sh, dtype=F64),
                 {"σ̂ = (1 + γ) σ, not σ + γ": torch.tensor(s + gamma, dtype=F64)},
                 what="σ̂", ok="", report=False)
        _compare(name, got[0], want, wrong, what="x̂", ok="", report=False)
    _say(PASS, name, "σ̂ = (1 + γ) σ and x̂ = x + √(σ̂² − σ²) z on 3 cases")
    return True


def _unic1(x, x0_s, x0_t, sigma_s, sigma_t, m_t, h, variant, rho=0.5, sign=-1.0):
    """UniC-1 written out (``sign=+1`` puts the wrong sign of h into φ and B)."""
    phi = math.expm1(sign * h)
    big_b = sign * h if variant == "bh1" else phi
    return (sigma_t / sigma_s) * x - m_t * phi * x0_s - m_t * big_b * rho * (x0_t - x0_s)


@checker("unic1_step")
def check_unic1_step(fn) -> bool:
    """``fn(x_s, x0_s, x0_t, sigma_s, sigma_t, m_t, h, variant) -> x_t``: UniC-1 (Zhao et al.
    2023) with h = λ_t − λ_s > 0, φ = e^{−h} − 1 and B(h) = φ ("bh2") or −h ("bh1"):

        x_t = (σ_t/σ_s) x_s − m_t φ x̂_0(s) − m_t B(h) · ½ (x̂_0(t) − x̂_0(s)),

    the first-order step (DPM-Solver++(1) = DDIM) corrected with the estimate x̂_0(t) made at
    its result; with bh2 it is that step with x̂_0(s) replaced by the mean of the two."""
    name = "unic1_step"
    g = _gen(123)
    for h, variant in [(0.3, "bh2"), (1.1, "bh1"), (0.05, "bh2"), (0.7, "bh1")]:
        lam_s = float(_uniform(1, -2.0, 2.0, g))
        lam_t = lam_s + h  # a VP process: m = 1/√(1 + e^{−2λ}), σ = e^{−λ} m
        m_s, m_t = (1 / math.sqrt(1 + math.exp(-2 * lam)) for lam in (lam_s, lam_t))
        s_s, s_t = math.exp(-lam_s) * m_s, math.exp(-lam_t) * m_t
        x, x0_s, x0_t = (_randn((5, 2), g) for _ in range(3))
        other = "bh1" if variant == "bh2" else "bh2"
        want = _unic1(x, x0_s, x0_t, s_s, s_t, m_t, h, variant)
        predictor = (s_t / s_s) * x - m_t * math.expm1(-h) * x0_s
        wrong = {
            "that is the predictor alone (DPM-Solver++(1)): add the correction "
            "− m_t B(h) ½ (x̂_0(t) − x̂_0(s))": predictor,
            "the correction weight is ρ = ½ (a trapezoid over the step), not 1":
                _unic1(x, x0_s, x0_t, s_s, s_t, m_t, h, variant, rho=1.0),
            f"B(h) of variant {variant!r} is {'−h' if variant == 'bh1' else 'e^{−h} − 1'}; "
            f"you used {other!r}'s": _unic1(x, x0_s, x0_t, s_s, s_t, m_t, h, other),
            "h = λ_t − λ_s > 0 enters as e^{−h} (φ = e^{−h} − 1 < 0), not e^{h}":
                _unic1(x, x0_s, x0_t, s_s, s_t, m_t, h, variant, sign=1.0),
            "the correction multiplies the difference x̂_0(t) − x̂_0(s), not x̂_0(t) alone":
                predictor - m_t * (-h if variant == "bh1" else math.expm1(-h)) * 0.5 * x0_t,
            "the ratio in front of x_s is σ_t/σ_s (data prediction), not σ_s/σ_t":
                _unic1(x, x0_s, x0_t, s_t, s_s, m_t, h, variant),
        }
        got = _call(name, fn, x.clone(), x0_s.clone(), x0_t.clone(), s_s, s_t, m_t, h, variant)
        _compare(name, got, want, wrong, what=f"x_t (h = {h}, {variant})", ok="", report=False)
    _say(PASS, name, "UniC-1 matches on 4 steps, both B(h) variants")
    return True
