"""Argument validation shared by the package: errors name the argument, what was
given and what is accepted. Nothing is clamped or silently repaired."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_time(t, name: str = "t", *, like: Tensor | None = None) -> Tensor:
    """Return ``t`` as a floating tensor, checking it is finite and in ``[0, 1]``.

    Python floats become 0-d tensors; integer tensors are refused (``t`` is
    continuous time, not a DDPM index).
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float or a float tensor, got bool")
    if isinstance(t, (int, float)):
        # a Python float keeps its double precision unless a tensor to match is given
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
        device = like.device if like is not None else None
        t = torch.tensor(float(t), dtype=dtype, device=device)
    elif isinstance(t, Tensor):
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating tensor of continuous times in [0, 1], got dtype {t.dtype}"
            )
    else:
        raise TypeError(f"{name} must be a float or a float tensor, got {type(t).__name__}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got non-finite values in {name}")
    if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def check_finite(x: Tensor, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return x


def check_positive(value, name: str, *, allow_zero: bool = False,
                   allow_inf: bool = False) -> float:
    """A number > 0 (``allow_zero``: >= 0), finite unless ``allow_inf`` (then +inf is
    accepted: "no bound"); never a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) or (allow_inf and value == math.inf)) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        rule = f"{bound} (inf allowed)" if allow_inf else f"finite and {bound}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """A real bool: 0 / 1, None, strings and tensors are refused (``"no"`` is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def check_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_int_list(values, name: str, length: int) -> list[int]:
    """``values`` as a list of exactly ``length`` positive ints (``name[i]`` in errors)."""
    values = list(values)
    if len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {values}")
    return [check_int(v, f"{name}[{i}]") for i, v in enumerate(values)]


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(sorted(map(str, choices)))}")
    return value


def batch_times(t, x: Tensor, name: str = "t") -> Tensor:
    """Broadcast a scalar or ``[B]`` time to a ``[B]`` tensor matching ``x``'s batch."""
    t = as_time(t, name, like=x)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a scalar or have shape [B] = [{x.shape[0]}], got shape {list(t.shape)}"
        )
    return t.to(dtype=x.dtype, device=x.device)


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample ``[B]`` tensor to ``[B, 1, ..., 1]`` to broadcast against ``x``."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))


def check_real(value, name: str) -> float:
    """A finite real number (int or float, not bool, not a string); returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_unit(value, name: str, *, closed: bool = True) -> float:
    """A number in [0, 1] (``closed``) or [0, 1)."""
    value = check_real(value, name)
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value!r}")
    return value


def check_seed(seed, name: str = "seed") -> int:
    """A seed for ``torch.Generator.manual_seed``: an int in [0, 2**64)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {seed}")
    return seed


def check_labels(labels, n: int, num_classes: int, device=None, name: str = "labels") -> Tensor:
    """One int class, ``n`` ints (list / tuple) or an integer tensor ``[n]``, each in
    ``[0, num_classes)``; returned as a long tensor ``[n]``. No bool, no float."""
    if isinstance(labels, Tensor):
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
        if labels.dim() > 1:
            raise ValueError(f"{name} must be a 1-D tensor [n], got shape {list(labels.shape)}")
        y = labels.reshape(-1).to(dtype=torch.long, device=device)
    elif isinstance(labels, int) and not isinstance(labels, bool):
        y = torch.full((n,), labels, dtype=torch.long, device=device)
    elif isinstance(labels, (list, tuple)):
        bad = [v for v in labels if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise TypeError(f"{name} must be ints, got {type(bad[0]).__name__} {bad[0]!r}")
        y = torch.tensor(list(labels), dtype=torch.long, device=device)
    else:
        raise TypeError(f"{name} must be an int, a list of ints or an integer tensor, got "
                        f"{type(labels).__name__} {labels!r}")
    if y.shape[0] != n:
        raise ValueError(f"{name} must be an int or have n = {n} entries, got {y.shape[0]}")
    if y.numel() and (bool((y < 0).any()) or bool((y >= num_classes).any())):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """A non-empty tuple / list of positive ints (no floats, strings or bools)."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"{name} must be a tuple of positive ints, got {type(s).__name__} "
                            f"{s!r} in {tuple(shape)!r}")
        if s < 1:
            raise ValueError(f"{name} must be a tuple of positive ints, got {tuple(shape)!r}")
    return tuple(shape)


def check_dtype(dtype, name: str = "dtype") -> torch.dtype | None:
    """None or a floating torch dtype."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating torch dtype (torch.float32, torch.float64, "
                        f"...), got {dtype!r}")
    return dtype


def check_device(device, name: str = "device") -> torch.device:
    """A torch.device, or a string naming one that this machine has ('cpu', 'cuda', 'cuda:1')."""
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"{name} {device!r} is not a device; valid: 'cpu', 'cuda', "
                             "'cuda:N', 'mps'") from None
    else:
        raise TypeError(f"{name} must be a str or torch.device, got {type(device).__name__}")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (
            dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise ValueError(f"{name} {str(dev)!r} is not available: torch sees "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps")
                                  and torch.backends.mps.is_available()):
        raise ValueError(f"{name} 'mps' is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps", "meta"):
        raise ValueError(f"{name} {str(dev)!r} is not supported; valid: 'cpu', 'cuda', 'mps'")
    return dev


def check_generator(generator, device=None, name: str = "generator") -> None:
    """None or a torch.Generator on the same kind of device as ``device``."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got "
                        f"{type(generator).__name__} {generator!r}")
    want = torch.device(device if device is not None else "cpu").type
    if generator.device.type != want:
        raise ValueError(f"{name} is on {generator.device.type}, the tensors on {want}; make it "
                         f"with torch.Generator({want!r})")
