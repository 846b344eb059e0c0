r"""Samplers for the reverse process: every one a plain function with one signature.

    fn(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
       generator=None, progress=False, denoise=False, info=None, **method_specific)

``x`` is the prior sample at t = ``sde.t_max`` (1 but for rectified flow); the result is a
sample at ``t_end`` (default ``sde.t_min``), or its Tweedie denoised estimate x̂_0 when
``denoise=True`` (one extra network call). ``grid=None`` takes the method's own default,
:data:`DEFAULT_GRIDS` (measured per method by ``benchmarks/default_grids.py``; the table is
in :mod:`diffusion_lab.sampler_run`). Step i goes from s = t_i to
t = t_{i+1} < s on :func:`~diffusion_lab.timegrid.time_grid`; with
h = λ_t − λ_s > 0, ε̂ = ε̂(x_s, s) and x̂_0 = (x_s − σ_s ε̂)/m_s:

    euler_maruyama          x ← x − [f x − g² s]Δ + g √Δ z,  s = −ε̂/σ,  Δ = s − t
    predictor_corrector     n Langevin steps at s, then the Euler–Maruyama predictor
    probability_flow        dx/dt = f x − ½ g² s with Euler / Heun / RK4 / adaptive RK45
    exponential_integrator  x_t = (m_t/m_s) x_s − k σ_t (e^h − 1) ε̂ [+ σ_t √(e^{2h} − 1) z],
                            k = 2 for the reverse SDE, 1 for the ODE (= DDIM η = 0)
    ddim                    x_t = m_t x̂_0 + √(σ_t² − c²) ε̂ + c z,  c = η σ_t √(1 − e^{−2h})
    dpm_solver              DPM-Solver++(2M): x_t = (σ_t/σ_s) x_s − m_t (e^{−h} − 1) D
    ancestral               x_t ~ q(x_t | x_s, x̂_0), the Gaussian posterior (DDPM)
    edm                     Heun on dx̃/dσ̃ = ε̂ in x̃ = x/m, σ̃ = σ/m, optional churn (Karras et al.)
    restart                 2M ODE to t_lo, K × (forward jump to t_hi, ODE back), ODE to the end
                            (:func:`diffusion_lab.restart.restart`)
    unipc                   UniP-p + the UniC corrector (p = ``order`` 1–3; UniP-2 with bh2
                            = 2M), order p + 1 at one call per step (:func:`diffusion_lab.unipc.unipc`)

Randomness comes only from ``generator`` (same seed → bitwise-identical on one
device); ``callback(step, t, x, x0_hat)`` sees each new state; ``info`` (a dict)
receives ``nfe``, ``steps``, ``method``, ``grid`` and ``t_end``.

This module holds the probability-flow ODE, the exponential integrators, ancestral sampling, the
registry :data:`SAMPLERS` and :func:`sample`; the reverse-SDE samplers are in
:mod:`diffusion_lab.sde_samplers`, EDM in :mod:`diffusion_lab.edm_sampler`, UniPC in
:mod:`diffusion_lab.unipc` and restart sampling in :mod:`diffusion_lab.restart` (all re-exported
here).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
)
from .dpm_multistep import multistep_update
from .edm_sampler import edm
from .ode import FIXED_METHODS, integrate_fixed, rk45
from .restart import restart
from .sampler_run import DEFAULT_GRIDS, _Run
from .sde import SDE
from .sde_samplers import euler_maruyama, langevin_corrector_step, predictor_corrector
from .unipc import unipc

__all__ = [
    "SAMPLERS", "sample", "euler_maruyama", "predictor_corrector", "langevin_corrector_step",
    "probability_flow", "exponential_integrator", "ddim", "dpm_solver", "ancestral", "edm",
    "DEFAULT_GRIDS", "restart", "unipc", "COMMON_OPTIONS", "method_options", "check_options",
    "check_arguments",
]


# -- the probability-flow ODE -------------------------------------------------------------------
PF_SOLVERS = (*FIXED_METHODS, "rk45")
PF_RTOL = PF_ATOL = 1e-5  # rk45's default tolerances


def probability_flow(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None,
                     callback=None, generator=None, progress=False, denoise=False, info=None,
                     solver="heun", rtol=PF_RTOL, atol=PF_ATOL) -> Tensor:
    r"""Integrate the probability-flow ODE dx/dt = f x − ½ g² s(x, t) = f x + ½ g² ε̂/σ
    from 1 to ``t_end``.

    ``solver`` "euler" / "heun" / "rk4" step along the grid (NFE = 1 / 2 / 4 per
    step); "rk45" is adaptive Dormand–Prince with ``rtol`` / ``atol``: ``steps``
    then only sets the first trial step (1 − t_end)/steps and ``grid`` must be None;
    ``callback`` fires once per *accepted* step and ``info`` gets the accepted
    ``steps``, ``rejected`` and the true ``nfe``. ``callback``'s x0_hat is the
    estimate at the start of the step. ``rtol`` / ``atol`` other than their defaults with a
    fixed-step solver are refused (they would have no effect).
    """
    check_choice(solver, "solver", PF_SOLVERS)
    if solver == "rk45":
        rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
        if grid is not None:
            raise ValueError(f"grid is for the fixed-step solvers ({', '.join(FIXED_METHODS)}); "
                             f"rk45 chooses its own steps, got grid={grid!r}")
    elif (rtol, atol) != (PF_RTOL, PF_ATOL):
        raise ValueError(f"rtol and atol are for solver='rk45'; solver={solver!r} steps along the "
                         f"grid, got rtol={rtol!r}, atol={atol!r}")
    run = _Run("probability_flow", eps_model, sde, x, steps, t_end, grid, y, callback, progress,
               info, generator, denoise)
    seen = {"first": None, "last": None}  # x̂_0 of the first call in a step, and of the latest call

    def velocity(t: float, xt: Tensor) -> Tensor:
        c = run.coef(t)
        eps = run.eps(xt, t)
        seen["last"] = run.x0(xt, eps, t)
        if seen["first"] is None:
            seen["first"] = seen["last"]
        return c.f * xt + 0.5 * c.g2 / c.sigma * eps

    if solver == "rk45":
        def on_accept(i, t, xt):
            run.step = i + 1
            run.emit(i, t, xt, seen["first"])
            seen["first"] = seen["last"]  # FSAL: the last stage is ε̂ at the new state

        first = (run.grid[0] - run.t_end) / run.steps
        res = rk45(velocity, x, run.grid[0], run.t_end, rtol=rtol, atol=atol, first_step=first,
                   callback=on_accept)
        run.steps = res.steps
        return run.finish(res.y, solver=solver, rejected=res.rejected)

    def on_step(i, t, xt):
        run.step = i + 1
        run.emit(i, t, xt, seen["first"])
        seen["first"] = None

    bar = tqdm(total=run.steps, desc="probability_flow", disable=not progress, leave=False)
    res = integrate_fixed(velocity, x, run.grid, method=solver,
                          callback=lambda i, t, xt: (on_step(i, t, xt), bar.update()))
    bar.close()
    return run.finish(res.y, solver=solver)


# -- exponential integrators: DDIM, DPM-Solver(++) ----------------------------------------------
def exponential_integrator(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None,
                           callback=None, generator=None, progress=False, denoise=False, info=None,
                           stochastic=True) -> Tensor:
    r"""First-order exponential integrator: the linear drift is integrated exactly
    with ε̂ frozen over the step. With y = x/m and g² = −2σ²λ', the reverse SDE
    reads dy = −2 e^{−λ} ε̂ dλ + (g/m) dw̄, hence (h = λ_t − λ_s)

        SDE (stochastic=True):  x_t = (m_t/m_s) x_s − 2σ_t (e^h − 1) ε̂ + σ_t √(e^{2h} − 1) z
        ODE (stochastic=False): x_t = (m_t/m_s) x_s −  σ_t (e^h − 1) ε̂       (= DDIM, η = 0)

    The SDE variant is SDE-DPM-Solver-1 (Lu et al. 2022b).
    """
    stochastic = check_bool(stochastic, "stochastic")
    run = _Run("exponential_integrator", eps_model, sde, x, steps, t_end, grid, y, callback,
               progress, info, generator, denoise)
    k = 2.0 if stochastic else 1.0
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        h = ct.lam - cs.lam
        eps = run.eps(x, s)
        x0 = run.x0(x, eps, s)
        x = (ct.m / cs.m) * x - k * ct.sigma * math.expm1(h) * eps
        if stochastic:
            x = x + ct.sigma * math.sqrt(math.expm1(2.0 * h)) * run.noise()
        run.emit(i, t, x, x0)
    return run.finish(x, stochastic=stochastic)


def ddim(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
         generator=None, progress=False, denoise=False, info=None, eta=0.0) -> Tensor:
    r"""DDIM (Song, Meng & Ermon 2021) on any grid:

        x_t = m_t x̂_0 + √(σ_t² − c²) ε̂ + c z,   c = η σ_t √(1 − e^{−2h}),

    which for VP is the paper's σ_t(η). η = 0 is deterministic (DPM-Solver-1);
    η = 1 equals :func:`ancestral` with the posterior variance. η > 1 is accepted
    only while c ≤ σ_t.
    """
    eta = check_positive(eta, "eta", allow_zero=True)
    eta2 = eta**2 if eta < 1e150 else math.inf  # η² would overflow: refused below (c > σ_t)
    run = _Run("ddim", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    for i, s, t in run.intervals():
        ct = run.coef(t)
        h = ct.lam - run.coef(s).lam
        frac = eta2 * -math.expm1(-2.0 * h)  # (c / σ_t)²
        if frac > 1.0:
            raise ValueError(f"eta={eta} is too large for step {i} (c > σ_t); use eta <= 1")
        eps = run.eps(x, s)
        x0 = run.x0(x, eps, s)
        x = ct.m * x0 + ct.sigma * math.sqrt(1.0 - frac) * eps
        if eta > 0:
            x = x + ct.sigma * math.sqrt(frac) * run.noise()
        run.emit(i, t, x, x0)
    return run.finish(x, eta=eta)


#: DPM-Solver++(2M) extrapolates only while the step in λ grows by at most 1/0.7 ≈ 1.43×.
DPM_MIN_STEP_RATIO = 0.7


def dpm_solver(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
               generator=None, progress=False, denoise=False, info=None, order=2,
               eta=0.0) -> Tensor:
    r"""DPM-Solver++ in data prediction (Lu et al. 2022b), multistep order 1 or 2.

        order 1:  x_t = (σ_t/σ_s) x_s − m_t (e^{−h} − 1) x̂_0,i
        2M:       D = (1 + 1/(2r)) x̂_0,i − 1/(2r) x̂_0,i−1,  r = h_{i−1}/h_i,
                  x_t = (σ_t/σ_s) x_s − m_t (e^{−h} − 1) D.

    2M extrapolates x̂_0, linearly in λ, from the last two points (a baseline h_{i−1}) by
    h_i/2 = h_{i−1}/(2r). When a step is much longer than the one before (r ≪ 1: the last step of
    a uniform-t grid, where λ runs off towards λ(t_end)), that extrapolation reaches far beyond
    its baseline into the region where x̂_0(λ) saturates and overshoots: on a 2-D Gaussian (VP,
    std 0.2, uniform grid) the error was 7·10⁻² at 20 steps and 5·10⁻² at 40, and it did not fall
    monotonically in the number of steps. So a step is taken in first order whenever
    r < ``DPM_MIN_STEP_RATIO`` = 0.7 — the first step too (no history, r undefined). On the log-SNR
    grid (the default) r = 1 and every step after the first is 2M. This replaces diffusers'
    "lower order final when steps < 15" rule, whose switch made the error jump between 10 and
    20 steps. Measured (pf_rms against a 2000-step reference, 2-D Gaussian std 0.2 and eight
    Gaussians, VP / sub-VP / VE, 5…320 steps), the error now falls monotonically on the uniform
    and log-SNR grids (tests/test_samplers_accuracy.py). One network call per step.

    ``order=3`` is DPM-Solver++(3M) and ``eta > 0`` the stochastic SDE-DPM-Solver++ (η = 1:
    the reverse SDE; any η ≥ 0 keeps the marginals, η > 1 adds more Langevin noise per step),
    both in :mod:`diffusion_lab.dpm_multistep`.

    Few steps (benchmarks/few_step_fid.py, the bundled VP MNIST model, 10 NFE, FID at n = 2000):
    the ending matters more than the order — ``grid="uniform", t_end=0.1, denoise=True``
    (diffusers' default end: 9 steps, then x̂_0) beat the log-SNR and Karras grids ending at
    t_min, with η = 0 and η = 1 alike (FID 0.521 and 0.512). The best 10-NFE result measured is
    UniPC-3 ending at t = 0.05 (:data:`diffusion_lab.unipc.FEW_STEP`: 0.438; diffusers' UniPC
    0.480); the 1000-step ancestral reference is 0.348.
    """
    order = check_int(order, "order", minimum=1)
    if order > 3:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    eta = check_positive(eta, "eta", allow_zero=True)
    run = _Run("dpm_solver", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    if order == 3 or eta > 0:
        return _dpm_multistep(run, x, order, eta)
    prev_x0, prev_h = None, None
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        h = ct.lam - cs.lam
        x0 = run.x0(x, run.eps(x, s), s)
        if order == 1 or prev_x0 is None or prev_h / h < DPM_MIN_STEP_RATIO:
            d = x0
        else:
            r = prev_h / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        x = (ct.sigma / cs.sigma) * x - ct.m * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
        run.emit(i, t, x, x0)
    return run.finish(x, order=order)


def _dpm_multistep(run: _Run, x: Tensor, order: int, eta: float) -> Tensor:
    """DPM-Solver++(kM), η ≥ 0, stepped in x̃ = x/m (see :mod:`diffusion_lab.dpm_multistep`)."""
    x0s, hs = [], []
    xt = x / run.coef(run.grid[0]).m
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        x0s = [*x0s[-2:], run.x0(cs.m * xt, run.eps(cs.m * xt, s), s)]
        hs = [*hs[-2:], ct.lam - cs.lam]
        noise = run.noise() if eta > 0 else None
        xt = multistep_update(xt, x0s, hs, math.exp(-ct.lam), eta, order, noise)
        run.emit(i, t, ct.m * xt, x0s[-1])
    return run.finish(run.coef(run.t_end).m * xt, order=order, eta=eta)


# -- DDPM ancestral sampling --------------------------------------------------------------------
def ancestral(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
              generator=None, progress=False, denoise=False, info=None,
              variance="posterior") -> Tensor:
    r"""Ancestral sampling from the Gaussian posterior q(x_t | x_s, x_0 = x̂_0), s > t.

    With m_{s|t} = m_s/m_t and σ²_{s|t} = σ_s² − m_{s|t}² σ_t² (the forward
    transition x_s | x_t):

        mean = (m_t σ²_{s|t}/σ_s²) x̂_0 + (m_{s|t} σ_t²/σ_s²) x_s
             = (x_s − σ²_{s|t} ε̂/σ_s) / m_{s|t}
        var  = σ²_{s|t} σ_t²/σ_s²   ("posterior": DDPM's β̃; equals DDIM η = 1)
             = σ²_{s|t}             ("beta": DDPM's σ² = β_i; = 1 − ᾱ_s/ᾱ_t for VP,
                                     σ_s² − σ_t² for VE)
    """
    check_choice(variance, "variance", ("posterior", "beta"))
    run = _Run("ancestral", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    for i, s, t in run.intervals():
        cs, ct = run.coef(s), run.coef(t)
        m_st = cs.m / ct.m
        # σ²_{s|t} = σ_s² (1 − e^{−2h}) computed without cancellation
        var_st = cs.sigma**2 * -math.expm1(-2.0 * (ct.lam - cs.lam))
        eps = run.eps(x, s)
        x0 = run.x0(x, eps, s)
        mean = (x - var_st / cs.sigma * eps) / m_st
        var = var_st * ct.sigma**2 / cs.sigma**2 if variance == "posterior" else var_st
        x = mean + math.sqrt(var) * run.noise()
        run.emit(i, t, x, x0)
    return run.finish(x, variance=variance)


SAMPLERS = {
    "euler_maruyama": euler_maruyama,
    "predictor_corrector": predictor_corrector,
    "probability_flow": probability_flow,
    "exponential_integrator": exponential_integrator,
    "ddim": ddim,
    "dpm_solver": dpm_solver,
    "ancestral": ancestral,
    "edm": edm,
    "restart": restart,
    "unipc": unipc,
}

def sample(eps_model, sde, shape, method: str = "dpm_solver", steps: int = 20,
           generator: torch.Generator | None = None, *, dtype=torch.float32, device="cpu",
           **kwargs) -> Tensor:
    """Draw x_1 = ``sde.prior_sample(shape, generator)`` and run sampler ``method`` on it.

    ``kwargs`` go to the sampler (``t_end``, ``grid``, ``y``, ``callback``,
    ``progress``, ``denoise``, ``info`` and method options such as ``eta``); an option the
    method does not take is a TypeError naming it and the method's own options
    (:func:`method_options`).
    """
    if not isinstance(method, str) or method not in SAMPLERS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(SAMPLERS)}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    steps = check_int(steps, "steps", minimum=1)
    check_options(method, kwargs)
    x = sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)
    return SAMPLERS[method](eps_model, sde, x, steps=steps, generator=generator, **kwargs)


#: the keyword arguments every sampler takes (the shared signature, besides x and steps)
COMMON_OPTIONS = ("t_end", "grid", "y", "callback", "generator", "progress", "denoise", "info")


def method_options(method: str) -> tuple[str, ...]:
    """The options of sampler ``method`` beyond :data:`COMMON_OPTIONS` (e.g. ddim: eta)."""
    params = inspect.signature(SAMPLERS[method]).parameters
    return tuple(k for k, p in params.items()
                 if p.kind is p.KEYWORD_ONLY and k not in COMMON_OPTIONS and k != "steps")


def check_options(method: str, options) -> None:
    """Refuse keyword arguments sampler ``method`` does not take, naming what it takes."""
    own = method_options(method)
    for key in options:
        if key not in own and key not in COMMON_OPTIONS:
            raise TypeError(f"method {method!r} takes no option {key!r}; its own options: "
                            f"{', '.join(own) or '(none)'}; every method takes: "
                            f"{', '.join(COMMON_OPTIONS)}")



class _FirstCall(Exception):
    """Raised by :func:`check_arguments`' stand-in network at its first call."""


def check_arguments(method: str, sde, shape, steps: int = 20, **options) -> None:
    """Raise what ``sample(eps_model, sde, shape, method, steps, **options)`` raises before its
    first network call — every sampler checks its arguments, its grid and (restart) its
    restart points there — without sampling: a stand-in network stops the run at that call.
    Checks that need the network's output (DDIM's η on later steps, the Langevin step size)
    are not made. For a caller that must refuse a request before admitting it (the service)."""
    def first_call(x, t, *y):
        raise _FirstCall

    try:
        sample(first_call, sde, shape, method, steps, **options)
    except _FirstCall:
        return
    raise RuntimeError(f"method {method!r} finished without calling the network")
