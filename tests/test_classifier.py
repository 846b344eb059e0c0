"""The bundled MNIST classifier: safe save/load round trip, strict loading, accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusion_lab.classifier import (
    DEFAULT_CLASSIFIER_PATH,
    MNISTClassifier,
    classifier_data,
    load_classifier,
    save_classifier,
)
from diffusion_lab.registry import lookup


def small_net(seed=0):
    torch.manual_seed(seed)
    net = MNISTClassifier(widths=(4, 8), feature_dim=16)
    # give BatchNorm non-trivial running statistics so the round trip covers buffers
    net.train()
    with torch.no_grad():
        net(torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1)
    return net.eval()


def test_registered_and_shapes():
    assert lookup("MNISTClassifier") is MNISTClassifier
    net = small_net()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert net.features(x).shape == (5, 16)
    assert net(x).shape == (5, 10)
    # logits are the head applied to the features (in eval mode dropout is the identity)
    torch.testing.assert_close(net(x), net.head(net.features(x)))
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        net(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="floating"):
        net(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_round_trip_is_bit_exact(tmp_path):
    net = small_net()
    save_classifier(net, tmp_path / "clf", extra={"note": "test"})
    cfg = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert cfg["class"] == "MNISTClassifier" and cfg["kwargs"] == net.config()
    loaded = load_classifier(tmp_path / "clf")
    assert not loaded.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert torch.equal(net(x), loaded(x))


def test_strict_loading_names_the_tensor(tmp_path):
    net = small_net()
    path = save_classifier(net, tmp_path / "clf")
    weights = path / "model.safetensors"
    state = load_file(str(weights))

    missing = {k: v for k, v in state.items() if k != "head.bias"}
    save_file(missing, str(weights))
    with pytest.raises(ValueError, match=r"missing tensor.*head\.bias"):
        load_classifier(path)

    save_file({**state, "extra.weight": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match=r"unexpected tensor.*extra\.weight"):
        load_classifier(path)

    save_file({**state, "head.bias": torch.zeros(11)}, str(weights))
    with pytest.raises(ValueError, match=r"'head\.bias': file \[11\], network \[10\]"):
        load_classifier(path)

    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_classifier(tmp_path / "nowhere")


def test_bad_config():
    with pytest.raises(ValueError, match="widths"):
        MNISTClassifier(widths=(4,))
    with pytest.raises(ValueError, match="dropout"):
        MNISTClassifier(dropout=1.5)


@pytest.mark.skipif(
    not (DEFAULT_CLASSIFIER_PATH / "model.safetensors").is_file(),
    reason=f"bundled classifier missing: run benchmarks/train_classifier.py "
           f"(expected {DEFAULT_CLASSIFIER_PATH})",
)
def test_bundled_classifier_heldout_accuracy():
    net = load_classifier()
    x, y = classifier_data("test")
    assert len(y) == 500
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).double().mean().item()
    assert acc >= 0.98
    size = (DEFAULT_CLASSIFIER_PATH / "model.safetensors").stat().st_size
    assert size <= 500 * 1024
    card = json.loads((DEFAULT_CLASSIFIER_PATH / "metrics.json").read_text())
    assert card["heldout_accuracy"] == pytest.approx(acc, abs=1e-9)
