"""Training throughput and sampling cost, each as a ratio to its floor, measured in one run.

* training: images/s of ``diffusion_lab.training.train`` (loss, label dropout, AdamW,
  gradient clipping, EMA, bookkeeping) over images/s of a bare forward + backward +
  AdamW loop of the same network at the same batch size;
* sampling: seconds per image of ``GenerativeModel.generate(n, "dpm_solver", steps=20)``
  (guided: two network evaluations per step in one batched pass) over seconds per image
  of 20 (or 40, for the guided batch) bare ``no_grad`` forward passes.

Ratios are measured back to back on the same machine, so they are comparable across
machines even though the seconds are not. Results: ``benchmarks/results/throughput.csv``
and ``throughput.png``.

    python benchmarks/throughput.py [--device cpu] [--batch 64] [--steps 30]
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from diffusion_lab.model import GenerativeModel  # noqa: E402
from diffusion_lab.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_training_rate(net, batch: int, steps: int, device) -> float:
    """images/s of forward + MSE backward + AdamW step on fixed random tensors."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, 28, 28, device=device)
    t = torch.rand(batch, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    target = torch.randn_like(x)
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            _sync(device)
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = ((net(x, t, y) - target) ** 2).mean()
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def package_training_rate(net, sde, data, labels, batch: int, steps: int, device) -> float:
    train(net, sde, data, labels=labels, steps=2, batch_size=batch, progress=False, device=device)
    _sync(device)
    result = train(net, sde, data, labels=labels, steps=steps, batch_size=batch,
                   progress=False, device=device)
    return batch * steps / result.wall_time


def bare_forward_seconds(net, n: int, evals: int, device) -> float:
    x = torch.randn(n, 1, 28, 28, device=device)
    t = torch.rand(n, device=device)
    y = torch.full((n,), 10, device=device)
    with torch.no_grad():
        net(x, t, y)
        _sync(device)
        start = time.perf_counter()
        for _ in range(evals):
            net(x, t, y)
        _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="training steps timed")
    p.add_argument("--n", type=int, default=64, help="images generated")
    p.add_argument("--repeats", type=int, default=3, help="alternating repetitions (best kept)")
    p.add_argument("--checkpoint", default=str(ROOT / "data" / "checkpoints" / "mnist_cond"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = GenerativeModel.load(args.checkpoint, device=device)
    net = model.net.train()
    data = torch.rand(512, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, 10, (512,))
    rows = []

    # alternate the two measurements and keep the best of each: load from other processes
    # slows whichever happens to run at that moment, never both by the same amount
    bare, ours = 0.0, 0.0
    for _ in range(args.repeats):
        bare = max(bare, bare_training_rate(net, args.batch, args.steps, device))
        ours = max(ours, package_training_rate(net, model.sde, data, labels, args.batch,
                                               args.steps, device))
    rows.append(dict(what="training", ours=ours, floor=bare, unit="images/s",
                     ratio=ours / bare))

    for guidance in (None, 2.0):
        model.generate(2, steps=2, seed=0)  # warm-up
        labels_g = None if guidance is None else torch.arange(args.n) % 10
        # the guided sampler evaluates the conditional and unconditional halves in one batch
        batch = args.n if guidance is None else 2 * args.n
        ours_s, floor_s = float("inf"), float("inf")
        for _ in range(args.repeats):
            _sync(device)
            start = time.perf_counter()
            model.generate(args.n, method="dpm_solver", steps=20, seed=0, labels=labels_g,
                           guidance=guidance)
            _sync(device)
            ours_s = min(ours_s, (time.perf_counter() - start) / args.n)
            floor_s = min(floor_s, bare_forward_seconds(model.net.eval(), batch, 20, device)
                          / args.n)
        name = "sampling (dpm_solver, 20 steps)" + ("" if guidance is None else ", guided")
        rows.append(dict(what=name, ours=ours_s, floor=floor_s, unit="s/image",
                         ratio=ours_s / floor_s))

    RESULTS.mkdir(parents=True, exist_ok=True)
    hw = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    with open(RESULTS / "throughput.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["what", "ours", "floor", "unit", "ratio", "device",
                                          "batch"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "device": f"{device.type} ({hw})", "batch": args.batch})
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh([r["what"] for r in rows], [r["ratio"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="k", lw=1, ls="--")
    ax.set_xlabel("ratio to the bare-network floor (training: rate; sampling: time)")
    ax.set_title(f"diffusion_lab overhead on {device.type}, batch {args.batch}")
    fig.tight_layout()
    fig.savefig(RESULTS / "throughput.png", dpi=120)
    for r in rows:
        print(f"{r['what']:45s} ours {r['ours']:.4g} {r['unit']}, floor {r['floor']:.4g}, "
              f"ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
