"""Pieces of the command line: argparse value types, output checks made before any work,
atomic figure writing, and the one-line report of the package's own errors.

Every value is validated by argparse through the types below (a bad one ends in argparse's
usage message, exit code 2). Errors the package raises later (``ValueError``,
``TypeError``, ``OSError``, ``FloatingPointError`` raised by diffusion_lab code) are printed
by :func:`report` as one ``error: ...`` line, exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch

from ._checks import check_device
from .atomic import atomic_write_file, interrupted_saves

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)
PROGRESS = "progress"  # train --sample-every writes its grids into OUT/progress/


class UsageError(ValueError):
    """A combination of command-line arguments that cannot work; names the arguments."""


# -- argparse value types ----------------------------------------------------------------------
def int_in(lo: int, hi: int | None = None):
    """An argparse type: an int in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be an int {bound}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False):
    """An argparse type: a finite float in the interval from lo to hi (open ends optional)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        low_bad = lo is not None and (value <= lo if lo_open else value < lo)
        high_bad = hi is not None and (value >= hi if hi_open else value > hi)
        if low_bad or high_bad:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"must lie in {left}{'-inf' if lo is None else lo}, "
                f"{'inf' if hi is None else hi}{right}, got {value}")
        return value

    parse.__name__ = "float"
    return parse


def _digits(text: str) -> bool:
    """Only the ASCII digits 0-9 ("²".isdigit() is True, and int("٣") is 3)."""
    return text.isascii() and text.isdigit()


def int_list(text: str) -> list[int]:
    """Comma-separated positive ints ('' is the empty list)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(_digits(p) and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return [int(p) for p in parts]


def labels_arg(text: str):
    """'cycle' or comma-separated class indices (ints >= 0)."""
    if text == "cycle":
        return text
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(_digits(p) for p in parts):
        raise argparse.ArgumentTypeError(f"expected 'cycle' or comma-separated ints >= 0, "
                                         f"got {text!r}")
    return [int(p) for p in parts]


def device_arg(text: str) -> torch.device:
    try:
        return check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def png_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png" or not path.name[:-4]:
        raise argparse.ArgumentTypeError(f"must be a .png file name, got {text!r}")
    return path


# -- outputs, checked before any work ------------------------------------------------------------
def _check_writable(path: Path, flag: str, shown: Path | None = None) -> None:
    """Create and delete a file in the nearest existing folder above ``path``."""
    shown = path if shown is None else shown
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {shown}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".diffusion_lab-write-test-")
    except OSError as err:
        raise UsageError(f"{flag} {shown} is not writable ({err.strerror})") from None
    os.close(fd)
    os.remove(probe)


def prepare_checkpoint_dir(out: Path, *, resume: bool, force: bool, recover: bool) -> str | None:
    """Check ``--out`` of ``train`` before any work; returns a message when it recovered an
    interrupted save. Refuses to replace a checkpoint without --force (or --resume), and
    any non-empty folder that is not a checkpoint."""
    if recover and not resume:
        raise UsageError("--recover restores an interrupted save to continue it: use it with "
                         "--resume")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out} exists and is not a directory")
    message = None
    if not out.exists() and interrupted_saves(out):
        if recover:
            from .checkpoint import recover_checkpoint

            message = recover_checkpoint(out)
        elif not force:
            raise UsageError(f"--out {out} is missing, but an interrupted save left a complete "
                             f"copy beside it ({interrupted_saves(out)[0].name}); pass --resume "
                             "--recover to restore and continue it, or --force to start over")
    if out.is_dir() and any(out.iterdir()):
        only_progress = [e.name for e in out.iterdir()] == [PROGRESS] and (out / PROGRESS).is_dir()
        if only_progress and not resume:  # a first run stopped before its first checkpoint
            if not force:
                raise UsageError(f"--out {out} holds only the {PROGRESS}/ samples of a run "
                                 "stopped before its first checkpoint; pass --force to start "
                                 "over")
            return message
        if not (out / "config.json").is_file():
            raise UsageError(f"--out {out} is a non-empty folder that is not a diffusion_lab "
                             "checkpoint; refusing to write into it (choose another --out)")
        if not (resume or force):
            raise UsageError(f"--out {out} already holds a checkpoint; pass --resume to continue "
                             "it or --force to replace it")
    _check_writable(out / "config.json", "--out", out)
    return message


def prepare_output_file(out: Path, *, force: bool) -> None:
    """Check an output file (``sample --out``) before any work."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise UsageError(f"--out {out} exists and is not a regular file")
    if out.exists() and not force:
        raise UsageError(f"--out {out} exists; pass --force to replace it")
    _check_writable(out, "--out")


def save_figure(x: torch.Tensor, out, title: str | None = None) -> None:
    """Images ``[N, C, H, W]`` in [-1, 1] -> a grid PNG; points ``[N, 2]`` -> a scatter plot.
    Written atomically: an interrupted write leaves the previous file (or none)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = x.detach().cpu()
    if x.dim() == 4:
        from torchvision.utils import save_image

        nrow = max(1, int(math.ceil(math.sqrt(x.shape[0]))))
        atomic_write_file(out, lambda tmp: save_image((x.clamp(-1, 1) + 1) / 2, str(tmp),
                                                      nrow=nrow, padding=2, format="png"))
        return
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    pts = x.reshape(x.shape[0], -1)
    ax.scatter(pts[:, 0].numpy(), pts[:, 1 if pts.shape[1] > 1 else 0].numpy(), s=2, alpha=0.6)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    atomic_write_file(out, lambda tmp: fig.savefig(str(tmp), dpi=100, bbox_inches="tight",
                                                   format="png"))


def progress_writer(folder: Path, model, conditional: bool, guidance: float):
    """``sample_fn(ema, step)`` for :func:`diffusion_lab.training.train`: 20 images (2,000
    points) of the EMA network (classes in turn when ``conditional``, guidance w; 10 DPM-Solver steps,
    seed 0 every time, so the grids differ only by training) to ``folder/step_NNNNNN.png``."""
    import time

    from .model import GenerativeModel

    start = time.perf_counter()

    def write(ema, step: int) -> Path:
        view = GenerativeModel(ema, model.sde, data_shape=model.data_shape,
                               class_names=model.class_names)
        n = 20 if len(model.data_shape) == 3 else 2000  # images: a grid; points: a scatter
        kw = {}
        if conditional:
            kw = dict(labels=[i % len(model.class_names) for i in range(n)], guidance=guidance)
        x = view.generate(n, method="dpm_solver", steps=10, seed=0, **kw)
        out = folder / f"step_{step:06d}.png"
        save_figure(x, out, title=f"step {step}, {time.perf_counter() - start:.0f} s")
        return out

    return write


def write_text(out: Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write_file(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# -- errors ---------------------------------------------------------------------------------------
def _in_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):  # "<frozen os>" and the like
        return False


def raised_by_package(err: BaseException) -> bool:
    """True for the package's own errors: the innermost frame is diffusion_lab code, or,
    for an ``OSError`` about a file (permissions, a full disk), diffusion_lab called it."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return False
    if isinstance(err, OSError) and err.filename is not None:
        return any(_in_package(f.filename) for f in frames)
    return _in_package(frames[-1].filename)


def report(err: BaseException) -> int:
    """Print ``error: <message>`` on one line to stderr; the exit code is 2."""
    message = " ".join(str(err).split()) or type(err).__name__
    print(f"error: {message}", file=sys.stderr)
    return 2
