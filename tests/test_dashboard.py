"""The dashboard without a browser: its computations (runs), its PNGs (render), its widgets.

The task checks hold each constraint exactly (inpaint keeps the known pixels, colorize the
luminance, super-resolve the pooled image, interpolate's ends are DDIM decodes of the two
noises); the widget tests press the button through its click handler.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diffusion_lab.dashboard import Dashboard, Request, build_dashboard, check, run, runs
from diffusion_lab.dashboard.render import grid_array, scatter_array
from diffusion_lab.data import luminance
from diffusion_lab.samplers import SAMPLERS


@pytest.fixture(scope="module")
def dash():
    torch.set_num_threads(1)
    return Dashboard()


def _model(dash, name):
    return dash.cache.get(name), dash.cards[name]


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# -- runs: each task does what it says ------------------------------------------------------
def test_inpaint_keeps_the_known_pixels_exactly(dash):
    model, card = _model(dash, "mnist_cond")
    req = Request("mnist_cond", "inpaint", method="ddim", steps=3, n=2, mask="left")
    out = run(model, card, req)
    src = runs.sources(model, req)
    assert torch.equal(out.samples[..., 14:], src[..., 14:])
    assert not torch.allclose(out.samples[..., :14], src[..., :14], atol=0.05)
    assert torch.equal(out.sources[..., :14], torch.full_like(src[..., :14], -1.0))


def test_random_pixel_mask_is_seeded_and_about_half():
    a, b = runs.make_mask("random pixels", 2, 28, 28, 5), runs.make_mask("random pixels", 2, 28,
                                                                         28, 5)
    assert torch.equal(a, b) and 0.4 < float(a.mean()) < 0.6
    assert not torch.equal(a, runs.make_mask("random pixels", 2, 28, 28, 6))
    centre = runs.make_mask("center", 1, 28, 28, 0)
    assert float(centre.sum()) == 14 * 14 and centre[0, 0, 14, 14] == 1 and centre[0, 0, 0, 0] == 0


def test_colorize_keeps_the_luminance_of_the_sources(dash):
    model, card = _model(dash, "colour_mnist")
    req = Request("colour_mnist", "colorize", method="ddim", steps=3, n=2)
    out = run(model, card, req)
    src = runs.sources(model, req)
    assert out.samples.shape == (2, 3, 28, 28)
    torch.testing.assert_close(luminance(out.samples), luminance(src), atol=2e-5, rtol=0)
    torch.testing.assert_close(out.sources[:, :1], luminance(src))


def test_super_resolve_keeps_the_pooled_image(dash):
    model, card = _model(dash, "mnist_cond")
    for factor in (2, 4):
        req = Request("mnist_cond", "super_resolve", method="ddim", steps=3, n=2, factor=factor)
        out = run(model, card, req)
        src = runs.sources(model, req)
        torch.testing.assert_close(F.avg_pool2d(out.samples, factor), F.avg_pool2d(src, factor),
                                   atol=2e-5, rtol=0)


def test_interpolate_ends_are_the_ddim_decodes_of_the_two_noises(dash):
    model, card = _model(dash, "colour_mnist")
    out = run(model, card, Request("colour_mnist", "interpolate", steps=3, n=3, seed=4, seed_b=9))
    assert out.samples.shape == (3, 3, 28, 28) and out.nfe == 9
    for k, seed in ((0, 4), (2, 9)):
        z = model.sde.prior_sample((1, 3, 28, 28), generator=torch.Generator().manual_seed(seed))
        ddim = SAMPLERS["ddim"](model.ema or model.net, model.sde, z, steps=3, grid="uniform")
        torch.testing.assert_close(out.samples[k:k + 1], ddim.clamp(-1, 1), atol=1e-5, rtol=0)


def test_compare_runs_each_sampler_on_the_same_seed(dash):
    model, card = _model(dash, "mnist_cond")
    req = Request("mnist_cond", "compare", steps=3, n=2, seed=7, methods=("ddim", "edm"))
    out = run(model, card, req)
    assert [r[0] for r in out.rows] == ["ddim", "edm"]
    assert out.rows[0][3] == 3  # DDIM: one network evaluation per step
    for method, x, _, _ in out.rows:
        assert torch.equal(x, model.generate(2, method=method, steps=3, seed=7))
    assert out.nfe == sum(r[3] for r in out.rows)


def test_generate_on_a_2d_model_returns_points(dash):
    model, card = _model(dash, "toy_two_moons")
    out = run(model, card, Request("toy_two_moons", steps=5, points=300))
    assert out.is_points and out.samples.shape == (300, 2) and out.nfe == 5


@pytest.mark.parametrize("model, changes, words", [
    ("mnist_cond", dict(task="colorize"), "grey-scale"),
    ("toy_two_moons", dict(task="inpaint"), "needs an image model"),
    ("toy_two_moons", dict(task="super_resolve"), "needs an image model"),
    ("colour_mnist", dict(label=3), "unconditional"),
    ("mnist_cond", dict(guidance=2.0), "needs a class"),
    ("mnist_cond", dict(task="compare", methods=()), "at least one sampler"),
    ("mnist_cond", dict(task="interpolate", n=1), "n >= 2"),
    ("mnist_cond", dict(method="nope"), "method must be one of"),
    ("mnist_cond", dict(grid="nope"), "time grid must be one of"),
    ("mnist_cond", dict(steps=0), "steps must lie in"),
    ("mnist_cond", dict(n=17), "n must lie in"),
    ("mnist_cond", dict(task="inpaint", mask="nope"), "mask must be one of"),
    ("mnist_cond", dict(task="super_resolve", factor=3), "factor must be one of"),
])
def test_check_refuses_bad_combinations_in_words(dash, model, changes, words):
    with pytest.raises(ValueError, match=words):
        check(dash.cards[model], Request(model, **changes))


# -- render ----------------------------------------------------------------------------------
def test_grid_places_each_image_with_gaps_and_zoom():
    x = torch.stack([torch.full((1, 2, 3), -1.0), torch.full((1, 2, 3), 1.0)])
    a = grid_array(x, cols=2, zoom=2, gap=1)
    assert a.shape == (4, 14, 3)  # (2) x 2 rows, (3 + 1 + 3) x 2 columns
    assert (a[:, :6] == 0).all() and (a[:, 6:8] == 255).all() and (a[:, 8:] == 255).all()
    assert (grid_array(torch.zeros(3, 1, 2, 2), cols=2, zoom=1, gap=0)[2:, 2:] == 255).all()


def test_scatter_draws_points_where_they_are():
    a = scatter_array(torch.tensor([[0.0, 0.0], [2.9, 2.9], [10.0, 0.0]]), size=61, extent=3.0)
    assert tuple(a[30, 30]) == (31, 90, 160) and tuple(a[1, 59]) == (31, 90, 160)
    assert (a == (31, 90, 160)).all(axis=2).sum() == 8  # two 2x2 dots; (10, 0) is outside


# -- the widgets, driven through the click handler --------------------------------------------
def _press(dash, **values):
    for name, value in values.items():
        getattr(dash, name).value = value
    before = dash.output.value
    dash.button.click()
    return before


def test_the_button_makes_a_new_output_image_with_live_previews():
    app = build_dashboard()
    dash = app.dashboard
    assert "dl-generate" in dash.button._dom_classes and "dl-output" in dash.output._dom_classes
    before = _press(dash, model="mnist_cond", task="generate", steps=3, n=2, label=5,
                    guidance=2.0, method="ddim")
    assert dash.output.value != before and _png(dash.output.value).shape == (84, 174, 3)
    assert dash.last_error is None and dash.error.value == ""
    assert dash.progress.value == dash.progress.max == 3 and dash.progress.description == "done"
    assert dash.xt.value and dash.x0.value  # the live previews were drawn
    assert dash.xt_box.layout.visibility == "visible"
    assert "NFE 3" in dash.stats.value and dash.last_result.request.label == 5
    assert dash.last_result.request.guidance == 2.0


def test_a_bad_combination_is_shown_and_the_app_recovers(dash):
    _press(dash, model="mnist_cond", task="generate", steps=2, n=1, method="ddim")
    good = dash.output.value
    before = _press(dash, task="colorize")
    assert before == good and dash.output.value == good  # nothing changed ...
    assert "colour (RGB)" in dash.error.value and "grey-scale" in dash.last_error
    assert dash.progress.bar_style == "danger" and not dash.button.disabled
    assert dash.xt_box.layout.visibility == dash.source_box.layout.visibility == "hidden"
    _press(dash, task="generate", seed=3)  # ... and the next request works
    assert dash.output.value != good and dash.error.value == "" and dash.last_error is None


def test_interpolate_hides_the_previews_of_the_run_before(dash):
    _press(dash, model="mnist_cond", task="generate", steps=2, n=2, method="ddim",
           guidance=1.0, seed=0)
    assert dash.xt_box.layout.visibility == "visible"
    _press(dash, task="interpolate", seed_b=3)
    assert dash.xt_box.layout.visibility == "hidden" and dash.last_error is None
    assert "ddim · seeds 0 → 3 · 2 steps · grid uniform · NFE 4" in dash.stats.value
    dash.task.value = "generate"


def test_controls_follow_the_model_and_task(dash):
    dash.model.value = "colour_mnist"
    assert dash.label.layout.display == "none" and dash.label.options == (("none", -1),)
    dash.model.value = "mnist_cond"
    assert dash.label.layout.display is None and len(dash.label.options) == 11
    dash.task.value = "compare"
    assert dash.methods.layout.display is None and dash.method.layout.display == "none"
    assert dash.task.layout.display is None  # hiding one control hides no other
    dash.model.value = "toy_two_moons"
    assert dash.points.layout.display is None and dash.n.layout.display == "none"
    dash.task.value = "generate"
    dash.model.value = "mnist_cond"


def test_hidden_class_and_guidance_do_not_leak_into_an_unconditional_model(dash):
    _press(dash, model="mnist_cond", task="generate", steps=2, n=1, method="ddim")
    dash.label.value, dash.guidance.value = 3, 2.0
    dash.model.value = "colour_mnist"
    req = dash.request()
    assert req.label is None and req.guidance is None
    dash.model.value = "mnist_cond"


def test_the_2d_background_is_the_data_the_model_learned(dash):
    model, card = _model(dash, "toy_two_moons")
    data = dash._data_for(card, model)
    x = run(model, card, Request("toy_two_moons", steps=20, points=2000)).samples
    torch.testing.assert_close(x.std(0), data.std(0), atol=0.1, rtol=0)  # same scale ...
    torch.testing.assert_close(x.mean(0), data.mean(0), atol=0.1, rtol=0)  # ... and place



def test_every_registered_sampler_is_offered_and_runs(dash):
    """The sampler menus list SAMPLERS, the later-registered unipc and restart included, and
    compare runs them from one seed (NFE: unipc 1 per step; restart 6 steps + a 2-step segment)."""
    for menu in (dash.method, dash.methods):
        assert list(menu.options) == list(SAMPLERS) and {"unipc", "restart"} <= set(menu.options)
    model, card = _model(dash, "mnist_cond")
    req = Request("mnist_cond", "compare", steps=6, n=2, seed=7, methods=("unipc", "restart"))
    out = run(model, card, req)
    assert [(r[0], r[3]) for r in out.rows] == [("unipc", 6), ("restart", 8)]
    for method, x, _, _ in out.rows:
        assert torch.equal(x, model.generate(2, method=method, steps=6, seed=7))
