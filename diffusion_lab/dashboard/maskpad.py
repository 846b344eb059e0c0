"""A mask drawn with the mouse: an ``ipycanvas.Canvas`` over an H×W pixel grid.

Pressing and dragging paints a square brush of ``brush`` × ``brush`` image pixels
(1 = generate, as in every inpainting mask of the package); *clear* empties it. One
canvas pixel block of ``scale`` × ``scale`` screen pixels is one image pixel:
image pixel (i, j) = (⌊y / scale⌋, ⌊x / scale⌋). ipycanvas ships its own frontend in
the wheel (no CDN). Without ipycanvas, :func:`available` is False and the dashboard
offers the preset masks only.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import torch
from torch import Tensor

PAINT, EMPTY = "#ffcc33", "#202020"


def available() -> bool:
    try:
        import ipycanvas  # noqa: F401
    except ImportError:
        return False
    return True


class MaskPad:
    """``.widget`` (canvas, pixel count, clear button) and ``.mask`` ``[H, W]`` of 0/1."""

    def __init__(self, h: int = 28, w: int = 28, scale: int = 8, brush: int = 3):
        from ipycanvas import Canvas

        self.h, self.w, self.scale, self.brush = h, w, scale, brush
        self.mask = np.zeros((h, w), dtype=np.uint8)
        self.canvas = Canvas(width=w * scale, height=h * scale,
                             layout=W.Layout(width=f"{w * scale}px", height=f"{h * scale}px"))
        self.canvas.add_class("dl-maskpad")
        self.count = W.HTML("")
        self.count.add_class("dl-maskpad-count")
        self.clear_button = W.Button(description="clear mask", layout=W.Layout(width="110px"))
        self.clear_button.add_class("dl-maskpad-clear")
        self._drawing = False
        self.canvas.on_mouse_down(self.down)
        self.canvas.on_mouse_move(self.move)
        self.canvas.on_mouse_up(self.up)
        self.canvas.on_mouse_out(self.up)
        self.clear_button.on_click(lambda _b: self.clear())
        self.widget = W.VBox([W.HTML("<b>draw the mask</b> (press and drag)"), self.canvas,
                              W.HBox([self.clear_button, self.count])])
        self.clear()

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        """Canvas coordinates → image pixel (row, column)."""
        return int(y // self.scale), int(x // self.scale)

    def paint(self, x: float, y: float) -> None:
        i, j = self.pixel(x, y)
        lo = self.brush // 2
        r0, r1 = max(i - lo, 0), min(i - lo + self.brush, self.h)
        c0, c1 = max(j - lo, 0), min(j - lo + self.brush, self.w)
        if r0 >= r1 or c0 >= c1:
            return  # outside the grid
        self.mask[r0:r1, c0:c1] = 1
        self.canvas.fill_style = PAINT
        s = self.scale
        self.canvas.fill_rect(c0 * s, r0 * s, (c1 - c0) * s, (r1 - r0) * s)
        self._show_count()

    def down(self, x, y) -> None:
        self._drawing = True
        self.paint(x, y)

    def move(self, x, y) -> None:
        if self._drawing:
            self.paint(x, y)

    def up(self, x=None, y=None) -> None:
        self._drawing = False

    def clear(self) -> None:
        self.mask[:] = 0
        self.canvas.fill_style = EMPTY
        self.canvas.fill_rect(0, 0, self.w * self.scale, self.h * self.scale)
        self._show_count()

    def _show_count(self) -> None:
        self.count.value = f"{int(self.mask.sum())} of {self.h * self.w} pixels to generate"

    def tensor(self) -> Tensor:
        """``[1, 1, H, W]`` float 0/1."""
        return torch.from_numpy(self.mask.astype(np.float32))[None, None]
