"""DEFAULT_GRIDS is what benchmarks/default_grids.py measured: the committed CSV covers every
sampler, its choices are the defaults, the docstring table prints them, and a row recomputed
here equals the committed one (no wall-clock numbers)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from diffusion_lab import sampler_run
from diffusion_lab import samplers as S
from diffusion_lab.timegrid import GRIDS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import default_grids as D  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    with open(ROOT / "benchmarks" / "results" / "default_grids.csv") as fh:
        return list(csv.DictReader(fh))


def test_every_sampler_was_measured_and_its_default_is_the_measured_choice(rows):
    seeds = sorted({r["seed"] for r in rows})
    assert "1" in seeds
    for seed in seeds:
        summary = D.summarise([r for r in rows if r["seed"] == seed])
        assert set(summary) == set(S.SAMPLERS), seed
        for method, by_grid in summary.items():
            assert set(by_grid) == set(GRIDS)
            assert D.choose(by_grid) == S.DEFAULT_GRIDS[method], (seed, method, by_grid)
    assert all(int(r["n"]) == 5000 and int(r["steps"]) == 25 for r in rows)
    per_key = {(r["seed"], r["method"], r["grid"]) for r in rows}
    assert len(rows) == 8 * len(per_key)  # 4 processes × 2 data sets per (seed, method, grid)


def test_the_docstring_table_is_the_seed_1_table(rows):
    """Every line the script prints for seed 1 appears verbatim in the comment above
    DEFAULT_GRIDS (so the table cannot drift from the CSV)."""
    source = Path(sampler_run.__file__).read_text()
    table = D.table(D.summarise([r for r in rows if r["seed"] == "1"]))
    for line in table.splitlines():
        assert f"#: {line.rstrip()}\n" in source, line


def test_choose_breaks_ties_within_005_by_the_worst_case():
    assert D.choose({"a": (0.40, 0.10), "b": (0.44, 0.05), "c": (0.60, 0.01)}) == "b"
    assert D.choose({"a": (0.40, 0.10), "b": (0.46, 0.05)}) == "a"


def test_a_recomputed_row_equals_the_committed_one(rows):
    """unipc on the log-SNR grid, seed 1, all 8 cases: bitwise-seeded float64 sampling, so the
    recomputed errors match the CSV to its 6 printed digits."""
    new = D.measure("unipc", "logsnr", 5000, 25, 1)
    old = [r for r in rows if (r["method"], r["grid"], r["seed"]) == ("unipc", "logsnr", "1")]
    assert [(r["sde"], r["data"]) for r in new] == [(r["sde"], r["data"]) for r in old]
    for a, b in zip(new, old, strict=True):
        assert abs(float(a["error"]) - float(b["error"])) < 2e-6, (a, b)
        assert int(a["nfe"]) == int(b["nfe"]) == 25
