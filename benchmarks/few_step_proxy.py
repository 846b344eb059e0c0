r"""A cheap, paired proxy for choosing few-step samplers: distance to the exact PF-ODE solution.

For the bundled MNIST model (``data/checkpoints/mnist_cond``, unconditional: null class), the
seed ``--seed`` (default 1, a tuning seed; seed 0 is the report seed of ``few_step_fid.py``) and
n images (default 64), x_1 is drawn exactly as ``GenerativeModel.generate`` draws it
(``sde.prior_sample`` with ``torch.Generator().manual_seed(seed)``). Every *deterministic*
configuration of ``few_step_fid.CONFIGS`` (one source of truth: method, steps rule, options)
maps x_1 to an output y_i = x_{t_end} or, with ``denoise``, x̂_0(x_{t_end}, t_end); the proxy is
the per-image distance to the same quantity of the exact probability-flow ODE from the same x_1,

    d_i = ‖y_i − y_i^ref‖_2     (all 784 pixels, [-1, 1] scale, raw outputs: no clipping),

summarised as ``l2_mean`` ± ``l2_se`` (standard error over images), ``l2_rms`` = √(mean d_i²)
(the "RMS over images" of ``few_step_fid.py --match``; a per-pixel RMS is l2_rms/28) and
``l2_mean_clip`` (both sides clipped to [-1, 1], as FID sees them). ``diff_best`` ± ``diff_best_se``
is the paired mean of d_i − d_i^best against the config with the lowest ``l2_mean`` at the same
NFE, n, t_end and output: the same x_1 for all, so differences are much surer than the means.

Each config is compared with the exact solution at *its own* t_end (0.1, 0.075, 0.05 or
sde.t_min): the proxy measures the ODE-solve error only, not the choice of end time; what the
end time costs is the FID floor of ``few_step_fid.py --floor``. Stochastic configurations
(η > 0, EDM churn, ancestral, restart) are excluded: their output depends on the sampler's
noise, so there is no single ODE solution to compare with (``is_deterministic``).

The reference (:func:`reference`) is an independent DPM-Solver++(2M) solve (data prediction,
Lu et al. 2022) on a log-SNR-uniform grid with λ-steps ≤ ``--ref-h`` (default 0.015: 640 steps)
whose breakpoints are every t_end, so one solve gives all four references. It has to be that
fine: checks, as rows of the CSV (``REFERENCE_ROWS``; first ``--n-check`` images where noted):

* ``reference_2x``: the same solve at half the step (1279 steps, n-check images) vs the
  reference: mean 0.002 (max 0.014) at every end, ~100× below the paired differences between
  configurations (0.34 between the two best at t = 0.05, 10 NFE);
* ``unipc120_end005``: the library's UniPC-2 at 120 log-SNR steps + x̂_0 (via ``model.generate``,
  so x_1 and the network line up; n-check images) is still 0.17 away (max 1.6), and
* ``unipc30_end005``, the 30-step UniPC-2 reference of an earlier scratch comparison, 0.30
  (max 4.6): that comparison's reference error was not small against what it compared.

The per-image distances are heavy-tailed (medians about half the means): a few x_1 move far
under small changes of the solve. NFE 20 is measured on the first ``--n-check`` images only.

Writes ``benchmarks/results/few_step_proxy.csv`` and ``few_step_proxy.png`` (left: proxy vs NFE;
middle, right: proxy vs the seed-1 FID of the same config at 10 NFE, n = 500, from
``few_step_proxy_fid.csv``, written by ``few_step_fid.py``), and prints the rank comparison
(:func:`rank_agreement`, ``CLAIM``). One thread: 811 s in all at the defaults on this CPU
(reference 397 s, its check 196 s, 10-NFE configs 5–8 s each at n = 64; the CSV's ``seconds``).
The 15 n = 500 FID rows took 70–190 s each, the n = 2000 ones 350–380 s. From the repository root:

    PYTHONPATH=. python benchmarks/few_step_proxy.py                # measure, then plot
    PYTHONPATH=. python benchmarks/few_step_proxy.py --plot-only
    PYTHONPATH=. python benchmarks/few_step_fid.py --n 500 --seed 1 --role tuning --nfe 10 \
        --configs <few_step_proxy.deterministic_configs()> \
        --csv benchmarks/results/few_step_proxy_fid.csv --png /tmp/unused.png
    (and --n 2000 for unipc3_bh1_end01 dpm2m unipc: the seed-1 n = 2000 rows few_step_fid.csv lacks)
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_step_fid import CHECKPOINT, CONFIGS, RESULTS, read_rows  # noqa: E402

from diffusion_lab.model import GenerativeModel  # noqa: E402
from diffusion_lab.timegrid import coefficients, time_grid  # noqa: E402

FIELDS = ["config", "method", "nfe", "steps", "n", "seed", "t_end", "denoise", "l2_mean", "l2_se",
          "l2_median", "l2_max", "l2_rms", "l2_mean_clip", "diff_best", "diff_best_se", "seconds"]
STOCHASTIC_METHODS = ("ancestral", "restart", "euler_maruyama", "predictor_corrector")
#: checks of the reference, measured like configs (name: method, steps, options)
REFERENCE_ROWS = {
    "unipc120_end005": ("unipc", 120, {"grid": "logsnr", "t_end": 0.05, "denoise": True}),
    "unipc30_end005": ("unipc", 30, {"grid": "logsnr", "t_end": 0.05, "denoise": True}),
}


def is_deterministic(method: str, opts: dict) -> bool:
    """True when the output is a function of x_1 alone (no sampler noise)."""
    return (method not in STOCHASTIC_METHODS and opts.get("eta", 0.0) == 0.0
            and opts.get("s_churn", 0.0) == 0.0)


def deterministic_configs() -> list[str]:
    return [c for c, (method, _, opts) in CONFIGS.items() if is_deterministic(method, opts)]


def end_time(sde, opts: dict) -> float:
    return float(opts.get("t_end", sde.t_min))


def reference_grid(sde, t_ends, h: float) -> list[float]:
    """Decreasing times from t_max through every t_end to the smallest: log-SNR-uniform
    segments between consecutive breakpoints, each λ-step at most ``h``."""
    points = [float(sde.t_max), *sorted(set(t_ends), reverse=True)]
    grid = [points[0]]
    for hi, lo in zip(points[:-1], points[1:], strict=True):
        span = coefficients(sde, lo).lam - coefficients(sde, hi).lam
        grid += time_grid(sde, max(1, math.ceil(span / h)), lo, "logsnr", t_start=hi).tolist()[1:]
    return grid


@torch.no_grad()
def reference(eps_fn, sde, x1: Tensor, t_ends, h: float = 0.06) -> dict[float, tuple]:
    r"""{t_end: (x_{t_end}, x̂_0(x_{t_end}, t_end))} of the PF-ODE from x_1, by DPM-Solver++(2M)
    in data prediction on :func:`reference_grid` (``eps_fn(x, t)`` with t a float):

        x_t = (σ_t/σ_s) x_s − m_t (e^{−h} − 1) D,  D = x̂_0,s + (x̂_0,s − x̂_0,prev) h/(2 h_prev)

    (D = x̂_0,s on the first step); h = λ_t − λ_s. One network call per grid point."""
    grid, out = reference_grid(sde, t_ends, h), {}
    x, prev = x1, None  # prev: (x̂_0, λ-step) of the previous point
    for i, s in enumerate(grid):
        cs = coefficients(sde, s)
        x0 = (x - cs.sigma * eps_fn(x, s)) / cs.m
        if s in t_ends:
            out[s] = (x, x0)
        if i + 1 == len(grid):
            break
        ct = coefficients(sde, grid[i + 1])
        step = ct.lam - cs.lam
        d = x0 if prev is None else x0 + (x0 - prev[0]) * (step / (2.0 * prev[1]))
        x = (ct.sigma / cs.sigma) * x - ct.m * math.expm1(-step) * d
        prev = (x0, step)
    return out


def distances(y: Tensor, ref: Tensor) -> Tensor:
    """Per-image L2 distance ‖y_i − ref_i‖_2 over all but the batch dimension, ``[n]``."""
    if y.shape != ref.shape:
        raise ValueError(f"y {list(y.shape)} and ref {list(ref.shape)} must have one shape")
    return (y - ref).flatten(1).norm(dim=1)


def summary(d: Tensor, d_clip: Tensor) -> dict:
    n = d.numel()
    return {"l2_mean": float(d.mean()), "l2_se": float(d.std() / math.sqrt(n)),
            "l2_median": float(d.median()), "l2_max": float(d.max()),
            "l2_rms": float(d.pow(2).mean().sqrt()), "l2_mean_clip": float(d_clip.mean())}


def add_paired(rows: list[dict], dists: list[Tensor]) -> None:
    """diff_best(_se): paired mean of d − d_best within each (nfe, n, t_end, denoise) group."""
    groups: dict[tuple, list[int]] = {}
    for k, r in enumerate(rows):
        if r["config"] in CONFIGS:
            groups.setdefault((r["nfe"], r["n"], r["t_end"], r["denoise"]), []).append(k)
    for ks in groups.values():
        best = min(ks, key=lambda k: rows[k]["l2_mean"])
        for k in ks:
            diff = dists[k] - dists[best]
            rows[k]["diff_best"] = float(diff.mean())
            rows[k]["diff_best_se"] = float(diff.std() / math.sqrt(diff.numel()))


def measure(args) -> list[dict]:
    model = GenerativeModel.load(CHECKPOINT)
    net = (model.ema if model.ema is not None else model.net).eval()  # what generate uses
    sde = model.sde
    shape = (args.n, *model.data_shape)
    x1 = sde.prior_sample(shape, generator=torch.Generator().manual_seed(args.seed))
    small = sde.prior_sample((args.n_check, *shape[1:]),
                             generator=torch.Generator().manual_seed(args.seed))
    if not torch.equal(small, x1[:args.n_check]):
        raise RuntimeError("x_1 of the first n_check images differs from the n-image draw")
    y = torch.full((args.n,), net.num_classes, dtype=torch.long)

    def eps_fn(x, t):
        return net(x, torch.full((x.shape[0],), t), y[:x.shape[0]])

    jobs = [(c, nfe) for nfe in args.nfe for c in deterministic_configs()]
    t_ends = sorted({end_time(sde, CONFIGS[c][2]) for c, _ in jobs})
    t0 = time.perf_counter()
    ref = reference(eps_fn, sde, x1, t_ends, args.ref_h)
    ref_sec, rows, dists = time.perf_counter() - t0, [], []
    ref_nfe = len(reference_grid(sde, t_ends, args.ref_h))
    print(f"reference: {ref_nfe} calls, {ref_sec:.0f} s", flush=True)

    def add(config, method, nfe, steps, n, t_end, denoise, out, sec):
        target = ref[t_end][1 if denoise else 0][:n]
        d = distances(out, target)
        rows.append({"config": config, "method": method, "nfe": nfe, "steps": steps, "n": n,
                     "seed": args.seed, "t_end": t_end, "denoise": denoise,
                     **summary(d, distances(out.clamp(-1, 1), target.clamp(-1, 1))),
                     "diff_best": "", "diff_best_se": "", "seconds": sec})
        dists.append(d)
        print({k: v for k, v in rows[-1].items() if k not in ("diff_best", "diff_best_se")},
              flush=True)

    t0 = time.perf_counter()  # the same solve at half the step, on the first n_check images
    fine = reference(eps_fn, sde, x1[:args.n_check], t_ends, args.ref_h / 2)
    sec, fine_nfe = time.perf_counter() - t0, len(reference_grid(sde, t_ends, args.ref_h / 2))
    ends = sorted({(end_time(sde, CONFIGS[c][2]), CONFIGS[c][2].get("denoise", False))
                   for c, _ in jobs})
    for t_end, denoise in ends:
        add("reference_2x", "reference", fine_nfe, fine_nfe - 1, args.n_check, t_end, denoise,
            fine[t_end][int(denoise)], sec)
    for name, (method, steps, opts) in REFERENCE_ROWS.items():
        n = args.n_check if name == "unipc120_end005" else args.n
        calls, out, sec = run_config(model, n, args.seed, method, steps, opts)
        add(name, method, calls, steps, n, end_time(sde, opts), opts["denoise"], out, sec)
    for name, nfe in jobs:
        method, rule, opts = CONFIGS[name]
        steps = rule(nfe, opts.get("denoise", False))
        if steps is None:
            continue
        n = args.n_check if nfe in args.nfe_small_n else args.n
        calls, out, sec = run_config(model, n, args.seed, method, steps, opts)
        if calls != nfe:
            raise RuntimeError(f"{name}: {calls} network calls, expected {nfe}")
        add(name, method, nfe, steps, n, end_time(sde, opts), opts.get("denoise", False), out, sec)
    add_paired(rows, dists)
    return rows


def run_config(model, n: int, seed: int, method: str, steps: int, opts: dict):
    """(network calls, raw output, seconds) of ``model.generate`` without clipping."""
    info, t0 = {}, time.perf_counter()
    with torch.no_grad():
        out = model.generate(n, method=method, steps=steps, seed=seed, clip=False, info=info,
                             **opts)
    return info["nfe"], out, time.perf_counter() - t0


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


#: What the committed CSVs show (tests/test_few_step_proxy.py recomputes it): at 10 NFE the chosen
#: UniPC-3 bh1 to t = 0.05 is the closest to the exact solution of the configs ending there
#: (1.20 ± 0.15 vs 1.53 for UniPC-2: paired difference 0.34 ± 0.12); of the 18 pairs of
#: configurations with the same end and a seed-1 n = 500 FID row, 16 are ordered alike by the
#: proxy and by FID. The two that are not, and stay so at n = 2000 (FID rows of seed 1): at
#: t = 0.1 the proxy puts UniPC-3 bh1 ahead of UniPC-2 by 0.18 ± 0.13 (paired; not significant
#: at n = 64) where FID has UniPC-2 ahead (by 0.050 at n = 500, 0.060 at n = 2000); at t_min it
#: puts UniPC-2 ahead of 2M by 0.31 where FID has 2M ahead (0.016 at n = 500, 0.032 at 2000).
CLAIM = {"chosen": "unipc3_bh1_end005", "pairs": 18, "agree": 16,
         "disagree": {("unipc", "dpm2m"), ("unipc3_bh1_end01", "unipc_end01")},
         "pairs_2000": 3, "agree_2000": 1}


FID_CSVS = (RESULTS / "few_step_proxy_fid.csv", RESULTS / "few_step_fid.csv")


def fid_at_10(n: int = 500, seed: int = 1, paths=FID_CSVS) -> dict[str, float]:
    """config → FID of our 10-NFE row at this n and seed in ``few_step_fid.py``'s CSVs (the first
    path wins where both hold a row; tests/ checks that they agree)."""
    out: dict[str, float] = {}
    for path in reversed(paths):
        out.update({r["config"]: float(r["fid"]) for r in read_rows(path)
                    if r["family"] == "ours" and int(r["nfe"]) == 10 and int(r["n"]) == n
                    and int(r["seed"]) == seed})
    return out


def rank_agreement(rows: list[dict], fid: dict[str, float], nfe: int = 10) -> list[dict]:
    """Every pair of configs with the same end (t_end, denoise) measured at ``nfe`` that both
    have an FID: their proxy and FID differences and whether the two order them alike."""
    pts = [r for r in rows if r["config"] in fid and int(r["nfe"]) == nfe]
    pairs = []
    for i, a in enumerate(pts):
        for b in pts[i + 1:]:
            if (float(a["t_end"]), str(a["denoise"])) != (float(b["t_end"]), str(b["denoise"])):
                continue
            lo, hi = sorted((a, b), key=lambda r: float(r["l2_mean"]))
            pairs.append({"t_end": float(a["t_end"]), "lower_proxy": lo["config"],
                          "higher_proxy": hi["config"],
                          "proxy_diff": float(hi["l2_mean"]) - float(lo["l2_mean"]),
                          "fid_diff": fid[hi["config"]] - fid[lo["config"]],
                          "agree": fid[hi["config"]] > fid[lo["config"]]})
    return pairs


def spearman(rows: list[dict], fid: dict[str, float], nfe: int = 10) -> float:
    from scipy.stats import spearmanr

    pts = [r for r in rows if r["config"] in fid and int(r["nfe"]) == nfe]
    return float(spearmanr([float(r["l2_mean"]) for r in pts],
                           [fid[r["config"]] for r in pts]).statistic)


GROUP_COLORS = {(0.001, "False"): "tab:gray", (0.001, "True"): "tab:brown",
                (0.05, "True"): "tab:blue", (0.075, "True"): "tab:green",
                (0.1, "True"): "tab:red"}


def _group(r: dict) -> tuple[float, str]:
    return round(float(r["t_end"]), 6), str(r["denoise"])


def _label(group: tuple[float, str]) -> str:
    return f"t_end = {group[0]:g}" + (", then x̂0" if group[1] == "True" else ", x_t_end")


def plot(rows: list[dict], fid: dict[str, float], png: Path) -> None:
    """Left: proxy vs NFE; middle: proxy vs FID at 10 NFE, every config; right: the configs that
    end at t ≥ 0.05 with x̂_0, each same-end group joined in the proxy's order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cfg = [r for r in rows if r["config"] in CONFIGS]
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(21, 6.8))
    for c in dict.fromkeys(r["config"] for r in cfg):
        pts = sorted((int(r["nfe"]), float(r["l2_mean"]), float(r["l2_se"]))
                     for r in cfg if r["config"] == c)
        nfe, m, se = zip(*pts, strict=True)
        ax.errorbar(nfe, m, yerr=se, marker="o", ms=4, capsize=2, lw=1.2, alpha=0.85,
                    color=GROUP_COLORS.get(_group(next(r for r in cfg if r["config"] == c))))
        ax.annotate(c, (nfe[-1], m[-1]), fontsize=6.5, xytext=(4, 0), textcoords="offset points")
    ns = sorted({int(r["n"]) for r in cfg})
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", xlim=(4.5, 32),
           ylabel="proxy: mean ‖output − exact PF-ODE output‖₂ per image ([-1, 1], 784 px)",
           title=f"proxy vs NFE (seed {cfg[0]['seed']}; n = {ns[-1]}, at NFE 20 n = {ns[0]})")
    ax.set_xticks([5, 10, 20], ["5", "10", "20"])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    at10 = [r for r in cfg if int(r["nfe"]) == 10 and r["config"] in fid]
    for r in at10:
        x, y = float(r["l2_mean"]), fid[r["config"]]
        for axis in (bx, cx) if float(r["t_end"]) >= 0.05 else (bx,):
            axis.errorbar(x, y, xerr=float(r["l2_se"]), marker="o", capsize=2,
                          color=GROUP_COLORS.get(_group(r)))
            axis.annotate(r["config"], (x, y), fontsize=7 if axis is bx else 9, xytext=(5, 4),
                          textcoords="offset points")
    for g in {_group(r) for r in at10 if float(r["t_end"]) >= 0.05}:
        pts = sorted((float(r["l2_mean"]), fid[r["config"]]) for r in at10 if _group(r) == g)
        cx.plot(*zip(*pts, strict=True), color=GROUP_COLORS.get(g), lw=1, alpha=0.6)
    bx.set(xscale="log", yscale="log", title="proxy vs FID at 10 NFE, every deterministic config")
    cx.set(title="zoom: configs ending at t ≥ 0.05 (lines: same end, proxy order)")
    cx.margins(x=0.12, y=0.12)
    for axis in (ax, bx, cx):
        for g, color in GROUP_COLORS.items():
            axis.plot([], [], "o-", color=color, label=_label(g))
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8, loc={ax: "lower left", bx: "upper left"}.get(axis, "lower right"))
    for axis in (bx, cx):
        axis.set(xlabel="proxy at 10 NFE (mean per-image L2, ± s.e.)",
                 ylabel="FID at 10 NFE (seed 1, n = 500; few_step_proxy_fid.csv)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def report(rows: list[dict]) -> None:
    for n in (500, 2000):
        fid = fid_at_10(n)
        pairs = rank_agreement(rows, fid)
        both = [r for r in rows if r["config"] in fid and int(r["nfe"]) == 10]
        print(f"FID at n = {n}, seed 1: {len(both)} of the measured configs")
        for p in pairs:
            print(f"  t_end {p['t_end']:g}: {p['lower_proxy']} < {p['higher_proxy']} by "
                  f"{p['proxy_diff']:.3f}; FID diff {p['fid_diff']:+.4f} -> "
                  f"{'agree' if p['agree'] else 'DISAGREE'}")
        rho = f"; Spearman over all ends {spearman(rows, fid):.2f}" if len(both) >= 5 else ""
        print(f"  {sum(p['agree'] for p in pairs)} of {len(pairs)} same-end pairs ordered "
              f"alike{rho}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--n-check", type=int, default=16,
                   help="images for the reference checks and the NFE of --nfe-small-n")
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--nfe-small-n", type=int, nargs="*", default=[20])
    p.add_argument("--ref-h", type=float, default=0.015, help="largest λ-step of the reference")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", default=str(RESULTS / "few_step_proxy.csv"))
    p.add_argument("--png", default=str(RESULTS / "few_step_proxy.png"))
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args(argv)
    if args.seed == 0:
        p.error("--seed 0 is the report seed of few_step_fid.py; tune on another")
    if not 1 <= args.n_check <= args.n:
        p.error(f"--n-check must lie in [1, --n] = [1, {args.n}], got {args.n_check}")
    torch.set_num_threads(args.threads)
    if not args.plot_only:
        t0 = time.perf_counter()
        write_csv(Path(args.csv), measure(args))
        print(f"total {time.perf_counter() - t0:.0f} s", flush=True)
    rows = read_rows(Path(args.csv))
    report(rows)
    plot(rows, fid_at_10(), Path(args.png))


if __name__ == "__main__":
    main()
