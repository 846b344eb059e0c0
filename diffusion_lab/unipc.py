r"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
of Diffusion Models"), data prediction, order 1–3, B(h) = e^{−h} − 1 ("bh2") or −h ("bh1").

Notation as in :mod:`diffusion_lab.dpm_multistep`: λ = log(m/σ), a step from s_0 to t has
h = λ_t − λ_{s_0} > 0; m_k are the x̂_0 of the earlier points s_k, r_k = (λ_{s_k} − λ_{s_0})/h
(< 0) and D_k = (m_k − m_0)/r_k. With φ = e^{−h} − 1 and B(h) = φ ("bh2") or −h ("bh1"):

    UniP-p (predictor):  x_t = (σ_t/σ_{s_0}) x_{s_0} − m_t φ m_0 − m_t B(h) Σ_{k<p} ρ^p_k D_k
                         (p = 2: ρ^p = ½, which with bh2 is DPM-Solver++(2M) exactly;
                          p = 3: ρ^p solves the first p − 1 rows of the system below)
    UniC-p (corrector):  x_t^c = (σ_t/σ_{s_0}) x_{s_0} − m_t φ m_0
                                 − m_t B(h) [Σ_{k<p} ρ^c_k D_k + ρ^c_p (m̂_t − m_0)]

where m̂_t = x̂_0(x_t, t) is the network's estimate at the *predicted* x_t — the call the next
step needs anyway, so the corrector costs no extra NFE and raises the order by one. ρ^c solves
R ρ = b with R_{ik} = r_k^{i} (k over the p points, r_p = 1) and b_i = i! h φ_{i+1}(−h)/B(h)
(the recursion of the paper's Algorithm: hφ_{k+1} = hφ_k/(−h) − 1/k!, started at
hφ_1 = φ, hφ_2 = φ/(−h) − 1); p = 1: ρ^c = ½. The next predictor starts from the corrected
x_t^c with the same m̂_t. UniC-p is exact when x̂_0 is a polynomial of degree p in λ, UniP-3
when it is a quadratic (tests/test_unipc.py). B(h) only changes the weights of the
higher-order terms: both are ≈ −h for small h. As in diffusers' ``UniPCMultistepScheduler``
(predict_x0), the corrector is used at every step but the first; the corrector's order is the order of the
predictor step it corrects. A step's order drops to 1 without history or when the step grows
by more than 1/0.7 over the one before (:func:`diffusion_lab.dpm_multistep.effective_order`).
One network call per step; ``denoise=True`` returns x̂_0 at ``t_end`` from the uncorrected last
state (one more call), which is diffusers' default end (``final_sigmas_type="zero"``).

Few steps on a real network: on the bundled MNIST model at 10 NFE, :data:`FEW_STEP`
(``order=3, variant="bh1", grid="uniform", t_end=0.05, denoise=True``, with ``steps=9``) had the
lowest FID measured (0.438 on the report seed, 1.26× the 1000-step ancestral reference;
``benchmarks/few_step_fid.py``). The default grid (log-SNR) is the one measured most accurate
on exact oracles at 25 steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_choice, check_int
from .dpm_multistep import effective_order
from .sampler_run import DEFAULT_GRIDS, _Run

__all__ = ["unipc", "unic_coefficients", "unip_coefficients", "DEFAULT_GRID", "VARIANTS",
           "FEW_STEP"]

#: the grid ``grid=None`` takes: ``samplers.DEFAULT_GRIDS["unipc"]`` (measured; one source of truth)
DEFAULT_GRID = DEFAULT_GRIDS["unipc"]
#: the two choices of B(h) of the paper (it prefers bh1 for few-step unconditional sampling)
VARIANTS = ("bh1", "bh2")
#: the sampler options with the lowest FID measured at 10 and 20 NFE on the bundled MNIST
#: model (``benchmarks/few_step_fid.py``, config "unipc3_bh1_end005"): UniPC-3, bh1, a uniform
#: grid that ends at t = 0.05 — where the exact PF-ODE's x̂_0 scores best — then x̂_0 there.
#: ``model.generate(n, steps=nfe - 1, **FEW_STEP)`` makes ``nfe`` network calls. Not for 5 NFE:
#: four steps cannot reach t = 0.05 accurately, and ``order=2, t_end=0.1`` scored far better there.
FEW_STEP = {"method": "unipc", "order": 3, "variant": "bh1", "grid": "uniform", "t_end": 0.05,
            "denoise": True}


def _big_b(h: float, variant: str) -> float:
    """B(h): −h ("bh1") or e^{−h} − 1 ("bh2")."""
    return -h if variant == "bh1" else math.expm1(-h)


def _system(h: float, rks: list[float], variant: str) -> tuple[Tensor, Tensor]:
    """R and b for the points ``rks`` + [1]: R_ik = r_k^{i−1}, b_i = i! hφ_{i+1}(−h)/B(h)."""
    hh = -h
    phi = math.expm1(hh)  # hφ_1(−h) = e^{−h} − 1
    big_b = _big_b(h, variant)
    r = [*rks, 1.0]
    h_phi_k, fact, b = phi / hh - 1.0, 1.0, []
    for i in range(1, len(r) + 1):
        b.append(h_phi_k * fact / big_b)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    R = torch.tensor([[rk ** (i - 1) for rk in r] for i in range(1, len(r) + 1)],
                     dtype=torch.float64)
    return R, torch.tensor(b, dtype=torch.float64)


def unic_coefficients(h: float, rks: list[float], variant: str = "bh2") -> list[float]:
    """ρ^c of UniC-p for p = len(rks) + 1 points (``rks``: r_k of the earlier points)."""
    if not rks:
        return [0.5]
    R, b = _system(h, rks, variant)
    return torch.linalg.solve(R, b).tolist()


def unip_coefficients(h: float, rks: list[float], variant: str = "bh2") -> list[float]:
    """ρ^p of UniP-p for p = len(rks) + 1 ≥ 2 (p = 2: ½; else the first p − 1 rows of R ρ = b)."""
    if len(rks) == 1:
        return [0.5]
    R, b = _system(h, rks, variant)
    return torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()


def _base(x: Tensor, m0: Tensor, cs, ct, variant: str) -> tuple[Tensor, float]:
    """(σ_t/σ_s) x − m_t φ m_0 and the factor m_t B(h) of the higher-order terms."""
    h = ct.lam - cs.lam
    return (ct.sigma / cs.sigma) * x - ct.m * math.expm1(-h) * m0, ct.m * _big_b(h, variant)


def unipc(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
          generator=None, progress=False, denoise=False, info=None, order=2,
          corrector=True, variant="bh2") -> Tensor:
    r"""UniPC-``order`` (1, 2 or 3) with the UniC corrector (see the module docstring) and
    B(h) ``variant`` ("bh2": e^{−h} − 1, "bh1": −h); ``corrector=False`` leaves UniP alone
    (= DPM-Solver++(2M) for order 2 and bh2). Deterministic. ``variant`` acts on every step
    but with ``order=1, corrector=False`` (plain DPM-Solver++(1)), where "bh1" is refused."""
    order = check_int(order, "order", minimum=1)
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    if not isinstance(corrector, bool):
        raise TypeError(f"corrector must be a bool, got {type(corrector).__name__}")
    check_choice(variant, "variant", VARIANTS)
    if order == 1 and not corrector and variant != "bh2":
        raise ValueError(f"variant={variant!r} has no effect with order=1 and corrector=False "
                         "(B(h) weighs only the higher-order and corrector terms)")
    run = _Run("unipc", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    hist: list[tuple[float, Tensor]] = []  # (λ, x̂_0) of the last `order` points, oldest first
    hs: list[float] = []
    last = None  # (x_{s0}, coefficients at s0, the history it used, its order) of the last step
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        m_s = run.x0(x, run.eps(x, s), s)
        if corrector and last is not None:
            x_s0, cs0, hist0, p0 = last
            x = _correct(x_s0, cs0, m_s, hist0, cs, p0, variant)
        hist = [*hist[len(hist) - order + 1:], (cs.lam, m_s)]  # keeps the last `order` points
        hs = [*hs[len(hs) - order + 1:], ct.lam - cs.lam]
        p = effective_order(order, hs)
        last = (x, cs, hist, p)
        x = _predict(x, hist, cs, ct, p, variant)
        run.emit(i, t, x, m_s)
    return run.finish(x, order=order, corrector=corrector, variant=variant)


def _differences(hist, p: int, h: float) -> tuple[list[float], list[Tensor]]:
    """r_k and D_k of the p − 1 points before s_0 (the last entry of ``hist``), nearest last."""
    lam0, m0 = hist[-1]
    rks, ds = [], []
    for lam_k, m_k in hist[len(hist) - p:-1]:
        rks.append((lam_k - lam0) / h)
        ds.append((m_k - m0) / rks[-1])
    return rks, ds


def _predict(x: Tensor, hist, cs, ct, p: int, variant: str = "bh2") -> Tensor:
    """UniP-p from s_0 (the last entry of ``hist``) to t."""
    out, coef = _base(x, hist[-1][1], cs, ct, variant)
    if p == 1:
        return out
    rks, ds = _differences(hist, p, ct.lam - cs.lam)
    for rho, d in zip(unip_coefficients(ct.lam - cs.lam, rks, variant), ds, strict=True):
        out = out - coef * rho * d
    return out


def _correct(x_s0: Tensor, cs0, m_t: Tensor, hist, ct, p: int, variant: str = "bh2") -> Tensor:
    """UniC-p of the step s_0 → t just taken: rebuild x_t from x_{s0} (coefficients ``cs0``,
    ``hist`` = the x̂_0 up to s_0) with the estimate m̂_t made at the predicted x_t."""
    m0 = hist[-1][1]
    h = ct.lam - cs0.lam
    rks, ds = _differences(hist, p, h)
    rho = unic_coefficients(h, rks, variant)
    out, coef = _base(x_s0, m0, cs0, ct, variant)
    corr = rho[-1] * (m_t - m0)
    for rk, d in zip(rho[:-1], ds, strict=True):
        corr = corr + rk * d
    return out - coef * corr
