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
# # 02 · Noise schedules — exercises
#
# Practice for lesson `notebooks/02_noise_schedules.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: a schedule is a rate $\beta(t)\ge0$ on $t\in[0,1]$ with integral
# $B(t)=\int_0^t\beta(s)\,ds$; $\bar\alpha(t) = e^{-B(t)}$ (the VP signal fraction $m^2$).

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks
from diffusion_lab.schedules import Schedule

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The linear schedule's integral (easy)
#
# $\beta(t) = \beta_{\min} + t(\beta_{\max}-\beta_{\min})$. Return $B(t)$ for a tensor `t`.

# %%
def linear_integral(t, beta_min, beta_max):
    """B(t) = ∫_0^t β(s) ds for β(s) = β_min + s (β_max − β_min)."""
    ### BEGIN SOLUTION
    # HINT: integrate term by term: ∫_0^t c ds = c t and ∫_0^t s ds = t²/2
    return beta_min * t + 0.5 * t**2 * (beta_max - beta_min)
    ### END SOLUTION


# %%
checks.check_linear_integral(linear_integral);

# %% [markdown]
# ## Exercise 2 · The cosine schedule's integral (medium)
#
# Nichol & Dhariwal define $\bar\alpha(t) = f(t)/f(0)$ with $f(t) = \cos^2\theta(t)$,
# $\theta(t) = \frac{t+s}{1+s}\cdot\frac{\pi}{2}$. Return the (unclipped) $B(t) = -\log\bar\alpha(t)$.
# (The lesson shows why the package clips the rate near $t = 1$; here $t \le 0.98$.)

# %%
def cosine_integral(t, s):
    """B(t) = −log ᾱ(t) of the cosine schedule with offset s (unclipped)."""
    ### BEGIN SOLUTION
    # HINT: B(t) = −log(cos² θ(t) / cos² θ(0)) = −2 [log cos θ(t) − log cos θ(0)]
    theta = (t + s) / (1 + s) * math.pi / 2
    theta0 = s / (1 + s) * math.pi / 2
    return -2 * (torch.log(torch.cos(theta)) - math.log(math.cos(theta0)))
    ### END SOLUTION


# %%
checks.check_cosine_integral(cosine_integral);

# %% [markdown]
# ## Exercise 3 · From a continuous schedule to DDPM's betas (medium)
#
# Choose $\beta_1..\beta_T$ so that the DDPM chain visits the continuous marginals *exactly*:
# $\prod_{j\le i}(1-\beta_j) = \bar\alpha(i/T)$ for every $i$. `schedule` has methods
# `integral(t)` and `alpha_bar(t)`; return the tensor `[T]`.

# %%
def discrete_betas(schedule, T):
    """β_i, i = 1..T, with ∏_{j≤i} (1 − β_j) = ᾱ(i/T)."""
    ### BEGIN SOLUTION
    # HINT: divide consecutive products: 1 − β_i = ᾱ(i/T)/ᾱ((i−1)/T); evaluate on torch.linspace(0, 1, T + 1)
    grid = torch.linspace(0, 1, T + 1)
    b = schedule.integral(grid)
    return -torch.expm1(-(b[1:] - b[:-1]))  # 1 − exp(−ΔB), without cancellation
    ### END SOLUTION


# %%
checks.check_discrete_betas(discrete_betas);

# %% [markdown]
# ## Exercise 4 · A schedule of your own: the geometric rate (harder)
#
# Write a `Schedule` subclass with $\beta(t) = \beta_{\min}\,(\beta_{\max}/\beta_{\min})^t$,
# growing geometrically from $\beta_{\min}$ to $\beta_{\max}$. Derive its integral in closed form
# and code it. The checker compares your `integral` with the closed form **and** with the base
# class's Gauss–Legendre quadrature of your `beta` — so both must agree.

# %%
class GeometricSchedule(Schedule):
    """β(t) = β_min (β_max/β_min)^t."""

    def __init__(self, beta_min=0.1, beta_max=20.0):
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t):
        t = self.check_t(t)
        ### BEGIN SOLUTION
        # HINT: r**t with r = β_max/β_min works elementwise on a tensor t
        return self.beta_min * (self.beta_max / self.beta_min) ** t
        ### END SOLUTION

    def integral(self, t):
        t = self.check_t(t)
        ### BEGIN SOLUTION
        # HINT: d/dt r^t = r^t log r, so ∫_0^t r^s ds = (r^t − 1)/log r
        r = self.beta_max / self.beta_min
        return self.beta_min * (r**t - 1) / math.log(r)
        ### END SOLUTION


# %%
checks.check_custom_schedule(GeometricSchedule);

# %% [markdown]
# ## Questions
#
# *Q1. Lesson 02 says the cosine schedule "keeps information longer" than the linear one.
# In terms of $\bar\alpha(t)$ and the log-SNR, what does that mean, and why does it matter
# for a model trained with $t$ drawn uniformly?*
#
# ### BEGIN ANSWER
# For the linear schedule $\bar\alpha(t)$ falls fast: $\log\mathrm{SNR}$ drops below $-5$
# well before $t=1$, so a large share of uniformly drawn training times sees almost pure
# noise, from which little can be learned, and few steps of a sampler are spent at the
# informative middle SNRs. For the cosine schedule $\bar\alpha(t) \approx \cos^2(\pi t/2)$
# falls roughly linearly through the middle and $\log\mathrm{SNR} \approx 2\log\cot(\pi t/2)$
# sweeps evenly from about $+7$ to $-7$ between $t = 0.02$ and $0.98$: the signal fades
# evenly, so training and sampling time is spread over all noise levels.
# ### END ANSWER
#
# *Q2. A common shortcut sets $\beta_i = \beta(i/T)/T$. Why is that not exact, and when
# does the difference matter?*
#
# ### BEGIN ANSWER
# $\prod_j (1-\beta(t_j)/T)$ is a Riemann/Euler approximation of $e^{-B(t)}$:
# $\log(1-x) = -x - x^2/2 - \dots$ and the sum is a right-endpoint rule, so $\bar\alpha_i$ is
# off by $O(1/T)$. For $T = 1000$ and the linear schedule that is small, but for few steps
# (e.g. $T = 50$) or a rate that changes fast (the cosine near $t=1$, where $\beta$ blows
# up and $\beta/T > 1$ is possible) it is large — even an invalid $\beta_i \ge 1$. The exact
# $\beta_i = 1 - \bar\alpha(i/T)/\bar\alpha((i-1)/T)$ is always in $(0,1)$.
# ### END ANSWER
