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
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import (
    batch_times,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_positive,
    expand_like,
)
from .dpm_multistep import multistep_update
from .ode import FIXED_METHODS, integrate_fixed, rk45
from .restart import restart
from .sampler_run import DEFAULT_GRIDS, _Run
from .sde import SDE
from .unipc import unipc

__all__ = [
    "SAMPLERS", "sample", "euler_maruyama", "predictor_corrector", "langevin_corrector_step",
    "probability_flow", "exponential_integrator", "ddim", "dpm_solver", "ancestral", "edm",
    "DEFAULT_GRIDS", "restart", "unipc", "COMMON_OPTIONS", "method_options", "check_options",
    "check_arguments",
]


# -- stochastic samplers of the reverse SDE ----------------------------------------------------
def euler_maruyama(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
                   generator=None, progress=False, denoise=False, info=None) -> Tensor:
    r"""Euler–Maruyama on the reverse SDE dx = [f x − g² ∇log p] dt + g dw̄:

    x ← x − [f_s x − g_s² s(x, s)] Δ + g_s √Δ z,  s = −ε̂/σ_s,  Δ = s − t > 0.
    One network call per step; noise is added on every step, the last included.
    """
    run = _Run("euler_maruyama", eps_model, sde, x, steps, t_end, grid, y, callback, progress,
               info, generator, denoise)
    for i, s, t in run.intervals():
        x, x0 = _em_step(run, x, s, t)
        run.emit(i, t, x, x0)
    return run.finish(x)


def _em_step(run: _Run, x: Tensor, s: float, t: float) -> tuple[Tensor, Tensor]:
    c, dt = run.coef(s), s - t
    eps = run.eps(x, s)
    score = -eps / c.sigma
    x_new = x - (c.f * x - c.g2 * score) * dt + math.sqrt(c.g2 * dt) * run.noise()
    return x_new, run.x0(x, eps, s)


def langevin_corrector_step(eps_model, sde, x, t, *, snr=0.16, alpha=1.0, step_size=None,
                            y=None, generator=None) -> tuple[Tensor, Tensor]:
    r"""One Langevin MCMC step at fixed time ``t`` (Song et al. 2021, Algorithm 5):

        x ← x + ε s(x, t) + √(2ε) z,   ε = 2 α (snr ‖z‖ / ‖s‖)²,

    with ‖z‖ and ‖s‖ the *batch means* of the per-sample norms over all non-batch dimensions
    (score_sde's rule), so one ε serves the whole batch, and the same z in ε and in the update.
    Why batch means: with per-sample norms a sample whose score happens to be small gets a huge
    step, lands where the score is smaller still, and runs away — on VE with a two-component
    mixture (snr 0.16, 100–200 steps) the variance of the second coordinate ends at 1.5–3.4
    against the true 0.28; with batch means it is 0.284–0.285
    (tests/test_samplers_accuracy.py shows both). ``alpha`` is the discretised α_i of the
    predictor's step (1 for VE). A fixed ``step_size`` (a float ε) replaces the rule; for
    Gaussian p_t with variance v and an exact score the chain is then stationary at variance
    v / (1 − ε/(2v)). Returns ``(x_new, ε [B])``.
    """
    check_finite(x, "x")
    tb = batch_times(t, x)
    if step_size is None:
        snr = check_positive(snr, "snr")
        alpha = check_positive(alpha, "alpha")
    else:
        step_size = check_positive(step_size, "step_size")
    _, sigma = sde.marginal(tb)
    eps = eps_model(x, tb) if y is None else eps_model(x, tb, y)
    score = -eps / expand_like(sigma.to(x.dtype), x)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if step_size is None:
        z_norm = z.reshape(x.shape[0], -1).norm(dim=-1).mean()
        s_norm = score.reshape(x.shape[0], -1).norm(dim=-1).mean()
        if not bool(s_norm > 0):
            raise ValueError(
                f"langevin_corrector_step: the score is exactly zero at t={float(tb[0]):.6g}; "
                "the snr step-size rule is undefined there (pass step_size)"
            )
        eps_size = (2.0 * alpha * (snr * z_norm / s_norm) ** 2).expand(x.shape[0])
    else:
        eps_size = torch.full((x.shape[0],), step_size, dtype=x.dtype, device=x.device)
    e = expand_like(eps_size, x)
    return x + e * score + torch.sqrt(2.0 * e) * z, eps_size


def predictor_corrector(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None,
                        callback=None, generator=None, progress=False, denoise=False, info=None,
                        snr=0.16, n_corrector=1) -> Tensor:
    r"""Predictor–corrector sampling (Song et al. 2021): at each grid time s,
    ``n_corrector`` Langevin steps (:func:`langevin_corrector_step`) with
    α = m_s²/m_t² (DDPM's α_i = 1 − β_i for VP / sub-VP, exactly 1 for VE),
    then one Euler–Maruyama predictor step from s to t. NFE = steps · (1 + n_corrector).
    """
    snr = check_positive(snr, "snr")
    n_corrector = check_int(n_corrector, "n_corrector", minimum=0)
    run = _Run("predictor_corrector", eps_model, sde, x, steps, t_end, grid, y, callback, progress,
               info, generator, denoise)
    for i, s, t in run.intervals():
        alpha = (run.coef(s).m / run.coef(t).m) ** 2
        model_at_s = lambda xs, tb, s=s: run.eps(xs, s)  # noqa: E731 - counted, checked call
        for _ in range(n_corrector):
            x, _ = langevin_corrector_step(model_at_s, sde, x, s, snr=snr, alpha=alpha,
                                           generator=generator)
        x, x0 = _em_step(run, x, s, t)
        run.emit(i, t, x, x0)
    return run.finish(x, snr=snr, n_corrector=n_corrector)


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


# -- EDM (Karras et al. 2022) ------------------------------------------------------------------
def edm(eps_model, sde, x, *, steps, t_end=None, grid=None, y=None, callback=None,
        generator=None, progress=False, denoise=False, info=None, s_churn=0.0, s_tmin=0.0,
        s_tmax=math.inf, s_noise=1.0) -> Tensor:
    r"""The EDM sampler (Karras et al. 2022, Algorithm 2) on any process, in σ̃ = σ/m = e^{−λ}.

    With x̃ = x/m the probability-flow ODE is dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃ = ε̂, where
    D = x̃ − σ̃ ε̂ = x̂_0. Each step from σ̃_i to σ̃_{i+1}:

        churn:  γ = min(S_churn/N, √2 − 1) if S_tmin ≤ σ̃_i ≤ S_tmax, else 0;  σ̂ = (1 + γ) σ̃_i,
                x̃ ← x̃ + √(σ̂² − σ̃_i²) S_noise z
        Heun:   d = ε̂(x̃; σ̂),  x̃' = x̃ + (σ̃_{i+1} − σ̂) d,
                x̃ ← x̃ + (σ̃_{i+1} − σ̂)(d + ε̂(x̃'; σ̃_{i+1}))/2     (Euler on the last step)

    NFE = 2N − 1 (the paper's count: its last step goes to σ̃ = 0, where Heun is undefined; here
    it ends at σ̃(t_end), and ``denoise=True`` adds the step to x̂_0). ``s_churn = 0`` (the
    default) is the deterministic Heun sampler, EDM's choice for VP and VE models. σ̂ must stay
    within the process's range: churn is skipped on a step where (1 + γ) σ̃_i > σ̃(t_max) (the
    first step, whatever S_tmax says), since no time t ≤ t_max has that noise level.
    ``s_noise``, ``s_tmin``, ``s_tmax`` other than their defaults need ``s_churn > 0``.
    """
    s_churn = check_positive(s_churn, "s_churn", allow_zero=True)
    s_noise = check_positive(s_noise, "s_noise")
    s_tmin = check_positive(s_tmin, "s_tmin", allow_zero=True)
    s_tmax = check_positive(s_tmax, "s_tmax", allow_zero=True, allow_inf=True)
    if not s_tmax >= s_tmin:
        raise ValueError(f"s_tmax must be >= s_tmin, got s_tmax={s_tmax}, s_tmin={s_tmin}")
    if s_churn == 0 and (s_noise, s_tmin, s_tmax) != (1.0, 0.0, math.inf):
        raise ValueError(f"s_noise, s_tmin and s_tmax shape the churn; with s_churn=0 they have "
                         f"no effect, got s_noise={s_noise}, s_tmin={s_tmin}, s_tmax={s_tmax} "
                         "(pass s_churn > 0, or leave them at 1, 0, inf)")
    run = _Run("edm", eps_model, sde, x, steps, t_end, grid, y, callback, progress, info,
               generator, denoise)
    gamma_max = min(s_churn / run.steps, math.sqrt(2.0) - 1.0)
    sig_top = math.exp(-run.coef(run.grid[0]).lam)
    xt = x / run.coef(run.grid[0]).m  # x̃ = x/m
    for i, s, t in run.intervals():
        sig_s, sig_t = math.exp(-run.coef(s).lam), math.exp(-run.coef(t).lam)
        gamma = gamma_max if s_tmin <= sig_s <= s_tmax else 0.0
        if gamma > 0 and (1.0 + gamma) * sig_s <= sig_top:
            sig_hat = (1.0 + gamma) * sig_s
            s = float(sde.t_from_half_log_snr(torch.tensor(-math.log(sig_hat), dtype=torch.float64)))
            xt = xt + math.sqrt(sig_hat**2 - sig_s**2) * s_noise * run.noise()
        else:
            sig_hat = sig_s
        m_s = run.coef(s).m
        d = run.eps(m_s * xt, s)
        x0 = xt - sig_hat * d
        x_euler = xt + (sig_t - sig_hat) * d
        if i < run.steps - 1:
            d2 = run.eps(run.coef(t).m * x_euler, t)
            xt = xt + (sig_t - sig_hat) * 0.5 * (d + d2)
        else:
            xt = x_euler
        run.emit(i, t, run.coef(t).m * xt, x0)
    return run.finish(run.coef(run.t_end).m * xt, s_churn=s_churn)


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
