"""Every request the service accepts, validated here and nowhere else.

Two stages, both in this module:

1. **Shape of the request** — pydantic models (strict: JSON numbers only, no string
   coercion, no booleans as ints, unknown fields refused, NaN/inf refused).
2. **Against the chosen model** — :func:`check_against` compares the request with the
   model's :class:`~diffusion_lab.service.catalog.ModelCard` (label range, whether the
   model is class-conditional, image vs. 2-D points, the images' size).

Either stage raises a :class:`RequestError` (or pydantic's ``ValidationError``), which the
app turns into a 4xx JSON body ``{"error", "field", "message", "errors"}`` naming the field.

Limits (:data:`LIMITS`, also served by ``GET /api/models``):

    n           1 … 16 images per request (image models), 1 … 2000 points (2-D models)
    steps       1 … 200
    guidance    0 … 20 (w = 1: the conditional model, w = 0: unconditional)
    seed        0 … 2³² − 1, or null (the server draws one and returns it)
    body        1 MiB per request (larger → 413)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..samplers import SAMPLERS, check_arguments


@dataclass(frozen=True)
class Limits:
    max_images: int = 16
    max_points: int = 2000
    max_steps: int = 200
    max_guidance: float = 20.0
    max_seed: int = 2**32 - 1
    max_body_bytes: int = 1 << 20

    def as_dict(self) -> dict:
        return asdict(self)


LIMITS = Limits()
MASK_PRESETS = ("left", "right", "top", "bottom", "center")
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class RequestError(Exception):
    """A client error: HTTP ``status``, the offending ``field`` and a readable ``message``."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


Method = Literal[tuple(SAMPLERS)]  # type: ignore[valid-type]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN,
                                 description="a bundled model's name (GET /api/models); "
                                             "letters, digits, '_' and '-' only, never a path")]
Label = Annotated[int, Field(ge=0)]
Labels = Label | Annotated[list[Label], Field(min_length=1, max_length=LIMITS.max_points)] | None
Guidance = Annotated[float, Field(ge=0.0, le=LIMITS.max_guidance, allow_inf_nan=False)] | None
Seed = Annotated[int, Field(ge=0, le=LIMITS.max_seed)] | None
Steps = Annotated[int, Field(ge=1, le=LIMITS.max_steps)]
PngDataUrl = Annotated[str, Field(min_length=1, description="data:image/png;base64,...")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: ModelName
    method: Method = "dpm_solver"
    steps: Steps = 20
    seed: Seed = None
    labels: Labels = Field(None, description="one class for all samples, one per sample, or null")
    guidance: Guidance = Field(None, description="classifier-free guidance weight w (needs labels)")


class GenerateRequest(_Request):
    """``POST /api/generate`` and ``/api/generate/stream``."""

    n: Annotated[int, Field(ge=1, le=LIMITS.max_points)] = 4


class _TaskRequest(_Request):
    method: Method = "ancestral"
    steps: Steps = 50
    images: Annotated[list[PngDataUrl], Field(min_length=1, max_length=LIMITS.max_images)]


class InpaintRequest(_TaskRequest):
    """``POST /api/inpaint``: fill where ``mask`` is white (1 = generate, 0 = keep)."""

    mask: Literal[MASK_PRESETS] | PngDataUrl = "right"  # type: ignore[valid-type]


class ColorizeRequest(_TaskRequest):
    """``POST /api/colorize``: RGB images whose luminance equals the given (grey) images."""


class Job(BaseModel):
    """A request after :func:`check_against`: what the worker runs."""

    model_config = ConfigDict(frozen=True)

    task: Literal["generate", "inpaint", "colorize"]
    model: str
    n: int
    method: str
    steps: int
    seed: int
    labels: int | list[int] | None
    guidance: float | None


def check_against(request: _Request, card, task: str, seed: int) -> Job:
    """The request's model-dependent checks (``card``: the model's ModelCard); a :class:`Job`.

    ``n`` (images only ≤ max_images), ``labels`` (only for class-conditional models, each in
    [0, num_classes), a list has one entry per sample), ``guidance`` (needs labels), the
    task (inpaint: image models; colorize: RGB image models), and ``steps`` for ``method`` on
    the model's SDE (the sampler's own checks, e.g. restart needs an interior grid point below
    its t_hi: :func:`diffusion_lab.samplers.check_arguments`)."""
    if task not in card.tasks:
        raise RequestError(422, "model", f"model {card.name!r} does not support {task} "
                           f"(it supports: {', '.join(card.tasks)})")
    n = request.n if isinstance(request, GenerateRequest) else len(request.images)
    if card.kind == "image" and n > LIMITS.max_images:
        raise RequestError(422, "n", f"n must be at most {LIMITS.max_images} for image model "
                           f"{card.name!r}, got {n}")
    labels = request.labels
    if labels is not None and card.num_classes is None:
        raise RequestError(422, "labels", f"model {card.name!r} is not class-conditional; "
                           "send labels: null")
    if isinstance(labels, list) and len(labels) != n:
        raise RequestError(422, "labels", f"labels must be one int or a list of n = {n} ints, "
                           f"got a list of {len(labels)}")
    for i, y in enumerate([labels] if isinstance(labels, int) else labels or []):
        if y >= card.num_classes:
            where = "labels" if isinstance(labels, int) else f"labels[{i}]"
            raise RequestError(422, where, f"label {y} is out of range: model {card.name!r} has "
                               f"classes 0 … {card.num_classes - 1}")
    if request.guidance is not None and labels is None:
        raise RequestError(422, "guidance", "guidance needs labels (the class to guide towards)"
                           if card.num_classes is not None else
                           f"model {card.name!r} is not class-conditional; send guidance: null")
    if card.process is not None:  # the sampler's own checks of steps on this model's SDE
        try:
            check_arguments(request.method, card.process, (1, *card.data_shape), request.steps)
        except ValueError as err:
            raise RequestError(422, "steps", f"method {request.method!r} cannot run "
                               f"steps={request.steps} on model {card.name!r}: {err}") from err
    return Job(task=task, model=card.name, n=n, method=request.method, steps=request.steps,
               seed=seed, labels=labels, guidance=request.guidance)


def field_of(loc) -> str:
    """``("body", "labels", "list[int]", 2)`` → ``"labels[2]"``: the field name, then indices
    (pydantic's union-member tags are dropped)."""
    parts = [p for p in loc if p != "body"]
    if not parts:
        return "body"
    name = str(parts[0])
    return name + "".join(f"[{p}]" for p in parts[1:] if isinstance(p, int))
