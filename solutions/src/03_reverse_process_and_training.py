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
# # 03 · The reverse process and training — exercises
#
# Practice for lesson `notebooks/03_reverse_process_and_training.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: DDPM index $i = 1..T$; $\alpha_i = 1-\beta_i$, $\bar\alpha_i =
# \prod_{j\le i}\alpha_j$, $\bar\alpha_0 = 1$. Coefficients are 0-d float64 tensors unless
# said otherwise.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The posterior $q(x_{i-1}\mid x_i, x_0)$ (medium)
#
# Completing the square (lesson 03, section 1) gives
# $q(x_{i-1}\mid x_i, x_0) = \mathcal N(\tilde\mu_i, \tilde\beta_i I)$ with
# $$\tilde\mu_i = \frac{\sqrt{\bar\alpha_{i-1}}\,\beta_i}{1-\bar\alpha_i}\,x_0
#   + \frac{\sqrt{\alpha_i}\,(1-\bar\alpha_{i-1})}{1-\bar\alpha_i}\,x_i,\qquad
#   \tilde\beta_i = \frac{1-\bar\alpha_{i-1}}{1-\bar\alpha_i}\,\beta_i .$$
# Return the pair `(mean, variance)`.

# %%
def posterior(x_i, x0, beta, alpha_bar, alpha_bar_prev):
    """Mean μ̃_i (shaped like x_i) and variance β̃_i (0-d) of q(x_{i−1} | x_i, x_0)."""
    ### BEGIN SOLUTION
    # HINT: α_i = 1 − β_i; the two mean coefficients share the denominator 1 − ᾱ_i; return (mean, variance), not a standard deviation
    coef_x0 = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)
    coef_xi = (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
    return coef_x0 * x0 + coef_xi * x_i, variance
    ### END SOLUTION


# %%
checks.check_posterior(posterior);

# %% [markdown]
# ## Exercise 2 · Predict $x_0$ from the noise (easy)
#
# Invert $x_i = \sqrt{\bar\alpha_i}\,x_0 + \sqrt{1-\bar\alpha_i}\,\varepsilon$ for $x_0$, given a
# noise prediction $\hat\varepsilon$. `alpha_bar` has shape `[B]`, `x_i` and `eps` `[B, D]`.

# %%
def predict_x0(x_i, eps, alpha_bar):
    """x̂_0 = (x_i − √(1 − ᾱ_i) ε̂)/√ᾱ_i, ᾱ per sample ([B])."""
    ### BEGIN SOLUTION
    # HINT: reshape alpha_bar to [B, 1] to broadcast against x_i
    a = alpha_bar.reshape(-1, *[1] * (x_i.dim() - 1))
    return (x_i - (1 - a).sqrt() * eps) / a.sqrt()
    ### END SOLUTION


# %%
checks.check_predict_x0(predict_x0);

# %% [markdown]
# ## Exercise 3 · The ancestral mean in the noise parametrisation (medium)
#
# Insert $\hat x_0$ of exercise 2 into $\tilde\mu_i$ of exercise 1 and simplify: the mean of
# DDPM's Algorithm 2 depends on $x_i$ and $\hat\varepsilon$ only. Code the simplified formula
# (do not call your earlier functions — the checker compares with the composition).

# %%
def ancestral_mean(x_i, eps, beta, alpha_bar):
    """μ_θ(x_i, ε̂): the posterior mean of exercise 1 at x_0 = x̂_0(x_i, ε̂), simplified."""
    ### BEGIN SOLUTION
    # HINT: after substituting, collect the coefficient of x_i: with ᾱ_i = α_i ᾱ_{i−1} and
    # HINT: α_i(1 − ᾱ_{i−1}) + β_i = 1 − ᾱ_i it collapses to a single power of α_i
    return (x_i - beta / (1 - alpha_bar).sqrt() * eps) / (1 - beta).sqrt()
    ### END SOLUTION


# %%
checks.check_ancestral_mean(ancestral_mean);

# %% [markdown]
# ## Exercise 4 · The KL term of the ELBO (medium)
#
# Each term $L_{i-1}$ of the ELBO is a KL divergence between two isotropic Gaussians in
# $D$ dimensions. Return, per batch element,
# $\mathrm{KL}\big(\mathcal N(\mu_1, v_1 I)\,\|\,\mathcal N(\mu_2, v_2 I)\big)$; `mu1`, `mu2` are
# `[B, D]` and the variances `v1`, `v2` are `[B]`.

# %%
def gaussian_kl(mu1, var1, mu2, var2):
    """KL(N(μ₁, v₁ I) ‖ N(μ₂, v₂ I)), one value per batch element ([B])."""
    ### BEGIN SOLUTION
    # HINT: KL = E_p[log p − log q] under the first Gaussian p; per coordinate use
    # HINT: E_p[(x − μ)²] = v₁ + (μ₁ − μ)², then add up the D coordinates
    D = mu1.shape[-1]
    trace_log = D * (var1 / var2 - 1 + torch.log(var2 / var1))
    return 0.5 * (trace_log + ((mu1 - mu2) ** 2).sum(-1) / var2)
    ### END SOLUTION


# %%
checks.check_gaussian_kl(gaussian_kl);

# %% [markdown]
# ## Exercise 5 · One $L_\text{simple}$ training batch (easy)
#
# The loss one optimiser step of DDPM minimises (lesson 03, section 2): for a batch of data
# `x0` `[B, D]`, their $\bar\alpha$ `[B]` at the sampled steps, their times `t` `[B]` and the
# noise `noise` `[B, D]`, noise each point with the closed form of lesson 01 and compare the
# network's prediction `eps_model(x_t, t)` with what it should predict. Return the scalar
# loss, averaged like `diffusion_lab.training.eps_loss` (over batch and coordinates).

# %%
def l_simple_loss(eps_model, x0, alpha_bar, t, noise):
    """The L_simple loss of one batch (a 0-d tensor)."""
    ### BEGIN SOLUTION
    # HINT: reshape alpha_bar to [B, 1] so it broadcasts; the regression target is the
    # HINT: quantity the network is named after
    a = alpha_bar[:, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return ((eps_model(x_t, t) - noise) ** 2).mean()
    ### END SOLUTION


# %%
checks.check_l_simple_loss(l_simple_loss);

# %% [markdown]
# ## Exercise 6 · Tweedie's formula (medium)
#
# With $x_t = m\,x_0 + \sigma\varepsilon$ and $p_t(x) = \int p_0(x_0)\,\mathcal N(x; m x_0,
# \sigma^2 I)\,\mathrm dx_0$, differentiate $p_t$ under the integral and divide by $p_t(x)$:
# the score turns into a posterior expectation. Solve for $\mathbb E[x_0\mid x_t = x]$ and
# code it from the score. Shapes: `x`, `score` `[B, D]`; `m`, `sigma` `[B]`.

# %%
def tweedie_x0(x, score, m, sigma):
    """E[x_0 | x_t = x] from the score ∇log p_t(x)."""
    ### BEGIN SOLUTION
    # HINT: ∇_x N(x; m x_0, σ² I) = N(x; m x_0, σ² I) · (m x_0 − x)/σ²
    m, sigma = m[:, None], sigma[:, None]
    return (x + sigma**2 * score) / m
    ### END SOLUTION


# %%
checks.check_tweedie_x0(tweedie_x0);

# %% [markdown]
# ## Questions
#
# *Q1. With $p_\theta(x_{i-1}\mid x_i) = \mathcal N(\mu_\theta, \tilde\beta_i I)$, show that
# $L_{i-1}$ is a weighted squared error of the noise prediction, and name the weight that
# $L_{\text{simple}}$ drops.*
#
# ### BEGIN ANSWER
# Both Gaussians have variance $\tilde\beta_i$, so the KL is only the mean term,
# $\|\tilde\mu_i - \mu_\theta\|^2/(2\tilde\beta_i)$. With $\tilde\mu_i$ and $\mu_\theta$ both in the
# form of exercise 3, their difference is $\frac{\beta_i}{\sqrt{\alpha_i}\sqrt{1-\bar\alpha_i}}
# (\hat\varepsilon - \varepsilon)$, hence
# $L_{i-1} = \frac{\beta_i^2}{2\tilde\beta_i\,\alpha_i(1-\bar\alpha_i)}\,\|\varepsilon -
# \hat\varepsilon\|^2$. $L_{\text{simple}}$ drops this weight (sets it to 1), which puts
# relatively more weight on large $i$ (noisy inputs) and, empirically, gives better samples.
# ### END ANSWER
#
# *Q2. Why is $\tilde\beta_1 = 0$, and what does it mean for the last sampling step?*
#
# ### BEGIN ANSWER
# $\tilde\beta_1 = (1-\bar\alpha_0)\beta_1/(1-\bar\alpha_1)$ and $\bar\alpha_0 = 1$: given
# $x_0$, the "previous" state $x_0$ is known exactly, so the posterior is a point mass
# ($\tilde\mu_1 = x_0$). The last ancestral step therefore adds no noise: it returns the
# mean, i.e. the model's best guess of $x_0$.
# ### END ANSWER
