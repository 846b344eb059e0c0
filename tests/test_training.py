"""Training: the loss against its closed form, learning, determinism, per-sample label
dropout, EMA, and a real SIGKILL + resume ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from diffusion_lab.checkpoint import load_checkpoint
from diffusion_lab.nets import MLP
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE
from diffusion_lab.training import drop_labels, ema_decay_at, ema_update, eps_loss, train

ROOT = Path(__file__).resolve().parents[1]


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    labels = torch.randint(2, (n,), generator=g)
    return centres[labels] + 0.1 * torch.randn(n, 2, generator=g), labels


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_max=5.0)],
                         ids=["vp", "subvp", "ve"])
def test_eps_loss_of_the_exact_denoiser_matches_closed_form(sde):
    """For x_0 ~ N(μ, s² I) the Bayes ε̂ leaves E‖z − ε̂‖²/D = m² s² / (m² s² + σ²)."""
    g = torch.Generator().manual_seed(0)
    mu, s, n, d = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.7, 20000, 2
    oracle = GaussianOracle(sde, mu, torch.tensor(s**2, dtype=torch.float64))
    x0 = mu + s * torch.randn(n, d, generator=g, dtype=torch.float64)
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    for t in (0.05, 0.3, 0.8):
        tt = torch.full((n,), t, dtype=torch.float64)
        m, sig = (v.item() for v in sde.marginal(torch.tensor(t, dtype=torch.float64)))
        expected = m**2 * s**2 / (m**2 * s**2 + sig**2)
        got = eps_loss(oracle, sde, x0, tt, noise).item()
        tol = 5 * expected * math.sqrt(2.0 / (n * d))  # r ~ N(0, a): Var(r²) = 2a²
        assert abs(got - expected) < tol, (t, got, expected)


def test_loss_decreases_on_a_fixed_batch():
    data, _ = _toy(64)
    net = MLP(hidden=64, layers=2)
    sde = VPSDE()
    g = torch.Generator().manual_seed(1)
    t = sde.t_min + (1 - sde.t_min) * torch.rand(512, generator=g)
    x0 = data.repeat(8, 1)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        before = eps_loss(net, sde, x0, t, noise).item()
    result = train(net, sde, data, steps=300, batch_size=64, lr=3e-3, progress=False)
    with torch.no_grad():
        after = eps_loss(net, sde, x0, t, noise).item()
    assert abs(before - 1.0) < 0.1  # zero-initialised output: loss = mean z² ≈ 1
    assert after < 0.6 * before, (before, after)
    h = result.loss_history
    assert len(h) == 300 and result.steps == 300
    assert sum(h[-50:]) / 50 < 0.7 * sum(h[:50]) / 50


def test_same_seed_same_weights_and_losses():
    data, labels = _toy(128)

    def run(seed):
        torch.manual_seed(123)  # the net init is the caller's business
        net = MLP(hidden=32, layers=2, num_classes=2)
        r = train(net, VPSDE(), data, labels=labels, steps=40, batch_size=32, lr=1e-3,
                  warmup=5, seed=seed, progress=False)
        return net, r

    (a, ra), (b, rb), (c, rc) = run(0), run(0), run(1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
        assert torch.equal(ra.ema.state_dict()[k], rb.ema.state_dict()[k]), k
    assert ra.loss_history == rb.loss_history
    assert ra.loss_history != rc.loss_history
    assert not torch.equal(a.out.weight, c.out.weight)


def test_training_leaves_the_global_rng_alone():
    data, _ = _toy(64)
    net = MLP(hidden=16, layers=1)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    train(net, VPSDE(), data, steps=5, batch_size=8, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_drop_labels_is_per_sample_with_rate_p():
    g = torch.Generator().manual_seed(0)
    p, n = 0.1, 40000
    y = torch.randint(10, (n,), generator=g)
    out = drop_labels(y, p, 10, g)
    dropped = out == 10
    assert torch.equal(out[~dropped], y[~dropped])
    frac = dropped.double().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)
    # per sample, not per batch: batches of 128 are mixed, their counts ~ Binomial(128, p)
    counts = dropped[: 128 * 300].reshape(300, 128).sum(1).double()
    assert counts.min() > 0 and counts.max() < 128
    var = counts.var().item()
    assert abs(var - 128 * p * (1 - p)) < 0.35 * 128 * p * (1 - p)  # sd of s² ≈ √(2/299)·σ²


def test_training_drops_labels_per_sample():
    seen = []

    class Recorder(MLP):
        def forward(self, x, t, y=None):
            seen.append(y.clone())
            return super().forward(x, t, y)

    data, labels = _toy(256)
    net = Recorder(hidden=8, layers=1, num_classes=2)
    p = 0.3
    train(net, VPSDE(), data, labels=labels, label_dropout=p, steps=40, batch_size=64,
          progress=False)
    ys = torch.stack(seen)  # [steps, batch]
    nulls = (ys == 2).sum(1)
    assert nulls.min() > 0 and nulls.max() < 64  # never a whole batch at once
    n = ys.numel()
    assert abs((ys == 2).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_ema_update_formula_and_ramp():
    g = torch.Generator().manual_seed(0)
    a, b = MLP(hidden=4, layers=1), MLP(hidden=4, layers=1)
    with torch.no_grad():
        for p in list(a.parameters()) + list(b.parameters()):
            p.copy_(torch.randn(p.shape, generator=g))
    old = [p.clone() for p in a.parameters()]
    ema_update(a, b, 0.9)
    for pe, p0, p in zip(a.parameters(), old, b.parameters(), strict=True):
        assert torch.allclose(pe, 0.9 * p0 + 0.1 * p, atol=1e-6)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999) == 0.999


def test_sample_every_and_bad_arguments():
    data, labels = _toy(64)
    calls = []
    r = train(MLP(hidden=8, layers=1), VPSDE(), data, steps=10, batch_size=8, progress=False,
              sample_every=5, sample_fn=lambda ema, step: calls.append(step) or step)
    assert calls == [5, 10] and r.samples == [(5, 5), (10, 10)]
    with pytest.raises(ValueError, match="num_classes"):
        train(MLP(hidden=8, layers=1), VPSDE(), data, labels=labels, steps=1, progress=False)
    with pytest.raises(ValueError, match="labels must lie"):
        train(MLP(hidden=8, layers=1, num_classes=1), VPSDE(), data, labels=labels, steps=1,
              progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(MLP(hidden=8, layers=1), VPSDE(), data, steps=1, resume=True, progress=False)


def test_resume_refuses_a_different_network(tmp_path):
    data, _ = _toy(64)
    train(MLP(hidden=8, layers=1), VPSDE(), data, steps=3, batch_size=8, progress=False,
          checkpoint_dir=tmp_path / "ck")
    with pytest.raises(ValueError, match=r"network differs.*hidden"):
        train(MLP(hidden=16, layers=1), VPSDE(), data, steps=6, batch_size=8, progress=False,
              checkpoint_dir=tmp_path / "ck", resume=True)


SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from diffusion_lab.nets import MLP
    from diffusion_lab.sde import VPSDE
    from diffusion_lab.training import train
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(3, (512,), generator=g)
    data = torch.randn(512, 2, generator=g) + 2.0 * labels[:, None]
    torch.manual_seed(0)
    net = MLP(hidden=32, layers=2, num_classes=3)
    train(net, VPSDE(), data, labels=labels, steps=int(sys.argv[2]), batch_size=32, lr=1e-3,
          warmup=10, seed=3, checkpoint_dir=sys.argv[1], checkpoint_every=10, resume=True,
          progress=False)
""")


def _run_script(path, ckpt, steps, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(path), str(ckpt), str(steps)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    steps = 200
    ref = _run_script(script, tmp_path / "ref", steps)
    killed = _run_script(script, tmp_path / "run", steps)
    deadline = time.monotonic() + 90
    while not (tmp_path / "run" / "config.json").exists():
        assert killed.poll() is None, killed.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)  # let it get going (and maybe into the next save)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    at_kill = load_checkpoint(tmp_path / "run", training_state=True)  # intact after the kill
    step_at_kill = at_kill.train_state["step"]
    assert 10 <= step_at_kill < steps and step_at_kill % 10 == 0
    resumed = _run_script(script, tmp_path / "run", steps)
    for proc in (ref, resumed):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    a = load_checkpoint(tmp_path / "ref", training_state=True)
    b = load_checkpoint(tmp_path / "run", training_state=True)
    assert a.train_state["step"] == b.train_state["step"] == steps
    for x, y in ((a.net, b.net), (a.ema, b.ema)):
        for k, v in x.state_dict().items():
            assert torch.equal(v, y.state_dict()[k]), k
    for i, s in a.optimizer_state["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b.optimizer_state["state"][i][k]), (i, k)
    assert torch.equal(a.train_state["loss_history"], b.train_state["loss_history"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref", "run", "run.py"]
