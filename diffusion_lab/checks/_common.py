"""Shared machinery of the exercise checkers: printing one ✓/✗/… line, calling the
learner's function safely, and comparing a result with the expected tensor while
diagnosing the typical mistakes (see :mod:`diffusion_lab.checks`)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

PASS, FAIL, TODO = "✓", "✗", "…"
F64 = torch.float64


# -- machinery ----------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised inside a checker to end it; the message has already been printed."""


def _say(mark: str, name: str, text: str) -> None:
    print(f"{mark} {name}{'' if text.startswith(' ') else ': '}{text}", flush=True)


def checker(name: str):
    """Decorator: validate ``fn``, turn :class:`_Stop` into ``False``, print nothing twice."""

    def wrap(body):
        @functools.wraps(body)
        def run(fn, *args, **kwargs) -> bool:
            if not callable(fn):
                _say(FAIL, name, f"expected a function (or class), got {type(fn).__name__}")
                return False
            try:
                return bool(body(fn, *args, **kwargs))
            except _Stop:
                return False

        return run

    return wrap


def _call(name: str, fn, *args, **kwargs):
    """Call the learner's ``fn``; report NotImplementedError / other errors in one line."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        hint = str(err) or "replace the `raise NotImplementedError` line with your code"
        _say(TODO, name, f"not implemented yet: {hint}")
        raise _Stop from None
    except Exception as err:  # noqa: BLE001 - the learner's bug, reported in one line
        hint = ""
        if isinstance(err, RuntimeError) and "must match the size" in str(err):
            hint = (" (a broadcasting slip? a per-sample coefficient of shape [B] must be "
                    "reshaped to [B, 1, ...] before it multiplies x of shape [B, ...])")
        _say(FAIL, name, f"your function raised {type(err).__name__}: {err}{hint}")
        raise _Stop from None


def _close(a: Tensor, b: Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _as_result(name: str, got, what: str = "the result") -> Tensor:
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        got = torch.tensor(float(got), dtype=F64)
    if got is None:
        _say(FAIL, name, f"{what} is None: did you forget the `return`?")
        raise _Stop
    if not isinstance(got, Tensor):
        _say(FAIL, name, f"{what} must be a torch.Tensor, got {type(got).__name__}")
        raise _Stop
    if got.is_complex() or not got.is_floating_point():
        _say(FAIL, name, f"{what} must be a float tensor, got dtype {got.dtype}")
        raise _Stop
    return got.detach().to(F64)


def _generic_variants(want: Tensor) -> dict[str, Tensor]:
    """Mistakes that can happen anywhere: a flipped sign, a factor 2, a missing (or extra)
    square root."""
    out = {
        "the sign is flipped": -want,
        "off by a factor of 2 (yours is twice the expected value)": 2 * want,
        "off by a factor of 2 (yours is half the expected value)": 0.5 * want,
    }
    if bool((want >= 0).all()):
        out["a square root is missing (variance where a standard deviation belongs?)"] = want**2
        out["an extra square root (standard deviation where a variance belongs?)"] = want.sqrt()
    return out


def _compare(name: str, got, want: Tensor, wrong: dict[str, Tensor] | None = None, *,
             ok: str, what: str = "the result", rtol: float = 1e-6, atol: float = 1e-9,
             report: bool = True) -> bool:
    """Compare one output with the expected tensor; on a mismatch, name the first
    known wrong variant it equals, else print the size and place of the error."""
    got = _as_result(name, got, what)
    want = want.to(F64)
    if got.shape != want.shape:
        hint = ""
        if got.numel() == want.numel():
            hint = " (same number of elements: reshape, or a broadcasting slip?)"
        elif got.dim() > want.dim():
            hint = " (a broadcasting slip: a [B] coefficient must be reshaped to [B, 1, ...])"
        _say(FAIL, name, f"{what} has shape {list(got.shape)}, expected {list(want.shape)}{hint}")
        raise _Stop
    if not bool(torch.isfinite(got).all()):
        _say(FAIL, name, f"{what} contains NaN or inf (a division by zero, log or sqrt of "
                         "a negative number?)")
        raise _Stop
    if _close(got, want, rtol, atol):
        if report:
            _say(PASS, name, ok)
        return True
    for text, variant in {**(wrong or {}), **_generic_variants(want)}.items():
        variant = variant.to(F64)
        if variant.shape == got.shape and bool(torch.isfinite(variant).all()) \
                and not _close(variant, want, rtol, atol) and _close(got, variant, rtol, atol):
            _say(FAIL, name, f"{what} is wrong: {text}")
            raise _Stop
    if _close(got, want, 1e-4, 1e-6):
        _say(FAIL, name, f"{what} is close, but not to float64 precision: did you compute in "
                         "float32 (use dtype=torch.float64), or use an approximation?")
        raise _Stop
    err = (got - want).abs()
    k = int(err.reshape(-1).argmax())
    _say(FAIL, name, f"{what} does not match: max |yours − expected| = {float(err.max()):.3g} "
                     f"(e.g. expected {float(want.reshape(-1)[k]):.6g}, "
                     f"got {float(got.reshape(-1)[k]):.6g})")
    raise _Stop


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape, g) -> Tensor:
    return torch.randn(shape, generator=g, dtype=F64)


def _uniform(n: int, lo: float, hi: float, g) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)


def _view(c: Tensor, x: Tensor) -> Tensor:
    return c.reshape(-1, *([1] * (x.dim() - 1)))
