"""Atomic writes: a file or a whole folder appears under its final name complete, or not at all.

A **file** (a PNG, a model card) is written into a hidden temporary sibling, fsynced and
renamed onto its final name (``os.replace``); the directory is fsynced after the rename.
Interrupted at any point (Ctrl-C, kill -9, power loss), the final name holds either the
previous file or the new one, never a torn one; a leftover ``.NAME.tmp-*`` is harmless.

A **folder** (a checkpoint) is written the same way, one level up:

1. every file goes into ``.NAME.tmp-XXXX`` beside the final name and is fsynced;
2. the marker :data:`MARKER` (the name and size of every file the save owns) is written
   last and fsynced, then the folder itself: a folder is *complete* only with its marker;
3. it is put in place by one rename: ``os.replace`` when nothing is there yet, otherwise an
   atomic exchange with the existing folder (Linux ``renameat2(RENAME_EXCHANGE)``), after
   which the old copy (now under the temporary name) is deleted.

Where the exchange is unsupported the old folder is renamed aside (``.NAME.old-XXXX``)
before the new one is renamed in. A process killed between those two renames leaves no
folder under the final name but two complete siblings; :func:`recover_interrupted` puts
the newest back. That is always an explicit call: reading never renames, deletes or
writes anything. Leftovers of interrupted saves are deleted after the next save
succeeds (never before, so a crash in that save cannot destroy them).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .config_schema import validate_marker
from .safe_io import read_json

__all__ = ["MARKER", "fsync_file", "fsync_dir", "atomic_write_file", "atomic_write_dir",
           "interrupted_saves", "recover_interrupted", "read_marker_json"]

MARKER = "complete.json"
MARKER_FORMAT = "diffusion_lab.complete"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: Path) -> None:
    """Give ``path`` ordinary permissions (mkstemp / safetensors make 0600) and fsync it."""
    os.chmod(path, 0o666 & ~_umask())
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """fsync a directory so the renames in it are durable (a no-op where unsupported)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_file(path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` writes the content to ``tmp``; it then replaces ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


# -- folders ---------------------------------------------------------------------------------
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the OS or file system cannot."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):  # no glibc >= 2.28: fall back to two renames
            _renameat2 = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _write_marker(folder: Path, owned: tuple[str, ...]) -> None:
    files = {name: (folder / name).stat().st_size for name in owned if (folder / name).is_file()}
    marker = {"format": MARKER_FORMAT, "saved_ns": time.time_ns(), "files": files}
    with open(folder / MARKER, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=2)
        f.write("\n")
    fsync_file(folder / MARKER)


def _siblings(path: Path) -> list[Path]:
    if not path.parent.is_dir():
        return []
    found = [*path.parent.glob(f".{path.name}.tmp-*"), *path.parent.glob(f".{path.name}.old-*")]
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def read_marker_json(folder: Path):
    """The parsed marker of ``folder`` (None when it has none); strict reading, see safe_io."""
    if not (folder / MARKER).exists() and not (folder / MARKER).is_symlink():
        return None
    return read_json(folder, MARKER)


def _saved_ns(folder: Path) -> int | None:
    """The marker's save time when ``folder`` is a complete save, else None."""
    try:
        marker = read_marker_json(folder)
    except (ValueError, OSError):  # unreadable marker: the save did not finish
        return None
    if marker is None:
        return None
    try:
        return validate_marker(marker, folder / MARKER).saved_ns
    except ValueError:
        return None


def interrupted_saves(path) -> list[Path]:
    """Complete copies of ``path`` left beside it by interrupted saves, newest first."""
    path = Path(path)
    done = [(ns, p) for p in _siblings(path) if (ns := _saved_ns(p)) is not None]
    return [p for _, p in sorted(done, reverse=True)]


def recover_interrupted(path) -> Path:
    """Put back the newest complete copy of ``path`` left by a save that was killed between
    its two renames; returns the folder it came from. Errors when ``path`` exists (nothing
    to recover) or no complete copy is there."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{path} exists; there is nothing to recover")
    found = interrupted_saves(path)
    if not found:
        raise FileNotFoundError(f"no complete copy of {path} from an interrupted save beside it "
                                f"(looked for .{path.name}.tmp-* / .old-* with {MARKER})")
    os.replace(found[0], path)
    fsync_dir(path.parent)
    return found[0]


def _discard(folder: Path) -> None:
    """Delete a folder, its marker first: half-deleted, it never looks like a complete save."""
    (folder / MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder)


def atomic_write_dir(path, write_into: Callable[[Path], None], owned: tuple[str, ...],
                     carry_over: bool = True) -> Path:
    """Write a folder atomically (module docs): ``write_into(tmp)`` fills it with the files
    named in ``owned``; with ``carry_over`` the other files of an existing folder (a model
    card, sample images) are copied into the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        if carry_over and path.is_dir():
            for entry in path.iterdir():
                if entry.name in owned or entry.name == MARKER or entry.is_symlink():
                    continue  # (symlinks are not carried over: a checkpoint holds only files)
                if entry.is_dir():
                    shutil.copytree(entry, tmp / entry.name)
                elif entry.is_file():
                    shutil.copy2(entry, tmp / entry.name)
        write_into(tmp)
        _write_marker(tmp, owned)
        fsync_dir(tmp)
        if not path.exists():
            os.replace(tmp, path)
            fsync_dir(path.parent)
        elif _exchange(tmp, path):
            fsync_dir(path.parent)
            _discard(tmp)  # the previous folder, now under the temporary name
        else:
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # roll back: the previous folder stays in place
                raise
            fsync_dir(path.parent)
            _discard(old)
    except BaseException:
        if tmp.exists():
            _discard(tmp)
        raise
    for stale in _siblings(path):  # leftovers of earlier interrupted saves
        _discard(stale)
    return path
