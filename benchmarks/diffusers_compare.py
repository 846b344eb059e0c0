r"""Drive a diffusion_lab noise predictor through diffusers' DDIM and DPM-Solver++ schedulers.

diffusers (an optional, benchmark-only dependency) works on a discrete chain
k = 0..T−1 with ᾱ_k = Π_{j≤k}(1 − β_j). Our VP SDE is continuous in t ∈ [0, 1]
with m(t)² = exp(−∫_0^t β). The map used here is

    diffusers timestep k  ↔  our t_k = (k + 1)/T,   T = 1000,

and the scheduler is given ``trained_betas`` β_k = 1 − m(t_k)²/m(t_{k−1})²
(m(t_{−1}) = m(0) = 1), so that its ᾱ_k equals m(t_k)² to rounding: the
network is then evaluated at exactly the noise level the scheduler assumes.
DDPM's "linear" betas (1e-4 … 0.02) are the same schedule only to first order
(:func:`mapping_report` prints the gap: |Δσ| ≤ 1.3e-3, |Δλ| ≤ 0.05, largest at
the ends); ``betas="linear"`` uses them instead.

Scheduler settings chosen to match our samplers step for step:

* ``DDIMScheduler``: η = 0, ``timestep_spacing="trailing"`` (starts at k = 999,
  i.e. t = 1, steps of T/N), ``set_alpha_to_one=False`` (the last step lands on
  ᾱ_0 = m(0.001)², our t_end), no clipping. NFE = N.
* ``DPMSolverMultistepScheduler``: DPM-Solver++(2M), ``lower_order_final=True``
  (first order last step for N < 15, as ours), ``timestep_spacing="linspace"``
  (uniform in t from k = 999), ``final_sigmas_type="sigma_min"`` (ends at
  t = 0.001). NFE = N.

Run ``python benchmarks/diffusers_compare.py`` for the CPU consistency check:
on 2-D Gaussian data with the exact ε (``GaussianOracle``) both schedulers must
reproduce our ``ddim`` / ``dpm_solver`` samples from the same x_1 up to the
rounding of their integer timesteps. The MNIST comparison itself is run from
``sampler_benchmark.py --diffusers``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_lab.sde import SDE

T = 1000


def t_of_timestep(k, num_train_timesteps: int = T) -> float:
    """Our continuous time for diffusers' discrete timestep k: t = (k + 1)/T."""
    return (int(k) + 1) / num_train_timesteps


def vp_betas(sde: SDE, num_train_timesteps: int = T) -> Tensor:
    """β_k = 1 − m(t_k)²/m(t_{k−1})², t_k = (k+1)/T, so that Π_{j≤k}(1 − β_j) = m(t_k)²."""
    t = torch.arange(0, num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    m, _ = sde.marginal(t)
    log_abar = 2.0 * torch.log(m)  # log m(t)², t = 0, 1/T, …, 1
    return -torch.expm1(log_abar[1:] - log_abar[:-1])


def mapping_report(sde: SDE, num_train_timesteps: int = T) -> dict:
    """How far DDPM's linear betas and our ``vp_betas`` are from m(t_k)² at t_k = (k+1)/T."""
    k = torch.arange(num_train_timesteps, dtype=torch.float64)
    m, s = sde.marginal((k + 1) / num_train_timesteps)
    out = {}
    linear = torch.linspace(1e-4, 0.02, num_train_timesteps, dtype=torch.float64)
    for name, betas in (("linear", linear), ("exact", vp_betas(sde, num_train_timesteps))):
        abar = torch.cumprod(1.0 - betas, 0)
        lam = 0.5 * (torch.log(abar) - torch.log1p(-abar))
        out[name] = {
            "max_abs_abar": float((abar - m**2).abs().max()),
            "max_abs_sigma": float(((1.0 - abar).sqrt() - s).abs().max()),
            "max_abs_lambda": float((lam - (torch.log(m) - torch.log(s))).abs().max()),
        }
    return out


def make_scheduler(kind: str, sde: SDE, betas: str = "exact"):
    """A diffusers scheduler configured as described in the module docstring."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = {"num_train_timesteps": T, "prediction_type": "epsilon"}
    if betas == "exact":
        common["trained_betas"] = vp_betas(sde).tolist()
    elif betas == "linear":
        common.update(beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    else:
        raise ValueError(f"betas must be 'exact' or 'linear', got {betas!r}")
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False,
                             timestep_spacing="trailing")
    if kind == "dpm_solver":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                           lower_order_final=True, final_sigmas_type="sigma_min",
                                           timestep_spacing="linspace")
    raise ValueError(f"kind must be 'ddim' or 'dpm_solver', got {kind!r}")


@torch.no_grad()
def diffusers_sample(eps_model, scheduler, x: Tensor, steps: int,
                     generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """Run ``scheduler`` for ``steps`` steps from x (at t = 1) with ε̂ = eps_model(x, t_k).

    ``generator`` is passed to ``scheduler.step`` (stochastic schedulers such as
    ``sde-dpmsolver++`` draw their noise from it; without it they use torch's global RNG).
    Returns the final sample and the number of network calls.
    """
    scheduler.set_timesteps(steps, device=x.device)
    extra = {} if generator is None else {"generator": generator}
    nfe = 0
    for k in scheduler.timesteps:
        t = torch.full((x.shape[0],), t_of_timestep(k), dtype=x.dtype, device=x.device)
        eps = eps_model(scheduler.scale_model_input(x, k), t)
        nfe += 1
        x = scheduler.step(eps, k, x, return_dict=False, **extra)[0]
    return x, nfe


def consistency_check(n: int = 4000, seed: int = 0) -> list[dict]:
    """Ours vs diffusers on 2-D Gaussian data with the exact ε, from the same x_1 (float64)."""
    from diffusion_lab import samplers as S
    from diffusion_lab.oracles import GaussianOracle
    from diffusion_lab.sde import VPSDE

    sde = VPSDE()
    oracle = GaussianOracle(sde, [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]])
    x1 = sde.prior_sample((n, 2), torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = []
    for kind, ours in (("ddim", S.ddim), ("dpm_solver", S.dpm_solver)):
        for steps in (5, 10, 20, 50):
            a = ours(oracle, sde, x1, steps=steps)
            b, nfe = diffusers_sample(oracle, make_scheduler(kind, sde), x1.clone(), steps)
            exact = oracle.pf_map(x1, 1.0, sde.t_min)
            rows.append({"kind": kind, "steps": steps, "nfe": nfe,
                         "rms_ours_vs_diffusers": float((a - b).norm(dim=1).pow(2).mean().sqrt()),
                         "rms_ours_vs_exact": float((a - exact).norm(dim=1).pow(2).mean().sqrt()),
                         "rms_diffusers_vs_exact":
                             float((b - exact).norm(dim=1).pow(2).mean().sqrt())})
    return rows


if __name__ == "__main__":
    from diffusion_lab.sde import VPSDE

    for name, r in mapping_report(VPSDE()).items():
        print(f"betas={name:7s} " + "  ".join(f"{k}={v:.3g}" for k, v in r.items()))
    for r in consistency_check():
        print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r.items()))
    print(f"(t_end = 0.001; grid points agree to the rounding of k: |Δt| < {0.5 / T + 1e-9:.1g})")
