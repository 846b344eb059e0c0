r"""Evaluation studies of lesson 08 built on :mod:`.metrics` and :mod:`.distances`.

* :func:`fid_bias_curve` — the Fréchet distance between two *disjoint* random subsets of the
  same real set, n each: the population value is 0, so everything measured is the estimator's
  bias, which decays like b/n (E Tr Σ̂ terms; Chong & Forsyth 2020).
* :func:`memorisation` — distance of each generated image to its nearest training image,
  against the same distance for held-out real images (the null: what a fresh sample of the
  data distribution looks like), and the ratio d₁/d₂ to the second nearest training image.
* :func:`class_histogram` — the bundled classifier's class frequencies of a sample
  (mode coverage: a model that drops a digit shows a hole).
* :func:`recognisability` — the fraction of a sample the bundled classifier is confident on
  (max_c p(c | x) > threshold), how many classes those cover, and agreement with the classes
  that were asked for (the target of the CPU training recipe, :mod:`.recipes`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, check_int
from .distances import frechet_distance, gaussian_stats, nearest_neighbours

__all__ = ["fid_bias_curve", "fit_inverse_n", "memorisation", "class_histogram",
           "recognisability"]


def fid_bias_curve(features: Tensor, ns, repeats: int = 5, *,
                   generator: torch.Generator | None = None) -> dict[int, Tensor]:
    """``{n: FDs [repeats]}``: Fréchet distance between two disjoint random n-subsets of the
    rows of ``features`` [N, F] (needs 2n ≤ N), computed by :func:`frechet_distance`."""
    check_finite(features, "features")
    repeats = check_int(repeats, "repeats")
    out = {}
    for n in ns:
        n = check_int(n, "n", minimum=2)
        if 2 * n > features.shape[0]:
            raise ValueError(f"n = {n}: two disjoint subsets need 2n <= N = {features.shape[0]}")
        vals = []
        for _ in range(repeats):
            perm = torch.randperm(features.shape[0], generator=generator)
            a, b = features[perm[:n]], features[perm[n:2 * n]]
            vals.append(frechet_distance(*gaussian_stats(a), *gaussian_stats(b)))
        out[n] = torch.tensor(vals, dtype=torch.float64)
    return out


def fit_inverse_n(ns, values, sds=None) -> tuple[float, float]:
    """Least-squares (a, b) of values ≈ a + b/n; with ``sds`` (the standard error of each value)
    weighted by 1/sd², so noisy small-n points do not dominate."""
    n = torch.as_tensor(ns, dtype=torch.float64)
    v = torch.as_tensor(values, dtype=torch.float64)
    w = torch.ones_like(n) if sds is None else 1.0 / torch.as_tensor(sds, dtype=torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError("sds must be positive and finite")
    design = torch.stack([torch.ones_like(n), 1.0 / n], dim=1) * w[:, None]
    sol = torch.linalg.lstsq(design, (v * w)[:, None]).solution[:, 0]
    return float(sol[0]), float(sol[1])


@torch.no_grad()
def memorisation(generated: Tensor, train: Tensor, heldout: Tensor, *, quantile: float = 0.01,
                 ratio_threshold: float = 1 / 3) -> dict:
    """Nearest-training-neighbour statistics of ``generated`` vs ``heldout`` (both [N, ...],
    compared with ``train`` [M, ...]; flattened, Euclidean).

    Returns d1 / d2 (nearest and second-nearest distances) and the nearest index for both sets,
    ``threshold`` = the ``quantile`` of the held-out d1, and the fractions of each set with
    d1 below it and with d1/d2 below ``ratio_threshold``."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    flat = [v.reshape(v.shape[0], -1) for v in (generated, train, heldout)]
    res = {}
    for key, q in (("generated", flat[0]), ("heldout", flat[2])):
        d, idx = nearest_neighbours(q, flat[1], k=2)
        res[key] = {"d1": d[:, 0], "d2": d[:, 1], "index": idx[:, 0], "ratio": d[:, 0] / d[:, 1]}
    thr = float(torch.quantile(res["heldout"]["d1"], quantile))
    res["threshold"] = thr
    for key in ("generated", "heldout"):
        r = res[key]
        r["frac_below_threshold"] = float((r["d1"] < thr).double().mean())
        r["frac_ratio_below"] = float((r["ratio"] < ratio_threshold).double().mean())
    return res


@torch.no_grad()
def class_histogram(images: Tensor, classifier=None, *, batch_size: int = 500) -> Tensor:
    """Fractions ``[num_classes]`` of ``images`` [N, 1, 28, 28] per predicted class of the bundled
    MNIST classifier (or ``classifier``, an ``nn.Module`` returning logits)."""
    from .classifier import load_classifier

    clf = load_classifier() if classifier is None else classifier
    preds = torch.cat([clf(images[i:i + batch_size]).argmax(1)
                       for i in range(0, images.shape[0], batch_size)])
    counts = torch.bincount(preds, minlength=getattr(clf, "num_classes", 10))
    return counts.double() / images.shape[0]


@torch.no_grad()
def recognisability(images: Tensor, requested: Tensor | None = None, classifier=None, *,
                    threshold: float = 0.9, batch_size: int = 500) -> dict:
    """How recognisable generated digits are to the bundled MNIST classifier (or
    ``classifier``, logits out), with p = softmax(logits):

    * ``confident`` — fraction of images with max_c p(c | x) > ``threshold``;
    * ``classes`` — number of distinct predicted classes among the confident images;
    * ``agree`` — fraction whose predicted class equals ``requested`` [N], and
      ``confident_agree`` — fraction both confident and of the requested class (None without
      ``requested``): confidence alone is weak evidence, an untrained network's blobs can
      be read confidently as one or two classes;
    * ``threshold`` and ``n`` — as used.
    """
    from .classifier import load_classifier

    check_finite(images, "images")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    n = images.shape[0]
    if requested is not None and (not isinstance(requested, Tensor) or requested.shape != (n,)):
        got = list(requested.shape) if isinstance(requested, Tensor) else type(requested).__name__
        raise ValueError(f"requested must be a tensor of shape [{n}] (one class per image), "
                         f"got {got}")
    clf = load_classifier() if classifier is None else classifier
    probs = torch.cat([clf(images[i:i + batch_size]).softmax(-1)
                       for i in range(0, n, batch_size)])
    p_max, pred = probs.max(dim=-1)
    confident = p_max > threshold
    agree = both = None
    if requested is not None:
        match = pred == requested.to(pred.device)
        agree, both = float(match.double().mean()), float((match & confident).double().mean())
    return {"confident": float(confident.double().mean()),
            "classes": len(set(pred[confident].tolist())), "agree": agree,
            "confident_agree": both, "threshold": float(threshold), "n": n}
