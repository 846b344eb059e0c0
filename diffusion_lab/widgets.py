"""ipywidgets players over diffusion time or sampler steps, with a static fallback.

A :class:`FramePlayer` holds *panels* — ``{name: [frame_0, ..., frame_{n-1}]}``, all
of the same length, each frame either 2-D points ``[N, 2]`` or images
``[C, H, W]`` / ``[B, C, H, W]`` in [-1, 1] — and shows frame k of every panel
side by side, driven by a ``Play`` button linked to a slider.

Live (a Jupyter frontend with a kernel): ``display(player)`` shows the widget;
the figure is re-rendered to PNG on every slider move.

Headless (papermill, nbval, CI, GitHub rendering — no frontend to run the
widget): the player instead leaves a static strip of a few frames (PNG) and an
animated GIF of all frames as a plain ``<img>`` (:mod:`diffusion_lab.gif`) —
no ``<script>``, so every renderer shows it in an untrusted notebook. Headless is
chosen by ``static=True``, by the environment variable
``DIFFUSION_LAB_HEADLESS`` (``1``: headless, ``0``: live; the notebook build and
the tests set ``1``), or when no Jupyter kernel runs behind IPython
(:func:`is_headless`). Nothing here blocks or prints progress bars.

Pictures are rendered at the size they are displayed at (``panel_size`` inches
× :attr:`FramePlayer.dpi`, with explicit pixel ``width``/``height``), with one
axis / colour scale for all frames, and the caption drawn into the picture of
the frame it names (the text label of the live widget is updated after the picture).

Builders: :func:`forward_player` (noising x_0 under several processes with the
same noise) and :class:`TrajectoryRecorder` (a sampler ``callback(step, t, x,
x0_hat)`` whose :meth:`~TrajectoryRecorder.player` shows x_t and x̂_0 side by side).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib import animation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from .gif import figure_gif
from .gif import gif_html as _gif_img
from .viz import frame_kind, image_grid

__all__ = ["FramePlayer", "TrajectoryRecorder", "forward_player", "is_headless"]


def is_headless() -> bool:
    """True when no frontend can drive widgets.

    ``DIFFUSION_LAB_HEADLESS`` decides when set (``1``/``true``/``yes``: headless;
    ``0``/``false``/``no``/empty: live). Otherwise live means IPython runs *inside a
    Jupyter kernel*: the shell has a ``kernel`` (ipykernel's shell and its subclasses,
    e.g. Colab's) or its config names ``IPKernelApp``. Plain Python and terminal
    IPython are headless.
    """
    env = os.environ.get("DIFFUSION_LAB_HEADLESS")
    if env is not None:
        return env.strip().lower() not in ("", "0", "false", "no")
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of ipywidgets
        return True
    shell = get_ipython()
    if shell is None:
        return True
    if getattr(shell, "kernel", None) is not None:
        return False
    config = getattr(shell, "config", None) or {}
    return "IPKernelApp" not in config


def _as_cpu(x) -> Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float32).clone()


class FramePlayer:
    """Play / slider over ``n`` frames of one or more panels (see the module docstring).

    Args:
        panels: ``{name: sequence of frames}`` or a single sequence (one panel, ``name``).
        values: the diffusion time (or step) of each frame, for captions.
        label: what ``values`` are (``"t"``, ``"step"``).
        captions: optional text per frame, overriding ``f"{label} = {value}"``.
        lim: axis half-width for point panels (default: from the 99.5th percentile of all frames).
        interval_ms: time between frames when playing.
        panel_size: inches per panel; pixels = inches × :attr:`dpi`.
    """

    dpi = 100  #: pixels per inch of every rendered picture (the size it is displayed at)

    def __init__(self, panels, values: Sequence[float] | None = None, label: str = "t",
                 captions: Sequence[str] | None = None, lim: float | None = None,
                 interval_ms: int = 250, panel_size: float = 3.0, name: str = "x"):
        if not isinstance(panels, dict):
            panels = {name: panels}
        if not panels:
            raise ValueError("panels must contain at least one panel")
        self.panels = {str(k): [_as_cpu(f) for f in v] for k, v in panels.items()}
        lengths = {k: len(v) for k, v in self.panels.items()}
        n = next(iter(lengths.values()))
        if n < 1 or any(m != n for m in lengths.values()):
            raise ValueError(f"every panel needs the same number (>= 1) of frames, got {lengths}")
        self.n_frames = n
        self.kinds = {k: frame_kind(v[0]) for k, v in self.panels.items()}
        self.values = list(range(n)) if values is None else [float(v) for v in values]
        if len(self.values) != n:
            raise ValueError(f"values must have one entry per frame ({n}), got {len(self.values)}")
        self.label = label
        if captions is not None and len(captions) != n:
            raise ValueError(f"captions must have one entry per frame ({n}), got {len(captions)}")
        self.captions = list(captions) if captions is not None else [
            f"{label} = {v:.3g}" for v in self.values]
        self.lim = lim if lim is not None else self._auto_lim()
        self.panel_size = float(panel_size)
        self.interval_ms = int(interval_ms)
        self.current = 0
        self._fig = self._artists = None
        # widgets: Play <-> slider, a caption, and the rendered PNG
        self.play = W.Play(value=0, min=0, max=n - 1, step=1, interval=self.interval_ms,
                           description="play")
        self.slider = W.IntSlider(value=0, min=0, max=n - 1, step=1, description=label,
                                  readout=False, continuous_update=True)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.caption = W.Label(self.captions[0])
        self.image = W.Image(format="png")  # width/height set to the figure's pixels
        self.slider.observe(lambda change: self.show_frame(change["new"]), names="value")
        self.widget = W.VBox([W.HBox([self.play, self.slider, self.caption]), self.image])

    # -- data --------------------------------------------------------------------------------
    def frame(self, k: int) -> dict[str, Tensor]:
        """``{panel: frame k}``."""
        if not 0 <= int(k) < self.n_frames:
            raise ValueError(f"k must be in [0, {self.n_frames - 1}], got {k}")
        return {name: frames[int(k)] for name, frames in self.panels.items()}

    def _auto_lim(self) -> float:
        pts = [f for name, fr in self.panels.items() if self.kinds[name] == "points" for f in fr]
        if not pts:
            return 1.0
        q = float(torch.quantile(torch.cat(pts).abs().reshape(-1)[:200_000], 0.995))
        return max(1e-3, 1.1 * q)

    # -- drawing -------------------------------------------------------------------------------
    def _draw_panel(self, ax, name: str, frame: Tensor):
        """Create the artist for one panel on ``ax`` and label the axes; return the artist."""
        if self.kinds[name] == "points":
            p = frame.numpy()
            art = ax.scatter(p[:, 0], p[:, 1], s=3, alpha=0.5)
            ax.set_xlim(-self.lim, self.lim)
            ax.set_ylim(-self.lim, self.lim)
            ax.set_aspect("equal")
            ax.set_xlabel("$x_1$")
            ax.set_ylabel("$x_2$")
        else:
            art = ax.imshow(np.clip(image_grid(frame), 0.0, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("pixels")
            ax.set_ylabel("pixels")
        return art

    def _update_panel(self, art, name: str, frame: Tensor):
        if self.kinds[name] == "points":
            art.set_offsets(frame.numpy())
        else:
            art.set_data(np.clip(image_grid(frame), 0.0, 1.0))

    def figure(self) -> Figure:
        """The live figure (one row of panels), built on first use, showing ``self.current``."""
        if self._fig is None:
            k = len(self.panels)
            fig = Figure(figsize=(self.panel_size * k, self.panel_size + 0.4), dpi=self.dpi)
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, k, squeeze=False)[0]
            self._artists = {}
            for ax, (name, frame) in zip(axes, self.frame(self.current).items(), strict=True):
                self._artists[name] = self._draw_panel(ax, name, frame)
                ax.set_title(name)
            self._suptitle = fig.suptitle(self.captions[self.current])
            fig.tight_layout()
            self._fig = fig
            w, h = fig.canvas.get_width_height()
            self.image.width, self.image.height = str(w), str(h)
        return self._fig

    def shown_data(self, name: str) -> np.ndarray:
        """What the live figure currently shows for panel ``name`` (points or RGB array)."""
        self.figure()
        art = self._artists[name]
        if self.kinds[name] == "points":
            return np.asarray(art.get_offsets())
        return np.asarray(art.get_array())

    def _set_frame(self, k: int) -> None:
        """Move the live figure's artists and title to frame ``k`` (no rendering)."""
        self.figure()
        for name, frame in self.frame(k).items():
            self._update_panel(self._artists[name], name, frame)
        self._suptitle.set_text(self.captions[int(k)])

    def show_frame(self, k: int) -> None:
        """Draw frame ``k`` into the live figure and refresh the PNG, then the caption.

        The caption label changes only after the new picture is ready, so during play
        it never runs ahead of the frame it names.
        """
        self._set_frame(k)
        self.current = int(k)
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", dpi=self.dpi)
        self.image.value = buf.getvalue()
        self.caption.value = self.captions[self.current]

    def static_indices(self, n: int = 5) -> list[int]:
        """``n`` frame indices spread evenly from the first to the last."""
        return sorted({int(round(i)) for i in np.linspace(0, self.n_frames - 1, max(1, n))})

    def static_figure(self, n: int = 5) -> Figure:
        """A grid: one row per panel, one column per frame of :meth:`static_indices`."""
        idx = self.static_indices(n)
        rows = len(self.panels)
        s = 0.75 * self.panel_size
        fig = Figure(figsize=(s * len(idx) + 0.6, s * rows + 0.5), dpi=self.dpi)
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, len(idx), squeeze=False)
        for r, name in enumerate(self.panels):
            for c, k in enumerate(idx):
                ax = axes[r, c]
                self._draw_panel(ax, name, self.panels[name][k])
                if r == 0:
                    ax.set_title(self.captions[k], fontsize="medium")
                if c == 0:
                    ax.set_ylabel(f"{name}\n" + ax.get_ylabel())
        fig.tight_layout()
        return fig

    def animation(self) -> animation.FuncAnimation:
        """A ``FuncAnimation`` over all frames (on the live figure)."""
        fig = self.figure()

        def update(k):
            for name, frame in self.frame(k).items():
                self._update_panel(self._artists[name], name, frame)
            self._suptitle.set_text(self.captions[k])
            return list(self._artists.values())

        return animation.FuncAnimation(fig, update, frames=self.n_frames,
                                       interval=self.interval_ms, blit=False)

    def to_jshtml(self) -> str:
        """The animation as HTML/JavaScript (``Animation.to_jshtml``).

        Not used by :meth:`show`: its ``<script>`` runs only in a trusted notebook.
        """
        html = self.animation().to_jshtml(default_mode="loop")
        self.show_frame(self.current)  # the animation moved the artists; put them back
        return html

    def animated_gif(self) -> bytes:
        """All frames as an animated GIF of the live figure (same size, scales, caption)."""
        data = figure_gif(self.figure(), self._set_frame, self.n_frames, self.interval_ms)
        self._set_frame(self.current)  # put the live figure back on the current frame
        return data

    def gif_html(self) -> str:
        """:meth:`animated_gif` as an ``<img>`` data URI at its pixel size (no ``<script>``)."""
        return _gif_img(self.animated_gif(), alt=f"{self.n_frames} frames: "
                        f"{self.captions[0]} … {self.captions[-1]}")

    # -- display ---------------------------------------------------------------------------------
    def show(self, static: bool | None = None, animate: bool = True, n_static: int = 5) -> None:
        """Display the live widget, or (headless / ``static=True``) a static strip + GIF."""
        from IPython.display import HTML, Image, display

        if static is None:
            static = is_headless()
        if static:
            buf = io.BytesIO()
            self.static_figure(n_static).savefig(buf, format="png", dpi=self.dpi)
            display(Image(data=buf.getvalue(), format="png"))
            if animate:
                display(HTML(self.gif_html()))
        else:
            self.show_frame(self.current)
            display(self.widget)

    def _ipython_display_(self):
        self.show()

    def png_data_uri(self) -> str:
        """The current frame as a ``data:image/png;base64`` URI (handy for HTML reports)."""
        self.show_frame(self.current)
        return "data:image/png;base64," + base64.b64encode(self.image.value).decode()


class TrajectoryRecorder:
    """A sampler callback ``callback(step, t, x, x0_hat)`` that keeps copies of x_t and x̂_0.

    ``every`` keeps one call in ``every`` (the last call is always kept);
    ``max_items`` keeps only the first ``max_items`` samples of each batch.
    """

    def __init__(self, every: int = 1, max_items: int | None = None):
        if int(every) < 1:
            raise ValueError(f"every must be a positive int, got {every}")
        self.every, self.max_items = int(every), max_items
        self.steps: list[int] = []
        self.times: list[float] = []
        self.x: list[Tensor] = []
        self.x0_hat: list[Tensor] = []
        self._pending = None

    def __call__(self, step, t, x, x0_hat) -> None:
        t = float(torch.as_tensor(t).reshape(-1)[0])
        sl = slice(None) if self.max_items is None else slice(0, self.max_items)
        item = (int(step), t, _as_cpu(x[sl]), _as_cpu(x0_hat[sl]))
        if len(self.steps) == 0 or (int(step) - self.steps[-1]) >= self.every:
            self._append(item)
            self._pending = None
        else:
            self._pending = item

    def _append(self, item) -> None:
        step, t, x, x0 = item
        self.steps.append(step)
        self.times.append(t)
        self.x.append(x)
        self.x0_hat.append(x0)

    def __len__(self) -> int:
        return len(self.steps) + (self._pending is not None)

    def player(self, **kwargs) -> FramePlayer:
        """A :class:`FramePlayer` with panels ``x_t`` and ``x̂_0`` over the recorded steps."""
        if self._pending is not None:
            self._append(self._pending)
            self._pending = None
        if not self.steps:
            raise ValueError("nothing recorded: pass the recorder as the sampler's callback")
        captions = [f"step {s}, t = {t:.3f}" for s, t in zip(self.steps, self.times, strict=True)]
        return FramePlayer({"$x_t$": self.x, r"$\hat x_0$": self.x0_hat}, values=self.times,
                           label="step", captions=captions, **kwargs)


def forward_player(x0: Tensor, processes: dict, times: Sequence[float], seed: int = 0,
                   **kwargs) -> FramePlayer:
    """Noise ``x0`` to each time under each process, with the *same* noise z for all.

    ``processes``: ``{name: SDE or Schedule}`` (a schedule is used as a VP SDE). Frame k
    of panel p is ``m_p(t_k) x0 + σ_p(t_k) z``.
    """
    from .schedules import Schedule
    from .sde import VPSDE

    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    panels = {}
    for name, proc in processes.items():
        sde = VPSDE(proc) if isinstance(proc, Schedule) else proc
        panels[name] = [sde.marginal_sample(x0, float(t), noise=z)[0] for t in times]
    return FramePlayer(panels, values=list(times), label="t", **kwargs)
