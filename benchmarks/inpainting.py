"""Inpainting benchmark: does the completed digit still read as the original one?

n held-out MNIST digits (the offline test split of ``diffusion_lab.data``, the first n of its
fixed shuffled order) lose their bottom half (optionally a centred 14×14 square); the bundled
model (``data/checkpoints/mnist_cond``, used *unconditionally*: the null label, the digit's
class is never given) fills it with each method of ``GenerativeModel.inpaint`` at a few NFE
budgets, and the bundled classifier (``data/checkpoints/mnist_classifier``) reads the
completion. Reported per (mask, method, NFE):

* ``accuracy``: fraction of completions classified as the original label, with its binomial
  standard error ``se`` = √(p(1 − p)/n); known pixels are checked to be exactly the given ones;
* ``nfe`` network calls per image, ``grad_nfe`` of them with a backward pass (DPS);
* ``sec_per_image`` wall time, and ``fwd_equiv`` = that time over one bare ``no_grad``
  forward pass at the same batch, measured in the same run (a machine-independent cost).

Reference rows: the original digits (``original``), the half-erased digit with the missing
part set to background −1 (``erased``), and ``nearest_train``: the missing part pasted from
the training digit whose known part is nearest in L2 (a non-parametric completion, 4,500
candidates). Results: ``benchmarks/results/inpainting.csv``, ``inpainting.png`` (accuracy vs
NFE and vs cost, one line per method) and ``inpainting_grid.png`` (originals / masked /
completions by the default method).

    python benchmarks/inpainting.py --n 200                 # the committed table (~15 min, 2 cores)
    python benchmarks/inpainting.py --n 100 --steps 10      # a quicker look
    python benchmarks/inpainting.py --plot-only             # redraw the PNG from the CSV
"""

from __future__ import annotations

import argparse
import csv
import re
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from diffusion_lab.classifier import classifier_data, load_classifier  # noqa: E402
from diffusion_lab.model import GenerativeModel  # noqa: E402
from diffusion_lab.tasks import DEFAULT_INPAINT_METHOD, default_inpaint_steps  # noqa: E402
from diffusion_lab.viz import image_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "mnist_cond"
RESULTS = ROOT / "benchmarks" / "results"
FIELDS = ["mask", "method", "label", "steps", "nfe", "grad_nfe", "n", "accuracy", "se",
          "sec_per_image", "fwd_equiv", "options"]
DEFAULT_METHOD = DEFAULT_INPAINT_METHOD
DEFAULT_STEPS = default_inpaint_steps()
# label -> (inpaint options, grid steps); {} = the package default. NFE = steps, except
# RePaint r = 5, jump 1: 5·steps − 4, projection_best_of: candidates · (steps + 4), and the
# default projection_by_class: classes · (steps + 5) (their docstrings).
# One budget per method: the shared 2-core machine allows no more at n = 200.
METHODS = {
    "replacement": ({"method": "replacement"}, (20,)),
    "repaint_r5": ({"method": "repaint", "resample_steps": 5}, (10,)),
    "projection": ({"method": "projection", "eta": 0.5}, (20,)),
    "dps": ({"method": "dps"}, (20,)),
    "dps_projection": ({"method": "dps_projection", "zeta": 0.5, "eta": 0.5}, (20,)),
    "projection_best_of": ({"method": "projection_best_of"}, (10,)),  # the default until then
    "projection_by_class": ({"method": "projection_by_class"}, (5,)),  # the default, cheaper
    "default": ({}, (DEFAULT_STEPS,)),
}


def make_mask(kind: str) -> torch.Tensor:
    """1 = generate: the bottom half, or the centred 14×14 square."""
    mask = torch.zeros(1, 1, 28, 28)
    if kind == "bottom":
        mask[..., 14:, :] = 1
    elif kind == "centre":
        mask[..., 7:21, 7:21] = 1
    else:
        raise ValueError(f"unknown mask {kind!r}; valid: bottom, centre")
    return mask


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})


class Bench:
    def __init__(self, args):
        self.args = args
        self.model = GenerativeModel.load(CHECKPOINT)
        self.clf = load_classifier()
        x, y = classifier_data("test")
        self.x, self.y = x[: args.n], y[: args.n]
        if args.shard:  # digits [i n/S, (i+1) n/S), seed + i: S processes share the work
            i, parts = args.shard
            lo, hi = i * args.n // parts, (i + 1) * args.n // parts
            self.x, self.y = self.x[lo:hi], self.y[lo:hi]
            args.seed, args.n = args.seed + i, hi - lo
        self.rows: list[dict] = []
        if args.append and (args.out / "inpainting.csv").exists():
            with open(args.out / "inpainting.csv") as fh:
                self.rows = [r for r in csv.DictReader(fh) if int(r["n"]) == args.n]
        self.grids: dict[str, list[torch.Tensor]] = {}
        self.fwd = self.probe()

    def probe(self) -> float:
        """Seconds of one bare no_grad forward pass of the net at batch n (best of 3)."""
        net, n = self.model.net.eval(), self.args.n
        x, t = torch.randn(n, 1, 28, 28), torch.full((n,), 0.5)
        y = torch.full((n,), self.model.num_classes, dtype=torch.long)
        best = float("inf")
        with torch.no_grad():
            net(x, t, y)
            for _ in range(3):
                t0 = time.perf_counter()
                net(x, t, y)
                best = min(best, time.perf_counter() - t0)
        print(f"probe: {best * 1e3:.0f} ms per forward pass at batch {n}", flush=True)
        return best

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor) -> float:
        return float((self.clf(images).argmax(1) == self.y).double().mean())

    def add(self, mask_kind, label, images=None, acc=None, **extra):
        acc = self.accuracy(images) if acc is None else acc
        n = self.args.n
        row = {"mask": mask_kind, "label": label, "n": n, "accuracy": acc,
               "se": (acc * (1 - acc) / n) ** 0.5, **extra}
        self.rows = [r for r in self.stored() if not (
            r["mask"] == mask_kind and r["label"] == label
            and str(r.get("steps") or "") == str(extra.get("steps", "")))] + [row]
        write_csv(self.args.out / "inpainting.csv", self.rows)
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)

    def stored(self) -> list[dict]:
        """With --append, the CSV's rows as they are now (another run may have added some)."""
        path = self.args.out / "inpainting.csv"
        if not (self.args.append and path.exists()):
            return self.rows
        with open(path) as fh:
            return [r for r in csv.DictReader(fh) if int(r["n"]) == self.args.n]

    def references(self, kind: str, mask: torch.Tensor) -> None:
        self.grids[kind] = [self.x[:12], torch.where(mask == 0, self.x, 0.0)[:12]]  # grey hole
        if any(r["mask"] == kind and r["label"] == "original" for r in self.stored()):
            return  # --append: already measured
        erased = torch.where(mask == 0, self.x, -torch.ones_like(self.x))
        self.add(kind, "original", self.x, method="reference", nfe=0)
        self.add(kind, "erased", erased, method="reference", nfe=0)
        train_x, _ = classifier_data("train")
        keep = (mask == 0).flatten()
        d = torch.cdist(self.x.flatten(1)[:, keep], train_x.flatten(1)[:, keep])
        nearest = train_x[d.argmin(1)]
        self.add(kind, "nearest_train", torch.where(mask == 0, self.x, nearest),
                 method="reference", nfe=0)

    def run(self, kind: str, mask: torch.Tensor, label: str, opts: dict, steps: int) -> None:
        known = torch.where(mask == 0, self.x, -torch.ones_like(self.x))
        info: dict = {}
        trace: list = []
        if opts.get("method", DEFAULT_METHOD).endswith("best_of"):
            opts = {**opts, "trace": trace}
        t0 = time.perf_counter()
        out = self.model.inpaint(known, mask, steps=steps, seed=self.args.seed, info=info,
                                 **opts)
        sec = time.perf_counter() - t0
        if not torch.equal(out[mask.expand_as(out) == 0], known[mask.expand_as(out) == 0]):
            raise AssertionError(f"{label}: known pixels were not kept exactly")
        method = opts.get("method", DEFAULT_METHOD)
        extra = {k: v for k, v in opts.items() if k not in ("method", "trace")}
        if not extra:  # the package default: record the settings it ran with
            extra = {k: info[k] for k in ("classes", "candidates", "times", "zeta", "eta",
                                          "resample_steps") if k in info}
            if "chosen" in info:  # the model's own class decision vs the true label
                extra["chosen_class_is_label"] = round(
                    float((info["chosen"].cpu() == self.y).double().mean()), 4)
        self.add(kind, label, out, method=method, steps=steps, nfe=info["nfe"],
                 grad_nfe=info.get("grad_nfe", 0), sec_per_image=sec / self.args.n,
                 fwd_equiv=sec / self.fwd, options=";".join(f"{k}={v}" for k, v in extra.items()))
        if label == "default" and steps == DEFAULT_STEPS:
            self.grids[kind].append(out[:12])
        for j, (nfe_j, best_j) in enumerate(trace[:-1], start=1):  # best-of-j, j < K
            self.add(kind, f"{label}_best_of_{j}", best_j, method=method, steps=steps,
                     nfe=nfe_j, grad_nfe=0, options=f"candidates={j} (of one run)")


def plot(rows: list[dict], path: Path) -> None:
    masks = sorted({r["mask"] for r in rows}, key=lambda m: m != "bottom")
    fig, axes = plt.subplots(len(masks), 2, figsize=(12, 4.6 * len(masks)), squeeze=False)
    colours = dict(zip(METHODS, ["tab:gray", "tab:orange", "tab:blue", "tab:green",
                                 "tab:purple", "tab:brown", "tab:pink", "tab:red"],
                       strict=True))
    for (ax_nfe, ax_cost), kind in zip(axes, masks, strict=True):
        mine = [r for r in rows if r["mask"] == kind]
        refs = {r["label"]: float(r["accuracy"]) for r in mine if r["method"] == "reference"}
        for label in METHODS:
            if label == DEFAULT_METHOD:
                continue  # drawn on the default's line: the same method at other steps
            same = [r for r in mine if r["label"] == label
                    or re.fullmatch(rf"{label}_best_of_\d+", r["label"])
                    or (label == "default" and r["label"] == DEFAULT_METHOD)]
            pts = sorted((int(r["nfe"]), float(r["accuracy"]), float(r["se"])) for r in same)
            if not pts:
                continue
            name = {"default": f"default ({DEFAULT_METHOD}, 5 and {DEFAULT_STEPS} steps)",
                    "projection_best_of": "projection_best_of (best of 1..K)"}.get(label, label)
            nfe, acc, se = zip(*pts, strict=True)
            ax_nfe.errorbar(nfe, acc, yerr=se, marker="o", capsize=3, label=name,
                            color=colours[label], lw=2 if label == "default" else 1.3)
            timed = sorted((float(r["fwd_equiv"]), float(r["accuracy"]), float(r["se"]))
                           for r in same if r.get("fwd_equiv") not in (None, ""))
            if timed:
                cost, acc_t, se_t = zip(*timed, strict=True)
                ax_cost.errorbar(cost, acc_t, yerr=se_t, marker="o", capsize=3, label=name,
                                 color=colours[label], lw=2 if label == "default" else 1.3)
        nfes = []
        for v in sorted({int(r["nfe"]) for r in mine if int(r["nfe"]) > 0}):
            if not nfes or v > 1.12 * nfes[-1]:  # labels that do not overlap on the log axis
                nfes.append(v)
        ax_nfe.set_xscale("log")
        ax_nfe.set_xticks(nfes, [str(v) for v in nfes])
        ax_nfe.minorticks_off()
        for ax in (ax_nfe, ax_cost):
            for ref, style in (("original", ":"), ("nearest_train", "-."), ("erased", "--")):
                if ref in refs:
                    ax.axhline(refs[ref], color="k", ls=style, lw=1,
                               label=f"{ref.replace('_', ' ')} ({refs[ref]:.0%})")
            ax.axhline(0.85, color="tab:red", ls=(0, (1, 4)), lw=1, label="target 85%")
            ax.set_ylim(0.3, 1.0)
            ax.set_ylabel("classifier agrees with the original label")
            ax.grid(alpha=0.3, which="both")
        ax_nfe.set_xlabel("network calls per image (NFE)")
        ax_cost.set_xscale("log")
        costs = [float(r["fwd_equiv"]) for r in mine if r.get("fwd_equiv") not in (None, "")]
        if costs:
            ax_cost.set_xticks([v for v in (10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000)
                                if min(costs) / 1.5 <= v <= max(costs) * 1.5])
        ax_cost.xaxis.set_major_formatter(ScalarFormatter())
        ax_cost.xaxis.set_minor_formatter(NullFormatter())
        ax_cost.set_xlabel("cost per image in bare forward passes (measured)")
        n = mine[0]["n"]
        ax_nfe.set_title(f"{kind} mask: accuracy vs NFE (n = {n}, ±1 SE)")
        ax_cost.set_title(f"{kind} mask: accuracy vs measured cost")
        ax_cost.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_grid(grids: dict, path: Path) -> None:
    grids = {kind: g for kind, g in grids.items() if len(g) == 3}  # the default ran
    rows = [g for kind in grids for g in grids[kind]]
    if not rows:
        return
    labels = [f"{kind}\n{what}" for kind in grids
              for what in ("original", "masked (grey)", f"{DEFAULT_METHOD},\n{DEFAULT_STEPS} steps")]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows)), squeeze=False)
    for ax, imgs, text in zip(axes[:, 0], rows, labels, strict=True):
        ax.imshow(image_grid(imgs, nrow=imgs.shape[0]), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _weighted(rows: list[dict], key: str) -> float:
    """Mean of ``key`` over rows weighted by their n."""
    return sum(float(r[key]) * int(r["n"]) for r in rows) / sum(int(r["n"]) for r in rows)


def merge_shards(out: Path, parts: int) -> list[dict]:
    """Rows of ``out/shard_i_of_S/inpainting.csv`` combined per (mask, label, steps): accuracy
    and costs averaged with weights n_i, se recomputed for the total n."""
    groups: dict = {}
    for i in range(parts):
        with open(out / f"shard_{i}_of_{parts}" / "inpainting.csv") as fh:
            for r in csv.DictReader(fh):
                groups.setdefault((r["mask"], r["label"], r["steps"]), []).append(r)
    rows = []
    for shard_rows in groups.values():
        if len(shard_rows) != parts:
            raise ValueError(f"row {shard_rows[0]['label']} is in {len(shard_rows)} of {parts} "
                             "shards")
        n = sum(int(r["n"]) for r in shard_rows)
        acc = _weighted(shard_rows, "accuracy")
        row = dict(shard_rows[0], n=n, accuracy=acc, se=(acc * (1 - acc) / n) ** 0.5)
        for k in ("sec_per_image", "fwd_equiv"):
            if shard_rows[0][k]:
                row[k] = _weighted(shard_rows, k)
        row["options"] = ";".join(filter(None, [row["options"], f"{parts} shards"]))
        rows.append(row)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="held-out digits (at most 500)")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="grid steps for every method (default: each method's own, see METHODS)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--masks", nargs="+", default=["bottom"], choices=["bottom", "centre"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: less waste on a shared, busy machine)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--shard", type=int, nargs=2, metavar=("I", "S"), default=None,
                   help="run only part I of S of the digits (seed + I), into out/shard_I_of_S/")
    p.add_argument("--merge", type=int, metavar="S", default=None,
                   help="merge out/shard_*_of_S/ into the CSV (with --append: keep its rows)")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of the existing CSV (same n) and add/replace these")
    args = p.parse_args(argv)
    if not 1 <= args.n <= 500:
        p.error(f"--n must lie in [1, 500] (the test split has 500 digits), got {args.n}")
    if args.shard:
        args.out = args.out / f"shard_{args.shard[0]}_of_{args.shard[1]}"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged = merge_shards(args.out, args.merge)
        keys = {(r["mask"], r["label"], r["steps"]) for r in merged}
        old = []
        if args.append and (args.out / "inpainting.csv").exists():
            with open(args.out / "inpainting.csv") as fh:
                old = [r for r in csv.DictReader(fh)
                       if (r["mask"], r["label"], r["steps"]) not in keys]
        write_csv(args.out / "inpainting.csv", old + merged)
        plot(old + merged, args.out / "inpainting.png")
        return
    if args.plot_only:
        with open(args.out / "inpainting.csv") as fh:
            plot(list(csv.DictReader(fh)), args.out / "inpainting.png")
        return
    torch.set_num_threads(args.threads)
    bench, start = Bench(args), time.perf_counter()
    for kind in args.masks:
        mask = make_mask(kind)
        bench.references(kind, mask)
        for label in args.methods:
            opts, steps = METHODS[label]
            for n_steps in sorted(args.steps or steps):
                bench.run(kind, mask, label, opts, n_steps)
        print(f"-- {kind} done, {time.perf_counter() - start:.0f} s elapsed", flush=True)
    plot(bench.stored() if args.append else bench.rows, args.out / "inpainting.png")
    save_grid(bench.grids, args.out / "inpainting_grid.png")
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
