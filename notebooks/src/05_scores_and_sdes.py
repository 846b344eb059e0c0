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
# # 05 · Scores and SDEs
#
# Lessons 01–03 ran diffusion in 1000 discrete steps. Here the step size goes to zero:
# the forward process becomes a stochastic differential equation (SDE), and running it
# backwards needs one thing only, the **score** $\nabla_x\log p_t(x)$ of the noised data.
# We meet the score through Langevin dynamics, derive the marginals of the three classic
# forward SDEs, check the Fokker–Planck equation, and then reverse time — with the
# *exact* scores of Gaussian mixtures, so every claim can be checked before any network
# is trained.
#
# **Learning goals.** After this notebook you can
# 1. say what the score is, and sample a density from its score with Langevin dynamics
#    (and explain why the step size biases it and why separated modes defeat it);
# 2. derive the mean and variance ODEs of a linear SDE and from them the marginals of the
#    VE, VP and sub-VP SDEs — and check them by Euler–Maruyama simulation;
# 3. state the Fokker–Planck equation and verify it for an exact marginal;
# 4. state Anderson's reverse-time SDE, derive the probability-flow ODE from
#    Fokker–Planck, and integrate both with exact scores, matching the package's
#    samplers and a closed-form ODE solution.
#
# **Prerequisites.** 01 (the forward process), 02 ($\beta(t)$, $\bar\alpha(t)$); Gaussian
# densities and their gradients; what an ODE solver does (Euler, Heun). Itô calculus is
# used once, in the form "$\mathrm d(x^2) = 2x\,\mathrm dx + g^2\,\mathrm dt$".
#
# Package pieces: `diffusion_lab.sde` (`VPSDE`, `SubVPSDE`, `VESDE`, `SDE.reverse`),
# `diffusion_lab.oracles` (exact scores), `diffusion_lab.samplers.sample`,
# `diffusion_lab.timegrid.time_grid`, `diffusion_lab.viz`, `diffusion_lab.widgets`.

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checks print the same lines either way
N_LANGEVIN = 10000  # Langevin chains (section 1)
LANGEVIN_STEPS = 400  # steps of each chain
N_SIM = 20000  # paths of the forward-SDE simulations (section 2)
SIM_STEPS = 1000  # Euler–Maruyama steps on [0, 1]
N_REV = 5000  # reverse-SDE / ODE samples (section 4)
REV_STEPS = 400  # Euler–Maruyama steps of the reverse SDE
ODE_STEPS = 80  # Heun steps of the probability-flow ODE
N_FRAMES = 11  # frames of the score-field widget / animation
SEED = 0

# %%
if QUICK:
    N_LANGEVIN, LANGEVIN_STEPS, N_SIM, SIM_STEPS = 3000, 300, 4000, 500
    N_REV, REV_STEPS, ODE_STEPS, N_FRAMES = 2000, 200, 50, 5

# %%
import io
import math

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, Image, display
from matplotlib import animation
from scipy import stats

from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle, eight_gaussians_oracle
from diffusion_lab.samplers import sample
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE
from diffusion_lab.timegrid import time_grid
from diffusion_lab.viz import plot_trajectories, quiver_field, scatter_2d
from diffusion_lab.widgets import is_headless

torch.set_default_dtype(torch.float64)
# The 2-D batches here are small: one thread avoids thread-synchronisation overhead,
# which on a busy 2-core machine costs more than the arithmetic.
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(SEED)

# %% [markdown]
# ## 1 · The score, and Langevin dynamics
#
# The **score** of a density $p$ is $s(x) = \nabla_x\log p(x)$: a vector field pointing
# uphill in log-density. It ignores the normalising constant ($\nabla\log(p/Z) = \nabla\log p$),
# which is why it is learnable when $p$ itself is not. For a Gaussian $\mathcal N(\mu, v I)$,
# $s(x) = -(x-\mu)/v$; for a mixture $\sum_k w_k\mathcal N(\mu_k, \Sigma_k)$ it is the
# responsibility-weighted average of the component scores (`diffusion_lab.oracles`).
#
# **Langevin dynamics** $\mathrm dx = \nabla\log p(x)\,\mathrm dt + \sqrt2\,\mathrm dw$ has
# $p$ as its stationary density: its Fokker–Planck equation (section 3) reads
# $\partial_t q = -\nabla\!\cdot(q\nabla\log p) + \Delta q$, and $q=p$ gives
# $-\nabla\!\cdot\nabla p + \Delta p = 0$. Discretised with step $\varepsilon$:
# $$x_{k+1} = x_k + \varepsilon\,\nabla\log p(x_k) + \sqrt{2\varepsilon}\,z_k .$$
# The discretisation has a bias. For $p=\mathcal N(0, v)$ the step is linear,
# $x_{k+1} = (1-\varepsilon/v)x_k + \sqrt{2\varepsilon}z_k$, and its stationary variance $V$
# solves $V = (1-\varepsilon/v)^2 V + 2\varepsilon$:
# $$V = \frac{2\varepsilon}{1-(1-\varepsilon/v)^2} = \frac{v}{1-\varepsilon/(2v)} .$$
# **Check** with a deliberately large step, $v=1$, $\varepsilon=0.5$: the chain settles at
# $V=4/3$, not at $1$ (tolerance: 5 standard errors of a sample variance).

# %%
# NBVAL_CHECK_OUTPUT
v, step = 1.0, 0.5
x = torch.randn(N_LANGEVIN, generator=gen)
for _ in range(200):
    x = x + step * (-x / v) + math.sqrt(2 * step) * torch.randn(N_LANGEVIN, generator=gen)
V = v / (1 - step / (2 * v))
assert abs(x.var() - V) < 5 * V * math.sqrt(2 / N_LANGEVIN), x.var()
assert abs(x.var() - v) > 5 * V * math.sqrt(2 / N_LANGEVIN)  # and v is ruled out
print(f"ε = {step}: stationary variance v/(1-ε/2v) = {V:.4f} (not v = {v}): ok")

# %% [markdown]
# Now a 2-D mixture of three overlapping Gaussians, with the exact score from
# `GaussianMixtureOracle` (at $t=0$ its marginal is the data itself). With a small step
# $\varepsilon=0.01$ the bias is about $\varepsilon/2$ in each variance — we allow for it —
# and the chains reproduce the mixture's mean and covariance (`oracle.mean()`,
# `oracle.cov()`, exact) within 5 standard errors.

# %%
vp = VPSDE()  # β from 0.1 to 20, the SDE of lessons 01–02
mix = GaussianMixtureOracle(vp, means=[[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]],
                            covs=[0.25, 0.25, 0.16], weights=[0.5, 0.3, 0.2])
t0 = torch.zeros(N_LANGEVIN)


def langevin(score_fn, x, n_steps, step, t, generator):
    """Unadjusted Langevin: x ← x + ε s(x, t) + √(2ε) z, n_steps times."""
    for _ in range(n_steps):
        x = x + step * score_fn(x, t) + math.sqrt(2 * step) * torch.randn(x.shape,
                                                                            generator=generator)
    return x


# %%
# NBVAL_CHECK_OUTPUT
x_lang = langevin(mix.score, torch.randn(N_LANGEVIN, 2, generator=gen), LANGEVIN_STEPS, 0.01,
                  t0, gen)
mean_true, cov_true = mix.mean(), mix.cov()
sd = cov_true.diagonal().sqrt()
assert ((x_lang.mean(0) - mean_true).abs() < 5 * sd / math.sqrt(N_LANGEVIN)).all()
cov_se = torch.sqrt((cov_true**2 + torch.outer(cov_true.diagonal(), cov_true.diagonal()))
                    / N_LANGEVIN)  # standard error of a sample covariance (Gaussian approx.)
cov_err = (torch.cov(x_lang.T) - cov_true).abs()
assert (cov_err < 5 * cov_se + 0.01).all(), cov_err  # + ε for the step-size bias
print("mixture mean  ", [round(v, 3) for v in mean_true.tolist()], "Langevin: ok")
print("mixture cov   ", [[round(v, 3) for v in row] for row in cov_true.tolist()], "Langevin: ok")

# %% [markdown]
# Langevin only sees the *local* slope. When modes are separated by regions of tiny
# density it cannot move mass between them, so the **mode weights are wrong** even though
# each mode's shape is right. Two modes at $\pm2$ with weights $0.8/0.2$, chains started
# from $\mathcal N(0, I)$: about half the chains end in each mode — the starting point,
# not the weights, decides. Noise fixes this: the score of the *noised* density $p_t$
# connects the modes, which is exactly what the reverse SDE of section 4 exploits
# (Song & Ermon 2019 anneal Langevin over noise levels for the same reason).

# %%
# NBVAL_CHECK_OUTPUT
sep = GaussianMixtureOracle(vp, means=[[-2.0, 0.0], [2.0, 0.0]], covs=[0.09, 0.09],
                            weights=[0.8, 0.2])
x_sep = langevin(sep.score, torch.randn(N_LANGEVIN, 2, generator=gen), LANGEVIN_STEPS, 0.01,
                 t0, gen)
frac_left = (x_sep[:, 0] < 0).double().mean().item()
assert abs(frac_left - 0.8) > 0.15, frac_left
print("true weight of the left mode 0.8; Langevin from N(0, I) is off by more than 0.15")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
scatter_2d(mix.sample(N_LANGEVIN, generator=gen), ax=axes[0], s=1, alpha=0.3, label="exact")
scatter_2d(x_lang, ax=axes[0], s=1, alpha=0.3, label="Langevin", lim=3,
           title="3 overlapping modes: Langevin works")
axes[0].legend(markerscale=6)
scatter_2d(sep.sample(N_LANGEVIN, generator=gen), ax=axes[1], s=1, alpha=0.3, label="exact")
scatter_2d(x_sep, ax=axes[1], s=1, alpha=0.3, label="Langevin", lim=3,
           title=f"separated modes: left weight {frac_left:.2f}, not 0.8")
axes[1].legend(markerscale=6)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · Forward SDEs and their marginals
#
# The continuous forward processes are linear SDEs $\mathrm dx = f(t)\,x\,\mathrm dt +
# g(t)\,\mathrm dw$ (Song et al. 2021). Start from a fixed $x_0$.
#
# *Mean.* The noise has mean zero, so $\frac{\mathrm d}{\mathrm dt}\mathbb E[x] = f\,\mathbb E[x]$
# and $\mathbb E[x_t] = m(t)\,x_0$ with $m(t) = \exp\int_0^t f$.
#
# *Variance.* Itô's formula gives $\mathrm d(x^2) = 2x\,\mathrm dx + g^2\,\mathrm dt$, so
# $\frac{\mathrm d}{\mathrm dt}\mathbb E[x^2] = 2f\,\mathbb E[x^2] + g^2$, and the same for the
# variance (subtract $\frac{\mathrm d}{\mathrm dt}\mathbb E[x]^2 = 2f\,\mathbb E[x]^2$):
# $$\dot v = 2f v + g^2,\qquad v(0)=0 \quad\Longleftrightarrow\quad g^2 = \dot v - 2 f v .$$
# A linear SDE with a Gaussian start stays Gaussian: $x_t = m\,x_0 + \sigma z$, $\sigma^2 = v$.
# With $B(t) = \int_0^t\beta$:
#
# | SDE | $f$ | $g^2$ | $m$ | $v=\sigma^2$ (solves $\dot v = 2fv+g^2$) |
# |---|---|---|---|---|
# | VP | $-\tfrac12\beta$ | $\beta$ | $e^{-B/2}$ | $1-e^{-B}$ |
# | sub-VP | $-\tfrac12\beta$ | $\beta(1-e^{-2B})$ | $e^{-B/2}$ | $(1-e^{-B})^2$ |
# | VE | $0$ | $\frac{\mathrm d}{\mathrm dt}\sigma_e^2$ | $1$ | $\sigma_e^2-\sigma_{\min}^2$ |
#
# Check the sub-VP entry: $\dot v = 2(1-e^{-B})\beta e^{-B}$, and
# $2fv+g^2 = -\beta(1-e^{-B})^2 + \beta(1-e^{-B})(1+e^{-B}) = 2\beta e^{-B}(1-e^{-B})$. ✓
# Since $(1-e^{-B})^2 \le 1-e^{-B}$, its variance stays *below* VP's — hence the name.
# VE uses $\sigma_e(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$: no shrinking, and the
# variance explodes to $\sigma_{\max}^2 = 2500$. (The package reports VE's marginal std as
# $\sigma_e(t)$, which already includes a tiny $\sigma_{\min}=0.01$ at $t=0$.)
#
# **Check by simulation:** Euler–Maruyama,
# $x \leftarrow x + f(t)x\,\Delta t + g(t)\sqrt{\Delta t}\,z$, with $f$ and $g$ taken from the
# package's `drift` and `diffusion`, against the closed-form mean and variance (5 standard
# errors; the $O(\Delta t)$ bias of Euler–Maruyama is far smaller).

# %%
sdes = {"VP": vp, "sub-VP": SubVPSDE(), "VE": VESDE(sigma_min=0.01, sigma_max=50.0)}


def closed_form(name, t):
    """(mean, variance) of x_t | x_0 = 1 from the table above."""
    if name == "VE":
        ve = sdes["VE"]
        return torch.ones_like(t), ve.sigma_min**2 * ((ve.sigma_max / ve.sigma_min) ** (2 * t) - 1)
    B = vp.schedule.integral(t)
    v = 1 - torch.exp(-B) if name == "VP" else (1 - torch.exp(-B)) ** 2
    return torch.exp(-B / 2), v


record_t = torch.linspace(0, 1, 21)
sim = {}
for name, sde in sdes.items():
    x, dt, rows = torch.ones(N_SIM, 1), 1.0 / SIM_STEPS, [(0.0, 1.0, 0.0)]
    for k in range(SIM_STEPS):
        t = k * dt
        x = x + sde.drift(x, t) * dt + sde.diffusion(torch.tensor(t)) * math.sqrt(dt) * torch.randn(
            x.shape, generator=gen)
        if (k + 1) % (SIM_STEPS // 20) == 0:
            rows.append(((k + 1) * dt, x.mean().item(), x.var().item()))
    sim[name] = torch.tensor(rows)  # [21, 3]: t, mean, variance

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'SDE':<7} {'t':>5} {'mean':>9} {'variance':>10}  simulation")
for name in sdes:
    for row in sim[name][[5, 10, 20]]:
        t, mean_sim, var_sim = row.tolist()
        mean_cf, var_cf = (float(c) for c in closed_form(name, torch.tensor(t)))
        assert abs(mean_sim - mean_cf) < 5 * math.sqrt(var_cf / N_SIM), (name, t, mean_sim)
        assert abs(var_sim - var_cf) < 5 * var_cf * math.sqrt(2 / N_SIM), (name, t, var_sim)
        print(f"{name:<7} {t:5.2f} {mean_cf:9.5f} {var_cf:10.4f}  ok")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
tt = torch.linspace(0, 1, 201)
for (name, rows), colour in zip(sim.items(), ("C0", "C1", "C2"), strict=True):
    mean_cf, var_cf = closed_form(name, tt)
    axes[0].plot(tt, mean_cf, color=colour, label=f"{name} closed form")
    axes[0].errorbar(rows[:, 0], rows[:, 1], yerr=2 * (rows[:, 2] / N_SIM).sqrt(), fmt="o",
                     ms=4, color=colour, mfc="none", capsize=2, label=f"{name} simulated ± 2 SE")
    axes[1].plot(tt[1:], var_cf[1:].sqrt(), color=colour, label=name)
    axes[1].plot(rows[1:, 0], rows[1:, 2].sqrt(), "o", ms=4, color=colour, mfc="none")
axes[0].set_xlabel("$t$")
axes[0].set_ylabel(r"$\mathbb{E}[x_t\mid x_0=1] = m(t)$")
axes[0].set_title("mean (VE: 2 SE grow with its std)")
axes[0].legend(fontsize="small", ncol=2)
axes[1].set_yscale("log")
axes[1].set_xlabel("$t$")
axes[1].set_ylabel(r"std of $x_t\mid x_0$")
axes[1].set_title("standard deviation (markers: Euler–Maruyama)")
axes[1].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The package.** Each SDE object carries $f$ (`drift_coef`), $g$ (`diffusion`) and the
# marginal $(m, \sigma)$ (`marginal`); the variance ODE says they must satisfy
# $$f = \dot m/m,\qquad g^2 = \tfrac{\mathrm d}{\mathrm dt}\sigma^2 - 2f\sigma^2$$
# (for VE the constant $\sigma_{\min}^2$ drops out of the derivative). Check by central
# differences at 19 times in $[0.05, 0.95]$.

# %%
# NBVAL_CHECK_OUTPUT
t_chk, h = torch.linspace(0.05, 0.95, 19), 1e-6
print(f"{'SDE':<7} {'m(1)':>9} {'σ(1)':>9} {'prior std':>9}  f = m'/m   g² = (σ²)' − 2fσ²")
for name, sde in sdes.items():
    (m_p, s_p), (m_m, s_m), (m, s) = (sde.marginal(t_chk + h), sde.marginal(t_chk - h),
                                      sde.marginal(t_chk))
    f, g2 = sde.drift_coef(t_chk), sde.diffusion(t_chk) ** 2
    ok_f = torch.allclose((m_p - m_m) / (2 * h) / m, f, rtol=1e-6, atol=1e-8)
    ok_g = torch.allclose((s_p**2 - s_m**2) / (2 * h) - 2 * f * s**2, g2, rtol=1e-6, atol=1e-8)
    assert ok_f and ok_g, name
    m1, s1 = (float(c) for c in sde.marginal(torch.tensor(1.0)))
    print(f"{name:<7} {m1:9.5f} {s1:9.4f} {sde.prior_std():9.1f}  ok         ok")

# %% [markdown]
# ## 3 · The Fokker–Planck equation
#
# The density $p_t$ of $x_t$ (now averaged over the data, too) evolves by the
# Fokker–Planck equation. For $\mathrm dx = f(t)x\,\mathrm dt + g(t)\,\mathrm dw$ in $d$
# dimensions
# $$\partial_t p_t(x) = -\nabla\!\cdot\big(f(t)\,x\,p_t(x)\big) + \tfrac12 g(t)^2\,\Delta p_t(x) .$$
# Drift *transports* probability, diffusion *spreads* it. For Gaussian data
# $\mathcal N(\mu, s^2)$ the marginal is $p_t = \mathcal N(m\mu,\ m^2 s^2 + \sigma^2)$ (section 2
# plus independence); for a mixture it is the mixture of those, and since the equation is
# linear, each component solves it separately.
#
# **Check** in 1-D, for all three SDEs, for a Gaussian and a two-component mixture
# (`GaussianOracle` / `GaussianMixtureOracle.log_prob` give $p_t$ exactly): both sides by
# central differences on a grid of 801 points at $t\in\{0.1, 0.3, 0.6\}$, residual relative to
# $\max|\partial_t p|$.

# %%
def fd_terms(oracle, sde, t, xs, ht=1e-5, hx=2e-4):
    """∂_t p, and −∂_x(f x p) + ½ g² ∂²_x p, by central differences (1-D data)."""
    p = lambda x, s: torch.exp(oracle.log_prob(x[:, None], s))  # noqa: E731
    dp_dt = (p(xs, t + ht) - p(xs, t - ht)) / (2 * ht)
    f, g2 = float(sde.drift_coef(torch.tensor(t))), float(sde.diffusion(torch.tensor(t))) ** 2
    flux = lambda x: f * x * p(x, t)  # noqa: E731
    d_flux = (flux(xs + hx) - flux(xs - hx)) / (2 * hx)
    d2p = (p(xs + hx, t) - 2 * p(xs, t) + p(xs - hx, t)) / hx**2
    return dp_dt, -d_flux + 0.5 * g2 * d2p


def data_1d(sde, kind):
    if kind == "Gaussian":
        return GaussianOracle(sde, mean=[0.8], cov=0.09)
    return GaussianMixtureOracle(sde, means=[[-1.0], [1.5]], covs=[0.04, 0.25], weights=[0.3, 0.7])


# %%
# NBVAL_CHECK_OUTPUT
print(f"{'SDE':<7} {'data':<9} Fokker–Planck residual / max|∂p/∂t| < 1e-5 at t = 0.1, 0.3, 0.6")
for name, sde in sdes.items():
    for kind in ("Gaussian", "mixture"):
        oracle = data_1d(sde, kind)
        lim = 4.0 if name != "VE" else 4.0 * float(sde.sigma(torch.tensor(0.6)))
        xs = torch.linspace(-lim, lim, 801)
        for t in (0.1, 0.3, 0.6):
            lhs, rhs = fd_terms(oracle, sde, t, xs)
            rel = ((lhs - rhs).abs().max() / lhs.abs().max()).item()
            assert rel < 1e-5, (name, kind, t, rel)
        print(f"{name:<7} {kind:<9} ok")

# %%
sde_fp, kind_fp = vp, "mixture"
oracle_fp = data_1d(sde_fp, kind_fp)
xs = torch.linspace(-3, 3, 401)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for t in (0.0, 0.1, 0.2, 0.4, 1.0):
    axes[0].plot(xs, torch.exp(oracle_fp.log_prob(xs[:, None], t)), label=f"t = {t}")
axes[0].set_xlabel("$x$")
axes[0].set_ylabel("$p_t(x)$")
axes[0].set_title("VP marginals of a 1-D mixture")
axes[0].legend(fontsize="small")
lhs, rhs = fd_terms(oracle_fp, sde_fp, 0.1, xs)
axes[1].plot(xs, lhs, lw=3, alpha=0.4, label=r"$\partial_t p$")
axes[1].plot(xs, rhs, "k--", label=r"$-\partial_x(fxp) + \frac{1}{2} g^2\partial_x^2 p$")
axes[1].set_xlabel("$x$")
axes[1].set_ylabel("rate of change of density")
axes[1].set_title("Fokker–Planck at t = 0.1: both sides")
axes[1].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · Reversing time
#
# **Anderson (1982).** If $x_t$ solves the forward SDE, the same process run from $t=1$
# back to $0$ solves
# $$\mathrm dx = \big[f(t)\,x - g(t)^2\,\nabla_x\log p_t(x)\big]\,\mathrm dt +
# g(t)\,\mathrm d\bar w,$$
# with $\mathrm dt<0$ and $\bar w$ a Brownian motion in reversed time. Only the score is
# unknown — which is what a diffusion model learns ($s = -\hat\varepsilon/\sigma$).
#
# **Why, from Fokker–Planck.** Use $\Delta p = \nabla\!\cdot(p\,\nabla\log p)$ to split the
# diffusion term in two ways.
#
# *All of it into the drift:* $\tfrac12 g^2\Delta p = \nabla\!\cdot\big(\tfrac12 g^2 p\,s\big)$,
# so Fokker–Planck becomes a pure transport (continuity) equation
# $$\partial_t p_t = -\nabla\!\cdot\Big(\big[f x - \tfrac12 g^2 s\big]\,p_t\Big).$$
# Particles moving with the velocity $v = fx - \tfrac12 g^2 s$ have exactly the density $p_t$:
# this is the **probability-flow ODE**
# $$\frac{\mathrm dx}{\mathrm dt} = f(t)\,x - \tfrac12 g(t)^2\,\nabla_x\log p_t(x),$$
# deterministic, with the same marginals as the SDE, and it can be run in either direction.
#
# *Twice into the drift, once back as diffusion:*
# $\tfrac12 g^2\Delta p = \nabla\!\cdot(g^2 p\,s) - \tfrac12 g^2\Delta p$, so
# $\partial_t p_t = -\nabla\!\cdot\big([fx - g^2 s]p_t\big) - \tfrac12 g^2\Delta p_t$.
# In reversed time $\tau = 1-t$, $q_\tau = p_{1-\tau}$ satisfies
# $\partial_\tau q = -\nabla\!\cdot\big(-[fx-g^2 s]\,q\big) + \tfrac12 g^2\Delta q$ — the
# Fokker–Planck equation of $\mathrm dx = -[fx - g^2 s]\,\mathrm d\tau + g\,\mathrm dw_\tau$,
# which is Anderson's SDE written in $\tau$. (This shows the marginals match; Anderson proves
# the whole path law does.)
#
# **Check the continuity equation** $\partial_t p + \partial_x(v p) = 0$ with the exact score
# of the 1-D mixture, by central differences, as in section 3.

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'SDE':<7} continuity residual of the probability flow / max|∂p/∂t| < 1e-5")
for name, sde in sdes.items():
    oracle = data_1d(sde, "mixture")
    lim = 4.0 if name != "VE" else 4.0 * float(sde.sigma(torch.tensor(0.6)))
    xs, hx, ht = torch.linspace(-lim, lim, 801), 2e-4, 1e-5
    ode = sde.reverse(oracle.score, probability_flow=True)  # velocity f x − ½ g² s
    for t in (0.1, 0.3, 0.6):
        p = lambda x, s: torch.exp(oracle.log_prob(x[:, None], s))  # noqa: E731, B023
        flux = lambda x: ode.drift(x[:, None], t)[:, 0] * p(x, t)  # noqa: E731, B023
        dp_dt = (p(xs, t + ht) - p(xs, t - ht)) / (2 * ht)
        resid = dp_dt + (flux(xs + hx) - flux(xs - hx)) / (2 * hx)
        rel = (resid.abs().max() / dp_dt.abs().max()).item()
        assert rel < 1e-5, (name, t, rel)
    print(f"{name:<7} ok")

# %% [markdown]
# ### The reverse SDE on eight Gaussians, with the exact score
#
# The data: eight Gaussians of std 0.1 on a circle of radius 2 (`eight_gaussians_oracle`).
# `sde.reverse(score_fn)` returns the reverse SDE; its `drift(x, t)` is
# $f x - g^2 s$ and `diffusion(t)` is $g$. Euler–Maruyama *backwards* from $t=1$ to
# $t_{\min} = 10^{-3}$ on the grid $1 = t_0 > t_1 > \dots > t_N = t_{\min}$, with
# $\Delta_k = t_k - t_{k+1} > 0$:
# $$x_{k+1} = x_k - \big[f x_k - g^2 s(x_k, t_k)\big]\Delta_k + g(t_k)\sqrt{\Delta_k}\,z_k .$$
# Eight lines. Then the package: `sample(eps_model, sde, shape, method="euler_maruyama")`
# calls the oracle as a noise predictor $\hat\varepsilon = -\sigma s$; with the same random
# generator it must retrace our paths (up to rounding).

# %%
eight = eight_gaussians_oracle(vp)  # radius 2, std 0.1
grid = time_grid(vp, REV_STEPS).tolist()  # uniform, 1 → t_min
frame_times = vp.t_min + (1 - vp.t_min) * np.linspace(1, 0, N_FRAMES) ** 2  # dense near t = 0
frame_idx = sorted({int(np.argmin(np.abs(np.array(grid) - t))) for t in frame_times})


def reverse_sde_em(score_fn, sde, x, grid, generator, keep=()):
    """Euler–Maruyama on the reverse SDE; also returns the states at grid indices `keep`."""
    rev = sde.reverse(score_fn)
    kept = {0: x.clone()} if 0 in keep else {}
    for k, (s, t) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        z = torch.randn(x.shape, generator=generator)
        x = x - rev.drift(x, s) * (s - t) + rev.diffusion(torch.tensor(s)) * math.sqrt(s - t) * z
        if k + 1 in keep:
            kept[k + 1] = x.clone()
    return x, kept


g_ours, g_pkg = torch.Generator().manual_seed(SEED + 1), torch.Generator().manual_seed(SEED + 1)
x1 = vp.prior_sample((N_REV, 2), generator=g_ours, dtype=torch.float64)
x_ours, snapshots = reverse_sde_em(eight.score, vp, x1, grid, g_ours, keep=frame_idx)
x_pkg = sample(eight, vp, (N_REV, 2), method="euler_maruyama", steps=REV_STEPS,
               generator=g_pkg, dtype=torch.float64)

# %% [markdown]
# **Checks.** (1) Same generator ⇒ the package's sampler and our loop agree path by path.
# (2) An independent run of the package (another seed) matches the exact $p_{t_{\min}}$
# *statistically*: each sample is assigned to its nearest centre; the eight counts pass a
# $\chi^2$ test of equal weights, and the spread around the centres matches the exact
# per-mode std $\sqrt{m^2\,0.1^2 + \sigma^2}$ (tolerance 5 standard errors plus 2 % for the
# Euler–Maruyama bias).

# %%
centres = eight.means  # [8, 2]
m_end, s_end = (float(c) for c in vp.marginal(torch.tensor(vp.t_min)))
std_mode = math.sqrt(m_end**2 * 0.1**2 + s_end**2)


def mode_stats(x):
    """Counts per nearest centre, and the per-coordinate std around that centre."""
    nearest = torch.cdist(x, m_end * centres).argmin(1)
    counts = torch.bincount(nearest, minlength=8)
    resid = x - m_end * centres[nearest]
    return counts, resid.std(0)


def matches_exact(x, bias=0.02):
    counts, spread = mode_stats(x)
    p_chi2 = stats.chisquare(counts.numpy()).pvalue
    se = std_mode / math.sqrt(2 * len(x))  # standard error of a sample std
    ok_spread = ((spread - std_mode).abs() < 5 * se + bias * std_mode).all().item()
    return p_chi2 > 1e-3 and ok_spread, counts, spread


# %%
# NBVAL_CHECK_OUTPUT
assert torch.allclose(x_ours, x_pkg, rtol=0, atol=1e-9), (x_ours - x_pkg).abs().max()
print("our Euler–Maruyama loop == sample(..., 'euler_maruyama'), same seed: max diff < 1e-9")
x_em = sample(eight, vp, (N_REV, 2), method="euler_maruyama", steps=REV_STEPS,
              generator=torch.Generator().manual_seed(SEED + 2), dtype=torch.float64)
for label, xs_ in (("our loop", x_ours), ("package, another seed", x_em)):
    ok, counts, spread = matches_exact(xs_)
    assert ok, (label, counts, spread)
print(f"exact per-mode std at t_min: {std_mode:.4f}; both runs: equal weights (χ² p > 0.001) "
      f"and spread within tolerance: ok")

# %% [markdown]
# ### The probability-flow ODE
#
# `sde.reverse(score_fn, probability_flow=True)` has drift $f x - \tfrac12 g^2 s$ and no
# noise. Heun's method (a predictor Euler step, then the trapezoid rule) backwards on the
# same grid:
# $$\tilde x = x_k - v(x_k, t_k)\Delta_k,\qquad
# x_{k+1} = x_k - \tfrac12\big[v(x_k, t_k) + v(\tilde x, t_{k+1})\big]\Delta_k .$$
# The package's `method="probability_flow"` uses Heun by default: from the *same* $x_1$ it
# must give the same points. And for Gaussian data the ODE has a closed-form solution: each
# point moves by the affine map $x_t = m_t\mu + \sqrt{v_t/v_s}\,(x_s - m_s\mu)$ with
# $v = m^2\Sigma + \sigma^2 I$ (`GaussianOracle.pf_map`; it follows because $p_t$ stays
# Gaussian and the flow must be the linear map that carries $\mathcal N(m_s\mu, v_s)$ onto
# $\mathcal N(m_t\mu, v_t)$ without rotation). Heun is second order, so halving the step
# should cut the error by about 4.

# %%
def pf_ode_heun(score_fn, sde, x, grid):
    """Heun's method on the probability-flow ODE, from grid[0] down to grid[-1]."""
    ode = sde.reverse(score_fn, probability_flow=True)
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        v_s = ode.drift(x, s)
        x_pred = x - v_s * (s - t)
        x = x - 0.5 * (v_s + ode.drift(x_pred, t)) * (s - t)
    return x


x1_ode = vp.prior_sample((N_REV, 2), generator=torch.Generator().manual_seed(SEED + 3),
                         dtype=torch.float64)
x_ode = pf_ode_heun(eight.score, vp, x1_ode, time_grid(vp, ODE_STEPS).tolist())
x_ode_pkg = sample(eight, vp, (N_REV, 2), method="probability_flow", steps=ODE_STEPS,
                   grid="uniform", generator=torch.Generator().manual_seed(SEED + 3), dtype=torch.float64)

# %%
# NBVAL_CHECK_OUTPUT
assert torch.allclose(x_ode, x_ode_pkg, rtol=0, atol=1e-9), (x_ode - x_ode_pkg).abs().max()
print("our Heun loop == sample(..., 'probability_flow'), same x_1: max diff < 1e-9")
ok, counts, spread = matches_exact(x_ode, bias=0.05)
assert ok, (counts, spread)
print("probability-flow samples: equal weights (χ² p > 0.001), spread within tolerance: ok")

# closed form on Gaussian data (fixed 64 points, independent of QUICK)
gauss = GaussianOracle(vp, mean=[1.0, -0.5], cov=[[0.5, 0.3], [0.3, 0.4]])
x_start = torch.randn(64, 2, generator=torch.Generator().manual_seed(7))
exact = gauss.pf_map(x_start, 1.0, vp.t_min)
errors = {}
for n in (25, 50, 100, 200):
    heun = pf_ode_heun(gauss.score, vp, x_start, time_grid(vp, n).tolist())
    pkg = sample(gauss, vp, (64, 2), method="probability_flow", steps=n, grid="uniform",
                 generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.allclose(heun, pkg, rtol=0, atol=1e-10)
    errors[n] = (heun - exact).abs().max().item()
orders = [math.log2(errors[n] / errors[2 * n]) for n in (25, 50, 100)]
assert errors[200] < 1e-3 and all(1.8 < p < 2.3 for p in orders), (errors, orders)
print(f"Heun vs pf_map (Gaussian data): error < 1e-3 at 200 steps; observed order "
      f"{orders[-1]:.1f} (≈ 2)")

# %% [markdown]
# The SDE and the ODE end at the same distribution by different routes: SDE paths are
# rough and cross each other; ODE paths are smooth and never cross, so the ODE is a
# *deterministic* map from noise to data — the basis of DDIM, likelihoods and inversion
# (lessons 06, 08, 09).

# %%
n_show = 40
x1_paths = vp.prior_sample((n_show, 2), generator=torch.Generator().manual_seed(11),
                           dtype=torch.float64)
grid_paths = time_grid(vp, 200).tolist()
_, sde_path = reverse_sde_em(eight.score, vp, x1_paths, grid_paths,
                             torch.Generator().manual_seed(12), keep=range(201))
ode_path = [x1_paths]
ode = vp.reverse(eight.score, probability_flow=True)
for s, t in zip(grid_paths[:-1], grid_paths[1:], strict=True):  # Euler is enough for a picture
    ode_path.append(ode_path[-1] - ode.drift(ode_path[-1], s) * (s - t))
fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
plot_trajectories(torch.stack([sde_path[k] for k in range(201)]), ax=axes[0], n_paths=12,
                  lim=3.2, title="reverse SDE: 12 paths")
plot_trajectories(torch.stack(ode_path), ax=axes[1], n_paths=n_show, lim=3.2,
                  title="probability-flow ODE: 40 paths")
scatter_2d(eight.sample(N_REV, generator=gen), ax=axes[2], s=1, alpha=0.3, label="exact data")
scatter_2d(x_em, ax=axes[2], s=1, alpha=0.3, label="reverse SDE")
scatter_2d(x_ode, ax=axes[2], s=1, alpha=0.3, label="PF ODE", lim=3.2,
           title="samples at $t_{\\min}$")
axes[2].legend(markerscale=6, fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Interactive: the score field evolving with t
#
# Arrows: the direction of the exact score $\nabla\log p_t$ of the eight Gaussians (colour:
# $\log\|s\|$), drawn by `diffusion_lab.viz.quiver_field` on a grid that avoids the origin
# (where the score vanishes by symmetry). Dots: the reverse-SDE particles of
# our run at the same time. At $t=1$ the field points to the origin, as for $\mathcal N(0,I)$;
# as $t$ falls the arrows turn towards a ring and then into eight basins, and the particles
# follow them. Press ▶ or drag the
# slider. Without a live kernel (on GitHub, or in CI) you see a static strip of frames and an
# HTML animation instead.

# %%
view_times = [grid[k] for k in frame_idx]
view_points = [snapshots[k][:600] for k in frame_idx]


def draw_score_frame(fig, k, lim=3.2):
    """Frame k on a cleared figure: the score field at view_times[k] and the particles."""
    fig.clf()
    ax = fig.add_subplot()
    quiver_field(eight.score, view_times[k], ax=ax, lim=lim, n=20,
                 title=f"score field and reverse-SDE particles, t = {view_times[k]:.3f}")
    ax.scatter(view_points[k][:, 0], view_points[k][:, 1], s=2, color="C3", alpha=0.5)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    return ax


def png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


if is_headless():
    shown = sorted({round(i) for i in np.linspace(0, len(view_times) - 1, min(5, N_FRAMES))})
    strip = plt.figure(figsize=(4.2 * len(shown), 3.8))
    for c, k in enumerate(shown):
        ax = strip.add_subplot(1, len(shown), c + 1)
        quiver_field(eight.score, view_times[k], ax=ax, lim=3.2, n=16,
                     title=f"t = {view_times[k]:.3f}")
        ax.scatter(view_points[k][:, 0], view_points[k][:, 1], s=2, color="C3", alpha=0.5)
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
    strip.tight_layout()
    display(Image(data=png(strip)))
    plt.close(strip)
    movie_fig = plt.figure(figsize=(5.6, 4.6), dpi=80)
    movie = animation.FuncAnimation(movie_fig, lambda k: draw_score_frame(movie_fig, k),
                                    frames=len(view_times), interval=400)
    display(HTML(movie.to_jshtml(default_mode="loop")))
    plt.close(movie_fig)
else:
    live_fig = plt.figure(figsize=(5.6, 4.6))
    picture = W.Image(format="png")
    play = W.Play(min=0, max=len(view_times) - 1, interval=400, description="play")
    slider = W.IntSlider(min=0, max=len(view_times) - 1, description="frame", readout=False)
    W.jslink((play, "value"), (slider, "value"))

    def redraw(change=None):
        draw_score_frame(live_fig, slider.value)
        picture.value = png(live_fig)

    slider.observe(redraw, names="value")
    redraw()
    plt.close(live_fig)
    display(W.VBox([W.HBox([play, slider]), picture]))

# %% [markdown]
# ## Summary
#
# - The score $\nabla\log p$ is all Langevin dynamics needs; the discrete chain is biased by
#   the step ($v\to v/(1-\varepsilon/2v)$) and cannot fix the weights of separated modes.
# - A linear SDE $\mathrm dx = fx\,\mathrm dt + g\,\mathrm dw$ has Gaussian marginals with
#   $\dot m = f m$ and $\dot v = 2fv + g^2$: VP keeps the variance at one, sub-VP stays below it,
#   VE lets it explode. Euler–Maruyama simulations agree, and the package satisfies
#   $f=\dot m/m$, $g^2 = (\sigma^2)' - 2f\sigma^2$.
# - Fokker–Planck $\partial_t p = -\nabla\!\cdot(fxp) + \frac12 g^2\Delta p$ holds for the exact
#   marginals (checked to $10^{-5}$).
# - Splitting the diffusion term gives the reverse SDE (drift $fx - g^2 s$) and the
#   probability-flow ODE (velocity $fx - \frac12 g^2 s$). With exact scores both recover
#   eight equally weighted modes, our loops match `samplers.sample` path by path, and Heun on
#   the ODE converges to `GaussianOracle.pf_map` at second order.
#
# ## What to expect
#
# | | 2-core CPU |
# |---|---|
# | full run (default parameters, kernel start included) | ≈ 40–75 s |
# | `QUICK=True` | ≈ 20–35 s |
#
# **Good output:** all checks print `ok`; the reverse SDE and ODE samples sit on the eight
# modes with equal weights; in the animation the arrows converge on the origin at $t=1$ and
# point into eight basins as $t\to 0$. **Failure signs:** a sign error in the score term
# ($f x + g^2 s$) makes samples fly off to infinity; using $g^2 s$ instead of $\tfrac12 g^2 s$ in
# the ODE (or vice versa) gives modes that are too narrow (too wide); a forgotten
# $\sqrt{\Delta t}$ in Euler–Maruyama gives variances off by orders of magnitude.
#
# **Next:** 06 replaces these loops by the package's samplers and compares them step by step.
