r"""Controllable generation: inpainting, colorization, super-resolution, guidance, interpolation.

**Linear inverse problems by replacement** (Song et al. 2021, App. I). In an orthonormal
basis c = T x (T⁻¹ = Tᵀ) some coordinates c_O of the data are observed, c_O(x_0) = k. They are
imposed at every network call at the *current* noise level by a forward sample of the
observation (never the clean k, which the network has never seen at noise level t):

    c̃_t = c_t on the free coordinates,   c̃_t,O = m_t k + σ_t z,   z ~ N(0, I),

and the output has c_O = k exactly. Three choices of T (orthonormal, so N(0, I) noise stays
N(0, I) and the sampler itself runs on c; the model is called on Tᵀ c̃):

    inpainting        T = I, O = {mask = 0}                      (mask: 1 = generate, 0 = known)
    colorization      T = Q on each pixel's RGB, Q's row 0 = w/‖w‖ (w = LUMA_WEIGHTS), O = {row 0}:
                      Y = w·x = ‖w‖ c_0 is kept, the 2 chroma coordinates are generated
    super-resolution  T = an orthonormal basis of each f×f block with row 0 = 1/f (c_0 = f·mean),
                      O = {row 0}: the average pooling A x (A⁺ = nearest upsampling, A A⁺ = I)
                      is kept, the high-pass I − A⁺A is generated

Every sampler in :data:`~diffusion_lab.samplers.SAMPLERS` updates the state as
x ← a x + Σ b_j ε̂_j + c z with *scalar* a, b_j, c, so the free coordinates evolve the same
whether the observed ones are replaced after each step or only inside each network call; the
replacement therefore wraps the model (:func:`constrained_eps_model`) and works with any
sampler, Heun/RK stages and Langevin corrector steps included. (The state's observed
coordinates are discarded; they drift and are never used.) It is exact when the observed and
free parts of x_0 are independent (a Gaussian whose covariance is block-diagonal in the split),
and an approximation otherwise: on a 2-D Gaussian with correlation 0.9 the conditional mean
comes out 0.87 instead of 1.35 (ancestral, 25 steps); RePaint reaches 1.24, with too small a
variance (tests/test_tasks.py measures both).

RePaint (Lugmayr et al. 2022) resampling, ``resample_steps = r > 1``: after reaching a grid
index that is a multiple of ``jump``, re-noise x_t → x_{t'} (j grid steps back up) with the
forward kernel x_{t'} = (m_{t'}/m_t) x_t + √(σ_{t'}² − (m_{t'}/m_t)² σ_t²) z and descend again,
r − 1 times; supported for the one-step samplers ``ancestral``, ``ddim`` and ``euler_maruyama``.

**Inpainting through x̂_0** (:mod:`diffusion_lab.inpainting`): x̂_0-projection (DDNM), DPS
and their combination with time travel correct the denoised estimate instead of the state;
:func:`inpaint` chooses among all of them by ``method``; its default for a class-conditional
model completes the digit once per class and keeps the class the model itself finds most
consistent with the known pixels (:mod:`diffusion_lab.class_inpainting`; the highest accuracy
``benchmarks/inpainting.py`` measured, 0.855 at 150 NFE, though DPS + projection's 0.83 at 20
NFE with backward passes is within one s.e. at about 15 % of the cost); without classes, the most
consistent of 6 projection completions.

**Classifier-free guidance**: ε̃ = ε(x, t, ∅) + w [ε(x, t, y) − ε(x, t, ∅)], so w = 1 is the
conditional model and w = 0 the unconditional one. **Interpolation**: :func:`slerp` of prior
noise and :func:`ddim_invert` (the deterministic DDIM step run forward in time).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import class_inpainting, inpainting
from ._checks import check_finite, check_int, check_positive, expand_like
from .data import LUMA_WEIGHTS
from .inpainting import forward_jump
from .inpainting import repaint_path as _repaint_path
from .model import guided_eps_model  # model.py imports this module lazily, in its methods
from .samplers import DEFAULT_GRIDS, SAMPLERS
from .sde import SDE
from .timegrid import coefficients, time_grid

__all__ = [
    "Constraint", "inpainting_constraint", "colorization_constraint",
    "super_resolution_constraint", "constrained_eps_model", "sample_with_constraint",
    "forward_jump", "block_basis",
    "inpaint", "colorize", "super_resolve", "luma_chroma_basis", "downsample", "upsample",
    "shrink_into_range", "classifier_free_guidance", "slerp", "ddim_invert",
    "REPAINT_METHODS", "INPAINT_METHODS", "DEFAULT_INPAINT_METHOD", "default_inpaint_steps",
    "UNCONDITIONAL_INPAINT_METHOD", "default_inpaint_method",
]

REPAINT_METHODS = ("ancestral", "ddim", "euler_maruyama")


# -- the observed coordinates ----------------------------------------------------------------
def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class Constraint:
    """Observed coordinates in an orthonormal basis: ``encode`` = T, ``decode`` = Tᵀ,
    ``observed`` (bool, broadcastable to c = T x) and ``known`` (c-shaped, used where observed)."""

    observed: Tensor
    known: Tensor
    encode: Callable[[Tensor], Tensor] = _identity
    decode: Callable[[Tensor], Tensor] = _identity

    def impose(self, c: Tensor, m, sigma, z: Tensor) -> Tensor:
        """c with its observed coordinates replaced by the forward sample m k + σ z."""
        return torch.where(self.observed, m * self.known + sigma * z, c)

    def finish(self, c: Tensor) -> Tensor:
        """c with its observed coordinates set exactly to k."""
        return torch.where(self.observed, self.known, c)

def _image(x, name: str, channels: int | None = None) -> Tensor:
    check_finite(x, name)
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"[B, {channels}, H, W]" if channels else "[B, C, H, W]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    return x


def _check_range(x: Tensor, name: str) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [-1, 1] (images), got values in [{lo:.4g}, {hi:.4g}]")


def inpainting_constraint(x_known: Tensor, mask: Tensor) -> Constraint:
    """T = I, observed = {mask = 0}; ``mask`` (bool or 0/1, broadcastable to ``x_known``):
    1 = generate, 0 = known."""
    check_finite(x_known, "x_known")
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a tensor of 0/1 (1 = generate), got {type(mask).__name__}")
    try:
        mask = torch.broadcast_to(mask, x_known.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {list(mask.shape)} does not broadcast to x_known's "
                         f"shape {list(x_known.shape)}") from None
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must contain only 0 (known) and 1 (generate)")
    return Constraint(observed=(mask == 0).to(x_known.device), known=x_known)


def _orthonormal_completion(v: Tensor) -> Tensor:
    """Orthonormal ``[n, n]`` (float64) whose row 0 is v/‖v‖ (QR of [v, e_1, …, e_{n−1}])."""
    n = v.numel()
    cols = torch.cat([v.reshape(n, 1), torch.eye(n, dtype=torch.float64)[:, : n - 1]], 1)
    q, _ = torch.linalg.qr(cols)
    q = q.T
    return q * torch.sign(q[0] @ v)


def luma_chroma_basis(dtype=torch.float64) -> Tensor:
    """Orthonormal Q ``[3, 3]``: row 0 = w/‖w‖ (luminance direction), rows 1-2 span its
    complement (chroma); c = Q rgb per pixel and Y = w·rgb = ‖w‖ c_0."""
    return _orthonormal_completion(torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)).to(dtype)


def block_basis(factor: int, dtype=torch.float64) -> Tensor:
    """Orthonormal H ``[f², f²]`` for a flattened f×f block: row 0 = 1/f (c_0 = f · block mean),
    the other rows span the zero-mean (high-pass) blocks."""
    f = check_int(factor, "factor", minimum=1)
    return _orthonormal_completion(torch.ones(f * f, dtype=torch.float64)).to(dtype)


def _grayscale(gray: Tensor) -> Tensor:
    """Luminance ``[B, 1, H, W]`` from a grey image or an RGB one (Y = w·rgb), range-checked."""
    _image(gray, "gray")
    if gray.shape[1] == 3:
        w = torch.tensor(LUMA_WEIGHTS, dtype=gray.dtype, device=gray.device)
        gray = torch.einsum("bchw,c->bhw", gray, w)[:, None]
    elif gray.shape[1] != 1:
        raise ValueError(f"gray must be [B, 1, H, W] (luminance) or [B, 3, H, W] (RGB to take "
                         f"the luminance of), got {list(gray.shape)}")
    _check_range(gray, "gray")
    return gray


def colorization_constraint(gray: Tensor) -> Constraint:
    """T = Q per pixel (:func:`luma_chroma_basis`), observed c_0 = Y/‖w‖: the luminance
    Y = w·x of ``gray`` (``[B, 1, H, W]``, or RGB ``[B, 3, H, W]`` to take it from) is kept."""
    y = _grayscale(gray)
    q = luma_chroma_basis(y.dtype).to(y.device)
    norm_w = float(torch.linalg.vector_norm(torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)))
    observed = torch.tensor([True, False, False], device=y.device).reshape(1, 3, 1, 1)
    known = torch.cat([y / norm_w, torch.zeros_like(y), torch.zeros_like(y)], 1)
    return Constraint(observed, known, lambda x: torch.einsum("ij,bjhw->bihw", q, x),
                      lambda c: torch.einsum("ji,bjhw->bihw", q, c))


def downsample(x: Tensor, factor: int) -> Tensor:
    """A x: ``factor`` × ``factor`` average pooling."""
    return F.avg_pool2d(x, check_int(factor, "factor", minimum=1))


def upsample(y: Tensor, factor: int) -> Tensor:
    """A⁺ y: nearest-neighbour upsampling, the pseudo-inverse of average pooling (A A⁺ = I)."""
    f = check_int(factor, "factor", minimum=1)
    return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


def super_resolution_constraint(low_res: Tensor, factor: int = 2) -> Constraint:
    """T = :func:`block_basis` on each f×f block (c ``[B, C, h, w, f²]``), observed c_0 = f·y:
    the ``factor``-times average pooling of the output is ``low_res`` ``[B, C, h, w]``."""
    _image(low_res, "low_res")
    f = check_int(factor, "factor", minimum=2)
    hb = block_basis(f, low_res.dtype).to(low_res.device)
    b, ch, h, w = low_res.shape

    def encode(x: Tensor) -> Tensor:
        blocks = x.reshape(b, ch, h, f, w, f).permute(0, 1, 2, 4, 3, 5).reshape(b, ch, h, w, f * f)
        return blocks @ hb.T

    def decode(c: Tensor) -> Tensor:
        blocks = (c @ hb).reshape(b, ch, h, w, f, f).permute(0, 1, 2, 4, 3, 5)
        return blocks.reshape(b, ch, h * f, w * f)

    observed = torch.zeros(f * f, dtype=torch.bool, device=low_res.device)
    observed[0] = True
    known = torch.zeros(b, ch, h, w, f * f, dtype=low_res.dtype, device=low_res.device)
    known[..., 0] = f * low_res
    return Constraint(observed, known, encode, decode)


# -- replacement sampling -------------------------------------------------------------------
def constrained_eps_model(eps_model, sde: SDE, constraint: Constraint,
                          generator: torch.Generator | None = None, last_noise: dict | None = None):
    """The model on coordinates c: ε̂_c(c, t) = T ε̂(Tᵀ c̃_t, t), with the observed coordinates
    of c̃_t set to m_t k + σ_t z, a fresh z ~ N(0, I) per call. ``last_noise`` (a dict), if
    given, receives the latest z under key ``"z"``."""

    def eps(c: Tensor, t: Tensor, y=None) -> Tensor:
        m, s = sde.marginal(t)
        z = torch.randn(c.shape, generator=generator, dtype=c.dtype, device=c.device)
        if last_noise is not None:
            last_noise["z"] = z
        xt = constraint.decode(constraint.impose(c, expand_like(m.to(c.dtype), c),
                                                 expand_like(s.to(c.dtype), c), z))
        return constraint.encode(eps_model(xt, t) if y is None else eps_model(xt, t, y))

    return eps


def sample_with_constraint(eps_model, sde: SDE, constraint: Constraint, *, method: str = "ddim",
                           steps: int = 50, generator: torch.Generator | None = None,
                           resample_steps: int = 1, jump: int = 1, callback=None,
                           progress: bool = False, info: dict | None = None, **kwargs) -> Tensor:
    """Sample x whose observed coordinates are k, by replacement, with sampler ``method``
    (``kwargs`` go to it: ``y``, ``t_end``, ``grid``, ``eta``, …). x_1 is drawn in the
    basis c. ``callback(step, t, x, x0_hat)`` sees images with the observed part replaced
    (a forward sample in x, k itself in x̂_0). ``resample_steps > 1`` turns on RePaint
    (``jump``: how many grid steps each jump goes back)."""
    if not isinstance(method, str) or method not in SAMPLERS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(SAMPLERS)}")
    resample_steps = check_int(resample_steps, "resample_steps", minimum=1)
    jump = check_int(jump, "jump", minimum=1)
    steps = check_int(steps, "steps")
    known = constraint.known
    c = sde.prior_sample(known.shape, generator=generator, dtype=known.dtype, device=known.device)
    seen: dict = {}
    model = constrained_eps_model(eps_model, sde, constraint, generator, seen)
    shown = None
    if callback is not None:
        if not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")

        def shown(step, t, ct, c0_hat):
            co = coefficients(sde, t)
            z = seen.get("z", torch.zeros_like(ct))
            callback(step, t, constraint.decode(constraint.impose(ct, co.m, co.sigma, z)),
                     constraint.decode(constraint.finish(c0_hat)))

    if resample_steps == 1:
        out = SAMPLERS[method](model, sde, c, steps=steps, generator=generator, callback=shown,
                               progress=progress, info=info, **kwargs)
    else:
        out = _repaint(model, sde, c, method, steps, resample_steps, jump, generator, shown,
                       info, **kwargs)
    return constraint.decode(constraint.finish(out))


def _repaint(model, sde, x, method, steps, resample_steps, jump, generator, callback, info,
             y=None, t_end=None, grid="uniform", eta=0.0, **rest):
    if method not in REPAINT_METHODS:
        raise ValueError(f"RePaint resampling supports method in {REPAINT_METHODS}, got {method!r}")
    if rest:
        raise TypeError(f"unexpected arguments for RePaint with {method!r}: {sorted(rest)}")
    eta = check_positive(eta, "eta", allow_zero=True)
    ts = time_grid(sde, check_int(steps, "steps"), t_end, grid).tolist()
    path = _repaint_path(steps, resample_steps, jump)
    noise = lambda: torch.randn(x.shape, generator=generator, dtype=x.dtype,  # noqa: E731
                                device=x.device)
    nfe = 0
    for n, (a, b) in enumerate(zip(path[:-1], path[1:], strict=True)):
        if b < a:  # jump back up with the forward kernel q(x_t' | x_t), t' > t
            x = forward_jump(sde, x, ts[a], ts[b], generator)
            continue
        cs, ct = coefficients(sde, ts[a]), coefficients(sde, ts[b])
        tb = torch.full((x.shape[0],), ts[a], dtype=x.dtype, device=x.device)
        eps = model(x, tb) if y is None else model(x, tb, y)
        nfe += 1
        x0 = (x - cs.sigma * eps) / cs.m
        x = _descend(method, x, eps, x0, cs, ct, ts[a] - ts[b], eta, noise)
        if callback is not None:
            callback(n, ts[b], x, x0)
    if info is not None:
        info.update(nfe=nfe, steps=steps, method=method, grid=grid, t_end=ts[-1],
                    resample_steps=resample_steps, jump=jump, moves=len(path) - 1)
    return x


def _descend(method, x, eps, x0, cs, ct, dt, eta, noise):
    """One step s → t of the named sampler (the same formulas as samplers.py)."""
    h = ct.lam - cs.lam
    if method == "ddim":
        frac = eta**2 * -math.expm1(-2.0 * h)
        if frac > 1.0:
            raise ValueError(f"eta={eta} is too large (c > σ_t); use eta <= 1")
        x = ct.m * x0 + ct.sigma * math.sqrt(1.0 - frac) * eps
        return x + ct.sigma * math.sqrt(frac) * noise() if eta > 0 else x
    if method == "ancestral":
        var_st = cs.sigma**2 * -math.expm1(-2.0 * h)
        mean = (x - var_st / cs.sigma * eps) / (cs.m / ct.m)
        return mean + math.sqrt(var_st * ct.sigma**2 / cs.sigma**2) * noise()
    score = -eps / cs.sigma  # euler_maruyama
    return x - (cs.f * x - cs.g2 * score) * dt + math.sqrt(cs.g2 * dt) * noise()


INPAINT_METHODS = ("replacement", "repaint", "projection", "dps", "dps_projection",
                   "projection_best_of", "dps_projection_best_of", "projection_by_class")
DEFAULT_INPAINT_METHOD = "projection_by_class"  # needs a class-conditional model (num_classes)
UNCONDITIONAL_INPAINT_METHOD = "projection_best_of"  # the default without classes
_BEST_OF = {"projection_best_of": inpainting.projection_best_of,
            "dps_projection_best_of": inpainting.dps_projection_best_of,
            "projection_by_class": class_inpainting.projection_by_class}


def default_inpaint_method(num_classes: int | None) -> str:
    """The method :func:`inpaint` uses when none is given: ``DEFAULT_INPAINT_METHOD``
    (one completion per class, the class chosen by the model) for a class-conditional model
    (``num_classes`` set), ``UNCONDITIONAL_INPAINT_METHOD`` otherwise."""
    return UNCONDITIONAL_INPAINT_METHOD if num_classes is None else DEFAULT_INPAINT_METHOD


def default_inpaint_steps(method: str = DEFAULT_INPAINT_METHOD) -> int:
    """The grid steps :func:`inpaint` uses for ``method`` when ``steps`` is not given: the
    best-of methods' own defaults, 20 for the others."""
    if method in _BEST_OF:
        return int(inspect.signature(_BEST_OF[method]).parameters["steps"].default)
    return 20


def inpaint(eps_model, sde: SDE, x_known: Tensor, mask: Tensor,
            method: str | None = None, *, steps: int | None = None,
            sampler: str | None = None,
            **kwargs) -> Tensor:
    """Fill the pixels where ``mask`` = 1 given ``x_known`` elsewhere; known pixels of the
    output equal ``x_known`` exactly. ``method``:

    ``"replacement"``  forward-sampled known pixels at every call (Song et al. 2021), with any
                       ``sampler`` in SAMPLERS (default ``"ancestral"``); kwargs:
                       :func:`sample_with_constraint`
    ``"repaint"``      the same with RePaint resampling, ``resample_steps`` default 5
    ``"projection"``   x̂_0-projection, :func:`diffusion_lab.inpainting.ddnm`
    ``"dps"``          :func:`diffusion_lab.inpainting.dps` (a backward pass per step)
    ``"dps_projection"`` both, :func:`diffusion_lab.inpainting.dps_projection`
    ``"projection_best_of"`` the default without classes: 6 ``"projection"`` completions, the
                       most consistent kept, :func:`diffusion_lab.inpainting.projection_best_of`
    ``"dps_projection_best_of"`` the same with ``"dps_projection"`` candidates
    ``"projection_by_class"`` the default for a class-conditional ``eps_model(x, t, y)``
                       (``num_classes=`` given): one ``"projection"`` completion per class,
                       the class of smallest known-pixel denoising error kept,
                       :func:`diffusion_lab.class_inpainting.projection_by_class`

    ``method=None``: :func:`default_inpaint_method` (``"projection_by_class"`` when
    ``num_classes`` is given, else ``"projection_best_of"``).
    ``steps=None``: :func:`default_inpaint_steps` (10 for the best-of defaults, else 20).

    The x̂_0 methods also take ``resample_steps``/``jump`` (time travel), ``eta``, ``grid``.

    A sampler name as ``method`` (``"ancestral"``, ``"ddim"``, …) means replacement with that
    sampler, as before the x̂_0 methods existed."""
    if method is None:
        method = default_inpaint_method(kwargs.get("num_classes"))
    if isinstance(method, str) and method in SAMPLERS:
        if sampler is not None:
            raise TypeError(f"method={method!r} is a sampler name (replacement with it); pass "
                            f"sampler only with method='replacement' or 'repaint'")
        method, sampler = "replacement", method
    if not isinstance(method, str) or method not in INPAINT_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(INPAINT_METHODS)} "
                         f"or a sampler name ({', '.join(SAMPLERS)}) for replacement with it")
    if "num_classes" in kwargs and method != "projection_by_class":
        raise TypeError(f"num_classes applies to method='projection_by_class' only, not {method!r}")
    constraint = inpainting_constraint(x_known, mask)
    steps = default_inpaint_steps(method) if steps is None else steps
    if method in ("replacement", "repaint"):
        if method == "repaint":
            kwargs.setdefault("resample_steps", 5)
        return sample_with_constraint(eps_model, sde, constraint, steps=steps,
                                      method="ancestral" if sampler is None else sampler, **kwargs)
    if sampler is not None:
        raise TypeError(f"sampler applies to method='replacement' or 'repaint' only; {method!r} "
                        f"takes DDIM steps written through x̂_0 (eta sets their noise)")
    fn = {"projection": inpainting.ddnm, "dps": inpainting.dps,
          "dps_projection": inpainting.dps_projection, **_BEST_OF}[method]
    return fn(eps_model, sde, constraint, steps=steps, **kwargs)


def colorize(eps_model, sde: SDE, gray: Tensor, **kwargs) -> Tensor:
    """RGB ``[B, 3, H, W]`` whose luminance w·x equals ``gray``'s (``[B, 1, H, W]`` in [-1, 1],
    or ``[B, 3, H, W]`` to take the luminance of); the two chroma coordinates are generated."""
    return sample_with_constraint(eps_model, sde, colorization_constraint(gray), **kwargs)


def super_resolve(eps_model, sde: SDE, low_res: Tensor, factor: int = 2, **kwargs) -> Tensor:
    """An image ``factor`` times larger whose ``factor``×``factor`` average pooling is exactly
    ``low_res``; the high-frequency part is generated."""
    return sample_with_constraint(eps_model, sde, super_resolution_constraint(low_res, factor),
                                  **kwargs)


def shrink_into_range(x: Tensor, anchor: Tensor, group: Callable[[Tensor], Tensor]) -> Tensor:
    """anchor + s (x − anchor) with the largest s ∈ [0, 1] that keeps every entry in [-1, 1];
    ``group`` maps the per-entry bounds to one s per group (their minimum, broadcast back).

    A range fix that keeps a linear observation L x = L anchor exactly when L acts within
    groups (colorization: anchor = grey (Y, Y, Y), group = a pixel's channels, since the luma
    weights sum to 1; super-resolution: anchor = A⁺ y, group = an f×f block).
    ``anchor`` must lie in [-1, 1]."""
    _check_range(anchor, "anchor")
    d = x - anchor
    room = torch.where(d > 0, (1.0 - anchor) / d, (-1.0 - anchor) / d)
    s = torch.where(d == 0, torch.ones_like(d), room).clamp(max=1.0)  # s ≤ 1: never amplify
    # the clamp only removes rounding overshoot (≤ a few ulp): anchor + s d lies in [-1, 1]
    return (anchor + group(s) * d).clamp(-1.0, 1.0)


# -- guidance and interpolation ---------------------------------------------------------------
def classifier_free_guidance(eps_model, guidance: float, null_label: int):
    """ε̃(x, t, y) = ε(x, t, ∅) + w [ε(x, t, y) − ε(x, t, ∅)], w = ``guidance``, one batched
    call of 2B rows (:func:`~diffusion_lab.model.guided_eps_model`). **w = 1 is the
    conditional model, w = 0 the unconditional one**; y = None means ∅ (unconditional)."""
    w = float(guidance)
    if not math.isfinite(w):
        raise ValueError(f"guidance must be finite, got {guidance!r}")

    def eps(x: Tensor, t: Tensor, y=None) -> Tensor:
        if y is None:
            return eps_model(x, t, torch.full((x.shape[0],), null_label, device=x.device))
        y = torch.as_tensor(y, dtype=torch.long, device=x.device).reshape(-1)
        return guided_eps_model(eps_model, y.expand(x.shape[0]), w, null_label)(x, t)

    return eps


def slerp(z0: Tensor, z1: Tensor, alpha) -> Tensor:
    """Spherical interpolation of two noise tensors (each one vector of D entries):

        slerp = sin((1 − α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1,   cos θ = z0·z1 / (‖z0‖‖z1‖).

    Equal norms r stay r along the path (a linear path dips to ≈ r/√2 for independent
    Gaussians). α a float → z0's shape; α a 1-D sequence of K values → ``[K, *z0.shape]``.
    α = 0 and 1 return z0 and z1 exactly; θ ≈ 0 falls back to linear interpolation."""
    check_finite(z0, "z0")
    check_finite(z1, "z1")
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {list(z0.shape)} and "
                         f"{list(z1.shape)}")
    scalar = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1)
    if a.numel() == 0 or not bool(torch.isfinite(a).all()) or bool(((a < 0) | (a > 1)).any()):
        raise ValueError(f"alpha must be values in [0, 1], got {alpha!r}")
    a0, a1 = z0.double().flatten(), z1.double().flatten()
    n0, n1 = a0.norm(), a1.norm()
    if n0 == 0 or n1 == 0:
        raise ValueError("slerp needs non-zero z0 and z1")
    theta = torch.arccos((a0 @ a1 / (n0 * n1)).clamp(-1.0, 1.0))  # rounding may exceed ±1
    if float(math.pi - theta) < 1e-6:
        raise ValueError("z0 and z1 point in opposite directions: the great circle is undefined")
    if float(theta) < 1e-6:
        c0, c1 = 1.0 - a, a
    else:
        c0 = torch.sin((1.0 - a) * theta) / torch.sin(theta)
        c1 = torch.sin(a * theta) / torch.sin(theta)
    shape = (-1,) + (1,) * z0.dim()
    out = c0.to(z0.dtype).reshape(shape) * z0 + c1.to(z0.dtype).reshape(shape) * z1
    return out[0] if scalar else out


def ddim_invert(eps_model, sde: SDE, x0: Tensor, steps: int, *, y=None, t_end=None,
                grid: str | None = None, callback=None) -> Tensor:
    r"""DDIM inversion: x at ``t_end`` (the data end of the sampler grid) → noise at t = 1 with
    the deterministic DDIM step run forward in time on the reversed grid, s < t:

        x_t = m_t x̂_0 + σ_t ε̂(x_s, s),   x̂_0 = (x_s − σ_s ε̂)/m_s.

    ``grid=None`` is DDIM's own default (``DEFAULT_GRIDS["ddim"]``), so that
    ``ddim(eps_model, sde, x_1, steps=steps, t_end=t_end)`` — the same grid, with the same
    defaults — maps it back; pass the same ``grid`` to both otherwise. The round-trip error is
    O(1/steps) (ε̂ is taken at the lower end of each step going up, at the upper end going
    down; :mod:`diffusion_lab.interpolation`). ``callback(step, t, x, x0_hat)`` sees each new
    state."""
    from .interpolation import ddim_walk  # interpolation.py needs samplers, not tasks

    kind = DEFAULT_GRIDS["ddim"] if grid is None else grid
    ts = time_grid(sde, check_int(steps, "steps"), t_end, kind).flip(0).tolist()
    return ddim_walk(eps_model, sde, x0, ts, y=y, callback=callback)
