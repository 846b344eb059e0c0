"""Generate the diffusion samples lesson 08 and ``benchmarks/evaluation.py`` evaluate, once.

The bundled ``mnist_cond`` model, unconditional (null class), DPM-Solver++(2M) at 20 steps
(``GenerativeModel.generate`` defaults), clipped to [-1, 1], in batches of ``--batch`` with
seeds ``seed, seed + batch, ...``; stored as uint8 levels k = round(127.5 (x + 1)) in
``benchmarks/results/mnist_cond_samples.safetensors`` (tensor ``images`` [n, 1, 28, 28]),
1.5 MB for n = 2,000. The file is rewritten after every batch, so an interrupted run leaves
the batches it finished (its metadata ``n`` says how many digits).

    python benchmarks/eval_samples.py --n 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "mnist_cond"
OUT = ROOT / "benchmarks" / "results" / "mnist_cond_samples.safetensors"


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 levels k = round(127.5 (x + 1))."""
    return torch.round((x.double() + 1.0) * 127.5).to(torch.uint8)


def main(argv=None) -> None:
    from diffusion_lab.model import GenerativeModel

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    model = GenerativeModel.load(CHECKPOINT)
    t0, parts = time.perf_counter(), []
    for i in range(0, args.n, args.batch):
        parts.append(to_levels(model.generate(min(args.batch, args.n - i), steps=args.steps,
                                              seed=args.seed + i)))
        seconds = time.perf_counter() - t0
        images = torch.cat(parts).contiguous()
        meta = {"checkpoint": "data/checkpoints/mnist_cond", "method": "dpm_solver",
                "steps": str(args.steps), "seed": str(args.seed), "batch": str(args.batch),
                "labels": "none (unconditional)", "n": str(images.shape[0]),
                "seconds": f"{seconds:.1f}", "threads": str(torch.get_num_threads())}
        save_file({"images": images}, str(args.out), metadata=meta)
        print(f"{images.shape[0]} / {args.n} in {seconds:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
