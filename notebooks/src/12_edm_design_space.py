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
# # 12 · The EDM design space and few-step sampling
#
# Karras et al. (2022, "Elucidating the Design Space of Diffusion-Based Generative Models", EDM)
# observed that VP, VE and DDIM-style models differ only in *how they are written down* (and, by
# the same argument, so do the flow models of lesson 11): after one change of variables they are
# all the same process, and the choices that matter — how the
# network is preconditioned, how the loss is weighted, which noise levels the sampler visits and
# which ODE solver it uses — can be made independently. This lesson derives those choices, checks
# each one numerically, measures every sampler of the package on exact oracles (error vs NFE,
# orders fitted) and reads the few-step FID benchmark of the bundled MNIST model.
#
# **What to expect.** Default run ≈ 20–25 s on a lightly loaded 2-core CPU (measured 22 s; 172 s
# while other jobs kept both cores busy), `QUICK=True` a little less; no training, one tiny MNIST
# sampling run (16 images, 10 NFE).
# Good output: every check prints `ok`; the fitted orders (40–160 NFE) are ≈ 1 (DDIM), ≈ 2
# (DPM-Solver++(2M), EDM-Heun), ≈ 3 (DPM-Solver++(3M), UniPC-2) and ≈ 4 (UniPC-3); the FID table
# shows the deterministic samplers levelling off near 0.52 while ancestral sampling reaches 0.36
# at 50 NFE, and
# the best 10-NFE row, the package's UniPC-3 ending at t = 0.05, at 0.44 on the report seed:
# under the 1.3× target line (0.452) and below diffusers' best (0.48); on two other seeds the
# same sampler scores 0.48 and 0.51.
#
# **Learning goals.** After this notebook you can
# 1. write every process of the package as $x=s(t)\,(x_0+\tilde\sigma z)$ with $s=m$,
#    $\tilde\sigma=\sigma/m=e^{-\lambda}$, and sample in $\tilde x=x/m$;
# 2. derive EDM's preconditioning $c_\text{in},c_\text{skip},c_\text{out},c_\text{noise}$ from
#    "unit-variance input and target", and recognise ε- and $x_0$-prediction as special cases;
# 3. explain the loss weight $w(\sigma)=1/c_\text{out}^2$ (EDM's $\lambda(\sigma)$) and the log-normal σ sampling;
# 4. build the Karras grid and the EDM sampler (Heun + churn), and measure the order of every
#    sampler on every grid against an exact oracle;
# 5. read a few-step FID benchmark honestly (reference, sample size, what saturates and why).
#
# Package pieces: `diffusion_lab.preconditioning`, `diffusion_lab.samplers` (`edm`,
# `dpm_solver(order=3)`, `dpm_solver(eta=1)`), `diffusion_lab.unipc` and `diffusion_lab.restart`
# (few-step samplers measured in section 5), `diffusion_lab.timegrid`, `diffusion_lab.oracles`,
# `benchmarks/few_step_fid.py` (results in `benchmarks/results/few_step_fid.csv`).

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checked cells print the same either way
N_MC = 400000  # Monte-Carlo samples for the preconditioning checks
N_ORACLE = 256  # samples per run of the oracle error study (fixed: the table is checked)
N_LAW = 4000  # samples for the "reaches the data law" check of the stochastic samplers
SEED = 0

# %%
if QUICK:
    N_MC, N_LAW = 60000, 2000

# %%
import csv
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import diffusion_lab as dl
from diffusion_lab import preconditioning as P
from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import KARRAS_RHO, time_grid
from diffusion_lab.viz import image_grid
from diffusion_lab.widgets import FramePlayer

torch.manual_seed(SEED)
F64 = torch.float64
ROOT = Path(dl.__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# %% [markdown]
# ## 1 · One process in disguise: $x = s(t)\,(x_0 + \tilde\sigma z)$
#
# Every forward marginal of the package is $x_t = m(t)\,x_0 + \sigma(t)\,z$. Factor out $m$:
#
# $$x_t = m\,\bigl(x_0 + \tfrac{\sigma}{m} z\bigr) = s(t)\,\bigl(x_0+\tilde\sigma(t)\,z\bigr),\qquad
#   s=m,\quad \tilde\sigma=\frac{\sigma}{m}=e^{-\lambda},\quad \lambda=\log\frac{m}{\sigma}.$$
#
# So $\tilde x = x/m$ is a *variance-exploding* process with noise level $\tilde\sigma$, whatever
# the original was. The process only decides the *range* of $\tilde\sigma$ and how fast time
# runs through it; a sampler that works in $(\tilde x,\tilde\sigma)$ works for all of them. The
# cell checks the identity with each SDE's own `marginal` and prints the range of $\tilde\sigma$.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED)
print(f"{'process':16s} {'σ̃(t_min)':>10s} {'σ̃(t_max)':>10s}")
for name in ["vp", "subvp", "ve", "rectified_flow"]:
    sde = get_sde(name)
    t = torch.linspace(sde.t_min, sde.t_max, 11, dtype=F64)
    m, s = sde.marginal(t)
    st = P.sigma_tilde(sde, t)
    assert torch.allclose(st, s / m, rtol=1e-12) and torch.allclose(st, torch.exp(-sde.half_log_snr(t)))
    x0, z = torch.randn(11, 3, generator=g, dtype=F64), torch.randn(11, 3, generator=g, dtype=F64)
    assert torch.allclose(m[:, None] * (x0 + st[:, None] * z), m[:, None] * x0 + s[:, None] * z)
    print(f"{name:16s} {float(st[0]):10.4g} {float(st[-1]):10.4g}")
print("ok: x = m (x0 + σ̃ z) with σ̃ = σ/m = e^{-λ} for every process")

# %% [markdown]
# ## 2 · Preconditioning from unit variances
#
# From here on σ means the VE noise level $\tilde\sigma$ of section 1 (EDM's notation), and $n$ is
# the standard normal noise that section 1 called $z$. EDM writes the denoiser
# $D(\tilde x;\sigma)\approx\mathbb E[x_0\mid\tilde x]$ around a raw network $F$:
#
# $$D(\tilde x;\sigma)=c_\text{skip}(\sigma)\,\tilde x + c_\text{out}(\sigma)\,F\bigl(c_\text{in}(\sigma)\,\tilde x;\;c_\text{noise}(\sigma)\bigr).$$
#
# Take data with variance $\sigma_d^2$ per dimension and $\tilde x = x_0+\sigma n$, so
# $\operatorname{Var}\tilde x=\sigma^2+\sigma_d^2$. Training $D$ to $x_0$ means training $F$ to the
# **effective target** $F_\text{target}=(x_0-c_\text{skip}\tilde x)/c_\text{out}$. Ask for
#
# * **unit-variance input**: $c_\text{in}^2(\sigma^2+\sigma_d^2)=1\Rightarrow c_\text{in}=1/\sqrt{\sigma^2+\sigma_d^2}$;
# * **unit-variance target**: $\operatorname{Var}(x_0-c_\text{skip}\tilde x)=(1-c_\text{skip})^2\sigma_d^2+c_\text{skip}^2\sigma^2=c_\text{out}^2$;
# * **the smallest $c_\text{out}$** (the network's errors are amplified by it): minimise over
#   $c_\text{skip}$: $\;-2(1-c_\text{skip})\sigma_d^2+2c_\text{skip}\sigma^2=0\Rightarrow
#   c_\text{skip}=\dfrac{\sigma_d^2}{\sigma^2+\sigma_d^2}$, and then
#   $c_\text{out}=\dfrac{\sigma\,\sigma_d}{\sqrt{\sigma^2+\sigma_d^2}}$;
# * $c_\text{noise}=\tfrac14\ln\sigma$, an empirical choice that maps $\sigma\in[0.002,80]$ to a
#   modest range.
#
# As $\sigma\to0$, $c_\text{skip}\to1$ and $c_\text{out}\to0$: the denoiser passes its input through
# and the network only adds a small correction; as $\sigma\to\infty$, $c_\text{skip}\to0$ and the
# network predicts $x_0$ outright. The check simulates a deliberately non-Gaussian data law
# (two points $\pm\sigma_d$) at five noise levels.

# %%
# NBVAL_CHECK_OUTPUT
SD = 0.5
g = torch.Generator().manual_seed(SEED + 1)
x0 = SD * (2 * torch.randint(0, 2, (N_MC,), generator=g, dtype=F64) - 1)
print(f"{'σ':>6s} {'c_skip':>8s} {'c_out':>8s} {'c_in':>8s} {'c_noise':>8s}  Var(input) Var(target)")
for sigma in [0.002, 0.1, 0.5, 2.0, 80.0]:
    x = x0 + sigma * torch.randn(N_MC, generator=g, dtype=F64)
    c_in = 1 / math.sqrt(sigma**2 + SD**2)
    c_skip = SD**2 / (sigma**2 + SD**2)
    c_out = sigma * SD / math.sqrt(sigma**2 + SD**2)
    c_noise = math.log(sigma) / 4
    pre = P.edm_preconditioning(torch.tensor(sigma, dtype=F64), SD)
    assert np.allclose([float(v) for v in pre], [c_skip, c_out, c_in, c_noise], rtol=1e-12)
    v_in, v_tgt = float((c_in * x).var()), float(P.effective_target(x0, x, pre).var())
    assert abs(v_in - 1) < 0.02 and abs(v_tgt - 1) < 0.02, (sigma, v_in, v_tgt)
    print(f"{sigma:6g} {c_skip:8.4f} {c_out:8.4f} {c_in:8.4f} {c_noise:8.4f}  "
          f"{round(v_in, 1):10.1f} {round(v_tgt, 1):11.1f}")
assert P.edm_preconditioning(torch.tensor(1e-6, dtype=F64), SD).c_skip > 1 - 1e-10
print("ok: unit-variance input and target at every σ; c_skip → 1 as σ → 0")

# %% [markdown]
# **ε- and $x_0$-prediction are two other points of the same family.** Tweedie's
# $\hat x_0=\tilde x-\sigma\hat\varepsilon$ is $c_\text{skip}=1$, $c_\text{out}=-\sigma$ with
# $F=\hat\varepsilon$; predicting $x_0$ directly is $c_\text{skip}=0$, $c_\text{out}=1$. Their
# effective targets are $z$ and $x_0$ — and the cell shows the price: the ε-target has unit
# variance but $|c_\text{out}|=\sigma$ amplifies the network's error by σ at high noise (up to
# 80×), while the $x_0$-target has variance $\sigma_d^2$ whatever σ, so at small σ the network
# must reproduce its own input to high precision. EDM's choice interpolates between the two.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED + 2)
xs0, zs = torch.randn(8, 2, generator=g, dtype=F64), torch.randn(8, 2, generator=g, dtype=F64)
sig = torch.exp(torch.randn(8, generator=g, dtype=F64))
xt = xs0 + sig[:, None] * zs
pe, px, pk = P.eps_preconditioning(sig), P.x0_preconditioning(sig), P.edm_preconditioning(sig, SD)
assert torch.allclose(P.effective_target(xs0, xt, pe), zs)  # ε-prediction learns z
assert torch.allclose(P.effective_target(xs0, xt, px), xs0)  # x0-prediction learns x0
D_eps = pe.c_skip[:, None] * xt + pe.c_out[:, None] * zs  # F = the exact ε
assert torch.allclose(D_eps, xt - sig[:, None] * zs) and torch.allclose(D_eps, xs0)
for name, f in [("ε-prediction", P.eps_preconditioning), ("x0-prediction", P.x0_preconditioning),
                ("EDM (σ_d=0.5)", lambda s: P.edm_preconditioning(s, SD))]:
    c = f(torch.tensor([0.002, 80.0], dtype=F64))
    print(f"{name:15s} |c_out| at σ = 0.002, 80: {abs(float(c.c_out[0])):.3g}, {abs(float(c.c_out[1])):.3g}")
print("ok: ε- and x0-prediction are (c_skip, c_out) = (1, −σ) and (0, 1)")

# %% [markdown]
# **Loss weighting and σ sampling.** The denoising loss is
# $\mathbb E_{\sigma,x_0,n}\bigl[w(\sigma)\,\|D(x_0+\sigma n;\sigma)-x_0\|^2\bigr]$ (EDM calls the
# weight $\lambda(\sigma)$; here λ stays the half log-SNR). Since
# $D-x_0=c_\text{out}\,(F-F_\text{target})$, the weight $w(\sigma)=1/c_\text{out}^2
# =(\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2$ makes it exactly $\|F-F_\text{target}\|^2$: every σ
# contributes an $O(1)$ loss to the network's output. Which σ are trained is then a separate
# choice: EDM draws $\ln\sigma\sim\mathcal N(-1.2,\,1.2^2)$, concentrating on the middle noise
# levels where the loss can still be reduced (at tiny σ the task is trivial, at huge σ hopeless).
# The cell checks the identity with an arbitrary "network" $F$ and the log-normal law's moments.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(SEED + 3)
sig = P.lognormal_sigmas(N_MC, g)
x0b = SD * torch.randn(N_MC, generator=g, dtype=F64)
xb = x0b + sig * torch.randn(N_MC, generator=g, dtype=F64)
pre = P.edm_preconditioning(sig, SD)
F = torch.tanh(pre.c_in * xb) * 0.7 + 0.1 * pre.c_noise  # any network output
D = pre.c_skip * xb + pre.c_out * F
lhs = P.edm_loss_weight(sig, SD) * (D - x0b) ** 2
rhs = (F - P.effective_target(x0b, xb, pre)) ** 2
assert torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-12)
assert abs(float(sig.log().mean()) + 1.2) < 0.02 and abs(float(sig.log().std()) - 1.2) < 0.02
print(f"ok: w(σ)·|D − x0|² = |F − F_target|² for every sample; ln σ ~ N({P.P_MEAN}, {P.P_STD}²)")

# %% [markdown]
# ## 3 · The Karras grid and the EDM sampler
#
# EDM's grid spaces $\tilde\sigma^{1/\rho}$ uniformly,
# $\tilde\sigma_i=\bigl(\tilde\sigma_\max^{1/\rho}+\tfrac{i}{N}(\tilde\sigma_\min^{1/\rho}-\tilde\sigma_\max^{1/\rho})\bigr)^\rho$,
# $i=0,\dots,N$ (N steps), $\rho=7$: most points at low noise, where the image details form. (The
# paper spaces its N levels with $i/(N-1)$ and appends $\sigma_N=0$, so its N steps end at 0; here
# the N steps end at $\tilde\sigma_\min=\tilde\sigma(t_\text{end})$ and `denoise=True` adds the
# jump to $\hat x_0$.) In $\tilde x$ the probability-flow ODE is
# $\mathrm d\tilde x/\mathrm d\tilde\sigma=(\tilde x-D)/\tilde\sigma=\hat\varepsilon$, and the EDM
# sampler (Algorithm 2) takes Heun steps on it, optionally after "churn": raise the noise from
# $\tilde\sigma_i$ to $\hat\sigma=(1+\gamma)\tilde\sigma_i$ by adding
# $\sqrt{\hat\sigma^2-\tilde\sigma_i^2}\,S_\text{noise}\,z$, then integrate from $\hat\sigma$, with
# $\gamma=\min(S_\text{churn}/N,\sqrt2-1)$ on the steps whose $\tilde\sigma_i$ lies in
# $[S_\text{tmin},S_\text{tmax}]$ (the package's defaults: $S_\text{churn}=0$, i.e. no churn;
# $S_\text{noise}=1$; all steps). The last step is a
# plain Euler step. The cell builds the grid by the formula and compares it with
# `time_grid(kind="karras")`, then re-implements one deterministic Heun sampler in a few lines and
# asserts it equals `samplers.edm`.

# %%
# NBVAL_CHECK_OUTPUT
sde = get_sde("vp")
N = 12
tg = time_grid(sde, N, kind="karras")
st = P.sigma_tilde(sde, tg)
smax, smin = float(st[0]), float(st[-1])
u = torch.arange(N + 1, dtype=F64) / N
formula = (smax ** (1 / KARRAS_RHO) + u * (smin ** (1 / KARRAS_RHO) - smax ** (1 / KARRAS_RHO))) ** KARRAS_RHO
assert torch.allclose(st, formula, rtol=1e-9)

oracle = GaussianOracle(sde, [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]])
x1 = sde.prior_sample((N_ORACLE, 2), torch.Generator().manual_seed(SEED), dtype=F64)


def heun_edm(eps, sde, x, grid):
    """Deterministic EDM in x̃ = x/m, σ̃ = σ/m: Heun, Euler on the last step."""
    m = lambda t: float(sde.marginal(torch.as_tensor(t, dtype=F64))[0])  # noqa: E731
    st = lambda t: float(P.sigma_tilde(sde, t))  # noqa: E731
    e = lambda xt, t: eps(m(t) * xt, torch.full((xt.shape[0],), t, dtype=F64))  # noqa: E731
    xt, ts = x / m(grid[0]), grid.tolist()
    for i, (s, t) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        d = e(xt, s)
        x_eul = xt + (st(t) - st(s)) * d
        xt = x_eul if i == len(ts) - 2 else xt + (st(t) - st(s)) * 0.5 * (d + e(x_eul, t))
    return m(ts[-1]) * xt


mine = heun_edm(oracle, sde, x1, tg)
pkg = S.edm(oracle, sde, x1, steps=N, grid="karras")
assert torch.allclose(mine, pkg, rtol=1e-10, atol=1e-12)
print(f"σ̃ grid (VP, N = {N}): {smax:.4g} … {smin:.4g}; first steps "
      f"{', '.join(f'{float(v):.3g}' for v in st[1:4])}")
print("ok: the Karras grid formula and a 10-line EDM-Heun equal the package's")

# %% [markdown]
# ## 4 · Error vs NFE on an exact oracle, every sampler on every grid
#
# Gaussian data have a closed-form probability-flow map (`GaussianOracle.pf_map`), so a
# deterministic sampler's error can be measured per sample: the RMS distance to the exact
# solution from the same $x_1$ (VP, 2-D data with full covariance, 256 samples). Each sampler
# runs at NFE 10, 20, 40, 80, 160 on the four grids; the order is the fitted slope of
# $\log\text{error}$ vs $\log\text{NFE}$ over the last three (40–160 NFE). Below 40 NFE several
# samplers are not yet in their asymptotic regime, and a slope fitted there mixes in whatever the
# first points happen to be (UniPC-3's error, for one, hardly changes from 10 to 20 NFE and then
# falls 20-fold). EDM-Heun and PF-Heun use two calls per step
# ($2N-1$ for EDM, whose last step is Euler); the others one. UniPC (`diffusion_lab.unipc`,
# Zhao et al. 2023) reuses the call the next step needs anyway: the network's $\hat x_0$ at the
# *predicted* state corrects that state (UniC) before the next prediction, which raises the order
# of a $p$-step multistep predictor to $p+1$ at no extra NFE; `unipc2` is 2M + UniC, `unipc3` the
# third-order predictor + UniC with $B(h)=-h$ (the paper's "bh1").

# %%
SAMPLERS = {  # label: (method, options, NFE → steps)
    "ddim": ("ddim", {}, lambda n: n),
    "dpm2m": ("dpm_solver", {}, lambda n: n),
    "dpm3m": ("dpm_solver", {"order": 3}, lambda n: n),
    "edm_heun": ("edm", {}, lambda n: (n + 1) // 2),
    "pf_heun": ("probability_flow", {"solver": "heun"}, lambda n: n // 2),
    "unipc2": ("unipc", {}, lambda n: n),
    "unipc3": ("unipc", {"order": 3, "variant": "bh1"}, lambda n: n),
}
GRIDS = ["uniform", "quadratic", "logsnr", "karras"]
NFES = [10, 20, 40, 80, 160]
FIT = slice(2, None)  # the order is fitted on NFE 40, 80, 160
exact = oracle.pf_map(x1, 1.0, sde.t_min)
errors, orders = {}, {}
for label, (method, opts, steps_of) in SAMPLERS.items():
    for grid in GRIDS:
        e = []
        for nfe in NFES:
            info = {}
            out = S.SAMPLERS[method](oracle, sde, x1, steps=steps_of(nfe), grid=grid, info=info,
                                     **opts)
            assert abs(info["nfe"] - nfe) <= 1, (label, info["nfe"], nfe)
            e.append(float(((out - exact) ** 2).sum(-1).mean().sqrt()))
        errors[label, grid] = e
        orders[label, grid] = -np.polyfit(np.log(NFES[FIT]), np.log(e[FIT]), 1)[0]

# %%
# NBVAL_CHECK_OUTPUT
print("fitted order (slope of log error vs log NFE, NFE 40…160), VP, Gaussian data")
print(f"{'sampler':10s}" + "".join(f"{g:>11s}" for g in GRIDS))
for label in SAMPLERS:
    print(f"{label:10s}" + "".join(f"{orders[label, g]:11.1f}" for g in GRIDS))
smooth = ["quadratic", "logsnr", "karras"]  # the uniform-t grid is discussed below


def near(label, target, grids=smooth, tol=0.3):
    return all(abs(orders[label, g] - target) < tol for g in grids)


assert near("ddim", 1) and near("dpm2m", 2) and near("edm_heun", 2) and near("pf_heun", 2)
assert near("dpm3m", 3, ["quadratic", "karras"]) and orders["dpm3m", "logsnr"] > 3.7
assert near("unipc2", 3) and near("unipc3", 4, ["quadratic", "karras"])
assert 3.3 < orders["unipc3", "logsnr"] < 4.0  # still approaching 4 at 160 NFE
print("ok: DDIM ≈ 1, DPM-Solver++(2M) ≈ 2, Heun ≈ 2, 3M ≈ 3, UniPC-2 ≈ 3, UniPC-3 ≈ 4 "
      "on the quadratic, log-SNR and Karras grids")

# %% [markdown]
# These are the orders the methods are built for: $k$ for DPM-Solver++(kM), 2 for Heun, and
# $p+1$ for UniPC-$p$ — the corrector's extra order at no extra call. Two entries deviate, and
# neither should be generalised. On the log-SNR grid 3M converges *faster* than its nominal order
# (≈ 4, where the quadratic and Karras grids show 3.0) and UniPC-3 is still approaching its 4 at
# 160 NFE; we have not traced either to a cause. On the uniform-$t$ grid most orders are
# irregular: its steps in λ grow sharply towards $t_\text{min}$, where the multistep methods fall
# back to first-order steps whenever a step is much longer than the one before.

# %% [markdown]
# The error itself, at each NFE, on the log-SNR grid (the default of the exponential
# integrators, and the common ground for the comparisons below), and which grid gave each
# sampler its lowest error at 40 NFE:

# %%
# NBVAL_CHECK_OUTPUT
best = {label: min(GRIDS, key=lambda g: errors[label, g][NFES.index(40)]) for label in SAMPLERS}
print(f"{'sampler':10s} {'(log-SNR)':9s}" + "".join(f"{'NFE ' + str(n):>10s}" for n in NFES)
      + "   lowest at 40 NFE")
for label in SAMPLERS:
    print(f"{label:10s} {'':9s}" + "".join(f"{v:10.1e}" for v in errors[label, "logsnr"])
          + f"   {best[label]}")
for heun in ("edm_heun", "pf_heun"):  # Karras is the worst grid for Heun here (see below)
    assert max(GRIDS, key=lambda g: errors[heun, g][NFES.index(40)]) == "karras"
e2, e3 = errors["dpm2m", "logsnr"], errors["dpm3m", "logsnr"]
assert all(a < b for a, b in zip(e3[1:], e2[1:], strict=True))  # 3M wins from 20 NFE on
print("ok: 3M beats 2M from 20 NFE on; at 10 NFE they are within "
      f"{'a factor 1.5' if max(e2[0], e3[0]) < 1.5 * min(e2[0], e3[0]) else 'more than 1.5×'}")
u2, u3 = errors["unipc2", "logsnr"], errors["unipc3", "logsnr"]
assert all(a < b for a, b in zip(u2[1:], e2[1:], strict=True))  # UniPC-2 wins from 20 NFE on
assert all(a < b for a, b in zip(u3, e3, strict=True))  # UniPC-3 at every NFE
print("ok: with the same calls UniPC-2 beats 2M from 20 NFE on and UniPC-3 beats 3M at every "
      f"NFE; at 10 NFE UniPC-3 is {e3[0] / u3[0]:.0f}× more accurate than 3M")

fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), sharey=True)
for ax, grid in zip(axes, GRIDS, strict=True):
    for label in SAMPLERS:
        ax.loglog(NFES, errors[label, grid], marker="o", label=label)
    ax.set_title(f"grid: {grid}")
    ax.set_xlabel("NFE")
    ax.set_xticks(NFES, [str(n) for n in NFES])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.grid(alpha=0.3, which="both")
axes[0].set_ylabel("RMS error vs exact PF map")
axes[0].legend(fontsize=8)
fig.suptitle("VP, Gaussian data: error vs NFE for every sampler and grid", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The Karras grid was *not* the best grid for either Heun sampler here (the last column and the
# right panel): it is built for images, whose fine detail forms at low noise, and crowds the steps
# there; Gaussian data have no such detail, so those steps buy little while the few large steps at
# high noise cost accuracy. Which grid is best depends on the data — which is why the package's
# defaults were measured per method (`DEFAULT_GRIDS`, `benchmarks/default_grids.py`) rather than
# taken from the papers.
#
# **Stochastic samplers** have no per-sample reference; they must reach the data *law*. With
# churn (EDM, $S_\text{churn}=20$) and SDE-DPM-Solver++(2M) ($\eta=1$, one call per step), the
# mean and covariance of the samples at $t_\text{min}$ match the exact marginal within 5 standard
# errors, at the step counts below (60 and 100).

# %%
# NBVAL_CHECK_OUTPUT
mean_t = float(sde.marginal(torch.tensor(sde.t_min, dtype=F64))[0]) * oracle.mean()
m_, s_ = (float(v) for v in sde.marginal(torch.tensor(sde.t_min, dtype=F64)))
cov_t = m_**2 * oracle.cov() + s_**2 * torch.eye(2, dtype=F64)
for label, method, steps, opts in [("edm churn 20", "edm", 60, {"s_churn": 20.0}),
                                   ("sde-dpm++(2M)", "dpm_solver", 100, {"eta": 1.0})]:
    xs = S.sample(oracle, sde, (N_LAW, 2), method=method, steps=steps, dtype=F64,
                  generator=torch.Generator().manual_seed(SEED + 7), **opts)
    dev = xs - xs.mean(0)
    se_c = (dev[:, :, None] * dev[:, None, :]).reshape(N_LAW, -1).std(0) / math.sqrt(N_LAW)
    zm = (xs.mean(0) - mean_t) / (xs.std(0) / math.sqrt(N_LAW))
    zc = (torch.cov(xs.T).reshape(-1) - cov_t.reshape(-1)) / se_c
    assert float(zm.abs().max()) < 5 and float(zc.abs().max()) < 5, (label, zm, zc)
    print(f"ok: {label} reaches the data law (|z| < 5 for mean and covariance)")

# %% [markdown]
# ## 5 · Few-step sampling of the bundled MNIST model
#
# `benchmarks/few_step_fid.py` drives the bundled class-conditional MNIST network (unconditional
# mode) with our samplers and with diffusers' `DPMSolverMultistepScheduler` and
# `UniPCMultistepScheduler` on the *same* network and the same $x_1$, FID in the bundled
# classifier's 128-d features against the 4,500 training digits. The 1000-step ancestral
# reference (FID 0.348) and the earlier NFE 5–50 rows come from `sampler_benchmark.py` (same
# network, seed 0, n = 2000, features and reference set; measured on a GPU); the rows of
# `few_step_fid.csv` were measured on a 2-core CPU. That CSV holds two kinds of rows
# (column `role`): **report** rows, n = 2000 and seed 0 like the reference, and **tuning** rows,
# seeds 1–2 (n = 500 for the first screening, n = 2000 for the finalists), used only to choose a
# configuration — so the reported number is not the best of many tries on the very samples it
# is scored on. The table reads both CSVs.

# %%
def read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


bench = read(RESULTS / "sampler_benchmark.csv")
few_all = read(RESULTS / "few_step_fid.csv") if (RESULTS / "few_step_fid.csv").exists() else []
few = [r for r in few_all if r["role"] == "report"]
ref = next(float(r["fid"]) for r in bench if r["variant"] == "reference")
rows = {}  # (label, nfe) -> fid
for r in bench:
    if r["variant"] in ("dpm_solver", "dpm_solver_logsnr", "ddim", "ancestral") and int(r["nfe"]) <= 50:
        label = {"dpm_solver": "dpm2m uniform", "dpm_solver_logsnr": "dpm2m logsnr"}.get(
            r["variant"], r["variant"])
        rows[label + " (GPU run)", int(r["nfe"])] = float(r["fid"])
for r in few:
    if int(r["n"]) == 2000:
        rows[f"{r['config']} ({r['family']})", int(r["nfe"])] = float(r["fid"])
labels = list(dict.fromkeys(k[0] for k in rows))
nfes = sorted({k[1] for k in rows})
print(f"reference (ancestral, 1000 steps): {ref:.3f};  target 1.3× = {1.3 * ref:.3f}")
print(f"{'sampler':34s}" + "".join(f"{'NFE ' + str(n):>9s}" for n in nfes))
for lab in labels:
    print(f"{lab:34s}" + "".join(f"{rows[lab, n]:9.3f}" if (lab, n) in rows else f"{'—':>9s}"
                                  for n in nfes))
assert abs(ref - 0.348) < 1e-3
ode_100 = {r["variant"]: float(r["fid"]) for r in bench
           if int(r["nfe"]) == 100 and r["variant"] in ("ddim", "dpm_solver", "dpm_solver_logsnr")}
rk45 = {r["variant"]: float(r["fid"]) for r in bench if r["variant"].startswith("pf_rk45")}
anc50 = next(float(r["fid"]) for r in bench if r["variant"] == "ancestral" and int(r["nfe"]) == 50)
print(f"ODE samplers at 100 NFE: {min(ode_100.values()):.2f}–{max(ode_100.values()):.2f}; "
      f"RK45 at tol 1e-4: {rk45['pf_rk45 tol=0.0001']:.2f}; ancestral at 50 NFE: {anc50:.2f}")
assert 0.5 < min(ode_100.values()) and max(ode_100.values()) < 0.65 and anc50 < 0.37
assert rk45["pf_rk45 tol=0.0001"] > 1.3 * ref

# %% [markdown]
# **Reading the table.** Deterministic samplers run accurately to $t_\text{min}$ level off: in
# the earlier benchmark DDIM and DPM-Solver++ are at 0.52–0.56 at 100 NFE and adaptive RK45 at
# the tightest tolerance (10⁻⁴) reaches 0.53 (printed above) — the FID of this network's
# probability-flow ODE itself, above the 1.3× target (0.452). Ancestral sampling gets below that
# level (0.36 at 50 NFE, printed above; the benchmark's 100-NFE row, 0.38, is within the noise of
# FID at n = 2000): the injected noise corrects part of the network's error, but at 10 NFE its
# discretisation error is far larger.
#
# **The end of the trajectory matters.** diffusers' schedulers by default
# (`final_sigmas_type="zero"`) make their last network call at timestep $k = 1000/N$ for $N$
# calls ($t = 0.1$ at 10 NFE, $t = 0.05$ at 20) and return $\hat x_0$ from there, instead of
# integrating on to $t=10^{-3}$. The package does the same with `t_end=..., denoise=True`
# ($N-1$ steps + the $\hat x_0$ call). That output is not a sample of the ODE's $p_0$ but the
# posterior mean $E[x_0\mid x_t]$ of its state at $t$ — a different law, which is why a 10-NFE
# solver can score *below* the 100-NFE ODE value. Where should it stop? `few_step_fid.py
# --floor` follows one accurate ODE solve (UniPC, 30 log-SNR steps) and scores $\hat x_0$ at
# every grid time: the FID a sampler ending at that $t$ would reach once its own ODE error is
# gone. It was measured on seeds 1 and 2 (not on the report seed, so the choice of $t$ is not
# fitted to the samples it is scored on).

# %%
floor_rows = read(RESULTS / "few_step_fid_floor.csv")
floor = {}
for r in floor_rows:
    floor.setdefault(int(r["seed"]), {})[float(r["t"])] = float(r["fid"])
ts_floor = sorted({t for v in floor.values() for t in v}, reverse=True)
print("FID of x̂0(x_t, t) along an accurate ODE solve (n = 2000)")
print(f"{'t':>8s}" + "".join(f"{'seed ' + str(sd):>10s}" for sd in floor))
for t in ts_floor:
    print(f"{t:8.4f}" + "".join(f"{v[t]:10.3f}" if t in v else f"{'—':>10s}" for v in floor.values()))
t_best = {sd: min(v, key=v.get) for sd, v in floor.items()}
assert all(abs(t - 0.0536) < 1e-3 for t in t_best.values()), t_best
assert all(v[0.103447] > v[t_best[sd]] + 0.05 for sd, v in floor.items())  # t = 0.1 is too early
print(f"lowest on every seed at t = {t_best[1]:.3f}: "
      + ", ".join(f"seed {sd} {v[t_best[sd]]:.3f}" for sd, v in floor.items()))

# %% [markdown]
# On both seeds the floor is lowest at $t\approx0.054$ and higher on both sides: $\hat x_0$
# taken earlier is too blurred (at $t=0.1$ already ≥ 0.05 worse), taken later it carries more of
# the network's own ODE error (towards the ≈ 0.52 of a solve to $t_\text{min}$). So a 10-NFE
# sampler should end near $t = 0.05$ — not at diffusers' $0.1$ — *and* be accurate enough to get
# there in 9 steps. UniPC-2 ending at 0.05 (`unipc_end005`) gained little over ending at 0.1 on
# tuning seed 1, far from that seed's floor; UniPC-3 with $B(h)=-h$ (the paper's choice for
# few-step unconditional sampling) on the same grid and end, `unipc3_bh1_end005`, did better
# (the seed-1 rows of the three UniPCs are printed with the seed table below), so it is the
# configuration reported.
#
# The report rows at 10 NFE (printed in the table): our UniPC-3 to $t=0.05$; the earlier best,
# UniPC-2 with diffusers' end (`unipc_end01`); DPM-Solver++(2M) `dpm2m_end01`; SDE-DPM-Solver++(2M)
# with η = 1 (`sde2m_end01`, which draws the same noise as diffusers' `sde_dpm_zero` from the same
# generator and scores the same) and η = 1.5; and diffusers' `dpm_zero`, `sde_dpm_zero` and
# `unipc_zero` (order 2, bh2: its defaults) on the same network and $x_1$. The cell below prints
# the best of ours and of diffusers at each NFE measured by both, and their ratios. At 20 NFE
# diffusers' UniPC ends at $k=50$, i.e. $t\approx0.05$ too: there the two UniPCs score within
# 1 % of each other, within 5 % of the 1000-step reference, while our UniPC-2 still ending at
# $t=0.1$ is worse than either — the end point, not the solver, decides most of it. At 5 NFE
# the opposite holds: 4 steps cannot get to $t=0.05$ accurately, and ending at $t=0.1$ scores
# less than half as much; diffusers' 5-call default ends at $t=0.2$ and is worse still. At 50
# NFE diffusers' default ends at $t=0.02$, past the floor's minimum, and scores worse than at 20;
# ours, still ending at 0.05, scores the same as at 20 NFE (within 0.005): there the floor, not
# the solver, is the limit.

# %%
theirs = {k: v for k, v in rows.items() if "(diffusers)" in k[0]}
ours = {k: v for k, v in rows.items() if "(diffusers)" not in k[0]}
for n in nfes:
    if any(k[1] == n for k in theirs) and any(k[1] == n for k in ours):
        bo = min((v, k[0]) for k, v in ours.items() if k[1] == n)
        bt = min((v, k[0]) for k, v in theirs.items() if k[1] == n)
        print(f"NFE {n}: best ours {bo[1]} {bo[0]:.3f}, best diffusers {bt[1]} {bt[0]:.3f}, "
              f"ours/theirs = {bo[0] / bt[0]:.2f}; ours/reference = {bo[0] / ref:.2f}")
r10 = {k[0]: v for k, v in rows.items() if k[1] == 10}
best10 = min((v, k) for k, v in r10.items() if "(diffusers)" not in k)
assert best10[1] == "unipc3_bh1_end005 (ours)" and best10[0] <= 1.3 * ref  # the target, seed 0
assert best10[0] < min(v for k, v in r10.items() if "(diffusers)" in k)  # ours/theirs < 1
assert abs(r10["sde2m_end01 (ours)"] / r10["sde_dpm_zero (diffusers)"] - 1) < 0.01  # same noise
assert r10["sde2m_eta15_end01 (ours)"] > r10["sde2m_end01 (ours)"]  # the tuned η did not hold up
assert r10["unipc_end01 (ours)"] < r10["dpm2m_end01 (ours)"] < min(ode_100.values())
r20 = {k[0]: v for k, v in rows.items() if k[1] == 20}
assert abs(r20["unipc3_bh1_end005 (ours)"] / r20["unipc_zero (diffusers)"] - 1) < 0.01
assert r20["unipc_zero (diffusers)"] < 1.05 * ref
assert r20["unipc3_bh1_end005 (ours)"] < 1.05 * ref < r20["unipc_end01 (ours)"]
r5 = {k[0]: v for k, v in rows.items() if k[1] == 5}
assert r5["unipc_end01 (ours)"] < 0.5 * r5["unipc3_bh1_end005 (ours)"]  # at 5 NFE: end at 0.1
assert r5["unipc_zero (diffusers)"] > r5["unipc3_bh1_end005 (ours)"]
r50 = {k[0]: v for k, v in rows.items() if k[1] == 50}
assert r50["unipc3_bh1_end005 (ours)"] < r50["unipc_zero (diffusers)"]
assert r50["unipc_zero (diffusers)"] > r20["unipc_zero (diffusers)"]
assert abs(r50["unipc3_bh1_end005 (ours)"] - r20["unipc3_bh1_end005 (ours)"]) < 0.005

# %% [markdown]
# **One seed is not enough.** The reference (0.348) was measured on seed 0 only — 1000 network
# calls at n = 2000, 20 times the 50-NFE rows (hours on this CPU: the cell below prints the
# estimate from their `seconds`) — and the 1.3× target is met on that seed. The same samplers on
# other seeds (n = 2000, the tuning rows) tell how much of that is the seed:

# %%
sec50 = [float(r["seconds"]) for r in few if int(r["nfe"]) == 50 and r["family"] == "ours"]
print(f"a 1000-call reference at n = 2000 on this CPU: ≈ {1000 / 50 * max(sec50) / 3600:.1f} h "
      "at one thread (from the 50-NFE row's time)")
by_seed = {}
for r in few_all:
    if int(r["n"]) == 2000 and int(r["nfe"]) == 10 and r["family"] == "ours":
        by_seed.setdefault(r["config"], {})[int(r["seed"])] = float(r["fid"])
multi = {c: v for c, v in by_seed.items() if len(v) > 1}
print(f"{'10 NFE, n = 2000':24s}" + "".join(f"{'seed ' + str(sd):>9s}" for sd in (0, 1, 2)))
for c, v in sorted(multi.items(), key=lambda kv: kv[1][0]):
    print(f"{c:24s}" + "".join(f"{v[sd]:9.3f}" if sd in v else f"{'—':>9s}" for sd in (0, 1, 2)))
print("tuning seed 1, n = 2000: " + ", ".join(
    f"{c} {by_seed[c][1]:.3f}" for c in ("unipc3_bh1_end005", "unipc_end005", "unipc_end01")))
new, old = by_seed["unipc3_bh1_end005"], by_seed["unipc_end01"]
gains = {sd: old[sd] - new[sd] for sd in new if sd in old}
assert len(gains) == 3 and all(g > 0 for g in gains.values())
spread = max(new.values()) - min(new.values())
print("the new sampler is lower on every seed, by "
      + ", ".join(f"{g:.3f} (seed {sd})" for sd, g in sorted(gains.items()))
      + f"; its own FID varies by {spread:.3f} between seeds")
assert spread > 1.3 * ref - new[0]  # the seed-to-seed spread exceeds the margin to the target
assert all(0.01 < g < 0.05 for g in gains.values())
assert new[1] < by_seed["unipc_end005"][1] < old[1]  # the choice, made on tuning seed 1
# UniPC-2 ending at 0.05 on seed 1: a gain under 0.01, and still more than 0.05 above the floor
assert old[1] - by_seed["unipc_end005"][1] < 0.01
assert by_seed["unipc_end005"][1] - floor[1][t_best[1]] > 0.05
assert all(v[0] < min(f for sd, f in v.items() if sd != 0) for v in multi.values() if 0 in v)

# %% [markdown]
# So the claim has two parts of different strength. *Paired* (same $x_1$, same seed), UniPC-3
# ending at $t=0.05$ beats the previous best on every seed measured, by 0.015–0.042 — that is a
# property of the sampler. *Against the reference*, 1.26× holds on the reference's own seed;
# the spread between seeds (printed) is larger than the margin to the 1.3× line, and the other
# seeds score higher than seed 0 for every sampler measured on them; without a reference on
# those seeds we cannot say what the ratio would be there.

# %% [markdown]
# **The tuning rows.** Config names: `sde2m` is SDE-DPM-Solver++(2M) (η = 1, the reverse SDE;
# `eta15` etc. give η = 1.5, …: η > 1 adds more Langevin noise per step with the same
# marginals, section 4's `dpm_multistep` docstring), `_end01` ends like diffusers (uniform grid to
# t = 0.1, then $\hat x_0$), `_denoise` ends at $t_\text{min}$ with the $\hat x_0$ call,
# `karras` is the Karras grid, `restart_*` is restart sampling (`diffusion_lab.restart`: 6 ODE
# steps, one jump back up and 3 ODE steps down again), `dpm2m_end01` the deterministic anchor.
# Every 10-NFE configuration tried is printed, with each seed's FID at the tuning n.

# %%
tune = [r for r in few_all if r["role"] == "tuning" and int(r["nfe"]) == 10 and int(r["n"]) == 500]
by_cfg = {}
for r in tune:
    by_cfg.setdefault(r["config"], {})[int(r["seed"])] = float(r["fid"])
seeds = sorted({int(r["seed"]) for r in tune})
print("tuning rows at 10 NFE, n = 500 (biased upwards: compare them only with each other)")
print(f"{'config':28s}" + "".join(f"{'seed ' + str(sd):>9s}" for sd in seeds))
for c, v in sorted(by_cfg.items(), key=lambda kv: min(kv[1].values())):
    print(f"{c:28s}" + "".join(f"{v[sd]:9.3f}" if sd in v else f"{'—':>9s}" for sd in seeds))
both = {c: v for c, v in by_cfg.items() if len(v) == 2}
spread = max(abs(v[1] - v[2]) for v in both.values())
print(f"the same configuration on seed 1 and seed 2 differs by up to {spread:.2f}")
assert spread > 0.15  # seed-to-seed noise at n = 500 is larger than the gaps that matter
# the ending matters more than that noise: the same SDE sampler ending at t_min on the log-SNR
# or Karras grid is far worse than ending like diffusers (uniform grid to t = 0.1, then x̂0)
assert by_cfg["sde2m_end01"][1] < min(by_cfg["sde2m_denoise"][1],
                                      by_cfg["sde2m_karras_denoise"][1]) - 0.3
assert by_cfg["restart_mid"][1] > by_cfg["dpm2m_end01"][1] + 0.2

# %% [markdown]
# **Ours and diffusers' on the same trajectory.** The deterministic pairs compared sample by
# sample from the same $x_1$ (`few_step_fid_match.csv`, n = 64): `dpm2m_end01` against diffusers'
# default `dpm_zero`, and our 2M to $t_\text{min}$ against `dpm_sigma_min`.

# %%
for r in read(RESULTS / "few_step_fid_match.csv"):
    rel = float(r["rms_diff"]) / float(r["rms_norm_diffusers"])
    print(f"ours {r['ours']:14s} vs diffusers {r['diffusers']:14s} at NFE {r['nfe']}: per-image "
          f"L2 difference {float(r['rms_diff']):.3f} (RMS over images) = {100 * rel:.1f}% of the "
          f"image norm (n = {r['n']})")
    assert rel < 0.01

# %% [markdown]
# **A live look** (not a measurement: 16 images say nothing about FID). The package names the
# reported configuration `FEW_STEP` (`diffusion_lab.unipc.FEW_STEP`, also `dl.FEW_STEP`):
# `model.generate(n, steps=nfe - 1, **FEW_STEP)` makes `nfe` network calls, the last one the
# $\hat x_0$ step at $t = 0.05$. Here the network sampled with it at 10 NFE, with the denoised
# estimate $\hat x_0$ of every step recorded by the sampler's callback; the player shows how the
# digit forms, step by step.

# %%
# NBVAL_CHECK_OUTPUT
print(dl.FEW_STEP)
model = dl.GenerativeModel.load(ROOT / "data" / "checkpoints" / "mnist_cond")
frames, times, info = [], [], {}
imgs = model.generate(16, steps=9, seed=SEED, info=info, **dl.FEW_STEP,
                      callback=lambda i, t, x, x0: (frames.append(x0.clamp(-1, 1)), times.append(t)))
assert info["nfe"] == 10 and len(frames) == 9
assert imgs.shape == (16, 1, 28, 28) and float(imgs.abs().max()) <= 1.0
frames.append(imgs)
starts = [1.0, *times[:-1]]  # x̂0 of step i is evaluated at the step's start t_i
player = FramePlayer({"x̂0 at each step (FEW_STEP: UniPC-3, 10 NFE)": frames},
                     values=list(range(len(frames))), label="step", panel_size=4.0,
                     captions=[f"x̂0 at step {i} (t = {t:.3f})" for i, t in enumerate(starts)]
                     + [f"final: x̂0 at t = {times[-1]:.2f} (call 10)"])
player.show(animate=False, n_static=4)

# %% [markdown]
# ## Summary
#
# - Every process is $x=m\,(x_0+\tilde\sigma z)$ with $\tilde\sigma=\sigma/m=e^{-\lambda}$; in
#   $\tilde x=x/m$ all of them are the same variance-exploding process, and samplers written in
#   $(\tilde x,\tilde\sigma)$ — EDM, DPM-Solver++ — serve all of them.
# - Unit-variance input and target fix $c_\text{in}=1/\sqrt{\sigma^2+\sigma_d^2}$,
#   $c_\text{skip}=\sigma_d^2/(\sigma^2+\sigma_d^2)$, $c_\text{out}=\sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}$
#   (checked by simulation); ε- and $x_0$-prediction are $(c_\text{skip},c_\text{out})=(1,-\sigma)$ and
#   $(0,1)$; the loss weight $1/c_\text{out}^2$ turns the denoising loss into $\|F-F_\text{target}\|^2$.
# - On an exact oracle the orders fitted over 40–160 NFE are DDIM ≈ 1, DPM-Solver++(2M) ≈ 2,
#   Heun (EDM, PF) ≈ 2, 3M ≈ 3 (≈ 4 on the log-SNR grid, unexplained), UniPC-2 ≈ 3 and UniPC-3
#   ≈ 4; 3M pays from 20 NFE on, not at 10; UniPC-3 is more accurate than 3M at every NFE
#   measured, at the same calls. The best grid depends on the data: Karras was the worst grid
#   for Heun on this Gaussian.
# - On the MNIST network accurate ODE solves to $t_\text{min}$ level off at this network's ODE FID
#   (≈ 0.52–0.53 > the 1.3× target 0.452). Ending with $\hat x_0$ instead (`t_end=...,
#   denoise=True`, as diffusers does by default) changes the output law: the FID of $\hat x_0$
#   along an accurate solve is lowest at $t\approx0.05$ (seeds 1–2), not at diffusers' 10-NFE
#   end $t=0.1$. UniPC-3 ($B(h)=-h$) ending at 0.05 reaches 1.26× the reference at 10 NFE on the
#   report seed (target 1.3×), below diffusers' best; it beats the previous best on every seed,
#   but its FID moves between seeds by more than the margin to the target. The log-SNR and
#   Karras grids ending at $t_\text{min}$ are far worse at 10 NFE.
# - Tuning on n = 500 could not rank configurations within ≈ 0.2 FID (the same configuration
#   differs that much between two seeds), so the η chosen there did not hold up at n = 2000:
#   a small-n tuning run needs several seeds, or a larger n, to be worth its cost.
#
# ## What to expect (measured)
#
# | | 2-core CPU |
# |---|---|
# | full run (default parameters) | ≈ 20–25 s (measured 22 s; 172 s with the cores shared, load ≈ 10) |
# | `QUICK=True` | a little less: the oracle study is the same, only the Monte-Carlo checks shrink |
#
# **Failure signs:** a fitted order near 1 for DPM-Solver++(2M) on the log-SNR grid means the step-ratio rule or
# the history broke; a variance far from 1 in section 2 means a missing $c_\text{skip}$ (the
# target is then $x_0/c_\text{out}$, variance $\sigma_d^2/c_\text{out}^2$).
