"""Build the course notebooks: jupytext source -> executed .ipynb with outputs.

    python tools/build_notebooks.py                 # every notebooks/src/*.py
    python tools/build_notebooks.py 02 05_scores    # only sources whose name starts so
    python tools/build_notebooks.py --quick 02      # QUICK=True into build/notebooks/ (a smoke run)

``notebooks/src/NN_topic.py`` (jupytext percent format) is the file to edit. Each
source is converted to ``notebooks/NN_topic.ipynb`` and executed in place by
papermill with its *default* parameters (the full lab run, no injected cell), in
``notebooks/`` as working directory, with ``DIFFUSION_LAB_HEADLESS=1`` so the
widgets leave static figures and animated GIF ``<img>`` instead of live views.
Per-cell papermill/timing metadata is stripped (clean diffs); the notebook keeps
``metadata.papermill.duration`` (seconds), which the tests hold to the budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}


def to_notebook(src: Path) -> nbformat.NotebookNode:
    """The unexecuted notebook jupytext makes of ``src`` (what the tests compare against)."""
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("jupytext", None)
    return nb


def strip_cell_metadata(nb: nbformat.NotebookNode) -> None:
    """Drop the per-cell keys that change on every run (papermill status, timestamps)."""
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


def execute(src: Path, out: Path, cwd: Path, parameters: dict | None = None) -> float:
    """Convert ``src`` and execute it into ``out`` with papermill in ``cwd``; return seconds.

    ``parameters`` (e.g. ``{"QUICK": True}``) are injected after the parameters cell;
    None runs the defaults. Per-cell timing metadata and papermill's absolute input and
    output paths are dropped so rebuilds give clean diffs.
    """
    raw = out.parent / f".{src.stem}.unexecuted.ipynb"
    nbformat.write(to_notebook(src), raw)
    os.environ["DIFFUSION_LAB_HEADLESS"] = "1"
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(raw), str(out), parameters=parameters,
                                   kernel_name=KERNEL, cwd=str(cwd), progress_bar=False)
    finally:
        raw.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    nb = nbformat.read(out, as_version=4)
    strip_cell_metadata(nb)
    for key in ("input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(nb, out)
    return seconds


def build(src: Path, quick: bool = False) -> tuple[Path, float]:
    """Convert and execute one lesson source; return (output path, seconds)."""
    out_dir = ROOT / "build" / "notebooks" if quick else OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{src.stem}.ipynb"
    return out, execute(src, out, OUT, {"QUICK": True} if quick else None)


def select_by_prefix(names: list[str], directory: Path,
                     pattern: str = "[0-9][0-9]_*.py") -> list[Path]:
    """The files of ``directory`` matching ``pattern`` whose name starts with one of
    ``names`` (all of them when ``names`` is empty); an unmatched name is an error."""
    files = sorted(directory.glob(pattern))
    if not names:
        return files
    missing = [n for n in names if not any(f.stem.startswith(n) for f in files)]
    if missing:
        have = [f.stem for f in files]
        raise SystemExit(f"no file {pattern} in {directory} starts with {missing}; have {have}")
    return [f for f in files if any(f.stem.startswith(n) for n in names)]


def select(names: list[str]) -> list[Path]:
    return select_by_prefix(names, SRC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="source name prefixes (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="QUICK=True into build/notebooks/ (notebooks/ untouched)")
    args = parser.parse_args(argv)
    for src in select(args.names):
        out, seconds = build(src, quick=args.quick)
        print(f"{out.relative_to(ROOT)}: {seconds:6.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
