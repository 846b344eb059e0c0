"""The schema of every JSON file a checkpoint holds: one validator (pydantic, strict) per file kind.

``config.json``           :class:`CheckpointConfig` (network, SDE, data, files, training info)
``train_state.json``      :class:`TrainState` (+ :func:`validate_train_state` for its tensors)
``optimizer.json``        :class:`OptimizerSpec`
``complete.json``         :class:`Marker` (the completeness marker of a save)
classifier ``config.json`` :class:`ClassifierConfig`
baseline ``config.json``   :class:`BaselineConfig` (a non-diffusion generator: no SDE)

Strict means: no coercion (``"3"`` is not an int, ``true`` is not a number, ``1.5`` is
not an int), no unknown keys where the format is fixed, finite numbers only, sizes
bounded. The built-in networks have a config schema each (:data:`NET_CONFIGS`) whose
bounds keep a size check cheap before anything is allocated; a registered class of your
own gets its keys checked against its constructor's signature. Every error is a
:class:`CheckpointError` (a ``ValueError``) naming the file and the field.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "validate", "CheckpointConfig",
           "TrainState", "RunSpec", "OptimizerSpec", "Marker", "ClassifierConfig", "NET_CONFIGS",
           "BaselineConfig",
           "validate_net_config", "validate_train_state", "validate_marker"]

FORMAT = "diffusion_lab.checkpoint"
FORMAT_VERSION = 2  # 2: every save has a completeness marker (complete.json); 1: none
MAX_STEPS = 10**9


class CheckpointError(ValueError):
    """A checkpoint file is malformed: the message names the file and the field(s)."""

    def __init__(self, file, field: str, problem: str, *, fields_named: bool = False):
        self.file, self.field = str(file), field
        where = f"{file}: " if fields_named or not field else f"{file}: field {field!r}: "
        super().__init__(where + problem)


def _loc(loc) -> str:
    return ".".join(str(p) for p in loc)


def validate(model: type[BaseModel], obj, file, prefix: str = ""):
    """``model.model_validate(obj)``, errors turned into one :class:`CheckpointError` whose
    message names every bad field (the first five) with what was found there."""
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        merged: dict[str, list] = {}  # one entry per field: a union's branches joined
        for e in err.errors():
            loc = list(e["loc"])
            while loc and isinstance(loc[-1], str) and (loc[-1] in _UNION_TAGS or "[" in loc[-1]):
                loc.pop()
            key = _loc(((prefix,) if prefix else ()) + tuple(loc)) or "(top level)"
            msg = e["msg"][0].lower() + e["msg"][1:]
            if key in merged:
                merged[key][0].append(msg.removeprefix("input should be a valid "))
            else:
                shown = "" if e["type"] == "missing" else f" (got {repr(e['input'])[:60]})"
                merged[key] = ([msg], shown)
        problems = [f"field {k!r}: {' or '.join(msgs)}{shown}"
                    for k, (msgs, shown) in list(merged.items())[:5]]
        more = f" (+{len(merged) - 5} more)" if len(merged) > 5 else ""
        raise CheckpointError(file, next(iter(merged)), "; ".join(problems) + more,
                              fields_named=True) from None


_UNION_TAGS = {"float", "int", "str", "bool", "none", "list", "dict"}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True,
                              populate_by_name=True)


def _int(lo: int, hi: int):
    return Annotated[int, Field(ge=lo, le=hi)]


Name = Annotated[str, Field(min_length=1, max_length=100)]
Scalar = float | int | str | bool | None
Unit = Annotated[float, Field(ge=0.0, lt=1.0)]
Size = _int(1, 65536)
Classes = _int(1, 10**6) | None


# -- the built-in networks' configs ------------------------------------------------------------
class MLPConfig(_Strict):
    dim: Size
    hidden: Size
    layers: _int(1, 256)
    time_dim: Size
    num_classes: Classes


class UNetConfig(_Strict):
    in_channels: _int(1, 64)
    out_channels: _int(1, 64)
    base_channels: _int(1, 4096)
    channel_mults: Annotated[list[_int(1, 64)], Field(min_length=1, max_length=8)]
    num_res_blocks: _int(1, 16)
    attention_resolutions: Annotated[list[_int(1, 4096)], Field(max_length=8)]
    dropout: Unit
    num_classes: Classes
    image_size: _int(1, 4096)
    groups: _int(1, 4096)
    heads: _int(1, 256)


class MNISTClassifierConfig(_Strict):
    widths: Annotated[list[_int(1, 4096)], Field(min_length=2, max_length=2)]
    feature_dim: _int(1, 4096)
    num_classes: _int(2, 10**6)
    dropout: Unit


class MNISTVAEConfig(_Strict):
    latent_dim: _int(1, 4096)
    widths: Annotated[list[_int(1, 4096)], Field(min_length=2, max_length=2)]


NET_CONFIGS = {"MLP": MLPConfig, "UNet": UNetConfig, "MNISTClassifier": MNISTClassifierConfig,
               "MNISTVAE": MNISTVAEConfig}


def validate_net_config(name: str, cls: type, config, file, field: str) -> dict:
    """The constructor kwargs for network class ``name``: its schema when built in, else the
    keys checked against ``cls.__init__``'s signature."""
    if name in NET_CONFIGS:
        return validate(NET_CONFIGS[name], config, file, field).model_dump()
    if not isinstance(config, dict):
        raise CheckpointError(file, field, f"must be an object, got {type(config).__name__}")
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(config) - set(params) - {"self"})
        if unknown:
            raise CheckpointError(file, f"{field}.{unknown[0]}",
                                  f"{name}() takes no argument(s) {unknown}")
    return dict(config)


# -- config.json -------------------------------------------------------------------------------
class NetSpec(_Strict):
    class_: Name = Field(alias="class")
    config: dict[str, JsonValue]


class ScheduleSpec(_Strict):
    class_: Name = Field(alias="class")
    config: Annotated[dict[str, Scalar], Field(max_length=16)]


class SDESpec(_Strict):
    class_: Name = Field(alias="class")
    config: Annotated[dict[str, Scalar], Field(max_length=16)]
    schedule: ScheduleSpec | None = None


class DataSpec(_Strict):
    shape: Annotated[list[Size], Field(min_length=1, max_length=4)] | None = None
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    class_names: Annotated[list[Annotated[str, Field(max_length=200)]],
                           Field(max_length=10**6)] | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {self.range}")
        return self


class FilesSpec(_Strict):
    weights: Literal["model.safetensors"]
    ema: Literal["ema.safetensors"] | None = None
    optimizer: Literal["optimizer.safetensors"] | None = None
    train_state: Literal["train_state.json"] | None = None


class TrainingInfo(BaseModel):
    """Free-form run information; the fields the package reads back are typed."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)
    __pydantic_extra__: dict[str, JsonValue]
    steps: _int(0, MAX_STEPS) | None = None
    seed: _int(0, 2**64 - 1) | None = None


class CheckpointConfig(_Strict):
    format: Literal["diffusion_lab.checkpoint"]
    format_version: _int(1, FORMAT_VERSION)
    package_version: Annotated[str, Field(max_length=100)] | None = None
    net: NetSpec
    sde: SDESpec
    data: DataSpec = DataSpec()
    training: TrainingInfo = TrainingInfo()
    files: FilesSpec
    extra: dict[str, JsonValue] = {}


class Marker(_Strict):
    format: Literal["diffusion_lab.complete"]
    saved_ns: _int(0, 2**63 - 1)
    files: Annotated[dict[Name, _int(0, 2**62)], Field(max_length=64)]


def validate_marker(obj, file) -> Marker:
    return validate(Marker, obj, file)


# -- train_state.json and its tensors ------------------------------------------------------------
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class DataFingerprint(_Strict):
    n: _int(1, 2**40)
    shape: Annotated[list[_int(1, 2**31)], Field(max_length=8)]
    dtype: Name
    sha256: Sha256


class LabelsFingerprint(_Strict):
    num_classes: _int(1, 10**6)
    sha256: Sha256


class RunSpec(_Strict):
    """What defines a training run: a resumed run must match it in every field."""

    sde: dict[str, JsonValue]
    data: DataFingerprint
    labels: LabelsFingerprint | None
    seed: _int(0, 2**64 - 1)
    batch_size: _int(1, 2**31)
    lr: Annotated[float, Field(gt=0.0)]
    weight_decay: Annotated[float, Field(ge=0.0)]
    warmup: _int(0, MAX_STEPS)
    grad_clip: Annotated[float, Field(gt=0.0)] | None
    ema_decay: Unit
    t_min: Annotated[float, Field(gt=0.0, lt=1.0)]
    label_dropout: Annotated[float, Field(ge=0.0, le=1.0)] | None
    target: Literal["eps", "velocity"] = "eps"  # runs saved before it existed trained ε
    # saved before these existed: constant lr, unweighted loss (resume.RUN_DEFAULTS)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    schedule_steps: _int(1, MAX_STEPS) | None = None
    loss_weighting: Literal["uniform", "min_snr"] = "uniform"
    min_snr_gamma: Annotated[float, Field(gt=0.0)] | None = None


class TrainState(_Strict):
    step: _int(0, MAX_STEPS)
    wall_time: Annotated[float, Field(ge=0.0)]
    ema_decay: Unit
    run: RunSpec


def _rng_state_shape() -> tuple[int, ...]:
    return tuple(torch.Generator().get_state().shape)


def validate_train_state(obj, tensors: dict, file, tensor_file) -> dict:
    """Check ``train_state.json`` (schema) and its tensors (RNG states: uint8 of the right
    size; ``loss_history``: finite float64 of length ``step``); returns the merged dict."""
    state = validate(TrainState, obj, file)
    expected = {"generator_state", "torch_cpu_rng_state", "loss_history"}
    extra = sorted(set(tensors) - expected - {"torch_cuda_rng_state"})
    missing = sorted(expected - set(tensors))
    if missing:
        raise CheckpointError(tensor_file, missing[0], "missing tensor")
    if extra:
        raise CheckpointError(tensor_file, extra[0], f"unexpected tensor; expected only "
                              f"{sorted(expected)} (+ torch_cuda_rng_state)")
    for key in ("generator_state", "torch_cpu_rng_state", "torch_cuda_rng_state"):
        if key not in tensors:
            continue
        v = tensors[key]
        shape_ok = v.dim() == 1 and (key == "torch_cuda_rng_state" or
                                     tuple(v.shape) == _rng_state_shape())
        if v.dtype != torch.uint8 or not shape_ok:
            raise CheckpointError(tensor_file, key, f"must be a uint8 RNG state of shape "
                                  f"{list(_rng_state_shape())}, got {v.dtype} {list(v.shape)}")
    hist = tensors["loss_history"]
    if hist.dtype != torch.float64 or hist.dim() != 1 or hist.shape[0] != state.step:
        raise CheckpointError(tensor_file, "loss_history",
                              f"must be float64 of length step = {state.step}, got "
                              f"{hist.dtype} {list(hist.shape)}")
    if not bool(torch.isfinite(hist).all()):
        bad = int((~torch.isfinite(hist)).nonzero()[0])
        raise CheckpointError(tensor_file, "loss_history",
                              f"non-finite loss {float(hist[bad])} at step {bad + 1}")
    return {**state.model_dump(), **tensors}


# -- optimizer.json ------------------------------------------------------------------------------
class ParamGroup(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)
    __pydantic_extra__: dict[str, Scalar]
    params: Annotated[list[_int(0, 2**31)], Field(min_length=1)]
    lr: Annotated[float, Field(gt=0.0)]
    betas: Annotated[list[Unit], Field(min_length=2, max_length=2)]
    eps: Annotated[float, Field(gt=0.0)]
    weight_decay: Annotated[float, Field(ge=0.0)]


class OptimizerSpec(_Strict):
    class_: Literal["AdamW"] = Field(alias="class")
    param_groups: Annotated[list[ParamGroup], Field(min_length=1, max_length=64)]
    state_scalars: dict[Annotated[str, Field(pattern=r"^\d{1,9}$")], dict[Name, Scalar]]


# -- the bundled classifier's config.json ----------------------------------------------------------
class ClassifierConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True,
                              populate_by_name=True)
    __pydantic_extra__: dict[str, JsonValue]
    class_: Name = Field(alias="class")
    kwargs: dict[str, JsonValue]


# -- a bundled non-diffusion baseline's config.json (diffusion_lab.baselines) ---------------------
class BaselineFiles(_Strict):
    weights: Literal["model.safetensors"]


class BaselineConfig(_Strict):
    format: Literal["diffusion_lab.baseline"]
    class_: Name = Field(alias="class")
    config: dict[str, JsonValue]
    data: DataSpec = DataSpec()
    training: TrainingInfo = TrainingInfo()
    files: BaselineFiles


def dump(model: BaseModel) -> dict[str, Any]:
    """The validated model as plain JSON data (aliases such as ``class`` restored)."""
    return model.model_dump(by_alias=True)
