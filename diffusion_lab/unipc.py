r"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models"), data prediction, B(h) = e^{−h} − 1 ("bh2"), order 1–2.

Notation as in :mod:`diffusion_lab.dpm_multistep`: λ = log(m/σ), a step from s_0 to t has
h = λ_t − λ_{s_0} > 0; m_k are the x̂_0 of the earlier points s_k, r_k = (λ_{s_k} − λ_{s_0})/h
(< 0) and D_k = (m_k − m_0)/r_k. With φ = e^{−h} − 1 = B(h):

    UniP-p (predictor):  x_t = (σ_t/σ_{s_0}) x_{s_0} − m_t φ m_0 − m_t B(h) Σ_{k<p} ρ^p_k D_k
                         (p = 2: ρ^p = ½, which is DPM-Solver++(2M) exactly)
    UniC-p (corrector):  x_t^c = (σ_t/σ_{s_0}) x_{s_0} − m_t φ m_0
                                 − m_t B(h) [Σ_{k<p} ρ^c_k D_k + ρ^c_p (m̂_t − m_0)]

where m̂_t = x̂_0(x_t, t) is the network's estimate at the *predicted* x_t — the call the next
step needs anyway, so the corrector costs no extra NFE and raises the order by one. ρ^c solves
R ρ = b with R_{ik} = r_k^{i} (k over the p points, r_p = 1) and b_i = i! h φ_{i+1}(−h)/B(h)
(the recursion of the paper's Algorithm: hφ_{k+1} = hφ_k/(−h) − 1/k!, started at
hφ_1 = φ, hφ_2 = φ/(−h) − 1); p = 1: ρ^c = ½. The next predictor starts from the corrected
x_t^c with the same m̂_t. As in diffusers' ``UniPCMultistepScheduler`` (predict_x0, bh2),
the corrector is used at every step but the first; the corrector's order is the order of the
predictor step it corrects. A step's order drops to 1 without history or when the step grows
by more than 1/0.7 over the one before (:func:`diffusion_lab.dpm_multistep.effective_order`).
One network call per step; ``denoise=True`` returns x̂_0 at ``t_end`` from the uncorrected last
state (one more call), which is diffusers' default end (``final_sigmas_type="zero"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_int
from .dpm_multistep import effective_order
from .sampler_run import DEFAULT_GRIDS, _Run

__all__ = ["unipc", "unic_coefficients", "DEFAULT_GRID"]

#: the grid ``grid=None`` takes: ``samplers.DEFAULT_GRIDS["unipc"]`` (measured; one source of truth)
DEFAULT_GRID = DEFAULT_GRIDS["unipc"]


def unic_coefficients(h: float, rks: list[float]) -> list[float]:
    """ρ^c of UniC-p for p = len(rks) + 1 points (``rks``: r_k of the earlier points)."""
    hh = -h
    phi = math.expm1(hh)  # B(h) = hφ_1(−h)
    if not rks:
        return [0.5]
    r = [*rks, 1.0]
    h_phi_k, fact, b = phi / hh - 1.0, 1.0, []
    for i in range(1, len(r) + 1):
        b.append(h_phi_k * fact / phi)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    R = torch.tensor([[rk ** (i - 1) for rk in r] for i in range(1, len(r) + 1)],
                     dtype=torch.float64)
    return torch.linalg.solve(R, torch.tensor(b, dtype=torch.float64)).tolist()


def _base(x: Tensor, m0: Tensor, cs, ct) -> tuple[Tensor, float]:
    """(σ_t/σ_s) x − m_t φ m_0 and the factor m_t B(h) of the higher-order terms."""
    h = ct.lam - cs.lam
    phi = math.expm1(-h)
    return (ct.sigma / cs.sigma) * x - ct.m * phi * m0, ct.m * phi


def unipc(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
          generator=None, progress=False, denoise=False, info=None, order=2,
          corrector=True) -> Tensor:
    r"""UniPC-``order`` (1 or 2) with the UniC corrector (see the module docstring);
    ``corrector=False`` leaves UniP alone (= DPM-Solver++(2M) for order 2). Deterministic."""
    order = check_int(order, "order", minimum=1)
    if order > 2:
        raise ValueError(f"order must be 1 or 2, got {order}")
    if not isinstance(corrector, bool):
        raise TypeError(f"corrector must be a bool, got {type(corrector).__name__}")
    run = _Run("unipc", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator)
    hist: list[tuple[float, Tensor]] = []  # (λ, x̂_0) of the earlier points, oldest first
    hs: list[float] = []
    last = None  # (x_{s0}, coefficients at s0) of the step just taken
    p_last = 1
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        m_s = run.x0(x, run.eps(x, s), s)
        if corrector and last is not None:
            x = _correct(*last, m_s, hist, cs, p_last)
        hist = [*hist[-1:], (cs.lam, m_s)]
        hs = [*hs[-1:], ct.lam - cs.lam]
        p = effective_order(order, hs)
        last = (x, cs)
        x = _predict(x, hist, cs, ct, p)
        p_last = p
        run.emit(i, t, x, m_s)
    return run.finish(x, denoise, order=order, corrector=corrector)


def _predict(x: Tensor, hist, cs, ct, p: int) -> Tensor:
    """UniP-p from s_0 (the last entry of ``hist``) to t."""
    lam0, m0 = hist[-1]
    out, coef = _base(x, m0, cs, ct)
    if p == 2:
        lam1, m1 = hist[-2]
        r1 = (lam1 - lam0) / (ct.lam - cs.lam)
        out = out - coef * 0.5 * (m1 - m0) / r1
    return out


def _correct(x_s0: Tensor, cs0, m_t: Tensor, hist, ct, p: int) -> Tensor:
    """UniC-p of the step s_0 → t just taken: rebuild x_t from x_{s0} (coefficients ``cs0``,
    ``hist`` = the x̂_0 up to s_0) with the estimate m̂_t made at the predicted x_t."""
    lam0, m0 = hist[-1]
    h = ct.lam - lam0
    rks, ds = [], []
    if p == 2:
        lam1, m1 = hist[-2]
        rks.append((lam1 - lam0) / h)
        ds.append((m1 - m0) / rks[-1])
    rho = unic_coefficients(h, rks)
    out, coef = _base(x_s0, m0, cs0, ct)
    corr = rho[-1] * (m_t - m0)
    for rk, d in zip(rho[:-1], ds, strict=True):
        corr = corr + rk * d
    return out - coef * corr
