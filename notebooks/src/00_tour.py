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
# # 00 · A tour of diffusion models
#
# A diffusion model makes data by **removing noise**. During training, images are destroyed
# step by step with Gaussian noise, and a network learns to predict the noise that was added.
# To generate, start from pure noise and let the network undo it, a little at a time, until
# an image is left. This notebook shows the whole thing working — in a few seconds on a CPU,
# with a model that ships with the course — before the next ten lessons take it apart.
#
# **Learning goals.** After this notebook you can
# 1. load a bundled model and generate digits, for a chosen class, with and without
#    classifier-free guidance;
# 2. watch the reverse process: the noisy state $x_t$ and the model's current guess of the
#    clean image $\hat x_0$, side by side;
# 3. see on 2-D points, with an *exact* score instead of a network, how noise flows back
#    onto the data;
# 4. find your way around the course.
#
# **Prerequisites.** Python and a first contact with PyTorch tensors. No prior knowledge of
# diffusion models: every formula used here is derived in a later lesson.
#
# Package pieces: `diffusion_lab.model.GenerativeModel`, `diffusion_lab.widgets`,
# `diffusion_lab.oracles`, `diffusion_lab.samplers`, `diffusion_lab.viz`.

# %% [markdown]
# ## What to expect
#
# | | 2-core CPU (measured while other jobs shared it) |
# |---|---|
# | full run (default parameters) | ≈ 60–90 s |
# | `QUICK=True` | ≈ 30–40 s |
# | 30 guided digits, 20 steps | ≈ 15–30 s |
#
# **Good output:** the guided grid shows the digits 0–9 in their columns, clearly readable;
# the classifier agrees on nearly all of them; the unguided digits are mostly readable, some
# malformed. In the player $\hat x_0$ is a blurry blob of the right class by $t\approx0.5$.
# The 2-D samples sit on eight equally populated modes. **Failure signs:** grey noise instead
# of digits means the checkpoint did not load (check the path: notebooks run in
# `notebooks/`); a `ValueError` about labels means a class outside 0–9.

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checked cells print the same either way
PER_CLASS = 3  # guided samples per digit class
STEPS = 20  # DPM-Solver steps (one network evaluation each)
GUIDANCE = 2.0  # classifier-free guidance weight w (1 = plain conditional model)
N_UNGUIDED = 20  # samples without a class
N_POINTS = 2000  # 2-D points in section 4
SEED = 0

# %%
if QUICK:
    PER_CLASS, STEPS, N_UNGUIDED, N_POINTS = 1, 10, 10, 500

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffusion_lab.classifier import load_classifier
from diffusion_lab.model import GenerativeModel
from diffusion_lab.oracles import eight_gaussians_oracle
from diffusion_lab.samplers import dpm_solver
from diffusion_lab.viz import plot_trajectories, scatter_2d, show_images
from diffusion_lab.widgets import TrajectoryRecorder

# One thread: on a small, shared 2-core machine, two threads fighting for the cores
# are slower than one.
torch.set_num_threads(1)

# %% [markdown]
# ## 1 · The course
#
# | # | lesson | what you learn |
# |---|---|---|
# | 00 | **tour** (this notebook) | generate, guide, watch the reverse process |
# | 01 | [forward process](01_forward_process.ipynb) | the DDPM Markov chain; the closed form $q(x_t\mid x_0)$, derived by induction and checked against the chain |
# | 02 | [noise schedules](02_noise_schedules.ipynb) | linear, cosine and your own schedule; $\bar\alpha(t)$, SNR, log-SNR; continuous $\beta(t)$ ↔ discrete $\beta_i$ |
# | 03 | [reverse process and training](03_reverse_process_and_training.ipynb) | the posterior, the ELBO, the simple loss; train a small network on 2-D data; ancestral sampling |
# | 04 | [the U-Net](04_the_unet.ipynb) | time embedding, ResBlocks, attention, skips; shapes layer by layer; train briefly on MNIST, then your own digits in under ten minutes on a CPU |
# | 05 | [scores and SDEs](05_scores_and_sdes.ipynb) | the score, Langevin dynamics, VE/VP/sub-VP SDEs, the reverse SDE and the probability-flow ODE |
# | 06 | [samplers](06_samplers.ipynb) | Euler–Maruyama, predictor–corrector, ODE solvers, exponential integrators, DDIM, DPM-Solver++; error and time vs steps |
# | 07 | [controllable generation](07_controllable_generation.ipynb) | inpainting as conditional sampling (replacement, RePaint, $\hat x_0$-projection, DPS), colorization, super-resolution, classifier-free guidance and its accuracy–diversity trade-off |
# | 08 | [evaluation](08_evaluation.ipynb) | bits/dim via the probability-flow ODE; FID, KID, IS and FID's sample-size bias; precision/recall; memorisation; a VAE baseline |
# | 09 | [interpolation and inversion](09_interpolation_and_inversion.ipynb) | slerp vs linear mixing of noise, DDIM inversion and its round-trip error, SDEdit and interpolation at a noise level |
# | 10 | [dashboard](10_dashboard.ipynb) | an interactive app over everything above, served by Voilà (`make dashboard`) |
# | 11 | [flow matching and rectified flow](11_flow_matching.ipynb) | the straight path $x_t=(1-t)x_0+tz$; conditional flow matching; ε ↔ $\hat x_0$ ↔ score ↔ velocity; a velocity network vs an ε-network; straightness and one reflow step |
# | 12 | [the EDM design space](12_edm_design_space.ipynb) | σ-parameterisation of every process, EDM preconditioning, the Karras grid and the EDM sampler, few-step sampling |
#
# Every lesson derives its formulas, checks each one numerically, and then shows the package
# `diffusion_lab` computing the same thing; you import from it what you have understood.

# %% [markdown]
# <a id="notation"></a>
# ## Notation
#
# One set of symbols for the whole course (every lesson links back here):
#
# | symbol | meaning |
# |---|---|
# | $i = 1..T$ | the **discrete** DDPM step index: $\beta_i$, $\alpha_i = 1-\beta_i$, $\bar\alpha_i = \prod_{j\le i}\alpha_j$ (lessons 01, 03) |
# | $t\in[0,1]$ | **continuous time**; step $i$ sits at $t_i = i/T$; $t = 0$ is data, $t = 1$ noise |
# | $x_0$, $x_t$ | a data point; the noisy state at time $t$ |
# | $m(t)$, $\sigma(t)$ | the marginal $x_t = m\,x_0 + \sigma\,\varepsilon$, $\varepsilon\sim\mathcal N(0,I)$; VP: $m=\sqrt{\bar\alpha(t)}$, $\sigma=\sqrt{1-\bar\alpha(t)}$ |
# | $\beta(t)$, $B(t)$ | the VP rate and its integral $B=\int_0^t\beta$, $\bar\alpha(t) = e^{-B(t)}$ (lesson 02) |
# | $\lambda(t)$ | the log-SNR $\log(m^2/\sigma^2)$ (`log_snr`); `half_log_snr` $=\lambda/2=\log(m/\sigma)$ |
# | $f(t)$, $g(t)$ | the SDE $\mathrm dx = f\,x\,\mathrm dt + g\,\mathrm dw$ (lesson 05) |
# | $\hat\varepsilon$, $\hat x_0$, $s$, $v$ | the network's noise, clean-data, score and $v$ predictions; $s = -\hat\varepsilon/\sigma$, $\hat x_0 = (x_t - \sigma\hat\varepsilon)/m$ (Tweedie, lesson 03 §5) |
# | NFE | network function evaluations, the cost of a sampler (lesson 06) |
#
# **Where the DDPM betas sample the rate** (said once, used in 01 and 02): the original
# `linspace(1e-4, 0.02, T)` is $\beta_i = \beta(s_i)/T$ at $s_i = (i-1)/(T-1)$ for the linear
# rate $\beta(s) = 0.1 + 19.9\,s$; the package's `discrete_betas` instead takes
# $\beta_i = 1-\bar\alpha(i/T)/\bar\alpha((i-1)/T)$, so that $\bar\alpha_i = \bar\alpha(t_i)$ exactly.

# %% [markdown]
# ## 2 · Load a bundled model
#
# `data/checkpoints/mnist_cond` holds a class-conditional U-Net trained for 9000 steps on
# MNIST digits (a few minutes on one GPU). A checkpoint is a folder with the weights
# (safetensors) and a JSON description: nothing is unpickled or executed when loading it.

# %%
# NBVAL_CHECK_OUTPUT
model = GenerativeModel.load("../data/checkpoints/mnist_cond")
print(f"network:       {type(model.net).__name__}, {model.num_parameters():,} parameters")
print(f"forward SDE:   {model.sde!r}")
print(f"data shape:    {model.data_shape} (one channel, 28×28 pixels, values in [-1, 1])")
print(f"classes:       {model.num_classes} ({', '.join(model.class_names)})")
print(f"trained for:   {model.info['steps']} steps, batch {model.info['batch_size']}, "
      f"label dropout {model.info['label_dropout']}")

# %% [markdown]
# The network $\hat\varepsilon(x_t, t, y)$ sees a noisy image $x_t = m(t)\,x_0 + \sigma(t)\,z$,
# the time $t\in[0,1]$ and a label $y$ (or "no label"), and predicts the noise $z$. The
# **forward SDE** (a VP SDE with a linear rate from 0.1 to 20, lessons 02 and 05) fixes
# $m(t)$ and $\sigma(t)$: at $t=1$ nothing of the image is left.
#
# ## 3 · Generate
#
# `model.generate` draws noise $x_1\sim\mathcal N(0, I)$ and runs a **sampler** back to
# $t\approx 0$. The default, DPM-Solver++ (lesson 06), needs only about 20 network calls.
#
# **Classifier-free guidance** (lesson 07). The network was trained to predict the noise both
# with the label ($\hat\varepsilon_y$) and, 10% of the time, without it ($\hat\varepsilon_\varnothing$).
# Sampling with
# $$\tilde\varepsilon = \hat\varepsilon_\varnothing + w\,(\hat\varepsilon_y - \hat\varepsilon_\varnothing)$$
# and $w>1$ pushes each sample further towards "looks like class $y$" ($w=1$: the plain
# conditional model, $w=0$: unconditional). It costs two network passes per step.
#
# Below: each column one digit class, guidance $w=2$, 20 DPM-Solver steps. A
# `TrajectoryRecorder` passed as the sampler's `callback` keeps the intermediate states of the
# first nine digits for section 3.1.

# %%
labels = torch.arange(10).repeat(PER_CLASS)  # 0, 1, ..., 9, 0, 1, ...: one column per class
recorder = TrajectoryRecorder(max_items=9)  # keep the digits 0-8 of the first row
start = time.perf_counter()
digits = model.generate(len(labels), method="dpm_solver", steps=STEPS, seed=SEED, labels=labels,
                        guidance=GUIDANCE, callback=recorder)
seconds = time.perf_counter() - start
print(f"{len(labels)} guided samples, {STEPS} steps (2 network passes each): {seconds:.1f} s")

fig, ax = plt.subplots(figsize=(9, 1.0 * PER_CLASS + 0.9))
show_images(digits, ax=ax, nrow=10, title=f"class-conditional, guidance w = {GUIDANCE}, "
            f"{STEPS} DPM-Solver++ steps")
ax.set_xticks(np.arange(10) * 30 + 16, [str(k) for k in range(10)])
ax.set_xlabel("requested digit (one column per class)")
plt.show()

# %% [markdown]
# And without a label (the "null" class, one network pass per step): the model picks the
# digit itself. These are usually a little less clean — guidance trades diversity for
# fidelity.

# %%
start = time.perf_counter()
free = model.generate(N_UNGUIDED, method="dpm_solver", steps=STEPS, seed=SEED + 1)
seconds = time.perf_counter() - start
print(f"{N_UNGUIDED} unguided samples, {STEPS} steps: {seconds:.1f} s")
fig, ax = plt.subplots(figsize=(9, 0.9 * ((N_UNGUIDED + 9) // 10) + 0.8))
show_images(free, ax=ax, nrow=10, title=f"unconditional (no label), {STEPS} DPM-Solver++ steps")
plt.show()

# %% [markdown]
# A small CNN classifier ships with the course as well (it is the feature network of the
# metrics in lesson 08). How often does it read the digit we asked for?

# %%
classifier = load_classifier("../data/checkpoints/mnist_classifier")
with torch.no_grad():
    guided_pred = classifier(digits).argmax(1)
    free_pred = classifier(free).argmax(1)
print(f"guided samples read as the requested digit: {(guided_pred == labels).float().mean():.0%}")
print(f"unguided samples, digits the classifier reads: {sorted(free_pred.tolist())}")

# %% [markdown]
# Three facts worth checking, because everything later relies on them: the output has the
# data's shape, lies in $[-1, 1]$, and the same seed gives **bitwise the same** samples (all
# randomness comes from one seeded `torch.Generator`); a different seed gives different ones.

# %%
# NBVAL_CHECK_OUTPUT
a = model.generate(4, steps=5, seed=123, labels=[3, 1, 4, 1], guidance=GUIDANCE)
b = model.generate(4, steps=5, seed=123, labels=[3, 1, 4, 1], guidance=GUIDANCE)
c = model.generate(4, steps=5, seed=124, labels=[3, 1, 4, 1], guidance=GUIDANCE)
print(f"shape {tuple(a.shape)}, dtype {a.dtype}")
print(f"all values in [-1, 1]: {bool(a.min() >= -1 and a.max() <= 1)}")
print(f"same seed, bitwise equal: {torch.equal(a, b)}")
print(f"different seed, different samples: {not torch.equal(a, c)}")

# %% [markdown]
# ### 3.1 · Watch the reverse process
#
# At every step the sampler holds a noisy state $x_t$; from it the network's noise estimate
# gives a **guess of the final image**, $\hat x_0 = (x_t - \sigma(t)\,\hat\varepsilon)/m(t)$
# (lesson 03). Early on $\hat x_0$ is a blurry average of all digits of the class; the coarse
# shape is fixed long before the noise is gone, and the last steps only add detail.
#
# Press ▶ or drag the slider. Without a live kernel (on GitHub, or in CI) you see a static
# strip of frames and an animated GIF instead.

# %%
player = recorder.player(panel_size=4.2)
player.show()

# %% [markdown]
# ## 4 · The same idea in two dimensions, with an exact answer
#
# Images have 784 dimensions; points in the plane have two, and for a mixture of Gaussians the
# quantity the network learns has a closed form (`diffusion_lab.oracles`, lesson 05). Here the
# data are **eight Gaussians on a circle**. The top row noises them forward: by $t=1$ they are
# a shapeless Gaussian cloud. The bottom row runs the same sampler (DPM-Solver++), with the exact
# noise predictor in place of a network, from fresh noise back to $t\approx0$. The columns are
# **equally spaced in the log-SNR** $\lambda$ (not in $t$: in $t$, most of the change happens
# in a short stretch and neighbouring panels look alike); the sampler's own steps are.

# %%
sde = model.sde  # the same VP SDE as the MNIST model
oracle = eight_gaussians_oracle(sde, radius=2.0, std=0.1)
g = torch.Generator().manual_seed(SEED)
data = oracle.sample(N_POINTS, generator=g)  # [N, 2], float64
x1 = sde.prior_sample((N_POINTS, 2), generator=g, dtype=torch.float64)  # the noise we start from
path = TrajectoryRecorder()
# DPM-Solver++ again, on time steps equally spaced in log-SNR (lesson 06 shows why that matters)
points = dpm_solver(oracle, sde, x1, steps=20, grid="logsnr", callback=path)
states = [x1] + path.x
times = np.array([1.0] + path.times)

# the 20 log-SNR steps: states 20, 16, ..., 0 are equally spaced in λ, from t_min to t = 1
show_k = [20, 16, 12, 8, 4, 0]
lam = sde.log_snr(torch.tensor(times[show_k]))
# (the recorder keeps t as the sampler passed it, in float32: equal to ~1e-8)
assert torch.allclose(torch.diff(lam), torch.diff(lam)[0].expand(5), rtol=1e-6)
fig, axes = plt.subplots(2, 6, figsize=(16.8, 6))
for col, k in enumerate(show_k):
    t = float(times[k])
    noisy = sde.marginal_sample(data, t, generator=g)[0]
    scatter_2d(noisy, ax=axes[0, col], lim=3.2, title=f"forward: t = {t:.3f}, λ = {lam[col]:.1f}")
    scatter_2d(states[k], ax=axes[1, col], lim=3.2, title=f"reverse: t = {t:.3f}", color="C3")
fig.suptitle("top: data → noise (forward);  bottom: noise → data (reverse: read right to left)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Each point follows its own path. With the deterministic sampler used here (it solves the
# probability-flow ODE, lesson 05) a starting point determines its end point: the plane of
# noise is carved into eight regions, one per mode.

# %%
traj = torch.stack(states)  # [steps + 1, N, 2]
fig, ax = plt.subplots(figsize=(5, 5))
plot_trajectories(traj, ax=ax, n_paths=40, lim=3.2, title="40 paths from noise (○) to data (●)")
ax.scatter(*oracle.means.T, marker="x", color="k", s=40, label="mode centres")
ax.legend(loc="upper right", fontsize="small")
plt.show()

# %% [markdown]
# Did the sampler really recover the data distribution? Each of the eight modes should get
# one eighth of the points, and every point should lie close to a mode (within 5 standard
# deviations of its centre).

# %%
# NBVAL_CHECK_OUTPUT
dist = torch.cdist(points, oracle.means)  # [N, 8]
nearest = dist.argmin(1)
share = torch.bincount(nearest, minlength=8).double() / N_POINTS
close = (dist.min(1).values < 5 * 0.1).double().mean().item()
# multinomial counts: standard error of a share is sqrt(p(1-p)/N); allow 5 of them
tol = 5 * (1 / 8 * 7 / 8 / N_POINTS) ** 0.5
print(f"all 8 modes populated: {bool((share > 0).all())}")
print(f"every share within 5 standard errors of 1/8: {bool(((share - 1 / 8).abs() < tol).all())}")
print(f"at least 99% of points within 5σ of a mode centre: {close >= 0.99}")

# %% [markdown]
# ## Summary
#
# - A diffusion model is a noise predictor $\hat\varepsilon(x_t, t, y)$ plus a forward SDE;
#   a sampler runs the noising backwards, here in 20 network calls.
# - Class labels condition the model; classifier-free guidance $w>1$ makes the class more
#   pronounced at twice the cost per step.
# - Generation is reproducible: one seed, bitwise the same images.
# - The model's guess $\hat x_0$ settles the coarse shape early; the last steps add detail.
# - On 2-D mixtures the exact noise predictor is known, and the same sampler carries noise
#   back onto the eight modes with the right weights — the ground truth the later lessons
#   test everything against.
#
# **Next:** 01 builds the forward process from scratch.
