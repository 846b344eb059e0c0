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
# # 04 · The U-Net — exercises
#
# Practice for lesson `notebooks/04_the_unet.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The sinusoidal time embedding (easy)
#
# With $\tau = 1000\,t$, $h = d/2$ and $\omega_k = 10000^{-k/h}$ for $k = 0..h-1$,
# $$e(t) = [\sin(\omega_0\tau), \dots, \sin(\omega_{h-1}\tau), \cos(\omega_0\tau), \dots,
# \cos(\omega_{h-1}\tau)].$$
# `t` has shape `[B]`; return `[B, dim]`.

# %%
def time_embedding(t, dim):
    """[sin(1000 t ω_k)]_k followed by [cos(1000 t ω_k)]_k, ω_k = 10000^(−k/(dim/2))."""
    ### BEGIN SOLUTION
    # HINT: omega = 10000 ** (-torch.arange(half) / half); angles = 1000 * t[:, None] * omega[None, :]; torch.cat([sin, cos], dim=1)
    half = dim // 2
    omega = 10000.0 ** (-torch.arange(half, dtype=t.dtype) / half)
    angles = 1000.0 * t[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)
    ### END SOLUTION


# %%
checks.check_time_embedding(time_embedding);

# %% [markdown]
# ## Exercise 2 · Count a ResBlock's parameters by hand (medium)
#
# `diffusion_lab.nets.ResBlock(in_ch, out_ch, time_dim)` is
#
# | layer | what it is |
# |---|---|
# | `norm1` | `GroupNorm(8, in_ch)` (a scale and a shift per channel) |
# | `conv1` | `Conv2d(in_ch, out_ch, 3, padding=1)` |
# | `time_proj` | `Linear(time_dim, 2 * out_ch)` (a scale and a shift per channel) |
# | `norm2` | `GroupNorm(8, out_ch)` |
# | `conv2` | `Conv2d(out_ch, out_ch, 3, padding=1)` |
# | `skip` | `Conv2d(in_ch, out_ch, 1)` if `in_ch != out_ch`, else the identity |
#
# Return the number of parameters as an `int`, from this table alone (the checker counts
# `sum(p.numel() for p in block.parameters())`).

# %%
def resblock_params(in_ch, out_ch, time_dim):
    """The parameter count of ResBlock(in_ch, out_ch, time_dim), biases included."""
    ### BEGIN SOLUTION
    # HINT: a k×k conv has k·k·c_in·c_out weights + c_out biases; a Linear(a, b) has a·b + b; GroupNorm(·, c) has 2c
    norms = 2 * in_ch + 2 * out_ch
    convs = (9 * in_ch * out_ch + out_ch) + (9 * out_ch * out_ch + out_ch)
    time = time_dim * 2 * out_ch + 2 * out_ch
    skip = in_ch * out_ch + out_ch if in_ch != out_ch else 0
    return norms + convs + time + skip
    ### END SOLUTION


# %%
checks.check_resblock_params(resblock_params);

# %% [markdown]
# ## Exercise 3 · Scaled dot-product attention (medium)
#
# In `SelfAttention2d` every pixel is a token. With queries, keys and values of shape
# `[B, heads, N, d]` ($N = H\cdot W$ positions), return
# $\operatorname{softmax}(q k^\top/\sqrt d)\,v$, the softmax over the keys.

# %%
def attention(q, k, v):
    """softmax(q kᵀ / √d) v over the last two axes, [B, heads, N, d]."""
    ### BEGIN SOLUTION
    # HINT: scores = q @ k.transpose(-1, -2) / math.sqrt(d), then torch.softmax(scores, dim=-1) @ v
    d = q.shape[-1]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return weights @ v
    ### END SOLUTION


# %%
checks.check_attention(attention);

# %% [markdown]
# ## Questions
#
# *Q1. Why is $t\in[0,1]$ multiplied by 1000 before the sinusoids? What goes wrong
# without it?*
#
# ### BEGIN ANSWER
# The frequencies $\omega_k$ from $1$ down to $10^{-4}$ were designed for integer positions
# (DDPM step indices $0..1000$). Without the factor, $\omega_k t \le 1$ for every $k$: even the
# fastest channel covers less than a sixth of a period over the whole of $[0,1]$, and the slow
# channels are nearly constant ($\sin \approx 0$, $\cos \approx 1$). The embedding then barely
# separates noise levels, and the network has to recover the time from tiny differences.
# ### END ANSWER
#
# *Q2. Self-attention has no positional encoding here. Show that permuting the $N$
# positions of the input permutes the output the same way. How does the U-Net still know
# where a pixel is?*
#
# ### BEGIN ANSWER
# With a permutation matrix $P$ acting on the positions: $q, k, v \to Pq, Pk, Pv$ (the 1×1
# convolutions and the GroupNorm statistics do not see the order), so
# $\operatorname{softmax}(Pq k^\top P^\top/\sqrt d)Pv = P\operatorname{softmax}(qk^\top/\sqrt d)
# P^\top P v = P\,\mathrm{out}$, because a row-wise softmax commutes with permuting rows and
# columns and $P^\top P = I$. Position information comes from the convolutions around the
# attention layers: zero padding at the borders and the layout of the feature maps make the
# features themselves depend on where a pixel is.
# ### END ANSWER
