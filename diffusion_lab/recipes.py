"""Training recipes: named sets of ``train`` options, measured to do one job well.

``python -m diffusion_lab train --recipe cpu-mnist --out runs/mine`` trains a class-conditional
MNIST model from scratch on the offline digits in about 7 minutes of 2 CPU threads; any
option given on the command line overrides the recipe's value (``--steps 300`` for a short
try). What each choice is and why (measured in ``benchmarks/cpu_recipe.py``, results in
``benchmarks/results/cpu_recipe_*.csv``) is in :data:`RECIPES`' ``why``; the model card of a
recipe run records the recipe, the command and the wall time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Recipe", "RECIPES", "get_recipe", "TRAIN_OPTIONS", "train_options"]

#: the optimisation choices that are ``train()`` keyword arguments under the same names as the
#: CLI's argparse destinations (and a recipe's options)
TRAIN_OPTIONS = ("batch_size", "lr", "weight_decay", "warmup", "lr_schedule", "loss_weighting",
                 "min_snr_gamma", "ema_decay", "grad_clip", "label_dropout")


def train_options(options: Mapping) -> dict:
    """The ``train()`` keyword arguments among ``options`` (parsed CLI arguments as a dict, or
    a recipe's options): the :data:`TRAIN_OPTIONS` present, with ``grad_clip <= 0`` meaning no
    clipping (``None``, as ``--grad-clip 0`` documents)."""
    kw = {k: options[k] for k in TRAIN_OPTIONS if k in options}
    if kw.get("grad_clip") is not None and kw["grad_clip"] <= 0:
        kw["grad_clip"] = None
    return kw


@dataclass(frozen=True)
class Recipe:
    """``options``: argparse destinations of ``train`` and their values; ``why``: one line per
    choice, for the model card and ``--help``."""

    name: str
    summary: str
    options: dict = field(default_factory=dict)
    why: tuple[str, ...] = ()


CPU_MNIST = Recipe(
    name="cpu-mnist",
    summary="class-conditional MNIST digits from scratch in about 7 minutes of 2 CPU threads",
    options=dict(
        dataset="mnist", class_conditional=True, label_dropout=0.1,
        base_channels=16, channel_mults=[1, 2, 2], num_res_blocks=1, attention_resolutions=[],
        steps=2000, batch_size=64, lr=2e-3, warmup=100, lr_schedule="cosine",
        loss_weighting="min_snr", min_snr_gamma=5.0, ema_decay=0.995, grad_clip=1.0,
        threads=2, sample_every=250, checkpoint_every=250, card_guidance=3.0,
        evaluate=True,
    ),
    why=(
        "network: U-Net with 16 base channels, 3 levels (28, 14, 7), one ResBlock per level and "
        "self-attention only in the 7x7 middle block, where 49 positions make it cheap "
        "(~288k parameters)",
        "class-conditional with 10 % label dropout, sampled with guidance w = 3: each class "
        "on request",
        "batch 64, lr 2e-3 with 100 warm-up steps, then a cosine decay to 0 over the run "
        "(the benchmark compares a constant lr)",
        "min-SNR-5 loss weighting (Hang et al. 2023): caps the weight of the nearly clean "
        "times (the benchmark compares the unweighted loss)",
        "EMA decay 0.995, a memory of about 200 steps, a tenth of the run (the benchmark "
        "compares 0.999)",
        "2 threads, float32: bfloat16 and channels-last are measured in the benchmark",
    ),
)

RECIPES = {r.name: r for r in (CPU_MNIST,)}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error lists the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]
