"""Reading a checkpoint's files without trusting them.

Every file is named by a bare file name inside its folder and opened with ``O_NOFOLLOW``
(a symlink is refused, so a checkpoint cannot borrow another one's weights) and
``O_NONBLOCK`` (a FIFO does not hang the open); ``fstat`` on the open descriptor then
insists on a regular file (not a FIFO, device or directory) and everything is read from
that descriptor, so the file checked is the file read.

* JSON: strict UTF-8, at most :data:`MAX_JSON_BYTES`, no ``NaN`` / ``Infinity``, no
  duplicate keys, nesting at most :data:`MAX_JSON_DEPTH`.
* safetensors: the 8-byte header length and the JSON header are checked (dtypes, shapes,
  contiguous offsets that exactly fill the file) *before* any tensor data is read, so a
  caller can compare names, shapes and dtypes with what it expects first. A pickle (or a
  ``torch.save`` zip archive) under a ``.safetensors`` name is recognised by its first bytes
  and refused; it is never unpickled.

Every error is a ``ValueError`` (or ``FileNotFoundError``) naming the file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path

import torch

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "NotSafetensorsError", "PickleRefusedError",
           "read_bytes", "read_json", "SafetensorsFile", "open_safetensors", "SAFETENSORS_DTYPES"]

MAX_JSON_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 32
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


class NotSafetensorsError(ValueError):
    """A weights file is not a safetensors file (an archive, garbage)."""


class PickleRefusedError(ValueError):
    """A pickle file was offered as a checkpoint or weights file; it was not unpickled."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\\" in name or "\0" in name or os.path.basename(name) != name:
        raise ValueError(f"file name {name!r} is not a plain file name inside the folder")


def _open_regular(folder: Path, name: str) -> tuple[int, os.stat_result]:
    """An fd for the regular file ``folder/name`` (never a symlink, FIFO, device or dir)."""
    _check_name(name)
    path = Path(folder) / name
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if os.path.islink(path):
        raise ValueError(f"{path} is a symlink; a checkpoint reads only regular files inside "
                         "its own folder")
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK):  # a symlink swapped in after the check
            raise ValueError(f"{path} is a symlink; refused") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a directory"
                if stat.S_ISDIR(info.st_mode) else "a device or socket")
        raise ValueError(f"{path} is {kind}, not a regular file; refused")
    return fd, info


def _read_fd(fd: int, n: int, path: Path) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 2**24))
        if not chunk:
            raise ValueError(f"{path} ended early (truncated while being read?)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bytes(folder, name: str, max_bytes: int | None = None) -> bytes:
    """The content of the regular file ``folder/name`` (at most ``max_bytes``)."""
    fd, info = _open_regular(Path(folder), name)
    try:
        path = Path(folder) / name
        if max_bytes is not None and info.st_size > max_bytes:
            raise ValueError(f"{path} is {info.st_size:,} bytes; at most {max_bytes:,} accepted")
        return _read_fd(fd, info.st_size, path)
    finally:
        os.close(fd)


def _no_constant(value: str):
    raise ValueError(f"{value} is not valid JSON (only finite numbers are accepted)")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _depth(obj) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) \
            else ()
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def read_json(folder, name: str):
    """Parse ``folder/name`` strictly (module docs); errors name the file."""
    path = Path(folder) / name
    raw = read_bytes(folder, name, MAX_JSON_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        obj = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") \
            from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise ValueError(f"{path}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return obj


def _sniff(head: bytes) -> str:
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save's format, which holds a pickle)"
    return "not a safetensors file"


class SafetensorsFile:
    """A safetensors file whose header has been read and checked; ``header`` maps each
    tensor name to ``(dtype, shape)``; :meth:`tensors` reads the data."""

    def __init__(self, path: Path, fd: int, size: int, header: dict, metadata: dict):
        self.path, self._fd, self._size = path, fd, size
        self.header, self.metadata = header, metadata

    def numel(self) -> int:
        return sum(math.prod(shape) for _, shape in self.header.values())

    def tensors(self) -> dict:
        """Read and parse the whole file (from the descriptor that was checked)."""
        from safetensors.torch import load

        os.lseek(self._fd, 0, os.SEEK_SET)
        data = _read_fd(self._fd, self._size, self.path)
        try:
            return load(data)
        except Exception as err:  # safetensors raises its own SafetensorError
            raise ValueError(f"{self.path}: corrupt safetensors data ({err})") from None

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _bad(path: Path, what: str) -> NotSafetensorsError:
    return NotSafetensorsError(f"{path} is not a valid safetensors file: {what}")


def _parse_header(path: Path, raw: bytes, data_len: int) -> tuple[dict, dict]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant,
                            object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as err:
        raise _bad(path, f"unreadable header ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(path, "__metadata__ must map strings to strings")
    out, spans = {}, []
    for key, entry in header.items():
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
            raise _bad(path, f"entry {key!r} must have exactly dtype, shape, data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise _bad(path, f"tensor {key!r} has dtype {dtype!r}; accepted: "
                       f"{', '.join(SAFETENSORS_DTYPES)}")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)):
            raise _bad(path, f"tensor {key!r} has shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise _bad(path, f"tensor {key!r} has data_offsets {offsets!r}")
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _bad(path, f"tensor {key!r}: data_offsets {offsets} do not hold {nbytes} bytes")
        out[key] = (SAFETENSORS_DTYPES[dtype], tuple(shape))
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise _bad(path, "tensor data is not contiguous")
        end = stop
    if end != data_len:
        raise _bad(path, f"the header describes {end} data bytes, the file holds {data_len}")
    return out, metadata


def open_safetensors(folder, name: str) -> SafetensorsFile:
    """Open ``folder/name`` and check its header (module docs); close it (or use ``with``)."""
    path = Path(folder) / name
    fd, info = _open_regular(Path(folder), name)
    try:
        head = _read_fd(fd, min(8, info.st_size), path)
        if len(head) < 8:
            raise _bad(path, f"only {info.st_size} bytes")
        n = int.from_bytes(head, "little")
        raw = _read_fd(fd, n, path) if n <= min(MAX_HEADER_BYTES, info.st_size - 8) else b""
        if raw and not raw.startswith(b"{"):
            raise _bad(path, "its header is not a JSON object")
        if not raw:
            kind = _sniff(head)
            if kind.startswith("a "):
                raise PickleRefusedError(f"{path} is not a safetensors file: it is {kind}; "
                                          "pickles are refused (never unpickled)")
            raise _bad(path, f"its header (length {n}) does not fit a {info.st_size}-byte file")
        header, metadata = _parse_header(path, raw, info.st_size - 8 - n)
    except BaseException:
        os.close(fd)
        raise
    return SafetensorsFile(path, fd, info.st_size, header, metadata)
