"""Strict inputs: no silent coercion in generate / sample / train, the package's own message
(not torch's) for a bad dtype, device or generator, and a sampler whose own state overflows
raises (naming the step) instead of returning inf/NaN."""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import tiny_conditional_model

from diffusion_lab.nets import MLP
from diffusion_lab.samplers import SAMPLERS, sample
from diffusion_lab.sde import VESDE, VPSDE
from diffusion_lab.training import train

_cond = tiny_conditional_model


GENERATE = [
    (dict(labels=True), TypeError, "labels must be an int, a list of ints or an integer tensor"),
    (dict(labels=[1.5] * 4), TypeError, "labels must be ints, got float 1.5"),
    (dict(labels=[True, 0, 1, 2]), TypeError, "labels must be ints, got bool"),
    (dict(labels=torch.ones(4)), TypeError, "labels must be an integer tensor, got dtype "
     "torch.float32"),
    (dict(labels=torch.ones(4, dtype=torch.bool)), TypeError, "integer tensor, got dtype "
     "torch.bool"),
    (dict(labels="1"), TypeError, "labels must be an int"),
    (dict(labels=-1), ValueError, r"labels must lie in \[0, 3\)"),
    (dict(labels=[0, 1]), ValueError, "n = 4 entries"),
    (dict(labels=1, guidance="2"), TypeError, "guidance must be a finite number, got str '2'"),
    (dict(labels=1, guidance=True), TypeError, "guidance must be a finite number, got bool"),
    (dict(labels=1, guidance=float("nan")), ValueError, "guidance must be finite, got nan"),
    (dict(labels=1, guidance=float("inf")), ValueError, "guidance must be finite"),
    (dict(seed=1.5), TypeError, r"seed must be an int in \[0, 2\*\*64\), got float 1.5"),
    (dict(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*64\), got -1"),
    (dict(seed=2**64), ValueError, "seed must be an int"),
    (dict(seed="0"), TypeError, "seed must be an int"),
    (dict(seed=True), TypeError, "seed must be an int"),
    (dict(n=4.0), TypeError, "n must be an int"),
    (dict(n=True), TypeError, "n must be an int"),
    (dict(n=-2), ValueError, "n must be >= 1"),
    (dict(method=3), ValueError, "unknown method 3"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
]


@pytest.mark.parametrize("kwargs,error,match", GENERATE, ids=[str(k) for k, _, _ in GENERATE])
def test_generate_refuses_coercions(kwargs, error, match):
    kwargs = dict(dict(n=4, steps=2), **kwargs)
    with pytest.raises(error, match=match):
        _cond().generate(**kwargs)


def test_generate_accepts_what_it_documents():
    model = _cond()
    a = model.generate(4, steps=2, labels=[0, 1, 2, 0], guidance=2)
    b = model.generate(4, steps=2, labels=torch.tensor([0, 1, 2, 0]), guidance=2.0)
    assert torch.equal(a, b)
    assert torch.equal(model.generate(4, steps=2, labels=1),
                       model.generate(4, steps=2, labels=(1, 1, 1, 1)))
    model.generate(2, steps=2, seed=2**64 - 1)


SAMPLE = [
    (dict(shape=(8, 2.7)), TypeError, r"shape must be a tuple of positive ints, got float 2.7"),
    (dict(shape=(8, "2")), TypeError, "shape must be a tuple of positive ints, got str '2'"),
    (dict(shape=(8, True)), TypeError, "got bool"),
    (dict(shape=(8, 0)), ValueError, "positive ints"),
    (dict(shape=()), TypeError, "non-empty tuple"),
    (dict(shape=8), TypeError, "non-empty tuple"),
    (dict(dtype=torch.int64), TypeError, "dtype must be a floating torch dtype"),
    (dict(dtype="float32"), TypeError, "dtype must be a floating torch dtype"),
    (dict(device="bogus"), ValueError, "device 'bogus' is not a device"),
    (dict(device=3.5), TypeError, "device must be a str or torch.device"),
    (dict(generator=42), TypeError, "generator must be a torch.Generator or None, got int 42"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(method="nope"), ValueError, "unknown method 'nope'"),
]


@pytest.mark.parametrize("kwargs,error,match", SAMPLE, ids=[str(k) for k, _, _ in SAMPLE])
def test_sample_refuses_bad_arguments_with_its_own_message(kwargs, error, match):
    kwargs = dict(dict(shape=(8, 2), steps=2), **kwargs)
    shape = kwargs.pop("shape")
    with pytest.raises(error, match=match):
        sample(lambda x, t: torch.zeros_like(x), VPSDE(), shape, **kwargs)


def test_a_cuda_generator_for_cpu_tensors_is_named():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with pytest.raises(ValueError, match="generator is on cuda, the tensors on cpu"):
        sample(lambda x, t: torch.zeros_like(x), VPSDE(), (2, 2), steps=2,
               generator=torch.Generator("cuda"))


TRAIN = [
    (dict(grad_clip=float("nan")), ValueError, "grad_clip must be finite and > 0, got nan"),
    (dict(grad_clip=-1.0), ValueError, "grad_clip must be finite and > 0, got -1.0"),
    (dict(grad_clip=0.0), ValueError, "grad_clip must be finite and > 0"),
    (dict(label_dropout=5), ValueError, r"label_dropout must lie in \[0, 1\], got 5"),
    (dict(label_dropout=float("nan")), ValueError, "label_dropout must be finite"),
    (dict(ema_decay=1.0), ValueError, r"ema_decay must lie in \[0, 1\), got 1.0"),
    (dict(ema_decay="0.9"), TypeError, "ema_decay must be a finite number"),
    (dict(lr=float("inf")), ValueError, "lr must be finite"),
    (dict(seed=-3), ValueError, "seed must be an int"),
    (dict(seed=0.5), TypeError, "seed must be an int"),
    (dict(device="bogus"), ValueError, "device 'bogus' is not a device"),
    (dict(warmup=1.5), TypeError, "warmup must be an int"),
    (dict(labels=torch.zeros(16, dtype=torch.bool)), ValueError, "labels must be an integer "
     "tensor"),
]


@pytest.mark.parametrize("kwargs,error,match", TRAIN, ids=[str(k) for k, _, _ in TRAIN])
def test_train_refuses_bad_arguments(kwargs, error, match):
    net = MLP(hidden=4, layers=1, num_classes=2 if "labels" in kwargs else None)
    with pytest.raises(error, match=match):
        train(net, VPSDE(), torch.zeros(16, 2), steps=1, batch_size=4, progress=False, **kwargs)


def test_grad_clip_none_is_the_one_way_to_switch_clipping_off(monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm: calls.append(max_norm) or real(params, max_norm))
    data = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    for clip in (None, 0.5):
        train(MLP(hidden=4, layers=1), VPSDE(), data, steps=3, batch_size=4, grad_clip=clip,
              progress=False)
    assert calls == [0.5, 0.5, 0.5]


def test_sampler_overflow_is_an_error_naming_the_step():
    """ε̂ = 3e38 is finite in float32, so the network check passes; x̂_0 = (x − σε̂)/m with
    m(1) ≈ 0.0067 overflows inside the first update. Every sampler raises, naming the step,
    instead of returning inf/NaN."""
    def eps(x, t):
        return torch.full_like(x, 3e38)

    opts = {"restart": {"t_restart": (0.2, 0.5)}}  # its default t_hi = 0.3 is below 3 steps' t_1
    for method in SAMPLERS:
        with pytest.raises(FloatingPointError, match=rf"^{method}: the sample became non-finite "
                           r"at step 0 \(t=0\.667\)"):
            sample(eps, VPSDE(), (4, 2), method=method, steps=3, grid="uniform",
                   generator=torch.Generator().manual_seed(0), **opts.get(method, {}))
    with pytest.raises(FloatingPointError, match="non-finite"):  # the adaptive solver too
        sample(eps, VPSDE(), (4, 2), method="probability_flow", solver="rk45", steps=3)


def test_the_final_state_is_checked_too():
    """Only the last network call (the x̂_0 of denoise=True) is huge: σ(t_end) ≈ 10, so
    x̂_0 = x − σ ε̂ overflows after the last step; the result is refused at step 3."""
    calls = []

    def eps(x, t):
        calls.append(1)
        return torch.full_like(x, 3e38 if len(calls) == 4 else 0.0)

    with pytest.raises(FloatingPointError, match=r"ddim: the sample became non-finite at step "
                       r"3 \(t=1e-05\)"):
        sample(eps, VESDE(sigma_min=10.0, sigma_max=1e30), (4, 2), method="ddim", steps=3,
               denoise=True)
    assert len(calls) == 4
