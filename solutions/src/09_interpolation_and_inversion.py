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
# # 09 · Interpolation and inversion — exercises
#
# Practice for lesson `notebooks/09_interpolation_and_inversion.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: the forward marginal $x_t = m_t\,x_0 + \sigma_t\,z$; where a process is needed the
# checker hands you `coef(t) -> (m_t, σ_t)` as Python floats (VP, linear schedule). Noise
# vectors are rows of a `[B, D]` tensor; everything is float64.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · Slerp for a batch of noise pairs (medium)
#
# For each row $i$, with $\cos\theta_i = \frac{z_{0,i}\cdot z_{1,i}}{\|z_{0,i}\|\,\|z_{1,i}\|}$,
# $$\operatorname{slerp}(z_0, z_1; \alpha)_i = \frac{\sin((1-\alpha)\theta_i)}{\sin\theta_i}\,z_{0,i}
# + \frac{\sin(\alpha\theta_i)}{\sin\theta_i}\,z_{1,i}.$$
# `z0`, `z1` are `[B, D]`, `alpha` a float. Rows that are (nearly) parallel have $\sin\theta\approx0$:
# return the linear interpolation there.

# %%
def slerp(z0, z1, alpha):
    """Row-wise spherical interpolation; linear where θ ≈ 0."""
    ### BEGIN SOLUTION
    # HINT: one angle per row: sum z0 * z1 over dim 1 and divide by the product of the rows' norms.
    # HINT: Rounding can push cos θ slightly past ±1, so clamp it before arccos.
    # HINT: keepdim=True keeps θ as [B, 1], which broadcasts against [B, D].
    # HINT: Where θ is tiny, 0/0 appears: pick the linear formula for those rows (torch.where).
    n0 = z0.norm(dim=1, keepdim=True)
    n1 = z1.norm(dim=1, keepdim=True)
    theta = torch.arccos(((z0 * z1).sum(1, keepdim=True) / (n0 * n1)).clamp(-1.0, 1.0))
    linear = (1 - alpha) * z0 + alpha * z1
    safe = torch.where(theta < 1e-6, torch.ones_like(theta), theta)
    spherical = (torch.sin((1 - alpha) * safe) * z0 + torch.sin(alpha * safe) * z1) / torch.sin(safe)
    return torch.where(theta < 1e-6, linear, spherical)
    ### END SOLUTION


# %%
checks.check_slerp(slerp);

# %% [markdown]
# ## Exercise 2 · One DDIM inversion step (medium)
#
# Move `x` from level `s` up to level `t > s` with the deterministic DDIM step run forwards:
# $$\hat x_0 = \frac{x - \sigma_s\,\hat\varepsilon}{m_s},\qquad x_t = m_t\,\hat x_0 + \sigma_t\,\hat\varepsilon .$$
# `eps_model(x, tb)` wants a `[B]` tensor of times; `coef(t)` returns $(m_t, \sigma_t)$.
# At which point, and at which time, do you evaluate $\hat\varepsilon$?

# %%
def ddim_invert_step(x, eps_model, s, t, coef):
    """x at level t > s after one DDIM inversion step from level s."""
    ### BEGIN SOLUTION
    # HINT: you only know the state at level s, so that is where ε̂ can be evaluated.
    # HINT: x̂_0 belongs to the level x is at; the new state to the level you go to.
    (ms, ss), (mt, st) = coef(s), coef(t)
    eps = eps_model(x, torch.full((x.shape[0],), s))
    x0_hat = (x - ss * eps) / ms
    return mt * x0_hat + st * eps
    ### END SOLUTION


# %%
checks.check_ddim_invert_step(ddim_invert_step);

# %% [markdown]
# ## Exercise 3 · The SDEdit encoder (easy)
#
# SDEdit starts by noising the image to level `t` with the forward marginal. Return $x_t$ for an
# image batch `x0` (`[B, C, H, W]`), a float level `t` and a noise `z` of the same shape.
# (Lesson section 3: encoding two images with the *same* `z` and mixing is SDEdit of the blend.)

# %%
def sdedit_encode(x0, t, z, coef):
    """x_t = the forward marginal at level t with noise z."""
    ### BEGIN SOLUTION
    # HINT: which coefficient scales the data and which the noise? (For VP, m² + σ² = 1.)
    m, s = coef(t)
    return m * x0 + s * z
    ### END SOLUTION


# %%
checks.check_sdedit_encode(sdedit_encode);

# %% [markdown]
# ## Exercise 4 · How far a linear mix falls off the shell (easy)
#
# For independent $z_0, z_1 \sim \mathcal N(0, I_d)$, return the root-mean-square norm
# $\sqrt{\mathbb E\|(1-\alpha)z_0 + \alpha z_1\|^2}$ for each α in `alpha` (`[K]`) as a `[K]` tensor.
# Check it against a simulation of your own, and read off the value at α = ½ for d = 784.

# %%
def linear_mix_norm(alpha, d):
    """√E‖(1 − α) z0 + α z1‖² for independent standard normal z0, z1 in d dimensions."""
    ### BEGIN SOLUTION
    # HINT: expand the square; for independent noises E[z0·z1] = 0, and E‖z‖² = d.
    return (((1 - alpha) ** 2 + alpha**2) * d).sqrt()
    ### END SOLUTION


# %%
checks.check_linear_mix_norm(linear_mix_norm);

# %%
z0, z1 = torch.randn(2000, 784), torch.randn(2000, 784)
simulated = (0.5 * (z0 + z1)).norm(dim=1).pow(2).mean().sqrt().item()
try:
    formula = f"{linear_mix_norm(torch.tensor([0.5]), 784).item():.2f}"
except NotImplementedError:
    formula = "(implement linear_mix_norm first)"
print(f"simulated RMS norm at α = ½: {simulated:.2f}, formula: {formula}, √d = {math.sqrt(784):.0f}")

# %% [markdown]
# ## Questions
#
# *Q1. DDIM inversion followed by DDIM decoding on the same grid does not return the image
# exactly, even with the exact ε̂. Where exactly is the error made, and how does it scale with the
# number of steps?*
#
# ### BEGIN ANSWER
# Going up from $s$ to $t$, the step uses $\hat\varepsilon(x_s, s)$, the value at its start; coming back
# down from $t$, the decoder uses $\hat\varepsilon(x_t, t)$, the value at *its* start — the other end of
# the same interval. One step up and down moves $x_s$ by
# $m_s(e^{-\lambda_t} - e^{-\lambda_s})(\hat\varepsilon_s - \hat\varepsilon_t)$: two $O(h)$ factors, $O(h^2)$
# per step, $O(1/N)$ after $N$ steps (first order; the lesson fits 0.96 with the exact oracle).
# Evaluating ε̂ at the end point instead — an implicit step solved by fixed-point iteration — makes
# each step the exact inverse of the decoder's step.
# ### END ANSWER
#
# *Q2. To interpolate between two images at level $t$, why encode both with the **same** noise z?
# What would go wrong with two independent noises?*
#
# ### BEGIN ANSWER
# With one $z$ the mix is $m_t((1-\alpha)a + \alpha b) + \sigma_t z$: the noise part is an ordinary
# noise of norm $\approx\sigma_t\sqrt d$, and the decode is SDEdit of the blend. With independent
# $z_a, z_b$ the noise part is $\sigma_t((1-\alpha)z_a + \alpha z_b)$, whose norm dips to
# $\sigma_t\sqrt{d/2}$ at α = ½ (exercise 4): the decoder sees less noise than level $t$ has, the same
# off-shell problem as linear interpolation of prior noise, and the middle frames come out washed out.
# ### END ANSWER
#
# *Q3. SDEdit at level $t$: what do small and large $t$ keep of the source image?*
#
# ### BEGIN ANSWER
# $x_t = m_t x_0 + \sigma_t z$ keeps the image with weight $m_t$ against noise $\sigma_t$ (signal-to-noise
# $m_t^2/\sigma_t^2$). At small $t$ the decode stays close in pixels (the lesson's sweep: small RMS
# distance, the label kept); as $t$ grows, fine detail and then the class are redrawn by the model;
# at $t = 1$ ($m_1 \approx 0.007$) the source is forgotten and the label agreement falls to chance.
# ### END ANSWER
