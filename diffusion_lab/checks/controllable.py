"""Checkers for lesson 07, controllable generation (``exercises/07_*.ipynb``).

Conventions: ``mask`` = 1 where a coordinate is *generated* (free), 0 where it is known;
x_t = m_t x_0 + σ_t z; classifier-free guidance ε̃ = ε_∅ + w (ε_y − ε_∅) (w = 1: the
conditional model, w = 0: the unconditional one)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import F64, FAIL, PASS, _call, _compare, _gen, _randn, _say, _Stop, _uniform, checker


def _masks(g, shape, n: int = 3) -> list[Tensor]:
    """n random 0/1 masks with both values present."""
    out = []
    while len(out) < n:
        m = (torch.rand(shape, generator=g) < 0.5).to(F64)
        if 0 < float(m.sum()) < m.numel():
            out.append(m)
    return out


@checker("replacement_step")
def check_replacement_step(fn) -> bool:
    """``fn(x_t, x_known, mask, m_t, sigma_t, z) -> x̃_t``: the known part replaced by a
    forward sample at the same level, x̃_t = M x_t + (1 − M)(m_t x_known + σ_t z)
    (M = ``mask``, 1 = generated); ``m_t``, ``sigma_t`` floats."""
    name = "replacement_step"
    g = _gen(170)
    for mask in _masks(g, (6,)):
        x, k, z = _randn((4, 6), g), _randn((4, 6), g), _randn((4, 6), g)
        m = float(_uniform(1, 0.3, 0.9, g))
        s = (1 - m * m) ** 0.5
        noisy = m * k + s * z
        want = mask * x + (1 - mask) * noisy
        wrong = {
            "the mask is inverted: mask = 1 marks the coordinates to *generate* (keep x_t "
            "there), the known ones get the noised observation": (1 - mask) * x + mask * noisy,
            "the known part is not noised: at level t it must look like x_t, i.e. "
            "m_t x_known + σ_t z, not the clean x_known": mask * x + (1 - mask) * k,
            "the known part is not scaled by m_t: q(x_t | x_0) has mean m_t x_0":
                mask * x + (1 - mask) * (k + s * z),
            "σ_t² where σ_t belongs: the noise's standard deviation is σ_t":
                mask * x + (1 - mask) * (m * k + s * s * z),
        }
        got = _call(name, fn, x.clone(), k.clone(), mask.clone(), m, s, z.clone())
        _compare(name, got, want, wrong, what="x̃_t", ok="", report=False)
    _say(PASS, name, "M x_t + (1 − M)(m_t x_known + σ_t z) on 3 random masks")
    return True


def _spd(g, d: int) -> Tensor:
    a = _randn((d, d), g)
    return a @ a.T / d + 0.3 * torch.eye(d, dtype=F64)


def gaussian_conditional(mu: Tensor, cov: Tensor, mask: Tensor, x_known: Tensor):
    """Reference: (mean, cov) of x_F | x_O = x_known[O] under N(mu, cov)."""
    f, o = mask.bool(), ~mask.bool()
    s_fo = cov[f][:, o]
    gain = s_fo @ torch.linalg.inv(cov[o][:, o])
    return mu[f] + gain @ (x_known[o] - mu[o]), cov[f][:, f] - gain @ s_fo.T


@checker("gaussian_conditional")
def check_gaussian_conditional(fn) -> bool:
    """``fn(mu [D], cov [D, D], mask [D], x_known [D]) -> (mean [F], cov [F, F])`` of the
    free coordinates given the known ones (Schur complement):
    μ_F + Σ_FO Σ_OO⁻¹ (b − μ_O),  Σ_FF − Σ_FO Σ_OO⁻¹ Σ_OF."""
    name = "gaussian_conditional"
    g = _gen(171)
    for mask in ([1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]):
        mask = torch.tensor(mask, dtype=F64)
        d = mask.numel()
        mu, cov, x = _randn(d, g), _spd(g, d), _randn(d, g)
        f, o = mask.bool(), ~mask.bool()
        mean, var = gaussian_conditional(mu, cov, mask, x)
        inv_mean, inv_var = gaussian_conditional(mu, cov, 1 - mask, x)
        gain = cov[f][:, o] @ torch.linalg.inv(cov[o][:, o])
        got = _call(name, fn, mu.clone(), cov.clone(), mask.clone(), x.clone())
        if not isinstance(got, tuple) or len(got) != 2:
            _say(FAIL, name, f"return a pair (mean, cov), got {type(got).__name__}")
            raise _Stop
        if got[0] is not None and getattr(got[0], "shape", None) == inv_mean.shape \
                and inv_mean.shape != mean.shape:
            _say(FAIL, name, "the mask is inverted: mask = 1 marks the free coordinates (the "
                             "ones to generate); you conditioned the known ones on them")
            raise _Stop
        _compare(name, got[0], mean, {
            "the mask is inverted: condition the free coordinates (mask = 1) on the known "
            "ones": inv_mean if inv_mean.shape == mean.shape else mean + 1e3,
            "the prior mean of the known part is not subtracted: μ_F + Σ_FO Σ_OO⁻¹ (b − μ_O)":
                mu[f] + gain @ x[o],
            "the prior mean μ_F is missing: μ_F + Σ_FO Σ_OO⁻¹ (b − μ_O)": gain @ (x[o] - mu[o]),
            "Σ_OO must be inverted: the gain is Σ_FO Σ_OO⁻¹": mu[f] + cov[f][:, o] @ cov[o][:, o]
                @ (x[o] - mu[o]),
        }, what="the conditional mean", ok="", report=False)
        _compare(name, got[1], var, {
            "the Schur correction is missing: observing x_O shrinks the covariance to "
            "Σ_FF − Σ_FO Σ_OO⁻¹ Σ_OF": cov[f][:, f],
            "the correction has the wrong sign: conditioning never adds variance, "
            "Σ_FF − Σ_FO Σ_OO⁻¹ Σ_OF": cov[f][:, f] + gain @ cov[o][:, f],
            "Σ_OO must be inverted in the correction: Σ_FF − Σ_FO Σ_OO⁻¹ Σ_OF":
                cov[f][:, f] - cov[f][:, o] @ cov[o][:, o] @ cov[o][:, f],
            "the mask is inverted (that is the covariance of the known block)":
                inv_var if inv_var.shape == var.shape else var + 1e3,
        }, what="the conditional covariance", ok="", report=False)
    _say(PASS, name, "Schur-complement mean and covariance on 3 masks of a 5-D Gaussian")
    return True


@checker("x0_projection_step")
def check_x0_projection_step(fn) -> bool:
    """``fn(x_s, eps, x_known, mask, m_s, sigma_s, m_t, sigma_t) -> x_t``: one deterministic
    DDIM step through the projected x̂_0: x̂_0 = (x_s − σ_s ε̂)/m_s,
    x̂_0 ← M x̂_0 + (1 − M) x_known, x_t = m_t x̂_0 + σ_t ε̂ (floats m, σ)."""
    name = "x0_projection_step"
    g = _gen(172)
    for mask in _masks(g, (6,)):
        x, eps, k = _randn((4, 6), g), _randn((4, 6), g), _randn((4, 6), g)
        ms, mt = sorted(float(v) for v in _uniform(2, 0.2, 0.95, g))
        ss, st = (1 - ms * ms) ** 0.5, (1 - mt * mt) ** 0.5
        x0 = (x - ss * eps) / ms
        proj = mask * x0 + (1 - mask) * k
        want = mt * proj + st * eps
        wrong = {
            "the mask is inverted: keep x̂_0 where mask = 1 (generated), put x_known where "
            "mask = 0": mt * ((1 - mask) * x0 + mask * k) + st * eps,
            "project x̂_0, not the noisy state: x̂_0 = (x_s − σ_s ε̂)/m_s first, then set its "
            "known part": mt * ((mask * x + (1 - mask) * k - ss * eps) / ms) + st * eps,
            "the step is not re-noised: x_t = m_t x̂_0 + σ_t ε̂ (you returned the projected x̂_0)":
                proj,
            "x̂_0 = (x_s − σ_s ε̂)/m_s: the division by m_s is missing":
                mt * (mask * (x - ss * eps) + (1 - mask) * k) + st * eps,
            "the known part is not re-noised with the network's ε̂ at level t: "
            "x_t = m_t x̂_0 + σ_t ε̂ everywhere": mask * (mt * x0 + st * eps) + (1 - mask) * k,
        }
        got = _call(name, fn, x.clone(), eps.clone(), k.clone(), mask.clone(), ms, ss, mt, st)
        _compare(name, got, want, wrong, what="x_t", ok="", report=False)
    _say(PASS, name, "x_t = m_t (M x̂_0 + (1 − M) x_known) + σ_t ε̂ on 3 random masks")
    return True


@checker("cfg_eps")
def check_cfg_eps(fn) -> bool:
    """``fn(eps_cond, eps_uncond, w) -> ε̃ = ε_∅ + w (ε_y − ε_∅)`` (the package's convention:
    w = 0 unconditional, w = 1 conditional); ``w`` a float."""
    name = "cfg_eps"
    g = _gen(173)
    for w in (2.5, 0.0, 1.0, 4.0):
        ec, eu = _randn((3, 5), g), _randn((3, 5), g)
        want = eu + w * (ec - eu)
        wrong = {
            "that is the (1 + w) ε_y − w ε_∅ convention (Ho & Salimans), where w = 0 is the "
            "conditional model; here w = 1 must give ε_y: ε̃ = ε_∅ + w (ε_y − ε_∅)":
                (1 + w) * ec - w * eu,
            "conditional and unconditional are swapped: start from ε_∅ and move w times "
            "towards ε_y": ec + w * (eu - ec),
            "the guidance direction has the wrong sign: ε̃ = ε_∅ + w (ε_y − ε_∅)":
                eu - w * (ec - eu),
            "the unconditional baseline is missing: ε̃ = ε_∅ + w (ε_y − ε_∅), not w ε_y":
                w * ec,
        }
        got = _call(name, fn, ec.clone(), eu.clone(), w)
        _compare(name, got, want, {k: v for k, v in wrong.items() if not torch.equal(v, want)},
                 what=f"ε̃ at w = {w}", ok="", report=False)
    _say(PASS, name, "ε_∅ + w (ε_y − ε_∅) for w = 0, 1, 2.5, 4")
    return True
