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
# # 05 · Scores and SDEs — exercises
#
# Practice for lesson `notebooks/05_scores_and_sdes.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: forward SDE $dx = f(t)\,x\,dt + g(t)\,dw$; `sde.drift(x, t)` returns
# $f(t)\,x$ (shaped like `x`), `sde.diffusion(t)` returns $g(t)$ of shape `[B]`;
# `score_fn(x, t)` returns $\nabla_x\log p_t(x)$ shaped like `x`. `t` is a float tensor `[B]`.

# %% tags=["parameters"]
QUICK = False  # True: fewer Langevin chains in exercise 5 (CI)

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)
N_CHAINS = 1000 if QUICK else 4000  # Langevin chains in the check of exercise 5

# %% [markdown]
# ## Exercise 1 · The score of a Gaussian (easy)
#
# Return $\nabla_x \log\mathcal N(x;\mu, v I)$ for `x` of shape `[B, D]`, `mean` `[D]`, a scalar
# variance `var`.

# %%
def gaussian_score(x, mean, var):
    """∇_x log N(x; μ, v I)."""
    ### BEGIN SOLUTION
    # HINT: log N = −‖x − μ‖²/(2v) + const; differentiate in x
    return -(x - mean) / var
    ### END SOLUTION


# %%
checks.check_gaussian_score(gaussian_score);

# %% [markdown]
# ## Exercise 2 · The VP SDE's marginal (easy)
#
# For $f = -\tfrac12\beta(t)$, $g = \sqrt{\beta(t)}$ with the linear rate, $x_t = m(t)x_0 +
# \sigma(t)z$ with $m = e^{-B(t)/2}$ and $\sigma^2 = 1 - m^2$, $B(t) = \int_0^t\beta$. Return
# `(m, sigma)`, each `[B]`.

# %%
def vp_marginal(t, beta_min, beta_max):
    """(m(t), σ(t)) of the VP SDE with β(t) = β_min + t (β_max − β_min)."""
    ### BEGIN SOLUTION
    # HINT: B(t) = β_min t + ½ t² (β_max − β_min); m = exp(−B/2); σ = √(1 − m²)
    b = beta_min * t + 0.5 * t**2 * (beta_max - beta_min)
    m = torch.exp(-0.5 * b)
    return m, torch.sqrt(-torch.expm1(-b))  # √(1 − m²) without cancellation at small t
    ### END SOLUTION


# %%
checks.check_vp_marginal(vp_marginal);

# %% [markdown]
# ## Exercise 3 · One Euler–Maruyama step of the reverse SDE (medium)
#
# The reverse-time SDE is $dx = [f(t)x - g(t)^2\nabla\log p_t(x)]\,dt + g(t)\,d\bar w$, run from
# $t$ down to $t - \Delta t$. With a standard normal `z` (shaped like `x`), take one step
# $$x \leftarrow x - [f(t)x - g(t)^2 s(x,t)]\,\Delta t + g(t)\sqrt{\Delta t}\,z .$$

# %%
def reverse_em_step(x, t, dt, sde, score_fn, z):
    """One Euler–Maruyama step of the reverse SDE from t to t − dt (dt > 0)."""
    ### BEGIN SOLUTION
    # HINT: g = sde.diffusion(t)[:, None] for x of shape [B, D]; the drift is sde.drift(x, t) − g² score_fn(x, t)
    g = sde.diffusion(t).reshape(-1, *[1] * (x.dim() - 1))
    drift = sde.drift(x, t) - g**2 * score_fn(x, t)
    return x - drift * dt + g * math.sqrt(dt) * z
    ### END SOLUTION


# %%
checks.check_reverse_em_step(reverse_em_step);

# %% [markdown]
# ## Exercise 4 · Derive and code the probability-flow drift (medium)
#
# The Fokker–Planck equation of the forward SDE is $\partial_t p = -\nabla\cdot(f x\,p) +
# \tfrac12 g^2\Delta p$. Write $\tfrac12 g^2\Delta p = \nabla\cdot(\tfrac12 g^2 p\,\nabla\log p)$
# and read off the velocity $v(x, t)$ of a *deterministic* flow $\dot x = v$ with the same
# $\partial_t p = -\nabla\cdot(v\,p)$. Code $v$.

# %%
def pf_drift(x, t, sde, score_fn):
    """The probability-flow ODE's velocity dx/dt at (x, t)."""
    ### BEGIN SOLUTION
    # HINT: collect the divergences: ∂_t p = −∇·([f x − ½ g² ∇log p] p); that bracket is v
    g = sde.diffusion(t).reshape(-1, *[1] * (x.dim() - 1))
    return sde.drift(x, t) - 0.5 * g**2 * score_fn(x, t)
    ### END SOLUTION


# %%
checks.check_pf_drift(pf_drift);

# %% [markdown]
# ## Exercise 5 · A Langevin step (medium)
#
# Langevin dynamics $x \leftarrow x + \varepsilon\,\nabla\log p(x) + \sqrt{2\varepsilon}\,z$ samples
# $p$ as $\varepsilon\to0$. Here `score_fn(x)` takes `x` only and `step_size` is a float $\varepsilon$.
# The checker also runs your step as a chain on $\mathcal N(0, 0.5)$ and compares the variance
# it settles at with the exact value for a finite step, $v/(1-\varepsilon/(2v))$.

# %%
def langevin_step(x, score_fn, step_size, z):
    """x + ε s(x) + √(2ε) z."""
    ### BEGIN SOLUTION
    # HINT: the drift is step_size · score_fn(x) and the noise math.sqrt(2 · step_size) · z
    return x + step_size * score_fn(x) + math.sqrt(2 * step_size) * z
    ### END SOLUTION


# %%
checks.check_langevin_step(langevin_step, n_chains=N_CHAINS);

# %% [markdown]
# ## Exercise 6 · Denoising score matching (medium)
#
# A score model $s_\theta(x_t)$ cannot be fitted to the unknown $\nabla\log p_t$ directly.
# Denoising score matching fits it to the score of the *conditional* $q(x_t\mid x_0) =
# \mathcal N(m x_0, \sigma^2 I)$ instead, at the point $x_t = m x_0 + \sigma\varepsilon$.
# Write that target in terms of the noise $\varepsilon$ and return the per-sample squared error
# `[B]`. Shapes: `score_pred`, `noise` `[B, D]`; `sigma` `[B]`. (Then compare, on paper,
# with the ε-loss of $\varepsilon_\theta = -\sigma s_\theta$: Q3.)

# %%
def dsm_loss(score_pred, noise, sigma):
    """‖s_θ(x_t) − ∇_{x_t} log q(x_t | x_0)‖² per sample."""
    ### BEGIN SOLUTION
    # HINT: ∇_x log N(x; μ, σ² I) = −(x − μ)/σ²; here x − μ = x_t − m x_0 is σ times the noise
    target = -noise / sigma[:, None]
    return ((score_pred - target) ** 2).sum(1)
    ### END SOLUTION


# %%
checks.check_dsm_loss(dsm_loss);

# %% [markdown]
# ## Questions
#
# *Q1. The reverse SDE's drift has $g^2 s$, the probability-flow ODE's $\tfrac12 g^2 s$.
# Explain the factor 2 in one or two sentences.*
#
# ### BEGIN ANSWER
# Reversing time turns the diffusion term of Fokker–Planck, $+\tfrac12 g^2\Delta p$, into a
# term that *un*-spreads mass; the reverse SDE still injects noise ($+\tfrac12 g^2\Delta p$), so
# its drift must undo twice the spreading, $g^2 s$. The ODE injects no noise, so half the
# correction, $\tfrac12 g^2 s$, is exactly what turns the diffusion into a transport.
# ### END ANSWER
#
# *Q2. For $p = \mathcal N(0, v)$ the Langevin step is $x' = (1-\varepsilon/v)x +
# \sqrt{2\varepsilon}z$. Compute its stationary variance. Is the chain unbiased?*
#
# ### BEGIN ANSWER
# Stationarity: $w = (1-\varepsilon/v)^2 w + 2\varepsilon$, so
# $w = 2\varepsilon / (2\varepsilon/v - \varepsilon^2/v^2) = v/(1-\varepsilon/(2v))$, larger than
# $v$: the unadjusted chain is biased by $O(\varepsilon)$ (a Metropolis correction, or
# $\varepsilon\to0$, removes it). The predictor–corrector sampler keeps $\varepsilon$ small
# through its snr rule.
# ### END ANSWER
#
# *Q3. Show that the DSM loss of exercise 6 is the ε-loss $\|\varepsilon-\varepsilon_\theta\|^2$ of
# $\varepsilon_\theta = -\sigma s_\theta$ divided by $\sigma^2$, and say what that means for
# training a score model with the ε-loss.*
#
# ### BEGIN ANSWER
# $\|s_\theta + \varepsilon/\sigma\|^2 = \|(-\varepsilon_\theta + \varepsilon)/\sigma\|^2 =
# \|\varepsilon-\varepsilon_\theta\|^2/\sigma^2$. The two losses have the same minimiser at every
# $t$ (the exact $\varepsilon^* = -\sigma\nabla\log p_t$, by Tweedie); they differ only in how they
# weight the times against each other — DSM puts a weight $1/\sigma^2$, large at small $t$.
# ### END ANSWER
