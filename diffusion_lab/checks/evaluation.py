"""Checkers for lesson 08, evaluation (``exercises/08_evaluation.ipynb``): the Fréchet distance,
Hutchinson's divergence estimate, bits/dim of [-1, 1] data at 256 levels, the unbiased KID
estimate and the nearest-neighbour distance ratio used to flag memorised samples."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..distances import frechet_distance, nearest_neighbours
from ..likelihood import nats_to_bits_per_dim
from ._common import F64, PASS, _call, _compare, _gen, _randn, _say, checker


def _spd(d: int, g) -> Tensor:
    a = _randn((d, d), g)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=F64)


def _sqrtm_psd(a: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


@checker("frechet_distance")
def check_frechet_distance(fn) -> bool:
    """``fn(mu1, cov1, mu2, cov2) -> d`` = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})."""
    name = "frechet_distance"
    g = _gen(80)
    for d in (3, 5, 8):
        mu1, mu2, c1, c2 = _randn(d, g), _randn(d, g), _spd(d, g), _spd(d, g)
        want = torch.tensor(frechet_distance(mu1, c1, mu2, c2), dtype=F64)
        mean_term = ((mu1 - mu2) ** 2).sum()
        tr = c1.trace() + c2.trace()
        wrong = {
            "(Σ₁Σ₂)^{1/2} is a matrix square root, not the elementwise √ of the entries of Σ₁Σ₂ "
            "(use eigenvalues: Tr (Σ₁Σ₂)^{1/2} = Σ √λ_i(Σ₁Σ₂))":
                mean_term + tr - 2 * (c1 @ c2).abs().sqrt().trace(),
            "the cross term is −2 Tr (Σ₁Σ₂)^{1/2}; the factor 2 is missing":
                mean_term + tr - _sqrtm_psd(_sqrtm_psd(c1) @ c2 @ _sqrtm_psd(c1)).trace(),
            "the mean term is the squared distance ‖μ₁ − μ₂‖², not ‖μ₁ − μ₂‖":
                mean_term.sqrt() + want - mean_term,
            "the mean term ‖μ₁ − μ₂‖² is missing": want - mean_term,
            "(Σ₁Σ₂)^{1/2} ≠ Σ₁^{1/2} Σ₂^{1/2} unless the covariances commute":
                mean_term + tr - 2 * (_sqrtm_psd(c1) @ _sqrtm_psd(c2)).trace(),
        }
        got = _call(name, fn, mu1.clone(), c1.clone(), mu2.clone(), c2.clone())
        _compare(name, got, want, wrong, what="the distance", ok="", report=False, rtol=1e-6)
    _say(PASS, name, "matches on 3 random pairs of Gaussians (D = 3, 5, 8)")
    return True


def _field(x: Tensor) -> Tensor:
    """A non-linear test field R^D -> R^D acting on each row separately (non-symmetric Jacobian)."""
    return torch.tanh(x.roll(1, dims=-1)) * x + 0.5 * x**2


def _exact_vjp_quadratic(x: Tensor, probes: Tensor) -> Tensor:
    """vᵀ J v per probe and row, [K, B], by autograd."""
    out = []
    for v in probes:
        xr = x.clone().requires_grad_(True)
        (vj,) = torch.autograd.grad(_field(xr), xr, grad_outputs=v)
        out.append((vj * v).sum(-1))
    return torch.stack(out)


@checker("hutchinson_divergence")
def check_hutchinson_divergence(fn) -> bool:
    """``fn(f, x, probes) -> [B]``: (1/K) Σ_k v_kᵀ (∂f/∂x) v_k per row of x [B, D], probes [K, B, D]."""
    name = "hutchinson_divergence"
    g = _gen(81)
    for k in (1, 4):
        x = _randn((6, 5), g)
        probes = (2 * torch.randint(0, 2, (k, 6, 5), generator=g) - 1).to(F64)
        quad = _exact_vjp_quadratic(x, probes)
        want = quad.mean(0)
        wrong = {
            "average over the probes (divide by K), do not sum them": quad.sum(0),
            "vᵀ f(x) is not vᵀ (∂f/∂x) v: differentiate f (a vector–Jacobian product) first":
                (probes * _field(x)).sum(-1).mean(0),
        }
        if k > 1:
            wrong["use every probe, not only the first"] = quad[0]
        wrong["multiply the vector–Jacobian product vᵀJ by v again before summing: vᵀJv, "
              "not Σ_i (vᵀJ)_i"] = torch.stack([_vj_sum(x, v) for v in probes]).mean(0)
        got = _call(name, fn, _field, x.clone(), probes.clone())
        _compare(name, got, want, wrong, what="the estimate", ok="", report=False)
    _say(PASS, name, "matches vᵀJv (autograd) averaged over K = 1 and 4 Rademacher probes")
    return True


def _vj_sum(x: Tensor, v: Tensor) -> Tensor:
    """Σ_i (vᵀJ)_i per row: the vector–Jacobian product summed without the second v."""
    xr = x.clone().requires_grad_(True)
    (vj,) = torch.autograd.grad(_field(xr), xr, grad_outputs=v)
    return vj.sum(-1)


@checker("bits_per_dim")
def check_bits_per_dim(fn) -> bool:
    """``fn(log_px, num_dims) -> bpd``: log p(x) in nats of dequantised data scaled to [-1, 1]
    (bins of width 2/256) to bits per dimension of the 256-level pixels."""
    name = "bits_per_dim"
    g = _gen(82)
    for d in (784, 3072, 2):
        log_px = -d * (0.5 + 2 * torch.rand(5, generator=g, dtype=F64))
        want = nats_to_bits_per_dim(log_px, d)
        wrong = {
            "the bin-width offset is missing: x = (2/256) u − 1 scales densities by (256/2)^D, "
            "which adds log₂(256/2) = 7 bits per dimension": -log_px / (d * math.log(2)),
            "divide by ln 2 to turn nats into bits (−log p / (D ln 2))": -log_px / d + 7,
            "the offset is log₂(256/2) = 7 for data in [-1, 1] (bin width 2/256); 8 = log₂ 256 "
            "belongs to data in [0, 1]": -log_px / (d * math.log(2)) + 8,
            "the offset has the wrong sign: p_u(u) = p_x(x)·(2/256)^D, so −log₂ p_u / D = "
            "−log₂ p_x / D + 7":
                -log_px / (d * math.log(2)) - 7,
            "divide by the number of dimensions D": -log_px / math.log(2) + 7,
        }
        got = _call(name, fn, log_px.clone(), d)
        _compare(name, got, want, wrong, what="bits/dim", ok="", report=False)
    _say(PASS, name, "−log p/(D ln 2) + 7 on 3 batches (D = 784, 3072, 2)")
    return True


def _kernel(a: Tensor, b: Tensor) -> Tensor:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


@checker("kid_mmd")
def check_kid_mmd(fn) -> bool:
    """``fn(real [m, F], fake [m, F]) -> MMD²_u`` with k(a, b) = (aᵀb/F + 1)³:
    1/(m(m−1)) Σ_{i≠j} [k(r_i, r_j) + k(f_i, f_j)] − 2/m² Σ_{i,j} k(r_i, f_j)."""
    name = "kid_mmd"
    g = _gen(83)
    for m, f in ((20, 6), (35, 4)):
        r, q = _randn((m, f), g), 0.5 + 1.2 * _randn((m, f), g)
        krr, kff, krf = _kernel(r, r), _kernel(q, q), _kernel(r, q)
        off = (krr.sum() - krr.diag().sum() + kff.sum() - kff.diag().sum()) / (m * (m - 1))
        want = off - 2 * krf.mean()
        wrong = {
            "biased: the diagonal k(x_i, x_i) must be left out of the within-set sums "
            "(divide by m(m − 1), not m²)": (krr.sum() + kff.sum()) / m**2 - 2 * krf.mean(),
            "the diagonal is left out, but the within-set sums must then be divided by m(m − 1), "
            "not m²": (krr.sum() - krr.diag().sum() + kff.sum() - kff.diag().sum()) / m**2
            - 2 * krf.mean(),
            "the cross term has the factor 2: −2/m² Σ k(r_i, f_j)": off - krf.mean(),
            "the kernel divides aᵀb by the feature width F: k = (aᵀb/F + 1)³":
                ((r @ r.T + 1) ** 3 - torch.diag(torch.diag((r @ r.T + 1) ** 3))).sum()
                / (m * (m - 1)) + ((q @ q.T + 1) ** 3
                                   - torch.diag(torch.diag((q @ q.T + 1) ** 3))).sum()
                / (m * (m - 1)) - 2 * ((r @ q.T + 1) ** 3).mean(),
        }
        got = _call(name, fn, r.clone(), q.clone())
        _compare(name, got, want, wrong, what="MMD²", ok="", report=False)
    _say(PASS, name, "the unbiased MMD² matches on 2 random feature sets")
    return True


@checker("nn_distance_ratio")
def check_nn_distance_ratio(fn) -> bool:
    """``fn(queries [N, D], train [M, D]) -> [N]``: d₁/d₂, the Euclidean distance to the nearest
    training row over the distance to the second nearest (≪ 1: a near copy of one digit)."""
    name = "nn_distance_ratio"
    g = _gen(84)
    for n, m, d in ((8, 30, 5), (12, 50, 10)):
        train = _randn((m, d), g)
        queries = _randn((n, d), g)
        queries[: n // 2] = train[: n // 2] + 0.05 * _randn((n // 2, d), g)  # near copies
        dist, _ = nearest_neighbours(queries, train, k=3)
        want = dist[:, 0] / dist[:, 1]
        wrong = {
            "the ratio is inverted: d₁/d₂ ≤ 1 (nearest over second nearest)": dist[:, 1] / dist[:, 0],
            "use Euclidean distances, not squared ones (your ratio is (d₁/d₂)²)":
                (dist[:, 0] / dist[:, 1]) ** 2,
            "d₂ is the second nearest neighbour, not the third": dist[:, 0] / dist[:, 2],
        }
        got = _call(name, fn, queries.clone(), train.clone())
        _compare(name, got, want, wrong, what="the ratio", ok="", report=False)
    _say(PASS, name, "d₁/d₂ matches on 2 query sets (half of them near copies)")
    return True
