"""Rebuilding objects from a checkpoint's names and configs, checked before anything is allocated.

* SDEs and schedules: :func:`sde_to_json` / :func:`sde_from_json`; a class name must name a
  class of the right kind (built in, else registered): an SDE for ``sde.class``, a
  :class:`~diffusion_lab.schedules.Schedule` for ``sde.schedule.class``.
* Networks: :func:`build_network` validates the config (its schema, or the constructor's
  signature for a registered class of your own), builds the network on PyTorch's ``meta``
  device — no memory, no random init — and compares every tensor's name, shape and dtype
  with the safetensors header. Only then are the weights read and the real network built
  (in the file's one floating dtype) and loaded strictly. A config that asks for a larger
  network than the file holds (``hidden=12000`` against a 256-wide file) is an error before
  a byte is allocated; weights stored as ints or bools where the network has floats are
  refused, never cast.

Nothing is imported or executed from a file; errors name the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config_schema import CheckpointError, SDESpec, validate, validate_net_config
from .registry import REGISTRY
from .safe_io import open_safetensors
from .schedules import SCHEDULES, Schedule
from .sde import SDE, SDES

__all__ = ["sde_to_json", "sde_from_json", "build_network", "load_state_strict"]

_SDE_CLASSES = {cls.__name__: cls for cls in SDES.values()}
_SCHEDULE_CLASSES = {cls.__name__: cls for cls in SCHEDULES.values()}


# -- classes by name ------------------------------------------------------------------------
def _class_name(obj, builtin: dict, kind: str) -> str:
    name = type(obj).__name__
    if builtin.get(name) is type(obj) or REGISTRY.get(name) is type(obj):
        return name
    raise TypeError(
        f"cannot save {kind} {name}: it is neither built in ({', '.join(sorted(builtin))}) nor "
        "registered; decorate its class with @diffusion_lab.register"
    )


def _kind(cls: type) -> str:
    for base, word in ((nn.Module, "network"), (SDE, "SDE"), (Schedule, "schedule")):
        if isinstance(cls, type) and issubclass(cls, base):
            return word
    return getattr(cls, "__name__", type(cls).__name__)


def _find_class(name: str, builtin: dict, base: type, file, field: str) -> type:
    """The class called ``name`` (built in, else registered); it must subclass ``base``."""
    cls = builtin.get(name) or REGISTRY.get(name)
    if cls is None:
        known = sorted(builtin) if builtin else sorted(REGISTRY)
        raise CheckpointError(file, field, f"unknown {_kind(base)} class {name!r}; known: "
                              f"{', '.join(known)} (a class of your own must be registered "
                              "with @diffusion_lab.register before loading)")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(file, field, f"{name!r} is a {_kind(cls)} class, not a "
                              f"{_kind(base)} class")
    return cls


def _construct(cls: type, kwargs: dict, file, field: str):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # the constructor's own argument checks
        raise CheckpointError(file, field, f"{cls.__name__}(**config) refused it: {err}") from err


# -- SDE <-> JSON -----------------------------------------------------------------------------
def sde_to_json(sde: SDE) -> dict:
    """``{"class", "config", "schedule": {"class", "config"} | None}`` for an SDE."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    out = {"class": _class_name(sde, _SDE_CLASSES, "SDE"), "schedule": None}
    config = dict(sde.config())
    schedule = getattr(sde, "schedule", None)
    if isinstance(schedule, Schedule):
        sched_config = schedule.config()
        out["schedule"] = {"class": _class_name(schedule, _SCHEDULE_CLASSES, "schedule"),
                           "config": sched_config}
        config = {k: v for k, v in config.items() if k != "schedule" and k not in sched_config}
    out["config"] = config
    return out


def sde_from_json(spec, file="<sde spec>", field: str = "sde") -> SDE:
    """Rebuild an SDE written by :func:`sde_to_json` (validated first; errors name ``field``)."""
    s = validate(SDESpec, spec, file, field)
    cls = _find_class(s.class_, _SDE_CLASSES, SDE, file, f"{field}.class")
    kwargs = dict(s.config)
    if s.schedule is not None:
        sched_cls = _find_class(s.schedule.class_, _SCHEDULE_CLASSES, Schedule, file,
                                f"{field}.schedule.class")
        kwargs["schedule"] = _construct(sched_cls, dict(s.schedule.config), file,
                                        f"{field}.schedule.config")
    return _construct(cls, kwargs, file, f"{field}.config")


# -- networks: checked against the header before anything is allocated -----------------------------
def _expected_state(cls: type, kwargs: dict, file, field: str) -> dict:
    """Tensor name -> (dtype, shape) of ``cls(**kwargs)``, built on the meta device."""
    with torch.device("meta"):
        net = _construct(cls, kwargs, file, field)
    return {k: (v.dtype, tuple(v.shape)) for k, v in net.state_dict().items()}


def _first(items, n: int = 4, sep: str = ", ") -> str:
    items = list(items)
    more = f"{sep}... (+{len(items) - n} more)" if len(items) > n else ""
    return sep.join(items[:n]) + more


def _check_header(expected: dict, header: dict, source, cls_name: str) -> torch.dtype | None:
    """Compare names / shapes / dtypes; returns the one floating dtype of the file."""
    missing = [k for k in expected if k not in header]
    unexpected = [k for k in header if k not in expected]
    wrong, floats = [], set()
    for k, (dtype, shape) in expected.items():
        if k not in header:
            continue
        got_dtype, got_shape = header[k]
        if got_shape != shape:
            wrong.append(f"{k!r}: file {list(got_shape)}, network {list(shape)}")
        if dtype.is_floating_point:
            if not got_dtype.is_floating_point:
                wrong.append(f"{k!r}: stored as {got_dtype}, the network needs floating point")
            floats.add(got_dtype)
        elif got_dtype != dtype:
            wrong.append(f"{k!r}: stored as {got_dtype}, the network needs {dtype}")
    problems = []
    if missing:
        problems.append("missing tensors: " + _first(repr(k) for k in missing))
    if unexpected:
        problems.append("unexpected tensors: " + _first(repr(k) for k in unexpected))
    if wrong:
        problems.append("mismatch for " + _first(wrong, sep="; "))
    if len(floats) > 1:
        problems.append(f"mixed floating dtypes {sorted(map(str, floats))} (one is expected)")
    if problems:
        raise ValueError(f"{source} does not match {cls_name}: " + " | ".join(problems))
    return floats.pop() if floats else None


def build_network(spec: dict, folder, weights: str, *, file,
                  fields: tuple[str, str] = ("net.class", "net.config"), base: type = nn.Module,
                  device="cpu") -> nn.Module:
    """The network ``{"class", "config"}`` with the weights ``folder/weights``: the config is
    validated, the shapes compared with the file's header on the meta device, and only then
    is the network built (in the file's floating dtype) and loaded strictly. ``fields``
    name the class and config entries in ``file`` for error messages."""
    from . import nets  # noqa: F401  (registers the built-in networks)

    class_field, config_field = fields
    cls = _find_class(spec["class"], {}, base, file, class_field)
    kwargs = validate_net_config(spec["class"], cls, spec["config"], file, config_field)
    expected = _expected_state(cls, kwargs, file, config_field)
    with open_safetensors(folder, weights) as f:
        stored = _check_header(expected, f.header, f.path, spec["class"])
        tensors = f.tensors()
    net = _construct(cls, kwargs, file, config_field)
    if stored is not None:
        net = net.to(stored)
    load_state_strict(net, tensors, f"{Path(folder) / weights}")
    return net.to(device)


def load_state_strict(module: nn.Module, tensors: dict, source: str) -> None:
    """``module.load_state_dict(tensors)`` after checking names, shapes and dtypes; the
    error names every missing / unexpected tensor and every mismatch."""
    header = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    expected = {k: (v.dtype, tuple(v.shape)) for k, v in module.state_dict().items()}
    stored = _check_header(expected, header, source, type(module).__name__)
    own = {d for d, _ in expected.values() if d.is_floating_point}
    if stored is not None and own and own != {stored}:
        raise ValueError(f"{source}: tensors are {stored}, {type(module).__name__} is "
                         f"{sorted(map(str, own))}; convert one of them explicitly")
    module.load_state_dict(tensors, strict=True)


