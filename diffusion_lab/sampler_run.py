r"""The bookkeeping every sampler shares (:class:`_Run`) and each method's default time grid
(:data:`DEFAULT_GRIDS`).

Its own module so that samplers living in their own modules (:mod:`diffusion_lab.unipc`,
:mod:`diffusion_lab.restart`) can use it while :mod:`diffusion_lab.samplers` imports them into
``SAMPLERS``: samplers → unipc / restart → sampler_run, no cycle. Both names are re-exported
by :mod:`diffusion_lab.samplers`, where the samplers and their signature are documented.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_bool, check_finite, check_int
from .sde import SDE
from .timegrid import Coefficients, coefficients, time_grid

__all__ = ["DEFAULT_GRIDS"]

#: Each method's default time grid: the one it is most accurate on, measured on exact oracles.
#: Error = (‖mean − μ_t‖ + ‖cov − Σ_t‖_F)/‖Σ_t‖_F of n = 5000 samples at 25 steps, summed over
#: 8 cases (VP, sub-VP, VE, rectified flow × Gaussian data with full covariance / std 0.2);
#: "sum / worst case" per grid, smallest sum chosen (a tie within 0.05: the smaller worst case).
#: ``benchmarks/default_grids.py`` computes it (seed 1, default options, t_end = sde.t_min;
#: ``benchmarks/results/default_grids.csv``; the first eight rows reproduce an earlier
#: measurement to ±0.01):
#:
#:     method                  uniform     quadratic   logsnr      karras
#:     euler_maruyama          0.76/0.30   1.38/0.58   1.28/0.32   1.28/0.40   -> uniform
#:     predictor_corrector     0.84/0.37   0.79/0.24   0.81/0.18   1.06/0.34   -> logsnr
#:     probability_flow        0.79/0.29   2.31/1.25   0.78/0.29   0.65/0.19   -> karras
#:     exponential_integrator  0.86/0.24   1.84/1.20   0.69/0.15   0.50/0.13   -> karras
#:     ddim                    1.91/0.45   1.67/0.26   2.01/0.30   2.24/0.39   -> quadratic
#:     dpm_solver              0.90/0.42   0.50/0.10   0.37/0.07   0.75/0.22   -> logsnr
#:     ancestral               2.87/0.55   2.63/0.45   3.23/0.51   3.50/0.54   -> quadratic
#:     edm                     0.74/0.31   1.43/1.02   0.58/0.13   0.69/0.21   -> logsnr
#:     restart                 0.78/0.38   0.47/0.08   0.39/0.07   0.54/0.14   -> logsnr
#:     unipc                   0.90/0.41   0.42/0.07   0.38/0.07   0.62/0.21   -> logsnr
#:
#: (The sampling noise of one case is about 0.02–0.03, but the 8 cases share the seed: with
#: seeds 2 and 3 whole rows move by up to 0.4, and every choice stays the same.)
#: EDM's own Karras grid is close behind log-SNR here, at 10 and 50 steps too (sums 4.9 vs 4.5
#: and 0.39 vs 0.38); pass ``grid="karras"`` for the paper's sampler exactly. Restart runs
#: with its defaults (t_restart = (0.1, 0.3), one restart, segments as fine as the main grid:
#: NFE 28–30 on log-SNR at 25 steps); unipc's quadratic grid (0.423/0.075) ties log-SNR's
#: (0.381/0.069), whose worst case is the smaller.
DEFAULT_GRIDS = {
    "euler_maruyama": "uniform",
    "predictor_corrector": "logsnr",
    "probability_flow": "karras",
    "exponential_integrator": "karras",
    "ddim": "quadratic",
    "dpm_solver": "logsnr",
    "ancestral": "quadratic",
    "edm": "logsnr",
    "restart": "logsnr",
    "unipc": "logsnr",
}


class _Run:
    """Bookkeeping shared by every sampler: argument checks, the counted and checked
    network call, the grid, progress, callback and ``info``."""

    def __init__(self, method, eps_model, sde, x, steps, t_end, grid, y, callback, progress,
                 info, generator, denoise=False):
        if not callable(eps_model):
            raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
        check_finite(x, "x")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"x must have a non-empty batch dimension, got shape {list(x.shape)}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        if info is not None and not isinstance(info, dict):
            raise TypeError(f"info must be a dict or None, got {type(info).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError("generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")
        self.progress = check_bool(progress, "progress")
        self.denoise = check_bool(denoise, "denoise")
        self.method, self.eps_model, self.sde, self.y = method, eps_model, sde, y
        self.steps = check_int(steps, "steps", minimum=1)
        self.grid_kind = DEFAULT_GRIDS[method] if grid is None else grid
        self.grid = time_grid(sde, self.steps, t_end, self.grid_kind).tolist()
        self.t_end = self.grid[-1]
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device
        self.callback, self.info = callback, info
        self.generator = generator
        self.nfe, self.step = 0, 0
        self._coef: dict[float, Coefficients] = {}

    def coef(self, t: float) -> Coefficients:
        if t not in self._coef:
            self._coef[t] = coefficients(self.sde, t)
        return self._coef[t]

    def eps(self, x: Tensor, t: float) -> Tensor:
        """ε̂(x, t) from the network, counted, with its shape and finiteness checked."""
        tb = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        out = self.eps_model(x, tb) if self.y is None else self.eps_model(x, tb, self.y)
        self.nfe += 1
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"eps_model must return a tensor shaped like x {list(x.shape)}, got {got}"
            )
        if out.device != x.device or not out.is_floating_point() or (
                torch.result_type(x, out) != x.dtype):
            raise TypeError(f"eps_model must return a floating tensor on x's device that keeps "
                            f"x's dtype ({x.dtype} on {x.device}), got {out.dtype} on "
                            f"{out.device}")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"eps_model returned non-finite values at step {self.step}, t={t:.6g}")
        return out

    def x0(self, x: Tensor, eps: Tensor, t: float) -> Tensor:
        """Tweedie's denoised estimate x̂_0 = (x − σ ε̂)/m."""
        c = self.coef(t)
        return (x - c.sigma * eps) / c.m

    def noise(self) -> Tensor:
        return torch.randn(self.shape, generator=self.generator, dtype=self.dtype,
                           device=self.device)

    def intervals(self):
        """Yield (i, s, t) for each grid step, with a progress bar if asked."""
        bar = tqdm(range(self.steps), desc=self.method, disable=not self.progress, leave=False)
        for i in bar:
            self.step = i
            yield i, self.grid[i], self.grid[i + 1]

    def emit(self, i: int, t: float, x: Tensor, x0_hat: Tensor) -> None:
        self.check_state(x, i, t)
        if self.callback is not None:
            self.callback(i, float(t), x, x0_hat)

    def check_state(self, x: Tensor, i: int, t: float) -> None:
        """The sampler's own state must stay finite (an overflow is an error, never a result)."""
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(f"{self.method}: the sample became non-finite at step {i} "
                                     f"(t={t:.6g}); try more steps or another method/grid")

    def finish(self, x: Tensor, **extra) -> Tensor:
        """The end of a run: x̂_0 at ``t_end`` if ``denoise``, the state checked, ``info`` filled."""
        if self.denoise:
            self.step = self.steps
            x = self.x0(x, self.eps(x, self.t_end), self.t_end)
        self.check_state(x, self.step, self.t_end)
        if self.info is not None:
            self.info.update(nfe=self.nfe, steps=self.steps, method=self.method,
                             grid=self.grid_kind, t_end=self.t_end, **extra)
        return x
