"""A small time-conditioned noise predictor for low-dimensional data (the 2-D toys)::

    emb = TimeMLP(t) [+ ClassEmbedding(y)]                 # [B, time_dim]
    h_0 = x
    h_i = SiLU(W_i h_{i−1} + b_i + U_i emb),   i = 1..layers
    eps = W_out h_layers + b_out                             # zero-initialised

The conditioning vector is projected into every hidden layer, so the network can
change its output at every depth as ``t`` moves. Class row ``num_classes`` is the
null class (``y=None`` uses it), as in the U-Net.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import batch_times, check_int
from ..registry import register
from .embeddings import ClassEmbedding, TimeMLP

__all__ = ["MLP"]


@register
class MLP(nn.Module):
    """``eps = MLP(x [B, dim], t [B], y=None)``; ``layers`` hidden layers of width ``hidden``."""

    def __init__(self, dim: int = 2, hidden: int = 128, layers: int = 3, time_dim: int = 64,
                 num_classes: int | None = None):
        super().__init__()
        for value, name in ((dim, "dim"), (hidden, "hidden"), (layers, "layers"),
                            (time_dim, "time_dim")):
            check_int(value, name)
        if num_classes is not None:
            check_int(num_classes, "num_classes")
        self._config = dict(dim=dim, hidden=hidden, layers=layers, time_dim=time_dim,
                            num_classes=num_classes)
        self.dim, self.num_classes = dim, num_classes
        self.time_mlp = TimeMLP(time_dim, time_dim)
        self.class_emb = ClassEmbedding(num_classes, time_dim) if num_classes is not None else None
        self.linears = nn.ModuleList(
            [nn.Linear(dim if i == 0 else hidden, hidden) for i in range(layers)]
        )
        self.conds = nn.ModuleList([nn.Linear(time_dim, hidden) for _ in range(layers)])
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def config(self) -> dict:
        """Constructor arguments as a JSON-able dict: ``MLP(**net.config())`` rebuilds it."""
        return dict(self._config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor, t, y: Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [B, {self.dim}], got {got}")
        t = batch_times(t, x, "t")
        emb = self.time_mlp(t)
        if self.class_emb is not None:
            emb = emb + self.class_emb(y, x.shape[0])
        elif y is not None:
            raise ValueError("y must be None: this MLP has no classes (num_classes=None)")
        h = x
        for linear, cond in zip(self.linears, self.conds, strict=True):
            h = F.silu(linear(h) + cond(emb))
        return self.out(h)
