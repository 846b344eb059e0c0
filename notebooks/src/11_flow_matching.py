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
# # 11 · Flow matching and rectified flow
#
# Lessons 03–06 trained a network to predict the *noise* ε and then solved the reverse SDE or
# the probability-flow ODE with it. Flow matching (Lipman et al. 2023; Liu et al. 2023 call it
# rectified flow; Albergo & Vanden-Eijnden 2023 stochastic interpolants) trains the network to
# predict the ODE's *velocity* directly, on the simplest path there is: the straight line
# $x_t=(1-t)\,x_0+t\,z$ from a data point to a noise sample. It is the recipe behind today's
# large image models (Stable Diffusion 3, Flux). This lesson shows that it is one more process
# of the same family, derives its loss, trains it on a 2-D toy beside an ε-model of the same size,
# and measures what "straight" buys: how many Euler steps a sample needs, before and after one
# *reflow* step. (Lipman et al. and Liu et al. run time the other way — noise at $t=0$, data at
# $t=1$ — so their velocity is $x_0-z$, the negative of this lesson's; the convention here is the
# package's, and Stable Diffusion 3's.)
#
# **Learning goals.** After this notebook you can
# 1. write the linear path as a process $(m,\sigma)=(1-t,\,t)$ and derive its $f$, $g^2$ and
#    $\lambda$ from the marginal;
# 2. derive the **marginal velocity** as a posterior mean, $u(x,t)=\mathbb E[z-x_0\mid x_t=x]$,
#    and show why regressing on the *conditional* velocity $z-x_0$ is enough (the two losses
#    differ by a constant);
# 3. convert between the four prediction targets ε, $\hat x_0$, score and velocity for any
#    $(m,\sigma)$, and sample a velocity network with every sampler of the package;
# 4. train a flow-matching model, compare it with an ε-model at equal size and budget, and
#    explain why ε-prediction is ill-conditioned near $t=1$ on this path;
# 5. measure the **straightness** of a flow and what one reflow step changes.
#
# **Prerequisites.** 05 (the probability-flow ODE $\frac{\mathrm dx}{\mathrm dt}=fx+\frac12g^2\hat\varepsilon/\sigma$,
# oracles), 06 (Euler's method on it, error vs NFE), 03 (the ε-loss).
#
# Package pieces: `diffusion_lab.sde.RectifiedFlow` (`get_sde("rectified_flow")`),
# `diffusion_lab.parameterizations` (conversions, `velocity_model_as_eps`),
# `diffusion_lab.training.train(..., target="velocity")`, `diffusion_lab.reflow`
# (`straightness`, `reflow_pairs`), `diffusion_lab.oracles`, `diffusion_lab.samplers`,
# `diffusion_lab.distances.energy_distance`, `diffusion_lab.widgets`.

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checked cells print the same either way
N_MC = 200000  # Monte-Carlo samples for the posterior-mean and loss checks (section 2)
N_DATA = 20000  # training points (eight Gaussians)
TRAIN_STEPS = 1500  # optimiser steps per network (flow matching, ε, reflow)
HIDDEN = 64  # MLP width (3 hidden layers)
BATCH = 256
N_EVAL = 2000  # samples per energy-distance evaluation
NFES = [1, 2, 3, 4, 6, 8, 12, 16, 32]  # Euler steps (= NFE) of the error study
N_PAIRS = 8000  # reflow pairs (z, ODE(z))
N_TRAJ = 500  # trajectories for the straightness measurement
TARGET_ED = 0.02  # target energy distance² for the NFE-needed measurement
TRAJ_TOL = 0.05  # target mean distance to the converged ODE solution (same model)
SEED = 0

# %%
if QUICK:
    N_MC, N_DATA, TRAIN_STEPS, N_EVAL = 50000, 5000, 200, 1000
    NFES, N_PAIRS, N_TRAJ = [1, 2, 4, 8, 16], 2000, 200

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffusion_lab.data import eight_gaussians
from diffusion_lab.distances import energy_distance
from diffusion_lab.nets import MLP
from diffusion_lab.oracles import eight_gaussians_oracle
from diffusion_lab.parameterizations import (
    conditional_velocity,
    eps_to_score,
    eps_to_v,
    eps_to_velocity,
    eps_to_x0,
    velocity_model_as_eps,
    velocity_to_eps,
)
from diffusion_lab.reflow import reflow_pairs, straightness
from diffusion_lab.samplers import probability_flow
from diffusion_lab.sde import get_sde
from diffusion_lab.training import ema_decay_at, ema_update, train
from diffusion_lab.viz import plot_trajectories, quiver_field, scatter_2d
from diffusion_lab.widgets import FramePlayer, TrajectoryRecorder

torch.set_num_threads(1)  # small batches: one thread beats two on a busy 2-core machine


def seeded(k):
    """A fresh generator: same k, same random numbers."""
    return torch.Generator().manual_seed(SEED + k)


rf = get_sde("rectified_flow")
oracle = eight_gaussians_oracle(rf, radius=math.sqrt(2), std=0.1, labelled=False)  # = the data law

# %% [markdown]
# ## 1 · The straight path is one more process
#
# Flow matching's path $x_t=(1-t)\,x_0+t\,z$ is the marginal $x_t=m\,x_0+\sigma z$ of lesson 05
# with $m=1-t$, $\sigma=t$, half log-SNR $\lambda=\log\frac{1-t}{t}$. Everything else follows from
# the marginal (lesson 05's identities):
# $$f=\frac{m'}{m}=-\frac1{1-t},\qquad g^2=(\sigma^2)'-2f\sigma^2=2t+\frac{2t^2}{1-t}=\frac{2t}{1-t}
# =-2\sigma^2\lambda',$$
# so the same reverse SDE, the same PF ODE and every sampler apply. At $t=1$, $m=0$: $x_1=z$
# carries nothing about $x_0$ and $f$, $g^2$ are infinite, so the package's `RectifiedFlow`
# raises there and sampling starts at $t_\text{max}=1-10^{-3}$. The *rates* $m'=-1$, $\sigma'=1$
# are finite everywhere (`marginal_rates`). Check each formula against the package by central
# differences:

# %%
# NBVAL_CHECK_OUTPUT
h = 1e-6
for t in (0.1, 0.5, 0.9):
    tt = torch.tensor([t - h, t, t + h], dtype=torch.float64)
    (m_, s_), lam = rf.marginal(tt), rf.half_log_snr(tt)
    dm, ds, dlam = ((v[2] - v[0]) / (2 * h) for v in (m_, s_, lam))
    f, g2 = rf.drift_coef(t).item(), rf.diffusion(t).item() ** 2
    assert abs(f - dm / m_[1]) < 1e-8 and abs(f + 1 / (1 - t)) < 1e-12
    assert abs(g2 - (2 * s_[1] * ds - 2 * f * s_[1] ** 2)) < 1e-8 and abs(g2 - 2 * t / (1 - t)) < 1e-12
    assert abs(g2 + 2 * s_[1] ** 2 * dlam) < 1e-7
    rates = rf.marginal_rates(t)
    assert abs(rates[0] - dm) < 1e-8 and abs(rates[1] - ds) < 1e-8
    print(f"t = {t}: m = {m_[1]:.1f}, σ = {s_[1]:.1f}, λ = {lam[1]:+.4f}, f = {f:+.4f} = m'/m, "
          f"g² = {g2:.4f} = 2t/(1−t) = −2σ²λ'  ok")
try:
    rf.drift_coef(1.0)
except ValueError as err:
    print("t = 1:", str(err).split(";")[0])
print("rates at t = 1: m' =", rf.marginal_rates(1.0)[0].item(), " σ' =", rf.marginal_rates(1.0)[1].item())

# %% [markdown]
# ## 2 · Conditional flow matching
#
# **The conditional velocity.** Fix a pair $(x_0,z)$; its path $x_t=m\,x_0+\sigma z$ moves with
# velocity $\frac{\mathrm d}{\mathrm dt}x_t=m'x_0+\sigma'z$, which on the straight path is
# $z-x_0$, constant in time. Many pairs pass through the same point $x$ at time $t$, with
# different velocities.
#
# **The marginal velocity** is their average,
# $$u(x,t)=\mathbb E\big[m'x_0+\sigma'z\;\big|\;x_t=x\big]=m'\,\hat x_0+\sigma'\,\hat\varepsilon,$$
# with the posterior means $\hat x_0=\mathbb E[x_0\mid x_t]$ and $\hat\varepsilon=\mathbb E[z\mid x_t]$ of
# lesson 05. It transports $p_t$: for a test function φ,
# $\frac{\mathrm d}{\mathrm dt}\mathbb E\,\varphi(x_t)=\mathbb E[\nabla\varphi(x_t)\cdot\dot x_t]
# =\mathbb E[\nabla\varphi(x_t)\cdot u(x_t,t)]$ (tower property), which is the weak form of the
# continuity equation $\partial_tp_t+\nabla\cdot(p_tu)=0$. So the ODE $\dot x=u(x,t)$ run from
# $t=1$ down to 0 carries $p_1$ to the data law — and it *is* the probability-flow ODE: with
# $\hat x_0=(x-\sigma\hat\varepsilon)/m$,
# $m'\hat x_0+\sigma'\hat\varepsilon=\frac{m'}{m}x+\big(\sigma'-\frac{m'}{m}\sigma\big)\hat\varepsilon=fx+\tfrac12g^2\hat\varepsilon/\sigma$.
#
# First check the posterior mean directly: at three points, $\mathbb E[z-x_0\mid x_t=x]$ by
# self-normalised importance sampling over $x_0\sim p_0$ (weights $\propto\mathcal N(x;(1-t)x_0,t^2I)$,
# $z=(x-(1-t)x_0)/t$) against the oracle's exact velocity `eps_to_velocity(x, ε*(x, t), rf, t)`.

# %%
x_q = torch.tensor([[0.3, 0.2], [-0.8, 0.6], [1.2, -0.1]], dtype=torch.float64)
t_q = 0.5
u_exact = eps_to_velocity(x_q, oracle(x_q, t_q), rf, t_q)
x0_mc = oracle.sample(N_MC, generator=seeded(1))
for xi, ui in zip(x_q, u_exact, strict=True):
    w = torch.softmax(-((xi - (1 - t_q) * x0_mc) ** 2).sum(-1) / (2 * t_q**2), 0)
    z_mc = (xi - (1 - t_q) * x0_mc) / t_q
    mc = (w[:, None] * (z_mc - x0_mc)).sum(0)
    ess = 1 / (w**2).sum().item()  # effective sample size
    assert (mc - ui).abs().max() < 5 / math.sqrt(ess), (mc, ui)
    print(f"x = {xi.tolist()}: Monte Carlo E[z − x0 | x_t] = {mc.numpy().round(3)}, "
          f"exact u = {ui.numpy().round(3)}  (ESS {ess:.0f})")

# %% [markdown]
# **Why the conditional target is enough.** We cannot compute $u$ for real data, but we can
# draw $(x_0,z,t)$ and the conditional velocity $u_c=m'x_0+\sigma'z$. Expand the
# *conditional* flow-matching loss around $u$:
# $$\mathcal L_\text{CFM}(\theta)=\mathbb E\|v_\theta(x_t,t)-u_c\|^2
# =\underbrace{\mathbb E\|v_\theta-u\|^2}_{\mathcal L_\text{FM}(\theta)}
# -2\,\mathbb E\big[(v_\theta-u)\cdot\underbrace{\mathbb E[u_c-u\mid x_t]}_{=0}\big]
# +\underbrace{\mathbb E\|u-u_c\|^2}_{C,\ \text{free of }\theta}.$$
# Same gradients, same minimiser $v_\theta=u$; $C=\mathbb E\,\mathrm{tr}\,\mathrm{Cov}[u_c\mid x_t]$ is the
# loss floor no network can go below (it is why the flow-matching loss plateaus well above 0).
# Check it on $N_\text{MC}$ draws for four fields $v$: the gap $\mathcal L_\text{CFM}-\mathcal L_\text{FM}$
# is the same for each, up to its Monte-Carlo error.

# %%
g = seeded(2)
x0 = oracle.sample(N_MC, generator=g)
z = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
t_mc = rf.t_min + (rf.t_max - rf.t_min) * torch.rand(N_MC, generator=g, dtype=x0.dtype)
xt, _ = rf.marginal_sample(x0, t_mc, noise=z)
u_c = conditional_velocity(x0, z, rf, t_mc)
u_m = eps_to_velocity(xt, oracle(xt, t_mc), rf, t_mc)
fields = {"v = 0": torch.zeros_like(xt), "v = u/2": 0.5 * u_m,
          "v = u + sin(3x)": u_m + torch.sin(3 * xt), "v = u (exact)": u_m}
gap_u = ((u_m - u_c) ** 2).sum(-1)  # per-sample gap of the exact field: its mean is C
C = gap_u.mean().item()
print(f"{'field':<16} {'L_CFM':>8} {'L_FM':>8} {'gap':>8} {'gap − C':>9} {'± 4 s.e.':>9}")
for name, v in fields.items():
    l_cfm, l_fm = ((v - u_c) ** 2).sum(-1), ((v - u_m) ** 2).sum(-1)
    d = (l_cfm - l_fm) - gap_u  # = −2 (v − u)·(u_c − u): mean 0 by the tower property
    se4 = 4 * d.std().item() / math.sqrt(N_MC)
    assert abs(d.mean().item()) <= se4 + 1e-12, (name, d.mean().item(), se4)
    print(f"{name:<16} {l_cfm.mean():8.4f} {l_fm.mean():8.4f} {(l_cfm - l_fm).mean():8.4f} "
          f"{d.mean():+9.4f} {se4:9.4f}")
print(f"every gap equals C = E‖u − u_c‖² = {C:.3f} within its Monte-Carlo error  ok")

# %% [markdown]
# ## 3 · Four names for one prediction
#
# A network that outputs any one of ε, $\hat x_0$, score or velocity determines the others at the
# same $(x,t)$ (`diffusion_lab.parameterizations`; general $m,\sigma$, with
# $W=m\sigma'-m'\sigma=-m\sigma\lambda'>0$):
# $$\hat x_0=\frac{x-\sigma\hat\varepsilon}{m},\quad s=-\frac{\hat\varepsilon}\sigma,\quad
# u=m'\hat x_0+\sigma'\hat\varepsilon=\frac{m'x+W\hat\varepsilon}{m},\quad
# \hat\varepsilon=\frac{m\,u-m'x}{W}.$$
# On the straight path $W=(1-t)+t=1$: $u=\hat\varepsilon-\hat x_0$ and $\hat\varepsilon=x+(1-t)\,u$, finite
# even at $t=1$ — which is how `velocity_model_as_eps(v_model, rf)` lets every sampler of the package
# run a velocity network. Salimans & Ho's **v-prediction** $v=m\hat\varepsilon-\sigma\hat x_0$ is a different
# quantity: an invertible change of variables for any $(m,\sigma)$ (determinant $m^2+\sigma^2$), and the
# path's derivative $\mathrm dx/\mathrm d\varphi$ only on VP, where $m=\cos\varphi$, $\sigma=\sin\varphi$.
# Check each identity with the oracle's exact ε:

# %%
# NBVAL_CHECK_OUTPUT
x_c = torch.tensor([[0.5, -1.0], [1.5, 0.2], [-0.3, 0.4]], dtype=torch.float64)
for t in (0.2, 0.5, 0.8):
    eps = oracle(x_c, t)
    x0h, score = eps_to_x0(x_c, eps, 1 - t, t), eps_to_score(eps, t)
    u = eps_to_velocity(x_c, eps, rf, t)
    assert torch.allclose(u, eps - x0h, atol=1e-12)  # u = ε̂ − x̂0
    assert torch.allclose(velocity_to_eps(x_c, u, rf, t), x_c + (1 - t) * u, atol=1e-12)
    assert torch.allclose(velocity_to_eps(x_c, u, rf, t), eps, atol=1e-12)
    assert torch.allclose(score, oracle.score(x_c, t), atol=1e-12)
    assert torch.allclose(u, rf.reverse(oracle.score, probability_flow=True).drift(x_c, t), atol=1e-12)
    v = eps_to_v(x_c, eps, 1 - t, t)
    print(f"t = {t}: u = ε̂ − x̂0, ε̂ = x + (1−t)u, score = −ε̂/σ, u = PF drift  ok; "
          f"max |v − u| = {(v - u).abs().max():.2f} (v-prediction is not the velocity)")
wrapped = velocity_model_as_eps(lambda x, t: eps_to_velocity(x, oracle(x, t), rf, t), rf)
t_b = torch.full((3,), 0.3, dtype=torch.float64)
assert torch.allclose(wrapped(x_c, t_b), oracle(x_c, t_b), atol=1e-12)
print("velocity_model_as_eps(exact velocity) == exact ε  ok")

# %% [markdown]
# ## 4 · The exact velocity field
#
# For mixture data the oracle gives the exact $u(x,t)=\mathrm dx_t/\mathrm dt$, which points from the
# data towards the noise (increasing $t$). The sampler runs $t$ *downwards*, so it moves along
# $-u$, which the panels show (arrows: direction; colour: $\log\|u\|$ on one scale for all three).
# Far from the data ($t=0.9$) $-u$ points towards the data's mean; by $t=0.5$ it splits towards the
# eight modes; near $t=0.1$ it points into the nearest mode, and is much longer. The paths (right)
# are the ODE's trajectories from $t_\text{max}$
# to $t_\text{min}$ (RK4, 100 steps): curved, because the average of straight conditional paths
# is not straight. Early on (large $t$) the posterior of $x_0$ is still the whole data law, so
# $u\approx x-\mathbb E x_0=x$, so $-u\approx -x$ and every point first moves *towards the data mean*; only later does it
# turn towards a mode, often back outwards — a noise point that starts next to a mode goes in and
# comes back out.

# %%
u_oracle = lambda x, t: eps_to_velocity(x, oracle(x, t), rf, t)  # noqa: E731
z_traj = torch.randn(N_TRAJ, 2, generator=seeded(3), dtype=torch.float64)
rec = TrajectoryRecorder()
probability_flow(oracle, rf, rf.t_max * z_traj, steps=100, solver="rk4", grid="uniform", callback=rec)
traj_exact = torch.stack([rf.t_max * z_traj] + rec.x)
times_exact = [rf.t_max] + rec.times
minus_u = lambda x, t: -u_oracle(x, t)  # noqa: E731  the direction of motion, t decreasing
g_axis = torch.linspace(-2.5, 2.5, 16, dtype=torch.float64)  # 16: no grid point at 0, where u = 0
grid_pts = torch.cartesian_prod(g_axis, g_axis)
log_norms = [u_oracle(grid_pts, torch.full((len(grid_pts),), t, dtype=torch.float64)).norm(dim=1).log()
             for t in (0.9, 0.5, 0.1)]
clim = (float(min(v.min() for v in log_norms)), float(max(v.max() for v in log_norms)))
fig, axes = plt.subplots(1, 4, figsize=(18, 4))
for ax, t in zip(axes[:3], (0.9, 0.5, 0.1), strict=True):
    quiver_field(minus_u, t, ax=ax, lim=2.5, n=16, clim=clim, colorbar_label=r"$\log\|u\|$",
                 title=f"−u(x, t = {t}): where samples move")
    ax.scatter(*oracle.sample(400, generator=seeded(4)).T, s=2, color="C3", alpha=0.4)
plot_trajectories(traj_exact, ax=axes[3], n_paths=60, lim=2.5,
                  title="exact ODE paths (○ noise, ● data)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5 · Training with the flow-matching loss, beside an ε-model
#
# `train(net, rf, data, target="velocity")` uses the same loop as lessons 03–04 with the
# conditional flow-matching loss $\|v_\theta(x_t,t)-(z-x_0)\|^2$ ($t\sim U[t_\text{min},1]$); `target="eps"`
# (the default) is the ε-loss $\|\varepsilon_\theta(x_t,t)-z\|^2$ on the *same* process. Two MLPs of
# identical size, steps, batch, learning rate and seed; only the target differs.
#
# **What to expect:** each training run takes ≈ 6–25 s at the default size on a 2-core machine,
# depending on its load (≈ 2–5 s under QUICK, where the networks are visibly undertrained).

# %%
data, _ = eight_gaussians(N_DATA, seed=SEED)
test, _ = eight_gaussians(N_EVAL, seed=SEED + 1)
nets, walls = {}, {}
for target in ("velocity", "eps"):
    torch.manual_seed(SEED)
    net = MLP(hidden=HIDDEN, layers=3)
    res = train(net, rf, data, steps=TRAIN_STEPS, batch_size=BATCH, lr=2e-3, ema_decay=0.995,
                seed=SEED, target=target, progress=False)
    nets[target], walls[target] = res.ema, res.wall_time
    print(f"target = {target:<8}: {net.num_parameters()} parameters, {TRAIN_STEPS} steps in "
          f"{res.wall_time:.1f} s, final loss {res.final_loss:.3f}")
    if target == "velocity":  # no network beats the floor C (per coordinate: C/2 in 2-D)
        assert res.final_loss > C / 2 - 0.05, (res.final_loss, C / 2)
        print(f"{'':19}the floor of this loss is C/2 = {C / 2:.3f} per coordinate (section 2)")
models = {"flow matching (velocity)": velocity_model_as_eps(nets["velocity"], rf),
          "ε-prediction": nets["eps"]}

# %% [markdown]
# The flow-matching loss ends close to the floor of section 2 — $C$ there is summed over the two
# coordinates, `train` averages over them, so the floor is $C/2$ — not near 0; the ε-loss has a
# floor too, for the same reason. Now sample both with **Euler on the ODE** on the uniform grid from $t_\text{max}$ to
# $t_\text{min}$ (NFE = steps), from the same noise, and measure the squared energy distance to
# held-out data. The estimator is unbiased, so for two samples of the same law it scatters
# around 0 and can be negative; its scale is the value between two independent data sets of the
# same size, printed first, and values within about that distance of 0 mean "indistinguishable". The exact
# velocity (oracle) with the same Euler steps shows the discretisation error alone.


# %%
@torch.no_grad()
def euler_samples(model, z, nfe):
    return probability_flow(model, rf, rf.t_max * z, steps=nfe, solver="euler", grid="uniform")


z_eval = torch.randn(N_EVAL, 2, generator=seeded(5))
test64 = test.double()
rows = {"exact velocity (oracle)": oracle, **models}
errors = {name: [] for name in rows}
for name, model in rows.items():
    for nfe in NFES:
        x = euler_samples(model, z_eval.double() if model is oracle else z_eval, nfe)
        errors[name].append(energy_distance(x.double(), test64))
noise_floor = energy_distance(eight_gaussians(N_EVAL, seed=SEED + 2)[0].double(), test64)
print(f"energy distance² to held-out data, Euler on the ODE (two data sets: {noise_floor:+.4f})")
print(f"{'NFE':>4} " + " ".join(f"{name:>26}" for name in rows))
for k, nfe in enumerate(NFES):
    print(f"{nfe:4d} " + " ".join(f"{errors[name][k]:26.4f}" for name in rows))
fm_err, eps_err = errors["flow matching (velocity)"], errors["ε-prediction"]
assert fm_err[NFES.index(4)] < eps_err[NFES.index(4)]

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for k, name in enumerate(rows):
    axes[0].semilogy(NFES, np.maximum(errors[name], 1e-4), "o-", color=f"C{k}", label=name)
axes[0].axhline(TARGET_ED, color="0.5", ls="--", lw=0.8, label=f"target {TARGET_ED}")
axes[0].set_xscale("log", base=2)
axes[0].set_xlabel("NFE (Euler steps)")
axes[0].set_ylabel("energy distance² (floored at 1e-4)")
axes[0].set_title("error vs NFE: velocity vs ε at equal size and budget")
axes[0].legend(fontsize="small")
axes[0].grid(alpha=0.3)
x_fm = euler_samples(models["flow matching (velocity)"], z_eval, 4)
x_eps = euler_samples(models["ε-prediction"], z_eval, 4)
scatter_2d(test, ax=axes[1], lim=2.5, s=2, color="0.6")
axes[1].scatter(*x_fm.T, s=2, color="C1", label="flow matching, 4 NFE")
in_view = (x_eps.abs() <= 2.5).all(dim=1)
axes[1].scatter(*x_eps[in_view].T, s=2, color="C2", alpha=0.5,
                label=f"ε-model, 4 NFE ({int((~in_view).sum())} of {len(x_eps)} outside the view)")
axes[1].legend(fontsize="small", markerscale=4)
axes[1].set_title("samples at 4 NFE (grey: data)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Why the ε-model is so much worse at few steps *on this path*: its velocity is
# $u=(\hat\varepsilon-x)/(1-t)$, so at the first step ($t=0.999$) any error in $\hat\varepsilon$ is
# multiplied by $1/(1-t)=1000$, and a coarse Euler step carries that error all the way. The velocity
# network is trained on the quantity the solver integrates, so there is nothing to amplify; the
# conversion the other way, $\hat\varepsilon=x+(1-t)\,u$, *damps* its errors. (The comparison is
# about Euler steps, where the parameterisation matters most; samplers that step in λ, such as
# DPM-Solver, were not measured here.)
#
# ## 6 · How straight is a flow?
#
# One Euler step is exact only on a straight path walked at constant speed. A number for how
# close a path $x(t)$, $t\in[t_\text{end},T]$, is to that (`reflow.straightness`):
# $$S=\frac{\|x(T)-x(t_\text{end})\|^2}{(T-t_\text{end})\int\|\dot x\|^2\,\mathrm dt}\in[0,1],$$
# $\le1$ by Cauchy–Schwarz, $=1$ iff $\dot x$ is constant, 0 for a path that comes back to its
# start. With $\Delta=x(T)-x(t_\text{end})$ and $L=T-t_\text{end}$,
# $\int\|\dot x-\Delta/L\|^2\mathrm dt=\int\|\dot x\|^2\mathrm dt-\|\Delta\|^2/L$, so
# $S=1-\int\|\dot x-\Delta/L\|^2/\int\|\dot x\|^2$: Liu et al.'s straightness (the numerator, 0 for
# a straight path) made relative (checked below on the arc). On a quarter circle walked at constant speed it
# is $(2\sin\frac\pi4)^2/(\frac\pi2)^2=8/\pi^2$; for $x=t^2$ on a line it is $1/(\frac43)=\frac34$:

# %%
# NBVAL_CHECK_OUTPUT
tq = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
arc = torch.stack([torch.cos(0.5 * math.pi * tq), torch.sin(0.5 * math.pi * tq)], -1)[:, None]
S_arc = straightness(arc, tq).item()
S_line = straightness((tq**2)[:, None, None] * torch.ones(1, 1, 2, dtype=torch.float64), tq).item()
assert abs(S_arc - 8 / math.pi**2) < 1e-6 and abs(S_line - 0.75) < 1e-5
vel = arc.diff(dim=0) / tq.diff()[:, None, None]  # ẋ on each interval
liu = ((vel - (arc[-1] - arc[0])) ** 2).sum(-1).mul(tq.diff()[:, None]).sum()  # L = 1
assert abs(S_arc - (1 - float(liu) / float((vel**2).sum(-1).mul(tq.diff()[:, None]).sum()))) < 1e-9
print(f"quarter circle: S = {S_arc:.6f} = 8/π² = {8 / math.pi**2:.6f};  x = t² on a line: S = {S_line:.5f} = 3/4")


# %% [markdown]
# Now on trajectories of 100 Euler steps (RK4 for the oracle) from the same noise: the exact flow,
# and the trained flow-matching model.

# %%
@torch.no_grad()
def trajectory(model, z, steps=100):
    rec = TrajectoryRecorder()
    probability_flow(model, rf, rf.t_max * z, steps=steps, solver="euler", grid="uniform", callback=rec)
    return torch.stack([rf.t_max * z] + rec.x), [rf.t_max] + rec.times


S_exact = straightness(traj_exact, times_exact)
traj_fm, times_fm = trajectory(models["flow matching (velocity)"], z_traj.float())
S_fm = straightness(traj_fm, times_fm)
assert S_exact.max() <= 1 + 1e-9 and S_fm.max() <= 1 + 1e-6
print(f"straightness, mean over {N_TRAJ} paths: exact flow {S_exact.mean():.3f} "
      f"(min {S_exact.min():.3f}), flow-matching model {S_fm.mean():.3f} (min {S_fm.min():.3f})")

# %% [markdown]
# ## 7 · One reflow step
#
# The marginal flow is curved because many straight conditional paths cross. Rectified flow's
# remedy (Liu et al. 2023): push fresh noise through the trained ODE, $\hat x_0=\mathrm{ODE}(z)$, and
# train again on the **coupled** pairs $(\hat x_0,z)$ — same loss, but now $z$ and $x_0$ are not
# independent. The ODE's paths never cross, so the straight lines between its end points cross far
# less, and the new flow is straighter; it keeps (approximately) the same end law. The loss floor
# of section 2 falls with the crossings (the final loss, printed below, against section 5's): it would be 0 only for a coupling whose
# segments never meet at the same $t$ — a deterministic coupling is not enough (with
# $\hat x_0=-z$ every segment passes through 0 at $t=\tfrac12$). We start from the
# flow-matching weights and train for the same number of steps, with the package's EMA helpers,
# in a loop of a dozen lines (the pairs make it differ from `train`: no fresh noise per step).
#
# **What to expect:** the pairs take a second or two; the training as long as one run of section 5.

# %%
start = time.perf_counter()
pairs_x0, pairs_z = reflow_pairs(models["flow matching (velocity)"], rf,
                                 torch.randn(N_PAIRS, 2, generator=seeded(6)), steps=16)
t_pairs = time.perf_counter() - start

torch.manual_seed(SEED)
net_rf = copy.deepcopy(nets["velocity"]).train().requires_grad_(True)
ema_rf = copy.deepcopy(net_rf).eval().requires_grad_(False)
opt = torch.optim.AdamW(net_rf.parameters(), lr=2e-3, weight_decay=0.0)
g = seeded(7)
losses = []
start = time.perf_counter()
for step in range(TRAIN_STEPS):
    idx = torch.randint(N_PAIRS, (BATCH,), generator=g)
    x0_b, z_b = pairs_x0[idx], pairs_z[idx]
    t_b = rf.t_min + (1 - rf.t_min) * torch.rand(BATCH, generator=g)
    xt_b = (1 - t_b)[:, None] * x0_b + t_b[:, None] * z_b
    loss = ((net_rf(xt_b, t_b) - (z_b - x0_b)) ** 2).mean()
    losses.append(loss.item())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net_rf.parameters(), 1.0)
    opt.step()
    ema_update(ema_rf, net_rf, ema_decay_at(step, 0.995))
t_reflow = time.perf_counter() - start
models["after one reflow"] = velocity_model_as_eps(ema_rf, rf)
print(f"{N_PAIRS} pairs in {t_pairs:.1f} s (RK4, 16 steps); reflow training {TRAIN_STEPS} steps "
      f"in {t_reflow:.1f} s, final loss {np.mean(losses[-100:]):.4f} (mean of the last 100 steps, as "
      "train reports it in section 5)")

# %% [markdown]
# Straightness and error vs NFE before and after, and the fewest Euler steps that reach
# the target energy distance:

# %%
traj_rf, times_rf = trajectory(models["after one reflow"], z_traj.float())
S_rf = straightness(traj_rf, times_rf)
errors["after one reflow"] = [energy_distance(euler_samples(models["after one reflow"], z_eval, n).double(),
                                              test64) for n in NFES]


def nfe_needed(errs, tol):
    hit = [n for n, e in zip(NFES, errs, strict=True) if e <= tol]
    return str(hit[0]) if hit else f"> {NFES[-1]}"


@torch.no_grad()
def discretisation_error(model):
    """Mean ‖Euler_N(z) − ODE(z)‖ against the same model's converged solve (RK4, 64 steps)."""
    ref = probability_flow(model, rf, rf.t_max * z_eval, steps=64, solver="rk4", grid="uniform")
    return [(euler_samples(model, z_eval, n) - ref).norm(dim=1).mean().item() for n in NFES]


before, after = errors["flow matching (velocity)"], errors["after one reflow"]
disc = {name: discretisation_error(models[name])
        for name in ("flow matching (velocity)", "after one reflow")}
d_before, d_after = disc["flow matching (velocity)"], disc["after one reflow"]
print(f"{'':4} {'energy distance² to data':^28} {'distance to own converged ODE':^30}")
print(f"{'NFE':>4} {'before reflow':>14} {'after reflow':>13} {'before reflow':>15} {'after reflow':>14}")
for k, nfe in enumerate(NFES):
    print(f"{nfe:4d} {before[k]:14.4f} {after[k]:13.4f} {d_before[k]:15.4f} {d_after[k]:14.4f}")
print(f"straightness (mean): exact {S_exact.mean():.3f}, flow matching {S_fm.mean():.3f}, "
      f"after reflow {S_rf.mean():.3f}")
print(f"NFE needed for energy distance² ≤ {TARGET_ED}: before {nfe_needed(before, TARGET_ED)}, "
      f"after {nfe_needed(after, TARGET_ED)}")
print(f"NFE needed for a mean distance ≤ {TRAJ_TOL} to the converged ODE: "
      f"before {nfe_needed(d_before, TRAJ_TOL)}, after {nfe_needed(d_after, TRAJ_TOL)}")
assert d_after[0] < d_before[0]
assert S_rf.mean() > S_fm.mean()
assert after[0] < before[0]  # one Euler step: the straighter flow is much closer

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
for ax, (name, tr) in zip(axes[:3], {"exact flow": traj_exact, "flow matching": traj_fm,
                                       "after one reflow": traj_rf}.items(), strict=True):
    plot_trajectories(tr, ax=ax, n_paths=60, lim=2.5, title=name)
x1 = euler_samples(models["after one reflow"], z_eval, 1)
x1_fm = euler_samples(models["flow matching (velocity)"], z_eval, 1)
scatter_2d(test, ax=axes[3], lim=2.5, s=2, color="0.6")
axes[3].scatter(*x1_fm.T, s=2, color="C0", alpha=0.6, label="flow matching, 1 NFE")
axes[3].scatter(*x1.T, s=2, color="C3", label="after reflow, 1 NFE")
axes[3].legend(fontsize="small", markerscale=4)
axes[3].set_title("one Euler step")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 8 · Particles along the flow
#
# The same 500 noise points (200 under QUICK) carried by the exact flow, the flow-matching model
# and the reflowed model, frame by frame from $t=t_\text{max}$ to $t_\text{min}$. After reflow the
# particles move on nearly straight lines at constant speed. Drag the slider or press ▶; without a
# live kernel you see a static strip.

# %%
frames = range(0, 101, 10)
panels = {"exact flow": [traj_exact[k] for k in frames],
          "flow matching": [traj_fm[k] for k in frames],
          "after one reflow": [traj_rf[k] for k in frames]}
times_w = [times_exact[k] for k in frames]
player = FramePlayer(panels, values=times_w, label="t", lim=2.5, panel_size=3.2,
                     captions=[f"t = {t:.3f}" for t in times_w])
player.show(animate=False, n_static=5)

# %% [markdown]
# ## Summary
#
# - The straight path $x_t=(1-t)x_0+tz$ is the process $(m,\sigma)=(1-t,t)$ with
#   $f=-1/(1-t)$, $g^2=2t/(1-t)$, singular at $t=1$, where sampling therefore starts at $1-10^{-3}$.
# - The marginal velocity is a posterior mean, $u=\mathbb E[m'x_0+\sigma'z\mid x_t]=m'\hat x_0+\sigma'\hat\varepsilon$,
#   and equals the probability-flow drift; the conditional loss $\|v_\theta-(z-x_0)\|^2$ differs from the
#   marginal one by a constant (checked by Monte Carlo), so it trains the same field.
# - ε, $\hat x_0$, score and velocity are interchangeable at each $(x,t)$:
#   $\hat\varepsilon=(m u-m'x)/W$, on the straight path $\hat\varepsilon=x+(1-t)u$; `velocity_model_as_eps`
#   runs a velocity network with every sampler.
# - At equal size and budget the velocity network beats the ε-network at few Euler steps on this path,
#   because ε-errors are amplified by $1/(1-t)$ near the noise end.
# - Straightness $S=\|x_T-x_{t_\text{end}}\|^2/(L\int\|\dot x\|^2)$ is below 1 for the exact flow;
#   one reflow step raises it and cuts the Euler steps needed for a given error (table above).
#
# ## What to expect
#
# | | 2-core CPU (measured while other jobs shared it) |
# |---|---|
# | full run (default parameters) | ≈ 45 s idle, ≈ 95–115 s while other jobs share the cores; most of it the three training runs |
# | `QUICK=True` | ≈ 30–40 s (kernel start included) |
# | one training run (1500 steps, batch 256, 29 k parameters, one thread) | ≈ 6–25 s |
#
# **Good output:** every check prints `ok`; the flow-matching row of the error table falls well
# below the ε row at 1–8 NFE; straightness rises after reflow and the 1-step samples after reflow
# land near the eight modes. **Failure signs:** samples that fly outwards, far beyond the data,
# come from a velocity network trained on $x_0-z$ (the sign) and integrated as if it were
# $z-x_0$; samples collapsed onto the centre at a moderate NFE mean far too few or too large
# steps (one Euler step lands on the data mean, as the figure above shows); an ε-converted velocity
# that explodes near $t=1$ means the conversion divides by $m$ instead of $W$.
