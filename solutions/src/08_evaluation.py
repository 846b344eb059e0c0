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
# # 08 · Evaluation — exercises
#
# Practice for lesson `notebooks/08_evaluation.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: tensors are float64; feature sets are `[N, F]` (one row per image); images live in
# $[-1, 1]$ and 8-bit pixels are dequantised into bins of width $2/256$.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import math

import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The Fréchet distance of two Gaussians (medium)
#
# FID is $\|\mu_1-\mu_2\|^2+\operatorname{tr}\big(\Sigma_1+\Sigma_2-2(\Sigma_1\Sigma_2)^{1/2}\big)$. The matrix
# square root of the *non-symmetric* $\Sigma_1\Sigma_2$ is awkward; use that it is similar to the symmetric
# $\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}$, so $\operatorname{tr}(\Sigma_1\Sigma_2)^{1/2}=\sum_i\sqrt{\lambda_i}$ over the
# eigenvalues of that matrix. Return a 0-d tensor.

# %%
def frechet_distance(mu1, cov1, mu2, cov2):
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})."""
    ### BEGIN SOLUTION
    # HINT: torch.linalg.eigh(cov1) gives w, v with cov1 = v diag(w) vᵀ, so Σ₁^{1/2} = v diag(√w) vᵀ;
    # HINT: then torch.linalg.eigvalsh(Σ₁^{1/2} Σ₂ Σ₁^{1/2}) — clamp tiny negative round-off at 0
    w, v = torch.linalg.eigh(cov1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    lam = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0)
    return ((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * lam.sqrt().sum()
    ### END SOLUTION


# %%
checks.check_frechet_distance(frechet_distance);

# %% [markdown]
# ## Exercise 2 · Hutchinson's divergence estimate (medium)
#
# For a field `f` mapping `[B, D] → [B, D]` row by row, estimate $\nabla\!\cdot f=\operatorname{tr}J$ per row as
# $\frac1K\sum_k v_k^\top J v_k$ with the given probes `probes` (`[K, B, D]`). One vector–Jacobian product
# per probe: `torch.autograd.grad(f(x), x, grad_outputs=v)` returns $v^\top J$ for every row. Return `[B]`.

# %%
def hutchinson_divergence(f, x, probes):
    """(1/K) Σ_k v_kᵀ (∂f/∂x) v_k for every row of x."""
    ### BEGIN SOLUTION
    # HINT: x.clone().requires_grad_(True) first; the vector–Jacobian product still has to be
    # HINT: multiplied by v and summed over the last dimension
    estimates = []
    for v in probes:
        xr = x.clone().requires_grad_(True)
        (vj,) = torch.autograd.grad(f(xr), xr, grad_outputs=v)
        estimates.append((vj * v).sum(-1))
    return torch.stack(estimates).mean(0)
    ### END SOLUTION


# %%
checks.check_hutchinson_divergence(hutchinson_divergence);

# %% [markdown]
# ## Exercise 3 · Bits per dimension (easy)
#
# `log_px` (`[B]`) is $\log p_x(x)$ in nats of dequantised 8-bit images scaled to $[-1,1]$ (bin width
# $2/256$), `num_dims` the number of pixels $D$. Return the bits/dim of the pixels.

# %%
def bits_per_dim(log_px, num_dims):
    """−log₂ p of the pixel values, per dimension."""
    ### BEGIN SOLUTION
    # HINT: nats → bits is a division by ln 2; then the change of variables x = (2/256) k̃ − 1
    return -log_px / (num_dims * math.log(2)) - math.log2(2 / 256)
    ### END SOLUTION


# %%
checks.check_bits_per_dim(bits_per_dim);

# %% [markdown]
# ## Exercise 4 · The unbiased KID estimate (medium)
#
# With the kernel $k(a,b)=(a^\top b/F+1)^3$ and two sets of $m$ features `real`, `fake` (`[m, F]`),
# return $\widehat{\mathrm{MMD}}{}^2_u=\frac{1}{m(m-1)}\sum_{i\ne j}\big[k(r_i,r_j)+k(f_i,f_j)\big]-\frac{2}{m^2}\sum_{i,j}k(r_i,f_j)$.

# %%
def kid_mmd(real, fake):
    """Unbiased MMD² with the cubic polynomial kernel."""
    ### BEGIN SOLUTION
    # HINT: build the three m×m kernel matrices with one matrix product each; the i = j terms of
    # HINT: the within-set matrices are their diagonals (.trace() sums them)
    m, F = real.shape
    k_rr = (real @ real.T / F + 1) ** 3
    k_ff = (fake @ fake.T / F + 1) ** 3
    k_rf = (real @ fake.T / F + 1) ** 3
    within = (k_rr.sum() - k_rr.trace() + k_ff.sum() - k_ff.trace()) / (m * (m - 1))
    return within - 2 * k_rf.mean()
    ### END SOLUTION


# %%
checks.check_kid_mmd(kid_mmd);

# %% [markdown]
# ## Exercise 5 · The nearest-neighbour distance ratio (easy)
#
# For each query row return $d_1/d_2$: its Euclidean distance to the nearest row of `train` over the
# distance to the second nearest. A value far below 1 means one training point stands out — the
# signature of a near-copy. Return `[N]`.

# %%
def nn_distance_ratio(queries, train):
    """d₁/d₂ per query."""
    ### BEGIN SOLUTION
    # HINT: torch.cdist(queries, train) is the [N, M] distance matrix; .topk(2, largest=False)
    d = torch.cdist(queries, train).topk(2, dim=1, largest=False).values
    return d[:, 0] / d[:, 1]
    ### END SOLUTION


# %%
checks.check_nn_distance_ratio(nn_distance_ratio);

# %% [markdown]
# ## Questions
#
# *Q1. Two groups report FID 0.9 and 1.4 for MNIST models, one from 1,000 samples and one from
# 5,000. Which model is better?*
#
# ### BEGIN ANSWER
# We cannot tell. FID is biased upwards by about $b/n$; with the bundled classifier's features the
# lesson measures $b\approx 300$ (real against real), i.e. ≈ 0.3 at $n=1000$ and ≈ 0.06 at $n=5000$ — a
# difference of the same size as the gap. Recompute both at the same $n$ (and the same feature network,
# reference set and preprocessing), quote the real-vs-real value at that $n$ beside them, or use KID,
# whose estimator is unbiased.
# ### END ANSWER
#
# *Q2. A model's samples have precision 0.95 and recall 0.40. What does it do, and which metric would
# a class histogram confirm it with?*
#
# ### BEGIN ANSWER
# Almost every sample looks like real data (high precision), but large parts of the real data are
# never produced (low recall): the model drops modes — whole classes or styles. The bundled
# classifier's class histogram of its samples would show the missing digits as near-empty bars (the
# lesson's mode-dropped sample without 3s keeps its precision and loses recall).
# ### END ANSWER
#
# *Q3. Why does the memorisation test compare generated digits with **held-out** digits instead of
# using a fixed distance threshold?*
#
# ### BEGIN ANSWER
# Digits are similar to one another: an honest new "1" is close to many training "1"s. What counts as
# close depends on the data, the metric and the pixel scale, so the only calibrated reference is the
# distance a fresh sample of the *same* distribution has to the training set — the held-out digits. A
# generated digit closer than (say) 99 % of held-out digits, or with a nearest/second-nearest ratio far
# below theirs, is suspicious; a blurry average (the VAE) can be close without copying anything.
# ### END ANSWER
