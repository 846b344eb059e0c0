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
# # 01 · The forward process — exercises
#
# Practice for lesson `notebooks/01_forward_process.ipynb`. Each exercise asks for one
# small function: replace the line `raise NotImplementedError(...)` with your code and run
# the cell below it, which calls a checker from `diffusion_lab.checks`. A checker tests
# your function on random inputs against the package and prints
# **✓** (right), **✗** with what looks wrong (a missing square root, a flipped sign, …),
# or **…** (not implemented yet). Questions in *italics* ask for a short written answer.
#
# Conventions: DDPM index $i = 1..T$; $\alpha_i = 1-\beta_i$, $\bar\alpha_i =
# \prod_{j\le i}\alpha_j$, $\bar\alpha_0 = 1$; all tensors are float64.

# %% tags=["parameters"]
QUICK = False  # True: smaller statistical checks (CI)

# %%
import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)
N_PATHS = 1000 if QUICK else 4000  # paths of the iterated chain in exercise 3

# %% [markdown]
# ## Exercise 1 · The table $\bar\alpha_0, \dots, \bar\alpha_T$ (easy)
#
# Given the betas $\beta_1..\beta_T$ as a tensor `[T]`, return the tensor `[T + 1]` of
# $\bar\alpha_0 = 1, \bar\alpha_1, \dots, \bar\alpha_T$.

# %%
def alpha_bars(betas):
    """ᾱ_0 = 1 and ᾱ_i = ∏_{j≤i} (1 − β_j): a tensor [T + 1]."""
    ### BEGIN SOLUTION
    # HINT: torch.cumprod(1 - betas, 0) gives ᾱ_1..ᾱ_T; prepend a 1 with torch.cat
    return torch.cat([betas.new_ones(1), torch.cumprod(1 - betas, 0)])
    ### END SOLUTION


# %%
checks.check_alpha_bars(alpha_bars);

# %% [markdown]
# ## Exercise 2 · One jump instead of $i$ steps: `q_sample` (easy)
#
# The closed form $q(x_i\mid x_0) = \mathcal N(\sqrt{\bar\alpha_i}\,x_0, (1-\bar\alpha_i) I)$
# means $x_i = \sqrt{\bar\alpha_i}\,x_0 + \sqrt{1-\bar\alpha_i}\,\varepsilon$. Write it for a
# batch: `x0` and `noise` have shape `[B, ...]` (any number of trailing dimensions) and
# `alpha_bar` has shape `[B]`, one $\bar\alpha_i$ per sample.

# %%
def q_sample(x0, alpha_bar, noise):
    """x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε, with a per-sample ᾱ_i of shape [B]."""
    ### BEGIN SOLUTION
    # HINT: reshape alpha_bar to [B, 1, ..., 1] (alpha_bar.reshape(-1, *[1] * (x0.dim() - 1))) so it broadcasts; then use square roots of ᾱ and 1 − ᾱ
    a = alpha_bar.reshape(-1, *[1] * (x0.dim() - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
    ### END SOLUTION


# %%
checks.check_q_sample(q_sample);

# %% [markdown]
# ## Exercise 3 · One step of the chain, iterated 1000 times (medium)
#
# Write one forward step $x_i = \sqrt{1-\beta_i}\,x_{i-1} + \sqrt{\beta_i}\,z_i$ for a given
# standard normal `z`. The checker tests it on one random case and then **iterates your step**
# over DDPM's 1000 betas on many paths from $x_0 = (1, -\tfrac12)$: the empirical mean and
# variance after $i$ steps must match the closed form of exercise 2 within 5 standard errors.

# %%
def forward_step(x_prev, beta, z):
    """x_i = √(1 − β_i) x_{i−1} + √β_i z (beta a 0-d tensor)."""
    ### BEGIN SOLUTION
    # HINT: the shrink factor √(1 − β) multiplies x_prev, and the noise has standard deviation √β
    return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * z
    ### END SOLUTION


# %%
checks.check_forward_step(forward_step, n_paths=N_PATHS);

# %% [markdown]
# ## Questions
#
# *Q1. Why does the step shrink $x_{i-1}$ by $\sqrt{1-\beta_i}$? What would happen to
# $\operatorname{Var} x_T$ without the shrink factor, for data with unit variance?*
#
# ### BEGIN ANSWER
# With the shrink factor, $\operatorname{Var}x_i = (1-\beta_i)\operatorname{Var}x_{i-1} +
# \beta_i$, so unit variance stays unit variance (*variance preserving*), and $x_T$ ends
# near $\mathcal N(0, I)$, a prior we can sample. Without it the variances add up:
# $\operatorname{Var}x_T = 1 + \sum_i\beta_i \approx 1 + 10.05$ for DDPM's betas, and $x_0$
# is never forgotten (its weight stays 1) — the chain would not reach a fixed prior.
# ### END ANSWER
#
# *Q2. How many steps $i$ of DDPM's linear schedule does it take before the signal weight
# $\sqrt{\bar\alpha_i}$ falls below $0.1$, i.e. the signal-to-noise ratio
# $\bar\alpha_i/(1-\bar\alpha_i)$ below about $0.01$? (Use your `alpha_bars`.)*
#
# ### BEGIN ANSWER
# `int((alpha_bars(torch.linspace(1e-4, 0.02, 1000)).sqrt() < 0.1).nonzero()[0])` gives
# $i = 674$: the last third of the chain — 326 of 1000 steps — is spent at an SNR below
# $0.01$, where $x_i$ is nearly pure noise. That waste is the observation behind the cosine
# schedule of lesson 02.
# ### END ANSWER
