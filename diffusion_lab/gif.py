"""Animated GIFs of a matplotlib figure, embedded as a plain ``<img>`` (no JavaScript).

The headless fallback of the players (:mod:`diffusion_lab.widgets`) and any notebook
animation use this: every frame is drawn into *one* figure (so axes, colour scales and
layout stay fixed across frames), rasterised at the figure's own size and dpi — the
size the picture is displayed at, so nothing is stretched — and written by Pillow as
an animated GIF. :func:`gif_html` wraps it as ``<img src="data:image/gif;base64,...">``
with explicit ``width``/``height``: JupyterLab, Notebook 7, VS Code, Colab, nbconvert
and GitHub all show it in an *untrusted* notebook, because it contains no ``<script>``.

The caption belongs in the figure (a title or ``suptitle`` set by ``update``), so it
changes with the very frame it describes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["figure_gif", "gif_html", "gif_info"]


def _rgb(fig: Figure) -> Image.Image:
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def figure_gif(fig: Figure, update: Callable[[int], object], n_frames: int,
               interval_ms: int = 250) -> bytes:
    """Animated GIF bytes: frame k is ``fig`` after ``update(k)``, shown ``interval_ms`` ms.

    ``fig`` keeps its size and dpi (pixels = inches × dpi, no tight bounding box, so
    every frame has the same size). Loops forever. Frames are palette-quantised
    (256 colours each), enough for scatter plots, line plots and grey/RGB image grids.
    """
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames}")
    if int(interval_ms) < 20:
        raise ValueError(f"interval_ms must be >= 20 (browsers clamp faster GIFs), got {interval_ms}")
    frames = []
    for k in range(int(n_frames)):
        update(k)
        frames.append(_rgb(fig).quantize(colors=256, method=Image.Quantize.MEDIANCUT))
    buf = io.BytesIO()
    # optimize=False and disposal=1: keep every frame whole, even if two are alike
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(interval_ms), loop=0, optimize=False, disposal=1)
    return buf.getvalue()


def gif_info(data: bytes) -> dict:
    """``{"frames": n, "width": w, "height": h, "duration_ms": d}`` of GIF bytes (for tests)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "GIF":
            raise ValueError(f"data is not a GIF (Pillow reads it as {im.format!r})")
        return {"frames": int(getattr(im, "n_frames", 1)), "width": im.width,
                "height": im.height, "duration_ms": int(im.info.get("duration", 0))}


def gif_html(data: bytes, alt: str = "animation") -> str:
    """``<img>`` with the GIF as a base64 data URI, at its own pixel size (no ``<script>``)."""
    info = gif_info(data)
    alt = alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    uri = "data:image/gif;base64," + base64.b64encode(data).decode("ascii")
    return (f'<img src="{uri}" width="{info["width"]}" height="{info["height"]}" '
            f'alt="{alt}" style="max-width:100%;height:auto"/>')
