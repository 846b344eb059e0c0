"""The committed results of benchmarks/cpu_recipe.py support what lesson 04, the README and
the bundled mnist_cpu card say (no wall-clock assertions on this machine: only on the
recorded numbers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUNDLED = ROOT / "data" / "checkpoints" / "mnist_cpu"


def _rows(name):
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def test_throughput_rows_measure_the_recipe_against_the_bare_loop():
    rows = {r["variant"]: r for r in _rows("cpu_recipe_throughput.csv")}
    assert float(rows["bare loop (the floor)"]["ratio_to_bare"]) == 1.0
    assert float(rows["recipe train()"]["ratio_to_bare"]) > 0.85
    assert float(rows["1 thread"]["ratio_to_bare"]) < 0.75
    assert {"channels-last", "bfloat16 autocast", "batch 32", "batch 128"} <= set(rows)


def test_the_bundled_run_meets_the_target_and_matches_its_checkpoint():
    rows = _rows("cpu_recipe_quality.csv")
    bundled = [r for r in rows if r["run"] == "recipe (bundled mnist_cpu)"]
    assert len(bundled) == 1
    b = bundled[0]
    training = json.loads((BUNDLED / "config.json").read_text())["training"]
    assert training["device"] == "cpu" and training["wall_time"] < 600
    assert abs(float(b["wall_time_s"]) - training["wall_time"]) < 0.1
    assert int(b["steps"]) == training["steps"] == 2000
    assert float(b["confident"]) >= 0.7 and int(b["classes"]) >= 9
    assert float(b["confident_agree"]) >= 0.7
    card = (BUNDLED / "README.md").read_text()
    assert "--recipe cpu-mnist --out data/checkpoints/mnist_cpu`" in card
    assert f"{float(b['confident']):.1%} of them" in card  # the card's seed and settings


def test_the_kind_column_separates_the_time_curve_from_the_ablations():
    rows = _rows("cpu_recipe_quality.csv")
    for r in rows:  # the curve changes only --steps (or is the bundled full run)
        extra = r["run"].split()[1:]
        only_steps = extra[:1] == ["(bundled"] or (len(extra) == 2 and extra[0] == "--steps")
        assert r["kind"] == ("curve" if only_steps else "ablation"), r["run"]
    ablations = [r for r in rows if r["kind"] == "ablation"]
    assert len(ablations) == 3 and {r["steps"] for r in ablations} == {"700"}
    assert all(r["fid_500"] for r in rows if r["kind"] == "curve")


def test_the_time_curve_rises_to_the_full_recipe():
    rows = _rows("cpu_recipe_quality.csv")
    curve = sorted((r for r in rows if r["kind"] == "curve"), key=lambda r: float(r["wall_time_s"]))
    assert len(curve) >= 4
    agree = [float(r["confident_agree"]) for r in curve]
    assert agree[-1] == max(agree) and agree[0] < agree[-1] - 0.2
