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
    html = player.to_jshtml()
    assert "<script" in html and html.count("data:image/png;base64") == 9


def test_show_headless_leaves_static_outputs(monkeypatch):
    from IPython.core.formatters import DisplayFormatter

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("DIFFUSION_LAB_HEADLESS", "1")
    assert widgets.is_headless()
    player = widgets.FramePlayer([torch.zeros(4, 2), torch.ones(4, 2)])
    player.show()
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["Image", "HTML"], kinds
    fmt = DisplayFormatter().format(shown[0])[0]
    assert "image/png" in fmt


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
