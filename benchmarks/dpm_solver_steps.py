"""DPM-Solver++(2M) before and after the step-ratio rule, on exact oracles (2-D, float64).

"before" is the rule the package had until now, rebuilt here: 2M on every step but the first,
and the last step first order only when steps < 15 (diffusers' ``lower_order_final``).
"after" is :func:`diffusion_lab.samplers.dpm_solver`: a step is first order whenever
r = h_{i−1}/h_i < ``DPM_MIN_STEP_RATIO`` (0.7).

For VP, sub-VP and VE, a narrow Gaussian (std 0.2) and eight Gaussians, grids uniform /
log-SNR / quadratic / Karras, and 5…320 steps, it records

* ``pf_rms``  RMS over 2000 prior samples of ‖x − x_ref‖, x_ref a 2000-step log-SNR run;
* ``std_err`` relative error of the sample std (the narrow Gaussian only);
* ``monotone`` whether pf_rms falls with every doubling of the steps.

Writes ``benchmarks/results/dpm_solver_steps.csv`` and ``.png``. About a minute on one core.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from diffusion_lab import samplers as S  # noqa: E402
from diffusion_lab.oracles import GaussianOracle, eight_gaussians_oracle  # noqa: E402
from diffusion_lab.sde import get_sde  # noqa: E402
from diffusion_lab.timegrid import coefficients, time_grid  # noqa: E402

F64 = torch.float64
STEPS = [5, 10, 20, 40, 80, 160, 320]
GRIDS = ["uniform", "logsnr", "quadratic", "karras"]
OUT = Path(__file__).resolve().parent / "results"


def dpm_solver_before(oracle, sde, x, steps, grid):
    """The previous rule: 2M after the first step; first-order last step only below 15 steps."""
    ts = time_grid(sde, steps, kind=grid).tolist()
    prev_x0 = prev_h = None
    for i in range(steps):
        cs, ct = coefficients(sde, ts[i]), coefficients(sde, ts[i + 1])
        h = ct.lam - cs.lam
        x0 = (x - cs.sigma * oracle(x, torch.full((x.shape[0],), ts[i], dtype=F64))) / cs.m
        if prev_x0 is None or (i == steps - 1 and steps < 15):
            d = x0
        else:
            r = prev_h / h
            d = (1 + 0.5 / r) * x0 - 0.5 / r * prev_x0
        x = (ct.sigma / cs.sigma) * x - ct.m * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def run() -> list[dict]:
    rows = []
    for sde_name in ("vp", "subvp", "ve"):
        sde = get_sde(sde_name)
        data = {"gauss_std0.2": GaussianOracle(sde, [0.0, 0.0], [[0.04, 0.0], [0.0, 0.04]]),
                "eight_gaussians": eight_gaussians_oracle(sde)}
        for data_name, o in data.items():
            x1 = sde.prior_sample((2000, 2), torch.Generator().manual_seed(0), dtype=F64)
            ref = S.dpm_solver(o, sde, x1, steps=2000, grid="logsnr")
            for grid in GRIDS:
                for rule in ("before", "after"):
                    errs = []
                    for k in STEPS:
                        out = (dpm_solver_before(o, sde, x1, k, grid) if rule == "before"
                               else S.dpm_solver(o, sde, x1, steps=k, grid=grid))
                        e = float(((out - ref) ** 2).sum(-1).mean().sqrt())
                        std_err = (float(out.std(0).mean() / ref.std(0).mean() - 1)
                                   if data_name.startswith("gauss") else float("nan"))
                        errs.append(e)
                        rows.append(dict(sde=sde_name, data=data_name, grid=grid, rule=rule,
                                         steps=k, pf_rms=e, std_err=std_err))
                    mono = all(a > b for a, b in zip(errs, errs[1:], strict=False))
                    for r in rows[-len(STEPS):]:
                        r["monotone"] = mono
    return rows


def plot(rows, path):
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharex=True)
    for col, sde_name in enumerate(("vp", "subvp", "ve")):
        for row, data_name in enumerate(("gauss_std0.2", "eight_gaussians")):
            ax = axes[row, col]
            for grid, color in zip(("uniform", "logsnr"), ("C0", "C1"), strict=True):
                for rule, style in (("before", "--"), ("after", "-")):
                    sel = [r for r in rows if (r["sde"], r["data"], r["grid"], r["rule"])
                           == (sde_name, data_name, grid, rule)]
                    ax.loglog([r["steps"] for r in sel], [r["pf_rms"] for r in sel], style,
                              color=color, marker="o", ms=3, label=f"{grid}, {rule}")
            ax.set_title(f"{sde_name}, {data_name}")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("steps (= NFE)")
            if col == 0:
                ax.set_ylabel("RMS error vs 2000-step reference")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("DPM-Solver++(2M): previous rule (dashed) vs step-ratio rule (solid)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = run()
    with open(OUT / "dpm_solver_steps.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, OUT / "dpm_solver_steps.png")
    for r in rows:
        if r["steps"] == STEPS[0]:
            sel = [q for q in rows if all(q[k] == r[k] for k in ("sde", "data", "grid", "rule"))]
            print(f"{r['sde']:5s} {r['data']:15s} {r['grid']:9s} {r['rule']:6s} "
                  f"{'monotone' if r['monotone'] else 'NOT MONOTONE':12s} "
                  + " ".join(f"{q['pf_rms']:.1e}" for q in sel))


if __name__ == "__main__":
    main()
