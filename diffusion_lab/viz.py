"""Small matplotlib helpers for the course: image grids, 2-D points and trajectories,
score fields and schedule curves.

Every function draws into an ``ax`` (created when not given), labels its axes and
returns the ``Axes`` (or the figure / array it builds), so notebooks compose them.
Images are tensors in [-1, 1], shaped ``[C, H, W]`` or ``[B, C, H, W]``; they are
mapped to [0, 1] by (x + 1)/2 for display — values outside [-1, 1] are *shown*
clipped by matplotlib, never altered in the data.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from ._checks import check_int

__all__ = [
    "image_grid",
    "show_images",
    "scatter_2d",
    "plot_trajectories",
    "quiver_field",
    "plot_schedules",
    "frame_kind",
    "read_image_grid",
]


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    return ax


def frame_kind(x) -> str:
    """``"points"`` for ``[N, 2]`` arrays, ``"images"`` for ``[C, H, W]`` / ``[B, C, H, W]``."""
    shape = tuple(torch.as_tensor(x).shape)
    if len(shape) == 2 and shape[1] == 2:
        return "points"
    if len(shape) in (3, 4) and shape[-3] in (1, 3):
        return "images"
    raise ValueError(
        f"a frame must be points [N, 2] or images [C, H, W] / [B, C, H, W] with C in (1, 3), "
        f"got shape {list(shape)}"
    )


def image_grid(x: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images in [-1, 1] into one ``[H, W, 3]`` array in [0, 1] (make_grid, grey padding).

    ``nrow`` is the number of images per row (default ⌈√B⌉).
    """
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"x must be [C, H, W] or [B, C, H, W] with C in (1, 3), got {list(x.shape)}")
    if nrow is None:
        nrow = int(np.ceil(np.sqrt(x.shape[0])))
    grid = make_grid((x + 1.0) / 2.0, nrow=nrow, padding=padding, pad_value=0.5)
    return grid.permute(1, 2, 0).numpy()


def read_image_grid(path, n: int, size: int = 28, padding: int = 2) -> Tensor:
    """The ``n`` grey ``size``×``size`` images of a grid PNG written by ``save_image`` with
    ``nrow = ⌈√n⌉`` and ``padding`` (the CLI's sample and progress grids), back as
    ``[n, 1, size, size]`` in [-1, 1]: image k sits at row k // nrow, column k % nrow, its top
    left pixel at (padding + (size + padding)·row, padding + (size + padding)·column). The PNG
    holds 8 bits, so values come back to within 1/255 of what was written. (A single image is
    written unpadded: make_grid returns it as it is.)"""
    n, size = check_int(n, "n"), check_int(size, "size")
    padding = check_int(padding, "padding", minimum=0)
    if n == 1:
        padding = 0
    pixels = plt.imread(path)
    nrow = int(np.ceil(np.sqrt(n)))
    rows = -(-n // nrow)
    expected = (padding + rows * (size + padding), padding + nrow * (size + padding))
    if pixels.ndim != 3 or pixels.shape[:2] != expected:
        raise ValueError(f"{path}: a grid of n={n} images of size={size} with padding={padding} is "
                         f"{expected[0]}×{expected[1]} pixels, the PNG is {pixels.shape[:2]}")
    if not (np.array_equal(pixels[..., 0], pixels[..., 1])
            and np.array_equal(pixels[..., 0], pixels[..., 2])):
        raise ValueError(f"{path}: not a grey grid (its colour channels differ)")
    grey = torch.from_numpy(np.ascontiguousarray(pixels[..., 0], dtype=np.float32))
    step = size + padding
    cells = [grey[padding + step * (k // nrow):][:size, padding + step * (k % nrow):][:, :size]
             for k in range(n)]
    return torch.stack(cells).unsqueeze(1) * 2.0 - 1.0


def show_images(x: Tensor, ax=None, title: str | None = None, nrow: int | None = None):
    """Show images in [-1, 1] as a grid; returns the ``AxesImage``'s axes."""
    ax = _ax(ax)
    grid = image_grid(x, nrow=nrow)
    ax.imshow(np.clip(grid, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    n = 1 if torch.as_tensor(x).dim() == 3 else torch.as_tensor(x).shape[0]
    ax.set_xlabel(f"{n} image{'s' if n != 1 else ''}")
    if title is not None:
        ax.set_title(title)
    return ax


def _plane_axes(ax, lim: float | None = None) -> None:
    """Label the axes x₁, x₂, make them equal-aspect, and, with ``lim``, show [−lim, lim]²."""
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)


def scatter_2d(points: Tensor, ax=None, title: str | None = None, lim: float | None = None,
               s: float = 3.0, alpha: float = 0.5, **kwargs):
    """Scatter ``[N, 2]`` points with labelled axes and an equal aspect ratio."""
    ax = _ax(ax)
    p = torch.as_tensor(points).detach().float().cpu().numpy()
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {list(p.shape)}")
    ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, **kwargs)
    _plane_axes(ax, lim)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_trajectories(traj: Tensor, ax=None, n_paths: int = 30, title: str | None = None,
                      lim: float | None = None):
    """Plot 2-D trajectories ``[S, N, 2]`` (S steps): paths in grey, start ○ and end ●."""
    ax = _ax(ax)
    tr = torch.as_tensor(traj).detach().float().cpu().numpy()
    if tr.ndim != 3 or tr.shape[2] != 2:
        raise ValueError(f"traj must have shape [steps, N, 2], got {list(tr.shape)}")
    k = min(n_paths, tr.shape[1])
    ax.plot(tr[:, :k, 0], tr[:, :k, 1], color="0.6", lw=0.6)
    ax.scatter(tr[0, :k, 0], tr[0, :k, 1], s=10, facecolors="none", edgecolors="C0",
               label="start")
    ax.scatter(tr[-1, :k, 0], tr[-1, :k, 1], s=10, color="C3", label="end")
    _plane_axes(ax, lim)
    ax.legend(loc="upper right", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax


def quiver_field(score_fn, t: float, ax=None, lim: float = 3.0, n: int = 20,
                 normalize: bool = True, title: str | None = None,
                 clim: tuple[float, float] | None = None, colorbar: bool = True,
                 colorbar_label: str = r"$\log\|s\|$"):
    """Quiver plot of a 2-D vector field ``score_fn(x [M, 2], t [M]) -> [M, 2]`` on a grid.

    With ``normalize`` the arrows show direction only — each 0.8 grid spacings long,
    centred on its grid point, so none overlaps its neighbour — and colour shows
    log‖s‖ on the scale ``clim = (lo, hi)`` (default: this frame's range; pass one
    ``clim`` for every frame of an animation so the colours mean the same throughout);
    ``colorbar_label`` names the field (the default is for a score).
    """
    ax = _ax(ax)
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    with torch.no_grad():
        v = score_fn(pts, torch.full((pts.shape[0],), float(t), dtype=torch.float64))
    v = torch.as_tensor(v, dtype=torch.float64).reshape(-1, 2)
    norm = v.norm(dim=1)
    if normalize:
        u = v / norm.clamp_min(1e-30).unsqueeze(1)  # direction only; zero vectors stay zero
        spacing = 2 * lim / max(n - 1, 1)
        q = ax.quiver(pts[:, 0], pts[:, 1], u[:, 0], u[:, 1], torch.log(norm + 1e-30).numpy(),
                      cmap="viridis", angles="xy", scale_units="xy", scale=1 / (0.8 * spacing),
                      pivot="mid", width=0.006, headwidth=3.5, headlength=4)
        if clim is not None:
            q.set_clim(*clim)
        if colorbar:
            plt.colorbar(q, ax=ax, label=colorbar_label)
    else:
        ax.quiver(pts[:, 0], pts[:, 1], v[:, 0], v[:, 1], angles="xy")
    _plane_axes(ax)
    ax.set_title(title if title is not None else f"score field at t = {float(t):.2f}")
    return ax


_QUANTITY_LABELS = {
    "beta": r"$\beta(t)$",
    "integral": r"$B(t)=\int_0^t\beta$",
    "alpha_bar": r"$\bar\alpha(t)$",
    "log_snr": r"log-SNR$(t)$",
    "snr": r"SNR$(t)$",
}


def plot_schedules(schedules: dict, quantities=("beta", "alpha_bar", "log_snr"),
                   t_range=(0.0, 1.0), n: int = 401, axes=None, logy=("beta", "snr")):
    """Plot ``{name: Schedule}`` curves, one panel per quantity; returns the axes array.

    Quantities: ``beta``, ``integral``, ``alpha_bar``, ``log_snr``, ``snr``.
    """
    for q in quantities:
        if q not in _QUANTITY_LABELS:
            raise ValueError(f"unknown quantity {q!r}; valid: {', '.join(_QUANTITY_LABELS)}")
    if axes is None:
        _, axes = plt.subplots(1, len(quantities), figsize=(4 * len(quantities), 3.2),
                               layout="constrained",
                               squeeze=False)
        axes = axes[0]
    t = torch.linspace(t_range[0], t_range[1], n, dtype=torch.float64)
    for ax, q in zip(axes, quantities, strict=True):
        for name, sched in schedules.items():
            if q == "snr":
                y = torch.exp(sched.log_snr(t))
            else:
                y = getattr(sched, q)(t)
            ax.plot(t.numpy(), y.numpy(), label=name)
        ax.set_xlabel("$t$")
        ax.set_ylabel(_QUANTITY_LABELS[q])
        if q in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return axes
