"""Command line: ``python -m diffusion_lab train ...`` and ``python -m diffusion_lab sample ...``.

    python -m diffusion_lab train --dataset two_moons --steps 3000 --out runs/moons
    python -m diffusion_lab train --recipe cpu-mnist --out runs/mine    # ~10 min, 2 CPU threads
    python -m diffusion_lab train --dataset mnist --class-conditional --steps 20000 \\
        --device cuda --checkpoint-every 1000 --out data/checkpoints/mnist
    python -m diffusion_lab sample --checkpoint runs/moons --n 2000 --out moons.png
    torchrun --standalone --nproc_per_node=2 -m diffusion_lab train --dataset mnist ...

Under ``torchrun`` (DistributedDataParallel, gloo on CPU, nccl on GPUs) ``--batch-size`` is
the global batch, split over the processes, every process draws the same global batch from
``--seed``, and only rank 0 writes the checkpoint, card and samples: the result equals a
one-process run (``diffusion_lab.distributed``).

``--recipe NAME`` (:mod:`diffusion_lab.recipes`) sets every training option to a measured
recipe; options given on the command line override it. ``--sample-every N`` writes a grid of
samples to ``--out``/progress/ every N steps, so the run can be watched as it learns (the bar
shows the steps per second and the time left). ``--evaluate`` (MNIST) reads 200 generated
digits with the bundled classifier at the end and puts the result in the model card.

``train`` keeps a full resumable checkpoint in ``--out`` (every ``--checkpoint-every``
steps and at the end; ``--resume`` continues it) and writes a model card
``README.md`` plus ``samples.png`` there. ``--slim`` finally keeps only the EMA
weights (half the size, no longer resumable) for bundling. ``--seed`` seeds
everything: the network's initial weights, the toy data, and a CPU generator for
batches, times and noise (same batches on CPU and GPU): the same command gives
bit-identical weights. Sampling uses a generator on the model's device.

Outputs are checked before any work: an existing checkpoint (or PNG) is replaced only
with ``--force`` (or continued with ``--resume``), a non-empty folder that is not a
checkpoint never; everything is written atomically. Bad values are refused by argparse;
the package's own errors are printed as one ``error: ...`` line, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from . import _cli
from ._cli import device_arg, float_in, int_in, int_list, labels_arg, png_path
from .training import LOSS_WEIGHTINGS, LR_SCHEDULES

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


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {_cpu_name()} ({os.cpu_count()} cores), {torch.get_num_threads()} threads"


def _model_card(args, model, result, sample_png, sample_cmd, device) -> str:
    from .recipes import get_recipe

    cmd = "python -m diffusion_lab " + shlex.join(args.argv)
    cond = f"yes, label dropout {args.label_dropout}" if args.class_conditional else "no"
    recipe = get_recipe(args.recipe) if args.recipe else None
    lines = [
        f"# {Path(args.out).name}: diffusion model on `{args.dataset}`", "",
        f"- command: `{cmd}`",
        *([f"- recipe: `{recipe.name}` ({recipe.summary}); its choices:",
           *(f"    - {why}" for why in recipe.why)] if recipe else []),
        f"- training: lr schedule {args.lr_schedule} (warm-up {args.warmup}), loss weighting "
        f"{args.loss_weighting}" + (f" (γ = {args.min_snr_gamma})"
                                    if args.loss_weighting == "min_snr" else "")
        + f", EMA decay {args.ema_decay}",
        f"- network: {type(model.net).__name__}, {model.num_parameters():,} parameters",
        f"- SDE: {model.sde!r}",
        f"- steps: {result.steps} (batch {args.batch_size}, lr {args.lr}, seed {args.seed})",
        *([f"- processes: {args.world_size} (torchrun, DistributedDataParallel; global batch "
           f"{args.batch_size}, {args.batch_size // args.world_size} per process)"]
          if getattr(args, "world_size", 1) > 1 else []),
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
    """``train``; under ``torchrun`` one process per rank (:mod:`diffusion_lab.distributed`)."""
    from .distributed import setup, teardown

    for flag, value in (("--dataset", args.dataset), ("--steps", args.steps)):
        if value is None:
            raise _cli.UsageError(f"train needs {flag} (or a --recipe that sets it)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    w, device = setup(args.device)  # torchrun: join the process group (else one process)
    try:
        return _train(args, w, device)
    finally:
        teardown()


def _train(args, w, device) -> int:
    from .distributed import barrier
    from .model import GenerativeModel
    from .recipes import train_options
    from .schedules import get_schedule
    from .sde import get_sde

    out = Path(args.out)
    args.world_size = w.size
    if w.is_main:  # only rank 0 touches --out; the others wait until it is ready
        recovered = _cli.prepare_checkpoint_dir(out, resume=args.resume, force=args.force,
                                                recover=args.recover)
        if recovered:
            print(recovered)
        if args.force and not args.resume and (out / _cli.PROGRESS).is_dir():
            shutil.rmtree(out / _cli.PROGRESS)  # a new run: the old run's grids go
    barrier(w)
    data, labels, class_names = _load_dataset(args.dataset, args.n_points, args.seed,
                                              args.download)
    if not args.class_conditional:
        labels = None
    num_classes = len(class_names) if labels is not None else None
    with torch.random.fork_rng(devices=[]):  # the initial weights come from --seed too
        torch.manual_seed(args.seed)
        net = _build_net(args, data, num_classes)
    if args.sde == "ve":
        sde = get_sde("ve")
    else:
        sde = get_sde(args.sde, schedule=get_schedule(args.schedule))
    model = GenerativeModel(net, sde, data_shape=tuple(data.shape[1:]), class_names=class_names,
                            info={"dataset": args.dataset})
    sample_fn = None
    if args.sample_every:  # grids go into the checkpoint folder (train saves before the first)
        sample_fn = _cli.progress_writer(out / _cli.PROGRESS, model, labels is not None,
                                         args.card_guidance)
    result = model.train(
        data, labels, steps=args.steps, seed=args.seed, checkpoint_dir=out,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        progress=not args.no_progress, device=device, info={"dataset": args.dataset},
        sample_every=args.sample_every, sample_fn=sample_fn, **train_options(vars(args)),
    )
    if not w.is_main:  # the checkpoint is rank 0's; so are the card and the samples
        return 0
    if args.slim:
        model.save(out, ema_only=True)
    n = args.card_samples if data.dim() == 4 else 2000
    png = out / "samples.png"
    t0 = time.perf_counter()
    kw = {}
    if labels is not None and data.dim() == 4:
        kw = dict(labels=[i % num_classes for i in range(n)], guidance=args.card_guidance)
    x = model.generate(n, method="dpm_solver", steps=20, seed=0, **kw)
    _cli.save_figure(x, png, title=f"{args.dataset}, {result.steps} steps")
    sample_cmd = (f"python -m diffusion_lab sample --checkpoint {out} --n {n} --steps 20 "
                  f"--seed 0 --out samples.png" + (" --labels cycle --guidance "
                                                  f"{args.card_guidance}" if kw else ""))
    card = _model_card(args, model, result, png.name, sample_cmd, device)
    card += f"Sampling {n} samples at 20 DPM-Solver steps took {time.perf_counter() - t0:.2f} s.\n"
    if args.evaluate:
        card += "\n" + _evaluate(args, model, labels is not None) + "\n"
    _cli.write_text(out / "README.md", card)
    print(f"trained {result.steps} steps in {result.wall_time:.1f} s, final loss "
          f"{result.final_loss:.4f}; checkpoint, README.md and samples.png in {out}")
    return 0


def _evaluate(args, model, conditional: bool) -> str:
    """``--evaluate``: ``--evaluate-samples`` digits (classes in turn when conditional) read
    by the bundled classifier (:func:`diffusion_lab.evaluation.recognisability`); a paragraph
    for the card."""
    from .evaluation import recognisability

    if args.dataset != "mnist":
        raise _cli.UsageError(f"--evaluate reads digits with the bundled MNIST classifier; "
                              f"--dataset {args.dataset} is not MNIST")
    n, kw = args.evaluate_samples, {}
    if conditional:
        kw = dict(labels=[i % 10 for i in range(n)], guidance=args.card_guidance)
    x = model.generate(n, method="dpm_solver", steps=20, seed=1, **kw)
    r = recognisability(x, torch.tensor(kw["labels"]) if conditional else None)
    how = (f"classes requested in turn, guidance w = {args.card_guidance}" if conditional
           else "unconditional")
    text = (f"## Recognisability ({n} samples, {how}, DPM-Solver 20 steps, seed 1)\n\n"
            f"The bundled classifier is confident (p > {r['threshold']}) on "
            f"{r['confident']:.1%} of them; the confident ones cover {r['classes']} classes"
            + (f"; it reads the requested class on {r['agree']:.1%} (confident and the "
               f"requested class: {r['confident_agree']:.1%})" if conditional else "")
            + ".")
    print(text.split("\n\n")[1])
    return text


def cmd_sample(args) -> int:
    from .model import GenerativeModel

    _cli.prepare_output_file(args.out, force=args.force)
    model = GenerativeModel.load(args.checkpoint, device=args.device)
    labels = args.labels
    if labels == "cycle":
        if model.num_classes is None:
            raise _cli.UsageError(f"--labels cycle needs a class-conditional checkpoint; "
                                  f"{args.checkpoint} has no classes")
        labels = [i % model.num_classes for i in range(args.n)]
    elif isinstance(labels, list) and len(labels) == 1:
        labels = labels[0]
    x = model.generate(args.n, method=args.method, steps=args.steps, seed=args.seed,
                       labels=labels, guidance=args.guidance, progress=not args.no_progress)
    _cli.save_figure(x, args.out, title=f"{args.method}, {args.steps} steps")
    print(f"wrote {args.n} samples to {args.out}")
    return 0


SEED = int_in(0, 2**64 - 1)
POSITIVE = int_in(1)


def _add_train(sub, recipe: str | None = None) -> None:
    from .recipes import RECIPES, get_recipe

    t = sub.add_parser("train", help="train a model and write a checkpoint + model card")
    t.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a measured set of the options below (diffusion_lab.recipes); "
                        "options given explicitly override it. "
                        + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values()))
    t.add_argument("--dataset", default=None, choices=IMAGE_DATASETS + TOY_DATASETS)
    t.add_argument("--sde", default="vp", choices=("vp", "subvp", "ve"))
    t.add_argument("--schedule", default="linear",
                   choices=("linear", "cosine", "quadratic", "sigmoid", "power"))
    t.add_argument("--steps", type=int_in(1, 10**9), default=None)
    t.add_argument("--batch-size", type=int_in(1, 2**20), default=128)
    t.add_argument("--lr", type=float_in(0.0, lo_open=True), default=2e-4)
    t.add_argument("--weight-decay", type=float_in(0.0), default=0.0)
    t.add_argument("--warmup", type=int_in(0, 10**9), default=0)
    t.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                   help="after the warm-up: constant, or a cosine decay to 0 over --steps")
    t.add_argument("--loss-weighting", default="uniform", choices=LOSS_WEIGHTINGS,
                   help="min_snr: weight min(SNR, γ)/SNR per sample (Hang et al. 2023)")
    t.add_argument("--min-snr-gamma", type=float_in(0.0, lo_open=True), default=5.0)
    t.add_argument("--threads", type=int_in(1, 1024), default=None,
                   help="torch threads per process (default: torch's choice)")
    t.add_argument("--sample-every", type=POSITIVE, default=None,
                   help="write a grid of samples to OUT/progress/ every N steps")
    t.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=False,
                   help="MNIST: read generated digits with the bundled classifier at the end")
    t.add_argument("--evaluate-samples", type=int_in(1, 65536), default=200,
                   help="how many digits --evaluate reads")
    t.add_argument("--grad-clip", type=float_in(0.0), default=1.0,
                   help="max gradient norm; 0 turns clipping off")
    t.add_argument("--ema-decay", type=float_in(0.0, 1.0, hi_open=True), default=0.999)
    t.add_argument("--base-channels", type=int_in(1, 4096), default=32)
    t.add_argument("--channel-mults", type=int_list, default=[1, 2, 2])
    t.add_argument("--num-res-blocks", type=int_in(1, 16), default=1)
    t.add_argument("--attention-resolutions", type=int_list, default=[7])
    t.add_argument("--dropout", type=float_in(0.0, 1.0, hi_open=True), default=0.0)
    t.add_argument("--hidden", type=int_in(1, 65536), default=128, help="MLP width (2-D data)")
    t.add_argument("--layers", type=int_in(1, 256), default=3, help="MLP depth (2-D data)")
    t.add_argument("--n-points", type=int_in(1, 10**7), default=20000,
                   help="size of a 2-D toy data set")
    t.add_argument("--download", action="store_true",
                   help="MNIST: fetch the full set through torchvision (else the offline subset)")
    t.add_argument("--class-conditional", action="store_true")
    t.add_argument("--label-dropout", type=float_in(0.0, 1.0), default=0.1)
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--recover", action="store_true",
                   help="with --resume: first restore --out from an interrupted save")
    t.add_argument("--force", action="store_true",
                   help="replace an existing checkpoint in --out (else refused)")
    t.add_argument("--checkpoint-every", type=POSITIVE, default=None)
    t.add_argument("--seed", type=SEED, default=0)
    t.add_argument("--device", type=device_arg, default=torch.device("cpu"))
    t.add_argument("--slim", action="store_true",
                   help="at the end keep only the EMA weights (smaller; cannot be resumed)")
    t.add_argument("--card-samples", type=int_in(1, 4096), default=64)
    t.add_argument("--card-guidance", type=float_in(), default=1.0)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)
    if recipe is not None:
        t.set_defaults(**get_recipe(recipe).options)


def _add_sample(sub) -> None:
    from .samplers import SAMPLERS

    s = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--method", default="dpm_solver", choices=sorted(SAMPLERS))
    s.add_argument("--steps", type=int_in(1, 100000), default=20)
    s.add_argument("--n", type=int_in(1, 65536), default=16)
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--labels", type=labels_arg, default=None,
                   help="one int, a comma list, or 'cycle'")
    s.add_argument("--guidance", type=float_in(), default=None)
    s.add_argument("--out", type=png_path, default=Path("grid.png"))
    s.add_argument("--force", action="store_true", help="replace an existing --out")
    s.add_argument("--device", type=device_arg, default=torch.device("cpu"))
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_sample)


def _add_serve(sub) -> None:
    """``serve``: the HTTP API + web page (diffusion_lab.service, imported only when run)."""
    v = sub.add_parser("serve", help="serve the models over HTTP with a web page")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int_in(1, 65535), default=8000)
    v.add_argument("--checkpoints", default=None,
                   help="folder of checkpoints to serve (default: the bundled data/checkpoints)")
    v.add_argument("--concurrency", type=int_in(1, 64), default=1, help="generations run at once")
    v.add_argument("--queue-size", type=int_in(0, 4096), default=8,
                   help="generations waiting beyond those; more are refused with 503")
    v.add_argument("--threads", type=int_in(1, 1024), default=None,
                   help="torch threads per generation (default: cores / concurrency)")
    v.add_argument("--cache-size", type=int_in(1, 64), default=2, help="models kept loaded (LRU)")
    v.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    v.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from .service import serve

    serve(args.host, args.port, args.checkpoints, concurrency=args.concurrency,
          queue_size=args.queue_size, threads=args.threads, cache_size=args.cache_size,
          log_level=args.log_level)
    return 0


SUBCOMMANDS = [_add_sample, _add_serve]  # each adds one subparser (train: see build_parser)


def build_parser(recipe: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``recipe``, that recipe's options are ``train``'s defaults."""
    p = argparse.ArgumentParser(prog="python -m diffusion_lab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    _add_train(sub, recipe)
    for add in SUBCOMMANDS:
        add(sub)
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse once; a ``train --recipe`` is parsed again with the recipe's options as
    defaults, so that what the command line gives explicitly wins."""
    args = build_parser().parse_args(argv)
    if getattr(args, "recipe", None):
        args = build_parser(args.recipe).parse_args(argv)
    args.argv = argv
    return args


def main(argv=None) -> int:
    """Run a subcommand; the package's own errors become one ``error:`` line, exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        return args.func(args)
    except _cli.PACKAGE_ERRORS as err:
        if not _cli.raised_by_package(err):
            raise
        return _cli.report(err)
    except KeyboardInterrupt:
        print("interrupted (outputs are written atomically: the last complete ones stay)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
