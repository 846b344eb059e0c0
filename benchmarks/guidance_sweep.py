"""Classifier-free guidance: class accuracy vs diversity as the guidance weight w grows.

The bundled class-conditional MNIST model (``data/checkpoints/mnist_cond``) draws n digits,
n/10 per class, with ε̃ = ε_∅ + w (ε_y − ε_∅) (``GenerativeModel.generate(labels=...,
guidance=w)``; w = 0 unconditional, w = 1 conditional, w > 1 the sharpened
p(x) p(y | x)^w), DPM-Solver, a fixed number of steps, the same seed for every w. Per w:

* ``accuracy``: the bundled classifier reads the requested class, with its binomial ``se``
  (at w = 0 the label is ignored: chance level, about 0.1);
* ``precision`` / ``recall`` (Kynkäänniemi et al. 2019, k = 3) and ``fid``, both on the
  bundled classifier's 128-d features, against the n held-out test digits (the offline split;
  at n = 500 both are biased — compare them across w only, never with other n);
* ``spread``: the mean feature distance between two generated digits of the same class,
  over the same quantity for test digits (diversity within a class; 1 = as diverse as data).

    python benchmarks/guidance_sweep.py --n 200 --steps 8 --weights 0 1 3   # the committed table
    python benchmarks/guidance_sweep.py --plot-only

Results: ``benchmarks/results/guidance_sweep.csv`` and ``guidance_sweep.png``.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from diffusion_lab.classifier import classifier_data, load_classifier  # noqa: E402
from diffusion_lab.distances import SmallSampleWarning, precision_recall  # noqa: E402
from diffusion_lab.metrics import ClassifierFeatures, fid  # noqa: E402
from diffusion_lab.model import GenerativeModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "mnist_cond"
RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["w", "n", "steps", "accuracy", "se", "precision", "recall", "fid", "spread", "sec"]
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


def within_class_spread(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance between two distinct digits of the same class, averaged over classes."""
    per = []
    for c in labels.unique():
        f = feats[labels == c]
        if f.shape[0] > 1:
            d = torch.cdist(f, f)
            per.append(float(d.sum() / (f.shape[0] * (f.shape[0] - 1))))
    return sum(per) / len(per)


def sweep(model, clf, real, weights, n, steps, seed=0):
    """Rows for each w (see the module docstring); ``real`` = (test images, labels)."""
    feat = ClassifierFeatures(clf)
    real_x, real_y = real
    real_f = feat(real_x)
    real_spread = within_class_spread(real_f, real_y)
    labels = torch.arange(n) % 10
    rows = []
    for w in weights:
        t0 = time.perf_counter()
        x = model.generate(n, steps=steps, seed=seed, labels=labels, guidance=float(w))
        sec = time.perf_counter() - t0
        with torch.no_grad():
            acc = float((clf(x).argmax(1) == labels).double().mean())
        f = feat(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)
            prec, rec = precision_recall(real_f, f, k=3)
            fd = fid(real_x, x, feat) if n > 128 else float("nan")
        rows.append({"w": w, "n": n, "steps": steps, "accuracy": acc,
                     "se": (acc * (1 - acc) / n) ** 0.5, "precision": prec, "recall": rec,
                     "fid": fd, "spread": within_class_spread(f, labels) / real_spread,
                     "sec": sec})
    return rows


def plot(rows, path: Path) -> None:
    w = [float(r["w"]) for r in rows]
    get = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax0.errorbar(w, get("accuracy"), yerr=get("se"), marker="o", capsize=3,
                 label="class accuracy (classifier reads the label)")
    ax0.plot(w, get("precision"), "s-", label="precision (fidelity)")
    ax0.plot(w, get("recall"), "^-", label="recall (coverage)")
    ax0.plot(w, get("spread"), "d--", label="within-class spread / data's")
    ax0.set_xlabel("guidance weight w  (0 = unconditional, 1 = conditional)")
    ax0.set_ylim(0, max(1.05, 1.05 * max(get("spread"))))
    ax0.grid(alpha=0.3)
    ax0.legend(fontsize=8, loc="lower right")
    ax0.set_title(f"classifier-free guidance sweep (n = {rows[0]['n']}, "
                  f"{rows[0]['steps']} DPM-Solver steps)")
    acc, rec = get("accuracy"), get("recall")
    ax1.plot(rec, acc, "o-")
    for wi, a, r in zip(w, acc, rec, strict=True):
        ax1.annotate(f"w = {wi:g}", (r, a), textcoords="offset points", xytext=(5, -10),
                     fontsize=8)
    ax1.set_xlabel("recall (diversity)")
    ax1.set_ylabel("class accuracy")
    ax1.set_title("the trade-off curve")
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="digits per w (a multiple of 10, <= 500)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args(argv)
    if not 10 <= args.n <= 500 or args.n % 10:
        p.error(f"--n must be a multiple of 10 in [10, 500], got {args.n}")
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "guidance_sweep.csv"
    if args.plot_only:
        with open(csv_path) as fh:
            plot(list(csv.DictReader(fh)), args.out / "guidance_sweep.png")
        return
    torch.set_num_threads(args.threads)
    model, clf = GenerativeModel.load(CHECKPOINT), load_classifier()
    real = classifier_data("test")
    real = (real[0][: args.n], real[1][: args.n])
    rows = sweep(model, clf, real, args.weights, args.n, args.steps)
    with open(csv_path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=FIELDS)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})
            print(r, flush=True)
    plot(rows, args.out / "guidance_sweep.png")


if __name__ == "__main__":
    main()
