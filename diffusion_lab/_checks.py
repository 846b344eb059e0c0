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


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def check_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


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
