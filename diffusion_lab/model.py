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
import torch.nn.functional as F
from torch import Tensor, nn

from . import tasks
from ._checks import check_bool, check_int, check_labels, check_real, check_seed
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .constraints import _grayscale
from .guidance import guided_eps_model
from .samplers import SAMPLERS, sample
from .schedules import get_schedule
from .sde import SDE, get_sde
from .training import TrainResult, train

__all__ = ["GenerativeModel", "guided_eps_model"]



#: what :meth:`GenerativeModel.generate` sets itself, so a caller may not pass it as an option
GENERATE_SETS = {
    "generator": "from seed=, on the model's device", "dtype": "the network's dtype",
    "device": "the network's device", "y": "from labels=", "shape": "from n and data_shape",
    "eps_model": "the network, guided when guidance= is given", "sde": "the model's SDE",
}


def _on(value, device):
    """``value`` moved to ``device`` when it is a tensor (anything else is left for validation)."""
    return value.to(device) if isinstance(value, Tensor) else value


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
        if kwargs.get("target", "eps") != "eps":
            raise ValueError(f"GenerativeModel.train trains noise predictors (target='eps'), got "
                             f"target={kwargs['target']!r}; train a velocity model with "
                             "diffusion_lab.training.train and sample it through "
                             "parameterizations.velocity_model_as_eps")
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
        ``kwargs`` go to the sampler (``grid``, ``t_end``, ``denoise``, ``eta``, …); what
        generate sets itself (:data:`GENERATE_SETS`: ``generator``, ``dtype``, ``device``, ``y``,
        ``shape``) is refused there.

        Image output (``data_shape`` of length 3) is clipped to [-1, 1] as the documented
        last step of generation (``clip=False`` returns the raw sampler output); nothing
        is clipped anywhere else, and 2-D data is never clipped.
        """
        n = check_int(n, "n")
        seed = check_seed(seed)
        clip = check_bool(clip, "clip")
        taken = sorted(kwargs.keys() & GENERATE_SETS.keys())
        if taken:
            raise TypeError(f"generate sets {taken[0]} itself ({GENERATE_SETS[taken[0]]}); "
                            f"do not pass {taken[0]}=")
        if self.data_shape is None:
            raise ValueError("data_shape is unknown: pass data_shape= or train the model first")
        net, eps_model, y_arg = self._conditioning(n, labels, guidance)
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        try:
            dtype = next(net.parameters()).dtype
            gen = torch.Generator(device).manual_seed(seed)
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
        built = _infer_data_shape(ck.net)
        if shape is not None and built is not None and tuple(shape) != built:
            raise CheckpointError(ck.path / "config.json", "data.shape",
                                  f"is {shape}, but the network takes samples of shape "
                                  f"{list(built)}")
        return cls(ck.net, ck.sde, data_shape=None if shape is None else tuple(shape),
                   class_names=ck.data.get("class_names"), ema=ck.ema, info=ck.info)

    # -- controllable generation: diffusion_lab.tasks -------------------------------------------
    def _conditioning(self, n: int, labels, guidance):
        """(net, eps_model, y) for ``n`` samples: ``labels`` (one int, ``n`` ints or an integer
        tensor, in [0, num_classes)) and ``guidance`` (a finite number, needs labels) checked."""
        net = self.ema if self.ema is not None else self.net
        device, null = next(net.parameters()).device, self.num_classes
        if guidance is not None:
            guidance = check_real(guidance, "guidance")
        if null is None and (labels is not None or guidance is not None):
            raise ValueError("labels/guidance need a class-conditional net (num_classes set)")
        if guidance is not None and labels is None:
            raise ValueError("guidance needs labels (the class to guide towards)")
        if null is None:
            return net, net, None
        y = (torch.full((n,), null, dtype=torch.long, device=device) if labels is None
             else check_labels(labels, n, null, device))
        if guidance is not None:
            return net, guided_eps_model(net, y, guidance, null), None
        return net, net, y

    def _images(self, x, name: str, shape=None) -> Tensor:
        """Check a batch ``[B, *shape]`` (images: in [-1, 1]); move it to the net's dtype/device."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        shape = tuple(self.data_shape) if shape is None else tuple(shape)
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"{name} must have shape [B, {', '.join(map(str, shape))}], "
                             f"got {list(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains non-finite values (nan or inf)")
        if len(shape) == 3 and (float(x.min()) < -1 or float(x.max()) > 1):
            raise ValueError(f"{name} must lie in [-1, 1] (images), got values in "
                             f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")
        p = next(self.net.parameters())
        return x.to(dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def _constrained(self, constraint_fn, n: int, *, method, steps, seed, labels, guidance,
                     progress, **kwargs) -> Tensor:
        net, eps_model, y = self._conditioning(n, labels, guidance)
        was_training = net.training
        net.eval()
        try:
            gen = torch.Generator(self.device).manual_seed(check_seed(seed))
            return tasks.sample_with_constraint(eps_model, self.sde, constraint_fn(),
                                                method=method, steps=steps, generator=gen, y=y,
                                                progress=progress, **kwargs)
        finally:
            net.train(was_training)

    def inpaint(self, x: Tensor, mask: Tensor, method: str | None = None,
                steps: int | None = None, seed: int = 0, labels=None,
                guidance: float | None = None, progress: bool = False, clip: bool = True,
                **kwargs) -> Tensor:
        """Fill the pixels of ``x`` ``[B, *data_shape]`` where ``mask`` = 1 (0 = known, kept
        exactly) with :func:`diffusion_lab.tasks.inpaint`'s ``method`` in ``steps`` steps
        (``None``: its defaults; ``kwargs`` go there: ``sampler``, ``eta``, ``zeta``,
        ``resample_steps``, ``jump``, ``grid``, ``info``, …).

        The default (``method=None``: :func:`diffusion_lab.tasks.default_inpaint_method`):
        for a class-conditional model without ``labels``, one completion per class and the
        class of smallest known-pixel denoising error kept
        (:func:`diffusion_lab.class_inpainting.projection_by_class`, 150 NFE); otherwise the
        most consistent of 6 projection completions (``"projection_best_of"``, 84 NFE); both
        measured by ``benchmarks/inpainting.py``; ``"replacement"`` / ``"repaint"``
        remain (a sampler name as ``method`` means replacement with it). ``clip`` clamps
        generated pixels to [-1, 1] (the known ones already are; images only, so the same
        call imputes missing coordinates of 2-D data)."""
        x = self._images(x, "x")
        net, eps_model, y = self._conditioning(x.shape[0], labels, guidance)
        if method is None:  # by class when the class is unknown and the model has classes
            method = tasks.default_inpaint_method(self.num_classes if labels is None else None)
        if method == "projection_by_class":
            if self.num_classes is None or labels is not None or guidance is not None:
                raise ValueError("method='projection_by_class' needs a class-conditional model "
                                 "and chooses the class itself (labels/guidance must be None), "
                                 f"got num_classes={self.num_classes}, labels={labels!r}")
            kwargs["num_classes"], eps_model, y = self.num_classes, net, None
        kwargs["method"] = method
        if steps is not None:
            kwargs["steps"] = steps
        was_training = net.training
        net.eval()
        try:
            gen = torch.Generator(self.device).manual_seed(int(seed))
            with torch.no_grad():  # DPS enables gradients for its own backward pass
                out = tasks.inpaint(eps_model, self.sde, x, _on(mask, x.device), generator=gen,
                                    y=y, progress=progress, **kwargs)
        finally:
            net.train(was_training)
        return out.clamp(-1.0, 1.0) if clip and len(self.data_shape) == 3 else out

    def colorize(self, gray: Tensor, method: str = "ancestral", steps: int = 100, seed: int = 0,
                 labels=None, guidance: float | None = None, progress: bool = False,
                 clip: bool = True, **kwargs) -> Tensor:
        """RGB images whose luminance Y = w·rgb equals ``gray`` (``[B, 1, H, W]``, or
        ``[B, 3, H, W]`` to take the luminance of; in [-1, 1]); the chroma is generated
        (:func:`diffusion_lab.tasks.colorize`). ``clip`` moves out-of-range pixels towards
        the grey (Y, Y, Y) along their chroma, which keeps Y exactly."""
        if self.data_shape is None or len(self.data_shape) != 3 or self.data_shape[0] != 3:
            raise ValueError(f"colorize needs an RGB image model, data_shape={self.data_shape}")
        channels = gray.shape[1] if isinstance(gray, Tensor) and gray.dim() == 4 else 1
        if channels not in (1, 3):
            raise ValueError(f"gray must be [B, 1, H, W] or [B, 3, H, W], got {list(gray.shape)}")
        gray = self._images(gray, "gray", (channels, *self.data_shape[1:]))
        luma = _grayscale(gray)
        out = self._constrained(lambda: tasks.colorization_constraint(luma), gray.shape[0],
                                method=method, steps=steps, seed=seed, labels=labels,
                                guidance=guidance, progress=progress, **kwargs)
        if clip:
            out = tasks.shrink_into_range(out, luma.expand_as(out),
                                          lambda s: s.amin(1, keepdim=True))
        return out

    def super_resolve(self, low_res: Tensor, factor: int = 2, method: str = "ancestral",
                      steps: int = 100, seed: int = 0, labels=None,
                      guidance: float | None = None, progress: bool = False, clip: bool = True,
                      **kwargs) -> Tensor:
        """Images ``[B, *data_shape]`` whose ``factor``×``factor`` average pooling equals
        ``low_res`` (:func:`diffusion_lab.tasks.super_resolve`). ``clip`` shrinks each
        block's detail towards its mean until in range, which keeps the pooling exact."""
        if self.data_shape is None or len(self.data_shape) != 3:
            raise ValueError(f"super_resolve needs an image model, data_shape={self.data_shape}")
        c, h, w = self.data_shape
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2 or h % factor \
                or w % factor:
            raise ValueError(f"factor must be an int >= 2 dividing {h}x{w}, got {factor!r}")
        low_res = self._images(low_res, "low_res", (c, h // factor, w // factor))
        out = self._constrained(lambda: tasks.super_resolution_constraint(low_res, factor),
                                low_res.shape[0], method=method, steps=steps, seed=seed,
                                labels=labels, guidance=guidance, progress=progress, **kwargs)
        if clip:
            def block_min(s):
                return tasks.upsample(-F.max_pool2d(-s, factor), factor)

            out = tasks.shrink_into_range(out, tasks.upsample(low_res, factor), block_min)
        return out

    @torch.no_grad()
    def invert(self, x: Tensor, steps: int = 50, labels=None, guidance: float | None = None,
               grid: str | None = None) -> Tensor:
        """DDIM inversion image → prior noise (:func:`diffusion_lab.tasks.ddim_invert`);
        ``sample(..., method="ddim", steps=steps, grid=grid)`` from it returns ≈ x
        (``grid=None``: DDIM's default grid, both ways)."""
        x = self._images(x, "x")
        net, eps_model, y = self._conditioning(x.shape[0], labels, guidance)
        was_training = net.training
        net.eval()
        try:
            return tasks.ddim_invert(eps_model, self.sde, x, steps, y=y, grid=grid)
        finally:
            net.train(was_training)

    @torch.no_grad()
    def interpolate(self, a: Tensor, b: Tensor, num: int = 8, steps: int = 50,
                    images: bool = True, labels=None, guidance: float | None = None,
                    grid: str | None = None, clip: bool = True) -> Tensor:
        """``num`` images ``[num, *data_shape]`` along the spherical path between the prior
        noises of ``a`` and ``b`` (each ``[1, *data_shape]``), decoded by deterministic DDIM.
        With ``images=True`` a and b are images, DDIM-inverted first (the ends then
        reproduce them up to the inversion error); otherwise they are prior noise.
        ``labels``: one int class (or None) for the whole path."""
        if isinstance(num, bool) or not isinstance(num, int) or num < 2:
            raise ValueError(f"num must be an int >= 2, got {num!r}")
        if labels is not None and (isinstance(labels, bool) or not isinstance(labels, int)):
            raise TypeError(f"labels must be one int class or None, got {labels!r}")
        if images:
            a, b = self.invert(a, steps, labels, guidance, grid), self.invert(b, steps, labels,
                                                                              guidance, grid)
        p = next(self.net.parameters())
        a, b = a.to(p.device, p.dtype), b.to(p.device, p.dtype)
        if a.shape != (1, *self.data_shape) or b.shape != a.shape:
            raise ValueError(f"a and b must have shape [1, {', '.join(map(str, self.data_shape))}]"
                             f", got {list(a.shape)} and {list(b.shape)}")
        alphas = torch.linspace(0.0, 1.0, num, dtype=torch.float64)
        z = tasks.slerp(a[0], b[0], alphas)
        net, eps_model, y = self._conditioning(num, labels, guidance)
        was_training = net.training
        net.eval()
        try:
            out = SAMPLERS["ddim"](eps_model, self.sde, z, steps=steps, grid=grid, y=y)
        finally:
            net.train(was_training)
        return out.clamp(-1.0, 1.0) if clip else out

    # -- hooks filled by later issues ------------------------------------------------------
    def evaluate(self, real: Tensor, n: int = 2000, *, method: str = "dpm_solver",
                 steps: int = 20, seed: int = 0, labels=None, guidance: float | None = None,
                 feature_net=None, batch_size: int = 500, progress: bool = False) -> dict:
        """Generate ``n`` images and compare them with ``real`` ([N, C, H, W] in [-1, 1]).

        Returns ``{"fid", "kid_mean", "kid_std", "precision", "recall", "n"}`` computed in the
        feature space of ``feature_net`` (default: the bundled MNIST classifier, see
        :mod:`diffusion_lab.metrics`). The metrics module warns or refuses when ``n`` is too
        small for a statistic; nothing here hides that.
        """
        from . import metrics

        fakes = [self.generate(min(batch_size, n - i), method=method, steps=steps, seed=seed + i,
                               labels=None if labels is None else labels[i:i + batch_size],
                               guidance=guidance, progress=progress)
                 for i in range(0, n, batch_size)]
        fake = torch.cat(fakes).cpu()
        real = real.cpu()
        generator = torch.Generator().manual_seed(seed)
        kid_mean, kid_std = metrics.kid(real, fake, subset_size=min(1000, n, real.shape[0]),
                                        feature_net=feature_net, generator=generator)
        pr = metrics.precision_recall(metrics.extract_features(real, feature_net),
                                      metrics.extract_features(fake, feature_net))
        return {"fid": metrics.fid(real, fake, feature_net), "kid_mean": kid_mean,
                "kid_std": kid_std, "precision": pr[0], "recall": pr[1], "n": n}
