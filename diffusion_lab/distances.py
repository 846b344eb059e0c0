r"""Distances between two sample sets: precision/recall, energy distance, sliced Wasserstein.

* precision / recall: k-NN manifold estimate (Kynkäänniemi et al. 2019).
* energy distance  D² = 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (Székely & Rizzo).
* sliced Wasserstein SW_p = (E_θ W_p^p(θᵀX, θᵀY))^{1/p}, θ uniform on the sphere.
* Fréchet distance of two Gaussians (the formula inside FID), from moments or from samples.
* nearest-neighbour distances (memorisation: how close a sample is to its nearest
  training point, and the ratio to the second nearest).

Inputs are point sets ``[N, D]`` (raw low-dimensional samples, or features from
:func:`diffusion_lab.metrics.extract_features`). Guards: a statistic refuses
(ValueError) sample sizes where it is undefined and warns (``SmallSampleWarning``)
where it is defined but strongly biased.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ._checks import check_finite, check_int

__all__ = [
    "SmallSampleWarning",
    "energy_distance",
    "frechet_distance",
    "gaussian_stats",
    "nearest_neighbours",
    "precision_recall",
    "sliced_wasserstein",
]


class SmallSampleWarning(UserWarning):
    """A metric was computed from too few samples to be trusted at face value."""


def _check_points(x, name: str) -> Tensor:
    check_finite(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {list(x.shape)}")
    return x


def _kth_nn_radius(f: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row to its k-th nearest *other* row."""
    out = []
    for i in range(0, f.shape[0], chunk):
        d = torch.cdist(f[i:i + chunk], f)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (0)
    return torch.cat(out)


def _coverage(query: Tensor, support: Tensor, radii: Tensor, chunk: int) -> float:
    """Fraction of ``query`` points inside some ball B(support_j, radii_j)."""
    inside = []
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i:i + chunk], support)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


@torch.no_grad()
def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3, *, chunk: int = 1024
                     ) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The real manifold is ∪_i B(r_i, NN_k(r_i)) (balls reaching the k-th nearest real
    neighbour); precision = fraction of fakes inside it. Recall swaps the roles.
    Warns below 1,000 samples per set: k-NN balls are then wide and both values
    are biased towards 1.
    """
    real_feats = _check_points(real_feats, "real_feats")
    fake_feats = _check_points(fake_feats, "fake_feats")
    check_int(k, "k")
    if real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError(
            f"feature widths differ: real {real_feats.shape[1]}, fake {fake_feats.shape[1]}"
        )
    for name, f in (("real_feats", real_feats), ("fake_feats", fake_feats)):
        if f.shape[0] <= k:
            raise ValueError(f"{name} has n = {f.shape[0]} samples; k-NN with k = {k} needs n > k")
        if f.shape[0] < 1000:
            warnings.warn(f"precision/recall from {name} n = {f.shape[0]} < 1000: k-NN radii are "
                          "large and both values are biased towards 1", SmallSampleWarning,
                          stacklevel=2)
    r_real = _kth_nn_radius(real_feats, k, chunk)
    r_fake = _kth_nn_radius(fake_feats, k, chunk)
    return (_coverage(fake_feats, real_feats, r_real, chunk),
            _coverage(real_feats, fake_feats, r_fake, chunk))


def _mean_dist(a: Tensor, b: Tensor, exclude_diagonal: bool, chunk: int = 2048) -> Tensor:
    total = a.new_zeros(())
    for i in range(0, a.shape[0], chunk):
        total = total + torch.cdist(a[i:i + chunk], b).sum()
    n_pairs = a.shape[0] * (b.shape[0] - 1) if exclude_diagonal else a.shape[0] * b.shape[0]
    return total / n_pairs  # diagonal terms of cdist(a, a) are 0, so only the count changes


def energy_distance(a: Tensor, b: Tensor, *, unbiased: bool = True) -> float:
    """Squared energy distance D² = 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ between samples [N, D].

    ``unbiased=True``: U-statistics (within-sample pairs i ≠ j), an unbiased estimate
    of the population D² (may be slightly negative). ``unbiased=False``: V-statistics;
    in 1-D its square root equals ``scipy.stats.energy_distance``.
    """
    a, b = _check_points(a, "a"), _check_points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"energy distance needs n >= 2 per set, got {a.shape[0]} and {b.shape[0]}")
    return float(2 * _mean_dist(a, b, False) - _mean_dist(a, a, unbiased)
                 - _mean_dist(b, b, unbiased))


def _wasserstein_1d_pp(u: Tensor, v: Tensor, p: float) -> Tensor:
    """W_p^p between the empirical measures of the columns of u [n, P] and v [m, P], exactly.

    W_p^p = ∫_0^1 |F_u^{-1}(q) − F_v^{-1}(q)|^p dq with piecewise-constant quantile
    functions; the integral is a sum over the merged breakpoints {i/n} ∪ {j/m}.
    """
    n, m = u.shape[0], v.shape[0]
    u, v = u.sort(dim=0).values, v.sort(dim=0).values
    kw = dict(dtype=u.dtype, device=u.device)
    levels = torch.cat([torch.arange(1, n + 1, **kw) / n, torch.arange(1, m + 1, **kw) / m])
    levels = torch.unique(levels)  # sorted, ends at 1
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    mid = levels - widths / 2
    iu = torch.ceil(mid * n).long() - 1  # 0 < mid < 1, so the index lies in [0, n - 1]
    iv = torch.ceil(mid * m).long() - 1
    return ((u[iu] - v[iv]).abs() ** p * widths[:, None]).sum(dim=0)


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
    *,
    p: float = 2.0,
) -> float:
    """SW_p(a, b) = ( E_θ W_p^p(θᵀa, θᵀb) )^{1/p}, θ uniform on the unit sphere S^{D−1}.

    The expectation is a Monte Carlo mean over ``n_projections`` directions drawn
    with ``generator``; each 1-D W_p is exact (sorted samples, any n and m). In
    D = 1 it is the exact W_p.
    """
    a, b = _check_points(a, "a"), _check_points(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    check_int(n_projections, "n_projections")
    if not (isinstance(p, (int, float)) and p >= 1 and math.isfinite(p)):
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=a.dtype)
    theta = theta / theta.norm(dim=0, keepdim=True)
    theta = theta.to(a.device)
    return float(_wasserstein_1d_pp(a @ theta, b.to(a.dtype) @ theta, p).mean() ** (1 / p))


def gaussian_stats(f: Tensor) -> tuple[Tensor, Tensor]:
    """(mean [D], unbiased covariance [D, D]) of the rows of ``f`` [N, D], in float64."""
    f = _check_points(f, "f").to(torch.float64)
    if f.shape[0] < 2:
        raise ValueError(f"a covariance needs n >= 2 samples, got {f.shape[0]}")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _sqrt_psd(a: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0.0).sqrt()) @ v.T  # eigenvalues of a PSD matrix: only round-off < 0


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """W₂² between N(μ₁, Σ₁) and N(μ₂, Σ₂): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).

    Tr (Σ₁Σ₂)^{1/2} = Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} (the two matrices are similar), computed
    from symmetric eigendecompositions in float64; valid for singular Σ too (n ≤ D samples).
    """
    for name, v in (("mu1", mu1), ("mu2", mu2)):
        check_finite(v, name)
        if v.dim() != 1:
            raise ValueError(f"{name} must be a vector [D], got shape {list(v.shape)}")
    d = mu1.shape[0]
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        check_finite(c, name)
        if tuple(c.shape) != (d, d) or mu2.shape[0] != d:
            raise ValueError(f"{name} must be [D, D] with D = {d}, got {list(c.shape)}")
    mu1, mu2, cov1, cov2 = (v.to(torch.float64) for v in (mu1, mu2, cov1, cov2))
    r1 = _sqrt_psd(cov1)
    cross = _sqrt_psd(r1 @ cov2 @ r1).trace()
    return float(((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * cross)


@torch.no_grad()
def nearest_neighbours(query: Tensor, reference: Tensor, k: int = 1, *, chunk: int = 1024
                       ) -> tuple[Tensor, Tensor]:
    """Euclidean distances ``[N, k]`` (ascending) and indices ``[N, k]`` of the k nearest
    ``reference`` rows of every ``query`` row (inputs [N, D] and [M, D], e.g. flattened images).
    A query that is itself in ``reference`` finds itself at distance 0."""
    query, reference = _check_points(query, "query"), _check_points(reference, "reference")
    check_int(k, "k")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"query has D = {query.shape[1]}, reference D = {reference.shape[1]}")
    if reference.shape[0] < k:
        raise ValueError(f"k = {k} neighbours need >= k reference rows, got {reference.shape[0]}")
    dists, idx = [], []
    ref = reference.to(torch.float64)
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i:i + chunk].to(torch.float64), ref)
        v, j = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idx.append(j)
    return torch.cat(dists), torch.cat(idx)
