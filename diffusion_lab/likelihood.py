r"""Exact log-likelihood through the probability-flow ODE, and bits per dimension.

The probability-flow ODE dx/dt = f̃(x, t) = f(t) x − ½ g(t)² s(x, t), with the
score s = −ε̂/σ, moves the marginals p_t into one another. Along a solution the
continuity equation gives d log p_t(x_t)/dt = −∇·f̃(x_t, t), hence

    log p_{t_min}(x) = log p_1(x_1) + ∫_{t_min}^{1} ∇·f̃(x_t, t) dt,
    ∇·f̃ = D f(t) + (g(t)² / 2σ(t)) ∇·ε̂(x_t, t)            (D = dimensions),

integrated *forward* from x_{t_min} = x on the augmented state [x, Δlog p]
(one batch = one ODE system). ∇·ε̂ is exact (D vector–Jacobian products; small D
only) or the Hutchinson–Skilling estimate vᵀ(∂ε̂/∂x)v with Rademacher v drawn
once per trajectory, which is unbiased: E[vᵀAv] = tr A because E[vvᵀ] = I.

Two known biases, both small for a good ``t_min`` (tested on Gaussians):

* **t_min truncation.** The result is log p_{t_min}(x), the density of
  x_{t_min} = m x_0 + σ z, not of x_0. For Gaussian data N(μ, s²) and m ≈ 1 the
  gap is about ½ σ(t_min)²/s² nats per dimension; harmless for s ≫ σ(t_min),
  but for images (detail on the scale of a quantisation bin, 2/256 ≈ 0.008)
  take ``t_min`` small: VP's default t_min = 1e-3 has σ ≈ 0.01, so likelihood
  work usually passes ``t_min=1e-5`` (σ ≈ 1e-3), as score SDE does — but only for a
  network *trained* down to that time. Below its training range the network is
  extrapolated and the ODE becomes hard to resolve: the bundled MNIST model (trained
  to t = 1e-3) gives a meaningless −3.4 bits/dim at t_min = 1e-5 with rtol = 1e-3,
  1.5 at rtol = 1e-4, while at t_min = 1e-3 all tolerances 1e-2…1e-4 agree within 0.01.
  Check that a reported number is stable when the tolerance is tightened.
* **Prior mismatch.** log p_1 is replaced by ``sde.prior_logp`` (N(0, I) or
  N(0, σ_max² I)); pass ``prior_logp=`` to use another (tests pass the exact one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import as_time, check_choice, check_finite, check_int, expand_like
from .ode import FIXED_METHODS, integrate_fixed, rk45
from .sde import SDE

__all__ = [
    "DIVERGENCES",
    "MAX_EXACT_DIM",
    "SOLVERS",
    "bits_per_dim",
    "check_on_256_grid",
    "log_likelihood",
    "nats_to_bits_per_dim",
]

DIVERGENCES = ("hutchinson", "exact")
SOLVERS = ("rk45",) + tuple(FIXED_METHODS)
MAX_EXACT_DIM = 64
BIN_WIDTH = 2.0 / 256  # one quantisation bin of 256-level data scaled to [-1, 1]
BPD_OFFSET = math.log2(256) - math.log2(2)  # = 7, see nats_to_bits_per_dim


def _call(eps_model, x: Tensor, t: Tensor, y) -> Tensor:
    eps = eps_model(x, t) if y is None else eps_model(x, t, y)
    if not isinstance(eps, Tensor) or eps.shape != x.shape:
        got = list(eps.shape) if isinstance(eps, Tensor) else type(eps).__name__
        raise ValueError(f"eps_model must return a tensor shaped like x {list(x.shape)}, got {got}")
    return eps


def _eps_and_divergence(eps_model, x: Tensor, t: Tensor, y, probes: Tensor | None):
    """ε̂(x, t) and ∇·ε̂ per sample (exact if ``probes`` is None, else Hutchinson), detached.

    The network runs once with grad enabled for x only; the divergence comes from
    vector–Jacobian products (one per probe, or one per coordinate when exact).
    """
    B, D = x.shape[0], x[0].numel()
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        eps = _call(eps_model, xr, t, y)
        if not eps.requires_grad:
            raise RuntimeError(
                "eps_model output does not depend differentiably on x (was it run under "
                "torch.no_grad() or detached?); the divergence needs autograd through the model"
            )
        div = torch.zeros(B, dtype=x.dtype, device=x.device)
        if probes is None:  # exact: D passes, pass i gives row i of each sample's Jacobian
            flat = eps.reshape(B, D)
            for i in range(D):
                (gi,) = torch.autograd.grad(flat[:, i].sum(), xr, retain_graph=i < D - 1)
                div = div + gi.reshape(B, D)[:, i]
        else:  # Hutchinson–Skilling: mean over probes of vᵀ (∂ε̂/∂x) v
            n = probes.shape[0]
            for k in range(n):
                (vj,) = torch.autograd.grad(eps, xr, grad_outputs=probes[k], retain_graph=k < n - 1)
                div = div + (vj * probes[k]).reshape(B, D).sum(-1)
            div = div / n
    return eps.detach(), div.detach()


def log_likelihood(eps_model, sde: SDE, x: Tensor, *, t_min: float | None = None,
                   rtol: float = 1e-5, atol: float = 1e-5, solver: str = "rk45",
                   steps: int | None = None, divergence: str = "hutchinson", n_probes: int = 1,
                   force_exact: bool = False, prior_logp=None,
                   generator: torch.Generator | None = None, y=None, progress: bool = False,
                   info: dict | None = None) -> Tensor:
    r"""log p_{t_min}(x) in nats, ``[B]``, by the probability-flow ODE (see the module doc).

    log p(x) = log p_1(x_1) + ∫_{t_min}^1 [D f(t) + g²/(2σ) ∇·ε̂(x_t, t)] dt.

    Args:
        eps_model: noise predictor ``eps_model(x, t)`` (``(x, t, y)`` when ``y`` is given).
        sde: the forward SDE the model was trained with.
        x: data ``[B, ...]`` (any scale; continuous).
        t_min: start of the integral, in (0, 1); default ``sde.t_min``.
        rtol, atol: tolerances of the adaptive ``rk45`` solver.
        solver: ``"rk45"`` (adaptive) or a fixed-step method ``"euler"``, ``"heun"``,
            ``"rk4"``, which needs ``steps`` (uniform grid in t).
        divergence: ``"hutchinson"`` (Rademacher probes, ``n_probes`` per trajectory,
            drawn once from ``generator``) or ``"exact"`` (D autograd passes; refused for
            D > 64 unless ``force_exact=True``).
        prior_logp: callable x_1 -> ``[B]`` replacing ``sde.prior_logp``.
        info: optional dict, filled with ``nfe`` (model evaluations), ``steps``,
            ``rejected``, ``prior_logp``, ``delta_logp`` and ``x1`` (the ODE end point).

    Raises ``FloatingPointError`` if the model or the solution becomes non-finite.
    """
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
    check_finite(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape [B, ...] with at least 2 dims, got {list(x.shape)}")
    check_choice(solver, "solver", SOLVERS)
    check_choice(divergence, "divergence", DIVERGENCES)
    n_probes = check_int(n_probes, "n_probes")
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be a dict or None, got {type(info).__name__}")
    if prior_logp is not None and not callable(prior_logp):
        raise TypeError(f"prior_logp must be callable or None, got {type(prior_logp).__name__}")
    t_min = float(as_time(sde.t_min if t_min is None else t_min, "t_min"))
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min}")
    if solver == "rk45":
        if steps is not None:
            raise ValueError(f"steps is only for fixed-step solvers; rk45 got steps={steps}")
    elif steps is None:
        raise ValueError(f"solver={solver!r} needs steps (an int >= 1), got None")
    else:
        steps = check_int(steps, "steps")
    B, D, shape = x.shape[0], x[0].numel(), x.shape
    if divergence == "exact":
        if n_probes != 1:
            raise ValueError(f"n_probes is for divergence='hutchinson'; 'exact' got {n_probes}")
        if D > MAX_EXACT_DIM and not force_exact:
            raise ValueError(
                f"divergence='exact' needs D = {D} backward passes per evaluation; refused for "
                f"D > {MAX_EXACT_DIM} (use 'hutchinson' or pass force_exact=True)"
            )
        probes = None
    else:  # v ∈ {−1, +1}^D, drawn once per trajectory
        bits = torch.randint(0, 2, (n_probes,) + tuple(shape), generator=generator,
                             device=x.device)
        probes = (2 * bits - 1).to(x.dtype)

    nfe = 0

    def augmented_drift(t: float, state: Tensor) -> Tensor:
        nonlocal nfe
        xt = state[:, :D].reshape(shape)
        tv = torch.full((B,), t, dtype=x.dtype, device=x.device)
        f, g = sde.drift_coef(tv), sde.diffusion(tv)
        sigma = sde.marginal(tv)[1]
        eps, div_eps = _eps_and_divergence(eps_model, xt, tv, y, probes)
        nfe += 1
        if not bool(torch.isfinite(eps).all()) or not bool(torch.isfinite(div_eps).all()):
            raise FloatingPointError(f"eps_model returned non-finite values at t={t:.6g}")
        coef = 0.5 * g**2 / sigma  # f̃ = f x − ½g² s = f x + (g²/2σ) ε̂
        dx = expand_like(f, xt) * xt + expand_like(coef, xt) * eps
        ddiv = D * f + coef * div_eps
        return torch.cat([dx.reshape(B, D), ddiv[:, None]], dim=1)

    bar = tqdm(total=steps, disable=not progress, desc="log-likelihood", unit="step")

    def on_step(i, t, state):
        bar.update(1)
        bar.set_postfix(t=f"{t:.4f}", refresh=False)

    state0 = torch.cat([x.detach().reshape(B, D), x.new_zeros(B, 1)], dim=1)
    try:
        if solver == "rk45":
            res = rk45(augmented_drift, state0, t_min, sde.t_max, rtol=rtol, atol=atol, callback=on_step)
        else:
            grid = torch.linspace(t_min, sde.t_max, steps + 1, dtype=torch.float64).tolist()
            res = integrate_fixed(augmented_drift, state0, grid, method=solver, callback=on_step)
    finally:
        bar.close()
    x1 = res.y[:, :D].reshape(shape)
    delta = res.y[:, D]
    prior = sde.prior_logp(x1) if prior_logp is None else prior_logp(x1)
    logp = prior.to(x.dtype) + delta
    if not bool(torch.isfinite(logp).all()):
        raise FloatingPointError("log-likelihood is non-finite (check the model and t_min)")
    if info is not None:
        info.update(nfe=nfe, steps=res.steps, rejected=res.rejected, prior_logp=prior,
                    delta_logp=delta, x1=x1, t_min=t_min)
    return logp


def nats_to_bits_per_dim(log_px: Tensor, num_dims: int) -> Tensor:
    r"""Bits/dim of 256-level data from log p(x_deq) in nats of its [-1, 1] scaling.

    Pixels k ∈ {0..255} dequantised to u = k + U[0, 1) ∈ [0, 256)^D; the model
    sees x = u · (2/256) − 1. Change of variables, |dx/du| = (2/256) per dimension:

        p_u(u) = p_x(x) (2/256)^D
        bpd = −log₂ p_u(u) / D = −log p_x(x) / (D ln 2) − log₂(2/256)
            = −log p_x(x) / (D ln 2) + 7        (7 = log₂ 256 − log₂ 2).

    Check: the uniform density 2^{−D} on [-1, 1]^D gives 1 + 7 = 8 bits/dim, the
    entropy of uniform 8-bit pixels.
    """
    num_dims = check_int(num_dims, "num_dims")
    return -log_px / (num_dims * math.log(2.0)) + BPD_OFFSET


def check_on_256_grid(x: Tensor, name: str = "x") -> Tensor:
    """Check that ``x`` holds 256-level data in [-1, 1]; return the integer levels k.

    Accepted: x = 2k/255 − 1 (``ToTensor() * 2 − 1``, both ends included) or
    x = k/128 − 1 (k = 0..255), the whole tensor on one of the two grids.
    """
    check_finite(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [-1, 1] (256-level data), got values in "
                         f"[{lo:.6g}, {hi:.6g}]")
    xd = x.detach().to(torch.float64)
    for scale in (127.5, 128.0):
        k = (xd + 1.0) * scale
        kr = torch.round(k)
        if bool(((k - kr).abs() <= 1e-3).all()) and float(kr.max()) <= 255:
            return kr.to(torch.long)
    raise ValueError(
        f"{name} is not on a 256-level grid: expected x = 2k/255 - 1 or x = k/128 - 1 with "
        f"integer k in [0, 255] (pass dequantize=False for continuous data)"
    )


def bits_per_dim(eps_model, sde: SDE, x: Tensor, *, dequantize: bool = True,
                 generator: torch.Generator | None = None, info: dict | None = None,
                 **kwargs) -> Tensor:
    r"""Bits per dimension of 256-level images ``x`` in [-1, 1], ``[B]``.

    x_deq = x + U[0, 2/256) per pixel (uniform dequantisation, drawn first from
    ``generator``; then the Hutchinson probes), bpd = −log p(x_deq)/(D ln 2) + 7
    (derived in :func:`nats_to_bits_per_dim`). By Jensen, this is an upper bound
    on −log₂ P(k)/D of the discrete model P(k) = ∫_{bin k} p: every bin has
    volume (2/256)^D and the bins are disjoint on either accepted grid.
    ``dequantize=False`` takes ``x`` as already continuous (no grid check).
    Other keywords go to :func:`log_likelihood`; ``info`` also gets ``x_deq``.
    """
    check_finite(x, "x")
    if dequantize:
        check_on_256_grid(x, "x")
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + BIN_WIDTH * u
    logp = log_likelihood(eps_model, sde, x, generator=generator, info=info, **kwargs)
    if info is not None:
        info["x_deq"] = x
    return nats_to_bits_per_dim(logp, x[0].numel())
