"""Metrics against independent computations, closed forms and sanity checks.

FID / KID go through torchmetrics; here they are compared with scipy / numpy
re-implementations on the same features. The image-level sanity checks use the
bundled MNIST classifier (data/checkpoints/mnist_classifier).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from diffusion_lab.classifier import DEFAULT_CLASSIFIER_PATH
from diffusion_lab.metrics import (
    PrecomputedFeatures,
    SmallSampleWarning,
    energy_distance,
    extract_features,
    fid,
    inception_score,
    kid,
    precision_recall,
    sliced_wasserstein,
)

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def correlated_gaussian(n, d, seed, shift=0.0, scale=1.0):
    g = gen(seed)
    mix = torch.randn(d, d, generator=gen(1000), dtype=F64) / math.sqrt(d)
    z = torch.randn(n, d, generator=g, dtype=F64)
    return shift + scale * z @ (torch.eye(d, dtype=F64) + mix)


def frechet_numpy(f1, f2):
    """Independent FID: scipy.linalg.sqrtm of Σ1 Σ2."""
    f1, f2 = f1.numpy(), f2.numpy()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def quiet_fid(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        return fid(*args, **kwargs)


# ------------------------------------------------------------------ FID / KID on given features

def test_fid_matches_scipy_sqrtm():
    d = 16
    real = correlated_gaussian(3000, d, seed=1)
    fake = correlated_gaussian(2500, d, seed=2, shift=0.3, scale=1.4)
    ours = fid(real, fake, feature_net=PrecomputedFeatures(d))
    ref = frechet_numpy(real, fake)
    assert ref > 1.0
    assert ours == pytest.approx(ref, rel=1e-8)


def test_fid_of_identical_sets_is_zero():
    d = 16
    f = correlated_gaussian(2000, d, seed=3)
    trace = torch.cov(f.T).trace().item()
    assert abs(fid(f, f.clone(), feature_net=PrecomputedFeatures(d))) < 1e-9 * trace


def test_fid_small_sample_guards():
    d = 32
    f = correlated_gaussian(500, d, seed=4)
    with pytest.raises(ValueError, match="more samples than feature dimensions"):
        fid(f[:d], f, feature_net=PrecomputedFeatures(d))
    with pytest.warns(SmallSampleWarning, match="biased upwards"):
        fid(f, f, feature_net=PrecomputedFeatures(d))


def test_fid_requires_num_features():
    f = correlated_gaussian(300, 4, seed=5)
    with pytest.raises(TypeError, match="num_features"):
        quiet_fid(f, f, feature_net=torch.nn.Identity())


def mmd2_unbiased_numpy(x, y):
    """Independent unbiased MMD² with k(a, b) = (aᵀb / d + 1)³."""
    x, y = x.numpy(), y.numpy()
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    off = ~np.eye(m, dtype=bool)
    return kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean()


def test_kid_matches_independent_mmd():
    d = 8
    real = correlated_gaussian(300, d, seed=6)
    fake = correlated_gaussian(300, d, seed=7, shift=0.2)
    # subset_size = n: every subset is a permutation of all samples, and MMD²_u is
    # permutation invariant, so each subset gives exactly the full-sample statistic.
    mean, std = kid(real, fake, subset_size=300, subsets=3, feature_net=PrecomputedFeatures(d),
                    generator=gen(0))
    ref = mmd2_unbiased_numpy(real, fake)
    assert ref > 0.01
    assert mean == pytest.approx(ref, rel=1e-9)
    assert std < 1e-9 * ref


def test_kid_is_unbiased_for_equal_distributions():
    """E[MMD²_u] = 0 when both samples come from one law: the mean of R independent
    replicates must lie within 5 standard errors of 0."""
    d, R = 4, 60
    vals = []
    for r in range(R):
        a = correlated_gaussian(100, d, seed=100 + r)
        b = correlated_gaussian(100, d, seed=500 + r)
        vals.append(kid(a, b, subset_size=100, subsets=1, feature_net=PrecomputedFeatures(d))[0])
    vals = torch.tensor(vals, dtype=F64)
    assert abs(vals.mean()) < 5 * vals.std() / math.sqrt(R)


def test_kid_generator_reproducible_and_global_rng_untouched():
    d = 8
    real = correlated_gaussian(400, d, seed=8)
    fake = correlated_gaussian(400, d, seed=9, shift=0.1)
    net = PrecomputedFeatures(d)
    state = torch.random.get_rng_state()
    a = kid(real, fake, subset_size=50, subsets=20, feature_net=net, generator=gen(3))
    b = kid(real, fake, subset_size=50, subsets=20, feature_net=net, generator=gen(3))
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == b
    with pytest.raises(ValueError, match="subset_size = 401 exceeds"):
        kid(real, fake, subset_size=401, feature_net=net)


# ------------------------------------------------------------------ precision / recall

def test_precision_recall_gaussians():
    d, n = 4, 2000
    real = torch.randn(n, d, generator=gen(10), dtype=F64)
    same = torch.randn(n, d, generator=gen(11), dtype=F64)
    far = torch.randn(n, d, generator=gen(12), dtype=F64) + 50.0
    p, r = precision_recall(real, same, k=3)
    assert p > 0.85 and r > 0.85
    assert precision_recall(real, far, k=3) == (0.0, 0.0)


def test_precision_recall_mode_dropping_lowers_recall_only():
    d, n = 2, 2000
    offsets = torch.zeros(n, d, dtype=F64)
    offsets[: n // 2, 0], offsets[n // 2:, 0] = -10.0, 10.0
    real = torch.randn(n, d, generator=gen(13), dtype=F64) + offsets
    one_mode = torch.randn(n, d, generator=gen(14), dtype=F64)
    one_mode[:, 0] += 10.0
    p, r = precision_recall(real, one_mode, k=3)
    assert p > 0.85                 # every generated point is realistic
    assert abs(r - 0.5) < 0.05      # half of the real data (one mode) is never produced


def test_precision_recall_guards():
    x = torch.randn(50, 2, generator=gen(15), dtype=F64)
    with pytest.raises(ValueError, match="needs n > k"):
        precision_recall(x[:3], x, k=3)
    with pytest.warns(SmallSampleWarning):
        precision_recall(x, x, k=3)


# ------------------------------------------------------------------ energy distance / sliced W

def test_energy_distance_v_statistic_matches_scipy_1d():
    a = torch.randn(300, 1, generator=gen(20), dtype=F64)
    b = 0.5 + 2 * torch.randn(200, 1, generator=gen(21), dtype=F64)
    ours = energy_distance(a, b, unbiased=False)
    ref = scipy.stats.energy_distance(a[:, 0].numpy(), b[:, 0].numpy()) ** 2
    assert ours == pytest.approx(ref, rel=1e-10)


def test_energy_distance_2d_gaussians_closed_form():
    """X ~ N(0, s²I₂), Y ~ N(Δ, s²I₂): X − Y ~ N(Δ, 2s²I₂), so E‖X−Y‖ is a Rice mean and
    E‖X−X′‖ a Rayleigh mean: D² = 2 Rice(|Δ|, √2 s) − 2 Rayleigh(√2 s)."""
    s, delta = 1.0, torch.tensor([1.0, 0.5], dtype=F64)
    tau = math.sqrt(2) * s
    nu = delta.norm().item()
    exact = 2 * scipy.stats.rice(b=nu / tau, scale=tau).mean() - 2 * tau * math.sqrt(math.pi / 2)
    R, n = 12, 800
    vals = torch.tensor([
        energy_distance(s * torch.randn(n, 2, generator=gen(30 + r), dtype=F64),
                        delta + s * torch.randn(n, 2, generator=gen(60 + r), dtype=F64))
        for r in range(R)
    ])
    # unbiased U-statistic: the replicate mean is within 5 standard errors of the truth
    assert abs(vals.mean().item() - exact) < 5 * vals.std().item() / math.sqrt(R)
    assert exact > 10 * vals.std().item() / math.sqrt(R)   # the test can tell D² from 0


def test_wasserstein_1d_matches_scipy_unequal_sizes():
    a = torch.randn(300, 1, generator=gen(40), dtype=F64)
    b = 1.0 + 0.5 * torch.randn(170, 1, generator=gen(41), dtype=F64)
    ours = sliced_wasserstein(a, b, n_projections=1, generator=gen(0), p=1)  # D = 1: θ = ±1
    ref = scipy.stats.wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy())
    assert ours == pytest.approx(ref, rel=1e-10)


def test_w2_between_1d_gaussians_closed_form():
    """W₂²(N(μ₁, s₁²), N(μ₂, s₂²)) = (μ₁ − μ₂)² + (s₁ − s₂)² = 1 + 1 here."""
    R, n = 10, 4000
    vals = torch.tensor([
        sliced_wasserstein(torch.randn(n, 1, generator=gen(50 + r), dtype=F64),
                           1.0 + 2.0 * torch.randn(n, 1, generator=gen(80 + r), dtype=F64),
                           n_projections=1, generator=gen(0)) ** 2
        for r in range(R)
    ])
    # empirical W₂² is biased upwards by O(log n / n) (≈ 0.01 here), far below the CLT band
    assert abs(vals.mean().item() - 2.0) < 5 * vals.std().item() / math.sqrt(R) + 0.01


def test_sliced_w2_isotropic_gaussians_closed_form():
    """Projections of N(μ₁, s₁²I) and N(μ₂, s₂²I) on θ are 1-D Gaussians, so
    SW₂² = E_θ(θᵀΔ)² + (s₁ − s₂)² = |Δ|²/D + (s₁ − s₂)²."""
    n, d = 3000, 2
    delta = torch.tensor([2.0, 0.0], dtype=F64)
    exact = delta.square().sum().item() / d + (1.0 - 1.5) ** 2
    R = 8
    vals = torch.tensor([
        sliced_wasserstein(torch.randn(n, d, generator=gen(90 + r), dtype=F64),
                           delta + 1.5 * torch.randn(n, d, generator=gen(120 + r), dtype=F64),
                           n_projections=200, generator=gen(r)) ** 2
        for r in range(R)
    ])
    assert abs(vals.mean().item() - exact) < 5 * vals.std().item() / math.sqrt(R) + 0.01
    a = torch.randn(100, d, generator=gen(1), dtype=F64)
    state = torch.random.get_rng_state()
    assert sliced_wasserstein(a, a + 1, 16, gen(7)) == sliced_wasserstein(a, a + 1, 16, gen(7))
    assert torch.equal(state, torch.random.get_rng_state())


# ------------------------------------------------------------------ with the bundled classifier

needs_classifier = pytest.mark.skipif(
    not (DEFAULT_CLASSIFIER_PATH / "model.safetensors").is_file(),
    reason=f"bundled classifier missing: run benchmarks/train_classifier.py "
           f"(expected {DEFAULT_CLASSIFIER_PATH})",
)


@pytest.fixture(scope="module")
def mnist():
    from diffusion_lab.classifier import classifier_data

    return classifier_data("train"), classifier_data("test")


@needs_classifier
def test_fid_sanity_on_mnist(mnist):
    """FID(train, held-out) is small, FID(real, noise) large, and FID grows monotonically as
    the held-out digits are mixed with uniform noise: x_s = (1 − s) x + s u, u ~ U[-1, 1]."""
    (x_train, _), (x_test, _) = mnist
    x_ref = x_train[:1500]                      # n > F = 128; a subset keeps the test fast
    real_vs_real = quiet_fid(x_ref, x_test)    # the image path, end to end
    f_ref, f_test = extract_features(x_ref), extract_features(x_test)
    net = PrecomputedFeatures(f_ref.shape[1])
    assert real_vs_real == pytest.approx(quiet_fid(f_ref, f_test, feature_net=net), rel=1e-6)
    noise = torch.rand(x_test.shape, generator=gen(0)) * 2 - 1
    levels = (0.0, 0.1, 0.2, 0.4, 0.7, 1.0)
    f_noised = extract_features(torch.cat([(1 - s) * x_test + s * noise for s in levels]))
    fids = [quiet_fid(f_ref, f, feature_net=net) for f in f_noised.chunk(len(levels))]
    assert fids[0] == pytest.approx(real_vs_real, rel=1e-6)
    assert fids[-1] > 20 * real_vs_real, fids   # real vs pure noise
    assert all(b > a for a, b in zip(fids[:-1], fids[1:], strict=True)), fids


@needs_classifier
def test_inception_score_on_mnist(mnist):
    """IS ≤ #classes = 10, reached when p(y|x) is one-hot and p(y) uniform (real digits with
    a good classifier); a single class has p(y) = p(y|x), so IS ≈ 1."""
    (x_train, y_train), (x_test, _) = mnist
    is_mean, _ = inception_score(x_test, splits=2, generator=gen(0))
    assert 9.0 < is_mean <= 10.0 + 1e-9
    one_class = x_train[y_train == 3]
    with pytest.warns(SmallSampleWarning):   # 450 digits / 3 splits < 20 per class
        is_one, _ = inception_score(one_class, splits=3, generator=gen(0))
    assert 1.0 <= is_one < 1.2


@needs_classifier
def test_image_range_is_checked(mnist):
    _, (x_test, _) = mnist
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        quiet_fid(x_test, x_test * 1.5)


def test_inception_option_passes_through_to_torchmetrics():
    """feature_net="inception" is torchmetrics' own Inception-v3; without torch-fidelity (or its
    weights, offline) torchmetrics' error must reach the user, not a substitute number."""
    pytest.importorskip("torchmetrics")
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError:
        x = torch.rand(4, 1, 28, 28, generator=gen(0)) * 2 - 1
        with pytest.raises(ModuleNotFoundError, match="(?i)torch-fidelity"):
            kid(x, x, subset_size=2, subsets=1, feature_net="inception")
    else:
        pytest.skip("torch-fidelity is installed; the pass-through needs its weights (network)")
    with pytest.raises(ValueError, match="more samples than feature dimensions"):
        fid(x, x, feature_net="inception")   # n = 4 <= 2048 Inception features


def test_inception_input_keeps_every_grey_level():
    """The images handed to Inception are uint8 with k = 255 (x + 1)/2 exactly: every one of the
    256 levels of a quantised image survives (truncating (x*255).byte() loses 95 of them)."""
    from diffusion_lab.metrics import to_uint8_rgb

    k = torch.arange(256, dtype=torch.float32)
    x = (k / 255.0 * 2.0 - 1.0).reshape(1, 1, 16, 16)
    out = to_uint8_rgb(x)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 16, 16)
    assert torch.equal(out[0, 0].flatten().long(), k.long())
    assert torch.equal(out[0, 1], out[0, 0]) and torch.equal(out[0, 2], out[0, 0])
    truncated = (((x + 1) / 2) * 255).byte().flatten().long()
    assert int((truncated != k.long()).sum()) > 0  # the bug this guards against is real
