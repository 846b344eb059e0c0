"""The course notebooks stay alive: structure, freshness, a QUICK papermill run, nbval.

For every ``notebooks/NN_topic.ipynb`` (built from ``notebooks/src/NN_topic.py`` by
``make notebooks`` = ``tools/build_notebooks.py``):

(a) static checks, no kernel (milliseconds): a cell tagged ``parameters`` defining
    ``QUICK``; at least one cell marked ``# NBVAL_CHECK_OUTPUT``; committed executed —
    every code cell has an execution count, counts run 1..n in order, and the notebook
    has outputs; *not stale* — the cells (type and source) equal what jupytext makes of
    the source file today; the stored default run took at most ``DEFAULT_BUDGET_S``
    (papermill records it in ``metadata.papermill.duration``).
(b) papermill executes the notebook with ``QUICK=True`` (kernel ``python3``, output in
    a temporary directory, working directory ``notebooks/``); any error fails, the run
    time is printed (``-s`` / the ``-ra`` summary shows it) and must be at most
    ``QUICK_BUDGET_S``.
(c) nbval ``--nbval-lax`` compares the cells marked ``# NBVAL_CHECK_OUTPUT`` with
    the stored outputs (sanitised by ``notebooks/nbval_sanitize.cfg``).

Runtime design. nbval re-executes the whole notebook; with default parameters each
notebook would cost its full lab run (up to 3 min), ~30 min for eleven notebooks.
Instead nbval runs a copy of the *committed* notebook (stored outputs of the full
run) with papermill's ``QUICK = True`` cell injected after the parameters cell.
The rule that makes this sound: **a checked cell prints the same under QUICK and
default** — exact formulas, shapes, parameter counts, rounded numbers that do not
depend on sample sizes. (If it does depend, the test fails, which is the point.)
So each notebook costs two QUICK executions, (b) and (c): at most 2 × 60 s, in
practice ~2 × 20–30 s on 2 cores, i.e. ~10 min for eleven notebooks.

Headless widgets: both runs set ``DIFFUSION_LAB_HEADLESS=1`` (inherited by the
kernel), so ``diffusion_lab.widgets`` leaves static figures / ``to_jshtml`` instead
of waiting for a frontend, and papermill's progress bar is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SRC_DIR = NB_DIR / "src"
SANITIZE = NB_DIR / "nbval_sanitize.cfg"
KERNEL = "python3"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
QUICK_BUDGET_S = 60.0  # QUICK=True, kernel start included, 2-core CPU
DEFAULT_BUDGET_S = 180.0  # the full lab run, as recorded by `make notebooks`

NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

pytestmark = pytest.mark.notebook


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _headless_env() -> dict:
    env = dict(os.environ, DIFFUSION_LAB_HEADLESS="1")
    env.pop("MPLBACKEND", None)  # let the kernel use its inline backend
    return env


def test_every_notebook_has_a_source_and_vice_versa():
    sources = {p.stem for p in SRC_DIR.glob("[0-9][0-9]_*.py")}
    built = {p.stem for p in NOTEBOOKS}
    assert sources == built, (
        f"sources without notebook: {sorted(sources - built)}; "
        f"notebooks without source: {sorted(built - sources)} (run `make notebooks`)"
    )
    assert built, "no notebooks found in notebooks/"


# ---------------------------------------------------------------------------------------
# (a) static checks
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_and_checked_cells(path):
    nb = _read(path)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: need exactly one cell tagged 'parameters'"
    assert params[0].cell_type == "code" and "QUICK = False" in params[0].source, (
        f"{path.name}: the parameters cell must set `QUICK = False`")
    checked = [c for c in nb.cells if c.cell_type == "code" and CHECK_MARK in c.source]
    assert checked, f"{path.name}: no cell marked {CHECK_MARK}"
    assert all(c.outputs for c in checked), f"{path.name}: a checked cell has no stored output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_executed_in_order(path):
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(code)}; run `make notebooks`")
    assert sum(len(c.outputs) for c in code) > 0, f"{path.name}: no outputs stored"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored outputs contain an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_matches_its_source(path):
    import jupytext

    src = SRC_DIR / f"{path.stem}.py"
    assert src.exists(), f"{path.name} has no source {src.relative_to(ROOT)}"
    expected = [(c.cell_type, c.source) for c in jupytext.read(src).cells]
    stored = [(c.cell_type, c.source) for c in _read(path).cells]
    assert stored == expected, f"{path.name} is stale: its source changed; run `make notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_default_run_within_budget(path):
    duration = _read(path).metadata.get("papermill", {}).get("duration")
    assert duration is not None, f"{path.name}: not built by `make notebooks` (no duration)"
    assert duration <= DEFAULT_BUDGET_S, f"{path.name}: default run {duration:.0f} s"


# ---------------------------------------------------------------------------------------
# (b) papermill, QUICK=True
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_quick_run_papermill(path, tmp_path, monkeypatch):
    import papermill

    for key, value in _headless_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(path), str(tmp_path / path.name), parameters={"QUICK": True},
        kernel_name=KERNEL, cwd=str(NB_DIR), progress_bar=False,
    )
    seconds = time.perf_counter() - start
    print(f"\n{path.name}: QUICK run {seconds:.1f} s (budget {QUICK_BUDGET_S:.0f} s)")
    assert seconds <= QUICK_BUDGET_S, f"{path.name}: QUICK run took {seconds:.1f} s"


# ---------------------------------------------------------------------------------------
# (c) nbval on the committed outputs, re-executed with QUICK=True
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_checked_cells_nbval(path, tmp_path):
    from papermill.parameterize import parameterize_notebook

    # the copy sits in <tmp>/notebooks/ beside a link <tmp>/data -> data/ (and with a link
    # figures -> notebooks/figures/), so relative paths such as ../data/checkpoints resolve
    # as they do from notebooks/
    work = tmp_path / "notebooks"
    work.mkdir()
    if (ROOT / "data").exists():
        (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    if (NB_DIR / "figures").exists():  # stored pictures the notebooks show (lesson 10)
        (work / "figures").symlink_to(NB_DIR / "figures", target_is_directory=True)
    nb = parameterize_notebook(_read(path), {"QUICK": True}, kernel_name=KERNEL,
                               language="python")
    target = work / path.name
    nbformat.write(nb, target)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # keep the repository's options out
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", str(target), "-p", "no:cacheprovider",
           "--nbval-sanitize-with", str(SANITIZE), "--nbval-kernel-name", KERNEL,
           "--nbval-cell-timeout", str(int(QUICK_BUDGET_S)), "-q", "--rootdir", str(tmp_path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=_headless_env(), capture_output=True,
                          text=True, timeout=4 * QUICK_BUDGET_S)
    seconds = time.perf_counter() - start
    print(f"\n{path.name}: nbval {seconds:.1f} s")
    assert proc.returncode == 0, f"nbval failed for {path.name}:\n{proc.stdout[-6000:]}"


def test_stored_kernelspec_is_the_one_make_installs():
    """JupyterLab marks a notebook modified on opening when its stored kernelspec differs from
    the installed kernel's: the Makefile's ``ipykernel install`` must name the same kernel."""
    import re

    make = (ROOT / "Makefile").read_text()
    m = re.search(r'ipykernel install .*--name (\S+) --display-name "([^"]+)"', make)
    assert m, "the Makefile installs no named kernel"
    for path in [*NOTEBOOKS, *sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")),
                 *sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))]:
        spec = _read(path).metadata["kernelspec"]
        assert (spec["name"], spec["display_name"]) == m.groups(), (path.name, spec)
