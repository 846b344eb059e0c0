r"""Checkers for the exercises of lessons 01–06 (``exercises/NN_topic.ipynb``).

Each ``check_<name>(fn)`` calls the learner's function on seeded random inputs,
compares the result with the package (or a closed form / an exact oracle) and
prints one line:

    ✓ q_sample matches the closed form on 5 random cases
    ✗ q_sample: a square root is missing: you used ᾱ where √ᾱ belongs (variance vs std)
    … q_sample: not implemented yet: hint: x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε

and returns ``True`` (pass) or ``False``. A checker never raises because of the
learner's code: an exception inside ``fn`` is reported in one line. Wrong
answers are *diagnosed* by computing the typical mistakes (a dropped square
root, a flipped sign, a factor of 2, β instead of ᾱ, …) and seeing whether the
learner's result equals one of them.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .ddpm import DiscreteDDPM
from .nets.blocks import ResBlock
from .nets.embeddings import SinusoidalTimeEmbedding
from .oracles import GaussianMixtureOracle, GaussianOracle
from .samplers import langevin_corrector_step
from .schedules import CosineSchedule, LinearSchedule, Schedule
from .sde import VPSDE, SubVPSDE

__all__ = [
    "check_alpha_bars", "check_q_sample", "check_forward_step",
    "check_linear_integral", "check_cosine_integral", "check_discrete_betas",
    "check_custom_schedule",
    "check_posterior", "check_predict_x0", "check_ancestral_mean", "check_gaussian_kl",
    "check_time_embedding", "check_resblock_params", "check_attention",
    "check_gaussian_score", "check_vp_marginal", "check_reverse_em_step",
    "check_pf_drift", "check_langevin_step",
    "check_ddim_step", "check_dpm_solver_pp1_step", "check_dpm_solver_2m",
    "check_corrector_step_size",
]

PASS, FAIL, TODO = "✓", "✗", "…"
F64 = torch.float64


# -- machinery ----------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised inside a checker to end it; the message has already been printed."""


def _say(mark: str, name: str, text: str) -> None:
    print(f"{mark} {name}{'' if text.startswith(' ') else ': '}{text}", flush=True)


def checker(name: str):
    """Decorator: validate ``fn``, turn :class:`_Stop` into ``False``, print nothing twice."""

    def wrap(body):
        @functools.wraps(body)
        def run(fn, *args, **kwargs) -> bool:
            if not callable(fn):
                _say(FAIL, name, f"expected a function (or class), got {type(fn).__name__}")
                return False
            try:
                return bool(body(fn, *args, **kwargs))
            except _Stop:
                return False

        return run

    return wrap


def _call(name: str, fn, *args, **kwargs):
    """Call the learner's ``fn``; report NotImplementedError / other errors in one line."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        hint = str(err) or "replace the `raise NotImplementedError` line with your code"
        _say(TODO, name, f"not implemented yet: {hint}")
        raise _Stop from None
    except Exception as err:  # noqa: BLE001 - the learner's bug, reported in one line
        hint = ""
        if isinstance(err, RuntimeError) and "must match the size" in str(err):
            hint = (" (a broadcasting slip? a per-sample coefficient of shape [B] must be "
                    "reshaped to [B, 1, ...] before it multiplies x of shape [B, ...])")
        _say(FAIL, name, f"your function raised {type(err).__name__}: {err}{hint}")
        raise _Stop from None


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _as_result(name: str, got, what: str = "the result") -> Tensor:
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        got = torch.tensor(float(got), dtype=F64)
    if got is None:
        _say(FAIL, name, f"{what} is None: did you forget the `return`?")
        raise _Stop
    if not isinstance(got, Tensor):
        _say(FAIL, name, f"{what} must be a torch.Tensor, got {type(got).__name__}")
        raise _Stop
    if got.is_complex() or not got.is_floating_point():
        _say(FAIL, name, f"{what} must be a float tensor, got dtype {got.dtype}")
        raise _Stop
    return got.detach().to(F64)


def _generic_variants(want: Tensor) -> dict[str, Tensor]:
    """Mistakes that can happen anywhere: a flipped sign, a factor 2, a missing (or extra)
    square root."""
    out = {
        "the sign is flipped": -want,
        "off by a factor of 2 (yours is twice the expected value)": 2 * want,
        "off by a factor of 2 (yours is half the expected value)": 0.5 * want,
    }
    if bool((want >= 0).all()):
        out["a square root is missing (variance where a standard deviation belongs?)"] = want**2
        out["an extra square root (standard deviation where a variance belongs?)"] = want.sqrt()
    return out


def _compare(name: str, got, want: Tensor, wrong: dict[str, Tensor] | None = None, *,
             ok: str, what: str = "the result", rtol: float = 1e-6, atol: float = 1e-9,
             report: bool = True) -> bool:
    """Compare one output with the expected tensor; on a mismatch, name the first
    known wrong variant it equals, else print the size and place of the error."""
    got = _as_result(name, got, what)
    want = want.to(F64)
    if got.shape != want.shape:
        hint = ""
        if got.numel() == want.numel():
            hint = " (same number of elements: reshape, or a broadcasting slip?)"
        elif got.dim() > want.dim():
            hint = " (a broadcasting slip: a [B] coefficient must be reshaped to [B, 1, ...])"
        _say(FAIL, name, f"{what} has shape {list(got.shape)}, expected {list(want.shape)}{hint}")
        raise _Stop
    if not bool(torch.isfinite(got).all()):
        _say(FAIL, name, f"{what} contains NaN or inf (a division by zero, log or sqrt of "
                         "a negative number?)")
        raise _Stop
    if _close(got, want, rtol, atol):
        if report:
            _say(PASS, name, ok)
        return True
    for text, variant in {**(wrong or {}), **_generic_variants(want)}.items():
        variant = variant.to(F64)
        if variant.shape == got.shape and bool(torch.isfinite(variant).all()) \
                and not _close(variant, want, rtol, atol) and _close(got, variant, rtol, atol):
            _say(FAIL, name, f"{what} is wrong: {text}")
            raise _Stop
    if _close(got, want, 1e-4, 1e-6):
        _say(FAIL, name, f"{what} is close, but not to float64 precision: did you compute in "
                         "float32 (use dtype=torch.float64), or use an approximation?")
        raise _Stop
    err = (got - want).abs()
    k = int(err.reshape(-1).argmax())
    _say(FAIL, name, f"{what} does not match: max |yours − expected| = {float(err.max()):.3g} "
                     f"(e.g. expected {float(want.reshape(-1)[k]):.6g}, "
                     f"got {float(got.reshape(-1)[k]):.6g})")
    raise _Stop


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape, g) -> Tensor:
    return torch.randn(shape, generator=g, dtype=F64)


def _uniform(n: int, lo: float, hi: float, g) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)


def _view(c: Tensor, x: Tensor) -> Tensor:
    return c.reshape(-1, *([1] * (x.dim() - 1)))


# ================================================================================ lesson 01
@checker("alpha_bars")
def check_alpha_bars(fn) -> bool:
    """``fn(betas [T]) -> [T + 1]``: ᾱ_0 = 1, ᾱ_i = ∏_{j≤i} (1 − β_j)."""
    name = "alpha_bars"
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    want = torch.cat([torch.ones(1, dtype=F64), torch.cumprod(1 - betas, 0)])
    got = _as_result(name, _call(name, fn, betas.clone()))
    if got.shape == (1000,):
        if _close(got, want[1:], 1e-9, 1e-12):
            _say(FAIL, name, "ᾱ_0 = 1 is missing: return T + 1 values, ᾱ_0 .. ᾱ_T")
            raise _Stop
        _say(FAIL, name, "return T + 1 values ᾱ_0 .. ᾱ_T (with ᾱ_0 = 1), you returned T")
        raise _Stop
    wrong = {
        "used β where α = 1 − β belongs (∏ β_j instead of ∏ (1 − β_j))":
            torch.cat([torch.ones(1, dtype=F64), torch.cumprod(betas, 0)]),
        "a sum where a product belongs (cumsum instead of cumprod)":
            torch.cat([torch.ones(1, dtype=F64), torch.cumsum(1 - betas, 0)]),
        "the product is shifted by one step (ᾱ_i must include β_i)":
            torch.cat([torch.ones(2, dtype=F64), torch.cumprod(1 - betas, 0)[:-1]]),
    }
    return _compare(name, got, want, wrong, rtol=1e-9, atol=1e-12,
                    ok="matches DiscreteDDPM.linear().alpha_bars for T = 1000")


@checker("q_sample")
def check_q_sample(fn) -> bool:
    """``fn(x0 [B, ...], alpha_bar [B], noise) -> x_i = √ᾱ x_0 + √(1 − ᾱ) ε``."""

    name = "q_sample"
    ddpm = DiscreteDDPM.linear()
    g = _gen(1)
    i = torch.tensor([1, 10, 250, 600, 1000])
    x0, noise = _randn((5, 2, 3), g), _randn((5, 2, 3), g)
    ab = ddpm.alpha_bars[i]
    want = ddpm.q_sample(x0, i, noise)[0]
    got = _call(name, fn, x0.clone(), ab.clone(), noise.clone())
    a = _view(ab, x0)
    wrong = {
        "a square root is missing: use √ᾱ and √(1 − ᾱ), the standard deviations, "
        "not the variances ᾱ and 1 − ᾱ": a * x0 + (1 - a) * noise,
        "√ᾱ and √(1 − ᾱ) are swapped": (1 - a).sqrt() * x0 + a.sqrt() * noise,
        "the noise term needs √(1 − ᾱ), not 1 − √ᾱ": a.sqrt() * x0 + (1 - a.sqrt()) * noise,
        "the noise term is missing": a.sqrt() * x0,
    }
    return _compare(name, got, want, wrong, ok="matches the closed form (and "
                    "DiscreteDDPM.q_sample) on 5 random cases")


@checker("forward_step")
def check_forward_step(fn, n_paths: int = 4000) -> bool:
    """``fn(x_prev, beta, z) -> √(1 − β) x_prev + √β z``; then the iterated chain of
    1000 such steps must match the closed form q(x_T | x_0) in mean and variance."""
    name = "forward_step"
    g = _gen(2)
    x, z = _randn((4, 3), g), _randn((4, 3), g)
    beta = torch.tensor(0.3, dtype=F64)
    want = torch.sqrt(1 - beta) * x + torch.sqrt(beta) * z
    wrong = {
        "the shrink factor √(1 − β) is missing, so the variance grows by β at every step":
            x + beta.sqrt() * z,
        "square roots are missing: the coefficients are standard deviations √(1 − β), √β":
            (1 - beta) * x + beta * z,
        "β and 1 − β are swapped": beta.sqrt() * x + (1 - beta).sqrt() * z,
    }
    _compare(name, _call(name, fn, x.clone(), beta.clone(), z.clone()), want, wrong,
             ok="", report=False)
    # iterate the learner's step 1000 times: statistics must match the closed form
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    x0 = torch.tensor([1.0, -0.5], dtype=F64)
    xs = x0.expand(n_paths, 2).clone()
    checkpoints = {10: None, 100: None, 1000: None}
    for k in range(1, 1001):
        xs = _as_result(name, _call(name, fn, xs, betas[k - 1], _randn(xs.shape, g)))
        if k in checkpoints:
            checkpoints[k] = xs
    ab = torch.cumprod(1 - betas, 0)
    for k, xk in checkpoints.items():
        a = ab[k - 1]
        mean_err = (xk.mean(0) - a.sqrt() * x0).abs().max()
        var_err = (xk.var(0) - (1 - a)).abs().max()
        if mean_err > 5 * math.sqrt((1 - a) / n_paths) or \
                var_err > 5 * (1 - a) * math.sqrt(2 / n_paths):
            _say(FAIL, name, f"one step is right but after {k} steps the chain's mean/variance "
                             f"{xk.mean(0).tolist()} / {xk.var(0).tolist()} differ from the closed "
                             f"form {(a.sqrt() * x0).tolist()} / {float(1 - a):.4f} by more than "
                             "5 standard errors")
            raise _Stop
    _say(PASS, name, f"is exact on a random case, and {n_paths} paths of 1000 iterated steps "
                     "match N(√ᾱ_i x_0, (1 − ᾱ_i) I) at i = 10, 100, 1000 (5 standard errors)")
    return True


# ================================================================================ lesson 02
@checker("linear_integral")
def check_linear_integral(fn) -> bool:
    """``fn(t, beta_min, beta_max) -> B(t) = β_min t + ½ t² (β_max − β_min)``."""

    name = "linear_integral"
    t = _uniform(6, 0.0, 1.0, _gen(3))
    sched = LinearSchedule(0.1, 20.0)
    want = sched.integral(t)
    wrong = {
        "you returned the rate β(t), not its integral B(t) = ∫_0^t β": sched.beta(t),
        "the ½ of ∫ s ds = ½ t² is missing": 0.1 * t + t**2 * 19.9,
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t)": torch.exp(-want),
    }
    return _compare(name, _call(name, fn, t.clone(), 0.1, 20.0), want, wrong,
                    ok="matches LinearSchedule.integral on 6 random times")


@checker("cosine_integral")
def check_cosine_integral(fn) -> bool:
    """``fn(t, s) -> B(t) = −log(cos² θ(t) / cos² θ(0))``, θ(t) = (t + s)/(1 + s) · π/2
    (the unclipped cosine schedule, ᾱ = exp(−B))."""

    name = "cosine_integral"
    s = 0.008
    t = torch.cat([torch.zeros(1, dtype=F64), _uniform(6, 0.0, 0.98, _gen(4))])
    want = CosineSchedule(s, beta_max=None).integral(t)
    theta = (t + s) / (1 + s) * math.pi / 2
    theta0 = s / (1 + s) * math.pi / 2
    wrong = {
        "ᾱ(0) must be 1 (B(0) = 0): divide f(t) = cos² θ(t) by f(0)":
            -2 * torch.log(torch.cos(theta)),
        "the square is missing: f(t) = cos² θ(t), so B = −2 log(cos θ(t)/cos θ(0))":
            -torch.log(torch.cos(theta) / math.cos(theta0)),
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t) = −log ᾱ(t)": torch.exp(-want),
        "θ(t) must be (t + s)/(1 + s) · π/2; the π/2 is missing":
            -2 * torch.log(torch.cos((t + s) / (1 + s)) / math.cos(s / (1 + s))),
    }
    return _compare(name, _call(name, fn, t.clone(), s), want, wrong,
                    ok="matches CosineSchedule(beta_max=None).integral on 7 times, t = 0 included")


@checker("discrete_betas")
def check_discrete_betas(fn) -> bool:
    """``fn(schedule, T) -> [T]``: β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T), ᾱ = exp(−schedule.integral(t))."""

    name = "discrete_betas"
    for sched, T in ((LinearSchedule(0.1, 20.0), 1000), (CosineSchedule(), 50)):
        want = sched.discrete_betas(T)
        grid = torch.linspace(0, 1, T + 1, dtype=F64)
        ab = sched.alpha_bar(grid)
        wrong = {
            "this is the Riemann approximation β(t_i)/T; the exact betas are "
            "1 − ᾱ(i/T)/ᾱ((i−1)/T), so that ∏ (1 − β_j) = ᾱ(i/T)": sched.beta(grid[1:]) / T,
            "the ratio is upside down: ᾱ(i/T)/ᾱ((i−1)/T) ≤ 1 is α_i, β_i = 1 − α_i":
                1 - ab[:-1] / ab[1:],
            "you returned α_i = ᾱ(i/T)/ᾱ((i−1)/T), not β_i = 1 − α_i": ab[1:] / ab[:-1],
            "the grid is shifted: β_i uses t = i/T and (i−1)/T, for i = 1..T":
                torch.cat([1 - ab[1:2] / ab[:1], 1 - ab[1:-1] / ab[:-2]]),
        }
        got = _call(name, fn, sched, T)
        _compare(name, got, want, wrong, rtol=1e-7, atol=1e-10, ok="", report=False,
                 what=f"β_i for {sched!r}, T={T},")
    _say(PASS, name, "match Schedule.discrete_betas for the linear (T=1000) and cosine "
                     "(T=50) schedules")
    return True


@checker("custom_schedule")
def check_custom_schedule(cls) -> bool:
    """``cls(beta_min, beta_max)``, a :class:`~diffusion_lab.schedules.Schedule` subclass with
    the geometric rate β(t) = β_min (β_max/β_min)^t and its closed-form integral
    B(t) = β_min ((β_max/β_min)^t − 1)/log(β_max/β_min)."""

    name = "custom_schedule"
    if not (isinstance(cls, type) and issubclass(cls, Schedule)):
        _say(FAIL, name, f"pass the class itself, a subclass of diffusion_lab.schedules.Schedule "
                         f"(got {cls!r})")
        return False
    lo, hi = 0.1, 20.0
    sched = _call(name, cls, lo, hi)
    t = torch.cat([torch.zeros(1, dtype=F64), _uniform(5, 0.0, 1.0, _gen(5)),
                   torch.ones(1, dtype=F64)])
    r = hi / lo
    want_beta = lo * r**t
    _compare(name, _call(name, sched.beta, t.clone()), want_beta, {
        "the rate must grow from β_min at t = 0 to β_max at t = 1: β_min (β_max/β_min)^t":
            hi * (lo / hi) ** t,
    }, what="beta(t)", ok="", report=False)
    want_int = lo * (r**t - 1) / math.log(r)
    quad = Schedule.integral(sched, t)  # the base class's quadrature of *your* beta
    _compare(name, _call(name, sched.integral, t.clone()), want_int, {
        "the − 1 is missing: B(0) must be 0": lo * r**t / math.log(r),
        "divide by log(β_max/β_min), the derivative of r^t is r^t log r":
            lo * (r**t - 1) * math.log(r),
        "you returned ᾱ(t) = exp(−B(t)) rather than B(t)": torch.exp(-want_int),
        "you returned the rate β(t), not its integral": want_beta,
    }, what="integral(t)", ok="", report=False)
    if not _close(quad, want_int, 1e-8, 1e-10):
        _say(FAIL, name, "integral(t) is right but does not match quadrature of beta(t)")
        raise _Stop
    _say(PASS, name, "beta(t) is the geometric rate and integral(t) equals the closed form "
                     "and the Gauss–Legendre quadrature of beta on 7 times")
    return True


# ================================================================================ lesson 03
def _ddpm_cases():

    ddpm = DiscreteDDPM.linear()
    g = _gen(6)
    idx = [2, 17, 300, 750, 1000]
    x0, xi = _randn((5, 3), g), _randn((5, 3), g)
    return ddpm, g, idx, x0, xi


@checker("posterior")
def check_posterior(fn) -> bool:
    """``fn(x_i, x0, beta_i, alpha_bar_i, alpha_bar_prev) -> (mean, variance)`` of
    q(x_{i−1} | x_i, x_0), all coefficients 0-d float64 tensors."""
    name = "posterior"
    ddpm, _, idx, x0, xi = _ddpm_cases()
    for i in idx:
        b, ab, abp = ddpm.betas[i - 1], ddpm.alpha_bars[i], ddpm.alpha_bars[i - 1]
        want_mean, want_var = ddpm.posterior(xi, x0, i)
        out = _call(name, fn, xi.clone(), x0.clone(), b.clone(), ab.clone(), abp.clone())
        if not (isinstance(out, tuple) and len(out) == 2):
            _say(FAIL, name, "return a pair (mean, variance)")
            raise _Stop
        c0, ci = abp.sqrt() * b / (1 - ab), (1 - b).sqrt() * (1 - abp) / (1 - ab)
        _compare(name, out[0], want_mean, {
            "the coefficients of x_0 and x_i are swapped": ci * x0 + c0 * xi,
            "a square root is missing: x_0's coefficient has √ᾱ_{i−1}, x_i's √α_i":
                abp * b / (1 - ab) * x0 + (1 - b) * (1 - abp) / (1 - ab) * xi,
            "the denominator is 1 − ᾱ_i, not 1 − ᾱ_{i−1}":
                abp.sqrt() * b / (1 - abp) * x0 + (1 - b).sqrt() * (1 - abp) / (1 - abp) * xi,
        }, what=f"the mean (i = {i})", ok="", report=False)
        _compare(name, out[1], want_var, {
            "that is the forward variance β_i; the posterior's is β̃_i = "
            "(1 − ᾱ_{i−1})/(1 − ᾱ_i) β_i": b,
            "the ratio is upside down: β̃_i = (1 − ᾱ_{i−1})/(1 − ᾱ_i) β_i":
                (1 - ab) / (1 - abp) * b,
        }, what=f"the variance (i = {i})", ok="", report=False)
    _say(PASS, name, "mean and variance match DiscreteDDPM.posterior at i = 2, 17, 300, "
                     "750, 1000")
    return True


@checker("predict_x0")
def check_predict_x0(fn) -> bool:
    """``fn(x_i, eps, alpha_bar [B]) -> x̂_0 = (x_i − √(1 − ᾱ) ε)/√ᾱ``."""
    name = "predict_x0"
    ddpm, g, idx, _, xi = _ddpm_cases()
    i = torch.tensor(idx)
    eps = _randn(xi.shape, g)
    ab = ddpm.alpha_bars[i]
    a = _view(ab, xi)
    want = ddpm.predict_x0(xi, eps, i)
    wrong = {
        "square roots are missing: x̂_0 = (x_i − √(1 − ᾱ) ε)/√ᾱ": (xi - (1 - a) * eps) / a,
        "the noise must be subtracted, not added": (xi + (1 - a).sqrt() * eps) / a.sqrt(),
        "divide by √ᾱ, don't multiply": (xi - (1 - a).sqrt() * eps) * a.sqrt(),
    }
    return _compare(name, _call(name, fn, xi.clone(), eps.clone(), ab.clone()), want, wrong,
                    ok="matches DiscreteDDPM.predict_x0 on 5 random cases")


@checker("ancestral_mean")
def check_ancestral_mean(fn) -> bool:
    """``fn(x_i, eps, beta_i, alpha_bar_i) -> (x_i − β_i/√(1 − ᾱ_i) ε)/√(1 − β_i)``, the
    posterior mean with x_0 replaced by x̂_0(x_i, ε)."""
    name = "ancestral_mean"
    ddpm, g, idx, _, xi = _ddpm_cases()
    eps = _randn(xi.shape, g)
    for i in idx:
        b, ab = ddpm.betas[i - 1], ddpm.alpha_bars[i]
        x0_hat = ddpm.predict_x0(xi, eps, i)
        want = ddpm.posterior(xi, x0_hat, i)[0]
        _compare(name, _call(name, fn, xi.clone(), eps.clone(), b.clone(), ab.clone()), want, {
            "√(1 − ᾱ_i) is missing its square root": (xi - b / (1 - ab) * eps) / (1 - b).sqrt(),
            "the division by √α_i = √(1 − β_i) is missing": xi - b / (1 - ab).sqrt() * eps,
            "the noise must be subtracted, not added": (xi + b / (1 - ab).sqrt() * eps)
            / (1 - b).sqrt(),
            "the weight of ε is β_i/√(1 − ᾱ_i), not √(1 − ᾱ_i)":
                (xi - (1 - ab).sqrt() * eps) / (1 - b).sqrt(),
        }, what=f"the mean (i = {i})", ok="", report=False)
    _say(PASS, name, "equals the posterior mean at x̂_0(x_i, ε) for i = 2, 17, 300, 750, 1000")
    return True


@checker("gaussian_kl")
def check_gaussian_kl(fn) -> bool:
    """``fn(mu1 [B, D], var1 [B], mu2 [B, D], var2 [B]) -> [B]``:
    KL(N(μ₁, v₁ I) ‖ N(μ₂, v₂ I)) = ½ Σ_d [v₁/v₂ − 1 + log(v₂/v₁) + (μ₁ − μ₂)²/v₂]."""
    name = "gaussian_kl"
    g = _gen(7)
    B, D = 5, 3
    mu1, mu2 = _randn((B, D), g), _randn((B, D), g)
    v1, v2 = _uniform(B, 0.1, 2.0, g), _uniform(B, 0.1, 2.0, g)
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu1, v1[:, None].sqrt()),
        torch.distributions.Normal(mu2, v2[:, None].sqrt())).sum(-1)

    def kl(a1, w1, a2, w2, logterm=None):
        lt = torch.log(w2 / w1) if logterm is None else logterm
        return 0.5 * (D * (w1 / w2 - 1 + lt) + ((a1 - a2) ** 2).sum(-1) / w2)

    wrong = {
        "the arguments are swapped: KL(p‖q) is not symmetric": kl(mu2, v2, mu1, v1),
        "the log term is log(σ₂/σ₁) for *standard deviations*, i.e. ½ log(v₂/v₁) per "
        "coordinate; with variances it is log(v₂/v₁) inside the ½":
            kl(mu1, v1, mu2, v2, logterm=0.5 * torch.log(v2 / v1)),
        "the −1 (the −D) is missing": want + 0.5 * D,
        "the sum over the D coordinates is missing for the trace and log terms":
            0.5 * (v1 / v2 - 1 + torch.log(v2 / v1) + ((mu1 - mu2) ** 2).sum(-1) / v2),
        "you averaged over coordinates instead of summing": want / D,
    }
    return _compare(name, _call(name, fn, mu1.clone(), v1.clone(), mu2.clone(), v2.clone()),
                    want, wrong, ok="matches torch.distributions.kl_divergence on 5 random pairs")


# ================================================================================ lesson 04
@checker("time_embedding")
def check_time_embedding(fn) -> bool:
    """``fn(t [B], dim) -> [B, dim]``: [sin(1000 t ω_k), cos(1000 t ω_k)], ω_k = 10000^(−k/half)."""

    name = "time_embedding"
    t = _uniform(5, 0.0, 1.0, _gen(8))
    dim = 16
    want = SinusoidalTimeEmbedding(dim)(t)
    half = dim // 2
    k = torch.arange(half, dtype=F64)

    def emb(freqs, scale=1000.0, order=("sin", "cos")):
        a = scale * t[:, None] * freqs[None]
        parts = {"sin": torch.sin(a), "cos": torch.cos(a)}
        return torch.cat([parts[order[0]], parts[order[1]]], 1)

    w = torch.exp(-math.log(10000.0) * k / half)
    inter = torch.stack([torch.sin(1000 * t[:, None] * w), torch.cos(1000 * t[:, None] * w)], -1)
    wrong = {
        "the sines come first, then the cosines": emb(w, order=("cos", "sin")),
        "t must be multiplied by time_scale = 1000 first (t is in [0, 1], the frequencies "
        "were designed for step indices 0..1000)": emb(w, scale=1.0),
        "the exponent is −k/half, not −k/(half − 1)":
            emb(torch.exp(-math.log(10000.0) * k / (half - 1))),
        "the frequencies must decrease, ω_k = 10000^(−k/half), not increase":
            emb(torch.exp(math.log(10000.0) * k / half)),
        "sines and cosines are interleaved; concatenate [all sines, all cosines]":
            inter.reshape(5, dim),
    }
    return _compare(name, _call(name, fn, t.clone(), dim), want, wrong, rtol=1e-6, atol=1e-6,
                    ok="matches SinusoidalTimeEmbedding(16) on 5 random times")


@checker("resblock_params")
def check_resblock_params(fn) -> bool:
    """``fn(in_ch, out_ch, time_dim) -> int``, the number of parameters of
    ``ResBlock(in_ch, out_ch, time_dim)`` (GroupNorm affine, biases and the 1×1 skip included)."""

    name = "resblock_params"
    for cin, cout, tdim in ((32, 64, 128), (64, 64, 256), (16, 8, 32)):
        want = sum(p.numel() for p in ResBlock(cin, cout, tdim).parameters())
        got = _call(name, fn, cin, cout, tdim)
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, int) or isinstance(got, bool):
            _say(FAIL, name, f"return an int, got {type(got).__name__}")
            raise _Stop
        if got == want:
            continue
        skip = cin * cout + cout if cin != cout else 0
        biases = cout + 2 * cout + cout + (cout if cin != cout else 0)
        wrong = {  # the count each typical slip gives -> its diagnosis
            want - biases: "the biases are missing (each conv and linear layer has one)",
            want - 2 * cin - 2 * cout: "the GroupNorm scale and shift (2 per channel) are missing",
            want - tdim * cout - cout: "time_proj outputs 2·out_ch values (a scale and a shift "
                                       "per channel), not out_ch",
            want - 8 * cin * cout - 8 * cout * cout: "the convolutions are 3×3: 9 weights per "
                                                     "input-output channel pair",
        }
        if cin != cout:
            wrong[want - skip] = "the 1×1 skip convolution (in_ch ≠ out_ch) is missing"
        else:
            wrong[want + cin * cout + cout] = ("there is no skip convolution when in_ch = out_ch "
                                               "(the skip is the identity)")
        text = wrong.get(got, "")
        _say(FAIL, name, f"ResBlock({cin}, {cout}, {tdim}) has {want} parameters, you counted "
                         f"{got}" + (f": {text}" if text else f" (off by {got - want})"))
        raise _Stop
    _say(PASS, name, "matches sum(p.numel()) of ResBlock for (32, 64, 128), (64, 64, 256), "
                     "(16, 8, 32)")
    return True


@checker("attention")
def check_attention(fn) -> bool:
    """``fn(q, k, v)``, each ``[B, heads, N, d]`` -> softmax(q kᵀ/√d) v, ``[B, heads, N, d]``."""
    name = "attention"
    g = _gen(9)
    B, H, N, d = 2, 3, 5, 4
    q, k, v = (_randn((B, H, N, d), g) for _ in range(3))
    scores = q @ k.transpose(-1, -2)
    want = F.scaled_dot_product_attention(q, k, v)  # what SelfAttention2d calls
    wrong = {
        "the scores must be divided by √d (the 1/√d keeps the softmax from saturating)":
            torch.softmax(scores, -1) @ v,
        "divide the scores by √d, not by d": torch.softmax(scores / d, -1) @ v,
        "the softmax is over the keys (last axis), each query's weights sum to 1":
            torch.softmax(scores / math.sqrt(d), -2) @ v,
        "multiply the weights by v: softmax(q kᵀ/√d) v": torch.softmax(scores / math.sqrt(d), -1)
        @ q,
    }
    return _compare(name, _call(name, fn, q.clone(), k.clone(), v.clone()), want, wrong,
                    ok="matches F.scaled_dot_product_attention on a random batch "
                       "[2, 3 heads, 5 positions, d = 4]")


# ================================================================================ lesson 05
@checker("gaussian_score")
def check_gaussian_score(fn) -> bool:
    """``fn(x [B, D], mean [D], var) -> ∇ log N(x; mean, var I) = −(x − mean)/var``."""
    name = "gaussian_score"
    g = _gen(10)
    x, mu = _randn((5, 3), g), _randn(3, g)
    var = torch.tensor(0.37, dtype=F64)
    xg = x.clone().requires_grad_(True)  # the truth, independently: autograd of log N
    logp = torch.distributions.Normal(mu, var.sqrt()).log_prob(xg).sum()
    want = torch.autograd.grad(logp, xg)[0]
    wrong = {
        "divide by the variance, not by the standard deviation": -(x - mu) / var.sqrt(),
        "the score points towards the mean: −(x − μ)/v": (x - mu) / var,
        "the score is −(x − μ)/v; you returned the log-density's value, not its gradient":
            -0.5 * (x - mu) ** 2 / var,
    }
    return _compare(name, _call(name, fn, x.clone(), mu.clone(), var.clone()), want, wrong,
                    ok="matches the autograd gradient of log N(x; μ, v I) on 5 random points")


@checker("vp_marginal")
def check_vp_marginal(fn) -> bool:
    """``fn(t [B], beta_min, beta_max) -> (m, sigma)``, each ``[B]``, of the VP SDE."""

    name = "vp_marginal"
    t = _uniform(6, 0.001, 1.0, _gen(11))
    want_m, want_s = VPSDE().marginal(t)
    out = _call(name, fn, t.clone(), 0.1, 20.0)
    if not (isinstance(out, tuple) and len(out) == 2):
        _say(FAIL, name, "return a pair (m, sigma)")
        raise _Stop
    b = 0.1 * t + 0.5 * t**2 * 19.9
    _compare(name, out[0], want_m, {
        "m = exp(−½ B(t)): the ½ is missing (that is ᾱ = m², not m)": torch.exp(-b),
        "B(t) = β_min t + ½ t² (β_max − β_min); you used β(t)·t":
            torch.exp(-0.5 * (0.1 + 19.9 * t) * t),
    }, what="m", ok="", report=False)
    _compare(name, out[1], want_s, {
        "σ = √(1 − m²); without the square root it is sub-VP's σ = 1 − m²":
            SubVPSDE().marginal(t)[1],
        "σ² = 1 − m², not 1 − m": torch.sqrt(1 - want_m),
    }, what="sigma", ok="", report=False)
    _say(PASS, name, "(m, σ) match VPSDE().marginal on 6 random times")
    return True


def _sde_case(seed: int):

    sde = VPSDE()
    oracle = GaussianMixtureOracle(sde, [[1.0, 0.5], [-1.0, -1.0]], [0.05, 0.2])
    g = _gen(seed)
    x = _randn((6, 2), g)
    t = _uniform(6, 0.05, 0.95, g)
    return sde, oracle.score, g, x, t


@checker("reverse_em_step")
def check_reverse_em_step(fn) -> bool:
    """``fn(x, t [B], dt, sde, score_fn, z) -> x − [f(x, t) − g(t)² s(x, t)] dt + g(t) √dt z``,
    one Euler–Maruyama step of the reverse SDE from t to t − dt."""
    name = "reverse_em_step"
    sde, score, g, x, t = _sde_case(12)
    z, dt = _randn(x.shape, g), 0.01
    f, gg = sde.drift(x, t), _view(sde.diffusion(t), x)
    s = score(x, t)
    want = x - (f - gg**2 * s) * dt + gg * math.sqrt(dt) * z
    wrong = {
        "the score term has the wrong sign: the reverse drift is f − g² s": x - (f + gg**2 * s)
        * dt + gg * math.sqrt(dt) * z,
        "that is the probability-flow drift f − ½ g² s; the reverse SDE has f − g² s":
            x - (f - 0.5 * gg**2 * s) * dt + gg * math.sqrt(dt) * z,
        "the noise scales with √dt, not dt": x - (f - gg**2 * s) * dt + gg * dt * z,
        "the noise term g √dt z is missing": x - (f - gg**2 * s) * dt,
        "the drift is multiplied by g, not g²": x - (f - gg * s) * dt + gg * math.sqrt(dt) * z,
        "going backwards in time, the drift is subtracted: x − [f − g² s] dt":
            x + (f - gg**2 * s) * dt + gg * math.sqrt(dt) * z,
    }
    return _compare(name, _call(name, fn, x.clone(), t.clone(), dt, sde, score, z.clone()), want,
                    wrong, ok="matches one Euler–Maruyama step with an exact mixture score on "
                              "6 random cases")


@checker("pf_drift")
def check_pf_drift(fn) -> bool:
    """``fn(x, t [B], sde, score_fn) -> f(x, t) − ½ g(t)² s(x, t)``, the probability-flow ODE."""
    name = "pf_drift"
    sde, score, g, x, t = _sde_case(13)
    want = sde.reverse(score, probability_flow=True).drift(x, t)
    f, gg, s = sde.drift(x, t), _view(sde.diffusion(t), x), score(x, t)
    wrong = {
        "the ½ is missing: f − g² s is the reverse *SDE*'s drift, the ODE has f − ½ g² s":
            f - gg**2 * s,
        "the score term has the wrong sign: f − ½ g² s": f + 0.5 * gg**2 * s,
        "g must be squared: f − ½ g² s": f - 0.5 * gg * s,
        "the forward drift f(x, t) is missing": -0.5 * gg**2 * s,
    }
    return _compare(name, _call(name, fn, x.clone(), t.clone(), sde, score), want, wrong,
                    ok="matches sde.reverse(score, probability_flow=True).drift on 6 random "
                       "cases")


@checker("langevin_step")
def check_langevin_step(fn, n_chains: int = 4000, n_steps: int = 200) -> bool:
    """``fn(x, score_fn, step_size, z) -> x + ε s(x) + √(2ε) z``; the chain must then keep
    N(0, v) (almost) stationary: variance v/(1 − ε/(2v))."""
    name = "langevin_step"
    g = _gen(14)
    x, z = _randn((5, 2), g), _randn((5, 2), g)
    v, eps = 0.5, 0.05

    def score(y):
        return -y / v

    want = x + eps * score(x) + math.sqrt(2 * eps) * z
    wrong = {
        "the noise is √(2ε) z, not √ε z": x + eps * score(x) + math.sqrt(eps) * z,
        "the drift is ε s(x), not ½ ε s(x) (with noise √(2ε) z)": x + 0.5 * eps * score(x)
        + math.sqrt(2 * eps) * z,
        "the score term must be added: x + ε s(x)": x - eps * score(x) + math.sqrt(2 * eps) * z,
        "the noise term √(2ε) z is missing": x + eps * score(x),
    }
    _compare(name, _call(name, fn, x.clone(), score, eps, z.clone()), want, wrong, ok="",
             report=False)
    y = _randn((n_chains,), g) * math.sqrt(v)
    for _ in range(n_steps):
        y = _as_result(name, _call(name, fn, y, score, eps, _randn(y.shape, g)))
    target = v / (1 - eps / (2 * v))
    se = target * math.sqrt(2 / n_chains)
    if abs(float(y.var()) - target) > 5 * se:
        _say(FAIL, name, f"the chain's variance {float(y.var()):.4f} is not the stationary "
                         f"{target:.4f} within 5 standard errors")
        raise _Stop
    _say(PASS, name, f"exact on 5 random cases; {n_chains} chains × {n_steps} steps on N(0, {v}) "
                     f"keep variance {float(y.var()):.3f} ≈ v/(1 − ε/2v) = {target:.3f}")
    return True


# ================================================================================ lesson 06
def _step_cases(seed: int, n: int = 4):
    """n random (x, eps, (m_s, σ_s), (m_t, σ_t)) with s > t on the VP SDE."""

    sde = VPSDE()
    g = _gen(seed)
    cases = []
    for _ in range(n):
        s = float(_uniform(1, 0.2, 1.0, g))
        t = s - float(_uniform(1, 0.02, 0.15, g))
        (ms, ss), (mt, st) = (tuple(float(v) for v in sde.marginal(torch.tensor(u, dtype=F64)))
                              for u in (s, t))
        cases.append((_randn((3, 2), g), _randn((3, 2), g), ms, ss, mt, st, g))
    return cases


def _ddim(x0: Tensor, eps: Tensor, z: Tensor, mt: float, st: float, c: float) -> Tensor:
    return mt * x0 + math.sqrt(max(st**2 - c**2, 0.0)) * eps + c * z


@checker("ddim_step")
def check_ddim_step(fn) -> bool:
    """``fn(x, eps, m_s, sigma_s, m_t, sigma_t, eta, z) -> x_t``:
    x̂_0 = (x − σ_s ε̂)/m_s, c = η σ_t √(1 − e^{−2h}), h = λ_t − λ_s,
    x_t = m_t x̂_0 + √(σ_t² − c²) ε̂ + c z."""
    name = "ddim_step"
    for eta in (0.0, 0.5, 1.0):
        for x, eps, ms, ss, mt, st, g in _step_cases(15):
            z = _randn(x.shape, g)
            x0 = (x - ss * eps) / ms
            h = math.log(mt / st) - math.log(ms / ss)
            c = eta * st * math.sqrt(-math.expm1(-2 * h))
            want = _ddim(x0, eps, z, mt, st, c)
            wrong = {
                "re-noise with σ_t (the new noise level), not σ_s":
                    _ddim(x0, eps, z, mt, ss, c),
                "x̂_0 = (x − σ_s ε̂)/m_s: the division by m_s is missing":
                    _ddim(x - ss * eps, eps, z, mt, st, c),
                "when noise c z is added, the ε̂ term must shrink to √(σ_t² − c²) ε̂":
                    mt * x0 + st * eps + c * z,
                "c = η σ_t √(1 − e^{−2h}): the square root is missing":
                    _ddim(x0, eps, z, mt, st, eta * st * -math.expm1(-2 * h)),
                "c = η σ_t √(1 − e^{−2h}); you used c = η σ_t": _ddim(x0, eps, z, mt, st, eta * st),
            }
            got = _call(name, fn, x.clone(), eps.clone(), ms, ss, mt, st, eta, z.clone())
            _compare(name, got, want, wrong, what=f"x_t (eta = {eta})", ok="", report=False)
    _say(PASS, name, "matches DDIM's update for η = 0, 0.5, 1 on 4 random steps each")
    return True


@checker("dpm_solver_pp1_step")
def check_dpm_solver_pp1_step(fn) -> bool:
    """``fn(x, x0_hat, m_s, sigma_s, m_t, sigma_t) -> (σ_t/σ_s) x − m_t (e^{−h} − 1) x̂_0``,
    h = λ_t − λ_s, λ = log(m/σ)."""
    name = "dpm_solver_pp1_step"
    for x, eps, ms, ss, mt, st, _ in _step_cases(16):
        x0 = (x - ss * eps) / ms
        h = math.log(mt / st) - math.log(ms / ss)
        want = (st / ss) * x - mt * math.expm1(-h) * x0
        wrong = {
            "the exponent is −h: e^{−h} − 1 (data prediction), not e^{h} − 1":
                (st / ss) * x - mt * math.expm1(h) * x0,
            "the ratio is σ_t/σ_s for data prediction (m_t/m_s belongs to noise prediction)":
                (mt / ms) * x - mt * math.expm1(-h) * x0,
            "h = λ_t − λ_s with λ = log(m/σ), the *half* log-SNR; you used the full log-SNR":
                (st / ss) * x - mt * math.expm1(-2 * h) * x0,
            "the x̂_0 term is weighted by m_t, not m_s": (st / ss) * x - ms * math.expm1(-h)
            * x0,
            "the sign of the x̂_0 term: − m_t (e^{−h} − 1) x̂_0 = + m_t (1 − e^{−h}) x̂_0":
                (st / ss) * x + mt * math.expm1(-h) * x0,
        }
        got = _call(name, fn, x.clone(), x0.clone(), ms, ss, mt, st)
        _compare(name, got, want, wrong, what="x_t", ok="", report=False)
        ddim = mt * x0 + st * eps
        if not _close(want, ddim, 1e-9, 1e-12):  # pragma: no cover - a package invariant
            raise AssertionError("DPM-Solver++(1) and DDIM(η=0) disagree")
    _say(PASS, name, "matches DPM-Solver++(1) (and so DDIM with η = 0) on 4 random steps")
    return True


@checker("dpm_solver_2m")
def check_dpm_solver_2m(fn) -> bool:
    """``fn(x0_cur, x0_prev, h, h_prev) -> D = (1 + 1/(2r)) x̂_0,i − 1/(2r) x̂_0,i−1``,
    r = h_prev/h."""
    name = "dpm_solver_2m"
    g = _gen(17)
    for _ in range(4):
        a, b = _randn((3, 2), g), _randn((3, 2), g)
        h, hp = float(_uniform(1, 0.05, 0.5, g)), float(_uniform(1, 0.05, 0.5, g))
        r = hp / h
        want = (1 + 0.5 / r) * a - (0.5 / r) * b
        q = h / hp
        wrong = {
            "r = h_prev/h, not h/h_prev": (1 + 0.5 / q) * a - (0.5 / q) * b,
            "the extrapolation weight is 1/(2r), not 1/r": (1 + 1 / r) * a - (1 / r) * b,
            "x̂_0,i and x̂_0,i−1 are swapped": (1 + 0.5 / r) * b - (0.5 / r) * a,
        }
        _compare(name, _call(name, fn, a.clone(), b.clone(), h, hp), want, wrong, what="D",
                 ok="", report=False)
    _say(PASS, name, "matches DPM-Solver++(2M)'s combination D on 4 random step pairs")
    return True


@checker("corrector_step_size")
def check_corrector_step_size(fn) -> bool:
    """``fn(score [B, ...], z [B, ...], snr, alpha) -> ε [B] = 2 α (snr ‖z‖ / ‖s‖)²``, norms
    per sample over all non-batch dimensions."""

    name = "corrector_step_size"
    sde = VPSDE()
    oracle = GaussianOracle(sde, torch.zeros(1, 3, 2, dtype=F64), 0.3)  # images [B, 1, 3, 2]
    x = _randn((4, 1, 3, 2), _gen(18))
    snr, alpha, t = 0.16, 0.98, 0.3
    _, want = langevin_corrector_step(oracle, sde, x, t, snr=snr, alpha=alpha, norm="sample",
                                      generator=_gen(19))
    z = torch.randn(x.shape, generator=_gen(19), dtype=F64)  # the z the package drew
    score = oracle.score(x, t)
    zn, sn = z.reshape(4, -1).norm(dim=-1), score.reshape(4, -1).norm(dim=-1)
    wrong = {
        "the ratio must be squared: ε = 2α (snr ‖z‖/‖s‖)²": 2 * alpha * snr * zn / sn,
        "the ratio is ‖z‖/‖s‖, not ‖s‖/‖z‖": 2 * alpha * (snr * sn / zn) ** 2,
        "those are batch-mean norms; this exercise asks for one ε per sample":
            2 * alpha * (snr * zn.mean() / sn.mean()).expand(4) ** 2,
        "the factor α is missing": 2 * (snr * zn / sn) ** 2,
    }
    return _compare(name, _call(name, fn, score.clone(), z.clone(), snr, alpha), want, wrong,
                    ok="matches langevin_corrector_step(norm='sample')'s step size on 4 images")
