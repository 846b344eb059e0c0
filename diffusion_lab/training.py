r"""Training a noise predictor: the ε-prediction loss on continuous time, for any SDE.

One step (Ho et al. 2020's L_simple, with t continuous as in Song et al. 2021)::

    x_0 ~ data,  t ~ U[t_min, 1],  z ~ N(0, I),  x_t = m(t) x_0 + σ(t) z
    L(θ) = E ‖ε_θ(x_t, t, y) − z‖²   (mean over batch and dimensions)

followed by AdamW (fused on CUDA), gradient-norm clipping and an exponential moving average
(EMA) of the weights, the network used for sampling:

    θ_ema ← d_n θ_ema + (1 − d_n) θ,   d_n = min(ema_decay, (1 + n)/(10 + n))

The learning rate of update n (0-based, N = ``steps``) is :func:`lr_at`: a linear warm-up
times a constant or a cosine decay, lr_n = lr · min(1, (n+1)/warmup) · ½(1 + cos(π n / N)).
``loss_weighting="min_snr"`` weights each sample by :func:`min_snr_weight` (Hang et al. 2023)

    w(t) = min(SNR(t), γ) / SNR(t),   SNR = m²/σ²,

so that w ‖ε̂ − ε‖² = min(SNR, γ) ‖x̂_0 − x_0‖²: the x̂_0-error weighted by the SNR, capped at
γ, which stops the nearly noise-free times (SNR → ∞) from dominating the gradient.

With ``target="velocity"`` the network is a *velocity* model instead, trained with the
conditional flow-matching loss (Lipman et al. 2023; Liu et al. 2023 for rectified flow)

    L(θ) = E ‖u_θ(x_t, t, y) − (m'(t) x_0 + σ'(t) z)‖²     (rectified flow: z − x_0)

whose minimiser is the marginal velocity u(x, t) = E[m' x_0 + σ' z | x_t = x], the
probability-flow drift; sample it through
:func:`~diffusion_lab.parameterizations.velocity_model_as_eps`.

(n = updates so far; the ramp keeps the EMA from remembering the random
initialisation in short runs). With class labels, each sample's label is
replaced by the null class ``num_classes`` with probability ``label_dropout``,
independently per sample, so one network learns ε(x, t, y) and ε(x, t) for
classifier-free guidance.

Randomness: batch indices, t, z and the label-dropout mask come from one CPU
``torch.Generator`` seeded with ``seed`` (so a CPU and a GPU run see the same
batches), and dropout layers use the global RNG, seeded from ``seed`` inside
``torch.random.fork_rng`` (the caller's global RNG is left untouched). Both RNG
states go into every checkpoint: a run killed and resumed ends bit-identical
(on CPU) to one never interrupted.

Resuming continues *the same run*: the checkpoint records what defines it (SDE, data and
labels by SHA-256, seed, batch size, lr, weight decay, warm-up, clipping, EMA decay, t_min,
label dropout, the network) and a resume that changes any of it is refused, naming the
fields; only ``steps`` may change, and only grow.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import (
    check_choice,
    check_device,
    check_finite,
    check_int,
    check_positive,
    check_seed,
    check_unit,
    expand_like,
)
from .checkpoint import save_checkpoint
from .distributed import barrier, local_rows, mean_over_world, wrap
from .distributed import world as current_world
from .resume import checkpoint_state, restore, resumable, run_spec
from .sde import SDE

TARGETS = ("eps", "velocity")
LR_SCHEDULES = ("constant", "cosine")
LOSS_WEIGHTINGS = ("uniform", "min_snr")

__all__ = ["TrainResult", "train", "eps_loss", "velocity_loss", "TARGETS", "drop_labels",
           "ema_update", "ema_decay_at", "lr_at", "min_snr_weight", "LR_SCHEDULES",
           "LOSS_WEIGHTINGS"]


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-step losses of the whole run (resumed runs
    include the steps before the interruption), the final step, the EMA network and the
    training wall time in seconds (summed over resumptions)."""

    loss_history: list[float]
    steps: int
    ema: nn.Module
    wall_time: float
    samples: list = field(default_factory=list)  # (step, tensor) pairs when sample_every is set
    info: dict = field(default_factory=dict)  # hyperparameters, seed, device

    @property
    def final_loss(self) -> float:
        """Mean loss over the last ≤ 100 steps (a single step's loss is too noisy)."""
        tail = self.loss_history[-100:]
        return float(sum(tail) / len(tail)) if tail else float("nan")


def eps_loss(net: nn.Module, sde: SDE, x0: Tensor, t: Tensor, noise: Tensor,
             y: Tensor | None = None, weight: Tensor | None = None) -> Tensor:
    """L = mean ‖ε_θ(m x_0 + σ z, t, y) − z‖² for given t [B] and z (shaped like x_0);
    with ``weight`` w [B], L = mean_b w_b · mean_dims (ε_θ − z)².

    m(t), σ(t) are computed where ``t`` lives (a CPU ``t`` keeps the argument checks of
    the SDE from synchronising the GPU) and moved to ``x0``'s device and dtype.
    """
    m, s = (v.to(device=x0.device, dtype=x0.dtype) for v in sde.marginal(t))
    t = t.to(device=x0.device, dtype=x0.dtype)
    xt = expand_like(m, x0) * x0 + expand_like(s, x0) * noise
    eps = net(xt, t) if y is None else net(xt, t, y)
    if weight is None:
        return F.mse_loss(eps, noise)
    per_sample = (eps - noise).square().flatten(1).mean(dim=1)
    return (weight.to(device=x0.device, dtype=x0.dtype) * per_sample).mean()


def min_snr_weight(sde: SDE, t: Tensor, gamma: float) -> Tensor:
    """w(t) = min(SNR(t), γ) / SNR(t) with SNR = m(t)²/σ(t)² (Hang et al. 2023, for an
    ε-prediction loss); 1 where SNR ≤ γ (the noisy times), γ/SNR below them."""
    gamma = check_positive(gamma, "min_snr_gamma")
    m, s = sde.marginal(t)
    snr = (m / s).square()
    return torch.clamp(snr, max=gamma) / snr


def lr_at(n: int, lr: float, warmup: int = 0, schedule: str = "constant",
          total: int | None = None) -> float:
    """The learning rate of update n (0-based): lr · min(1, (n+1)/warmup) · c(n), with
    c = 1 (``"constant"``) or c = ½(1 + cos(π n / total)) (``"cosine"``, falls from 1 at the
    first update towards 0 at update ``total``)."""
    schedule = check_choice(schedule, "lr_schedule", LR_SCHEDULES)
    ramp = min(1.0, (n + 1) / warmup) if warmup else 1.0
    if schedule == "constant":
        return lr * ramp
    total = check_int(total, "total")
    return lr * ramp * 0.5 * (1.0 + math.cos(math.pi * min(n, total) / total))


def velocity_loss(net: nn.Module, sde: SDE, x0: Tensor, t: Tensor, noise: Tensor,
                  y: Tensor | None = None) -> Tensor:
    """L = mean ‖u_θ(m x_0 + σ z, t, y) − (m' x_0 + σ' z)‖², conditional flow matching
    (the target is :func:`~diffusion_lab.parameterizations.conditional_velocity`; m, σ, m', σ'
    are computed where ``t`` lives, as in :func:`eps_loss`)."""
    m, s, dm, ds = (v.to(device=x0.device, dtype=x0.dtype)
                    for v in (*sde.marginal(t), *sde.marginal_rates(t)))
    t = t.to(device=x0.device, dtype=x0.dtype)
    xt = expand_like(m, x0) * x0 + expand_like(s, x0) * noise
    target = expand_like(dm, x0) * x0 + expand_like(ds, x0) * noise
    u = net(xt, t) if y is None else net(xt, t, y)
    return F.mse_loss(u, target)


LOSSES = {"eps": eps_loss, "velocity": velocity_loss}


def drop_labels(y: Tensor, p: float, null_class: int, generator: torch.Generator | None = None
                ) -> Tensor:
    """Replace each label by ``null_class`` independently with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label_dropout must be in [0, 1], got {p}")
    keep = torch.rand(y.shape, generator=generator) >= p
    return torch.where(keep.to(y.device), y, torch.full_like(y, null_class))


def ema_decay_at(n: int, ema_decay: float) -> float:
    """d_n = min(ema_decay, (1 + n)/(10 + n)), the decay for the (n+1)-th update."""
    return min(ema_decay, (1.0 + n) / (10.0 + n))


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """θ_ema ← decay θ_ema + (1 − decay) θ; buffers are copied."""
    ema_params, params = list(ema.parameters()), list(net.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"ema has {len(ema_params)} parameters, net {len(params)}")
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)  # one fused launch per device
    for be, b in zip(ema.buffers(), net.buffers(), strict=True):
        be.copy_(b)


def train(net: nn.Module, sde: SDE, data: Tensor, *, steps: int, batch_size: int = 128,
          lr: float = 2e-4, weight_decay: float = 0.0, warmup: int = 0,
          grad_clip: float | None = 1.0, ema_decay: float = 0.999, labels: Tensor | None = None,
          label_dropout: float = 0.1, t_min: float | None = None, seed: int = 0,
          ema: nn.Module | None = None, checkpoint_dir=None, checkpoint_every: int | None = None,
          resume: bool = False, sample_every: int | None = None, sample_fn=None,
          progress: bool = True, log_every: int = 10, device="cpu", data_shape=None,
          class_names=None, info: dict | None = None, target: str = "eps",
          lr_schedule: str = "constant", loss_weighting: str = "uniform",
          min_snr_gamma: float = 5.0) -> TrainResult:
    """Train ``net`` (in place, moved to ``device``) to predict the noise of ``sde``
    (``target="eps"``) or the flow velocity (``target="velocity"``, see module docs).

    ``data`` is ``[N, ...]`` (images ``[N, C, H, W]`` in [-1, 1], points ``[N, d]``);
    ``labels`` ``[N]`` ints in [0, num_classes) make the run class-conditional.
    ``steps`` is the *total* number of optimiser steps. With ``checkpoint_dir``, a full
    resumable checkpoint is written there atomically every ``checkpoint_every`` steps and
    at the end; ``resume=True`` continues from it (optimizer, EMA, RNG states, step, loss
    history). ``ema`` continues an existing EMA network instead of copying ``net``.
    ``sample_every`` calls ``sample_fn(ema, step)`` (or, if None, nothing is drawn) and
    keeps ``(step, result)`` in ``TrainResult.samples`` (after the checkpoint of that step).
    ``lr_schedule`` (:func:`lr_at`; a cosine decays over ``steps``, so a resume of a cosine
    run cannot change ``steps``) and ``loss_weighting`` (``"min_snr"``: :func:`min_snr_weight`
    with γ = ``min_snr_gamma``; ε-target only) shape the optimisation, see module docs.

    Under ``torchrun`` (a process group initialised, e.g. by
    :func:`diffusion_lab.distributed.setup`), ``batch_size`` is the global batch, split
    over the processes; only rank 0 writes checkpoints, shows progress and samples (see
    :mod:`diffusion_lab.distributed`).
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a diffusion_lab SDE, got {type(sde).__name__}")
    check_finite(data, "data")
    if data.dim() < 2 or data.shape[0] < 1:
        raise ValueError(f"data must be [N, ...] with N >= 1, got shape {list(data.shape)}")
    steps = check_int(steps, "steps", minimum=0)
    batch_size = check_int(batch_size, "batch_size")
    log_every = check_int(log_every, "log_every")
    lr = check_positive(lr, "lr")
    weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
    warmup = check_int(warmup, "warmup", minimum=0)
    grad_clip = None if grad_clip is None else check_positive(grad_clip, "grad_clip")
    ema_decay = check_unit(ema_decay, "ema_decay", closed=False)
    label_dropout = check_unit(label_dropout, "label_dropout")
    seed = check_seed(seed)
    target = check_choice(target, "target", TARGETS)
    lr_schedule = check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    loss_weighting = check_choice(loss_weighting, "loss_weighting", LOSS_WEIGHTINGS)
    if loss_weighting == "min_snr":
        if target != "eps":
            raise ValueError(f"loss_weighting='min_snr' weights the ε-loss; target={target!r} "
                             "takes loss_weighting='uniform'")
        min_snr_gamma = check_positive(min_snr_gamma, "min_snr_gamma")
    t_min = sde.t_min if t_min is None else check_positive(t_min, "t_min")
    if not t_min < 1.0:
        raise ValueError(f"t_min must be < 1, got {t_min}")
    null_class = None if labels is None else _check_labels(net, labels, data.shape[0])
    if checkpoint_every is not None:
        check_int(checkpoint_every, "checkpoint_every")
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    device = check_device(device)
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    hyper = dict(seed=seed, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                 warmup=warmup, grad_clip=grad_clip, ema_decay=ema_decay, t_min=t_min,
                 label_dropout=label_dropout if labels is not None else None,
                 lr_schedule=lr_schedule, schedule_steps=steps if lr_schedule == "cosine" else None,
                 loss_weighting=loss_weighting,
                 min_snr_gamma=min_snr_gamma if loss_weighting == "min_snr" else None)
    # what defines the run (data fingerprinted): only needed when there is a checkpoint
    run = None if ckpt_dir is None else run_spec(sde, data, labels, null_class, target=target,
                                                 **hyper)

    net.to(device)
    w = current_world()  # torchrun + DistributedDataParallel: see diffusion_lab.distributed
    rows = local_rows(batch_size, w) if w.distributed else slice(None)
    model = wrap(net, w, device)  # what the loss calls (DDP averages the gradients)
    data = data.to(device)
    labels = None if labels is None else labels.to(device=device, dtype=torch.long)
    ema = copy.deepcopy(net) if ema is None else ema.to(device)
    ema.eval().requires_grad_(False)
    fused = device.type == "cuda"  # one kernel for the whole update on a GPU
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay,
                                  fused=fused or None)
    generator = torch.Generator().manual_seed(seed)
    step, losses, wall_before = 0, [], 0.0
    info = dict(info or {})
    info.update(hyper, target=target)
    data_shape = list(data.shape[1:]) if data_shape is None else data_shape

    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if resume and resumable(ckpt_dir):
            ts = restore(ckpt_dir, net, ema, optimizer, run, steps, device)
            step = int(ts["step"])
            losses = ts["loss_history"].tolist()
            wall_before = float(ts["wall_time"])
            generator.set_state(ts["generator_state"])
            torch.set_rng_state(ts["torch_cpu_rng_state"])
            if device.type == "cuda" and "torch_cuda_rng_state" in ts:
                torch.cuda.set_rng_state(ts["torch_cuda_rng_state"], device)

        def save(at_step: int, wall: float) -> None:
            barrier(w)
            if w.is_main:
                _save(at_step, wall)
            barrier(w)

        def _save(at_step: int, wall: float) -> None:
            run_info = dict(info, wall_time=wall, device=str(device),
                            final_loss=TrainResult(losses, at_step, ema, wall).final_loss)
            save_checkpoint(ckpt_dir, net, sde, ema=ema, optimizer=optimizer, step=at_step,
                            train_state=checkpoint_state(generator, at_step, losses, wall,
                                                          ema_decay, device, run),
                            data_shape=data_shape, class_names=class_names, info=run_info)

        pending: list[Tensor] = []

        def flush(at_step: int, running):
            values = mean_over_world(torch.stack(pending), w).tolist()  # global-batch loss
            pending.clear()
            for i, value in enumerate(values):
                if not math.isfinite(value):
                    bad = at_step - len(values) + i + 1
                    raise FloatingPointError(f"loss became {value} at step {bad}; lower lr "
                                             "or check the data")
                running = value if running is None else 0.98 * running + 0.02 * value
            losses.extend(values)
            return running

        was_training = net.training
        net.train()
        samples = []
        start = time.perf_counter()
        bar = tqdm(total=steps, initial=min(step, steps), desc="train", disable=not progress or not w.is_main)
        n = data.shape[0]
        running = None
        ran = step < steps  # the loop's last step saves the final checkpoint
        saved_once = step > 0  # resumed: the folder holds a checkpoint already
        while step < steps:
            idx = torch.randint(n, (batch_size,), generator=generator)
            t = t_min + (1.0 - t_min) * torch.rand(batch_size, generator=generator)
            noise = torch.randn((batch_size, *data.shape[1:]), generator=generator)
            x0 = data[idx[rows].to(device)]
            y = None
            if labels is not None:  # the mask is drawn for the global batch, then sliced
                y = drop_labels(labels[idx.to(device)], label_dropout, null_class, generator)[rows]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, lr, warmup, lr_schedule, steps)
            kw = {} if loss_weighting == "uniform" else \
                {"weight": min_snr_weight(sde, t[rows], min_snr_gamma)}
            loss = LOSSES[target](model, sde, x0, t[rows],
                                  noise[rows].to(device=device, dtype=data.dtype), y, **kw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            ema_update(ema, net, ema_decay_at(step, ema_decay))
            step += 1
            pending.append(loss.detach())
            bar.update(1)
            sample_step = bool(sample_every) and sample_fn is not None and step % sample_every == 0
            due_sample = sample_step and w.is_main
            # a checkpoint folder exists before the first sample (samples may be written into it)
            due_save = ckpt_dir is not None and (step == steps or (
                bool(checkpoint_every) and step % checkpoint_every == 0) or (
                sample_step and not saved_once))
            if step % log_every == 0 or due_sample or due_save or step == steps:
                running = flush(step, running)  # one GPU sync per log_every steps
                bar.set_postfix(loss=f"{running:.4f}")
            if due_save:
                save(step, wall_before + time.perf_counter() - start)
                saved_once = True
            if due_sample:
                samples.append((step, sample_fn(ema, step)))
        bar.close()
        wall = wall_before + time.perf_counter() - start
        if ckpt_dir is not None and not ran:  # resumed at its last step: save it once more
            save(step, wall)
        net.train(was_training)
    return TrainResult(losses, step, ema, wall, samples, dict(info, device=str(device)))


def _check_labels(net: nn.Module, labels, n: int) -> int:
    """Check class labels ``[n]`` for ``net``; returns its null class (= num_classes)."""
    null_class = getattr(net, "num_classes", None)
    if null_class is None:
        raise ValueError("labels were given but net has no num_classes (unconditional net)")
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point() \
            or labels.dtype == torch.bool or labels.is_complex():
        got = f"{labels.dtype} {list(labels.shape)}" if isinstance(labels, Tensor) else \
            type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape [{n}], got {got}")
    if bool((labels < 0).any()) or bool((labels >= null_class).any()):
        raise ValueError(f"labels must lie in [0, {null_class}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return null_class
