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
# # 09 · Interpolation and inversion
#
# A deterministic sampler is a map from noise to images. This lesson walks along that map in
# both directions: between two noises (how to interpolate so that every point is still a
# plausible noise), backwards from an image to its noise (DDIM inversion, and why the round trip
# is not exact), and part-way — noising an image only to a level $t$ and decoding it again
# (SDEdit), which is also the cleanest way to interpolate between two *images*. The last section
# measures what survives a trip to level $t$ and back: the digit's class, and how many pixels.
#
# > **What to expect.** The default run takes ≈ 30 s on an idle 2-core CPU and ≈ 90–120 s when
# > other jobs share it (≈ 30–40 s of CPU time; the last cell prints both for this run); the
# > time goes into about 200 forward passes of the bundled 1.7 M-parameter UNet on batches of
# > 2–32 MNIST digits. Good output: every check prints `ok`; the linear midpoint of two noises
# > has norm ≈ 19.8 against ≈ 28.0 for noise, and decodes to fainter digits than the spherical
# > midpoint; the round-trip error of DDIM inversion with the exact model halves when the steps
# > double (order ≈ 1) and vanishes with an implicit step; in the SDEdit sweep the class is kept
# > up to $t\approx 0.3$ and lost near $t=1$, while the pixel distance grows with $t$.
# > Failure signs: a round-trip error that does not shrink with the steps (inversion and decoding
# > on different time grids), a slerp whose midpoint norm is ≈ 19.8 (it is a linear mix).
#
# **Learning goals.** After this notebook you can
# 1. show that Gaussian noise in $d=784$ dimensions lives on a thin shell $\|z\|\approx\sqrt d$,
#    that a linear mix of two noises falls off it, and interpolate with **slerp** instead;
# 2. run the DDIM step **backwards** (inversion), measure its round-trip error against the number
#    of steps, and explain it: $\hat\varepsilon$ is evaluated at the wrong end of each step;
# 3. encode two images with the **same** noise to a level $t$, mix and decode, and see that this
#    is SDEdit of the pixel blend;
# 4. read off from an SDEdit sweep what a noise level $t$ keeps of an image.
#
# **Prerequisites.** 06 (DDIM as the first-order solver of the probability-flow ODE; time grids;
# `oracles`), 05 (the forward marginal $x_t=m_tx_0+\sigma_tz$), 02 (the half log-SNR
# $\lambda=\log(m/\sigma)$).
#
# Package pieces: `diffusion_lab.tasks` (`slerp`, `ddim_invert`), `diffusion_lab.interpolation`
# (`ddim_walk`, `ddim_decode`, `noise_to_level`, `sdedit`, `interpolate_at_level`),
# `diffusion_lab.samplers.ddim`, `diffusion_lab.timegrid`, `diffusion_lab.oracles`,
# `diffusion_lab.model.GenerativeModel` (`interpolate`), `diffusion_lab.classifier`,
# `diffusion_lab.widgets`.

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checked cells print the same either way
N_NORMS = 20000  # noise vectors for the norm histogram (section 1)
N_PAIRS = 8  # pairs of MNIST noises decoded at their midpoints (section 1)
DEC_STEPS = 10  # DDIM steps from t = 1; decoding from a level t takes max(2, ceil(DEC_STEPS * t))
INTERP_STEPS = 16  # DDIM steps of the inversion-and-slerp path (section 3)
ORACLE_STEPS = [10, 20, 40, 80, 160]  # steps of the exact-oracle round-trip study
N_INV = 4  # MNIST test digits in the inversion round trip (section 2)
INV_STEPS = [3, 6, 12, 24]  # DDIM steps up and down for them
N_SRC = 10  # source digits of the SDEdit sweep (section 4)
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # noise levels t of the sweep
N_FRAMES = 9  # mixing weights α along the interpolation paths (section 3)
SEED = 0

# %%
if QUICK:
    N_NORMS, N_PAIRS, N_INV, INV_STEPS, INTERP_STEPS = 2000, 4, 2, [3, 6], 6
    ORACLE_STEPS, DEC_STEPS = [10, 20, 40], 8
    N_SRC, LEVELS, N_FRAMES = 8, [0.2, 0.6, 1.0], 3

# %%
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import diffusion_lab
from diffusion_lab import tasks
from diffusion_lab.classifier import classifier_data, load_classifier
from diffusion_lab.interpolation import (
    ddim_decode,
    ddim_walk,
    interpolate_at_level,
    noise_to_level,
    sdedit,
)
from diffusion_lab.model import GenerativeModel
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.samplers import DEFAULT_GRIDS, ddim
from diffusion_lab.sde import VPSDE
from diffusion_lab.timegrid import coefficients, time_grid
from diffusion_lab.viz import image_grid
from diffusion_lab.widgets import FramePlayer

torch.set_num_threads(1)  # small batches: one thread beats two on a busy 2-core machine
T_START = time.time()


def seeded(k):
    """A fresh generator: same k, same random numbers."""
    return torch.Generator().manual_seed(SEED + k)


ROOT = Path(diffusion_lab.__file__).resolve().parents[1]
model = GenerativeModel.load(ROOT / "data" / "checkpoints" / "mnist_cond")
net = (model.ema if model.ema is not None else model.net).eval()
sde = model.sde
NULL = model.num_classes  # the null label: the unconditional model


@torch.no_grad()
def eps_uncond(x, t):
    """The bundled model without a class label (y = ∅)."""
    return net(x, t, torch.full((x.shape[0],), NULL, dtype=torch.long))


classifier = load_classifier().eval()


@torch.no_grad()
def read(x):
    """The classifier's label and confidence for images in [-1, 1]."""
    p = torch.softmax(classifier(x.clamp(-1, 1)), 1)
    return p.argmax(1), p.max(1).values


d = 28 * 28
print(f"model: {model.num_parameters():,} parameters, {type(sde).__name__}; d = {d}")

# %% [markdown]
# ## 1 · Where Gaussian noise lives, and how to walk between two noises
#
# For $z\sim\mathcal N(0,I_d)$, $\|z\|^2=\sum_i z_i^2$ is $\chi^2_d$: mean $d$, variance $2d$. So
# $\|z\|^2/d$ has standard deviation $\sqrt{2/d}$ and the norm itself follows the **χ
# distribution** with
# $$\mathbb E\|z\|=\sqrt2\,\frac{\Gamma(\frac{d+1}2)}{\Gamma(\frac d2)}\approx\sqrt{d-\tfrac12},\qquad
# \operatorname{Var}\|z\|=d-(\mathbb E\|z\|)^2\approx\tfrac12 .$$
# In $d=784$ almost every noise vector has norm $28\pm0.7$: a thin shell, and nearly all pairs
# are nearly orthogonal ($\cos\theta\sim\mathcal N(0,1/d)$).
#
# **The linear midpoint** of two independent noises, $\tfrac12(z_0+z_1)\sim\mathcal N(0,\tfrac12I)$,
# has norm $\approx\sqrt{d/2}\approx19.8$: about twelve standard deviations inside the shell — a
# vector the sampler essentially never starts from. More generally
# $\|(1-\alpha)z_0+\alpha z_1\|\approx\sqrt{(1-\alpha)^2+\alpha^2}\,\sqrt d$.
#
# **Slerp** walks the great circle instead: with $\cos\theta=\frac{z_0\cdot z_1}{\|z_0\|\|z_1\|}$,
# $$\operatorname{slerp}(z_0,z_1;\alpha)=\frac{\sin((1-\alpha)\theta)}{\sin\theta}z_0+\frac{\sin(\alpha\theta)}{\sin\theta}z_1 ,$$
# which keeps the norm exactly when $\|z_0\|=\|z_1\|$ (and, for $\theta\le90°$ — always the case,
# to within a few degrees, for independent noises in many dimensions — stays between them) and turns
# by the angle $\alpha\theta$. Check the χ moments, the chance of a midpoint norm under the prior,
# and slerp's norm and angle against `tasks.slerp`:

# %%
# NBVAL_CHECK_OUTPUT
mean_chi = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
std_chi = math.sqrt(d - mean_chi**2)
print(f"E‖z‖ = {mean_chi:.4f} (√(d − ½) = {math.sqrt(d - 0.5):.4f}), sd ‖z‖ = {std_chi:.4f}")
r_mid = mean_chi / math.sqrt(2)  # (z0 + z1)/2 = z/√2 in law
print(f"E‖(z0 + z1)/2‖ = E‖z‖/√2 = {r_mid:.4f} (√(d/2) = {math.sqrt(d / 2):.4f}): "
      f"{(mean_chi - r_mid) / std_chi:.1f} sd below the shell")
p_mid = torch.special.gammainc(torch.tensor(d / 2, dtype=torch.float64),
                               torch.tensor(r_mid**2 / 2, dtype=torch.float64)).item()
print(f"P(‖z‖ ≤ {r_mid:.2f}) = P(χ²_d ≤ r²) = {p_mid:.1e}")
assert abs(mean_chi - math.sqrt(d - 0.5)) < 1e-3 and abs(std_chi - math.sqrt(0.5)) < 1e-3

g = seeded(1)
z0, z1 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
z1 = z1 * z0.norm() / z1.norm()  # equal norms: slerp keeps them exactly
theta = torch.arccos(z0 @ z1 / (z0.norm() * z1.norm()))
alphas = torch.linspace(0, 1, 11, dtype=torch.float64)
by_hand = torch.stack([(torch.sin((1 - a) * theta) * z0 + torch.sin(a * theta) * z1) / torch.sin(theta)
                       for a in alphas])
path = tasks.slerp(z0, z1, alphas)
assert torch.allclose(path, by_hand, rtol=0, atol=1e-12)
assert torch.allclose(path.norm(dim=1), z0.norm().expand(11), rtol=1e-12, atol=0)
angle = torch.arccos((path @ z0 / (path.norm(dim=1) * z0.norm())).clamp(-1, 1))
assert torch.allclose(angle, alphas * theta, atol=1e-6)
lin_norm = ((1 - alphas)[:, None] * z0 + alphas[:, None] * z1).norm(dim=1) / z0.norm()
assert torch.allclose(lin_norm, ((1 - alphas) ** 2 + alphas**2 + 2 * alphas * (1 - alphas) * torch.cos(theta)).sqrt(),
                      atol=1e-12)
print("tasks.slerp = the formula; norm kept exactly; angle to z0 = α·θ; "
      "linear-mix norm = √((1−α)² + α² + 2α(1−α)cos θ)·‖z0‖  ok")

# %% [markdown]
# Now sample: the histogram of $\|z\|$ against the χ density, and of the norms of linear and
# spherical midpoints of independent pairs; on the right, the norm along the two paths for one
# pair.

# %%
g = seeded(2)
za_all = torch.randn(N_NORMS, d, generator=g)
zb_all = torch.randn(N_NORMS, d, generator=g)
norms = za_all.norm(dim=1)
lin_mid = (0.5 * (za_all + zb_all)).norm(dim=1)
n_sl = min(1000, N_NORMS // 4)  # slerp takes one pair at a time
sl_mid = torch.stack([tasks.slerp(a, b, 0.5) for a, b in zip(za_all[:n_sl], zb_all[:n_sl], strict=True)]).norm(dim=1)
assert abs(norms.mean().item() - mean_chi) < 5 * std_chi / math.sqrt(N_NORMS)
assert abs(lin_mid.mean().item() - r_mid) < 5 * std_chi / math.sqrt(N_NORMS)
assert abs(sl_mid.mean().item() - mean_chi) < 0.1  # on the shell (a slerp of two radii ≈ both)
print(f"sampled: mean ‖z‖ = {norms.mean():.2f}, linear midpoints {lin_mid.mean():.2f}, "
      f"slerp midpoints {sl_mid.mean():.2f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
r = np.linspace(17, 31, 400)
log_pdf = (1 - d / 2) * math.log(2) - math.lgamma(d / 2) + (d - 1) * np.log(r) - r**2 / 2
axes[0].hist(norms.numpy(), bins=60, density=True, alpha=0.5, label="‖z‖, z ~ N(0, I)")
axes[0].hist(lin_mid.numpy(), bins=60, density=True, alpha=0.5, label="linear midpoints")
axes[0].hist(sl_mid.numpy(), bins=60, density=True, alpha=0.5, histtype="step", lw=2,
             label="slerp midpoints")
axes[0].plot(r, np.exp(log_pdf), "k", lw=1, label=f"χ density, d = {d}")
axes[0].set(xlabel="norm", ylabel="density", title="Noise lives on a shell of radius ≈ √d")
axes[0].legend(fontsize=8)
a_fine = torch.linspace(0, 1, 101, dtype=torch.float64)
axes[1].plot(a_fine, tasks.slerp(za_all[0].double(), zb_all[0].double(), a_fine).norm(dim=1), label="slerp")
axes[1].plot(a_fine, ((1 - a_fine)[:, None] * za_all[0].double() + a_fine[:, None] * zb_all[0].double()).norm(dim=1),
             label="linear")
axes[1].axhline(math.sqrt(d), color="grey", ls=":", label="√d")
axes[1].set(xlabel="α", ylabel="‖path(α)‖", title="Norm along the path, one pair", ylim=(15, 31))
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# **What does the network do with an off-shell start?** Decode $N_\text{pairs}$ pairs of MNIST
# noises and their two midpoints with deterministic DDIM (`DEC_STEPS` steps, the unconditional
# model), and measure each image's contrast (the standard deviation of its pixels) and its
# amount of ink (the fraction of pixels above 0). A start of norm ≈ 19.8 is read as "less noise
# than expected": the decoded digit is fainter and thinner.

# %%
g = seeded(3)
za = torch.randn(N_PAIRS, 1, 28, 28, generator=g)
zb = torch.randn(N_PAIRS, 1, 28, 28, generator=g)
z_lin = 0.5 * (za + zb)
z_sl = torch.stack([tasks.slerp(a, b, 0.5) for a, b in zip(za, zb, strict=True)])
t0 = time.time()
with torch.no_grad():
    dec = ddim(eps_uncond, sde, torch.cat([za, zb, z_lin, z_sl]), steps=DEC_STEPS)
print(f"decoded {dec.shape[0]} images in {time.time() - t0:.1f} s")
x_a, x_b, x_lin, x_sl = dec.clamp(-1, 1).split(N_PAIRS)
contrast = {k: v.flatten(1).std(1) for k, v in
            (("ends", torch.cat([x_a, x_b])), ("linear midpoint", x_lin), ("slerp midpoint", x_sl))}
ink = {k: (v > 0).float().flatten(1).mean(1) for k, v in
       (("ends", torch.cat([x_a, x_b])), ("linear midpoint", x_lin), ("slerp midpoint", x_sl))}
print(f"{'':<16} {'start norm':>10} {'contrast':>9} {'ink':>7}")
for k, zz in (("ends", torch.cat([za, zb])), ("linear midpoint", z_lin), ("slerp midpoint", z_sl)):
    print(f"{k:<16} {zz.flatten(1).norm(dim=1).mean():10.1f} {contrast[k].mean():9.3f} {ink[k].mean():7.3f}")
assert contrast["linear midpoint"].mean() < contrast["slerp midpoint"].mean()
assert ink["linear midpoint"].mean() < ink["slerp midpoint"].mean()
assert abs(contrast["slerp midpoint"].mean() - contrast["ends"].mean()) < \
    abs(contrast["linear midpoint"].mean() - contrast["ends"].mean())
print("the linear midpoints decode to fainter digits (less contrast, less ink) than the "
      "slerp midpoints, which match the ends  ok")

fig, ax = plt.subplots(figsize=(10, 3.4))
k = min(N_PAIRS, 8)
ax.imshow(image_grid(torch.cat([x_a[:k], x_lin[:k], x_sl[:k], x_b[:k]]), nrow=k), interpolation="nearest")
ax.set_xticks([])
ax.set_yticks(14 + 30 * np.arange(4), ["z_a", "linear mid", "slerp mid", "z_b"])
ax.set_title(f"DDIM decodes ({DEC_STEPS} steps) of two noises and their midpoints")
plt.show()

# %% [markdown]
# ## 2 · DDIM inversion: the ODE run backwards
#
# The deterministic DDIM step from level $s$ to level $t$ is
# $$x_t=m_t\,\hat x_0+\sigma_t\,\hat\varepsilon(x_s,s),\qquad \hat x_0=\frac{x_s-\sigma_s\hat\varepsilon(x_s,s)}{m_s}. \tag{1}$$
# Nothing in (1) needs $t<s$: with $t>s$ it walks *up* in noise, a first-order step of the
# probability-flow ODE run forwards in time. Walking up the sampler's grid from an image gives
# its **DDIM inversion** — a noise that DDIM decodes back to (nearly) the image; editing methods
# start from it. `ddim_walk` applies (1) along any grid; `tasks.ddim_invert` runs it up DDIM's own
# grid (`DEFAULT_GRIDS["ddim"]`), so that `ddim` with its defaults walks back down the same grid.
#
# **Why the round trip is not exact.** Go up one step and come back. Up: $\hat\varepsilon_s=\hat\varepsilon(x_s,s)$.
# Down from $x_t$: $\hat\varepsilon_t=\hat\varepsilon(x_t,t)$, evaluated at the *other* end. Substituting,
# $$x_s'-x_s=\Big(\frac{m_s\sigma_t}{m_t}-\sigma_s\Big)\big(\hat\varepsilon_s-\hat\varepsilon_t\big)
# =m_s\big(e^{-\lambda_t}-e^{-\lambda_s}\big)\big(\hat\varepsilon_s-\hat\varepsilon_t\big). \tag{2}$$
# Both factors are $O(h)$, so each step loses $O(h^2)$ and $N$ steps lose $O(1/N)$: first order,
# zero only where $\hat\varepsilon$ does not change along the path. Check (2) on an exact oracle
# (Gaussian data in 2-D), and the package's step against (1):

# %%
# NBVAL_CHECK_OUTPUT
oracle = GaussianOracle(sde, torch.tensor([0.3, -0.2]), torch.tensor([[0.5, 0.2], [0.2, 0.3]]))
x_s = oracle.sample(6, generator=seeded(4))
for s, t in ((0.01, 0.05), (0.3, 0.35), (0.7, 0.9)):
    cs, ct = coefficients(sde, s), coefficients(sde, t)
    eps_s = oracle(x_s, torch.full((6,), s, dtype=torch.float64))
    x_t = ct.m * (x_s - cs.sigma * eps_s) / cs.m + ct.sigma * eps_s  # (1), upwards
    assert torch.allclose(x_t, ddim_walk(oracle, sde, x_s, [s, t]), rtol=0, atol=1e-12)
    back = ddim_walk(oracle, sde, x_t, [t, s])  # (1), downwards
    eps_t = oracle(x_t, torch.full((6,), t, dtype=torch.float64))
    predicted = cs.m * (math.exp(-ct.lam) - math.exp(-cs.lam)) * (eps_s - eps_t)
    assert torch.allclose(back - x_s, predicted, rtol=0, atol=1e-12)
    print(f"s = {s}, t = {t}: one step up and down moves x by (2) exactly  ok")

# %% [markdown]
# **Round-trip error against steps, exact model.** With the oracle's exact ε̂ there is no model
# error at all: what remains is pure discretisation error. Invert 256 Gaussian samples and
# decode them, for a range of step counts, and fit the order (slope on log-log axes). The same
# table gives the error of the inverted noise against the exact probability-flow map
# `oracle.pf_map`. Last column: an **implicit** inversion step, which solves (1)-downwards for
# $x_t$ — $x_t=\frac{m_t}{m_s}(x_s-\sigma_s\hat\varepsilon(x_t,t))+\sigma_t\hat\varepsilon(x_t,t)$, by
# fixed-point iteration — so that ε̂ is evaluated where the decoder will evaluate it. Its round
# trip is exact up to the iteration's tolerance, at the price of several network calls per step.

# %%
def implicit_invert(eps_model, sde, x, steps, tol=1e-13, max_iter=100):
    """Inversion whose every step is the exact inverse of the DDIM step down (fixed point)."""
    ts = time_grid(sde, steps, kind=DEFAULT_GRIDS["ddim"]).flip(0).tolist()
    for s, t in zip(ts[:-1], ts[1:], strict=True):
        cs, ct = coefficients(sde, s), coefficients(sde, t)
        xt = ddim_walk(eps_model, sde, x, [s, t])  # the explicit step as a start
        for _ in range(max_iter):
            e = eps_model(xt, torch.full((x.shape[0],), t, dtype=x.dtype))
            xt, prev = ct.m / cs.m * (x - cs.sigma * e) + ct.sigma * e, xt
            if (xt - prev).abs().max() < tol:
                break
        x = xt
    return x


x0_o = oracle.sample(256, generator=seeded(5))
exact_latent = oracle.pf_map(x0_o, sde.t_min, 1.0)
rows = []
for steps in ORACLE_STEPS:
    z_inv = tasks.ddim_invert(oracle, sde, x0_o, steps)
    rt = (ddim(oracle, sde, z_inv, steps=steps) - x0_o).norm(dim=1).mean().item()
    lat = (z_inv - exact_latent).norm(dim=1).mean().item()
    imp = (ddim(oracle, sde, implicit_invert(oracle, sde, x0_o, steps), steps=steps) - x0_o).norm(dim=1).mean().item()
    rows.append((steps, rt, lat, imp))
order = -np.polyfit(np.log([r[0] for r in rows]), np.log([r[1] for r in rows]), 1)[0]
order_lat = -np.polyfit(np.log([r[0] for r in rows]), np.log([r[2] for r in rows]), 1)[0]
print(f"{'steps':>6} {'round trip':>11} {'latent vs exact':>16} {'implicit round trip':>20}")
for steps, rt, lat, imp in rows:
    print(f"{steps:6d} {rt:11.2e} {lat:16.2e} {imp:20.1e}")
print(f"fitted order: round trip {order:.2f}, latent {order_lat:.2f}")
assert 0.85 < order < 1.15 and 0.8 < order_lat < 1.2
assert all(r[3] < 1e-9 for r in rows)
print("first order, as (2) predicts; the implicit step closes the round trip  ok")

# %% [markdown]
# **The bundled model.** Invert `N_INV` held-out MNIST digits (the classifier's test split) with
# the unconditional model and decode them, for a few step counts: the per-pixel RMS of the round
# trip, the norm of the inverted noise (against $\sqrt d=28$), and the time.

# %%
x_real, y_real = classifier_data("test")
x_inv = x_real[:N_INV]
inv_rows = []
for steps in INV_STEPS:
    t0 = time.time()
    with torch.no_grad():
        z_inv = tasks.ddim_invert(eps_uncond, sde, x_inv, steps)
        back = ddim(eps_uncond, sde, z_inv, steps=steps)
    rms = ((back - x_inv).flatten(1).norm(dim=1) / math.sqrt(d)).mean().item()
    inv_rows.append((steps, rms, z_inv.flatten(1).norm(dim=1).mean().item(), time.time() - t0))
local = [math.log2(a[1] / b[1]) for a, b in zip(inv_rows[:-1], inv_rows[1:], strict=True)]
print(f"{'steps':>6} {'RMS round trip':>15} {'‖z_inv‖':>8} {'time (s)':>9}")
for steps, rms, zn, sec in inv_rows:
    print(f"{steps:6d} {rms:15.4f} {zn:8.1f} {sec:9.1f}")
print("local order per doubling, log2(error ratio): " + ", ".join(f"{v:.2f}" for v in local))
assert all(a[1] > b[1] for a, b in zip(inv_rows[:-1], inv_rows[1:], strict=True))
assert all(r[2] < 0.75 * math.sqrt(d) for r in inv_rows)
if len(local) > 1:
    assert max(local[1:]) < 1.0  # slower than 1/N once the decode works
print("the round-trip error falls with every doubling of the steps; the inverted noises of real "
      "digits are well inside the shell (‖z‖ < 0.75 √d)  ok")
last_z_inv, last_back = z_inv, back

# %% [markdown]
# On the model the round trip is first order only while the steps are few; from 6 steps on its
# error falls more slowly than the oracle's $1/N$ (the local orders printed above): the network's own
# error, which more steps do not remove, adds to the discretisation error. (At 3 steps the error,
# over 1 per pixel, is a failed decode rather than a small one.)
#
# The inverted noises of *real* digits are far inside the shell (norm well below 28). A clean
# image carries no noise: at $t_\text{end}$ the network's $\hat\varepsilon$ for it is small, while for
# the same image with the $\sigma(t_\text{end})z$ noise of $p_{t_\text{end}}$ added it is of full size;
# the first steps of (1) therefore inject little noise. Images *generated* by DDIM are a different
# matter: inverting the section-1 decodes (on the same grid, `DEC_STEPS` steps) lands much closer
# to the shell than real digits do — though not onto the very noises they came from (the relative
# error below).

# %%
t_end = sde.t_min
c_end = coefficients(sde, t_end)
with torch.no_grad():
    tb = torch.full((N_INV,), t_end)
    e_clean = eps_uncond(x_inv, tb).flatten(1).norm(dim=1).mean().item()
    noised = c_end.m * x_inv + c_end.sigma * torch.randn(x_inv.shape, generator=seeded(6))
    e_noised = eps_uncond(noised, tb).flatten(1).norm(dim=1).mean().item()
    z_rec = tasks.ddim_invert(eps_uncond, sde, dec[:N_PAIRS], DEC_STEPS)  # unclipped decodes of za
print(f"‖ε̂(x, t_end)‖: clean digits {e_clean:.1f}, the same digits noised to σ(t_end) = "
      f"{c_end.sigma:.3f}: {e_noised:.1f}  (√d = {math.sqrt(d):.0f})")
lat_err = ((z_rec - za).flatten(1).norm(dim=1) / za.flatten(1).norm(dim=1)).mean().item()
print(f"generated digits: ‖z_inv‖ = {z_rec.flatten(1).norm(dim=1).mean():.1f} "
      f"(their noises: {za.flatten(1).norm(dim=1).mean():.1f}); relative error of the recovered "
      f"noise {lat_err:.2f}")
assert e_clean < 0.5 * e_noised
assert z_rec.flatten(1).norm(dim=1).mean() > inv_rows[-1][2]
print("real digits' ε̂ is small at t_end; generated digits invert to noises closer to the shell  ok")

# %% [markdown]
# ## 3 · Interpolation at a noise level $t$, and SDEdit
#
# Two ways to start part-way. **SDEdit** (Meng et al. 2022): noise an image to level $t$ with
# the forward marginal and decode from there (the paper decodes with the stochastic reverse SDE;
# here with deterministic DDIM, which makes the edit a function of the image and $z$ — what (3) needs),
# $$x_t=m_t\,x_0+\sigma_t\,z,\qquad \tilde x_0=\mathrm{DDIM}_{t\to t_\text{end}}(x_t).$$
# The **stochastic-encoder interpolation**: encode *both* images $a$, $b$ with the *same* $z$, mix
# the codes, decode. Because the noise parts are equal,
# $$(1-\alpha)(m_ta+\sigma_tz)+\alpha(m_tb+\sigma_tz)=m_t\big((1-\alpha)a+\alpha b\big)+\sigma_tz, \tag{3}$$
# i.e. it *is* SDEdit of the pixel blend with noise $z$ — the same idea twice. The noise part
# keeps its norm (no dip: it is one noise, not a mix of two), and $t$ decides how much of the
# blend survives: at small $t$ the decode is the ghostly double exposure, at $t=1$ ($m_1\approx0.007$)
# it forgets both images. Check (3) with the package and the decoding from level $t$ against
# `ddim` (which starts at $t=1$):

# %%
# NBVAL_CHECK_OUTPUT
a2, b2 = oracle.sample(1, generator=seeded(7)), oracle.sample(1, generator=seeded(8))
z2 = torch.randn(1, 2, generator=seeded(9), dtype=torch.float64)
al = [0.0, 0.3, 0.7, 1.0]
for t in (0.3, 0.6, 1.0):
    ct = coefficients(sde, t)
    assert torch.allclose(noise_to_level(sde, a2, t, z2), ct.m * a2 + ct.sigma * z2, atol=1e-12)
    mix = interpolate_at_level(oracle, sde, a2, b2, al, t, 8, noise=z2)
    blends = torch.cat([(1 - w) * a2 + w * b2 for w in al])
    assert torch.allclose(mix, sdedit(oracle, sde, blends, t, 8, noise=z2.expand(4, 2)), atol=1e-12)
    assert torch.allclose(mix, ddim_decode(oracle, sde, torch.cat(
        [(1 - w) * noise_to_level(sde, a2, t, z2) + w * noise_to_level(sde, b2, t, z2) for w in al]), t, 8), atol=1e-12)
    print(f"t = {t}: encode with one z, mix, decode = SDEdit of the pixel blend (3)  ok")
x1 = torch.randn(5, 2, generator=seeded(10), dtype=torch.float64)
assert torch.allclose(ddim_decode(oracle, sde, x1, 1.0, 12), ddim(oracle, sde, x1, steps=12), atol=1e-12)
print("ddim_decode from t = 1 is the DDIM sampler; from t < 1 it walks time_grid(t_start=t)  ok")

# %% [markdown]
# Now on MNIST: two test digits of different classes, interpolated four ways for `N_FRAMES`
# weights α — the pixel blend (no model), the stochastic encoder at $t=0.3$ and at $t=0.6$
# (`interpolate_at_level`, one noise $z$), and the slerp between their DDIM inversions
# (`GenerativeModel.invert`, `INTERP_STEPS` steps) decoded by DDIM (`GenerativeModel.interpolate`
# with `images=False`; with `images=True` it inverts them itself). The classifier reads
# each frame, and the RMS pixel distance of each path's ends to $a$ and $b$ measures how much a
# level costs the ends. Drag the slider or press ▶ (without a live kernel: a static strip of
# five frames). Look at the middle frames: the pixel blend is a double exposure; the higher the
# level, the more the model redraws the blend as a single stroke pattern. The slerp path's ends are
# the round trips of $a$ and $b$ through `INTERP_STEPS` inversion and decoding steps, so they carry
# section 2's inversion error — in the default run enough, at $b$, that the classifier reads its end
# as another digit (printed).

# %%
ia = 0
ib = next(i for i in range(1, 500) if int(y_real[i]) not in (int(y_real[ia]), 1))  # not a 1: thin
img_a, img_b = x_real[ia:ia + 1], x_real[ib:ib + 1]
w = torch.linspace(0, 1, N_FRAMES)
z_shared = torch.randn(img_a.shape, generator=seeded(11))
t0 = time.time()
with torch.no_grad():
    z_ab = model.invert(torch.cat([img_a, img_b]), steps=INTERP_STEPS)  # both in one batch
    paths = {
        "pixel blend": torch.cat([(1 - v) * img_a + v * img_b for v in w]),
        "level t = 0.3": interpolate_at_level(eps_uncond, sde, img_a, img_b, w, 0.3,
                                              math.ceil(DEC_STEPS * 0.3), noise=z_shared).clamp(-1, 1),
        "level t = 0.6": interpolate_at_level(eps_uncond, sde, img_a, img_b, w, 0.6,
                                              math.ceil(DEC_STEPS * 0.6), noise=z_shared).clamp(-1, 1),
        "slerp of inversions": model.interpolate(z_ab[:1], z_ab[1:], num=N_FRAMES, steps=INTERP_STEPS,
                                                 images=False),
    }
print(f"four paths in {time.time() - t0:.1f} s; a is a {int(y_real[ia])}, b a {int(y_real[ib])}")
print(f"{'path':<22} classifier's label along α = {', '.join(f'{v:.2f}' for v in w)}")
ends = {}
for name, frames in paths.items():
    lab, _ = read(frames)
    ends[name] = [((frames[i] - ref[0]).norm() / math.sqrt(d)).item() for i, ref in ((0, img_a), (-1, img_b))]
    print(f"{name:<22} {' '.join(str(int(v)) for v in lab):<{2 * N_FRAMES}}   "
          f"ends' RMS to a, b: {ends[name][0]:.3f}, {ends[name][1]:.3f}")
assert ends["pixel blend"] == [0.0, 0.0]
assert sum(ends["level t = 0.3"]) < sum(ends["level t = 0.6"])
if not QUICK:  # the default run's slerp end at b is not read as b's class
    assert int(read(paths["slerp of inversions"])[0][-1]) != int(y_real[ib])
print("a higher level moves the ends further from the images themselves  ok")

# %%
panels = {k: [f for f in v] for k, v in paths.items()}
player = FramePlayer(panels, values=w.tolist(), label="α", panel_size=2.4,
                     captions=[f"α = {v:.2f}" for v in w.tolist()])
player.show(animate=False, n_static=5)

# %% [markdown]
# ## 4 · What a trip to level $t$ keeps
#
# SDEdit each of `N_SRC` held-out digits at every level $t$ of `LEVELS`, with one noise $z$ per
# digit for all levels (so the curves differ only by $t$), and measure two things against the
# source: does the classifier read the same label, and how far is the result in pixels (RMS per
# pixel)? Decoding from $t$ takes $\max(2,\lceil$`DEC_STEPS`$\cdot t\rceil)$ DDIM steps.

# %%
x_src = x_real[100:100 + N_SRC]
lab_src, _ = read(x_src)
z_src = torch.randn(x_src.shape, generator=seeded(12))
sweep, edits = [], {}
t0 = time.time()
for t in LEVELS:
    steps = max(2, math.ceil(DEC_STEPS * t - 1e-9))
    with torch.no_grad():
        out = sdedit(eps_uncond, sde, x_src, t, steps, noise=z_src).clamp(-1, 1)
    lab, conf = read(out)
    same = int((lab == lab_src).sum())  # digits whose label survived (a count: exact comparisons)
    agree = same / N_SRC
    dist = ((out - x_src).flatten(1).norm(dim=1) / math.sqrt(d)).mean().item()
    sweep.append((t, steps, agree, dist, conf.mean().item(), same))
    edits[t] = out
print(f"SDEdit sweep: {len(LEVELS)} levels × {N_SRC} digits in {time.time() - t0:.1f} s")
print(f"{'t':>4} {'steps':>5} {'same label':>10} {'RMS to source':>14} {'confidence':>10}")
for t, steps, agree, dist, conf, _ in sweep:
    print(f"{t:4.1f} {steps:5d} {agree:10.2f} {dist:14.3f} {conf:10.2f}")
agrees, dists = [s[2] for s in sweep], [s[3] for s in sweep]
assert all(a < b for a, b in zip(dists[:-1], dists[1:], strict=True))  # distance grows with t
counts = [s[5] for s in sweep]
assert all(b <= a + 1 for a, b in zip(counts[:-1], counts[1:], strict=True))
assert agrees[0] >= 0.75 and agrees[-1] <= 0.35
print("the pixel distance grows with t at every level; the label agreement falls (never rising "
      "by more than one digit) from ≥ 0.75 to near chance at t = 1  ok")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
ax = axes[0]
ax.plot(LEVELS, agrees, "o-", label="fraction with the source's label")
ax.plot(LEVELS, dists, "s-", label="RMS pixel distance to the source")
ax.axhline(0.1, color="grey", ls=":", label="chance for the label (1/10)")
ax.set(xlabel="noise level t", ylabel="fraction / RMS distance", ylim=(0, 1.05),
       title="What SDEdit keeps")
ax.legend(fontsize=8)
show_levels = LEVELS[:: max(1, len(LEVELS) // 5)]
k = min(N_SRC, 6)
rows_img = torch.cat([x_src[:k]] + [edits[t][:k] for t in show_levels])
axes[1].imshow(image_grid(rows_img, nrow=k), interpolation="nearest")
axes[1].set_xticks([])
axes[1].set_yticks(14 + 30 * np.arange(len(show_levels) + 1),
                   ["source"] + [f"t = {t:.1f}" for t in show_levels])
axes[1].set_title("SDEdit of the same digits at rising t")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - Gaussian noise in $d=784$ lies on a shell, $\|z\|=28.0\pm0.7$ (χ distribution). A linear mix
#   of two noises falls inside it (midpoint ≈ 19.8, twelve standard deviations off) and decodes
#   to fainter digits; **slerp** keeps the norm (exactly for equal norms) and its midpoints
#   decode like ordinary samples.
# - **DDIM inversion** is the DDIM step (1) run up the *same* grid the decoder runs down
#   (`ddim_invert` and `ddim` share DDIM's default grid). Its round trip is first order: by (2)
#   each step evaluates ε̂ at the wrong end, with exact scores the error halves with every
#   doubling of the steps, and an implicit step that evaluates ε̂ where the decoder will removes it.
#   Real digits invert to noises well inside the shell, generated ones to noises near it.
# - Encoding two images with the **same** noise to level $t$, mixing and decoding is SDEdit of the
#   pixel blend (3). $t$ is the knob: small $t$ keeps the pixels (and the blend's ghost), large $t$
#   keeps nothing.
# - The SDEdit sweep measures it: the pixel distance to the source grows with $t$, the class
#   survives low levels and is lost towards $t=1$ (table of section 4).
#
# Next: lesson 10's dashboard runs `interpolate` on the bundled models; exercises 09 implement
# slerp, one inversion step, the SDEdit encoder and the norm of a linear mix.

# %%
print(f"lesson run time: {time.time() - T_START:.0f} s wall, {time.process_time():.0f} s CPU (this process)")
