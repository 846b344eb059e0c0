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
# # 07 · Controllable generation — exercises
#
# Practice for lesson `notebooks/07_controllable_generation.ipynb`. Replace each
# `raise NotImplementedError(...)` with your code and run the check cell below it:
# **✓** right, **✗** what looks wrong, **…** not implemented yet.
#
# Conventions: $x_t = m_t\,x_0 + \sigma_t\,z$; `mask` $= 1$ where a coordinate is **generated**
# (free), $0$ where it is known; classifier-free guidance as in the package, $w = 0$ the
# unconditional model and $w = 1$ the conditional one.

# %% tags=["parameters"]
QUICK = False  # nothing here is slow; kept for the CI smoke run

# %%
import torch

from diffusion_lab import checks

torch.set_default_dtype(torch.float64)

# %% [markdown]
# ## Exercise 1 · The replacement step (easy)
#
# Before each network call at level $t$, replacement overwrites the known coordinates of the state
# `x_t` with something the network could have seen at that level, built from the observation
# `x_known` and a fresh standard normal `z` (all `[B, D]`; `mask` `[D]`; `m_t`, `sigma_t` floats).
# Return the merged state.

# %%
def replacement_step(x_t, x_known, mask, m_t, sigma_t, z):
    """The state with its known part replaced by a sample of q(x_t | x_0 = x_known)."""
    ### BEGIN SOLUTION
    # HINT: what is the law of x_t given x_0 on the known coordinates? Draw from it with z;
    # HINT: keep x_t where mask = 1 (generated), use your draw where mask = 0
    return mask * x_t + (1 - mask) * (m_t * x_known + sigma_t * z)
    ### END SOLUTION


# %%
checks.check_replacement_step(replacement_step);

# %% [markdown]
# ## Exercise 2 · The exact conditional of a Gaussian (medium)
#
# The oracle for imputation: for $x\sim\mathcal N(\mu,\Sigma)$ in $D$ dimensions, return the mean
# `[F]` and covariance `[F, F]` of the free coordinates (`mask` $=1$) given the known ones,
# $x_O$ = `x_known[mask == 0]` (`mu`, `mask`, `x_known` are `[D]`, `cov` `[D, D]`).

# %%
def gaussian_conditional(mu, cov, mask, x_known):
    """(mean, cov) of x_F | x_O = x_known[O] under N(mu, cov)."""
    ### BEGIN SOLUTION
    # HINT: split Σ into blocks with boolean indices f = mask.bool(), o = ~f: cov[f][:, o] is Σ_FO;
    # HINT: write x_F = G x_O + e with e independent of x_O; which G makes Cov(e, x_O) = 0?
    # HINT: the conditional covariance is Cov(e), which is never larger than Σ_FF
    f, o = mask.bool(), ~mask.bool()
    gain = cov[f][:, o] @ torch.linalg.inv(cov[o][:, o])
    mean = mu[f] + gain @ (x_known[o] - mu[o])
    return mean, cov[f][:, f] - gain @ cov[o][:, f]
    ### END SOLUTION


# %%
checks.check_gaussian_conditional(gaussian_conditional);

# %% [markdown]
# ## Exercise 3 · One x̂₀-projection step (medium)
#
# The x̂₀-projection (DDNM) corrects the *denoised estimate* instead of the state, then takes a
# deterministic DDIM step ($\eta = 0$) from level $s$ to level $t < s$. Given the state `x_s`, the
# network's noise estimate `eps` at it, the observation `x_known`, `mask`, and the floats `m_s`,
# `sigma_s`, `m_t`, `sigma_t`, return $x_t$.

# %%
def x0_projection_step(x_s, eps, x_known, mask, m_s, sigma_s, m_t, sigma_t):
    """x_t after one DDIM step through the projected x̂_0."""
    ### BEGIN SOLUTION
    # HINT: first invert x_s = m_s x̂_0 + σ_s ε̂ for x̂_0;
    # HINT: then make x̂_0 agree with the observation where it is known;
    # HINT: DDIM (η = 0) re-noises the estimate to level t with the same ε̂
    x0 = (x_s - sigma_s * eps) / m_s
    x0 = mask * x0 + (1 - mask) * x_known
    return m_t * x0 + sigma_t * eps
    ### END SOLUTION


# %%
checks.check_x0_projection_step(x0_projection_step);

# %% [markdown]
# ## Exercise 4 · The classifier-free guidance combination (easy)
#
# Guidance samples $p_w(x\mid y)\propto p(x)\,p(y\mid x)^w$. Using Bayes' rule for
# $\nabla\log p(y\mid x)$ and $\varepsilon=-\sigma\nabla\log p$, combine the conditional output
# `eps_cond` $=\varepsilon(x,t,y)$ and the unconditional one `eps_uncond` $=\varepsilon(x,t,\varnothing)$
# into the guided $\tilde\varepsilon$ for weight `w` (a float).

# %%
def cfg_eps(eps_cond, eps_uncond, w):
    """ε̃ of the tilted law p(x) p(y | x)^w."""
    ### BEGIN SOLUTION
    # HINT: ∇log p(x) p(y|x)^w = ∇log p(x) + w ∇log p(y|x), and ∇log p(y|x) = ∇log p(x|y) − ∇log p(x);
    # HINT: check your formula: w = 0 must give the unconditional output, w = 1 the conditional one
    return eps_uncond + w * (eps_cond - eps_uncond)
    ### END SOLUTION


# %%
checks.check_cfg_eps(cfg_eps);

# %% [markdown]
# ## Questions
#
# *Q1. On a 2-D Gaussian with correlation 0.9, replacement's conditional mean stays well below the
# exact one however many steps it takes. Why does refining the grid not help?*
#
# ### BEGIN ANSWER
# Refining the grid removes discretisation error, but replacement's error is not one: at every
# level the free part is driven by the unconditional score evaluated at a state whose known part is
# a *fresh* forward sample $m_tk+\sigma_tz$. That noisy value carries less about the free part than
# $k$ does, and the fresh noise is unrelated to the noise already in the free part, so the
# correlation between the parts is re-drawn away at each step. The limit of infinitely many steps
# is a different process (lesson 07 and `tests/test_inpainting.py`: mean 0.94 instead of 1.35).
# ### END ANSWER
#
# *Q2. For a class-conditional model the package's default inpainting (`projection_by_class`)
# completes the known half once as each class and keeps the completion whose class best explains
# the known pixels; without classes the default (`projection_best_of`) keeps, of six completions,
# the one the model finds most consistent with them. What do these choices do to the law of the
# output, and why can they still be the right default?*
#
# ### BEGIN ANSWER
# Neither output is a sample of $p(x_F\mid x_O=k)$. Choosing the class is a MAP decision: the
# output never mixes classes in proportion to their posterior, so an ambiguous half (a 3 or an
# 8?) always becomes the single most likely reading, then one completion given that class.
# Keeping the most self-consistent of several completions favours typical ones, so the output
# law is narrower than the posterior (the lesson measures the variance shrinking on the Gaussian).
# For a user who wants *one good completion* (the digit still reads as itself), that bias is what
# they ask for; for imputation with honest uncertainty one should use a single-candidate sampler
# (the x̂₀-projection) and draw several.
# ### END ANSWER
#
# *Q3. What do guidance weights w = 0, 1 and 4 sample, in the package's convention?*
#
# ### BEGIN ANSWER
# $w=0$: $\tilde\varepsilon=\varepsilon_\varnothing$, the unconditional model — the label is ignored.
# $w=1$: $\tilde\varepsilon=\varepsilon_y$, the conditional model $p(x\mid y)$. $w=4$: (approximately) $p(x)\,p(y\mid x)^4$, digits
# the model finds far more typical of $y$: higher class accuracy and precision, lower recall and
# within-class diversity. Ho & Salimans' $(1+w')\varepsilon_y-w'\varepsilon_\varnothing$ is the same family with $w'=w-1$.
# ### END ANSWER
