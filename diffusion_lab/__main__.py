"""Command line: ``python -m diffusion_lab train ...`` and ``python -m diffusion_lab sample ...``.

    python -m diffusion_lab train --dataset two_moons --steps 3000 --out runs/moons
    python -m diffusion_lab train --dataset mnist --class-conditional --steps 20000 \\
        --device cuda --checkpoint-every 1000 --out data/checkpoints/mnist
    python -m diffusion_lab sample --checkpoint runs/moons --n 2000 --out moons.png

``train`` keeps a full resumable checkpoint in ``--out`` (every ``--checkpoint-every``
steps and at the end; ``--resume`` continues it) and writes a model card
``README.md`` plus ``samples.png`` there. ``--slim`` finally keeps only the EMA
weights (half the size, no longer resumable) for bundling. Randomness for batches,
times and noise comes from a CPU generator (same batches on CPU and GPU); sampling
uses a generator on the model's device.
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

IMAGE_DATASETS = ("mnist", "colour_mnist")
TOY_DATASETS = ("swiss_roll", "two_moons", "eight_gaussians", "checkerboard")


def _load_dataset(name: str, n_points: int, seed: int, download: bool = False):
    """(data, labels, class_names) for a dataset name."""
    from . import data as dl_data

    if name == "mnist":
        x, y = dl_data.load_mnist("train", download=download)
        return x, y, [str(i) for i in range(10)]
    if name == "colour_mnist":
        x, y = dl_data.load_colour_mnist("train", download=download)
        return x, y, [str(i) for i in range(10)]
    x, y = dl_data.make_toy(name, n_points, seed=seed)
    names = None
    if y is not None and y.numel() and not y.is_floating_point():
        names = [str(i) for i in range(int(y.max()) + 1)]
    return x, y, names


def _build_net(args, data, num_classes):
    from .nets import MLP, UNet

    if data.dim() == 4:
        return UNet(in_channels=data.shape[1], base_channels=args.base_channels,
                    channel_mults=args.channel_mults, num_res_blocks=args.num_res_blocks,
                    attention_resolutions=args.attention_resolutions, dropout=args.dropout,
                    num_classes=num_classes, image_size=data.shape[-1])
    return MLP(dim=data.shape[1], hidden=args.hidden, layers=args.layers,
               num_classes=num_classes)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def save_figure(x: torch.Tensor, out, title: str | None = None) -> None:
    """Images ``[N, C, H, W]`` in [-1, 1] -> a grid PNG; points ``[N, 2]`` -> a scatter plot."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = x.detach().cpu()
    if x.dim() == 4:
        from torchvision.utils import save_image

        nrow = max(1, int(math.ceil(math.sqrt(x.shape[0]))))
        save_image((x.clamp(-1, 1) + 1) / 2, str(out), nrow=nrow, padding=2)
        return
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    pts = x.reshape(x.shape[0], -1)
    ax.scatter(pts[:, 0].numpy(), pts[:, 1 if pts.shape[1] > 1 else 0].numpy(), s=2, alpha=0.6)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    fig.savefig(str(out), dpi=100, bbox_inches="tight")


def _model_card(args, model, result, sample_png, sample_cmd, device) -> str:
    cmd = "python -m diffusion_lab " + shlex.join(args.argv)
    cond = f"yes, label dropout {args.label_dropout}" if args.class_conditional else "no"
    lines = [
        f"# {Path(args.out).name}: diffusion model on `{args.dataset}`", "",
        f"- command: `{cmd}`",
        f"- network: {type(model.net).__name__}, {model.num_parameters():,} parameters",
        f"- SDE: {model.sde!r}",
        f"- steps: {result.steps} (batch {args.batch_size}, lr {args.lr}, seed {args.seed})",
        f"- wall time: {result.wall_time:.1f} s",
        f"- hardware: {_hardware(device)}; torch {torch.__version__}",
        f"- final loss (mean of last 100 steps): {result.final_loss:.5f}",
        f"- class-conditional: {cond}",
        f"- samples: `{sample_png}` (`{sample_cmd}`)", "",
        f"![samples]({sample_png})", "",
        "Load it with `diffusion_lab.GenerativeModel.load(path)`; the checkpoint is "
        "safetensors + JSON (no pickle).", "",
    ]
    return "\n".join(lines)


def cmd_train(args) -> int:
    from .model import GenerativeModel
    from .schedules import get_schedule
    from .sde import get_sde

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch sees no CUDA device")
    data, labels, class_names = _load_dataset(args.dataset, args.n_points, args.seed,
                                              args.download)
    if not args.class_conditional:
        labels = None
    num_classes = len(class_names) if labels is not None else None
    net = _build_net(args, data, num_classes)
    if args.sde == "ve":
        sde = get_sde("ve")
    else:
        sde = get_sde(args.sde, schedule=get_schedule(args.schedule))
    model = GenerativeModel(net, sde, data_shape=tuple(data.shape[1:]), class_names=class_names,
                            info={"dataset": args.dataset})
    out = Path(args.out)
    result = model.train(
        data, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup=args.warmup, grad_clip=args.grad_clip,
        ema_decay=args.ema_decay, label_dropout=args.label_dropout, seed=args.seed,
        checkpoint_dir=out, checkpoint_every=args.checkpoint_every, resume=args.resume,
        progress=not args.no_progress, device=device, info={"dataset": args.dataset},
    )
    if args.slim:
        model.save(out, ema_only=True)
    n = args.card_samples if data.dim() == 4 else 2000
    png = out / "samples.png"
    t0 = time.perf_counter()
    kw = {}
    if labels is not None and data.dim() == 4:
        kw = dict(labels=[i % num_classes for i in range(n)], guidance=args.card_guidance)
    x = model.generate(n, method="dpm_solver", steps=20, seed=0, **kw)
    save_figure(x, png, title=f"{args.dataset}, {result.steps} steps")
    sample_cmd = (f"python -m diffusion_lab sample --checkpoint {out} --n {n} --steps 20 "
                  f"--seed 0 --out samples.png" + (" --labels cycle --guidance "
                                                  f"{args.card_guidance}" if kw else ""))
    card = _model_card(args, model, result, png.name, sample_cmd, device)
    card += f"Sampling {n} samples at 20 DPM-Solver steps took {time.perf_counter() - t0:.2f} s.\n"
    tmp = out / "README.md.tmp"
    tmp.write_text(card, encoding="utf-8")
    tmp.replace(out / "README.md")
    print(f"trained {result.steps} steps in {result.wall_time:.1f} s, final loss "
          f"{result.final_loss:.4f}; checkpoint, README.md and samples.png in {out}")
    return 0


def _parse_labels(text: str | None, n: int, num_classes: int | None):
    if text is None:
        return None
    if text == "cycle":
        if num_classes is None:
            raise SystemExit("--labels needs a class-conditional checkpoint")
        return [i % num_classes for i in range(n)]
    values = [int(v) for v in text.split(",") if v.strip()]
    return values[0] if len(values) == 1 else values


def cmd_sample(args) -> int:
    from .model import GenerativeModel

    model = GenerativeModel.load(args.checkpoint, device=args.device)
    labels = _parse_labels(args.labels, args.n, model.num_classes)
    x = model.generate(args.n, method=args.method, steps=args.steps, seed=args.seed,
                       labels=labels, guidance=args.guidance, progress=not args.no_progress)
    save_figure(x, args.out, title=f"{args.method}, {args.steps} steps")
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffusion_lab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model and write a checkpoint + model card")
    t.add_argument("--dataset", required=True, choices=IMAGE_DATASETS + TOY_DATASETS)
    t.add_argument("--sde", default="vp", choices=("vp", "subvp", "ve"))
    t.add_argument("--schedule", default="linear",
                   choices=("linear", "cosine", "quadratic", "sigmoid", "power"))
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--warmup", type=int, default=0)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--ema-decay", type=float, default=0.999)
    t.add_argument("--base-channels", type=int, default=32)
    t.add_argument("--channel-mults", type=_ints, default=[1, 2, 2])
    t.add_argument("--num-res-blocks", type=int, default=1)
    t.add_argument("--attention-resolutions", type=_ints, default=[7])
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--hidden", type=int, default=128, help="MLP width (2-D data)")
    t.add_argument("--layers", type=int, default=3, help="MLP depth (2-D data)")
    t.add_argument("--n-points", type=int, default=20000, help="size of a 2-D toy data set")
    t.add_argument("--download", action="store_true",
                   help="MNIST: fetch the full set through torchvision (else the offline subset)")
    t.add_argument("--class-conditional", action="store_true")
    t.add_argument("--label-dropout", type=float, default=0.1)
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--slim", action="store_true",
                   help="at the end keep only the EMA weights (smaller; cannot be resumed)")
    t.add_argument("--card-samples", type=int, default=64)
    t.add_argument("--card-guidance", type=float, default=1.0)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--method", default="dpm_solver")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--n", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--labels", default=None, help="one int, a comma list, or 'cycle'")
    s.add_argument("--guidance", type=float, default=None)
    s.add_argument("--out", default="grid.png")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_sample)
    _add_serve_parser(sub)
    return p


def _add_serve_parser(sub) -> None:
    """``serve``: the HTTP API + web page (diffusion_lab.service, imported only when run)."""
    v = sub.add_parser("serve", help="serve the models over HTTP with a web page")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--checkpoints", default=None,
                   help="folder of checkpoints to serve (default: the bundled data/checkpoints)")
    v.add_argument("--concurrency", type=int, default=1, help="generations run at once")
    v.add_argument("--queue-size", type=int, default=8,
                   help="generations waiting beyond those; more are refused with 503")
    v.add_argument("--threads", type=int, default=None,
                   help="torch threads per generation (default: cores / concurrency)")
    v.add_argument("--cache-size", type=int, default=2, help="models kept loaded (LRU)")
    v.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    v.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from .service import serve

    serve(args.host, args.port, args.checkpoints, concurrency=args.concurrency,
          queue_size=args.queue_size, threads=args.threads, cache_size=args.cache_size,
          log_level=args.log_level)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
