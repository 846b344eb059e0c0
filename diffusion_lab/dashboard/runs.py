"""What the dashboard computes, without any widget: one checked request → one result.

    request = Request(model="mnist_cond", task="generate", n=4, steps=10, label=3, guidance=2.0)
    check(card, request)                      # ValueError with a sentence for the UI
    result = run(model, card, request, callback=on_step)
    result.images      # [B, C, H, W] in [-1, 1]  (or result.points [n, 2] for 2-D models)

Tasks (:data:`TASKS`):

    generate       n images (``points`` points for 2-D models); class label + guidance w
                   on a class-conditional model
    inpaint        fill a preset mask (:data:`MASKS`) of n *source* images
    colorize       RGB images whose luminance equals the grey version of the sources
    super_resolve  images whose f×f average pooling equals the pooled sources
    interpolate    n frames along the slerp between the prior noises of two seeds, DDIM
    compare        the same seed through several samplers, one row each, with their times

The *sources* of inpaint / colorize / super-resolve are samples of the same model
(DPM-Solver, 10 steps, seed ``source_seed``), so the dashboard needs no data set.
:func:`check` holds every rule on combinations (one place); the model validates the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import luminance
from ..samplers import SAMPLERS
from ..service.imaging import preset_mask
from ..service.schemas import MASK_PRESETS
from ..timegrid import GRIDS

TASKS = ("generate", "inpaint", "colorize", "super_resolve", "interpolate", "compare")
MASKS = (*MASK_PRESETS, "random pixels")
FACTORS = (2, 4)
SOURCE_STEPS = 10
MAX_N = 16
MAX_POINTS = 5000


@dataclass(frozen=True)
class Request:
    """One press of the generate button. ``grid=None``: each sampler's own default grid;
    ``label=None``: unconditional; ``guidance=None``: no guidance (w = 1, one pass)."""

    model: str
    task: str = "generate"
    method: str = "dpm_solver"
    steps: int = 10
    grid: str | None = None
    seed: int = 0
    n: int = 4
    points: int = 1000
    label: int | None = None
    guidance: float | None = None
    mask: str = "center"
    factor: int = 2
    seed_b: int = 1
    source_seed: int = 1000
    methods: tuple[str, ...] = ("ddim", "dpm_solver", "edm")


@dataclass
class Result:
    """Samples plus what it took: ``seconds`` wall time, ``nfe`` network evaluations.
    ``rows`` (compare): one ``(method, samples, seconds, nfe)`` per sampler."""

    request: Request
    samples: Tensor
    seconds: float
    nfe: int | None
    sources: Tensor | None = None
    rows: list = field(default_factory=list)

    @property
    def is_points(self) -> bool:
        return self.samples.dim() == 2


def check(card, req: Request) -> None:
    """Raise ValueError, in words for the page, when ``req`` does not fit model ``card``."""
    if req.task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {req.task!r}")
    methods = req.methods if req.task == "compare" else (req.method,)
    if not methods:
        raise ValueError("compare needs at least one sampler ticked")
    for m in methods:
        if m not in SAMPLERS:
            raise ValueError(f"method must be one of {', '.join(SAMPLERS)}, got {m!r}")
    if req.grid is not None and req.grid not in GRIDS:
        raise ValueError(f"time grid must be one of {', '.join(GRIDS)} or the default, "
                         f"got {req.grid!r}")
    if not 1 <= req.steps <= 200:
        raise ValueError(f"steps must lie in 1 … 200, got {req.steps}")
    if not 1 <= req.n <= MAX_N:
        raise ValueError(f"n must lie in 1 … {MAX_N}, got {req.n}")
    if not 1 <= req.points <= MAX_POINTS:
        raise ValueError(f"points must lie in 1 … {MAX_POINTS}, got {req.points}")
    image = card.kind == "image"
    if req.task in ("inpaint", "colorize", "super_resolve", "interpolate") and not image:
        raise ValueError(f"{req.task} needs an image model; {card.name} makes 2-D points "
                         f"(pick mnist_cond or colour_mnist, or the task generate)")
    if req.task == "colorize" and card.data_shape[0] != 3:
        raise ValueError(f"colorize needs a colour (RGB) model; {card.name} is grey-scale "
                         f"{list(card.data_shape)} (pick colour_mnist)")
    if req.task == "interpolate" and req.n < 2:
        raise ValueError(f"interpolate needs n >= 2 frames, got {req.n}")
    if req.task == "inpaint" and req.mask not in MASKS:
        raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {req.mask!r}")
    if req.task == "super_resolve" and req.factor not in FACTORS:
        raise ValueError(f"factor must be one of {FACTORS}, got {req.factor}")
    if card.num_classes is None and (req.label is not None or req.guidance is not None):
        raise ValueError(f"{card.name} is unconditional: class and guidance need a "
                         f"class-conditional model (pick mnist_cond)")
    if req.guidance is not None and req.label is None:
        raise ValueError("guidance needs a class to guide towards (pick a class)")


def make_mask(name: str, n: int, h: int, w: int, seed: int) -> Tensor:
    """``[n, 1, H, W]`` of 0/1 (1 = generate): a service preset, or half the pixels at random."""
    if name == "random pixels":
        g = torch.Generator().manual_seed(int(seed))
        return (torch.rand(n, 1, h, w, generator=g) < 0.5).float()
    return preset_mask(name, h, w).expand(n, 1, h, w).clone()


def sources(model, req: Request) -> Tensor:
    """The images the image-to-image tasks start from: ``req.n`` samples of the model."""
    return model.generate(req.n, method="dpm_solver", steps=SOURCE_STEPS, seed=req.source_seed,
                          labels=req.label, guidance=req.guidance)


def _sampler_kwargs(req: Request, method: str, callback, info: dict) -> dict:
    return dict(method=method, steps=req.steps, seed=req.seed, labels=req.label,
                guidance=req.guidance, grid=req.grid, callback=callback, info=info)


def _timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), wall seconds)``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def run(model, card, req: Request, callback=None) -> Result:
    """Compute ``req`` on ``model`` (its catalog ``card``); ``callback(step, t, x, x0_hat)``
    sees every sampler step (interpolate: none — DDIM decodes all frames in one call)."""
    check(card, req)
    info: dict = {}
    n = req.n if card.kind == "image" else req.points
    if req.task == "generate":
        x, s = _timed(model.generate, n, **_sampler_kwargs(req, req.method, callback, info))
        return Result(req, x, s, info.get("nfe"))
    if req.task == "compare":
        rows = []
        for method in req.methods:
            info = {}
            x, s = _timed(model.generate, n, **_sampler_kwargs(req, method, callback, info))
            rows.append((method, x, s, info.get("nfe")))
        return Result(req, torch.cat([r[1] for r in rows]), sum(r[2] for r in rows),
                      sum(r[3] or 0 for r in rows), rows=rows)
    if req.task == "interpolate":
        shape = (1, *card.data_shape)
        a = model.sde.prior_sample(shape, generator=torch.Generator().manual_seed(req.seed))
        b = model.sde.prior_sample(shape, generator=torch.Generator().manual_seed(req.seed_b))
        x, s = _timed(model.interpolate, a, b, num=req.n, steps=req.steps, images=False,
                      labels=req.label, guidance=req.guidance, grid=req.grid or "uniform")
        return Result(req, x, s, req.n * req.steps * (1 if req.guidance is None else 2))
    src = sources(model, req)
    _, _, h, w = src.shape
    kw = _sampler_kwargs(req, req.method, callback, info)
    if req.task == "inpaint":
        mask = make_mask(req.mask, req.n, h, w, req.seed)
        shown = torch.where(mask.bool(), torch.full_like(src, -1.0), src)
        x, s = _timed(model.inpaint, src, mask, **kw)
    elif req.task == "colorize":
        shown = luminance(src).expand_as(src)
        x, s = _timed(model.colorize, src, **kw)  # takes the luminance of src
    else:
        low = F.avg_pool2d(src, req.factor)
        shown = F.interpolate(low, scale_factor=req.factor, mode="nearest")
        x, s = _timed(model.super_resolve, low, factor=req.factor, **kw)
    return Result(req, x, s, info.get("nfe"), sources=shown)
