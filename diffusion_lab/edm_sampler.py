r"""The EDM sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Algorithm 2): Heun steps in σ̃ = σ/m with optional stochastic churn, on any
process of the package (registered in :mod:`diffusion_lab.samplers` as ``"edm"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_positive
from .sampler_run import _Run

__all__ = ["edm"]


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
