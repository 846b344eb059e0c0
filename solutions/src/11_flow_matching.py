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
# # 11 · Flow matching and rectified flow — exercises
#
# Practice for lesson `notebooks/11_flow_matching.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: the straight path $x_t = (1-t)\,x_0 + t\,z$ (`get_sde("rectified_flow")`:
# $m = 1-t$, $\sigma = t$); $t$ is a `[B]` tensor unless said otherwise; sampling runs from noise
# at $t \approx 1$ down to data at $t = 0$.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The conditional velocity (easy)
#
# The flow-matching loss regresses $v_\theta(x_t, t)$ on the velocity of the pair's own path,
# $u_c = \frac{\mathrm d}{\mathrm dt}x_t$ at fixed $(x_0, z)$. Return it for a batch `x0`, `z`
# (both `[B, D]`) at times `t` (`[B]`).

# %%
def conditional_velocity(x0, z, t):
    """u_c = d/dt [(1 − t) x_0 + t z]."""
    ### BEGIN SOLUTION
    # HINT: differentiate (1 − t) x_0 + t z with respect to t, holding x_0 and z fixed
    return z - x0
    ### END SOLUTION


# %%
checks.check_conditional_velocity(conditional_velocity);

# %% [markdown]
# ## Exercise 2 · From a velocity to a noise prediction (medium)
#
# A velocity network $\hat u(x, t) = \hat\varepsilon - \hat x_0$ can be run by every ε-sampler once
# it is converted. Use $x = (1-t)\,\hat x_0 + t\,\hat\varepsilon$ to eliminate $\hat x_0$ and return
# $\hat\varepsilon$ (`x`, `u` are `[B, D]`, `t` is `[B]`).

# %%
def velocity_to_eps(x, u, t):
    """ε̂ from x and û on the straight path."""
    ### BEGIN SOLUTION
    # HINT: substitute x̂_0 = ε̂ − û into x = (1 − t) x̂_0 + t ε̂ and solve for ε̂;
    # HINT: a [B] time must be reshaped to [B, 1] before it multiplies a [B, D] tensor
    return x + (1 - t)[:, None] * u
    ### END SOLUTION


# %%
checks.check_velocity_to_eps(velocity_to_eps);

# %% [markdown]
# ## Exercise 3 · One Euler step of the flow ODE (easy)
#
# Sampling integrates $\frac{\mathrm dx}{\mathrm dt} = u(x, t)$ from $t \approx 1$ to $0$. Take one
# Euler step from time `t` to `t - dt` (`t`, `dt` Python floats, `dt > 0`); `u_model(x, tb)` wants
# a `[B]` tensor of times.

# %%
def flow_euler_step(x, u_model, t, dt):
    """x at time t − dt after one Euler step of dx/dt = u(x, t)."""
    ### BEGIN SOLUTION
    # HINT: which way does time move while sampling? Evaluate u once, at the start of the step
    tb = torch.full((x.shape[0],), t, dtype=x.dtype)
    return x - dt * u_model(x, tb)
    ### END SOLUTION


# %%
checks.check_flow_euler_step(flow_euler_step);

# %% [markdown]
# ## Exercise 4 · The straightness of recorded paths (medium)
#
# For a path recorded as `traj[k]` (`[K+1, N, D]`) at `times[k]` (`[K+1]`, monotone, not necessarily
# evenly spaced), compute per path
# $$S = \frac{\|x_K - x_0\|^2}{L\,\sum_k \|x_{k+1} - x_k\|^2 / |t_{k+1} - t_k|},\qquad L = |t_K - t_0|,$$
# the discrete form of $\|x(T) - x(t_\text{end})\|^2 / (L\int\|\dot x\|^2\,\mathrm dt)$. Return `[N]`.

# %%
def straightness(traj, times):
    """S ∈ [0, 1] per path; 1 for a straight path walked at constant speed."""
    ### BEGIN SOLUTION
    # HINT: traj.diff(dim=0) gives the steps Δx_k, times.diff().abs() the Δt_k;
    # HINT: sum the squared norms over the last dimension before dividing by Δt
    steps = traj.diff(dim=0)
    dt = times.diff().abs()[:, None]
    energy = ((steps**2).sum(-1) / dt).sum(0)
    chord = ((traj[-1] - traj[0]) ** 2).sum(-1)
    return chord / ((times[-1] - times[0]).abs() * energy)
    ### END SOLUTION


# %%
checks.check_straightness(straightness);

# %% [markdown]
# ## Questions
#
# *Q1. The conditional loss $\mathbb E\|v_\theta(x_t,t) - (z - x_0)\|^2$ never goes to zero, however
# good the network. Why, and what is its minimum?*
#
# ### BEGIN ANSWER
# Many pairs $(x_0, z)$ pass through the same $x_t$ with different velocities $z - x_0$; a function
# of $(x_t, t)$ can only output their mean $u(x_t, t) = \mathbb E[z - x_0 \mid x_t]$. Expanding the
# square around $u$, the cross term vanishes by the tower property, so the loss is
# $\mathbb E\|v_\theta - u\|^2 + C$ with $C = \mathbb E\,\mathrm{tr}\,\mathrm{Cov}[z - x_0 \mid x_t] > 0$:
# the minimum is $C$, attained at $v_\theta = u$ (lesson section 2 measures $C \approx 2.6$, summed over
# both coordinates, for the eight Gaussians). After reflow the pairs are the two ends of ODE paths,
# which never cross, so the segments between them rarely do and $C$ drops to ≈ 0 (lesson
# section 7). Being coupled deterministically is not what does it: with $\hat x_0 = -z$ every
# segment passes through 0 at $t = \tfrac12$.
# ### END ANSWER
#
# *Q2. Why does an ε-network sampled by Euler on this path do badly with few steps, while the
# same network size trained on the velocity does well?*
#
# ### BEGIN ANSWER
# The ODE needs $u = (\hat\varepsilon - x)/(1 - t)$. Near the start, $t = 1 - 10^{-3}$, an error
# $\delta$ in $\hat\varepsilon$ becomes an error $\delta/(1-t) = 1000\,\delta$ in the velocity, and a
# large Euler step carries it straight into the sample. A velocity network is trained on the
# quantity the solver integrates; converting it to ε the other way, $\hat\varepsilon = x + (1-t)\hat u$,
# only damps its errors.
# ### END ANSWER
