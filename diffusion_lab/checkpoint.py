"""Safe checkpoints: safetensors for tensors, JSON for everything else — never pickle.

A checkpoint is a *directory*; it reads only regular files in it, by fixed names::

    config.json              network class + config(), SDE + schedule, data shape/range,
                             class names, training info, package version
    model.safetensors        the network's weights (strict: every tensor, shape and dtype)
    ema.safetensors          the EMA weights, when there are any
    optimizer.safetensors    AdamW state tensors          } only in resumable
    optimizer.json           param groups, scalar state   } training
    train_state.json         step, EMA decay, wall time,  } checkpoints
                             the run's definition         }
    train_state.safetensors  RNG states (uint8), loss history (float64)
    complete.json            the completeness marker: written last (format version 2)

Loading validates every JSON file against its schema (:mod:`~diffusion_lab.config_schema`),
then builds the network on PyTorch's ``meta`` device (nothing allocated) and compares its
tensor names, shapes and dtypes with the safetensors header *before* reading any weights
or allocating the real network. Classes are rebuilt by name from the name maps of
:mod:`~diffusion_lab.sde` / :mod:`~diffusion_lab.schedules` or the registry, and must be of
the right kind (an SDE class for ``sde.class``, ...). Nothing is imported or executed from a
file; pickles are refused unopened (:mod:`~diffusion_lab.safe_io` reads the files).

Writes are atomic (:mod:`~diffusion_lab.atomic`): a checkpoint appears under its final name
complete or not at all, other files in it (a model card, sample images) are carried over.
Loading never renames or writes anything; after a save killed between its two renames
(only where an atomic exchange is unavailable), :func:`recover_checkpoint` is the explicit
way back. Checkpoints of format version 1 (no marker: the bundled ones) still load.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ._checks import check_device
from .atomic import MARKER, atomic_write_dir, fsync_file, interrupted_saves, recover_interrupted
from .builders import build_network, load_state_strict, sde_from_json, sde_to_json
from .config_schema import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointConfig,
    CheckpointError,
    OptimizerSpec,
    TrainState,
    validate,
    validate_marker,
    validate_net_config,
    validate_train_state,
)
from .registry import REGISTRY
from .safe_io import PickleRefusedError, open_safetensors, read_json
from .sde import SDE

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "PickleRefusedError",
    "save_checkpoint",
    "load_checkpoint",
    "load_state_strict",
    "recover_checkpoint",
    "build_network",
    "sde_to_json",
    "sde_from_json",
]

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OWNED_FILES = ("config.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors",
               "optimizer.json", "train_state.json", "train_state.safetensors")
_OPT_TENSOR = re.compile(r"^state\.(\d{1,9})\.([A-Za-z_][A-Za-z0-9_]{0,63})$")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns. ``optimizer_state`` is a ``state_dict()`` for
    ``torch.optim.AdamW.load_state_dict``; ``train_state`` holds ``step``, RNG states, ..."""

    path: Path
    net: nn.Module
    sde: SDE
    config: dict
    ema: nn.Module | None = None
    optimizer_state: dict | None = None
    train_state: dict | None = None
    data: dict = field(default_factory=dict)

    @property
    def info(self) -> dict:
        return self.config.get("training", {})


# -- save -----------------------------------------------------------------------------------
def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
        f.write("\n")
    fsync_file(path)


def _write_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    # detached CPU copies: safetensors refuses shared storage (tied weights) and device tensors
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(flat, str(path), metadata={"format": "pt", **(metadata or {})})
    fsync_file(path)


def _package_version() -> str | None:
    import diffusion_lab  # the package is fully imported by the time anything is saved

    return getattr(diffusion_lab, "__version__", None)


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    for g in groups:
        for k, v in g.items():
            if isinstance(v, torch.Tensor):
                raise TypeError(f"optimizer param group entry {k!r} is a tensor; not supported")
    return tensors, {"class": type(optimizer).__name__, "param_groups": groups,
                     "state_scalars": scalars}


def _check_target(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"path {str(path)!r} has a pickle suffix; a checkpoint is a directory "
                         "(e.g. 'runs/mnist'), written with safetensors + JSON")
    if path.is_symlink() or (path.exists() and not (path.is_dir() and (
            (path / "config.json").is_file() or not any(path.iterdir())))):
        raise FileExistsError(f"{path} exists and is neither empty nor a diffusion_lab "
                              "checkpoint; refusing to replace it")


def save_checkpoint(path, net: nn.Module, sde: SDE, *, ema: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    train_state: dict | None = None, step: int | None = None,
                    data_shape=None, data_range=(-1.0, 1.0), class_names=None,
                    info: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``net`` (+ ``ema``, ``optimizer``, ``train_state``) and their config atomically.

    ``net`` must be registered and have ``config()``. ``train_state`` is a dict whose
    tensor values go to ``train_state.safetensors`` and the rest to ``train_state.json``
    (``step`` is stored there too); it is validated against the schema before anything is
    written, like the config. Returns the checkpoint path.
    """
    path = Path(path)
    _check_target(path)
    if not isinstance(net, nn.Module) or not callable(getattr(net, "config", None)):
        raise TypeError(f"net must be an nn.Module with a config() method, "
                        f"got {type(net).__name__}")
    net_name = type(net).__name__
    if REGISTRY.get(net_name) is not type(net):
        raise TypeError(f"network class {net_name} is not registered; decorate it with "
                        "@diffusion_lab.register so the checkpoint can rebuild it")
    if ema is not None and type(ema) is not type(net):
        raise TypeError(f"ema must be a {net_name} like net, got {type(ema).__name__}")
    training = dict(info or {})
    if step is not None:
        training["steps"] = int(step)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": _package_version(),
        "net": {"class": net_name, "config": net.config()},
        "sde": sde_to_json(sde),
        "data": {"shape": None if data_shape is None else [int(s) for s in data_shape],
                 "range": None if data_range is None else [float(v) for v in data_range],
                 "class_names": None if class_names is None else [str(c) for c in class_names]},
        "training": training,
        "files": {"weights": "model.safetensors",
                  "ema": "ema.safetensors" if ema is not None else None,
                  "optimizer": "optimizer.safetensors" if optimizer is not None else None,
                  "train_state": "train_state.json" if train_state is not None else None},
        "extra": dict(extra or {}),
    }
    # fail before touching the disk if anything is not JSON-able or would not load back
    validate(CheckpointConfig, json.loads(json.dumps(config, allow_nan=False)), "config.json")
    validate_net_config(net_name, type(net), config["net"]["config"], "config.json", "net.config")
    state_tensors, state_json = {}, None
    if train_state is not None:
        state_tensors = {k: v for k, v in train_state.items() if isinstance(v, torch.Tensor)}
        state_json = {k: v for k, v in train_state.items() if not isinstance(v, torch.Tensor)}
        if step is not None:
            state_json["step"] = int(step)
        validate(TrainState, json.loads(json.dumps(state_json, allow_nan=False)),
                 "train_state.json")

    def write_into(d: Path) -> None:
        _write_tensors(d / "model.safetensors", net.state_dict())
        if ema is not None:
            _write_tensors(d / "ema.safetensors", ema.state_dict())
        if optimizer is not None:
            tensors, spec = _optimizer_to_files(optimizer)
            _write_tensors(d / "optimizer.safetensors", tensors)
            _write_json(d / "optimizer.json", spec)
        if train_state is not None:
            _write_tensors(d / "train_state.safetensors", state_tensors)
            _write_json(d / "train_state.json", state_json)
        _write_json(d / "config.json", config)

    return atomic_write_dir(path, write_into, OWNED_FILES)


# -- load -------------------------------------------------------------------------------------
def _refuse_pickle(path: Path) -> None:
    raise PickleRefusedError(
        f"refusing to load {str(path)!r}: it is a pickle file. Unpickling can execute arbitrary "
        "code hidden in the file, so diffusion_lab never unpickles anything. A diffusion_lab "
        "checkpoint is a directory with config.json and model.safetensors. If you trust the "
        "file, convert it yourself: torch.load(path, weights_only=True), build the network, "
        "then save_checkpoint(...) / GenerativeModel(net, sde).save(...)."
    )


def recover_checkpoint(path) -> str:
    """Explicitly put back the complete copy of ``path`` that a save killed between its two
    renames left beside it; returns a message saying what was restored."""
    source = recover_interrupted(path)
    return f"restored checkpoint {path} from the interrupted save {source.name}"


def _check_folder(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path)
    if not path.exists():
        found = interrupted_saves(path)
        if found:
            raise FileNotFoundError(
                f"no checkpoint at {str(path)!r}, but a save that was interrupted left a complete "
                f"copy beside it ({found[0].name}); restore it explicitly with "
                f"diffusion_lab.checkpoint.recover_checkpoint({str(path)!r}) or "
                "`python -m diffusion_lab train ... --resume --recover`")
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a directory; a diffusion_lab checkpoint is a "
                         "directory holding config.json and model.safetensors")
    if not (path / "config.json").exists() and not (path / "config.json").is_symlink():
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            _refuse_pickle(path / pickles[0])
        raise FileNotFoundError(f"{str(path)!r} has no config.json; it is not a diffusion_lab "
                                "checkpoint")


def _check_marker(path: Path, config: CheckpointConfig) -> None:
    """Format 2: the marker must be there and list every file the config names."""
    if config.format_version < 2:
        return
    if not (path / MARKER).exists() and not (path / MARKER).is_symlink():
        raise CheckpointError(path / MARKER, "", "missing: the save of this checkpoint never "
                              "finished (format version 2 writes this marker last)")
    marker = validate_marker(read_json(path, MARKER), path / MARKER)
    needed = ["config.json", *(n for n in config.files.model_dump().values() if n)]
    if config.files.optimizer:
        needed.append("optimizer.json")
    if config.files.train_state:
        needed.append("train_state.safetensors")
    for name in needed:
        if name not in marker.files:
            raise CheckpointError(path / MARKER, "files", f"does not list {name}: the save "
                                  "that wrote this marker did not write that file")


def _read_optimizer(path: Path) -> dict:
    spec = validate(OptimizerSpec, read_json(path, "optimizer.json"), path / "optimizer.json")
    with open_safetensors(path, "optimizer.safetensors") as f:
        tensors = f.tensors()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        match = _OPT_TENSOR.match(name)
        if match is None:
            raise CheckpointError(path / "optimizer.safetensors", name,
                                  "tensor names must be state.<index>.<key>")
        state.setdefault(int(match[1]), {})[match[2]] = value
    for idx, extra in spec.state_scalars.items():
        state.setdefault(int(idx), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.model_dump().items()}
              for g in spec.param_groups]
    return {"state": state, "param_groups": groups}


def _read_train_state(path: Path, steps: int | None) -> dict:
    with open_safetensors(path, "train_state.safetensors") as f:
        tensors = f.tensors()
    state = validate_train_state(read_json(path, "train_state.json"), tensors,
                                 path / "train_state.json", path / "train_state.safetensors")
    if steps is not None and state["step"] != steps:
        raise CheckpointError(path / "train_state.json", "step", f"is {state['step']}, but "
                              f"config.json records training.steps = {steps}")
    return state


def load_checkpoint(path, *, device="cpu", training_state: bool = False) -> Checkpoint:
    """Rebuild network, EMA network and SDE from a checkpoint directory (see module docs).

    ``training_state=True`` also reads the optimizer state and the training state
    (needed to resume training). Pickle files are refused unopened.
    """
    path = Path(path)
    device = check_device(device)
    _check_folder(path)
    cfg_file = path / "config.json"
    raw = read_json(path, "config.json")
    config = validate(CheckpointConfig, raw, cfg_file)
    _check_marker(path, config)
    net_spec = {"class": config.net.class_, "config": config.net.config}
    net = build_network(net_spec, path, config.files.weights, file=cfg_file, device=device)
    ema = None
    if config.files.ema:
        ema = build_network(net_spec, path, config.files.ema, file=cfg_file, device=device)
        ema.eval().requires_grad_(False)
    names, classes = config.data.class_names, getattr(net, "num_classes", None)
    if names is not None and classes is not None and len(names) != classes:
        raise CheckpointError(cfg_file, "data.class_names", f"has {len(names)} names, the "
                              f"network has num_classes = {classes}")
    ckpt = Checkpoint(path=path, net=net, sde=sde_from_json(raw["sde"], cfg_file), config=raw,
                      ema=ema, data=config.data.model_dump())
    if training_state:
        if config.files.optimizer:
            ckpt.optimizer_state = _read_optimizer(path)
        if config.files.train_state:
            ckpt.train_state = _read_train_state(path, config.training.steps)
    return ckpt
