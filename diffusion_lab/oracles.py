r"""Exact scores and noise predictors for Gaussian and Gaussian-mixture data.

If the data are p_0 = Σ_k w_k N(μ_k, Σ_k), then under any of the linear SDEs
(x_t = m x_0 + σ z) the marginal is again a mixture,

    p_t = Σ_k w_k N(m μ_k, C_k(t)),   C_k(t) = m² Σ_k + σ² I,

with score  ∇log p_t(x) = Σ_k r_k(x) · (−C_k⁻¹ (x − m μ_k)),
r_k = posterior responsibility of component k, and the exact noise predictor
ε*(x, t) = −σ ∇log p_t(x) (the minimiser of the denoising loss).

An oracle is *callable as an eps_model*, ``oracle(x, t, y=None)``, so every
sampler, likelihood and task in the package can be run against the truth
before any network exists. Class-conditional mixtures attach a label to each
component; ``y`` selects the components of one class (``y = null_label`` or
``None`` means unconditional), which is what classifier-free guidance needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import batch_times, check_finite, check_int, expand_like
from .sde import SDE

__all__ = ["GaussianMixtureOracle", "GaussianOracle", "eight_gaussians_oracle"]


def _as_tensor(v, name: str, dtype=torch.float64) -> Tensor:
    t = torch.as_tensor(v, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t


class GaussianMixtureOracle:
    """Exact ε*, score and log-density for mixture data under ``sde``.

    Args:
        sde: the forward SDE.
        means: ``[K, *data_shape]`` component means.
        covs: per component, a variance ``[K]`` (isotropic), a diagonal
            ``[K, D]`` or a full covariance ``[K, D, D]`` (D = prod(data_shape)).
            Zero variance (point masses) is allowed.
        weights: ``[K]`` mixture weights (default uniform); normalised here.
        labels: optional ``[K]`` integer class of each component.
    """

    def __init__(self, sde: SDE, means, covs, weights=None, labels=None):
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
        self.sde = sde
        means = _as_tensor(means, "means")
        if means.dim() < 2:
            raise ValueError(f"means must have shape [K, *data_shape], got {list(means.shape)}")
        self.K = means.shape[0]
        self.data_shape = tuple(means.shape[1:])
        self.D = int(math.prod(self.data_shape))
        self.means = means.reshape(self.K, self.D)
        covs = _as_tensor(covs, "covs")
        if covs.shape == (self.K,):
            self.diag, self.cov_full = covs[:, None].expand(self.K, self.D).clone(), None
        elif covs.shape == (self.K, self.D):
            self.diag, self.cov_full = covs.clone(), None
        elif covs.shape == (self.K, self.D, self.D):
            if not torch.allclose(covs, covs.transpose(-1, -2)):
                raise ValueError("covs must be symmetric")
            if bool((torch.linalg.eigvalsh(covs) < -1e-10).any()):
                raise ValueError("covs must be positive semi-definite")
            self.diag, self.cov_full = None, covs.clone()
        else:
            raise ValueError(
                f"covs must have shape [K]={[self.K]}, [K, D]={[self.K, self.D]} or "
                f"[K, D, D]={[self.K, self.D, self.D]}, got {list(covs.shape)}"
            )
        if self.diag is not None and bool((self.diag < 0).any()):
            raise ValueError("covs (variances) must be >= 0")
        if weights is None:
            weights = torch.full((self.K,), 1.0 / self.K, dtype=torch.float64)
        weights = _as_tensor(weights, "weights")
        if weights.shape != (self.K,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be {self.K} positive numbers, got {weights.tolist()}")
        self.weights = weights / weights.sum()
        if labels is None:
            self.labels, self.num_classes = None, 0
        else:
            labels = torch.as_tensor(labels, dtype=torch.long)
            if labels.shape != (self.K,) or bool((labels < 0).any()):
                raise ValueError(f"labels must be {self.K} non-negative ints, got {labels.tolist()}")
            self.labels, self.num_classes = labels, int(labels.max()) + 1

    # -- the data distribution -------------------------------------------------------------
    @property
    def null_label(self) -> int:
        """The label meaning "no class" (classifier-free guidance's null token)."""
        return self.num_classes

    def full_covs(self) -> Tensor:
        """Component covariances as ``[K, D, D]``."""
        return torch.diag_embed(self.diag) if self.cov_full is None else self.cov_full

    def mean(self) -> Tensor:
        """Mean of the data, ``[D]``."""
        return (self.weights[:, None] * self.means).sum(0)

    def cov(self) -> Tensor:
        """Covariance of the data: Σ_k w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ, ``[D, D]``."""
        mu = self.mean()
        second = self.full_covs() + self.means[:, :, None] * self.means[:, None, :]
        return (self.weights[:, None, None] * second).sum(0) - torch.outer(mu, mu)

    def sample(self, n: int, generator: torch.Generator | None = None, y=None,
               dtype=torch.float64, return_labels: bool = False):
        """Draw ``n`` data points (optionally all of class ``y``): ``[n, *data_shape]``."""
        n = check_int(n, "n")
        w = self._class_weights(y, 1)[0] if y is not None else self.weights
        comp = torch.multinomial(w, n, replacement=True, generator=generator)
        z = torch.randn((n, self.D), generator=generator, dtype=torch.float64)
        if self.cov_full is None:
            x = self.means[comp] + self.diag[comp].sqrt() * z
        else:
            evals, evecs = torch.linalg.eigh(self.cov_full)
            root = evecs * evals.clamp(min=0.0).sqrt()[:, None, :]  # PSD square root factor
            x = self.means[comp] + (root[comp] @ z[:, :, None])[..., 0]
        x = x.to(dtype).reshape((n,) + self.data_shape)
        if return_labels:
            lab = self.labels[comp] if self.labels is not None else torch.zeros(n, dtype=torch.long)
            return x, lab
        return x

    # -- exact quantities at time t ---------------------------------------------------------
    def _class_weights(self, y, B: int) -> Tensor:
        """Log-free weights per sample ``[B, K]``, restricted to class y where given."""
        w = self.weights.expand(B, self.K)
        if y is None:
            return w
        if self.labels is None:
            raise ValueError("y was given but this oracle has no component labels")
        y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
        if y.numel() == 1:
            y = y.expand(B)
        if y.shape[0] != B:
            raise ValueError(f"y must have one label per sample ({B}), got {y.shape[0]}")
        if bool((y < 0).any()) or bool((y > self.null_label).any()):
            raise ValueError(f"y must lie in [0, {self.null_label}] ({self.null_label} = null)")
        match = self.labels[None, :] == y[:, None]
        uncond = (y == self.null_label)[:, None]
        keep = match | uncond
        empty = ~keep.any(-1)
        if bool(empty.any()):
            bad = sorted(set(y[empty].tolist()))
            raise ValueError(f"y contains labels with no component: {bad}; "
                             f"component labels are {sorted(set(self.labels.tolist()))}")
        w = torch.where(keep, w, torch.zeros_like(w))
        return w / w.sum(-1, keepdim=True)

    def _component_terms(self, x: Tensor, t: Tensor):
        """Per component: log N(x; m μ_k, C_k) ``[B, K]`` and −C_k⁻¹(x − m μ_k) ``[B, K, D]``."""
        m, s = self.sde.marginal(t)
        m, s = m.to(torch.float64), s.to(torch.float64)
        d = x[:, None, :] - m[:, None, None] * self.means[None]  # [B, K, D]
        if self.cov_full is None:
            var = m[:, None, None] ** 2 * self.diag[None] + s[:, None, None] ** 2  # [B, K, D]
            grad = -d / var
            logn = -0.5 * ((d**2 / var).sum(-1) + torch.log(2 * math.pi * var).sum(-1))
        else:
            eye = torch.eye(self.D, dtype=torch.float64)
            C = m[:, None, None, None] ** 2 * self.cov_full[None] + s[:, None, None, None] ** 2 * eye
            L = torch.linalg.cholesky(C)  # [B, K, D, D]
            sol = torch.cholesky_solve(d[..., None], L)[..., 0]
            grad = -sol
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
            logn = -0.5 * ((d * sol).sum(-1) + logdet + self.D * math.log(2 * math.pi))
        return logn, grad

    def _flatten(self, x: Tensor, t) -> tuple[Tensor, Tensor]:
        check_finite(x, "x")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.data_shape))}], got {list(x.shape)}"
            )
        t = batch_times(t, x)
        return x.reshape(x.shape[0], self.D).to(torch.float64), t

    def log_prob(self, x: Tensor, t=0.0, y=None) -> Tensor:
        """log p_t(x) (exact), ``[B]``. At ``t = 0`` this is the data log-density."""
        flat, t = self._flatten(x, t)
        logn, _ = self._component_terms(flat, t)
        logw = torch.log(self._class_weights(y, flat.shape[0]))
        return torch.logsumexp(logn + logw, -1).to(x.dtype)

    def score(self, x: Tensor, t, y=None) -> Tensor:
        """∇_x log p_t(x) (exact), shaped like ``x``."""
        flat, t = self._flatten(x, t)
        logn, grad = self._component_terms(flat, t)
        logw = torch.log(self._class_weights(y, flat.shape[0]))
        r = torch.softmax(logn + logw, -1)  # responsibilities [B, K]
        return (r[..., None] * grad).sum(1).to(x.dtype).reshape(x.shape)

    def eps(self, x: Tensor, t, y=None) -> Tensor:
        """ε*(x, t) = −σ(t) ∇log p_t(x), the exact noise predictor."""
        tb = batch_times(t, x)
        _, s = self.sde.marginal(tb)
        return -expand_like(s, x) * self.score(x, tb, y)

    def __call__(self, x: Tensor, t, y=None) -> Tensor:
        return self.eps(x, t, y)


class GaussianOracle(GaussianMixtureOracle):
    """Single Gaussian N(μ, Σ) data; adds the closed-form probability-flow map.

    With v_t = m_t² Σ + σ_t² I, the ODE transports x_s to
    x_t = m_t μ + v_t^{1/2} v_s^{-1/2} (x_s − m_s μ) (all matrices commute
    because they share Σ's eigenvectors).
    """

    def __init__(self, sde: SDE, mean, cov):
        mean = _as_tensor(mean, "mean")
        cov = _as_tensor(cov, "cov")
        D = mean.numel()
        if cov.dim() == 0:
            cov = cov.reshape(1)
        elif cov.dim() == 1 and cov.shape[0] == D:
            cov = cov[None]
        elif cov.dim() == 2 and cov.shape == (D, D):
            cov = cov[None]
        else:
            raise ValueError(f"cov must be a scalar, [D]={D} diagonal or [D, D], got {list(cov.shape)}")
        super().__init__(sde, mean[None], cov)

    def marginal_mean_cov(self, t) -> tuple[Tensor, Tensor]:
        """Mean m μ and covariance m² Σ + σ² I of p_t (t a float)."""
        m, s = self.sde.marginal(torch.tensor(float(t), dtype=torch.float64))
        cov = m**2 * self.full_covs()[0] + s**2 * torch.eye(self.D, dtype=torch.float64)
        return m * self.means[0], cov

    def pf_map(self, x: Tensor, s: float, t: float) -> Tensor:
        """Exact probability-flow ODE solution from time ``s`` to time ``t``."""
        flat = x.reshape(x.shape[0], self.D).to(torch.float64)
        mu_s, _ = self.marginal_mean_cov(s)
        mu_t, _ = self.marginal_mean_cov(t)
        evals, evecs = torch.linalg.eigh(self.full_covs()[0])
        ms, ss = (torch.tensor(v, dtype=torch.float64) for v in self._ms(s))
        mt, st = (torch.tensor(v, dtype=torch.float64) for v in self._ms(t))
        ratio = torch.sqrt((mt**2 * evals + st**2) / (ms**2 * evals + ss**2))
        A = evecs @ torch.diag(ratio) @ evecs.T
        out = mu_t + (flat - mu_s) @ A.T
        return out.to(x.dtype).reshape(x.shape)

    def _ms(self, t: float) -> tuple[float, float]:
        m, s = self.sde.marginal(torch.tensor(float(t), dtype=torch.float64))
        return float(m), float(s)


def eight_gaussians_oracle(sde: SDE, radius: float = 2.0, std: float = 0.1,
                           labelled: bool = True) -> GaussianMixtureOracle:
    """The classic 8-Gaussians toy: equal components on a circle (labels 0..7 if ``labelled``)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    labels = torch.arange(8) if labelled else None
    return GaussianMixtureOracle(sde, means, torch.full((8,), std**2), labels=labels)
