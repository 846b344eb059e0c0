"""Generate ``exercises/NN_topic.ipynb`` from ``solutions/NN_topic.ipynb`` (``make exercises``).

    python tools/make_exercises.py                # every solutions/NN_*.ipynb
    python tools/make_exercises.py 01 05          # only those whose name starts so
    python tools/make_exercises.py --out DIR      # write elsewhere (the tests compare)

The solutions notebook is the single source. In its code cells, each answer region

        ### BEGIN SOLUTION
        # HINT: use torch.cumprod
        ...the answer...
        ### END SOLUTION

becomes, at the marker's indentation,

        # YOUR CODE HERE
        raise NotImplementedError('hint: use torch.cumprod')

(every region must carry at least one ``# HINT:`` line; several are joined). In
Markdown cells, the lines from ``### BEGIN ANSWER`` to ``### END ANSWER`` become
``*Your answer here.*``. Outputs, execution counts and papermill metadata are
dropped. The result depends only on the solutions notebook, so regenerating is
byte-identical; ``tests/test_exercises.py`` checks the committed exercises are.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import select_by_prefix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_ANSWER, END_ANSWER = "### BEGIN ANSWER", "### END ANSWER"
HINT = "# HINT:"
ANSWER_PLACEHOLDER = "*Your answer here.*"


class MarkerError(ValueError):
    """A solution or answer region is malformed (unmatched marker, missing hint)."""


def _regions(lines: list[str], begin: str, end: str, where: str):
    """Yield (start, stop) line indices of each begin..end region (markers included)."""
    start = None
    for k, line in enumerate(lines):
        s = line.strip()
        if s == begin:
            if start is not None:
                raise MarkerError(f"{where}: nested {begin!r} at line {k + 1}")
            start = k
        elif s == end:
            if start is None:
                raise MarkerError(f"{where}: {end!r} without {begin!r} at line {k + 1}")
            yield start, k
            start = None
    if start is not None:
        raise MarkerError(f"{where}: {begin!r} at line {start + 1} is never closed")


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every solution region of a code cell by a stub raising NotImplementedError."""
    lines = source.split("\n")
    out, last = [], 0
    for start, stop in _regions(lines, BEGIN_SOLUTION, END_SOLUTION, where):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        hints = [ln.strip()[len(HINT):].strip() for ln in lines[start + 1:stop]
                 if ln.strip().startswith(HINT)]
        if not hints:
            raise MarkerError(f"{where}: the solution at line {start + 1} has no '{HINT} ...' line")
        message = "hint: " + " ".join(hints)
        out += lines[last:start]
        out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message!r})"]
        last = stop + 1
    return "\n".join(out + lines[last:])


def strip_answers(source: str, where: str = "cell") -> str:
    """Replace every model answer of a Markdown cell by a placeholder."""
    lines = source.split("\n")
    out, last = [], 0
    for start, stop in _regions(lines, BEGIN_ANSWER, END_ANSWER, where):
        out += lines[last:start] + [ANSWER_PLACEHOLDER]
        last = stop + 1
    return "\n".join(out + lines[last:])


def exercise_notebook(solution: nbformat.NotebookNode, name: str = "notebook"):
    """The exercises notebook made of a solutions notebook (which is left unchanged)."""
    nb = copy.deepcopy(solution)
    nb.metadata.pop("papermill", None)
    for k, cell in enumerate(nb.cells):
        where = f"{name}, cell {k}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = strip_answers(cell.source, where)
    return nb


def generate(solution_path: Path, out_dir: Path = EXERCISES) -> Path:
    """Write ``out_dir/<same name>`` from one solutions notebook; return its path."""
    nb = nbformat.read(solution_path, as_version=4)
    text = nbformat.writes(exercise_notebook(nb, solution_path.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / solution_path.name
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return out


def select(names: list[str], directory: Path = SOLUTIONS) -> list[Path]:
    return select_by_prefix(names, directory, "[0-9][0-9]_*.ipynb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=EXERCISES, help="output directory")
    args = parser.parse_args(argv)
    for path in select(args.names):
        out = generate(path, args.out)
        print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
