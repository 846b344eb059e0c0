# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Samplers — exercises
#
# Practice for lesson `notebooks/06_samplers.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: a step goes from time $s$ to an earlier time $t < s$; $x_u = m_u x_0 +
# \sigma_u z$; $\lambda = \log(m/\sigma)$ (the *half* log-SNR) and $h = \lambda_t - \lambda_s > 0$;
# $\hat x_0 = (x_s - \sigma_s\hat\varepsilon)/m_s$. The coefficients `m_s, sigma_s, m_t, sigma_t`
# are Python floats.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · A DDIM step (medium)
#
# DDIM freezes the network's two guesses over the step — the clean point $\hat x_0$ and the
# noise direction $\hat\varepsilon$ — and re-assembles the state at the new time $t$ the way the
# forward marginal $x_t = m_t x_0 + \sigma_t\varepsilon$ builds it. With $\eta > 0$ a part
# $c\,z$ of the noise is *fresh* ($z$ standard normal, $c = \eta\,\sigma_t\sqrt{1 - e^{-2h}}$),
# and the remaining $\hat\varepsilon$ part must shrink so that the total noise variance stays
# $\sigma_t^2$. $\eta = 0$ is deterministic; $\eta = 1$ is DDPM's ancestral step.

# %%
def ddim_step(x, eps, m_s, sigma_s, m_t, sigma_t, eta, z):
    """One DDIM step from s to t with noise prediction eps = ε̂(x_s, s)."""
    ### BEGIN SOLUTION
    # HINT: first x̂_0 from x_s and ε̂ (the forward marginal at s, solved for x_0); the
    # HINT: variances of the two noise terms (ε̂ and z, independent) must add up to σ_t²
    x0 = (x - sigma_s * eps) / m_s
    h = math.log(m_t / sigma_t) - math.log(m_s / sigma_s)
    c = eta * sigma_t * math.sqrt(-math.expm1(-2 * h))
    return m_t * x0 + math.sqrt(sigma_t**2 - c**2) * eps + c * z
    ### END SOLUTION


# %%
checks.check_ddim_step(ddim_step);

# %% [markdown]
# ## Exercise 2 · DPM-Solver++, first order (medium)
#
# Lesson 06 solves the probability-flow ODE in data prediction by variation of constants:
# $$x_t = \frac{\sigma_t}{\sigma_s}\,x_s + \sigma_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}\,
# \hat x_0(\lambda)\,\mathrm d\lambda .$$
# First order: freeze $\hat x_0$ at its value at $s$, integrate, and express the result with
# $h = \lambda_t - \lambda_s$ and $m_t$.

# %%
def dpm_solver_pp1_step(x, x0_hat, m_s, sigma_s, m_t, sigma_t):
    """One first-order DPM-Solver++ step from s to t with data prediction x0_hat."""
    ### BEGIN SOLUTION
    # HINT: σ_t e^{λ_t} = m_t (λ = log(m/σ)); write e^{λ_t} − e^{λ_s} with a factor e^{λ_t}
    # HINT: pulled out; math.expm1(-h) computes e^{−h} − 1 accurately for small h
    h = math.log(m_t / sigma_t) - math.log(m_s / sigma_s)
    return (sigma_t / sigma_s) * x - m_t * math.expm1(-h) * x0_hat
    ### END SOLUTION


# %%
checks.check_dpm_solver_pp1_step(dpm_solver_pp1_step);

# %% [markdown]
# ## Exercise 3 · DPM-Solver++(2M)'s second-order correction (medium)
#
# The multistep method replaces the frozen $\hat x_0$ of exercise 2 by a straight line in
# $\lambda$ through the previous prediction $\hat x_{0,i-1}$ (at $\lambda_s - h_\text{prev}$) and
# the current one $\hat x_{0,i}$ (at $\lambda_s$). To second order, the integral of exercise 2
# sees that line through its value at the *middle* of the step, $\lambda_s + h/2$: return that
# value $D$ (it then replaces $\hat x_0$ in exercise 2's update).

# %%
def dpm_solver_2m(x0_cur, x0_prev, h, h_prev):
    """D: the extrapolated x̂_0 the 2M step uses (h, h_prev floats > 0)."""
    ### BEGIN SOLUTION
    # HINT: the line's slope per unit λ is (x̂_0,i − x̂_0,i−1)/h_prev; walk h/2 along it
    r = h_prev / h
    return (1 + 1 / (2 * r)) * x0_cur - 1 / (2 * r) * x0_prev
    ### END SOLUTION


# %%
checks.check_dpm_solver_2m(dpm_solver_2m);

# %% [markdown]
# ## Exercise 4 · The corrector's step size (medium)
#
# The predictor–corrector sampler chooses the Langevin step size from a target
# signal-to-noise ratio: $\varepsilon = 2\alpha\,(\mathrm{snr}\,\|z\|/\|s\|)^2$. Each norm is taken
# over all non-batch dimensions of the noise `z` and of the score `score` (both `[B, ...]`) and then
# **averaged over the batch**, so the whole batch shares one $\varepsilon$ (`langevin_corrector_step`'s docstring says why:
# per-sample steps let a sample whose score is small take a huge step and run away).
# Return that $\varepsilon$ repeated for each sample, shape `[B]`.

# %%
def corrector_step_size(score, z, snr, alpha):
    """ε = 2 α (snr ‖z‖/‖s‖)² with batch-mean norms, shape [B]."""
    ### BEGIN SOLUTION
    # HINT: flatten to [B, -1] (x.flatten(1)), take .norm(dim=1), then average over the batch
    ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
    return (2 * alpha * (snr * ratio) ** 2).expand(z.shape[0])
    ### END SOLUTION


# %%
checks.check_corrector_step_size(corrector_step_size);

# %% [markdown]
# ## Exercise 5 · The DDIM sampling loop, and its order (medium)
#
# Put exercise 1 ($\eta = 0$) into a loop: from `x` at `grid[0]` step through every pair of
# consecutive times of the decreasing list `grid` and return the state at `grid[-1]`.
# `eps_model(x, t)` takes `t` as a `[B]` tensor; `sde.marginal(t)` returns `(m, σ)` for a
# tensor `t`. The checker compares with `samplers.ddim` and then **measures the order** of your
# loop against the exact ODE solution of a Gaussian (`GaussianOracle.pf_map`) at 20, 40 and 80
# steps — it must be 1.

# %%
def ddim_loop(eps_model, sde, x, grid):
    """Deterministic DDIM from grid[0] down to grid[-1]."""
    ### BEGIN SOLUTION
    # HINT: zip(grid[:-1], grid[1:]) gives the (s, t) pairs; ε̂ is evaluated once per step,
    # HINT: at (x_s, s)
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        m_s, sigma_s = (float(v) for v in sde.marginal(torch.tensor(s)))
        m_t, sigma_t = (float(v) for v in sde.marginal(torch.tensor(t)))
        eps = eps_model(x, torch.full((x.shape[0],), s))
        x = m_t * (x - sigma_s * eps) / m_s + sigma_t * eps
    return x
    ### END SOLUTION


# %%
checks.check_ddim_loop(ddim_loop);

# %% [markdown]
# ## Exercise 6 · The ancestral sampling loop (medium)
#
# DDPM's Algorithm 2 on any grid: each step from $s$ to $t < s$ draws from the Gaussian
# posterior $q(x_t\mid x_s, x_0 = \hat x_0)$. It is exercise 1 of lesson 03 with the forward
# transition $x_s\mid x_t = \mathcal N(m_{s|t}x_t, \sigma^2_{s|t} I)$ in place of one DDPM step,
# $m_{s|t} = m_s/m_t$, $\sigma^2_{s|t} = \sigma_s^2 - m_{s|t}^2\sigma_t^2$ (so $\alpha_i\to m_{s|t}^2$,
# $\beta_i\to\sigma^2_{s|t}$, $1-\bar\alpha_{i-1}\to\sigma_t^2$, $1-\bar\alpha_i\to\sigma_s^2$). Use the
# posterior variance, and `noises[k]` (standard normal, shaped like `x`) at step `k`.

# %%
def ancestral_loop(eps_model, sde, x, grid, noises):
    """Ancestral sampling from grid[0] down to grid[-1] with the given noises."""
    ### BEGIN SOLUTION
    # HINT: per step: x̂_0 from ε̂ (lesson 03, exercise 2), then the posterior mean and variance
    # HINT: of lesson 03's exercise 1 with the replacements above; add √variance · noise
    for (s, t), z in zip(zip(grid[:-1], grid[1:], strict=True), noises, strict=True):
        m_s, sigma_s = (float(v) for v in sde.marginal(torch.tensor(s)))
        m_t, sigma_t = (float(v) for v in sde.marginal(torch.tensor(t)))
        x0 = (x - sigma_s * eps_model(x, torch.full((x.shape[0],), s))) / m_s
        a = (m_s / m_t) ** 2
        var_st = sigma_s**2 - a * sigma_t**2
        mean = math.sqrt(a) * sigma_t**2 / sigma_s**2 * x + m_t * var_st / sigma_s**2 * x0
        x = mean + math.sqrt(var_st * sigma_t**2 / sigma_s**2) * z
    return x
    ### END SOLUTION


# %%
checks.check_ancestral_loop(ancestral_loop);

# %% [markdown]
# ## Questions
#
# *Q1. Show that DDIM with $\eta = 0$ (exercise 1) and DPM-Solver++ of first order
# (exercise 2) are the same update.*
#
# ### BEGIN ANSWER
# Substitute $\hat\varepsilon = (x_s - m_s\hat x_0)/\sigma_s$ into DDIM:
# $x_t = m_t\hat x_0 + \frac{\sigma_t}{\sigma_s}(x_s - m_s\hat x_0) = \frac{\sigma_t}{\sigma_s}x_s
# + \big(m_t - \frac{\sigma_t m_s}{\sigma_s}\big)\hat x_0$. Since $e^{-h} = \frac{m_s\sigma_t}
# {\sigma_s m_t}$, the bracket is $m_t(1 - e^{-h}) = -m_t(e^{-h}-1)$: DPM-Solver++(1). (The
# checker of exercise 2 verifies this identity numerically on every case.)
# ### END ANSWER
#
# *Q2. Why do DPM-Solver and DDIM step on a grid that is uniform in $\lambda$ rather than in
# $t$?*
#
# ### BEGIN ANSWER
# In $\lambda$ the exact solution is $x_t = \frac{\sigma_t}{\sigma_s}x_s + \sigma_t\int_{\lambda_s}
# ^{\lambda_t}e^{\lambda}\hat x_0\,d\lambda$: the linear part is integrated exactly and the
# error of a step depends only on how much $\hat x_0$ changes over $[\lambda_s, \lambda_t]$, a
# smooth function of $\lambda$. Equal steps in $\lambda$ spread that change evenly; a uniform
# $t$ grid would waste steps at large $t$, where $\lambda$ changes slowly, and take huge steps in
# $\lambda$ near $t = 0$, where the details of the sample are decided.
# ### END ANSWER
