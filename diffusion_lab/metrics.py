r"""Sample-quality metrics: FID, KID, IS (through torchmetrics) in the feature space
of a classifier; the sample-set distances are re-exported from :mod:`.distances`.

Feature space. By default images ``[N, 1, 28, 28]`` in [-1, 1] are embedded by
the bundled MNIST classifier (:mod:`diffusion_lab.classifier`, φ(x) ∈ R^128);
``feature_net="inception"`` hands the images to torchmetrics' standard
Inception-v3 (needs ``torch-fidelity`` and its weights; torchmetrics' own error
is raised when they are missing); any ``nn.Module`` with an integer
``num_features`` attribute mapping a batch to ``[B, num_features]`` works too
(:class:`PrecomputedFeatures` lets you pass feature matrices directly).

* FID  = ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^{1/2}). Biased upwards by
  O(1/n): only compare FIDs computed with the same n and feature net.
* KID  = unbiased MMD² with the kernel k(a, b) = (aᵀb / F + 1)³, averaged over
  random subsets of ``subset_size`` (Bińkowski et al. 2018).
* IS   = exp E_x KL(p(y|x) ‖ p(y)), computed in ``splits`` chunks; 1 ≤ IS ≤ #classes.

precision/recall, energy distance and sliced Wasserstein live in
:mod:`diffusion_lab.distances` and are re-exported here.

Guards: a statistic refuses (ValueError) sample sizes where it is undefined and
warns (``SmallSampleWarning``) where it is defined but strongly biased.
torchmetrics draws its subset permutations from the global RNG; here they are
drawn inside ``torch.random.fork_rng`` seeded from ``generator``, so the global
RNG is left untouched and the same generator seed gives the same value.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor, nn

from ._checks import check_finite, check_int
from .distances import SmallSampleWarning, energy_distance, precision_recall, sliced_wasserstein

__all__ = [
    "ClassifierFeatures",
    "ClassifierLogits",
    "PrecomputedFeatures",
    "SmallSampleWarning",
    "energy_distance",
    "extract_features",
    "fid",
    "inception_score",
    "kid",
    "precision_recall",
    "sliced_wasserstein",
]

FID_RECOMMENDED_N = 2000


class ClassifierFeatures(nn.Module):
    """φ(x) of a classifier with a ``features`` method, as float64, for torchmetrics."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        if not hasattr(classifier, "features") or not hasattr(classifier, "feature_dim"):
            raise TypeError(
                "classifier must have features(x) and feature_dim (e.g. MNISTClassifier), "
                f"got {type(classifier).__name__}"
            )
        self.classifier = classifier.eval()
        self.num_features = int(classifier.feature_dim)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x.to(next(self.classifier.parameters()).dtype)).double()


class ClassifierLogits(nn.Module):
    """Logits of a classifier, as float64: the input to the Inception Score."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x.to(next(self.classifier.parameters()).dtype)).double()


class PrecomputedFeatures(nn.Module):
    """Identity "feature network" for ``[N, num_features]`` matrices already in feature space."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = check_int(num_features, "num_features")

    def forward(self, f: Tensor) -> Tensor:
        if f.dim() != 2 or f.shape[1] != self.num_features:
            raise ValueError(
                f"features must have shape [N, {self.num_features}], got {list(f.shape)}"
            )
        return f.double()


@functools.lru_cache(maxsize=2)
def _bundled_classifier(path: str | None):
    from .classifier import DEFAULT_CLASSIFIER_PATH, load_classifier

    return load_classifier(path or DEFAULT_CLASSIFIER_PATH)


def _check_images(x, name: str) -> Tensor:
    check_finite(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must be images [N, C, H, W], got shape {list(x.shape)}")
    lo, hi = x.min().item(), x.max().item()
    if lo < -1.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [-1, 1] (the data range), got values in [{lo:.4g}, {hi:.4g}]; "
            "clip generated samples explicitly (x.clamp(-1, 1)) if that is what you intend"
        )
    return x


def to_uint8_rgb(x: Tensor) -> Tensor:
    """Images in [-1, 1] → uint8 RGB in {0, …, 255}: k = round(255 (x + 1)/2), grey repeated ×3."""
    x = _check_images(x, "images")
    k = torch.round((x.double() + 1.0) * 127.5).to(torch.uint8)
    return k.expand(-1, 3, -1, -1) if k.shape[1] == 1 else k


def _resolve(feature_net, logits: bool = False):
    """Return (module or torchmetrics feature spec, input transform, normalize flag)."""
    if feature_net == "inception":
        # torchmetrics' Inception-v3 takes RGB uint8 (normalize=False). Its normalize=True path
        # truncates (x * 255).byte(), which maps a level k/255 stored as a float just below it
        # to k − 1; rounding here keeps every one of the 256 levels.
        return ("logits_unbiased" if logits else 2048), to_uint8_rgb, False
    if feature_net is None or isinstance(feature_net, str):
        clf = _bundled_classifier(feature_net)
        net = ClassifierLogits(clf) if logits else ClassifierFeatures(clf)
        return net, lambda x: _check_images(x, "images"), False
    if isinstance(feature_net, nn.Module):
        if not logits and not isinstance(getattr(feature_net, "num_features", None), int):
            raise TypeError(
                "a custom feature_net needs an int attribute num_features (its output width); "
                f"{type(feature_net).__name__} has none"
            )
        if isinstance(feature_net, PrecomputedFeatures):
            return feature_net, lambda f: check_finite(f, "features"), False
        return feature_net, lambda x: check_finite(x, "images"), False
    raise TypeError(
        "feature_net must be None (bundled MNIST classifier), a checkpoint directory, "
        f"'inception' or an nn.Module, got {type(feature_net).__name__}"
    )


def _feed(metric, x: Tensor, transform, batch_size: int, **kw) -> None:
    for i in range(0, x.shape[0], batch_size):
        metric.update(transform(x[i:i + batch_size]), **kw)


def _seed_from(generator: torch.Generator | None) -> int | None:
    if generator is None:
        return None
    return int(torch.randint(0, 2**62, (), generator=generator))


def _compute_seeded(metric, generator: torch.Generator | None) -> tuple[float, float]:
    """``metric.compute()`` -> (mean, std). torchmetrics shuffles with the global RNG, so
    with a ``generator`` it runs in a forked RNG seeded from it (the caller's RNG untouched)."""
    seed = _seed_from(generator)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def _n_features(net) -> int:
    return 2048 if isinstance(net, int) else net.num_features


def fid(real: Tensor, fake: Tensor, feature_net=None, *, batch_size: int = 500) -> float:
    """Fréchet distance between Gaussians fitted to the features of ``real`` and ``fake``.

    FID = ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^{1/2}), computed by
    ``torchmetrics.image.fid.FrechetInceptionDistance`` (float64 statistics).
    Raises if either set has n ≤ F samples (singular covariance); warns below
    n = 2,000 (the estimator's O(1/n) upward bias is then large).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    net, transform, normalize = _resolve(feature_net)
    n_feat = _n_features(net)
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.shape[0] <= n_feat:
            raise ValueError(
                f"FID needs more samples than feature dimensions (F = {n_feat}) for a full-rank "
                f"covariance; {name} has n = {x.shape[0]}. Use n >= {FID_RECOMMENDED_N}."
            )
        if x.shape[0] < FID_RECOMMENDED_N:
            warnings.warn(
                f"FID from {name} n = {x.shape[0]} < {FID_RECOMMENDED_N} samples is biased upwards "
                "(the bias shrinks like 1/n); compare only FIDs computed with the same n",
                SmallSampleWarning,
                stacklevel=2,
            )
    metric = FrechetInceptionDistance(feature=net, normalize=normalize).to(real.device)
    _feed(metric, real, transform, batch_size, real=True)
    _feed(metric, fake, transform, batch_size, real=False)
    return float(metric.compute())


def kid(
    real: Tensor,
    fake: Tensor,
    subset_size: int = 1000,
    subsets: int = 100,
    feature_net=None,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std over ``subsets`` of the unbiased MMD².

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} [k(r_i, r_j) + k(f_i, f_j)] − 2/m² Σ_{i,j} k(r_i, f_j),
    k(a, b) = (aᵀb / F + 1)³, m = ``subset_size`` (torchmetrics'
    ``KernelInceptionDistance``). Unbiased, so it may be slightly negative.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    check_int(subset_size, "subset_size", minimum=2)
    check_int(subsets, "subsets")
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if subset_size > x.shape[0]:
            raise ValueError(
                f"subset_size = {subset_size} exceeds the number of {name} samples n = {x.shape[0]}"
            )
    net, transform, normalize = _resolve(feature_net)
    with warnings.catch_warnings():  # torchmetrics' note that it keeps features in memory
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save")
        metric = KernelInceptionDistance(
            feature=net, subsets=subsets, subset_size=subset_size, normalize=normalize
        ).to(real.device)
    _feed(metric, real, transform, batch_size, real=True)
    _feed(metric, fake, transform, batch_size, real=False)
    return _compute_seeded(metric, generator)


def inception_score(
    fake: Tensor,
    classifier=None,
    splits: int = 10,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> tuple[float, float]:
    """IS = exp( E_x KL(p(y|x) ‖ p(y)) ), mean and std over ``splits`` chunks.

    p(y|x) is the softmax of the classifier's logits (bundled MNIST classifier by
    default, ``"inception"`` for torchmetrics' Inception-v3), p(y) the chunk mean.
    Warns when a chunk has fewer than 20 samples per class: estimating p(y) from n
    samples biases log IS by about (K − 1)/(2n).
    """
    from torchmetrics.image.inception import InceptionScore

    check_int(splits, "splits", minimum=2)
    if not isinstance(fake, Tensor):
        raise TypeError(f"fake must be a torch.Tensor, got {type(fake).__name__}")
    if fake.shape[0] < 2 * splits:
        raise ValueError(f"IS needs at least 2 samples per split; got n = {fake.shape[0]}, "
                         f"splits = {splits}")
    net, transform, normalize = _resolve(classifier, logits=True)
    n_classes = 1008 if not isinstance(net, nn.Module) else getattr(
        getattr(net, "classifier", net), "num_classes", None)
    per_split = fake.shape[0] // splits
    if n_classes is not None and per_split < 20 * n_classes:
        warnings.warn(
            f"IS with {per_split} samples per split for {n_classes} classes: p(y) is estimated "
            f"from too few samples (log-IS bias ≈ {(n_classes - 1) / (2 * per_split):.3f}); "
            f"use >= {20 * n_classes} per split",
            SmallSampleWarning,
            stacklevel=2,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Metric `InceptionScore` will save")
        metric = InceptionScore(feature=net, splits=splits, normalize=normalize).to(fake.device)
    _feed(metric, fake, transform, batch_size)
    return _compute_seeded(metric, generator)


@torch.no_grad()
def extract_features(images: Tensor, feature_net=None, *, batch_size: int = 500) -> Tensor:
    """Features ``[N, F]`` (float64) of images in [-1, 1], e.g. for :func:`precision_recall`."""
    net, transform, _ = _resolve(feature_net)
    if not isinstance(net, nn.Module):
        raise ValueError("extract_features needs a module feature net, not torchmetrics' Inception")
    return torch.cat([net(transform(images[i:i + batch_size]))
                      for i in range(0, images.shape[0], batch_size)])

