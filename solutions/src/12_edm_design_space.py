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
# # 12 · The EDM design space — exercises
#
# Practice for lesson `notebooks/12_edm_design_space.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: σ-space, $\tilde x = x_0 + \sigma z$ (any process divided by its $m$); the denoiser
# `denoiser(x, sigma)` returns $D(\tilde x;\sigma)\approx\mathbb E[x_0\mid\tilde x]$; σ's are Python
# floats unless said otherwise; float64 throughout.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The Karras grid (easy)
#
# Return the `n` noise levels
# $\sigma_i = \bigl(\sigma_\max^{1/\rho} + \tfrac{i}{n-1}(\sigma_\min^{1/\rho} - \sigma_\max^{1/\rho})\bigr)^\rho$,
# $i = 0,\dots,n-1$, as a float64 tensor `[n]` (decreasing, from $\sigma_\max$ to exactly $\sigma_\min$).

# %%
def karras_sigmas(sigma_min, sigma_max, n, rho=7.0):
    """EDM's noise levels, uniform in σ^{1/ρ}."""
    ### BEGIN SOLUTION
    # HINT: torch.linspace(0, 1, n) gives i/(n − 1); interpolate σ^{1/ρ}, then raise to ρ
    u = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + u * (b - a)) ** rho
    ### END SOLUTION


# %%
checks.check_karras_sigmas(karras_sigmas);

# %% [markdown]
# ## Exercise 2 · The preconditioning coefficients (medium)
#
# For a `[B]` tensor `sigma` and the data standard deviation `sigma_data`, return the tuple
# `(c_skip, c_out, c_in, c_noise)` of EDM's preconditioning (each `[B]`): unit-variance network
# input, unit-variance effective target with the smallest $c_\text{out}$, and $c_\text{noise}=\tfrac14\ln\sigma$.

# %%
def edm_preconditioning(sigma, sigma_data):
    """(c_skip, c_out, c_in, c_noise) of D = c_skip x̃ + c_out F(c_in x̃; c_noise)."""
    ### BEGIN SOLUTION
    # HINT: Var(x̃) = σ² + σ_d²; minimise (1 − c_skip)² σ_d² + c_skip² σ² over c_skip
    r2 = sigma**2 + sigma_data**2
    return sigma_data**2 / r2, sigma * sigma_data / r2.sqrt(), 1 / r2.sqrt(), torch.log(sigma) / 4
    ### END SOLUTION


# %%
checks.check_edm_preconditioning(edm_preconditioning);

# %% [markdown]
# ## Exercise 3 · One Heun step in σ (medium)
#
# The probability-flow ODE in σ-space is $\mathrm d\tilde x/\mathrm d\sigma = (\tilde x - D(\tilde x;\sigma))/\sigma$.
# Take one step from `sigma` to `sigma_next < sigma`: an Euler step to $x'$, then Heun's
# correction with the slope at $(x', \sigma_\text{next})$ — except when `sigma_next == 0`, where
# the slope is undefined and the step stays Euler (EDM, Algorithm 1).

# %%
def edm_heun_step(x, denoiser, sigma, sigma_next):
    """x̃ at sigma_next after one EDM step."""
    ### BEGIN SOLUTION
    # HINT: d = (x − D(x; σ))/σ; x' = x + (σ_next − σ) d; average d and d' = (x' − D(x'; σ_next))/σ_next
    d = (x - denoiser(x, sigma)) / sigma
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    d_next = (x_euler - denoiser(x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * 0.5 * (d + d_next)
    ### END SOLUTION


# %%
checks.check_edm_heun_step(edm_heun_step);

# %% [markdown]
# ## Exercise 4 · Churn (easy)
#
# Before a step, EDM's stochastic sampler raises the noise level from σ to $\hat\sigma = (1+\gamma)\,\sigma$
# by adding fresh noise to $\tilde x$. Given `noise` (standard normal, shaped like `x`), return
# `(x_hat, sigma_hat)` such that $\hat x = x_0 + \hat\sigma z'$ in law if $x = x_0 + \sigma z$.

# %%
def churn(x, sigma, gamma, noise):
    """(x̂, σ̂): the noise level raised from σ to (1 + γ) σ."""
    ### BEGIN SOLUTION
    # HINT: independent Gaussian noises add in variance: σ̂² = σ² + (extra std)²
    sigma_hat = (1 + gamma) * sigma
    return x + (sigma_hat**2 - sigma**2) ** 0.5 * noise, sigma_hat
    ### END SOLUTION


# %%
checks.check_churn(churn);

# %% [markdown]
# ## Exercise 5 · The UniC corrector, first order (medium)
#
# In data prediction, with $\lambda = \log(m/\sigma)$, a step from $s$ to $t$ has
# $h = \lambda_t - \lambda_s > 0$ and $\varphi = e^{-h} - 1$; the first-order step (DPM-Solver++(1), which
# is DDIM) is $x_t = (\sigma_t/\sigma_s)\,x_s - m_t\,\varphi\,\hat x_0(s)$. The next step calls the
# network at this $x_t$ anyway, giving $\hat x_0(t)$. UniPC's corrector (Zhao et al. 2023) uses that
# estimate to rebuild the step from $x_s$ — at no extra network call:
#
# $$x_t^{c} = \frac{\sigma_t}{\sigma_s}\,x_s - m_t\,\varphi\,\hat x_0(s)
#   - m_t\,B(h)\,\tfrac12\bigl(\hat x_0(t) - \hat x_0(s)\bigr),\qquad
#   B(h) = \begin{cases} e^{-h} - 1 & \texttt{"bh2"}\\ -h & \texttt{"bh1"}\end{cases}$$
#
# (with bh2 it is the first-order step with $\hat x_0(s)$ replaced by the mean of the two
# estimates). Return $x_t^c$; `sigma_s`, `sigma_t`, `m_t` and `h` are floats, `variant` is
# `"bh1"` or `"bh2"`.

# %%
def unic1_step(x_s, x0_s, x0_t, sigma_s, sigma_t, m_t, h, variant="bh2"):
    """UniC-1: the first-order step s → t corrected with x̂_0(t)."""
    ### BEGIN SOLUTION
    # HINT: φ = math.expm1(-h); B(h) is φ for "bh2" and −h for "bh1"; the weight of the difference is ½
    phi = math.expm1(-h)
    big_b = phi if variant == "bh2" else -h
    return sigma_t / sigma_s * x_s - m_t * phi * x0_s - m_t * big_b * 0.5 * (x0_t - x0_s)
    ### END SOLUTION


# %%
checks.check_unic1_step(unic1_step);

# %% [markdown]
# What the correction buys, measured with the package (`diffusion_lab.unipc.unipc`: `order=1`,
# with and without the corrector, on the log-SNR grid) against the exact probability-flow map of
# a 2-D Gaussian: the RMS error and its fitted order in the number of steps.

# %%
import numpy as np

from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.unipc import unipc

sde = get_sde("vp")
oracle = GaussianOracle(sde, torch.tensor([0.3, -0.2]), torch.tensor([[0.5, 0.1], [0.1, 0.2]]))
x1 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
exact = oracle.pf_map(x1, 1.0, sde.t_min)
steps = [10, 20, 40, 80]
fitted = {}
for corrector in (False, True):
    err = [float(((unipc(oracle, sde, x1, steps=n, order=1, corrector=corrector) - exact) ** 2)
                 .sum(-1).mean().sqrt()) for n in steps]
    fitted[corrector] = -np.polyfit(np.log(steps), np.log(err), 1)[0]
    print(f"corrector={corrector!s:5}  RMS error at {steps} steps: "
          + ", ".join(f"{e:.2g}" for e in err) + f"   fitted order {fitted[corrector]:.1f}")
assert 0.8 < fitted[False] < 1.2 and 1.7 < fitted[True] < 2.2  # the corrector adds one order

# %% [markdown]
# ## Questions
#
# *Q1. An ε-prediction network is the preconditioning $c_\text{skip}=1$, $c_\text{out}=-\sigma$.
# What goes wrong with it at very large σ, and what with $x_0$-prediction at very small σ?*
#
# ### BEGIN ANSWER
# With ε-prediction $D = \tilde x - \sigma\hat\varepsilon$: an error δ in $\hat\varepsilon$ becomes an
# error σδ in $D$ — at σ = 80 eighty times the network's error; the effective target has unit
# variance, but its errors are amplified. With $x_0$-prediction $D = F$: at small σ the answer is
# almost the input itself, and the network has to reproduce $\tilde x$ to the precision of σ through
# all its layers. EDM's $c_\text{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)$ passes the input through
# where it is informative and keeps $c_\text{out} \le \sigma_d$ everywhere.
# ### END ANSWER
#
# *Q2. Why can the EDM sampler (and DPM-Solver++) serve VP, VE and rectified-flow models with one
# code path?*
#
# ### BEGIN ANSWER
# Each process is $x = m\,(x_0 + \tilde\sigma z)$ with $\tilde\sigma = \sigma/m = e^{-\lambda}$. In
# $\tilde x = x/m$ the probability-flow ODE is $\mathrm d\tilde x/\mathrm d\tilde\sigma = \hat\varepsilon$
# for every one of them; the process only fixes the range of $\tilde\sigma$ and which time $t$ a
# given $\tilde\sigma$ corresponds to (needed to call the network). The sampler walks the
# $\tilde\sigma$ grid and converts with $m(t)$ and $t(\lambda)$.
# ### END ANSWER
#
# *Q3. Why does the corrector of Exercise 5 cost no network call, and why does it raise the
# order of the first-order step by one?*
#
# ### BEGIN ANSWER
# The exact step is $x_t = (\sigma_t/\sigma_s)x_s + \sigma_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}\hat x_0(\lambda)\,d\lambda$.
# The first-order step freezes $\hat x_0$ at its value at $s$: a local error $O(h^2)$, so order 1.
# The corrector uses the estimates at both ends of the step, as a trapezoid rule does; for
# $\hat x_0$ linear in λ the exact weight of $\hat x_0(t)-\hat x_0(s)$ is $m_t(h+\varphi)/h = m_t(h/2 - h^2/6 + \dots)$,
# and $-B(h)/2$ is $h/2 + O(h^2)$ for both variants, so the local error drops to $O(h^3)$: order 2.
# The estimate $\hat x_0(t)$ is the network call the next step makes anyway (at the predicted
# $x_t$; the corrected state reuses it), so the gain is free — the measured orders above are ≈ 1
# and ≈ 2.
# ### END ANSWER
