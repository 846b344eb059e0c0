"""Safe checkpoints: safetensors for tensors, JSON for everything else — never pickle.

A checkpoint is a *directory*::

    config.json              network class + config(), SDE + schedule, data shape/range,
                             class names, training info, package version
    model.safetensors        the network's weights (strict: every tensor, every shape)
    ema.safetensors          the EMA weights, when there are any
    optimizer.safetensors    AdamW state tensors          } only in resumable
    optimizer.json           param groups, scalar state   } training
    train_state.json         step, EMA decay, wall time   } checkpoints
    train_state.safetensors  RNG states (uint8), loss history (float64)

Loading rebuilds the network with ``registry.lookup(name)(**config)`` and the SDE
and schedule from the name maps of :mod:`diffusion_lab.sde` and
:mod:`diffusion_lab.schedules` (or the registry, for your own registered
classes). Nothing is imported or executed from a file. Pickle files
(``.pt/.pth/.ckpt/.pkl``) are refused *without* being opened: unpickling runs
arbitrary code chosen by whoever wrote the file.

Writes are atomic: everything goes into a temporary sibling directory, each file
is fsynced, ``config.json`` is written last, and only then is the directory
renamed onto its final name (``os.replace``). When a checkpoint already exists
there, it is first renamed aside and deleted after the new one is in place (or
renamed back if that rename fails); other files in it (a model card, sample
images) are copied into the new checkpoint. Should the process die between the
two renames, the complete previous (or new) checkpoint is left next to the
final name, and :func:`load_checkpoint` / the next save put it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .registry import lookup
from .schedules import SCHEDULES, Schedule
from .sde import SDE, SDES

__all__ = [
    "Checkpoint",
    "PickleRefusedError",
    "save_checkpoint",
    "load_checkpoint",
    "load_state_strict",
    "sde_to_json",
    "sde_from_json",
]

FORMAT = "diffusion_lab.checkpoint"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OWNED_FILES = ("config.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors",
               "optimizer.json", "train_state.json", "train_state.safetensors")
_SDE_CLASSES = {cls.__name__: cls for cls in SDES.values()}
_SCHEDULE_CLASSES = {cls.__name__: cls for cls in SCHEDULES.values()}


class PickleRefusedError(ValueError):
    """A pickle file was offered as a checkpoint; it was not opened."""


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


# -- SDE <-> JSON -------------------------------------------------------------------------
def _class_name(obj, builtin: dict, kind: str) -> str:
    name = type(obj).__name__
    if builtin.get(name) is type(obj):
        return name
    try:
        if lookup(name) is type(obj):
            return name
    except KeyError:
        pass
    raise TypeError(
        f"cannot save {kind} {name}: it is neither built in ({', '.join(sorted(builtin))}) nor "
        "registered; decorate its class with @diffusion_lab.register"
    )


def _find_class(name: str, builtin: dict, kind: str) -> type:
    if name in builtin:
        return builtin[name]
    try:
        return lookup(name)
    except KeyError:
        raise ValueError(
            f"unknown {kind} class {name!r} in checkpoint; built in: {', '.join(sorted(builtin))}; "
            "a class of your own must be registered (@diffusion_lab.register) before loading"
        ) from None


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


def sde_from_json(spec: dict) -> SDE:
    """Rebuild an SDE written by :func:`sde_to_json`."""
    cls = _find_class(spec["class"], _SDE_CLASSES, "SDE")
    kwargs = dict(spec.get("config") or {})
    if spec.get("schedule") is not None:
        sched_cls = _find_class(spec["schedule"]["class"], _SCHEDULE_CLASSES, "schedule")
        kwargs["schedule"] = sched_cls(**spec["schedule"]["config"])
    return cls(**kwargs)


# -- low-level file helpers ---------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    os.chmod(path, 0o666 & ~_umask())  # ordinary file permissions (safetensors writes 0600)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    _fsync_file(path)


def _write_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    # detached CPU copies: safetensors refuses shared storage (tied weights) and device tensors
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(flat, str(path), metadata={"format": "pt", **(metadata or {})})
    _fsync_file(path)


def _read_tensors(path: Path, device="cpu") -> dict:
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _package_version() -> str | None:
    import diffusion_lab  # the package is fully imported by the time anything is saved

    return getattr(diffusion_lab, "__version__", None)


# -- atomic directory replacement ---------------------------------------------------------
def _siblings(path: Path, kind: str) -> list[Path]:
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.{kind}-*"))


def _recover_interrupted(path: Path) -> bool:
    """If ``path`` is missing because a save died between its two renames, put the newest
    complete copy back under ``path``. Returns True when something was restored."""
    if path.exists():
        return False
    complete = [p for p in _siblings(path, "tmp") + _siblings(path, "old")
                if (p / "config.json").is_file()]
    if not complete:
        return False
    newest = max(complete, key=lambda p: (p / "config.json").stat().st_mtime_ns)
    os.replace(newest, path)
    _fsync_dir(path.parent)
    warnings.warn(f"restored checkpoint {path} from an interrupted save ({newest.name})",
                  stacklevel=3)
    return True


def _atomic_write_dir(path: Path, write_into) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted(path)
    if path.exists() and not (path.is_dir() and (
            (path / "config.json").is_file() or not any(path.iterdir()))):
        raise FileExistsError(f"{path} exists and is neither empty nor a diffusion_lab "
                              "checkpoint; refusing to replace it")
    for stale in _siblings(path, "tmp") + _siblings(path, "old"):
        shutil.rmtree(stale)  # leftovers of a crashed save; path holds a complete checkpoint
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        if path.is_dir():  # carry a model card / sample images over
            for entry in path.iterdir():
                if entry.name in OWNED_FILES:
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, tmp / entry.name)
                else:
                    shutil.copy2(entry, tmp / entry.name)
        write_into(tmp)  # writes config.json last
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # roll back: the previous checkpoint stays in place
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp)
        raise


# -- save -----------------------------------------------------------------------------------
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


def _optimizer_from_files(tensors: dict, spec: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, extra in spec.get("state_scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in spec["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path, net: nn.Module, sde: SDE, *, ema: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    train_state: dict | None = None, step: int | None = None,
                    data_shape=None, data_range=(-1.0, 1.0), class_names=None,
                    info: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``net`` (+ ``ema``, ``optimizer``, ``train_state``) and their config atomically.

    ``net`` must be registered and have ``config()``. ``train_state`` is a dict whose
    tensor values go to ``train_state.safetensors`` and the rest to ``train_state.json``
    (``step`` is stored there too). Returns the checkpoint path.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"path {str(path)!r} has a pickle suffix; a checkpoint is a directory "
                         "(e.g. 'runs/mnist'), written with safetensors + JSON")
    if not isinstance(net, nn.Module) or not callable(getattr(net, "config", None)):
        raise TypeError(f"net must be an nn.Module with a config() method, "
                        f"got {type(net).__name__}")
    net_name = type(net).__name__
    try:
        registered = lookup(net_name) is type(net)
    except KeyError:
        registered = False
    if not registered:
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
    json.dumps(config)  # fail before touching the disk if anything is not JSON-able

    def write_into(d: Path) -> None:
        _write_tensors(d / "model.safetensors", net.state_dict())
        if ema is not None:
            _write_tensors(d / "ema.safetensors", ema.state_dict())
        if optimizer is not None:
            tensors, spec = _optimizer_to_files(optimizer)
            _write_tensors(d / "optimizer.safetensors", tensors)
            _write_json(d / "optimizer.json", spec)
        if train_state is not None:
            tensors = {k: v for k, v in train_state.items() if isinstance(v, torch.Tensor)}
            rest = {k: v for k, v in train_state.items() if not isinstance(v, torch.Tensor)}
            if step is not None:
                rest["step"] = int(step)
            _write_tensors(d / "train_state.safetensors", tensors)
            _write_json(d / "train_state.json", rest)
        _write_json(d / "config.json", config)  # last: its presence marks a complete checkpoint

    _atomic_write_dir(path, write_into)
    return path


# -- load -------------------------------------------------------------------------------------
def _refuse_pickle(path: Path) -> None:
    raise PickleRefusedError(
        f"refusing to load {str(path)!r}: it is a pickle file. Unpickling can execute arbitrary "
        "code hidden in the file, so diffusion_lab never unpickles anything. A diffusion_lab "
        "checkpoint is a directory with config.json and model.safetensors. If you trust the "
        "file, convert it yourself: torch.load(path, weights_only=True), build the network, "
        "then save_checkpoint(...) / GenerativeModel(net, sde).save(...)."
    )


def load_state_strict(module: nn.Module, tensors: dict, source: str) -> None:
    """``module.load_state_dict(tensors)`` after checking names and shapes; the error names
    every missing / unexpected tensor and every shape mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [f"{k!r}: file {list(tensors[k].shape)}, network {list(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    problems = []
    if missing:
        problems.append("missing tensors: " + ", ".join(repr(k) for k in missing))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(repr(k) for k in unexpected))
    if wrong:
        problems.append("shape mismatch for " + "; ".join(wrong))
    if problems:
        raise ValueError(f"{source} does not match {type(module).__name__}: "
                         + " | ".join(problems))
    module.load_state_dict(tensors, strict=True)


def _as_stored_dtype(module, tensors: dict):
    """Cast a freshly built module to the one floating dtype its saved tensors have, so a
    changed ``torch.set_default_dtype`` neither breaks loading nor silently upcasts."""
    stored = {v.dtype for v in tensors.values() if v.is_floating_point()}
    return module.to(stored.pop()) if len(stored) == 1 else module


def load_checkpoint(path, *, device="cpu", training_state: bool = False) -> Checkpoint:
    """Rebuild network, EMA network and SDE from a checkpoint directory (see module docs).

    ``training_state=True`` also reads the optimizer state and the training state
    (needed to resume training). Pickle files are refused unopened.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path)
    if not path.exists():
        _recover_interrupted(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if path.is_file():
        raise ValueError(f"{str(path)!r} is a file; a diffusion_lab checkpoint is a directory "
                         "holding config.json and model.safetensors")
    if not (path / "config.json").is_file():
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            _refuse_pickle(path / pickles[0])
        raise FileNotFoundError(f"{str(path)!r} has no config.json; it is not a diffusion_lab "
                                "checkpoint (or a save of it never finished)")
    with open(path / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}/config.json is not a diffusion_lab checkpoint "
                         f"(format {config.get('format')!r}, expected {FORMAT!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint format version {config['format_version']} is newer than "
                         f"this diffusion_lab understands ({FORMAT_VERSION}); upgrade the package")
    from . import nets  # noqa: F401  (registers the built-in networks)

    net_cls = lookup(config["net"]["class"])
    weights = _read_tensors(path / "model.safetensors")
    net = _as_stored_dtype(net_cls(**config["net"]["config"]), weights)
    load_state_strict(net, weights, f"{path}/model.safetensors")
    net.to(device)
    ema = None
    if config["files"].get("ema"):
        ema_weights = _read_tensors(path / config["files"]["ema"])
        ema = _as_stored_dtype(net_cls(**config["net"]["config"]), ema_weights)
        load_state_strict(ema, ema_weights, f"{path}/{config['files']['ema']}")
        ema.to(device).eval().requires_grad_(False)
    ckpt = Checkpoint(path=path, net=net, sde=sde_from_json(config["sde"]), config=config,
                      ema=ema, data=config.get("data", {}))
    if training_state:
        if config["files"].get("optimizer"):
            with open(path / "optimizer.json", encoding="utf-8") as f:
                spec = json.load(f)
            ckpt.optimizer_state = _optimizer_from_files(
                _read_tensors(path / "optimizer.safetensors"), spec)
        if config["files"].get("train_state"):
            with open(path / "train_state.json", encoding="utf-8") as f:
                state = json.load(f)
            state.update(_read_tensors(path / "train_state.safetensors"))
            ckpt.train_state = state
    return ckpt
