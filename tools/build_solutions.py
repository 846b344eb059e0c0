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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import execute, select_by_prefix  # noqa: E402
from make_exercises import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "solutions" / "src"
OUT = ROOT / "solutions"


def build(src: Path) -> tuple[Path, float]:
    """Convert and execute one solutions source; return (output path, seconds)."""
    out = OUT / f"{src.stem}.ipynb"
    return out, execute(src, out, OUT)


def select(names: list[str]) -> list[Path]:
    return select_by_prefix(names, SRC)


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
