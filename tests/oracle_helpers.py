"""Shared pieces of the sampler tests on 2-D exact oracles (imported by the test modules;
pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch

F64 = torch.float64


def prior_2d(sde, n: int, seed: int = 0) -> torch.Tensor:
    """n float64 draws of the 2-D prior of ``sde`` from a generator seeded with ``seed``."""
    return sde.prior_sample((n, 2), torch.Generator().manual_seed(seed), dtype=F64)


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square over samples of the Euclidean distance ‖a − b‖."""
    return float(((a - b) ** 2).sum(-1).mean().sqrt())


def tiny_conditional_model():
    """A 3-class MLP GenerativeModel on VP with fixed random weights (for input checks)."""
    from diffusion_lab.model import GenerativeModel
    from diffusion_lab.nets import MLP

    g = torch.Generator().manual_seed(0)
    net = MLP(hidden=8, layers=1, num_classes=3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return GenerativeModel(net, "vp")
