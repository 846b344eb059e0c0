"""Checkpoints: bit-exact round trips, strict loading, atomic writes, pickle refused unopened."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import diffusion_lab.atomic as atomic_mod
import diffusion_lab.checkpoint as ckpt_mod
from diffusion_lab.checkpoint import (
    PickleRefusedError,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
    sde_from_json,
    sde_to_json,
)
from diffusion_lab.nets import MLP, UNet
from diffusion_lab.schedules import CosineSchedule, LinearSchedule, PowerSchedule
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere (the nets zero-init their last layer: outputs would be 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net


def _small_unet(**kw) -> UNet:
    cfg = dict(in_channels=1, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(4,), num_classes=3, image_size=8, groups=4, heads=2)
    cfg.update(kw)
    return UNet(**cfg)


SDES = {
    "vp-linear": lambda: VPSDE(LinearSchedule(beta_min=0.2, beta_max=15.0)),
    "subvp-cosine": lambda: SubVPSDE(CosineSchedule(s=0.01, beta_max=30.0)),
    "vp-power": lambda: VPSDE(PowerSchedule(e=3.0)),
    "vp-cosine-unclipped": lambda: VPSDE(CosineSchedule(beta_max=None)),
    "ve": lambda: VESDE(sigma_min=0.02, sigma_max=40.0),
}


@pytest.mark.parametrize("name", sorted(SDES))
def test_sde_json_round_trip_gives_identical_coefficients(name):
    sde = SDES[name]()
    spec = json.loads(json.dumps(sde_to_json(sde)))
    back = sde_from_json(spec)
    assert type(back) is type(sde)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    for a, b in zip(sde.marginal(t), back.marginal(t), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(sde.diffusion(t), back.diffusion(t))


def test_round_trip_is_bit_exact(tmp_path):
    net = _randomise(_small_unet(), 0)
    ema = _randomise(_small_unet(), 1)
    sde = SDES["subvp-cosine"]()
    save_checkpoint(tmp_path / "ck", net, sde, ema=ema, step=123, data_shape=(1, 8, 8),
                    class_names=["a", "b", "c"], info={"dataset": "toy", "seed": 7})
    ck = load_checkpoint(tmp_path / "ck")
    for a, b in ((net, ck.net), (ema, ck.ema)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.rand(4, generator=g)
    y = torch.tensor([0, 1, 2, 3])  # 3 is the null class
    net.eval()
    ck.net.eval()
    with torch.no_grad():
        out, out2 = net(x, t, y), ck.net(x, t, y)
    assert out.abs().max() > 1e-3  # the comparison below can fail
    assert torch.equal(out, out2)
    assert ck.config["training"] == {"dataset": "toy", "seed": 7, "steps": 123}
    assert ck.data == {"shape": [1, 8, 8], "range": [-1.0, 1.0], "class_names": ["a", "b", "c"]}
    assert ck.config["package_version"] is not None
    assert sde_to_json(ck.sde) == sde_to_json(sde)
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temp dirs left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "ck").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert (tmp_path / "ck" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_optimizer_and_training_state_round_trip(tmp_path):
    net = _randomise(MLP(hidden=16, layers=2), 0)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 2), torch.rand(8)).pow(2).mean().backward()
        opt.step()
    gen = torch.Generator().manual_seed(5)
    torch.rand(3, generator=gen)
    state = _train_state(gen, 3, wall_time=1.5)
    save_checkpoint(tmp_path / "ck", net, VPSDE(), optimizer=opt, train_state=state, step=3)
    ck = load_checkpoint(tmp_path / "ck", training_state=True)
    fresh = torch.optim.AdamW(ck.net.parameters(), lr=1.0)
    fresh.load_state_dict(ck.optimizer_state)
    ref = opt.state_dict()
    got = fresh.state_dict()
    assert got["param_groups"] == ref["param_groups"]
    for i, s in ref["state"].items():
        for k, v in s.items():
            assert torch.equal(got["state"][i][k], v), (i, k)
    assert ck.train_state["step"] == 3 and ck.train_state["wall_time"] == 1.5
    assert torch.equal(ck.train_state["loss_history"], state["loss_history"])
    g2 = torch.Generator()
    g2.set_state(ck.train_state["generator_state"])
    assert torch.equal(torch.rand(4, generator=g2), torch.rand(4, generator=gen))


def _train_state(gen, step, wall_time=1.5):
    """A valid training state for ``step`` steps (what training.train saves)."""
    from diffusion_lab.resume import checkpoint_state, run_spec

    data = torch.zeros(4, 2)
    run = run_spec(VPSDE(), data, None, None, seed=0, batch_size=2, lr=1e-3, weight_decay=0.0,
                   warmup=0, grad_clip=1.0, ema_decay=0.9, t_min=1e-3, label_dropout=None)
    losses = torch.rand(step, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return checkpoint_state(gen, step, losses.tolist(), wall_time, 0.9, torch.device("cpu"), run)


class _MakesMarker:
    """Unpickling this object opens (creates) the marker file: code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_pickle_is_refused_without_unpickling(tmp_path, monkeypatch, suffix):
    payload = pickle.dumps({"state_dict": _MakesMarker(tmp_path / "pwned")})
    # the payload really executes code when unpickled (so the test can fail)
    probe = pickle.dumps(_MakesMarker(tmp_path / "probe"))
    pickle.loads(probe).close()
    assert (tmp_path / "probe").exists()

    def forbidden(*a, **k):
        raise AssertionError("tried to unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    f = tmp_path / f"model{suffix}"
    f.write_bytes(payload)
    with pytest.raises(PickleRefusedError, match="execute arbitrary"):
        load_checkpoint(f)
    only_pickles = tmp_path / "ckdir"
    only_pickles.mkdir()
    (only_pickles / f"weights{suffix}").write_bytes(payload)
    with pytest.raises(PickleRefusedError, match="pickle"):
        load_checkpoint(only_pickles)
    from diffusion_lab.model import GenerativeModel

    with pytest.raises(PickleRefusedError):
        GenerativeModel.load(f)
    assert not (tmp_path / "pwned").exists()


def test_strict_loading_names_the_tensor(tmp_path):
    net = _randomise(MLP(hidden=16, layers=2), 0)
    path = save_checkpoint(tmp_path / "ck", net, VPSDE())
    weights_file = path / "model.safetensors"
    good = load_file(str(weights_file))

    bad = dict(good)
    del bad["linears.1.weight"]
    save_file(bad, str(weights_file))
    with pytest.raises(ValueError, match=r"missing tensors: 'linears\.1\.weight'"):
        load_checkpoint(path)

    bad = dict(good, **{"extra.bias": torch.zeros(3)})
    save_file(bad, str(weights_file))
    with pytest.raises(ValueError, match=r"unexpected tensors: 'extra\.bias'"):
        load_checkpoint(path)

    bad = dict(good, **{"out.weight": torch.zeros(2, 17)})
    save_file(bad, str(weights_file))
    with pytest.raises(ValueError, match=r"'out\.weight': file \[2, 17\], network \[2, 16\]"):
        load_checkpoint(path)

    save_file(good, str(weights_file))
    assert torch.equal(load_checkpoint(path).net.out.weight, net.out.weight)


def test_unregistered_or_unknown_classes_are_errors(tmp_path):
    class Anonymous(nn.Module):
        def config(self):
            return {}

    with pytest.raises(TypeError, match="not registered"):
        save_checkpoint(tmp_path / "a", Anonymous(), VPSDE())
    assert not (tmp_path / "a").exists()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="neither empty nor"):
        save_checkpoint(tmp_path / "docs", MLP(hidden=8, layers=1), VPSDE())
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", MLP(hidden=8, layers=1), VPSDE())
    path = save_checkpoint(tmp_path / "b", MLP(hidden=8, layers=1), VPSDE())
    cfg = json.loads((path / "config.json").read_text())
    cfg["net"]["class"] = "NoSuchNet"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json: field 'net\.class': unknown network "
                       r"class 'NoSuchNet'"):
        load_checkpoint(path)
    cfg["net"]["class"] = "MLP"
    cfg["sde"]["schedule"]["class"] = "os.system"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="field 'sde.schedule.class': unknown schedule class "
                       "'os.system'"):
        load_checkpoint(path)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_failed_final_rename_keeps_previous_checkpoint(tmp_path, monkeypatch, exchange):
    old_net = _randomise(MLP(hidden=8, layers=1), 0)
    path = save_checkpoint(tmp_path / "ck", old_net, VPSDE(), step=1)
    (path / "README.md").write_text("model card")
    before = _weights(path)
    real_replace = os.replace

    def crash(*a, **k):
        raise OSError("simulated crash before the final rename")

    def crash_on_commit(src, dst):
        if os.path.basename(str(src)).startswith(".ck.tmp-"):
            crash()
        return real_replace(src, dst)

    if exchange:
        monkeypatch.setattr(atomic_mod, "_exchange", crash)
    else:
        monkeypatch.setattr(atomic_mod, "_exchange", lambda a, b: False)
        monkeypatch.setattr(atomic_mod.os, "replace", crash_on_commit)
    new_net = _randomise(MLP(hidden=8, layers=1), 1)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, new_net, VPSDE(), step=2)
    monkeypatch.undo()
    after = _weights(path)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert load_checkpoint(path).info["steps"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck"]
    # a successful save replaces it and carries the model card over
    save_checkpoint(path, new_net, VPSDE(), step=2)
    assert load_checkpoint(path).info["steps"] == 2
    assert torch.equal(_weights(path)["out.weight"], new_net.out.weight.detach())
    assert (path / "README.md").read_text() == "model card"
    assert sorted(os.listdir(path)) == ["README.md", "complete.json", "config.json",
                                        "model.safetensors"]


def test_crash_while_writing_files_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck", _randomise(MLP(hidden=8, layers=1), 0), VPSDE(),
                           step=1)
    before = _weights(path)
    calls = []

    def dies_on_second_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-write")
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", dies_on_second_file)
    net = _randomise(MLP(hidden=8, layers=1), 1)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, net, VPSDE(), ema=net, step=2)
    after = _weights(path)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_interrupted_swap_is_recovered_only_explicitly(tmp_path):
    """A save killed between the two renames (where no atomic exchange exists) leaves the
    complete old and new copies beside the final name. Loading renames nothing and says how
    to recover; recover_checkpoint puts the newest back; the next save cleans up."""
    path = save_checkpoint(tmp_path / "ck", _randomise(MLP(hidden=8, layers=1), 0), VPSDE(),
                           step=5)
    newer = save_checkpoint(tmp_path / "staging", _randomise(MLP(hidden=8, layers=1), 1),
                            VPSDE(), step=6)
    os.replace(path, tmp_path / ".ck.old-deadbeef")
    os.replace(newer, tmp_path / ".ck.tmp-cafe")
    (tmp_path / ".ck.tmp-half").mkdir()  # an unfinished copy: no marker
    (tmp_path / ".ck.tmp-half" / "config.json").write_text("")  # even with a 0-byte config
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\.ck\.tmp-cafe.*recover_checkpoint"):
        load_checkpoint(path)
    assert sorted(os.listdir(tmp_path)) == listing  # loading renamed nothing
    assert "restored" in recover_checkpoint(path)
    assert load_checkpoint(path).info["steps"] == 6  # the newest complete copy
    with pytest.raises(FileExistsError, match="nothing to recover"):
        recover_checkpoint(path)
    save_checkpoint(path, MLP(hidden=8, layers=1), VPSDE(), step=7)
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # leftovers cleaned by the next save


def test_loading_ignores_a_changed_default_dtype():
    """Bundled float32 weights load as float32 even under torch.set_default_dtype(float64)
    (a notebook may set it for exact math before loading a model)."""
    from diffusion_lab.classifier import load_classifier
    from diffusion_lab.model import GenerativeModel

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = GenerativeModel.load("data/checkpoints/mnist_cond")
        clf = load_classifier("data/checkpoints/mnist_classifier")
    finally:
        torch.set_default_dtype(old)
    assert next(model.net.parameters()).dtype == torch.float32
    assert next(clf.parameters()).dtype == torch.float32
