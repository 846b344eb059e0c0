"""Each sampler's default time grid, measured: the table above ``DEFAULT_GRIDS``.

For every method in ``SAMPLERS`` (its default options) and every grid in ``GRIDS``: n = 5000
samples at 25 steps via ``dl.sample(oracle, sde, (n, 2), method, steps=25, grid, dtype=float64,
generator=Generator().manual_seed(seed))`` — x_1 and all the sampler's noise from that one
generator, ``t_end`` at its default ``sde.t_min`` — with the exact ε of Gaussian data
(``GaussianOracle``), in 8 cases: VP, sub-VP, VE, rectified flow × data N(μ, Σ) with a full
covariance (μ = (1, −0.5), Σ = [[1, .5], [.5, .8]]) and N(0, 0.2² I). Per case

    error = (‖mean − μ_t‖ + ‖cov − Σ_t‖_F) / ‖Σ_t‖_F,   μ_t = m μ, Σ_t = m² Σ + σ² I at t_end,

and per (method, grid) the sum and the worst case over the 8. The choice is the grid with the
smallest sum; grids within ``TIE`` = 0.05 of it are a tie, broken by the smaller worst case.

Seed 1 (the default) reproduces the table of the first eight methods to the printed digit. The
sums move with the seed by more than the docstring's "0.02–0.03 per case" suggests, because the
cases share x_1's draw (a deterministic sampler's error is mostly that draw's own sampling
error): with ``--seeds 1 2 3`` whole rows move by up to 0.4, and every choice stays.

Writes one row per (method, grid, case) to ``benchmarks/results/default_grids.csv`` and a
heat-map of the sums (choice boxed) to ``default_grids.png``; prints the docstring table.
About 40 s per seed on one core, from the repository root:
``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/default_grids.py [--seeds 1 2 3]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde
from diffusion_lab.timegrid import GRIDS

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
F64 = torch.float64
SDES = ("vp", "subvp", "ve", "rectified_flow")
DATA = {"full_cov": ([1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]),
        "std_0.2": ([0.0, 0.0], [[0.04, 0.0], [0.0, 0.04]])}
TIE = 0.05
FIELDS = ["method", "grid", "sde", "data", "n", "steps", "seed", "nfe", "mean_err", "cov_err",
          "error"]


def case_error(oracle: GaussianOracle, x: torch.Tensor, t: float) -> tuple[float, float]:
    """(‖mean − μ_t‖, ‖cov − Σ_t‖_F), each divided by ‖Σ_t‖_F, against the exact p_t."""
    mu, cov = oracle.marginal_mean_cov(t)
    scale = float(cov.norm())
    return float((x.mean(0) - mu).norm()) / scale, float((torch.cov(x.T) - cov).norm()) / scale


def measure(method: str, grid: str, n: int, steps: int, seed: int) -> list[dict]:
    rows = []
    for sde_name in SDES:
        sde = get_sde(sde_name)
        for data, (mean, cov) in DATA.items():
            oracle, info = GaussianOracle(sde, mean, cov), {}
            x = S.sample(oracle, sde, (n, 2), method=method, steps=steps, grid=grid, dtype=F64,
                         generator=torch.Generator().manual_seed(seed), info=info)
            m_err, c_err = case_error(oracle, x, info["t_end"])
            rows.append(dict(method=method, grid=grid, sde=sde_name, data=data, n=n, steps=steps,
                             seed=seed, nfe=info["nfe"], mean_err=f"{m_err:.6f}",
                             cov_err=f"{c_err:.6f}", error=f"{m_err + c_err:.6f}"))
    return rows


def summarise(rows: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """method → grid → (sum, worst case) of the per-case errors."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        out.setdefault(r["method"], {}).setdefault(r["grid"], []).append(float(r["error"]))
    return {m: {g: (sum(e), max(e)) for g, e in by.items()} for m, by in out.items()}


def choose(by_grid: dict[str, tuple[float, float]], tie: float = TIE) -> str:
    """Smallest sum; among the grids within ``tie`` of it, the smallest worst case."""
    best = min(s for s, _ in by_grid.values())
    return min((g for g, (s, _) in by_grid.items() if s <= best + tie),
               key=lambda g: by_grid[g][1])


def table(summary) -> str:
    lines = ["    method                  " + "".join(f"{g:12s}" for g in GRIDS)]
    for method, by in summary.items():
        cells = "".join(f"{by[g][0]:.2f}/{by[g][1]:.2f}   " for g in GRIDS)
        lines.append(f"    {method:24s}{cells}-> {choose(by)}")
    return "\n".join(lines)


def plot(summary, path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    methods = list(summary)
    sums = torch.tensor([[summary[m][g][0] for g in GRIDS] for m in methods])
    fig, ax = plt.subplots(figsize=(7.2, 0.45 * len(methods) + 1.6))
    im = ax.imshow(sums.numpy(), cmap="viridis_r", aspect="auto")
    for i, m in enumerate(methods):
        for j, g in enumerate(GRIDS):
            s, w = summary[m][g]
            ax.text(j, i, f"{s:.2f}/{w:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if s > float(sums.mean()) else "black")
        j = GRIDS.index(choose(summary[m]))
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(GRIDS)), GRIDS)
    ax.set_yticks(range(len(methods)), methods)
    ax.set_title(f"sum / worst of 8 relative moment errors (n = 5000, 25 steps, seed {seed});\n"
                 "red: the default grid chosen", fontsize=9)
    fig.colorbar(im, ax=ax, label="sum over the 8 cases")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", choices=list(S.SAMPLERS), default=list(S.SAMPLERS))
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="one table per seed; the PNG shows the first")
    p.add_argument("--csv", type=Path, default=RESULTS / "default_grids.csv")
    p.add_argument("--png", type=Path, default=RESULTS / "default_grids.png")
    args = p.parse_args(argv)
    start, rows = time.perf_counter(), []
    for seed in args.seeds:
        for method in args.methods:
            for grid in GRIDS:
                rows += measure(method, grid, args.n, args.steps, seed)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    for seed in args.seeds:
        summary = summarise([r for r in rows if r["seed"] == seed])
        if seed == args.seeds[0]:
            plot(summary, args.png, seed)
        print(f"seed {seed}\n{table(summary)}")
    print(f"{time.perf_counter() - start:.0f} s; wrote {args.csv} and {args.png}")


if __name__ == "__main__":
    main()
