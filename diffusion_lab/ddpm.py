r"""The discrete DDPM chain (Ho et al. 2020) and its continuous limit, the VP SDE.

Index i = 1..T corresponds to continuous time t = i/T. With betas β_1..β_T,
α_i = 1 − β_i and ᾱ_i = ∏_{j≤i} α_j (ᾱ_0 = 1):

    forward step    q(x_i | x_{i−1}) = N(√α_i x_{i−1}, β_i I)
    closed form     q(x_i | x_0)     = N(√ᾱ_i x_0, (1 − ᾱ_i) I)
    posterior       q(x_{i−1} | x_i, x_0) = N(μ̃_i, β̃_i I),
                    μ̃_i = √ᾱ_{i−1} β_i/(1 − ᾱ_i) x_0 + √α_i (1 − ᾱ_{i−1})/(1 − ᾱ_i) x_i,
                    β̃_i = (1 − ᾱ_{i−1})/(1 − ᾱ_i) β_i
    ancestral step  x_{i−1} = (x_i − β_i/√(1 − ᾱ_i) ε̂(x_i, i/T))/√α_i + σ_i z   (Algorithm 2)

The VP SDE has m(t)² = exp(−∫_0^t β) = ᾱ(t). :meth:`DiscreteDDPM.from_schedule`
takes β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T), so the chain visits the SDE's marginals
*exactly*: ᾱ_i = m(i/T)². The paper's linear betas (1e-4 .. 0.02, T = 1000)
are instead a Riemann discretisation β_i ≈ β(i/T)/T of the linear schedule
β(t) = 0.1 + 19.9 t, and ᾱ_i → m(i/T)² only as T → ∞ (see :meth:`continuum_gap`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_choice, check_finite, check_int, expand_like
from .schedules import LinearSchedule, Schedule
from .sde import VPSDE

__all__ = ["DiscreteDDPM", "StepSchedule", "ddpm_linear_betas"]

VARIANCES = ("posterior", "beta")


def ddpm_linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """The DDPM paper's betas: ``linspace(beta_start, beta_end, T)`` in float64."""
    T = check_int(T, "T")
    for name, v in (("beta_start", beta_start), ("beta_end", beta_end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def _check_betas(betas) -> Tensor:
    if not isinstance(betas, Tensor):
        raise TypeError(f"betas must be a 1-D torch.Tensor, got {type(betas).__name__}")
    if betas.dim() != 1 or betas.numel() < 1:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {list(betas.shape)}")
    if not betas.is_floating_point():
        raise TypeError(f"betas must be a floating tensor, got dtype {betas.dtype}")
    betas = betas.detach().to(torch.float64)
    bad = ~torch.isfinite(betas) | (betas <= 0) | (betas >= 1)
    if bool(bad.any()):
        raise ValueError(
            f"betas must all lie in the open interval (0, 1), got values in "
            f"[{betas.min().item():.4g}, {betas.max().item():.4g}]"
        )
    return betas


class StepSchedule(Schedule):
    """The piecewise-constant rate that embeds *any* DDPM chain in the VP SDE exactly.

    β(t) = −T log(1 − β_i) for t ∈ ((i−1)/T, i/T], so B(i/T) = −Σ_{j≤i} log(1 − β_j)
    and exp(−B(i/T)) = ᾱ_i for every i.
    """

    def __init__(self, betas: Tensor):
        self._betas = _check_betas(betas)
        self._T = self._betas.numel()
        self._rate = -self._T * torch.log1p(-self._betas)  # [T]
        self._cum = torch.cat([self._rate.new_zeros(1), torch.cumsum(self._rate / self._T, 0)])

    def config(self) -> dict:
        return {"betas": self._betas.tolist()}

    def beta(self, t) -> Tensor:
        t = self.check_t(t)
        k = torch.ceil(t.to(torch.float64) * self._T).long().clamp(1, self._T)  # t = 0 -> step 1
        return self._rate[k - 1].to(t.dtype)

    def integral(self, t) -> Tensor:
        t = self.check_t(t)
        t64 = t.to(torch.float64)
        k = torch.floor(t64 * self._T).long().clamp(0, self._T - 1)  # whole steps before t
        return (self._cum[k] + self._rate[k] * (t64 - k.double() / self._T)).to(t.dtype)


class DiscreteDDPM:
    """The DDPM Markov chain with betas β_1..β_T (a 1-D tensor in (0, 1)).

    Tables are float64 and indexed by i = 0..T with ᾱ_0 = 1; every method takes
    ``i`` as a Python int or an integer tensor ``[B]`` (one index per sample) in 1..T.
    """

    def __init__(self, betas: Tensor, schedule: Schedule | None = None):
        self.betas = _check_betas(betas)
        self.T = self.betas.numel()
        self.schedule = schedule  # the continuous schedule this chain discretises, if any
        one = self.betas.new_ones(1)
        self.alphas = torch.cat([one, 1.0 - self.betas])  # α_0 := 1 (unused)
        self.alpha_bars = torch.cat([one, torch.cumprod(1.0 - self.betas, 0)])  # ᾱ_0 = 1
        self._betas0 = torch.cat([self.betas.new_zeros(1), self.betas])  # β_0 := 0 (unused)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_schedule(cls, schedule: Schedule, T: int = 1000) -> DiscreteDDPM:
        """β_i = 1 − ᾱ(i/T)/ᾱ((i−1)/T): the chain hits the VP marginals exactly, ᾱ_i = m(i/T)²."""
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"schedule must be a diffusion_lab Schedule, got {type(schedule).__name__}"
            )
        return cls(schedule.discrete_betas(T), schedule)

    @classmethod
    def linear(cls, T: int = 1000, beta_min: float = 0.1, beta_max: float = 20.0) -> DiscreteDDPM:
        """The paper's linear betas scaled with T: linspace(β_min/T, β_max/T, T).

        T = 1000 gives exactly 1e-4 .. 0.02; the continuous limit is the linear
        VP schedule (β_min, β_max), reached with an O(1/T) error in ᾱ.
        """
        T = check_int(T, "T")
        limit = LinearSchedule(beta_min, beta_max)
        return cls(ddpm_linear_betas(T, beta_min / T, beta_max / T), limit)

    # -- indices ---------------------------------------------------------------------------
    def check_index(self, i, name: str = "i") -> Tensor:
        """Check a DDPM index (int, or integer tensor 0-d or [B]) lies in 1..T; a LongTensor."""
        if isinstance(i, bool):
            raise TypeError(f"{name} must be an int or an integer tensor in 1..{self.T}, got bool")
        if isinstance(i, int):
            i = torch.tensor(i)
        elif isinstance(i, Tensor):
            if i.is_floating_point() or i.is_complex() or i.dtype == torch.bool:
                raise TypeError(
                    f"{name} must be an integer DDPM index in 1..{self.T} (t = i/T), "
                    f"got dtype {i.dtype}"
                )
            if i.dim() > 1:
                raise ValueError(f"{name} must be a DDPM index in 1..{self.T}, 0-d or of "
                                 f"shape [B], got shape {list(i.shape)}")
        else:
            raise TypeError(f"{name} must be an int or an integer tensor in 1..{self.T}, "
                            f"got {type(i).__name__}")
        if i.numel() and (bool((i < 1).any()) or bool((i > self.T).any())):
            raise ValueError(
                f"{name} must lie in 1..T = 1..{self.T} (DDPM index, t = i/T), got values in "
                f"[{int(i.min())}, {int(i.max())}]"
            )
        return i.long().cpu()

    def _coef(self, table: Tensor, i: Tensor, x: Tensor) -> Tensor:
        """table[i] in x's dtype/device, shaped to broadcast against x (per sample if i is [B])."""
        v = table[i].to(dtype=x.dtype, device=x.device)
        if i.dim() == 1:
            if i.shape[0] != x.shape[0]:
                raise ValueError(f"i must be an int or have shape [B] = [{x.shape[0]}], "
                                 f"got shape {list(i.shape)}")
            v = expand_like(v, x)
        return v

    def time(self, i) -> Tensor:
        """Continuous time t = i/T (float64)."""
        return self.check_index(i).double() / self.T

    # -- forward process -------------------------------------------------------------------
    def q_step(self, x_prev: Tensor, i, generator: torch.Generator | None = None) -> Tensor:
        """One forward step: x_i = √(1 − β_i) x_{i−1} + √β_i z ~ q(x_i | x_{i−1})."""
        check_finite(x_prev, "x_prev")
        i = self.check_index(i)
        b = self._coef(self._betas0, i, x_prev)
        z = torch.randn(x_prev.shape, generator=generator, dtype=x_prev.dtype, device=x_prev.device)
        return torch.sqrt(1.0 - b) * x_prev + torch.sqrt(b) * z

    def q_sample(self, x0: Tensor, i, noise: Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Closed form x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε ~ q(x_i | x_0); returns (x_i, ε)."""
        check_finite(x0, "x0")
        i = self.check_index(i)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        elif noise.shape != x0.shape:
            raise ValueError(
                f"noise must have x0's shape {list(x0.shape)}, got {list(noise.shape)}"
            )
        ab = self._coef(self.alpha_bars, i, x0)
        return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * noise, noise

    # -- reverse process -------------------------------------------------------------------
    def posterior(self, x_i: Tensor, x0: Tensor, i) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{i−1} | x_i, x_0) (module docstring).

        Returns ``(mean, variance)``: mean shaped like ``x_i``; variance β̃_i, a
        0-d tensor for an int ``i`` or ``[B]`` for a tensor ``i``. β̃_1 = 0, μ̃_1 = x_0.
        """
        check_finite(x_i, "x_i")
        check_finite(x0, "x0")
        if x0.shape != x_i.shape:
            raise ValueError(f"x0 must have x_i's shape {list(x_i.shape)}, got {list(x0.shape)}")
        i = self.check_index(i)
        b = self._coef(self._betas0, i, x_i)
        ab, ab_prev = self._coef(self.alpha_bars, i, x_i), self._coef(self.alpha_bars, i - 1, x_i)
        coef_x0 = torch.sqrt(ab_prev) * b / (1 - ab)
        coef_xi = torch.sqrt(1 - b) * (1 - ab_prev) / (1 - ab)
        mean = coef_x0 * x0 + coef_xi * x_i
        var = (1 - self.alpha_bars[i - 1]) / (1 - self.alpha_bars[i]) * self.betas[i - 1]
        return mean, var.to(dtype=x_i.dtype, device=x_i.device)

    def predict_x0(self, x_i: Tensor, eps: Tensor, i) -> Tensor:
        """x̂_0 = (x_i − √(1 − ᾱ_i) ε̂)/√ᾱ_i."""
        i = self.check_index(i)
        ab = self._coef(self.alpha_bars, i, x_i)
        return (x_i - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)

    def _step(self, eps_model, x: Tensor, i: Tensor, generator, variance: str, y):
        check_choice(variance, "variance", VARIANCES)
        t = (i.double() / self.T).to(dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        eps = eps_model(x, t) if y is None else eps_model(x, t, y)
        b = self._coef(self._betas0, i, x)
        ab = self._coef(self.alpha_bars, i, x)
        mean = (x - b / torch.sqrt(1 - ab) * eps) / torch.sqrt(1 - b)
        if variance == "posterior":
            var = self._coef((1 - self.alpha_bars[:-1]) / (1 - self.alpha_bars[1:]) * self.betas,
                             i - 1, x)
        else:
            var = b
        var = var * self._coef((torch.arange(self.T + 1) > 1).double(), i, x)  # z = 0 at i = 1
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x0_hat = (x - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)
        return mean + torch.sqrt(var) * z, x0_hat

    def ancestral_step(self, eps_model, x_i: Tensor, i, generator: torch.Generator | None = None,
                       variance: str = "posterior", y=None) -> Tensor:
        """DDPM Algorithm 2, one step: x_{i−1} = (x_i − β_i/√(1 − ᾱ_i) ε̂)/√α_i + σ_i z.

        σ_i² = β̃_i (``variance="posterior"``) or β_i (``"beta"``); z = 0 at i = 1.
        The model is called as ``eps_model(x_i, t)`` (or with ``y``), t = i/T, a float [B].
        """
        check_finite(x_i, "x_i")
        return self._step(eps_model, x_i, self.check_index(i), generator, variance, y)[0]

    def ancestral_sample(self, eps_model, shape, generator: torch.Generator | None = None,
                         variance: str = "posterior", y=None, dtype=torch.float32, device=None,
                         progress: bool = True, callback=None) -> Tensor:
        """x_T ~ N(0, I), then ancestral steps i = T, ..., 1; returns x_0.

        ``callback(step, t, x, x0_hat)`` is called after each step (t = i/T of the
        model call, x = x_{i−1}).
        """
        check_choice(variance, "variance", VARIANCES)
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape}")
        x = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        for step, i in enumerate(tqdm(range(self.T, 0, -1), disable=not progress, desc="DDPM")):
            x, x0_hat = self._step(eps_model, x, torch.tensor(i), generator, variance, y)
            if callback is not None:
                callback(step, i / self.T, x, x0_hat)
        return x

    # -- training --------------------------------------------------------------------------
    def loss_simple(self, eps_model, x0: Tensor, generator: torch.Generator | None = None,
                    y=None) -> Tensor:
        """L_simple = E_{i ~ U{1..T}, ε ~ N(0, I)} ‖ε − ε̂(√ᾱ_i x_0 + √(1 − ᾱ_i) ε, i/T)‖²,
        averaged over batch and elements (a 0-d tensor)."""
        check_finite(x0, "x0")
        i = torch.randint(1, self.T + 1, (x0.shape[0],), generator=generator)
        x_i, eps = self.q_sample(x0, i, generator=generator)
        t = (i.double() / self.T).to(dtype=x0.dtype, device=x0.device)
        pred = eps_model(x_i, t) if y is None else eps_model(x_i, t, y)
        return ((eps - pred) ** 2).mean()

    # -- continuous limit --------------------------------------------------------------------
    def vp_sde(self) -> VPSDE:
        """The VP SDE of this chain: the schedule it discretises, or (for bare betas) the
        exact piecewise-constant embedding :class:`StepSchedule`."""
        return VPSDE(self.schedule if self.schedule is not None else StepSchedule(self.betas))

    def continuum_gap(self) -> float:
        """max_i |ᾱ_i − m(i/T)²| against :meth:`vp_sde`: 0 (to rounding) for
        ``from_schedule``; O(1/T) for :meth:`linear`."""
        t = torch.arange(1, self.T + 1, dtype=torch.float64) / self.T
        m, _ = self.vp_sde().marginal(t)
        return float((self.alpha_bars[1:] - m.double() ** 2).abs().max())

    def __repr__(self) -> str:
        sched = "" if self.schedule is None else f", schedule={self.schedule!r}"
        return (f"DiscreteDDPM(T={self.T}, beta_1={self.betas[0].item():.4g}, "
                f"beta_T={self.betas[-1].item():.4g}{sched})")

