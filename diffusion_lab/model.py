"""``GenerativeModel``: a noise-predicting network, its SDE and what it was trained on.

    model = dl.GenerativeModel(dl.nets.UNet(num_classes=10), "vp", schedule="cosine")
    model.train(images, labels=labels, steps=5000)
    x = model.generate(16, method="dpm_solver", steps=20, seed=0, labels=3, guidance=2.0)
    model.save("runs/mnist");  model = dl.GenerativeModel.load("runs/mnist")

Classifier-free guidance (Ho & Salimans 2022) with weight w:

    ε̃(x, t, y) = ε(x, t, ∅) + w [ε(x, t, y) − ε(x, t, ∅)]

so **w = 1 is the plain conditional model and w = 0 the unconditional one**
(∅ is the null class ``num_classes``); w > 1 sharpens towards the class. Both
terms come from one batched forward pass of 2B samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checkpoint import load_checkpoint, save_checkpoint
from .samplers import sample
from .schedules import get_schedule
from .sde import SDE, get_sde
from .training import TrainResult, train

__all__ = ["GenerativeModel", "guided_eps_model"]

_HOOK_MSG = "lands with the tasks/metrics issue"


def guided_eps_model(net: nn.Module, y: Tensor, guidance: float, null_class: int):
    """ε̃(x, t) = ε(x, t, ∅) + w (ε(x, t, y) − ε(x, t, ∅)) in one forward pass of 2B rows."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        both = net(torch.cat([x, x]), torch.cat([t, t]),
                   torch.cat([y, torch.full_like(y, null_class)]))
        eps_c, eps_u = both[:b], both[b:]
        return eps_u + guidance * (eps_c - eps_u)

    return eps


def _infer_data_shape(net: nn.Module):
    cfg = net.config() if callable(getattr(net, "config", None)) else {}
    if "image_size" in cfg and "in_channels" in cfg:
        return (cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    if "dim" in cfg:
        return (cfg["dim"],)
    return None


class GenerativeModel:
    """A diffusion model: ``net`` (ε-predictor), ``sde`` (``"vp"``, ``"subvp"``, ``"ve"`` or an
    SDE object, with ``schedule`` a name such as ``"linear"``/``"cosine"`` or a Schedule),
    the data shape (inferred from the net when possible), class names, EMA weights and
    training info."""

    def __init__(self, net: nn.Module, sde: SDE | str = "vp", *, schedule=None, data_shape=None,
                 class_names=None, ema: nn.Module | None = None, info: dict | None = None):
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if isinstance(sde, str):
            if schedule is not None and sde.lower() == "ve":
                raise ValueError("the VE SDE has no β schedule; pass schedule only with "
                                 "'vp' or 'subvp' (VE takes sigma_min/sigma_max: VESDE(...))")
            if schedule is not None:
                sde = get_sde(sde, schedule=get_schedule(schedule))
            else:
                sde = get_sde(sde)
        elif schedule is not None:
            raise ValueError("schedule is only accepted together with an SDE name such as 'vp'")
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an SDE or one of 'vp', 'subvp', 've', got {sde!r}")
        self.net, self.sde, self.ema = net, sde, ema
        self.data_shape = tuple(data_shape) if data_shape is not None else _infer_data_shape(net)
        self.class_names = None if class_names is None else list(class_names)
        self.info = dict(info or {})

    # -- introspection -----------------------------------------------------------------------
    @property
    def num_classes(self) -> int | None:
        return getattr(self.net, "num_classes", None)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def num_parameters(self) -> int:
        """Number of trainable network parameters (the EMA copy not counted)."""
        return sum(p.numel() for p in self.net.parameters())

    def __repr__(self) -> str:
        return (f"GenerativeModel({type(self.net).__name__}, {self.sde!r}, "
                f"data_shape={self.data_shape}, params={self.num_parameters():,}, "
                f"steps={self.info.get('steps', 0)})")

    # -- training ------------------------------------------------------------------------------
    def train(self, data: Tensor, labels: Tensor | None = None, *, steps: int,
              **kwargs) -> TrainResult:
        """Train with :func:`diffusion_lab.training.train` (kwargs go there), continuing the
        EMA if there is one; returns its ``TrainResult``."""
        kwargs.setdefault("class_names", self.class_names)
        result = train(self.net, self.sde, data, labels=labels, steps=steps, ema=self.ema,
                       **kwargs)
        before = 0 if kwargs.get("resume") else int(self.info.get("steps", 0))
        self.ema = result.ema
        self.data_shape = tuple(data.shape[1:])
        self.info.update(result.info)
        self.info.update(steps=before + result.steps, wall_time=result.wall_time,
                         final_loss=result.final_loss)
        return result

    # -- sampling ------------------------------------------------------------------------------
    def _labels(self, labels, n: int, device) -> Tensor:
        if isinstance(labels, int):
            labels = [labels] * n
        y = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"labels must be an int or have n = {n} entries, got {y.shape[0]}")
        if bool((y < 0).any()) or bool((y >= self.num_classes).any()):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {y.tolist()}")
        return y

    @torch.no_grad()
    def generate(self, n: int, method: str = "dpm_solver", steps: int = 20, seed: int = 0,
                 labels=None, guidance: float | None = None, progress: bool = False,
                 clip: bool = True, **kwargs) -> Tensor:
        """Draw ``n`` samples ``[n, *data_shape]`` with sampler ``method`` in ``steps`` steps.

        Uses the EMA weights when present, in eval mode. ``seed`` seeds a
        ``torch.Generator`` on the model's device (bitwise reproducible per device).
        ``labels`` (int or ``n`` ints) condition a class-conditional net; without labels
        such a net samples unconditionally (null class). ``guidance`` w applies
        classifier-free guidance ε̃ = ε_∅ + w (ε_y − ε_∅): w = 1 is the conditional model,
        w = 0 the unconditional one; ``None`` means w = 1 without the extra pass.

        Image output (``data_shape`` of length 3) is clipped to [-1, 1] as the documented
        last step of generation (``clip=False`` returns the raw sampler output); nothing
        is clipped anywhere else, and 2-D data is never clipped.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if self.data_shape is None:
            raise ValueError("data_shape is unknown: pass data_shape= or train the model first")
        net = self.ema if self.ema is not None else self.net
        device = next(net.parameters()).device
        null = self.num_classes
        if null is None and (labels is not None or guidance is not None):
            raise ValueError("labels/guidance need a class-conditional net (num_classes set)")
        if guidance is not None and labels is None:
            raise ValueError("guidance needs labels (the class to guide towards)")
        if labels is None and null is not None:
            y = torch.full((n,), null, dtype=torch.long, device=device)
        elif labels is not None:
            y = self._labels(labels, n, device)
        else:
            y = None
        if guidance is not None:
            eps_model, y_arg = guided_eps_model(net, y, float(guidance), null), None
        else:
            eps_model, y_arg = net, y
        was_training = net.training
        net.eval()
        try:
            dtype = next(net.parameters()).dtype
            gen = torch.Generator(device).manual_seed(int(seed))
            x = sample(eps_model, self.sde, (n, *self.data_shape), method=method, steps=steps,
                       generator=gen, dtype=dtype, device=device, y=y_arg, progress=progress,
                       **kwargs)
        finally:
            net.train(was_training)
        if clip and len(self.data_shape) == 3:
            x = x.clamp(-1.0, 1.0)  # documented final step of image generation
        return x

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path, *, ema_only: bool = False):
        """Write a checkpoint directory (safetensors + JSON, atomically). ``ema_only=True``
        stores the EMA weights as the model weights and nothing else (half the size)."""
        net, ema = self.net, self.ema
        if ema_only:
            if ema is None:
                raise ValueError("ema_only=True but this model has no EMA weights")
            net, ema = ema, None
        info = dict(self.info, weights="ema" if ema_only else "raw")
        return save_checkpoint(path, net, self.sde, ema=ema, step=self.info.get("steps"),
                               data_shape=self.data_shape, class_names=self.class_names,
                               info=info)

    @classmethod
    def load(cls, path, *, device="cpu") -> GenerativeModel:
        """Rebuild a model from a checkpoint directory; no pickle, nothing executed."""
        ck = load_checkpoint(path, device=device)
        shape = ck.data.get("shape")
        return cls(ck.net, ck.sde, data_shape=None if shape is None else tuple(shape),
                   class_names=ck.data.get("class_names"), ema=ck.ema, info=ck.info)

    # -- hooks filled by later issues ------------------------------------------------------
    def inpaint(self, *args, **kwargs):
        raise NotImplementedError(_HOOK_MSG)

    def colorize(self, *args, **kwargs):
        raise NotImplementedError(_HOOK_MSG)

    def evaluate(self, *args, **kwargs):
        raise NotImplementedError(_HOOK_MSG)
