"""Resume continues *the same run*: any change to what defines it is refused, naming the
field (saved and new value); only ``steps`` may change, and only grow. Extending a run
gives exactly the weights of the longer run done in one go."""

from __future__ import annotations

import shutil

import pytest
import torch

from diffusion_lab.checkpoint import load_checkpoint
from diffusion_lab.nets import MLP
from diffusion_lab.schedules import CosineSchedule
from diffusion_lab.sde import VESDE, VPSDE
from diffusion_lab.training import train


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (64,), generator=g)
    return torch.randn(64, 2, generator=g) + 2.0 * labels[:, None], labels


BASE = dict(steps=4, batch_size=8, lr=1e-3, weight_decay=0.0, warmup=0, grad_clip=1.0,
            ema_decay=0.99, label_dropout=0.1, t_min=None, seed=5)


def _run(path, *, sde=None, data=None, labels=None, net=None, **changes):
    d, y = _data()
    kw = dict(BASE, **changes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = net or MLP(hidden=8, layers=1, num_classes=2)
    return train(net, sde or VPSDE(), d if data is None else data,
                 labels=y if labels is None else labels, checkpoint_dir=path, resume=True,
                 progress=False, **kw), net


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "ck"
    _run(path)
    return path


CHANGES = [
    ("sde", dict(sde=VESDE()), "sde (saved"),
    ("schedule", dict(sde=VPSDE(CosineSchedule())), "sde (saved"),
    ("beta-max", dict(sde=VPSDE(beta_max=19.0)), "sde (saved"),
    ("dataset", dict(data=_data(1)[0]), "data (saved n=64"),
    ("labels", dict(labels=1 - _data()[1]), "labels (saved num_classes=2"),
    ("lr", dict(lr=2e-3), "lr (saved 0.001, now 0.002)"),
    ("batch-size", dict(batch_size=16), "batch_size (saved 8, now 16)"),
    ("ema-decay", dict(ema_decay=0.9), "ema_decay (saved 0.99, now 0.9)"),
    ("weight-decay", dict(weight_decay=0.1), "weight_decay (saved 0.0, now 0.1)"),
    ("warmup", dict(warmup=3), "warmup (saved 0, now 3)"),
    ("grad-clip", dict(grad_clip=None), "grad_clip (saved 1.0, now null)"),
    ("t-min", dict(t_min=0.01), "t_min (saved 0.001, now 0.01)"),
    ("label-dropout", dict(label_dropout=0.5), "label_dropout (saved 0.1, now 0.5)"),
    ("seed", dict(seed=6), "seed (saved 5, now 6)"),
    ("target", dict(target="velocity"), 'target (saved "eps", now "velocity")'),
]


@pytest.mark.parametrize("name,change,message", CHANGES, ids=[c[0] for c in CHANGES])
def test_resume_refuses_a_changed_run(saved, tmp_path, name, change, message):
    path = shutil.copytree(saved, tmp_path / "ck")
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="cannot resume .*the run differs from the saved one "
                       "in " + message.replace("(", r"\(").replace(")", r"\)")) as info:
        _run(path, **change)
    assert "Only steps may change" in str(info.value)
    assert (path / "model.safetensors").read_bytes() == before  # nothing was written


def test_several_changes_are_all_named(saved, tmp_path):
    path = shutil.copytree(saved, tmp_path / "ck")
    with pytest.raises(ValueError, match=r"seed \(saved 5, now 0\); batch_size \(saved 8, now "
                       r"4\); lr \(saved 0\.001, now 0\.01\)"):
        _run(path, lr=1e-2, batch_size=4, seed=0)


def test_resume_refuses_fewer_steps_and_another_network(saved, tmp_path):
    path = shutil.copytree(saved, tmp_path / "ck")
    with pytest.raises(ValueError, match="steps=3: it is already at step 4; resuming can only "
                       "extend"):
        _run(path, steps=3)
    with pytest.raises(ValueError, match=r"network differs.*\['hidden'\]"):
        _run(path, net=MLP(hidden=16, layers=1, num_classes=2))


def test_extending_steps_equals_the_longer_run(saved, tmp_path):
    path = shutil.copytree(saved, tmp_path / "ck")
    extended, net_a = _run(path, steps=9)
    straight, net_b = _run(tmp_path / "straight", steps=9)
    assert extended.loss_history == straight.loss_history and len(straight.loss_history) == 9
    for k, v in net_a.state_dict().items():
        assert torch.equal(v, net_b.state_dict()[k]), k
    ck = load_checkpoint(path, training_state=True)
    assert ck.train_state["step"] == 9 and ck.train_state["run"]["seed"] == 5
    assert ck.info["seed"] == 5  # the recorded seed is the one the run uses
    same, _ = _run(path, steps=9)  # resuming at the end changes nothing
    assert same.loss_history == straight.loss_history


def test_a_checkpoint_without_a_run_record_is_not_resumed(saved, tmp_path):
    import json

    path = shutil.copytree(saved, tmp_path / "ck")
    state = json.loads((path / "train_state.json").read_text())
    del state["run"]
    (path / "train_state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"train_state\.json: field 'run': field required"):
        _run(path, steps=6)


def test_a_run_saved_before_the_target_field_resumes_as_eps(saved, tmp_path):
    import json

    path = shutil.copytree(saved, tmp_path / "ck")
    state = json.loads((path / "train_state.json").read_text())
    assert state["run"].pop("target") == "eps"
    (path / "train_state.json").write_text(json.dumps(state))
    other = shutil.copytree(path, tmp_path / "ck2")
    resumed, _ = _run(path, steps=6)  # an ε run: accepted
    assert len(resumed.loss_history) == 6
    with pytest.raises(ValueError, match='target \\(saved "eps", now "velocity"\\)'):
        _run(other, steps=8, target="velocity")
