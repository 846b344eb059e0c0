"""Samples → PNG bytes for ``ipywidgets.Image``: image grids and 2-D scatter plots.

Images are ``[B, C, H, W]`` in [-1, 1], stored per pixel as ``round((x + 1) · 127.5)``
(:func:`diffusion_lab.service.imaging.to_uint8`; live x̂_0 estimates may leave the range
and are clamped *for display only*). A grid puts ``cols`` images per row with a 2-pixel
white gap and is enlarged ``zoom`` times by pixel repetition (no smoothing).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from torch import Tensor

from ..service.imaging import to_uint8

PLOT_EXTENT = 3.0


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def grid_array(x: Tensor, cols: int | None = None, zoom: int = 3, gap: int = 2) -> np.ndarray:
    """``[B, C, H, W]`` → one ``[rows·(H+gap)−gap, …, 3]`` uint8 RGB mosaic, ``zoom``× enlarged."""
    b, _, h, w = x.shape
    cols = min(b, cols or 8)
    rows = -(-b // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for k, img in enumerate(x):
        a = to_uint8(img)
        a = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a
        r, c = divmod(k, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = a
    return out.repeat(zoom, axis=0).repeat(zoom, axis=1)


def grid_png(x: Tensor, cols: int | None = None, zoom: int = 3) -> bytes:
    return png_bytes(grid_array(x, cols, zoom))


def scatter_array(points: Tensor, data: Tensor | None = None, size: int = 240,
                  extent: float = PLOT_EXTENT) -> np.ndarray:
    """``[N, 2]`` samples (blue) over ``data`` (light grey) in [-extent, extent]², y up,
    axes through 0; points outside the square are not drawn."""
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    canvas[size // 2, :] = canvas[:, size // 2] = (215, 215, 215)
    scale = (size - 1) / (2 * extent)
    layers = [] if data is None else [(data, (190, 190, 190))]
    for pts, colour in [*layers, (points, (31, 90, 160))]:
        p = pts.detach().double().cpu().numpy()[:, :2]
        cols = np.floor((p[:, 0] + extent) * scale).astype(np.int64)
        rows = np.floor((extent - p[:, 1]) * scale).astype(np.int64)
        for dr in (0, 1):
            for dc in (0, 1):
                r, c = rows + dr, cols + dc
                inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
                canvas[r[inside], c[inside]] = colour
    return canvas


def scatter_png(points: Tensor, data: Tensor | None = None) -> bytes:
    return png_bytes(scatter_array(points, data))


def samples_png(x: Tensor, data: Tensor | None = None, cols: int | None = None,
                zoom: int = 3) -> bytes:
    """A grid for image batches, a scatter (over ``data``) for ``[N, 2]`` points."""
    return scatter_png(x, data) if x.dim() == 2 else grid_png(x, cols, zoom)


def compare_png(rows: list, data: Tensor | None = None) -> bytes:
    """Compare view: one row of images per sampler (top to bottom), or, for 2-D models, one
    scatter per sampler (left to right); ``rows`` are ``(method, samples, ...)``."""
    first = rows[0][1]
    if first.dim() != 2:
        import torch

        return grid_png(torch.cat([r[1] for r in rows]), cols=first.shape[0])
    gap = np.full((240, 8, 3), 255, dtype=np.uint8)
    parts = []
    for r in rows:
        parts += [scatter_array(r[1], data), gap]
    return png_bytes(np.concatenate(parts[:-1], axis=1))
