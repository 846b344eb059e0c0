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
# # 10 · The dashboard
#
# One app over the whole course: pick a bundled model, a task and a sampler, press
# **generate**, and watch the reverse process run — the noisy state $x_t$ and the model's
# current estimate of the clean image $\hat x_0$, live, step by step. Nothing here is new
# mathematics; every control is something an earlier lesson derived.
#
# **Two ways to open it.** Run this notebook in JupyterLab (the app appears below), or serve
# it as a web page without code cells: `make dashboard` (Voilà on
# http://127.0.0.1:8866/, `PORT=...` to change the port). Without a kernel — on a website,
# in a viewer — you see the static picture of the app stored below.
#
# **What it offers**
#
# | task | what it does | lesson |
# |---|---|---|
# | generate | $n$ samples; on `mnist_cond` a class $y$ and guidance $w$ | 00, 06, 07 |
# | inpaint | fill a preset mask (halves, centre square, random pixels) of $n$ source images | 07 |
# | colorize | RGB images whose luminance is that of the grey sources (`colour_mnist` only) | 07 |
# | super-resolve | images whose $f\times f$ average pooling equals the pooled sources | 07 |
# | interpolate | frames along the slerp between the prior noises of seeds $a$ and $b$, decoded by DDIM | 09 |
# | compare | the same seed through several samplers, side by side, with NFE and wall time | 06 |
#
# The sources of inpaint / colorize / super-resolve are samples of the same model (seed 1000,
# 10 DPM-Solver steps), shown next to the result. The 2-D toy models draw their samples
# (blue) over the training data (grey).
#
# **Notation.** $x_t$: the state at time $t\in[0,1]$ ($t=1$ pure noise);
# $\hat x_0 = (x_t - \sigma(t)\,\hat\varepsilon)/m(t)$: the clean image the network predicts
# from it; NFE: number of network evaluations (guidance $w\neq1$ doubles the batch, not the
# NFE); $w$: classifier-free guidance weight ($w=1$ is the plain conditional model).
#
# Package pieces: `diffusion_lab.dashboard` (`runs`: the computation, `render`: PNGs,
# `app`: the widgets, `launch`: a Voilà server for tests).

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checked cells print the same either way
STEPS = 10  # sampler steps in the scripted run of section 2
SEED = 0

# %%
if QUICK:
    STEPS = 4

# %%
from pathlib import Path

import torch
from IPython.display import Image, display

from diffusion_lab.dashboard import TASKS, Dashboard, Request, check
from diffusion_lab.widgets import is_headless

torch.set_num_threads(1)  # a small shared CPU: one thread is the faster choice
CHECKPOINTS = Path("../data/checkpoints")

# %% [markdown]
# ## 1 · The app
#
# What to expect on a 2-core CPU (measured in headless Chromium, 4 steps, 4 images): about
# 1 s from the click to the picture for generate, inpaint, colorize, super-resolve and a
# three-sampler compare; 0.2–0.4 s for the 2-D toys and for interpolation, which shows no
# live preview (DDIM decodes all frames in one call). The stored picture below is the app
# after such a compare run (DDIM, DPM-Solver++, EDM, one row each), taken by
# `tests/test_dashboard_browser.py`.

# %%
dash = Dashboard(CHECKPOINTS)
if is_headless():  # no live kernel behind this page: show what the app looks like
    display(Image(filename="figures/10_dashboard.png", width=900))
else:
    display(dash.widget)

# %% [markdown]
# ## 2 · What the button does, in code
#
# The button reads the controls into a `Request`, checks it against the model's catalog card
# (one function, `check`, holds every rule about combinations) and runs it with a sampler
# callback that redraws $x_t$ and $\hat x_0$. The same path, without the widgets:

# %%
# NBVAL_CHECK_OUTPUT
print("models:", ", ".join(f"{name} {list(card.data_shape)}" for name, card in dash.cards.items()))
print("tasks: ", ", ".join(TASKS))
for task, model in [("colorize", "mnist_cond"), ("inpaint", "toy_two_moons")]:
    try:
        check(dash.cards[model], Request(model=model, task=task))
    except ValueError as exc:
        print(f"{task} on {model}: {exc}")

# %%
result = dash.run(Request(model="mnist_cond", task="generate", steps=STEPS, seed=SEED, n=4,
                          label=7, guidance=2.0))
print(f"{result.samples.shape[0]} sevens, {STEPS} steps, NFE {result.nfe}, "
      f"{result.seconds:.1f} s")
display(Image(data=dash.output.value))

# %% [markdown]
# A request that does not fit is explained where the result would be, and the app keeps
# working:

# %%
# NBVAL_CHECK_OUTPUT
assert dash.run(Request(model="mnist_cond", task="colorize")) is None
print(dash.last_error)

# %% [markdown]
# ## Summary
#
# - Every capability of the package is one `Request` away; the dashboard is a thin layer of
#   widgets over `diffusion_lab.dashboard.runs.run`.
# - The live $\hat x_0$ shows what lesson 06 measured: the image is decided early (large
#   $t$) in outline and late in detail; fewer steps mean coarser jumps between previews.
# - `make dashboard` serves this notebook as an app; the browser tests
#   (`tests/test_dashboard_browser.py`) click every task in headless Chromium.
