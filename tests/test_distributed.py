"""``train`` under ``torchrun`` (DistributedDataParallel, gloo, 2 CPU processes) equals one
process with the same global batch; rank 0 alone writes; resume works across the two.

The runs are real ``torchrun --standalone`` launches of ``python -m diffusion_lab train``
(a free port on localhost chosen by torchrun's rendezvous), on a 2-D toy with a small MLP
so that each takes seconds. Tolerance: the two runs differ only in the order of
floating-point summation of the batch gradient (half + half vs all), so after 40 AdamW
steps the weights agree to ~1e-6; we allow 1e-4 (absolute, weights are O(1)) and also
assert that they are *not* trivially equal to the initial weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_lab.distributed import World, local_rows, mean_over_world, world, wrap
from diffusion_lab.model import GenerativeModel

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--dataset", "two_moons", "--n-points", "2000", "--hidden", "32", "--layers", "2",
         "--batch-size", "64", "--lr", "1e-2", "--seed", "3", "--no-progress",
         "--card-samples", "16"]
TOL = 1e-4


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _single(out: Path, *extra: str) -> None:
    _run([sys.executable, "-m", "diffusion_lab", "train", *TRAIN, "--out", str(out), *extra])


def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node=2", "-m", "diffusion_lab", "train", *TRAIN,
                 "--out", str(out), *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model = GenerativeModel.load(path)
    out = {f"net.{k}": v for k, v in model.net.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in model.ema.state_dict().items()})
    return out


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    _single(base / "one", "--steps", "40")
    proc = _torchrun(base / "two", "--steps", "40")
    return base, proc


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(runs):
    base, _ = runs
    one, two = _weights(base / "one"), _weights(base / "two")
    diff = _max_diff(one, two)
    print(f"\nmax |w_2proc - w_1proc| = {diff:.2e} over net + EMA")
    assert diff < TOL, f"2-process weights differ from 1-process by {diff:.2e}"
    # and the runs did train (the comparison is not between two untouched nets)
    first = GenerativeModel.load(base / "one").info
    assert first["steps"] == 40
    card = (base / "two" / "README.md").read_text()
    assert "processes: 2" in card and "32 per process" in card


@pytest.mark.slow
def test_rank_zero_alone_writes(runs):
    base, proc = runs
    # one summary line (rank 0's), one folder, no stray temporary saves beside it
    assert proc.stdout.count("trained 40 steps") == 1, proc.stdout
    assert sorted(p.name for p in base.iterdir()) == ["one", "two"]
    names = sorted(p.name for p in (base / "two").iterdir())
    assert "samples.png" in names and "README.md" in names and "config.json" in names


@pytest.mark.slow
def test_resume_under_torchrun_continues_the_same_run(runs, tmp_path):
    base, _ = runs
    out = tmp_path / "resumed"
    _torchrun(out, "--steps", "20", "--checkpoint-every", "10")
    _torchrun(out, "--steps", "40", "--resume")
    diff = _max_diff(_weights(base / "one"), _weights(out))
    print(f"\nresumed: max |w_2proc - w_1proc| = {diff:.2e}")
    assert diff < TOL, f"resumed 2-process run differs from 1-process by {diff:.2e}"


# -- the pieces, in one process ------------------------------------------------------------
def test_one_process_is_not_distributed():
    w = world()
    assert w == World(0, 1, 0) and not w.distributed and w.is_main
    net = torch.nn.Linear(2, 2)
    assert wrap(net, w, torch.device("cpu")) is net
    v = torch.tensor([1.0, 2.0])
    assert mean_over_world(v, w) is v


def test_local_rows_tile_the_global_batch():
    rows = [local_rows(12, World(r, 3)) for r in range(3)]
    covered = torch.cat([torch.arange(12)[s] for s in rows])
    assert torch.equal(covered, torch.arange(12))


def test_global_batch_not_divisible_is_refused():
    with pytest.raises(ValueError, match=r"batch_size \(10\).*divisible.*\(4\)"):
        local_rows(10, World(1, 4))


PROBE = """
import json
import sys
from pathlib import Path

import torch
from diffusion_lab.data import make_toy
from diffusion_lab.distributed import setup, teardown
from diffusion_lab.nets import MLP
from diffusion_lab.sde import get_sde
from diffusion_lab.training import train

w, device = setup(torch.device("cpu"))
torch.manual_seed(0)
net = MLP(dim=2, hidden=16, layers=2)
seen = []
net.register_forward_hook(lambda m, args, out: seen.append(args[0][:, 0].sum().item()))
x, _ = make_toy("two_moons", 256, seed=0)
result = train(net, get_sde("vp"), x, steps=3, batch_size=64, progress=False, log_every=1)
# one file per rank: the ranks' stdout lines can interleave
record = {"rank": w.rank, "inputs": seen, "losses": result.loss_history}
(Path(sys.argv[1]) / f"rank_{w.rank}.json").write_text(json.dumps(record))
teardown()
"""


@pytest.mark.slow
def test_each_process_trains_on_its_own_half(tmp_path):
    """The split is real: the ranks feed different inputs, and the recorded loss is the mean
    over ranks (equal on both, equal to the one-process loss of the global batch)."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          str(script), str(tmp_path / "two")])
    _run([sys.executable, str(script), str(tmp_path / "one")])
    one = json.loads((tmp_path / "one" / "rank_0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["inputs"] != ranks[1]["inputs"]  # different rows on the two ranks
    # the summed first input column of the halves adds up to the global batch's
    for a, b, full in zip(ranks[0]["inputs"], ranks[1]["inputs"], one["inputs"], strict=True):
        assert abs(a + b - full) < 1e-4
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the global-batch loss on every rank
    assert max(abs(a - b) for a, b in zip(ranks[0]["losses"], one["losses"], strict=True)) < 1e-5


@pytest.mark.slow
def test_the_cpu_recipe_runs_unchanged_under_torchrun(tmp_path):
    """``--recipe cpu-mnist`` (U-Net, cosine lr, min-SNR weights, progress grids, evaluation)
    under torchrun equals the same recipe in one process, with one thread per process."""
    recipe = ["--recipe", "cpu-mnist", "--steps", "3", "--batch-size", "8", "--threads", "1",
              "--sample-every", "3", "--evaluate-samples", "10", "--card-samples", "2",
              "--no-progress"]
    _run([sys.executable, "-m", "diffusion_lab", "train", *recipe, "--out", str(tmp_path / "one")])
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node=2", "-m", "diffusion_lab", "train", *recipe,
                 "--out", str(tmp_path / "two")])
    diff = _max_diff(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    assert diff < TOL, f"2-process recipe weights differ from 1-process by {diff:.2e}"
    assert proc.stdout.count("Recognisability") == 0 and proc.stdout.count("trained 3 steps") == 1
    card = (tmp_path / "two" / "README.md").read_text()
    assert "recipe: `cpu-mnist`" in card and "processes: 2" in card and "Recognisability" in card
    assert (tmp_path / "two" / "progress" / "step_000003.png").is_file()
