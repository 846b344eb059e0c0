"""Tensors ↔ PNG data URLs, the scatter plot of 2-D samples, and inpainting masks.

Images are ``[C, H, W]`` in [-1, 1] (C = 1 grey or 3 RGB); a pixel is stored as
``round((x + 1) · 127.5)``. Final images arrive already clipped to [-1, 1] by
:meth:`GenerativeModel.generate` (its documented last step); the live x̂_0 previews are
estimates that can leave the range and are clamped *for display only*.

2-D samples become a ``PLOT_SIZE``² scatter PNG of the square [-PLOT_EXTENT, PLOT_EXTENT]²
(axes drawn through 0); the exact coordinates travel next to it as numbers.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .schemas import MASK_PRESETS, RequestError

PNG_PREFIX = "data:image/png;base64,"
PLOT_SIZE = 256
PLOT_EXTENT = 3.0


def to_uint8(x: Tensor) -> np.ndarray:
    """``[C, H, W]`` in [-1, 1] → ``[H, W]`` (C = 1) or ``[H, W, 3]`` uint8."""
    a = ((x.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    a = a.numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def png_data_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return PNG_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def images_to_data_urls(x: Tensor) -> list[str]:
    """A batch ``[B, C, H, W]`` in [-1, 1] → B PNG data URLs, each H×W (grey or RGB)."""
    return [png_data_url(to_uint8(img)) for img in x]


def scatter_data_url(points: Tensor) -> str:
    """``[N, 2]`` points → a white PNG with grey axes through 0 and one dark dot per point
    inside [-PLOT_EXTENT, PLOT_EXTENT]² (y up); points outside are not drawn."""
    canvas = np.full((PLOT_SIZE, PLOT_SIZE, 3), 255, dtype=np.uint8)
    mid = PLOT_SIZE // 2
    canvas[mid, :] = canvas[:, mid] = (200, 200, 200)
    p = points.detach().double().cpu().numpy()[:, :2]
    scale = (PLOT_SIZE - 1) / (2 * PLOT_EXTENT)
    cols = np.floor((p[:, 0] + PLOT_EXTENT) * scale).astype(np.int64)
    rows = np.floor((PLOT_EXTENT - p[:, 1]) * scale).astype(np.int64)
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < PLOT_SIZE) & (c >= 0) & (c < PLOT_SIZE)
            canvas[r[inside], c[inside]] = (31, 90, 160)
    return png_data_url(canvas)


def decode_png(url: str, shape: tuple[int, int, int], field: str, *, grey_ok: bool = False) -> Tensor:
    """A PNG data URL → ``[C, H, W]`` in [-1, 1] for data ``shape`` = (C, H, W).

    The image must be exactly H×W. Grey and RGB(A) PNGs are converted to the model's channel
    count (``grey_ok``: keep a grey image as 1 channel, for colorize). Anything else is a
    :class:`RequestError` naming ``field``."""
    if not url.startswith(PNG_PREFIX):
        raise RequestError(422, field, f"{field} must be a data URL starting with {PNG_PREFIX!r}")
    try:
        raw = base64.b64decode(url[len(PNG_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, field, f"{field} is not valid base64") from None
    c, h, w = shape
    try:
        img = Image.open(io.BytesIO(raw), formats=["PNG"])
        if img.size != (w, h):  # read from the header, before any pixel is decoded
            raise RequestError(422, field, f"{field} must be {w}x{h} pixels, got "
                               f"{img.size[0]}x{img.size[1]}")
        grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
        img = img.convert("L" if c == 1 or (grey_ok and grey) else "RGB")
        array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(422, field, f"{field} is not a readable PNG image") from None
    x = torch.from_numpy(array.copy()).float()
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    return x / 127.5 - 1.0


def preset_mask(name: str, h: int, w: int) -> Tensor:
    """``[1, 1, H, W]`` of 0/1 (1 = generate) for one of :data:`MASK_PRESETS`."""
    if name not in MASK_PRESETS:
        raise RequestError(422, "mask", f"mask must be a PNG data URL or one of {MASK_PRESETS}")
    m = torch.zeros(1, 1, h, w)
    if name == "left":
        m[..., : w // 2] = 1
    elif name == "right":
        m[..., w // 2:] = 1
    elif name == "top":
        m[..., : h // 2, :] = 1
    elif name == "bottom":
        m[..., h // 2:, :] = 1
    else:
        m[..., h // 4: h - h // 4, w // 4: w - w // 4] = 1
    return m


def decode_mask(value: str, h: int, w: int) -> Tensor:
    """A preset name, or a PNG data URL whose light pixels (> 127) are to be generated."""
    if not value.startswith("data:"):
        return preset_mask(value, h, w)
    grey = decode_png(value, (1, h, w), "mask")
    return (grey > 0.0).float()[None]
