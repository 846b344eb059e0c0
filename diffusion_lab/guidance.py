r"""Classifier-free guidance (Ho & Salimans 2022): one network trained with and without the
class (label dropout to the null class ∅), mixed at sampling time as

    ε̃(x, t, y) = ε(x, t, ∅) + w [ε(x, t, y) − ε(x, t, ∅)],

so **w = 1 is the conditional model and w = 0 the unconditional one**; w > 1 trades diversity
for fidelity to the class (lesson 07 measures the trade-off). Both halves are computed in one
batched call of 2B rows. :func:`guided_eps_model` fixes y (what ``GenerativeModel.generate``
uses); :func:`classifier_free_guidance` takes y at each call, ``y=None`` meaning ∅.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["guided_eps_model", "classifier_free_guidance"]


def guided_eps_model(net: nn.Module, y: Tensor, guidance: float, null_class: int):
    """ε̃(x, t) = ε(x, t, ∅) + w (ε(x, t, y) − ε(x, t, ∅)) in one forward pass of 2B rows."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        both = net(torch.cat([x, x]), torch.cat([t, t]),
                   torch.cat([y, torch.full_like(y, null_class)]))
        eps_c, eps_u = both[:b], both[b:]
        return eps_u + guidance * (eps_c - eps_u)

    return eps


def classifier_free_guidance(eps_model, guidance: float, null_label: int):
    """ε̃(x, t, y) = ε(x, t, ∅) + w [ε(x, t, y) − ε(x, t, ∅)], w = ``guidance``, one batched
    call of 2B rows (:func:`guided_eps_model`). **w = 1 is the
    conditional model, w = 0 the unconditional one**; y = None means ∅ (unconditional)."""
    w = float(guidance)
    if not math.isfinite(w):
        raise ValueError(f"guidance must be finite, got {guidance!r}")

    def eps(x: Tensor, t: Tensor, y=None) -> Tensor:
        if y is None:
            return eps_model(x, t, torch.full((x.shape[0],), null_label, device=x.device))
        y = torch.as_tensor(y, dtype=torch.long, device=x.device).reshape(-1)
        return guided_eps_model(eps_model, y.expand(x.shape[0]), w, null_label)(x, t)

    return eps
