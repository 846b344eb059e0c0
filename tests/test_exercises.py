"""Exercises and solutions for lessons 01–06, 11 and 12 stay single-sourced, up to date and alive.

``solutions/src/NN_topic.py`` (jupytext) -> ``solutions/NN_topic.ipynb`` (executed, by
``tools/build_solutions.py``) -> ``exercises/NN_topic.ipynb`` (stubs, by
``tools/make_exercises.py``, i.e. ``make exercises``).

(a) static, no kernel: every source has a solutions and an exercises notebook; a
    solutions notebook equals what jupytext makes of its source today, was executed
    in order, has a ``parameters`` cell with ``QUICK = False``, 3–6 checked exercises
    whose stored outputs all pass, and model answers; the committed exercises are
    byte-identical to a fresh regeneration and contain no solution or answer.
(b) papermill, kernel ``python3``, ``QUICK=True``, ``DIFFUSION_LAB_HEADLESS=1``: every
    solutions notebook runs end to end in ``solutions/`` and every check prints ✓;
    every exercises notebook runs end to end in ``exercises/`` with its stubs and every
    check reports "not implemented yet" (the checkers catch NotImplementedError).
    Each run is timed against ``QUICK_BUDGET_S`` (kernel start included).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOL_DIR = ROOT / "solutions"
EX_DIR = ROOT / "exercises"
SRC_DIR = SOL_DIR / "src"
KERNEL = "python3"
QUICK_BUDGET_S = 20.0  # one notebook, QUICK, kernel start included (measured 3–5 s on 2 cores)
LESSONS = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "11", "12")
CHECK_CALL = "checks.check_"

sys.path.insert(0, str(ROOT / "tools"))
import make_exercises  # noqa: E402

SOLUTIONS = sorted(SOL_DIR.glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted(EX_DIR.glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.notebook


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _check_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and CHECK_CALL in c.source]


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"ERROR {out.ename}: {out.evalue}")
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"])
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# (a) static checks
# ---------------------------------------------------------------------------------------
def test_sources_solutions_and_exercises_correspond():
    sources = {p.stem for p in SRC_DIR.glob("[0-9][0-9]_*.py")}
    solutions = {p.stem for p in SOLUTIONS}
    exercises = {p.stem for p in EXERCISES}
    assert sources == solutions, (f"sources {sorted(sources)} vs solutions {sorted(solutions)}: "
                                  "run `python tools/build_solutions.py`")
    assert solutions == exercises, (f"solutions {sorted(solutions)} vs exercises "
                                    f"{sorted(exercises)}: run `make exercises`")
    assert sorted(s[:2] for s in sources) == list(LESSONS)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_matches_its_source(path):
    import jupytext

    expected = [(c.cell_type, c.source) for c in jupytext.read(SRC_DIR / f"{path.stem}.py").cells]
    stored = [(c.cell_type, c.source) for c in _read(path).cells]
    assert stored == expected, (f"{path.name} is stale: its source changed; run "
                                "`python tools/build_solutions.py` (it also regenerates exercises)")


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_structure_and_stored_outputs(path):
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: not executed in order; run `python tools/build_solutions.py`")
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "QUICK = False" in params[0].source
    checked = _check_cells(nb)
    assert 3 <= len(checked) <= 6, f"{path.name}: {len(checked)} checked exercises, want 3–6"
    for cell in checked:
        out = _text(cell)
        assert out.startswith("✓") and "✗" not in out and "not implemented" not in out, (
            f"{path.name}: a stored check did not pass:\n{out}")
    regions = sum(c.source.count(make_exercises.BEGIN_SOLUTION) for c in code)
    assert regions >= len(checked), f"{path.name}: fewer solution regions than checks"
    answers = sum(c.source.count(make_exercises.BEGIN_ANSWER) for c in nb.cells
                  if c.cell_type == "markdown")
    assert answers >= 1, f"{path.name}: no model answer (### BEGIN ANSWER)"


def test_exercises_are_regenerated_output(tmp_path):
    stale = []
    for path in SOLUTIONS:
        fresh = make_exercises.generate(path, tmp_path)
        committed = EX_DIR / path.name
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(path.name)
    assert not stale, f"exercises out of date for {stale}: run `make exercises`"


@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_exercises_hide_solutions_and_answers(path):
    nb = _read(path)
    solution = _read(SOL_DIR / path.name)
    for cell in nb.cells:
        assert "### BEGIN" not in cell.source and "### END" not in cell.source
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
    stubs = sum(c.source.count("raise NotImplementedError('hint: ") for c in nb.cells)
    stubs += sum(c.source.count('raise NotImplementedError("hint: ') for c in nb.cells)
    regions = sum(c.source.count(make_exercises.BEGIN_SOLUTION) for c in solution.cells)
    assert stubs == regions >= 3


def test_make_exercises_stub_and_errors():
    src = ("def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    # HINT: add one\n"
           "    # HINT: then double\n    return 2 * (x + y)\n    ### END SOLUTION\n")
    assert make_exercises.strip_solutions(src) == (
        "def f(x):\n    y = 1\n    # YOUR CODE HERE\n"
        "    raise NotImplementedError('hint: add one then double')\n")
    md = "Q?\n\n### BEGIN ANSWER\nsecret\n### END ANSWER\nafter"
    assert make_exercises.strip_answers(md) == "Q?\n\n*Your answer here.*\nafter"
    with pytest.raises(make_exercises.MarkerError, match="HINT"):
        make_exercises.strip_solutions("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    with pytest.raises(make_exercises.MarkerError, match="never closed"):
        make_exercises.strip_solutions("### BEGIN SOLUTION\n# HINT: h\nx = 1")
    with pytest.raises(make_exercises.MarkerError, match="without"):
        make_exercises.strip_answers("text\n### END ANSWER")


# ---------------------------------------------------------------------------------------
# (b) papermill runs, QUICK=True
# ---------------------------------------------------------------------------------------
def _run(path: Path, cwd: Path, out: Path, monkeypatch) -> tuple[nbformat.NotebookNode, float]:
    import papermill

    monkeypatch.setenv("DIFFUSION_LAB_HEADLESS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(out), parameters={"QUICK": True},
                               kernel_name=KERNEL, cwd=str(cwd), progress_bar=False)
    seconds = time.perf_counter() - start
    print(f"\n{path.parent.name}/{path.name}: QUICK run {seconds:.1f} s "
          f"(budget {QUICK_BUDGET_S:.0f} s)")
    return _read(out), seconds


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solution_runs_and_every_check_passes(path, tmp_path, monkeypatch):
    nb, seconds = _run(path, SOL_DIR, tmp_path / path.name, monkeypatch)
    checked = _check_cells(nb)
    outputs = [_text(c) for c in checked]
    passed = [o for o in outputs if o.startswith("✓") and o.count("\n") == 1]
    assert len(passed) == len(checked) >= 3, "\n".join(outputs)
    everything = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "✗" not in everything and "not implemented" not in everything, everything
    assert seconds <= QUICK_BUDGET_S, f"{path.name}: QUICK run took {seconds:.1f} s"


@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_exercise_runs_with_stubs_and_reports_not_implemented(path, tmp_path, monkeypatch):
    nb, seconds = _run(path, EX_DIR, tmp_path / path.name, monkeypatch)
    checked = _check_cells(nb)
    outputs = [_text(c) for c in checked]
    assert len(checked) >= 3
    for out in outputs:
        assert out.startswith("…") and "not implemented yet: hint: " in out, "\n".join(outputs)
    everything = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "✓" not in everything and "✗" not in everything and "ERROR" not in everything
    assert seconds <= QUICK_BUDGET_S, f"{path.name}: QUICK run took {seconds:.1f} s"


def test_environment_has_the_kernel():
    """The runs above need the ``python3`` kernel that ``make install`` registers."""
    from jupyter_client.kernelspec import KernelSpecManager

    assert KERNEL in KernelSpecManager().find_kernel_specs(), (
        f"no Jupyter kernel {KERNEL!r}; run `make install` (python -m ipykernel install ...)")
    assert os.path.isdir(SOL_DIR) and os.path.isdir(EX_DIR)
