"""Checkers for lesson 06, samplers (``exercises/06_*.ipynb``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..oracles import GaussianOracle
from ..samplers import langevin_corrector_step
from ..sde import VPSDE
from ._common import F64, PASS, _call, _close, _compare, _gen, _randn, _say, _uniform, checker


def _step_cases(seed: int, n: int = 4):
    """n random (x, eps, (m_s, σ_s), (m_t, σ_t)) with s > t on the VP SDE."""

    sde = VPSDE()
    g = _gen(seed)
    cases = []
    for _ in range(n):
        s = float(_uniform(1, 0.2, 1.0, g))
        t = s - float(_uniform(1, 0.02, 0.15, g))
        (ms, ss), (mt, st) = (tuple(float(v) for v in sde.marginal(torch.tensor(u, dtype=F64)))
                              for u in (s, t))
        cases.append((_randn((3, 2), g), _randn((3, 2), g), ms, ss, mt, st, g))
    return cases


def _ddim(x0: Tensor, eps: Tensor, z: Tensor, mt: float, st: float, c: float) -> Tensor:
    return mt * x0 + math.sqrt(max(st**2 - c**2, 0.0)) * eps + c * z


@checker("ddim_step")
def check_ddim_step(fn) -> bool:
    """``fn(x, eps, m_s, sigma_s, m_t, sigma_t, eta, z) -> x_t``:
    x̂_0 = (x − σ_s ε̂)/m_s, c = η σ_t √(1 − e^{−2h}), h = λ_t − λ_s,
    x_t = m_t x̂_0 + √(σ_t² − c²) ε̂ + c z."""
    name = "ddim_step"
    for eta in (0.0, 0.5, 1.0):
        for x, eps, ms, ss, mt, st, g in _step_cases(15):
            z = _randn(x.shape, g)
            x0 = (x - ss * eps) / ms
            h = math.log(mt / st) - math.log(ms / ss)
            c = eta * st * math.sqrt(-math.expm1(-2 * h))
            want = _ddim(x0, eps, z, mt, st, c)
            wrong = {
                "re-noise with σ_t (the new noise level), not σ_s":
                    _ddim(x0, eps, z, mt, ss, c),
                "x̂_0 = (x − σ_s ε̂)/m_s: the division by m_s is missing":
                    _ddim(x - ss * eps, eps, z, mt, st, c),
                "when noise c z is added, the ε̂ term must shrink to √(σ_t² − c²) ε̂":
                    mt * x0 + st * eps + c * z,
                "c = η σ_t √(1 − e^{−2h}): the square root is missing":
                    _ddim(x0, eps, z, mt, st, eta * st * -math.expm1(-2 * h)),
                "c = η σ_t √(1 − e^{−2h}); you used c = η σ_t": _ddim(x0, eps, z, mt, st, eta * st),
            }
            got = _call(name, fn, x.clone(), eps.clone(), ms, ss, mt, st, eta, z.clone())
            _compare(name, got, want, wrong, what=f"x_t (eta = {eta})", ok="", report=False)
    _say(PASS, name, "matches DDIM's update for η = 0, 0.5, 1 on 4 random steps each")
    return True


@checker("dpm_solver_pp1_step")
def check_dpm_solver_pp1_step(fn) -> bool:
    """``fn(x, x0_hat, m_s, sigma_s, m_t, sigma_t) -> (σ_t/σ_s) x − m_t (e^{−h} − 1) x̂_0``,
    h = λ_t − λ_s, λ = log(m/σ)."""
    name = "dpm_solver_pp1_step"
    for x, eps, ms, ss, mt, st, _ in _step_cases(16):
        x0 = (x - ss * eps) / ms
        h = math.log(mt / st) - math.log(ms / ss)
        want = (st / ss) * x - mt * math.expm1(-h) * x0
        wrong = {
            "the exponent is −h: e^{−h} − 1 (data prediction), not e^{h} − 1":
                (st / ss) * x - mt * math.expm1(h) * x0,
            "the ratio is σ_t/σ_s for data prediction (m_t/m_s belongs to noise prediction)":
                (mt / ms) * x - mt * math.expm1(-h) * x0,
            "h = λ_t − λ_s with λ = log(m/σ), the *half* log-SNR; you used the full log-SNR":
                (st / ss) * x - mt * math.expm1(-2 * h) * x0,
            "the x̂_0 term is weighted by m_t, not m_s": (st / ss) * x - ms * math.expm1(-h)
            * x0,
            "the sign of the x̂_0 term: − m_t (e^{−h} − 1) x̂_0 = + m_t (1 − e^{−h}) x̂_0":
                (st / ss) * x + mt * math.expm1(-h) * x0,
        }
        got = _call(name, fn, x.clone(), x0.clone(), ms, ss, mt, st)
        _compare(name, got, want, wrong, what="x_t", ok="", report=False)
        ddim = mt * x0 + st * eps
        if not _close(want, ddim, 1e-9, 1e-12):  # pragma: no cover - a package invariant
            raise AssertionError("DPM-Solver++(1) and DDIM(η=0) disagree")
    _say(PASS, name, "matches DPM-Solver++(1) (and so DDIM with η = 0) on 4 random steps")
    return True


@checker("dpm_solver_2m")
def check_dpm_solver_2m(fn) -> bool:
    """``fn(x0_cur, x0_prev, h, h_prev) -> D = (1 + 1/(2r)) x̂_0,i − 1/(2r) x̂_0,i−1``,
    r = h_prev/h."""
    name = "dpm_solver_2m"
    g = _gen(17)
    for _ in range(4):
        a, b = _randn((3, 2), g), _randn((3, 2), g)
        h, hp = float(_uniform(1, 0.05, 0.5, g)), float(_uniform(1, 0.05, 0.5, g))
        r = hp / h
        want = (1 + 0.5 / r) * a - (0.5 / r) * b
        q = h / hp
        wrong = {
            "r = h_prev/h, not h/h_prev": (1 + 0.5 / q) * a - (0.5 / q) * b,
            "the extrapolation weight is 1/(2r), not 1/r": (1 + 1 / r) * a - (1 / r) * b,
            "x̂_0,i and x̂_0,i−1 are swapped": (1 + 0.5 / r) * b - (0.5 / r) * a,
        }
        _compare(name, _call(name, fn, a.clone(), b.clone(), h, hp), want, wrong, what="D",
                 ok="", report=False)
    _say(PASS, name, "matches DPM-Solver++(2M)'s combination D on 4 random step pairs")
    return True


@checker("corrector_step_size")
def check_corrector_step_size(fn) -> bool:
    """``fn(score [B, ...], z [B, ...], snr, alpha) -> ε [B] = 2 α (snr ‖z‖ / ‖s‖)²``, with ‖z‖
    and ‖s‖ the batch means of the per-sample norms (the package's one rule), repeated B times."""

    name = "corrector_step_size"
    sde = VPSDE()
    oracle = GaussianOracle(sde, torch.zeros(1, 3, 2, dtype=F64), 0.3)  # images [B, 1, 3, 2]
    x = _randn((4, 1, 3, 2), _gen(18))
    snr, alpha, t = 0.16, 0.98, 0.3
    _, want = langevin_corrector_step(oracle, sde, x, t, snr=snr, alpha=alpha,
                                      generator=_gen(19))
    z = torch.randn(x.shape, generator=_gen(19), dtype=F64)  # the z the package drew
    score = oracle.score(x, t)
    zn, sn = z.reshape(4, -1).norm(dim=-1), score.reshape(4, -1).norm(dim=-1)
    zb, sb = zn.mean().expand(4), sn.mean().expand(4)
    wrong = {
        "the ratio must be squared: ε = 2α (snr ‖z‖/‖s‖)²": 2 * alpha * snr * zb / sb,
        "the ratio is ‖z‖/‖s‖, not ‖s‖/‖z‖": 2 * alpha * (snr * sb / zb) ** 2,
        "those are per-sample norms; average each norm over the batch first (per-sample steps "
        "let a sample with a small score take a huge step and run away)": 2 * alpha * (snr * zn / sn) ** 2,
        "average the norms, not the ratio: mean ‖z‖ / mean ‖s‖":
            2 * alpha * (snr * (zn / sn).mean()).expand(4) ** 2,
        "the factor α is missing": 2 * (snr * zb / sb) ** 2,
    }
    return _compare(name, _call(name, fn, score.clone(), z.clone(), snr, alpha), want, wrong,
                    ok="matches langevin_corrector_step's step size on 4 images")
