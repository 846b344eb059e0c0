"""viz and widgets: figures build headless (Agg), players hold and show the right frames."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lab import viz, widgets  # noqa: E402
from diffusion_lab.schedules import CosineSchedule, LinearSchedule  # noqa: E402
from diffusion_lab.sde import VPSDE  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


# -- viz -------------------------------------------------------------------------------------
def test_image_grid_maps_minus_one_one_to_unit_interval_and_tiles():
    x = torch.full((4, 1, 5, 5), -1.0)
    x[1] = 1.0
    x[2] = 0.0
    grid = viz.image_grid(x, nrow=2, padding=1)
    assert grid.shape == (2 * 5 + 3, 2 * 5 + 3, 3)  # make_grid repeats 1 channel to RGB
    assert np.allclose(grid[1:6, 1:6], 0.0)  # image 0: -1 -> 0
    assert np.allclose(grid[1:6, 7:12], 1.0)  # image 1: +1 -> 1
    assert np.allclose(grid[7:12, 1:6], 0.5)  # image 2:  0 -> 0.5


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="x must be"):
        viz.image_grid(torch.zeros(2, 5, 8, 8))


@pytest.mark.parametrize("n", [1, 7, 20])
def test_read_image_grid_inverts_the_cli_grid_png(tmp_path, n):
    from diffusion_lab._cli import save_figure

    x = torch.rand(n, 1, 28, 28, generator=_gen(n)) * 2 - 1
    save_figure(x, tmp_path / "grid.png")
    back = viz.read_image_grid(tmp_path / "grid.png", n)
    assert back.shape == (n, 1, 28, 28)
    assert (back - x).abs().max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    if n > 1:  # a cell shifted by one would not match
        assert (back[:-1] - x[1:]).abs().max() > 0.5


def test_read_image_grid_rejects_a_layout_the_png_does_not_have(tmp_path):
    from diffusion_lab._cli import save_figure

    save_figure(torch.zeros(20, 1, 28, 28), tmp_path / "grid.png")
    with pytest.raises(ValueError, match="n=16 .* size=28"):
        viz.read_image_grid(tmp_path / "grid.png", 16)
    with pytest.raises(ValueError, match="size=27"):
        viz.read_image_grid(tmp_path / "grid.png", 20, size=27)
    with pytest.raises(TypeError, match="n must be an int"):
        viz.read_image_grid(tmp_path / "grid.png", 20.0)


def test_show_images_and_scatter_label_axes():
    ax = viz.show_images(torch.rand(6, 3, 8, 8) * 2 - 1, title="imgs")
    assert ax.get_title() == "imgs" and ax.get_xlabel() == "6 images"
    pts = torch.randn(100, 2, generator=_gen())
    ax = viz.scatter_2d(pts, lim=3)
    assert _labelled(ax)
    assert np.allclose(ax.collections[0].get_offsets(), pts.numpy())
    with pytest.raises(ValueError, match="points"):
        viz.scatter_2d(torch.zeros(10, 3))


def test_plot_trajectories_draws_every_path():
    traj = torch.randn(7, 12, 2, generator=_gen())
    ax = viz.plot_trajectories(traj, n_paths=5)
    assert _labelled(ax)
    assert len(ax.lines) == 5
    assert np.allclose(ax.lines[2].get_xydata(), traj[:, 2].numpy())


def test_quiver_field_shows_the_score_direction():
    # score of N(0, I) is -x: every arrow points to the origin
    ax = viz.quiver_field(lambda x, t: -x, t=0.5, n=5, lim=2.0)
    assert _labelled(ax)
    q = ax.collections[0]
    xy, uv = q.get_offsets(), np.stack([q.U, q.V], 1)
    nonzero = np.linalg.norm(xy, axis=1) > 0
    cos = (xy[nonzero] * uv[nonzero]).sum(1) / np.linalg.norm(xy[nonzero], axis=1)
    assert np.allclose(cos, -1.0)


def test_quiver_field_colour_scale_is_the_one_given_and_arrows_fit_the_grid():
    ax = viz.quiver_field(lambda x, t: -x * (1 + t[:, None]), t=0.5, n=5, lim=2.0, clim=(-3.0, 4.0))
    q = ax.collections[0]
    assert q.get_clim() == (-3.0, 4.0)
    assert np.allclose(q.get_array(), np.log(1.5 * np.linalg.norm(q.get_offsets(), axis=1)
                                             + 1e-30))
    assert q.scale_units == "xy" and np.isclose(1 / q.scale, 0.8 * 1.0)  # spacing 4/(5-1) = 1
    ax2 = viz.quiver_field(lambda x, t: -x * (1 + t[:, None]), t=0.9, n=5, lim=2.0)
    assert ax2.collections[0].get_clim() != (-3.0, 4.0)  # default: this frame's own range


def test_plot_schedules_plots_the_schedule_values():
    sched = {"linear": LinearSchedule(), "cosine": CosineSchedule()}
    axes = viz.plot_schedules(sched, quantities=("beta", "alpha_bar", "log_snr"), n=11)
    assert len(axes) == 3 and all(_labelled(ax) for ax in axes)
    t, ab = axes[1].lines[1].get_xydata().T
    assert np.allclose(ab, CosineSchedule().alpha_bar(torch.tensor(t)).numpy())
    with pytest.raises(ValueError, match="unknown quantity"):
        viz.plot_schedules(sched, quantities=("nope",))


# -- widgets ---------------------------------------------------------------------------------
def test_frame_player_counts_frames_and_shows_frame_k():
    frames = [torch.randn(50, 2, generator=_gen(k)) for k in range(6)]
    player = widgets.FramePlayer({"pts": frames}, values=np.linspace(0, 1, 6))
    assert player.n_frames == 6 and player.slider.max == 5 and player.play.max == 5
    player.slider.value = 4  # as if the user dragged the slider
    assert player.current == 4 and player.caption.value == "t = 0.8"
    assert np.allclose(player.shown_data("pts"), frames[4].numpy())
    assert player.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_frame_player_images_show_the_grid_of_frame_k():
    frames = [torch.rand(4, 1, 6, 6, generator=_gen(k)) * 2 - 1 for k in range(3)]
    player = widgets.FramePlayer({"a": frames, "b": frames[::-1]})
    player.slider.value = 2
    assert np.allclose(player.shown_data("a"), viz.image_grid(frames[2]))
    assert np.allclose(player.shown_data("b"), viz.image_grid(frames[0]))


def test_frame_player_rejects_unequal_panels():
    with pytest.raises(ValueError, match="same number"):
        widgets.FramePlayer({"a": [torch.zeros(3, 2)] * 2, "b": [torch.zeros(3, 2)] * 3})
    with pytest.raises(ValueError, match="values"):
        widgets.FramePlayer([torch.zeros(3, 2)] * 2, values=[0.0])


def test_static_fallback_figure_and_animation():
    frames = [torch.randn(30, 2, generator=_gen(k)) for k in range(9)]
    player = widgets.FramePlayer({"lin": frames, "cos": frames}, values=np.linspace(0, 1, 9))
    fig = player.static_figure(n=5)
    axes = fig.get_axes()
    assert len(axes) == 2 * 5 and all(_labelled(ax) for ax in axes)
    assert [ax.get_title() for ax in axes[:5]] == [f"t = {v:.3g}" for v in (0, .25, .5, .75, 1)]
    assert np.allclose(axes[6].collections[0].get_offsets(), frames[2].numpy())  # row cos, t=.25
    info = _gif_of(player.gif_html())
    assert info["frames"] == 9


def test_show_headless_leaves_a_png_strip_and_a_gif_img_without_script(monkeypatch):
    from IPython.core.formatters import DisplayFormatter

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("DIFFUSION_LAB_HEADLESS", "1")
    assert widgets.is_headless()
    frames = [torch.randn(40, 2, generator=_gen(k)) for k in range(7)]
    player = widgets.FramePlayer(frames, values=np.linspace(0, 1, 7))
    player.show()
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["Image", "HTML"], kinds
    fmt = DisplayFormatter().format(shown[0])[0]
    assert "image/png" in fmt
    html = shown[1].data
    assert "<script" not in html.lower() and html.startswith('<img src="data:image/gif;base64,')
    info = _gif_of(html)
    assert info["frames"] == 7 and info["duration_ms"] == player.interval_ms
    # the picture is rendered at the size it is displayed at: <img width> = figure pixels
    w, h = player.figure().canvas.get_width_height()
    assert (info["width"], info["height"]) == (w, h)
    assert f'width="{w}"' in html and f'height="{h}"' in html
    assert (w, h) == (round(player.panel_size * player.dpi), round((player.panel_size + .4) * player.dpi))


def _gif_of(html):
    import base64
    import re

    from diffusion_lab.gif import gif_info

    b64 = re.search(r'src="data:image/gif;base64,([A-Za-z0-9+/=]+)"', html).group(1)
    return gif_info(base64.b64decode(b64))


def _gif_frames(data):
    import io

    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as im:
        return [np.asarray(f.convert("RGB")).astype(int) for f in ImageSequence.Iterator(im)]


def test_gif_frames_follow_the_data_with_one_scale_and_the_caption_of_their_frame():
    # one point that moves right: frame k must show it further right, on the same axes
    frames = [torch.tensor([[-2.0 + k, 0.0]]) for k in range(5)]
    player = widgets.FramePlayer({"p": frames}, captions=[f"frame {k}" for k in range(5)],
                                 lim=3.0)
    gif = player.animated_gif()
    pics = _gif_frames(gif)
    assert len(pics) == 5
    centres = []
    for pic in pics:
        dark = (pic.sum(axis=2) < 600) & (np.abs(pic[..., 0] - pic[..., 2]) > 60)  # the blue dot
        cols = np.nonzero(dark.any(axis=0))[0]
        centres.append(cols.mean())
    steps = np.diff(centres)
    assert np.all(steps > 0) and np.allclose(steps, steps.mean(), rtol=0.15), centres
    # the title strip differs between frames (the caption is drawn into each frame)...
    top = [p[: p.shape[0] // 8] for p in pics]
    assert all(np.abs(top[k] - top[k + 1]).sum() > 0 for k in range(4))
    # ...and the live figure is put back on the current frame afterwards
    assert np.allclose(player.shown_data("p"), frames[0].numpy())
    assert player._suptitle.get_text() == "frame 0"


def test_gif_rejects_bad_arguments():
    from matplotlib.figure import Figure

    from diffusion_lab.gif import figure_gif, gif_info

    with pytest.raises(ValueError, match="n_frames"):
        figure_gif(Figure(), lambda k: None, 0)
    with pytest.raises(ValueError, match="interval_ms"):
        figure_gif(Figure(), lambda k: None, 2, interval_ms=5)
    with pytest.raises(ValueError, match="not a GIF"):
        player = widgets.FramePlayer([torch.zeros(3, 2)])
        player.show_frame(0)
        gif_info(player.image.value)


def test_live_caption_changes_after_the_picture(monkeypatch):
    frames = [torch.randn(10, 2, generator=_gen(k)) for k in range(3)]
    player = widgets.FramePlayer(frames)
    player.figure()
    order = []
    player.image.observe(lambda ch: order.append("image"), names="value")
    player.caption.observe(lambda ch: order.append("caption"), names="value")
    player.slider.value = 2
    assert order == ["image", "caption"]
    w, h = player.figure().canvas.get_width_height()
    assert (player.image.width, player.image.height) == (str(w), str(h))


class _FakeShell:
    def __init__(self, kernel=None, config=None):
        if kernel is not None:
            self.kernel = kernel
        self.config = config or {}


class Shell(_FakeShell):  # Colab's kernel shell is called "Shell", not ZMQInteractiveShell
    pass


@pytest.mark.parametrize("env, shell, headless", [
    ("1", Shell(kernel=object()), True),  # the override wins
    ("0", None, False),
    ("", None, False),
    (None, None, True),  # plain python: no IPython shell
    (None, _FakeShell(), True),  # terminal IPython: no kernel
    (None, Shell(kernel=object()), False),  # Colab-like kernel shell
    (None, _FakeShell(config={"IPKernelApp": {"connection_file": "k.json"}}), False),
])
def test_is_headless_detects_a_kernel(monkeypatch, env, shell, headless):
    if env is None:
        monkeypatch.delenv("DIFFUSION_LAB_HEADLESS", raising=False)
    else:
        monkeypatch.setenv("DIFFUSION_LAB_HEADLESS", env)
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    assert widgets.is_headless() is headless


def test_trajectory_recorder_keeps_every_kth_step_and_the_last():
    rec = widgets.TrajectoryRecorder(every=3, max_items=2)
    x = torch.randn(5, 2, generator=_gen())
    for step in range(8):
        rec(step, torch.full((5,), 1 - step / 8), x + step, x - step)
    player = rec.player()
    assert rec.steps == [0, 3, 6, 7] and player.n_frames == 4
    player.slider.value = 1
    assert np.allclose(player.shown_data("$x_t$"), (x + 3)[:2].numpy())
    assert np.allclose(player.shown_data(r"$\hat x_0$"), (x - 3)[:2].numpy())
    assert player.caption.value == "step 3, t = 0.625"


def test_forward_player_uses_the_same_noise_for_every_process():
    x0 = torch.randn(20, 2, generator=_gen(1))
    times = [0.0, 0.3, 1.0]
    player = widgets.forward_player(x0, {"lin": LinearSchedule(), "cos": VPSDE(CosineSchedule())},
                                    times, seed=5)
    z = torch.randn(x0.shape, generator=_gen(5), dtype=x0.dtype)
    m, s = VPSDE(CosineSchedule()).marginal(torch.tensor([0.3]))
    assert torch.allclose(player.frame(1)["cos"], (m * x0 + s * z).float(), atol=1e-6)
    assert torch.allclose(player.frame(0)["lin"], x0.float())
