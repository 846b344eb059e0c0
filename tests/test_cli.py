"""The command line: train + sample smoke runs on a 2-D toy and on MNIST, resume, --slim."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from diffusion_lab.__main__ import main
from diffusion_lab.checkpoint import load_checkpoint
from diffusion_lab.model import GenerativeModel

TOY = ["train", "--dataset", "two_moons", "--n-points", "512", "--batch-size", "32",
       "--hidden", "16", "--layers", "2", "--no-progress"]


def test_train_and_sample_on_a_toy(tmp_path, capsys):
    out = tmp_path / "moons"
    assert main(TOY + ["--steps", "20", "--checkpoint-every", "10", "--out", str(out),
                       "--class-conditional", "--seed", "1"]) == 0
    card = (out / "README.md").read_text()
    for needle in ("--dataset two_moons", "steps: 20", "wall time:", "hardware: CPU",
                   "final loss", "samples.png", "MLP", "label dropout 0.1"):
        assert needle in card, needle
    assert Image.open(out / "samples.png").format == "PNG"
    ck = load_checkpoint(out, training_state=True)
    assert ck.train_state["step"] == 20 and ck.info["dataset"] == "two_moons"
    assert ck.data["shape"] == [2] and ck.data["class_names"] == ["0", "1"]
    # resume to more steps; the model card and sample plot survive checkpoint rewrites
    assert main(TOY + ["--steps", "30", "--out", str(out), "--class-conditional", "--seed", "1",
                       "--resume", "--checkpoint-every", "10"]) == 0
    assert load_checkpoint(out, training_state=True).train_state["step"] == 30
    assert "steps: 30" in (out / "README.md").read_text()
    png = tmp_path / "scatter.png"
    assert main(["sample", "--checkpoint", str(out), "--n", "200", "--steps", "5",
                 "--labels", "1", "--guidance", "2", "--out", str(png), "--no-progress"]) == 0
    assert Image.open(png).format == "PNG"
    assert "wrote 200 samples" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["moons", "scatter.png"]


def test_train_mnist_slim_and_sample_grid(tmp_path):
    out = tmp_path / "mnist"
    assert main(["train", "--dataset", "mnist", "--steps", "2", "--batch-size", "4",
                 "--base-channels", "8", "--channel-mults", "1,2", "--attention-resolutions", "",
                 "--class-conditional", "--card-samples", "4", "--out", str(out), "--slim",
                 "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "complete.json", "config.json",
                                       "model.safetensors", "samples.png"]
    model = GenerativeModel.load(out)
    assert model.data_shape == (1, 28, 28) and model.num_classes == 10 and model.ema is None
    assert Image.open(out / "samples.png").size == (2 * 30 + 2, 2 * 30 + 2)  # 2x2 grid, pad 2
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(out), "--n", "3", "--steps", "2", "--labels",
                 "cycle", "--out", str(grid), "--no-progress"]) == 0
    assert Image.open(grid).size == (2 * 30 + 2, 2 * 30 + 2)


def test_sample_refuses_pickles_and_bad_arguments(tmp_path, capsys):
    f = tmp_path / "model.pth"
    f.write_bytes(b"\x80\x04not really")
    assert main(["sample", "--checkpoint", str(f), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to load") and "pickle" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar", "--steps", "1", "--out", str(tmp_path / "c")])


@pytest.mark.parametrize("method", ["unipc", "restart"])
def test_sample_accepts_every_registered_sampler(tmp_path, monkeypatch, capsys, method):
    """``--method`` choices come from SAMPLERS: unipc and restart parse and reach
    ``GenerativeModel.generate``, which returns what the sampler itself returns there."""
    from diffusion_lab.__main__ import build_parser

    toy = os.path.join(os.path.dirname(__file__), "..", "data", "checkpoints", "toy_two_moons")
    png = tmp_path / f"{method}.png"
    argv = ["sample", "--checkpoint", toy, "--method", method, "--steps", "6", "--n", "32",
            "--out", str(png), "--no-progress"]
    assert build_parser().parse_args(argv).method == method
    got = []
    real = GenerativeModel.generate

    def spy(self, n, **kw):
        got.append((kw, real(self, n, **kw)))
        return got[-1][1]

    monkeypatch.setattr(GenerativeModel, "generate", spy)
    assert main(argv) == 0 and Image.open(png).format == "PNG"
    assert f"wrote 32 samples to {png}" in capsys.readouterr().out
    (kw, x), = got
    assert kw["method"] == method and kw["steps"] == 6 and kw["seed"] == 0
    model = GenerativeModel.load(toy)
    info = {}
    assert torch.equal(x, real(model, 32, method=method, steps=6, seed=0, info=info))
    assert info["method"] == method
    assert not torch.equal(x, real(model, 32, method="dpm_solver", steps=6, seed=0))
