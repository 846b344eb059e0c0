r"""A non-diffusion baseline for lesson 08: a small convolutional VAE on 28×28 digits.

Model (Kingma & Welling 2014). Encoder q(z|x) = N(μ(x), diag σ²(x)), z ∈ R^latent_dim;
prior p(z) = N(0, I); decoder p(x|z) per pixel a Bernoulli on the [0, 1] intensity
b = (x + 1)/2 with logits ℓ(z) (the usual choice for MNIST; b is treated as a soft
target). Training maximises the ELBO, i.e. minimises per image

    L(x) = Σ_pixels BCE(ℓ(z), b) + β · KL(N(μ, σ²) ‖ N(0, I)),
    KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²),  z = μ + σ ⊙ ε  (reparameterisation).

A sample is the decoder *mean* x = 2 sigmoid(ℓ(z)) − 1 for z ~ N(0, I) (the Bernoulli
noise is not drawn: it would only add salt-and-pepper pixels).

Checkpoints: ``config.json`` (:class:`~diffusion_lab.config_schema.BaselineConfig`, format
``diffusion_lab.baseline``) + ``model.safetensors``, loaded through
:func:`~diffusion_lab.builders.build_network` (schema, meta-device shape check, strict
load; nothing unpickled). Trained by ``python benchmarks/train_baseline.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_finite, check_int, check_int_list, check_positive
from .registry import register

__all__ = ["MNISTVAE", "vae_loss", "train_vae", "save_baseline", "load_baseline",
           "DEFAULT_BASELINE_PATH"]

DEFAULT_BASELINE_PATH = (
    Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "mnist_vae"
)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "diffusion_lab.baseline"


@register
class MNISTVAE(nn.Module):
    """Conv VAE for ``[B, 1, 28, 28]`` images in [-1, 1].

    Encoder: conv 4×4 stride 2 (``widths[0]``, 14×14) → conv 4×4 stride 2 (``widths[1]``,
    7×7) → linear to (μ, log σ²). Decoder: linear → 7×7×``widths[1]`` → transposed convs
    back to 28×28 logits. ``forward(x)`` returns (logits, μ, log σ²).
    """

    def __init__(self, latent_dim: int = 16, widths: tuple[int, int] | list[int] = (16, 32)):
        super().__init__()
        widths = tuple(check_int_list(widths, "widths", 2))
        check_int(latent_dim, "latent_dim")
        self._config = dict(latent_dim=latent_dim, widths=list(widths))
        self.latent_dim = latent_dim
        w0, w1 = widths
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w0, 4, 2, 1), nn.SiLU(), nn.Conv2d(w0, w1, 4, 2, 1), nn.SiLU(),
            nn.Flatten(), nn.Linear(w1 * 49, 2 * latent_dim))
        self.decoder_in = nn.Sequential(nn.Linear(latent_dim, w1 * 49), nn.SiLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w1, w0, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(w0, 1, 4, 2, 1))
        self._w1 = w1

    def config(self) -> dict:
        """Constructor kwargs (JSON): ``MNISTVAE(**cfg)`` rebuilds the architecture."""
        return dict(self._config)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z|x), each ``[B, latent_dim]``."""
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be images [B, 1, 28, 28] in [-1, 1], got {got}")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: Tensor) -> Tensor:
        """Bernoulli logits ℓ(z) ``[B, 1, 28, 28]`` of the [0, 1] intensities."""
        h = self.decoder_in(z).reshape(-1, self._w1, 7, 7)
        return self.decoder(h)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder mean in [-1, 1]: 2 sigmoid(ℓ(z)) − 1."""
        return 2.0 * torch.sigmoid(self.decode_logits(z)) - 1.0

    def forward(self, x: Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0) -> Tensor:
        """``n`` samples ``[n, 1, 28, 28]`` in [-1, 1]: decoder means at z ~ N(0, I) drawn from
        ``torch.Generator().manual_seed(seed)`` (on the CPU, so the same on every device)."""
        n = check_int(n, "n")
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed),
                        dtype=p.dtype)
        was = self.training
        self.eval()
        try:
            return self.decode(z.to(p.device))
        finally:
            self.train(was)


def vae_loss(logits: Tensor, mu: Tensor, logvar: Tensor, x: Tensor, beta: float = 1.0
             ) -> tuple[Tensor, Tensor, Tensor]:
    """Negative ELBO per image averaged over the batch: (loss, reconstruction, KL), nats.

    reconstruction = Σ_pixels BCE(logits, (x + 1)/2); KL = ½ Σ_j (μ² + σ² − 1 − log σ²)."""
    target = (x + 1.0) / 2.0
    rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
    return (rec + beta * kl).mean(), rec.mean(), kl.mean()


def train_vae(images: Tensor, *, epochs: int = 60, batch_size: int = 128, lr: float = 2e-3,
              latent_dim: int = 16, widths=(16, 32), beta: float = 1.0, seed: int = 0,
              progress: bool = True) -> tuple[MNISTVAE, dict]:
    """Train :class:`MNISTVAE` on ``images`` [N, 1, 28, 28] in [-1, 1] with Adam; returns the
    network (eval mode) and run info (losses per epoch, wall time, seed, ...)."""
    check_finite(images, "images")
    if float(images.min()) < -1.0 or float(images.max()) > 1.0:
        raise ValueError("images must lie in [-1, 1]")
    epochs, batch_size = check_int(epochs, "epochs"), check_int(batch_size, "batch_size")
    lr, beta = check_positive(lr, "lr"), check_positive(beta, "beta")
    torch.manual_seed(seed)  # the weight init; the batches and ε come from `g`
    g = torch.Generator().manual_seed(seed)
    net = MNISTVAE(latent_dim=latent_dim, widths=widths)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(images.shape[0], generator=g)
        total = 0.0
        for i in range(0, images.shape[0], batch_size):
            x = images[order[i:i + batch_size]]
            loss, _, _ = vae_loss(*net(x, generator=g), x, beta=beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
        sched.step()
        history.append(total / images.shape[0])
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: -ELBO {history[-1]:.2f} nats", flush=True)
    info = dict(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta, seed=seed,
                n_train=int(images.shape[0]), wall_time_s=round(time.perf_counter() - t0, 1),
                final_neg_elbo_nats=round(history[-1], 3),
                neg_elbo_per_epoch=[round(v, 3) for v in history])
    return net.eval(), info


def save_baseline(net: nn.Module, path, training: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (format ``diffusion_lab.baseline``) into
    the directory ``path``, each file atomically; other files there (the model card) stay."""
    from safetensors.torch import save_file

    from .atomic import atomic_write_file
    from .builders import _class_name
    from .config_schema import BaselineConfig, dump, validate

    if not isinstance(net, nn.Module) or not hasattr(net, "config"):
        raise TypeError(f"net must be an nn.Module with config(), got {type(net).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"format": FORMAT, "class": _class_name(net, {}, "network"), "config": net.config(),
           "data": {"shape": [1, 28, 28], "range": [-1.0, 1.0]},
           "training": dict(training or {}), "files": {"weights": WEIGHTS_FILE}}
    cfg = dump(validate(BaselineConfig, cfg, path / CONFIG_FILE))  # refuse before writing
    text = json.dumps(cfg, indent=2, allow_nan=False) + "\n"
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_file(path / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_file(path / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load_baseline(path=DEFAULT_BASELINE_PATH, device="cpu") -> nn.Module:
    """Rebuild a baseline from ``config.json`` (validated against
    :class:`~diffusion_lab.config_schema.BaselineConfig`) and ``model.safetensors`` (names,
    shapes, dtypes compared on the meta device first; strict load). Returns it in eval mode."""
    from ._checks import check_device
    from .builders import build_network
    from .config_schema import BaselineConfig, validate
    from .safe_io import read_json

    path, device = Path(path), check_device(device)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (path / name).exists() and not (path / name).is_symlink():
            raise FileNotFoundError(f"baseline checkpoint file {path / name} not found; train "
                                    "one with `python benchmarks/train_baseline.py --out <dir>`")
    cfg = validate(BaselineConfig, read_json(path, CONFIG_FILE), path / CONFIG_FILE)
    net = build_network({"class": cfg.class_, "config": cfg.config}, path, cfg.files.weights,
                        file=path / CONFIG_FILE, device=device)
    return net.eval().requires_grad_(False)
