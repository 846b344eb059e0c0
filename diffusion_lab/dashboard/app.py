"""The dashboard's widgets: controls on the left, live previews and the result on the right.

    from diffusion_lab.dashboard import build_dashboard
    build_dashboard()            # in JupyterLab, or served by Voilà (make dashboard)

Pressing *generate* (CSS class ``dl-generate``) reads the controls into a
:class:`~diffusion_lab.dashboard.runs.Request`, checks it against the model
(:func:`~diffusion_lab.dashboard.runs.check`), and runs it in the kernel; every sampler
step moves the progress bar and redraws x_t (``dl-xt``) and x̂_0 (``dl-x0``). The final
samples replace the output image (``dl-output``); NFE and wall time go to ``dl-stats``.
A request that does not fit the model (colorize on a grey-scale model, …) or that the
model refuses is shown as a sentence in ``dl-error`` and nothing else changes; the app
stays usable. Test hooks are these CSS classes (``Widget.add_class``), and ``dl-<name>``
on each control (``dl-task``, ``dl-steps``, ``dl-seed-b``, …).
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path

import ipywidgets as W
from PIL import Image as PILImage

from ..samplers import SAMPLERS
from ..service.catalog import DEFAULT_CHECKPOINTS, ModelCache, discover
from ..timegrid import GRIDS
from . import render, runs

DEFAULT_GRID = "sampler default"
NO_CLASS = -1  # the class dropdown's "none" (a Dropdown's None would mean "nothing selected")
PREVIEW_EVERY_S = 0.05  # at most ~20 preview redraws a second


def _image(css: str, title: str) -> tuple[W.Image, W.VBox]:
    img = W.Image(format="png", layout=W.Layout(min_width="60px", min_height="60px"))
    img.add_class(css)
    return img, W.VBox([W.HTML(f"<b>{title}</b>"), img])


class Dashboard:
    """The app's widget tree (``.widget``) and its handlers; one per notebook/page."""

    def __init__(self, checkpoints_dir=None, max_models: int = 2):
        self.cache = ModelCache(discover(Path(checkpoints_dir or DEFAULT_CHECKPOINTS)),
                                max_models)
        self.cards = self.cache.cards
        self._data: dict[str, object] = {}
        self.last_result: runs.Result | None = None
        self.last_error: str | None = None  # the message of the last refused request
        names = list(self.cards)
        style = {"description_width": "90px"}

        def lay():  # one Layout per widget: hiding one control must not hide the others
            return W.Layout(width="300px")

        def drop(description, options, value=None):
            return W.Dropdown(description=description, options=options, value=value,
                              style=style, layout=lay())

        def integer(description, value, lo, hi):
            return W.BoundedIntText(description=description, value=value, min=lo, max=hi,
                                    style=style, layout=lay())

        self.model = drop("model", names, "mnist_cond" if "mnist_cond" in names else names[0])
        self.task = drop("task", list(runs.TASKS), "generate")
        self.method = drop("sampler", list(SAMPLERS), "dpm_solver")
        self.steps = integer("steps", 10, 1, 200)
        self.grid = drop("time grid", [DEFAULT_GRID, *GRIDS], DEFAULT_GRID)
        self.seed = integer("seed", 0, 0, 2**31 - 1)
        self.n = integer("images n", 4, 1, runs.MAX_N)
        self.points = integer("points", 1000, 1, runs.MAX_POINTS)
        self.label = drop("class", [("none", NO_CLASS)], NO_CLASS)
        self.guidance = W.BoundedFloatText(description="guidance w", value=1.0, min=0.0,
                                           max=20.0, step=0.5, style=style, layout=lay())
        self.mask = drop("mask", list(runs.MASKS), "center")
        self.factor = drop("factor", list(runs.FACTORS), 2)
        self.seed_b = integer("seed b", 1, 0, 2**31 - 1)
        self.methods = W.SelectMultiple(description="samplers", options=list(SAMPLERS),
                                        value=("ddim", "dpm_solver", "edm"), rows=5,
                                        style=style, layout=lay())
        self.button = W.Button(description="generate", button_style="primary",
                               layout=W.Layout(width="300px"))
        self.button.add_class("dl-generate")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="idle",
                                      style=style, layout=lay())
        self.status = W.HTML("Pick a model and a task, then press <b>generate</b>.")
        self.status.add_class("dl-status")
        self.error = W.HTML("")
        self.error.add_class("dl-error")
        self.stats = W.HTML("")
        self.stats.add_class("dl-stats")
        self.xt, self.xt_box = _image("dl-xt", "x<sub>t</sub> (live)")
        self.x0, self.x0_box = _image("dl-x0", "x̂<sub>0</sub> (live)")
        self.source, self.source_box = _image("dl-source", "source")
        self.output, out_box = _image("dl-output", "result")
        self.rows = {"class": self.label, "guidance": self.guidance, "mask": self.mask,
                     "factor": self.factor, "seed_b": self.seed_b, "methods": self.methods,
                     "method": self.method, "n": self.n, "points": self.points}
        for name in ("model", "task", "method", "steps", "grid", "seed", "n", "points", "label",
                     "guidance", "mask", "factor", "seed_b", "methods", "progress"):
            getattr(self, name).add_class(f"dl-{name.replace('_', '-')}")  # test hooks
        controls = W.VBox([self.model, self.task, self.method, self.methods, self.steps,
                           self.grid, self.seed, self.seed_b, self.n, self.points, self.label,
                           self.guidance, self.mask, self.factor, self.button, self.progress],
                          layout=W.Layout(min_width="330px"))
        view = W.VBox([self.status, self.error, W.HBox([self.xt_box, self.x0_box, self.source_box]),
                       out_box, self.stats], layout=W.Layout(margin="0 0 0 20px"))
        self.widget = W.HBox([controls, view])
        self.widget.add_class("dl-dashboard")
        self.model.observe(self._on_model, names="value")
        self.task.observe(self._on_task, names="value")
        self.button.on_click(self._on_click)
        self._on_model()

    # -- control visibility --------------------------------------------------------------
    def _show(self, widget, visible: bool) -> None:
        widget.layout.display = None if visible else "none"

    def _on_model(self, change=None) -> None:
        card = self.cards[self.model.value]
        names = card.class_names or [str(i) for i in range(card.num_classes or 0)]
        options = [("none", NO_CLASS)] + ([(name, i) for i, name in enumerate(names)]
                                          if card.num_classes else [])
        self.label.options = options
        self.label.value = NO_CLASS
        self._on_task()

    def _on_task(self, change=None) -> None:
        card, task = self.cards[self.model.value], self.task.value
        image = card.kind == "image"
        self._show(self.label, card.num_classes is not None)
        self._show(self.guidance, card.num_classes is not None)
        self._show(self.mask, task == "inpaint")
        self._show(self.factor, task == "super_resolve")
        self._show(self.seed_b, task == "interpolate")
        self._show(self.methods, task == "compare")
        self._show(self.method, task not in ("compare", "interpolate"))
        self._show(self.n, image)
        self._show(self.points, not image)
        self._show(self.source_box, task in ("inpaint", "colorize", "super_resolve"))

    # -- running -------------------------------------------------------------------------
    def request(self) -> runs.Request:
        """The controls as a :class:`runs.Request` (guidance w = 1 means no guidance pass)."""
        conditional = self.cards[self.model.value].num_classes is not None
        w = float(self.guidance.value)  # hidden controls (class, w) count only where shown
        label = self.label.value if conditional and self.label.value != NO_CLASS else None
        w = w if conditional else 1.0
        return runs.Request(
            model=self.model.value, task=self.task.value, method=self.method.value,
            steps=int(self.steps.value), seed=int(self.seed.value), n=int(self.n.value),
            points=int(self.points.value),
            grid=None if self.grid.value == DEFAULT_GRID else self.grid.value, label=label,
            guidance=None if w == 1.0 else w, mask=self.mask.value, factor=int(self.factor.value),
            seed_b=int(self.seed_b.value), methods=tuple(self.methods.value))

    def _data_for(self, card, model):
        """The training data of a 2-D model (drawn once), for the scatter background."""
        if card.kind == "image":
            return None
        if card.name not in self._data:
            from ..data import TOYS, make_toy

            name = model.info.get("dataset")
            self._data[card.name] = make_toy(name, 1000, seed=0)[0] if name in TOYS else None
        return self._data[card.name]

    def _on_click(self, _button=None) -> None:
        self.run(self.request())

    def run(self, req: runs.Request) -> runs.Result | None:
        """Run ``req`` with live previews; on a bad request show why and return None."""
        self.button.disabled = True
        self.error.value, self.last_error = "", None
        for box in (self.xt_box, self.x0_box, self.source_box):  # nothing stale from before
            box.layout.visibility = "hidden"
        try:
            card = self.cards.get(req.model)
            if card is None:
                raise ValueError(f"unknown model {req.model!r}; have {', '.join(self.cards)}")
            runs.check(card, req)
            self._busy(f"loading {html.escape(card.name)} …", 0, 1)
            model = self.cache.get(card.name)
            data = self._data_for(card, model)
            total = req.steps * (len(req.methods) if req.task == "compare" else 1)
            self._busy(f"{req.task}: sampling …", 0, total)
            result = runs.run(model, card, req, callback=self._previewer(data))
        except (ValueError, TypeError) as exc:
            self._fail(str(exc))
            return None
        except Exception as exc:  # shown, not swallowed: the page is the only console
            self._fail(f"unexpected {type(exc).__name__}: {exc}")
            raise
        finally:
            self.button.disabled = False
        self._finish(result, data)
        return result

    def _busy(self, text: str, value: int, total: int) -> None:
        self.status.value = text
        self.progress.max, self.progress.value = max(total, 1), value
        self.progress.description, self.progress.bar_style = "running", "info"

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.error.value = (f"<span style='color:#b00020'>⚠ {html.escape(message)}</span>")
        self.status.value = "Nothing was generated; change the settings and try again."
        self.progress.description, self.progress.bar_style = "error", "danger"

    def _previewer(self, data):
        state = {"count": 0, "shown": 0.0}

        def callback(step, t, x, x0_hat):
            state["count"] += 1
            if state["count"] > self.progress.max:
                self.progress.max = state["count"]  # adaptive samplers may take more steps
            self.progress.value = state["count"]
            now = time.perf_counter()
            last = state["count"] == self.progress.max  # the final step is always drawn
            if last or now - state["shown"] >= PREVIEW_EVERY_S:
                state["shown"] = now
                _put(self.xt, render.samples_png(x, data, zoom=2))
                _put(self.x0, render.samples_png(x0_hat, data, zoom=2))
                self.xt_box.layout.visibility = self.x0_box.layout.visibility = "visible"
                self.status.value = f"step {state['count']}, t = {t:.3f}"

        return callback

    def _finish(self, result: runs.Result, data) -> None:
        req = result.request
        _put(self.output, render.compare_png(result.rows, data) if result.rows
             else render.samples_png(result.samples, data))
        if result.sources is not None:
            _put(self.source, render.grid_png(result.sources, zoom=2))
            self.source_box.layout.visibility = "visible"
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.progress.description = "done"
        self.status.value = f"<b>{req.task}</b> on {html.escape(req.model)}: done."
        self.stats.value = _stats_html(result)
        self.last_result = result


def _put(image: W.Image, png: bytes) -> None:
    """Show ``png`` at its own pixel width (pages would otherwise stretch it)."""
    image.width = str(PILImage.open(io.BytesIO(png)).size[0])
    image.value = png


def _stats_html(result: runs.Result) -> str:
    req = result.request
    nfe = "?" if result.nfe is None else str(result.nfe)
    seeds = f"seed {req.seed}"
    if req.task == "interpolate":  # always deterministic DDIM
        method, grid = "ddim", req.grid or "uniform"
        seeds = f"seeds {req.seed} → {req.seed_b}"
    else:
        method = ", ".join(req.methods) if req.task == "compare" else req.method
        grid = req.grid or "sampler default"
    head = (f"{method} · {seeds} · {req.steps} steps · grid {grid} · NFE {nfe} · "
            f"wall time {result.seconds:.2f} s")
    if not result.rows:
        return head
    body = "".join(f"<tr><td>{m}</td><td>{nfe_ if nfe_ is not None else '?'}</td>"
                   f"<td>{s:.2f} s</td></tr>" for m, _, s, nfe_ in result.rows)
    return (f"{head}<br>rows top to bottom (2-D: plots left to right):"
            f"<table class='dl-compare'><tr><th>sampler</th><th>NFE</th>"
            f"<th>wall time</th></tr>{body}</table>")


def build_dashboard(checkpoints_dir=None) -> W.Widget:
    """The dashboard over every generative checkpoint in ``checkpoints_dir``
    (default: the bundled ``data/checkpoints``); display it, or serve it with Voilà."""
    dash = Dashboard(checkpoints_dir)
    dash.widget.dashboard = dash  # the handlers and state, for tests and power users
    return dash.widget
