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
# $$x_t = m_t\hat x_0 + \sqrt{\sigma_t^2 - c^2}\;\hat\varepsilon + c\,z,\qquad
# c = \eta\,\sigma_t\sqrt{1 - e^{-2h}} .$$
# $\eta = 0$ is deterministic; $\eta = 1$ is DDPM's ancestral step. `z` is standard normal.

# %%
def ddim_step(x, eps, m_s, sigma_s, m_t, sigma_t, eta, z):
    """One DDIM step from s to t with noise prediction eps = ε̂(x_s, s)."""
    ### BEGIN SOLUTION
    # HINT: x0 = (x − σ_s ε̂)/m_s; h = log(m_t/σ_t) − log(m_s/σ_s); then the formula above
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
# Variation of constants on the ODE in data prediction gives, with $\hat x_0$ frozen over the
# step, $$x_t = \frac{\sigma_t}{\sigma_s}x_s - m_t\,(e^{-h}-1)\,\hat x_0 .$$

# %%
def dpm_solver_pp1_step(x, x0_hat, m_s, sigma_s, m_t, sigma_t):
    """One first-order DPM-Solver++ step from s to t with data prediction x0_hat."""
    ### BEGIN SOLUTION
    # HINT: math.expm1(-h) computes e^{−h} − 1 accurately for small h
    h = math.log(m_t / sigma_t) - math.log(m_s / sigma_s)
    return (sigma_t / sigma_s) * x - m_t * math.expm1(-h) * x0_hat
    ### END SOLUTION


# %%
checks.check_dpm_solver_pp1_step(dpm_solver_pp1_step);

# %% [markdown]
# ## Exercise 3 · DPM-Solver++(2M)'s second-order correction (medium)
#
# The multistep method replaces $\hat x_0$ in exercise 2 by a linear extrapolation from the
# current and the previous data predictions: with $r = h_{\text{prev}}/h$,
# $$D = \Big(1 + \frac1{2r}\Big)\hat x_{0,i} - \frac1{2r}\,\hat x_{0,i-1}.$$

# %%
def dpm_solver_2m(x0_cur, x0_prev, h, h_prev):
    """The combination D of the current and previous x̂_0 (h, h_prev floats > 0)."""
    ### BEGIN SOLUTION
    # HINT: r = h_prev / h
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
