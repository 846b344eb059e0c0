"""Build the solutions notebooks, then regenerate the exercises from them.

    python tools/build_solutions.py             # every solutions/src/*.py
    python tools/build_solutions.py 01 05       # only sources whose name starts so

``solutions/src/NN_topic.py`` (jupytext percent format) is the file to edit. Each is
converted to ``solutions/NN_topic.ipynb`` and executed in place by papermill with its
default parameters, in ``solutions/`` as working directory, with
``DIFFUSION_LAB_HEADLESS=1`` (the same recipe as ``tools/build_notebooks.py``, whose
helpers it reuses). Then ``tools/make_exercises.py`` writes ``exercises/NN_topic.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import KERNEL, strip_cell_metadata, to_notebook  # noqa: E402
from make_exercises import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "solutions" / "src"
OUT = ROOT / "solutions"


def build(src: Path) -> tuple[Path, float]:
    """Convert and execute one source; return (output path, seconds)."""
    out = OUT / f"{src.stem}.ipynb"
    raw = OUT / f".{src.stem}.unexecuted.ipynb"
    nbformat.write(to_notebook(src), raw)
    os.environ["DIFFUSION_LAB_HEADLESS"] = "1"
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(raw), str(out), kernel_name=KERNEL, cwd=str(OUT),
                                   progress_bar=False)
    finally:
        raw.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    nb = nbformat.read(out, as_version=4)
    strip_cell_metadata(nb)
    for key in ("input_path", "output_path"):  # absolute paths: keep the diff clean
        nb.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(nb, out)
    return out, seconds


def select(names: list[str]) -> list[Path]:
    sources = sorted(SRC.glob("[0-9][0-9]_*.py"))
    if not names:
        return sources
    missing = [n for n in names if not any(s.stem.startswith(n) for s in sources)]
    if missing:
        raise SystemExit(f"no source in {SRC} starts with {missing}; "
                         f"have {[s.stem for s in sources]}")
    return [s for s in sources if any(s.stem.startswith(n) for n in names)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="source name prefixes (default: all)")
    args = parser.parse_args(argv)
    for src in select(args.names):
        out, seconds = build(src)
        exercise = generate(out)
        print(f"{out.relative_to(ROOT)}: {seconds:5.1f} s -> {exercise.relative_to(ROOT)}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
