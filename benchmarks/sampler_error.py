"""Sampler error on 2-D Gaussian data with exact scores (VP SDE).

For every sampler variant at 10, 100 and 1000 steps (RK45: rtol = atol = 1e-3,
1e-5, 1e-7 instead), from the same n prior samples and one seed:

* ``pf_rms``  deterministic samplers only: RMS over samples of ‖x − Φ(x_1)‖, Φ the
  exact probability-flow map (``GaussianOracle.pf_map``) from t = 1 to t_end;
* ``mean_err`` ‖mean − μ_t‖, ``cov_err`` ‖cov − Σ_t‖_F and ``w2`` the Gaussian
  2-Wasserstein distance between N(sample moments) and N(μ_t, Σ_t), against the
  exact marginal p_{t_end} = N(m μ, m² Σ + σ² I).

The row ``exact`` holds the same statistics for n exact draws from p_{t_end}: the
sampling-noise floor below which no distribution error can be resolved.

Writes ``benchmarks/results/sampler_error_gaussian.csv`` and ``.png``. Run
``python benchmarks/sampler_error.py`` (about 2 minutes on one CPU core).
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import VPSDE

MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]
VARIANTS = [  # label, method, options, deterministic
    ("Euler-Maruyama", "euler_maruyama", {}, False),
    ("PC (snr 0.16)", "predictor_corrector", {}, False),
    ("PF Heun", "probability_flow", {"solver": "heun"}, True),
    ("PF RK45", "probability_flow", {"solver": "rk45"}, True),
    ("EI stochastic", "exponential_integrator", {"stochastic": True}, False),
    ("DDIM eta=0", "ddim", {"eta": 0.0}, True),
    ("DDIM eta=1", "ddim", {"eta": 1.0}, False),
    ("DPM-Solver++(2M)", "dpm_solver", {"order": 2}, True),
    ("ancestral", "ancestral", {"variance": "posterior"}, False),
]
RK45_TOL = {10: 1e-3, 100: 1e-5, 1000: 1e-7}


def _sqrtm(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T


def gaussian_w2(m1, c1, m2, c2) -> float:
    """W2 between N(m1, c1) and N(m2, c2): ‖m1 − m2‖² + tr(c1 + c2 − 2 (c2^½ c1 c2^½)^½)."""
    r = _sqrtm(c2)
    cross = _sqrtm(r @ c1 @ r)
    w2sq = float(((m1 - m2) ** 2).sum() + torch.trace(c1 + c2 - 2 * cross))
    return math.sqrt(max(w2sq, 0.0))


def distribution_errors(x, mu, cov) -> dict:
    m, c = x.mean(0), torch.cov(x.T)
    return {"mean_err": float((m - mu).norm()), "cov_err": float((c - cov).norm()),
            "w2": gaussian_w2(m, c, mu, cov)}


def run(n: int, seed: int, steps_list, grids) -> list[dict]:
    torch.set_num_threads(1)
    sde = VPSDE()
    oracle = GaussianOracle(sde, MEAN, COV)
    t_end = sde.t_min
    mu, cov = oracle.marginal_mean_cov(t_end)
    x1 = sde.prior_sample((n, 2), torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = oracle.pf_map(x1, 1.0, t_end)
    g = torch.Generator().manual_seed(seed + 1)
    exact = mu + (torch.randn(n, 2, generator=g, dtype=torch.float64) @ _sqrtm(cov))
    rows = [{"grid": "-", "sampler": "exact", "steps": 0, "nfe": 0, "pf_rms": "",
             **distribution_errors(exact, mu, cov), "seconds": 0.0}]
    for grid in grids:
        for label, method, opts, deterministic in VARIANTS:
            if grid != grids[0] and method == "probability_flow" and opts["solver"] == "rk45":
                continue  # adaptive: the grid is not used
            for steps in steps_list:
                kw = dict(opts)
                if kw.get("solver") == "rk45":
                    tol = RK45_TOL.get(steps, 1e-5)
                    kw.update(rtol=tol, atol=tol)
                info = {}
                t0 = time.perf_counter()
                x = S.SAMPLERS[method](oracle, sde, x1, steps=steps, grid=grid, info=info,
                                       generator=torch.Generator().manual_seed(seed + 2), **kw)
                secs = time.perf_counter() - t0
                pf = float(((x - ref) ** 2).sum(-1).mean().sqrt()) if deterministic else ""
                row = {"grid": grid, "sampler": label, "steps": steps, "nfe": info["nfe"],
                       "pf_rms": pf, **distribution_errors(x, mu, cov), "seconds": round(secs, 2)}
                rows.append(row)
                print(" | ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    return rows


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plot(rows, grids, path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("pf_rms", "RMS error vs exact PF map (deterministic)"),
               ("cov_err", "‖cov − Σ‖_F"), ("w2", "Gaussian W2 to p_t_end")]
    fig, axes = plt.subplots(len(grids), 3, figsize=(15, 4.6 * len(grids)), squeeze=False)
    floor = rows[0]
    for gi, grid in enumerate(grids):
        for mi, (key, title) in enumerate(metrics):
            ax = axes[gi, mi]
            for vi, (label, *_) in enumerate(VARIANTS):
                pts = [(r["nfe"], r[key]) for r in rows if r["sampler"] == label
                       and (r["grid"] == grid or label == "PF RK45") and r[key] != ""]
                if pts:  # DDIM η=1 is the same sampler as ancestral: drawn dashed on top
                    dashed = label == "DDIM eta=1"
                    style = {"ls": "--", "marker": "x"} if dashed else {"marker": "o"}
                    ax.loglog(*zip(*pts, strict=True), color=f"C{vi}", label=label, **style)
            if key != "pf_rms":
                ax.axhline(floor[key], color="k", ls=":", label=f"exact samples (n={n})")
            ax.set_xlabel("network evaluations (NFE)")
            ax.set_ylabel(key)
            ax.set_title(f"{title}\n{grid} time grid")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 2].legend(fontsize=8)
    fig.suptitle("Sampler error, 2-D Gaussian data, VP SDE, exact scores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--grids", nargs="+", default=["uniform", "logsnr"])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args.n, args.seed, args.steps, args.grids)
    csv_path = args.out / "sampler_error_gaussian.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(v) if isinstance(v, float) else v for k, v in r.items()})
    plot(rows, args.grids, args.out / "sampler_error_gaussian.png", args.n)
    print(f"wrote {csv_path} and {csv_path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
