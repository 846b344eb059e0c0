"""Resuming a training run: what defines a run, and the checks before one is continued.

A resumable checkpoint's ``train_state.json`` records the run (:func:`run_spec`): the SDE,
the data and labels (count, shape, dtype, SHA-256 of the bytes), the seed and every
hyperparameter that changes the trajectory (batch size, lr, weight decay, warm-up,
gradient clipping, EMA decay, t_min, label dropout) and the prediction target ("eps" or
"velocity"), the learning-rate schedule and the loss weighting (a checkpoint written before
one of these existed counts as :data:`RUN_DEFAULTS`). :func:`restore` refuses a resume
that changes any of them, or the network, naming each changed field; only ``steps`` may
change, and only grow. A checkpoint folder missing because a save died between its two
renames is an error that points to the explicit recovery (:func:`resumable`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor

from .atomic import interrupted_saves
from .checkpoint import load_checkpoint, load_state_strict, sde_to_json
from .sde import SDE

__all__ = ["run_spec", "checkpoint_state", "resumable", "restore", "RUN_DEFAULTS"]

# Fields added to the run spec after checkpoints were written without them, with the
# meaning those checkpoints had: an ε-model, a constant learning rate, an unweighted loss.
RUN_DEFAULTS = {"target": "eps", "lr_schedule": "constant", "schedule_steps": None,
                "loss_weighting": "uniform", "min_snr_gamma": None}


def checkpoint_state(generator, step, losses, wall, ema_decay, device, run) -> dict:
    """The ``train_state`` of a resumable checkpoint: both RNG states (and CUDA's), the loss
    history, wall time, EMA decay and the run's definition (:func:`run_spec`)."""
    state = {"generator_state": generator.get_state(),
             "torch_cpu_rng_state": torch.get_rng_state(),
             "loss_history": torch.tensor(losses, dtype=torch.float64),
             "wall_time": wall, "ema_decay": ema_decay, "run": run}
    if device.type == "cuda":
        state["torch_cuda_rng_state"] = torch.cuda.get_rng_state(device)
    return state


def _sha256(x: Tensor) -> str:
    flat = x.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def run_spec(sde: SDE, data: Tensor, labels, num_classes, target: str = "eps", **hyper) -> dict:
    """What defines a run (JSON): a resume must match it exactly (see module docs)."""
    run = {"sde": sde_to_json(sde), "target": target,
           "data": {"n": data.shape[0], "shape": list(data.shape[1:]), "dtype": str(data.dtype),
                    "sha256": _sha256(data)},
           "labels": None if labels is None else {"num_classes": num_classes,
                                                  "sha256": _sha256(labels.to(torch.long))},
           **hyper}
    return json.loads(json.dumps(run, allow_nan=False))


def resumable(ckpt_dir: Path) -> bool:
    """True when ``ckpt_dir`` holds a checkpoint; False for a fresh start. A folder missing
    because a save died between its renames is an error: recovery is explicit."""
    if ckpt_dir.exists():
        return True
    found = interrupted_saves(ckpt_dir)
    if found:
        raise FileNotFoundError(
            f"cannot resume {ckpt_dir}: it is missing, but an interrupted save left a complete "
            f"copy beside it ({found[0].name}); restore it first with "
            f"diffusion_lab.checkpoint.recover_checkpoint({str(ckpt_dir)!r}) "
            "(CLI: --resume --recover)")
    return False  # nothing (or only unfinished temporary folders): start the run


def _describe(value) -> str:
    if isinstance(value, dict) and "sha256" in value:
        return ", ".join(f"{k}={v[:12] if k == 'sha256' else v}" for k, v in value.items())
    return json.dumps(value)


def restore(ckpt_dir: Path, net, ema, optimizer, run: dict, steps: int, device) -> dict:
    """Load the checkpoint into ``net``, ``ema`` and ``optimizer`` after checking it is the
    same run; returns its train state."""
    ck = load_checkpoint(ckpt_dir, device=device, training_state=True)
    if ck.train_state is None or ck.optimizer_state is None or ck.ema is None:
        raise ValueError(f"{ckpt_dir} holds no training state (saved without optimizer or "
                         "EMA, e.g. --slim); it cannot be resumed")
    saved_cfg, cfg = ck.config["net"]["config"], net.config()
    if ck.config["net"]["class"] != type(net).__name__ or saved_cfg != cfg:
        diff = sorted(k for k in set(saved_cfg) | set(cfg) if saved_cfg.get(k) != cfg.get(k))
        raise ValueError(f"cannot resume {ckpt_dir}: the network differs from the saved "
                         f"{ck.config['net']['class']} (config keys {diff})")
    saved = {**RUN_DEFAULTS, **ck.train_state["run"]}  # what older runs did implicitly
    changed = [f"{k} (saved {_describe(saved[k])}, now {_describe(run[k])})"
               for k in run if saved.get(k) != run[k]]
    if changed:
        raise ValueError(f"cannot resume {ckpt_dir}: the run differs from the saved one in "
                         + "; ".join(changed) + ". Only steps may change; start a new run "
                         "in another folder instead")
    if steps < ck.train_state["step"]:
        raise ValueError(f"cannot resume {ckpt_dir} with steps={steps}: it is already at step "
                         f"{ck.train_state['step']}; resuming can only extend a run")
    params = list(net.parameters())
    for idx, state in ck.optimizer_state["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            if idx >= len(params) or key not in state or state[key].shape != params[idx].shape:
                raise ValueError(f"{ckpt_dir}/optimizer.safetensors: state.{idx}.{key} does not "
                                 "match the network's parameters")
    load_state_strict(net, ck.net.state_dict(), f"{ckpt_dir}/model.safetensors")
    load_state_strict(ema, ck.ema.state_dict(), f"{ckpt_dir}/ema.safetensors")
    optimizer.load_state_dict(ck.optimizer_state)
    fused = device.type == "cuda"
    for group in optimizer.param_groups:  # the implementation follows this device
        group["fused"], group["foreach"] = fused or None, None
    return ck.train_state
