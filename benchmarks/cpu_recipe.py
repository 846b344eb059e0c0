"""The CPU training recipe (``train --recipe cpu-mnist``): throughput of each choice, and what
2, 5 and 10 minutes of training buy.

``throughput``: images/s of the recipe's network at its batch size, measured back to back in
one run: the bare forward + backward + AdamW loop on fixed tensors (the floor), the recipe's
full ``train`` loop (data and noise draws, label dropout, min-SNR weights, clipping, EMA, lr
schedule, loss bookkeeping), and the bare loop with one choice changed (1 thread instead of 2,
channels-last memory, bfloat16 autocast, batch 32 or 128). Ratios to the bare loop are
comparable across machines; seconds are not. -> ``results/cpu_recipe_throughput.csv`` / png.

``quality``: the recipe run from scratch with fewer steps (the cosine decay then ends within the
shorter budget, which is what a learner with less time would run), and at 700 steps with one
choice undone (uniform loss weighting, a constant lr, EMA decay 0.999), each through the
command line exactly as a learner types it; each checkpoint is read by the bundled classifier
(200 digits, classes in turn, guidance 3, 20 DPM-Solver steps: ``evaluation.recognisability``)
and, on the time curve, scored by FID in the bundled classifier's features (500 digits against
the 4,500 training digits; FID at n = 500 is biased upward, so compare rows with each other,
not with the n = 2,000 numbers of ``sampler_benchmark.csv``). Add the full recipe run (the bundled
``data/checkpoints/mnist_cpu``) with ``--checkpoints``. -> ``results/cpu_recipe_quality.csv`` / png.

Run both on an otherwise idle machine (wall time is what is measured):

    python benchmarks/cpu_recipe.py throughput
    python benchmarks/cpu_recipe.py quality --checkpoints data/checkpoints/mnist_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from diffusion_lab.data import load_mnist  # noqa: E402
from diffusion_lab.evaluation import recognisability  # noqa: E402
from diffusion_lab.metrics import fid  # noqa: E402
from diffusion_lab.model import GenerativeModel  # noqa: E402
from diffusion_lab.nets import UNet  # noqa: E402
from diffusion_lab.recipes import get_recipe, train_options  # noqa: E402
from diffusion_lab.sde import get_sde  # noqa: E402
from diffusion_lab.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = get_recipe("cpu-mnist")
FID_N = 500  # generated digits per FID (the time curve only)


def recipe_net() -> UNet:
    o = RECIPE.options
    torch.manual_seed(0)
    return UNet(base_channels=o["base_channels"], channel_mults=o["channel_mults"],
                num_res_blocks=o["num_res_blocks"],
                attention_resolutions=o["attention_resolutions"], num_classes=10)


def bare_rate(batch: int, steps: int, *, channels_last: bool = False,
              bf16: bool = False) -> float:
    """images/s of forward + MSE backward + AdamW step on fixed random tensors."""
    net = recipe_net()
    x = torch.randn(batch, 1, 28, 28)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    t, y, target = torch.rand(batch), torch.randint(0, 10, (batch,)), torch.randn_like(x)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        with autocast:
            out = net(x, t, y)
        loss = (out.float() - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def recipe_rate(batch: int, steps: int) -> float:
    """images/s of the recipe's ``train`` loop (no checkpoints, no progress grids)."""
    data, labels = load_mnist("train", verbose=False)
    kw = dict(train_options(RECIPE.options), batch_size=batch, labels=labels, progress=False)
    net = recipe_net()
    train(net, get_sde("vp"), data, steps=2, **kw)  # warm-up
    start = time.perf_counter()
    train(net, get_sde("vp"), data, steps=steps, **kw)
    return batch * steps / (time.perf_counter() - start)


def throughput(args) -> None:
    threads, batch = RECIPE.options["threads"], RECIPE.options["batch_size"]
    variants = [  # (name, threads, batch, how)
        ("bare loop (the floor)", threads, batch, dict()),
        ("recipe train()", threads, batch, "recipe"),
        ("1 thread", 1, batch, dict()),
        ("channels-last", threads, batch, dict(channels_last=True)),
        ("bfloat16 autocast", threads, batch, dict(bf16=True)),
        ("batch 32", threads, 32, dict()),
        ("batch 128", threads, 128, dict()),
    ]
    rates = {name: [] for name, *_ in variants}
    for _ in range(args.repeats):  # alternate the variants: slow drifts hit all of them
        for name, n_threads, b, how in variants:
            torch.set_num_threads(n_threads)
            steps = max(4, args.images // b)
            rates[name].append(recipe_rate(b, steps) if how == "recipe"
                               else bare_rate(b, steps, **how))
            print(f"{name}: {rates[name][-1]:.0f} images/s", flush=True)
    floor = max(rates[variants[0][0]])
    rows = [dict(variant=name, threads=n_threads, batch=b, images_per_s=round(max(rates[name]), 1),
                 ratio_to_bare=round(max(rates[name]) / floor, 3), repeats=args.repeats)
            for name, n_threads, b, _ in variants]
    _write(RESULTS / "cpu_recipe_throughput.csv", rows)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.barh([r["variant"] for r in rows][::-1], [r["ratio_to_bare"] for r in rows][::-1])
    ax.axvline(1.0, color="0.3", lw=1, ls="--")
    ax.set_xlabel("images/s relative to the bare loop (2 threads, batch 64; best of "
                  f"{args.repeats})")
    ax.set_title(f"cpu-mnist recipe network on this CPU: bare loop {floor:.0f} images/s")
    fig.tight_layout()
    fig.savefig(RESULTS / "cpu_recipe_throughput.png", dpi=110)


def run_recipe(options: str, out: Path) -> float:
    """``python -m diffusion_lab train --recipe cpu-mnist OPTIONS`` in a fresh process;
    returns the training wall time its checkpoint records."""
    cmd = [sys.executable, "-m", "diffusion_lab", "train", "--recipe", "cpu-mnist",
           *options.split(), "--out", str(out), "--no-progress", "--no-evaluate"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "config.json").read_text())["training"]["wall_time"]


def score(checkpoint: Path, real: torch.Tensor, with_fid: bool) -> dict:
    """Recognisability of 200 guided digits (seed 1, as the model card) and, ``with_fid``,
    the FID of 500 more (seed 2)."""
    torch.set_num_threads(RECIPE.options["threads"])
    model = GenerativeModel.load(checkpoint)
    w = RECIPE.options["card_guidance"]
    labels = [i % 10 for i in range(200)]
    x = model.generate(200, steps=20, seed=1, labels=labels, guidance=w)
    r = recognisability(x, torch.tensor(labels))
    value = ""
    if with_fid:
        many = model.generate(FID_N, steps=20, seed=2, labels=[i % 10 for i in range(FID_N)],
                              guidance=w)
        value = round(fid(real, many), 4)
    info = json.loads((checkpoint / "config.json").read_text())["training"]
    return dict(steps=info["steps"], wall_time_s=round(info["wall_time"], 1),
                confident=r["confident"], confident_agree=r["confident_agree"], agree=r["agree"],
                classes=r["classes"], fid_500=value)


def quality(args) -> None:
    """Train every ``--runs`` variant first (the part that must have the machine to itself;
    into ``--keep`` if given, else a temporary folder), then score them all and the
    ``--checkpoints``; ``--score-runs`` scores the runs kept by an earlier ``--keep``."""
    real, _ = load_mnist("train", verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or args.score_runs or tmp)
        if not args.score_runs:
            for i, options in enumerate(args.runs):
                run_recipe(options, folder / f"run_{i}")
        runs = sorted(folder.glob("run_*"), key=lambda p: int(p.name.split("_")[1]))
        rows = [dict(run=f"recipe {_options_of(out)}", out=out) for out in runs]
        rows += [dict(run=f"recipe (bundled {Path(ck).name})", out=Path(ck))
                 for ck in args.checkpoints]
        for row in rows:  # FID only on the time curve: it is the slow part
            row["kind"] = run_kind(row["run"])
            row.update(score(row.pop("out"), real, with_fid=row["kind"] == "curve"))
            print(row, flush=True)
    _write(RESULTS / "cpu_recipe_quality.csv", rows)
    plot_quality([r for r in rows if r["kind"] == "curve"])


def _options_of(run: Path) -> str:
    """The options a kept run added to the recipe, read back from its config (the model
    card's command line holds them between ``--recipe cpu-mnist`` and ``--out``)."""
    card = (run / "README.md").read_text()
    command = card.split("- command: `", 1)[1].split("`", 1)[0].split()
    return " ".join(command[command.index("cpu-mnist") + 1:command.index("--out")])


def run_kind(run: str) -> str:
    """``"curve"`` for the time curve (the recipe with only ``--steps`` changed, or a bundled
    full run), ``"ablation"`` for a run with one more choice changed; the CSV's ``kind``."""
    extra = run.split()[1:]
    curve = extra[:1] == ["(bundled"] or (len(extra) == 2 and extra[0] == "--steps")
    return "curve" if curve else "ablation"


def plot_quality(rows) -> None:
    rows = sorted(rows, key=lambda r: r["wall_time_s"])
    minutes = [r["wall_time_s"] / 60 for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(minutes, [r["confident_agree"] for r in rows], "o-", label="confident and requested class")
    a.plot(minutes, [r["confident"] for r in rows], "s--", label="confident (p > 0.9)")
    a.axhline(0.7, color="0.4", lw=1, ls=":", label="target 70 %")
    a.set_ylim(0, 1)
    a.set_xlabel("training wall time (minutes, 2 CPU threads)")
    a.set_ylabel("fraction of 200 digits")
    a.legend(loc="lower right", fontsize=8)
    a.set_title("the bundled classifier reads them")
    b.plot(minutes, [r["fid_500"] for r in rows], "o-")
    b.set_xlabel("training wall time (minutes, 2 CPU threads)")
    b.set_ylabel("FID (bundled features, n = 500)")
    b.set_yscale("log")
    b.set_title("distance to the training digits")
    for ax in (a, b):
        ax.set_xlim(0, max(minutes) * 1.08)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "cpu_recipe_quality.png", dpi=110)


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--images", type=int, default=1280, help="images per measurement")
    t.add_argument("--repeats", type=int, default=3)
    q = sub.add_parser("quality")
    q.add_argument("--runs", nargs="*", default=[
        "--steps 300", "--steps 700", "--steps 1200", "--steps 700 --loss-weighting uniform",
        "--steps 700 --lr-schedule constant", "--steps 700 --ema-decay 0.999"],
        help="options added to the recipe, one string per run")
    q.add_argument("--checkpoints", nargs="*", default=[])
    q.add_argument("--keep", default=None, help="train the runs into this folder and keep them")
    q.add_argument("--score-runs", default=None, help="score the runs kept in this folder")
    args = p.parse_args(argv)
    throughput(args) if args.what == "throughput" else quality(args)


if __name__ == "__main__":
    main()
