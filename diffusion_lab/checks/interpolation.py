"""Checkers for lesson 09, interpolation and inversion (``exercises/09_*.ipynb``).

Slerp of noise batches, one DDIM inversion step, the SDEdit encoder x_t = m x_0 + σ z and the
norm of a linear mix of two independent noises; VP-linear coefficients where a process is needed."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import tasks
from ..oracles import GaussianOracle
from ..sde import VPSDE
from ._common import F64, FAIL, PASS, _call, _compare, _gen, _randn, _say, checker

_SDE = VPSDE()


def _coef(t: float) -> tuple[float, float]:
    """(m(t), σ(t)) of the VP-linear process as Python floats (the helper the exercises get)."""
    m, s = _SDE.marginal(torch.tensor(float(t), dtype=F64))
    return float(m), float(s)


def _oracle() -> GaussianOracle:
    return GaussianOracle(_SDE, torch.tensor([0.4, -0.3, 0.1]),
                          torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.3, 0.1], [0.0, 0.1, 0.2]]))


def _per_row_slerp(z0: Tensor, z1: Tensor, alpha: float) -> Tensor:
    return torch.stack([tasks.slerp(a, b, float(alpha)) for a, b in zip(z0, z1, strict=True)])


def _slerp_variants(z0: Tensor, z1: Tensor, alpha: float) -> dict[str, Tensor]:
    n0, n1 = z0.norm(dim=1, keepdim=True), z1.norm(dim=1, keepdim=True)
    cos_raw = (z0 * z1).sum(1, keepdim=True)
    out = {"that is the linear interpolation (1 − α) z0 + α z1, whose norm dips in the middle; "
           "slerp walks the great circle": (1 - alpha) * z0 + alpha * z1}
    th = torch.arccos((cos_raw / (n0 * n1)).clamp(-1, 1))
    out["the weights are swapped: sin((1 − α)θ)/sin θ multiplies z0, sin(αθ)/sin θ multiplies z1"] = (
        torch.sin(alpha * th) * z0 + torch.sin((1 - alpha) * th) * z1) / torch.sin(th)
    out["the division by sin θ is missing (the weights must be 1 and 0 at α = 0)"] = (
        torch.sin((1 - alpha) * th) * z0 + torch.sin(alpha * th) * z1)
    g0, g1 = z0.norm(), z1.norm()  # the whole batch's norms: angle not per sample
    th_g = torch.arccos(((z0 * z1).sum(1, keepdim=True) / (g0 * g1)).clamp(-1, 1))
    out["the angle is not normalised per sample: cos θ = z0·z1/(‖z0‖‖z1‖) for each row, with the "
        "row's own norms (not the whole batch's)"] = (
        torch.sin((1 - alpha) * th_g) * z0 + torch.sin(alpha * th_g) * z1) / torch.sin(th_g)
    th_n = torch.arccos((cos_raw / math.sqrt(z0.shape[1])).clamp(-1, 1))
    out["cos θ must be divided by ‖z0‖‖z1‖ of each pair (not by d, nor left unnormalised)"] = (
        torch.sin((1 - alpha) * th_n) * z0 + torch.sin(alpha * th_n) * z1) / torch.sin(th_n)
    return out


@checker("slerp")
def check_slerp(fn) -> bool:
    """``fn(z0 [B, D], z1 [B, D], alpha float) -> [B, D]``: per-row spherical interpolation
    sin((1 − α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1, cos θ = z0·z1/(‖z0‖‖z1‖); rows with
    θ ≈ 0 (parallel) fall back to (1 − α) z0 + α z1."""
    name = "slerp"
    g = _gen(90)
    for alpha in (0.3, 0.5, 0.85):
        z0 = _randn((4, 16), g) * torch.tensor([[1.0], [2.0], [0.5], [1.5]], dtype=F64)
        z1 = _randn((4, 16), g)
        got = _call(name, fn, z0.clone(), z1.clone(), alpha)
        _compare(name, got, _per_row_slerp(z0, z1, alpha), _slerp_variants(z0, z1, alpha),
                 what="slerp(z0, z1, α)", ok="", report=False)
    z0 = _randn((3, 16), g)
    z1 = torch.cat([2.0 * z0[:2], _randn((1, 16), g)])  # rows 0, 1 exactly parallel
    got = _call(name, fn, z0.clone(), z1.clone(), 0.4)
    if isinstance(got, Tensor) and got.shape == z0.shape and not bool(torch.isfinite(got).all()):
        _say(FAIL, name, "parallel rows give NaN/inf: there θ = 0 and sin θ = 0, so fall back to "
                         "linear interpolation where θ is tiny (e.g. θ < 1e-6)")
        return False
    _compare(name, got, _per_row_slerp(z0, z1, 0.4),
             {"for parallel rows (θ = 0) slerp reduces to (1 − α) z0 + α z1, not to z0":
              torch.cat([z0[:2], _per_row_slerp(z0[2:], z1[2:], 0.4)])},
             what="slerp with parallel rows", ok="", report=False)
    _say(PASS, name, "matches tasks.slerp row by row at 3 weights, parallel rows included")
    return True


@checker("ddim_invert_step")
def check_ddim_invert_step(fn) -> bool:
    """``fn(x, eps_model, s, t, coef) -> x_t``: one DDIM inversion step upwards, s < t,
    x_t = m_t (x − σ_s ε̂)/m_s + σ_t ε̂ with ε̂ = eps_model(x, s·1) at the *start*;
    ``coef(t) -> (m, σ)`` floats; ``eps_model`` wants a ``[B]`` time."""
    name = "ddim_invert_step"
    orc = _oracle()
    g = _gen(91)
    for s, t in ((0.05, 0.1), (0.3, 0.45), (0.6, 0.9)):
        x = orc.sample(6, generator=g) * 0.8 + 0.1 * _randn((6, 3), g)
        (ms, ss), (mt, st) = _coef(s), _coef(t)
        e_s = orc(x, torch.full((6,), s, dtype=F64))
        e_t = orc(x, torch.full((6,), t, dtype=F64))
        want = mt * (x - ss * e_s) / ms + st * e_s
        wrong = {
            "ε̂ must be evaluated at the start of the step, ε̂(x_s, s); you used the target time t "
            "(x is at level s)": mt * (x - ss * e_t) / ms + st * e_t,
            "x̂_0 = (x − σ_s ε̂)/m_s uses the coefficients of the start time s; you used the target "
            "time's m_t, σ_t there": mt * (x - st * e_s) / mt + st * e_s,
            "that is the step in the other direction (the sampler's step from t down to s): "
            "inversion goes up, x_t = m_t x̂_0 + σ_t ε̂ with x̂_0 from the level s that x is at":
                ms * (x - st * e_t) / mt + ss * e_t,
            "that is the step in the other direction (from t down to s, with ε̂ at s): "
            "inversion goes up, x_t = m_t x̂_0 + σ_t ε̂": ms * (x - st * e_s) / mt + ss * e_s,
            "m and σ are swapped: x̂_0 = (x − σ_s ε̂)/m_s and x_t = m_t x̂_0 + σ_t ε̂":
                st * (x - ms * e_s) / ss + mt * e_s,
            "the noise term σ_t ε̂ is missing: x_t = m_t x̂_0 + σ_t ε̂": mt * (x - ss * e_s) / ms,
        }
        got = _call(name, fn, x.clone(), orc, s, t, _coef)
        _compare(name, got, want, wrong, what="x_t", ok="", report=False)
    _say(PASS, name, "matches the DDIM step run upwards on 3 steps with an exact Gaussian model")
    return True


@checker("sdedit_encode")
def check_sdedit_encode(fn) -> bool:
    """``fn(x0 [B, ...], t float, z, coef) -> x_t = m_t x_0 + σ_t z`` (the forward marginal)."""
    name = "sdedit_encode"
    g = _gen(92)
    for t in (0.2, 0.5, 0.8):
        x0, z = _randn((4, 1, 3, 3), g).clamp(-1, 1), _randn((4, 1, 3, 3), g)
        m, s = _coef(t)
        want = m * x0 + s * z
        wrong = {
            "m and σ are swapped: the data gets m_t, the noise σ_t": s * x0 + m * z,
            "those are the variances m², σ²: the marginal is m_t x_0 + σ_t z (standard "
            "deviations)": m**2 * x0 + s**2 * z,
            "the data is not shrunk: x_t = m_t x_0 + σ_t z (x_0 + σ_t z is the VE form)": x0 + s * z,
            "the noise weight is 1 − m_t; for VP it is σ_t = √(1 − m_t²)": m * x0 + (1 - m) * z,
        }
        got = _call(name, fn, x0.clone(), t, z.clone(), _coef)
        _compare(name, got, want, wrong, what="x_t", ok="", report=False)
    _say(PASS, name, "x_t = m_t x_0 + σ_t z at 3 levels")
    return True


@checker("linear_mix_norm")
def check_linear_mix_norm(fn) -> bool:
    """``fn(alpha [K], d int) -> [K]``: √E‖(1 − α) z0 + α z1‖² = √(((1 − α)² + α²) d) for
    independent z0, z1 ~ N(0, I_d)."""
    name = "linear_mix_norm"
    for d in (2, 784):
        alpha = torch.linspace(0, 1, 11, dtype=F64)
        f = (1 - alpha) ** 2 + alpha**2
        want = (f * d).sqrt()
        wrong = {
            "norms do not add linearly (that holds for parallel vectors): z0 and z1 are "
            "independent, so their *squared* norms add, ((1 − α)² + α²) d":
                math.sqrt(d) * torch.ones_like(alpha),
            "the square root must cover d too: √(((1 − α)² + α²) d), not √((1 − α)² + α²) · d":
                f.sqrt() * d,
            "the (1 − α) weight is not squared: E‖a z0 + b z1‖² = (a² + b²) d":
                ((1 - alpha) + alpha**2).mul(d).sqrt(),
        }
        got = _call(name, fn, alpha.clone(), d)
        _compare(name, got, want, wrong, what="the norm", ok="", report=False)
    _say(PASS, name, "√(((1 − α)² + α²) d): √(d/2) at α = ½, for d = 2 and 784")
    return True
