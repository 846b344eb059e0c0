"""The CPU training recipe and what it adds to training: the min-SNR weighting against an
independent x̂_0-space computation, the cosine learning rate against its closed form and as
the optimiser really sees it, resume rules, the recipe on the command line (defaults,
overrides, progress grids, the model card) and the recognisability read-out."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion_lab.__main__ import main, parse_args
from diffusion_lab.classifier import classifier_data, load_classifier
from diffusion_lab.evaluation import recognisability
from diffusion_lab.model import GenerativeModel
from diffusion_lab.nets import MLP, UNet
from diffusion_lab.parameterizations import eps_to_x0
from diffusion_lab.recipes import RECIPES, get_recipe
from diffusion_lab.sde import VPSDE, SubVPSDE
from diffusion_lab.training import eps_loss, lr_at, min_snr_weight, train


def _toy(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.3 + 1.0


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE()], ids=["vp", "subvp"])
def test_min_snr_eps_loss_is_the_capped_snr_weighted_x0_loss(sde):
    """w ‖ε̂ − ε‖² with w = min(SNR, γ)/SNR equals min(SNR, γ) ‖x̂_0 − x_0‖² (x̂_0 by Tweedie
    from ε̂), per sample; computed here in x̂_0 space, independently of eps_loss."""
    torch.manual_seed(0)
    net = MLP(hidden=16, layers=2)
    x0 = _toy(64)
    t = torch.linspace(0.002, 1.0, 64)
    z = torch.randn_like(x0)
    gamma = 5.0
    net.requires_grad_(False)  # values only: no graph, no grad-to-scalar warning
    got = eps_loss(net, sde, x0, t, z, weight=min_snr_weight(sde, t, gamma))
    m, s = sde.marginal(t)
    xt = m[:, None] * x0 + s[:, None] * z
    with torch.no_grad():
        x0_hat = eps_to_x0(xt, net(xt, t), m, s)
    snr = (m / s) ** 2
    expected = (torch.minimum(snr, torch.tensor(gamma)) * (x0_hat - x0).square().mean(1)).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # and it is not the unweighted loss (the weights matter at these times)
    assert abs(float(eps_loss(net, sde, x0, t, z)) - float(got)) > 0.05 * float(got)


def test_min_snr_weight_closed_form():
    sde = VPSDE()
    t = torch.tensor([0.01, 0.1, 0.5, 0.9])
    m, s = sde.marginal(t)
    snr = (m / s) ** 2
    w = min_snr_weight(sde, t, 5.0)
    assert torch.allclose(w[snr <= 5], torch.ones_like(w[snr <= 5]))
    assert torch.allclose(w[snr > 5], 5.0 / snr[snr > 5])
    assert bool((snr > 5).any()) and bool((snr <= 5).any())  # both branches tested
    with pytest.raises(ValueError, match="min_snr_gamma"):
        min_snr_weight(sde, t, 0.0)


def test_lr_at_closed_form():
    assert lr_at(0, 1.0) == 1.0 and lr_at(99, 1.0, warmup=10) == 1.0
    assert lr_at(4, 1.0, warmup=10) == pytest.approx(0.5)
    assert lr_at(0, 2.0, schedule="cosine", total=100) == pytest.approx(2.0)
    assert lr_at(50, 2.0, schedule="cosine", total=100) == pytest.approx(1.0)
    assert lr_at(25, 2.0, schedule="cosine", total=100) == pytest.approx(1 + math.cos(math.pi / 4))
    assert lr_at(99, 2.0, schedule="cosine", total=100) < 0.002
    assert lr_at(4, 2.0, warmup=10, schedule="cosine", total=100) == pytest.approx(
        2.0 * 0.5 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, 1.0, schedule="linear")


def test_train_steps_with_the_scheduled_learning_rate(monkeypatch):
    """The lr each AdamW step actually used is lr_at(n, ...)."""
    seen = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    train(MLP(hidden=8, layers=1), VPSDE(), _toy(), steps=12, batch_size=8, lr=1e-2, warmup=3,
          lr_schedule="cosine", progress=False)
    assert seen == pytest.approx([lr_at(n, 1e-2, 3, "cosine", 12) for n in range(12)])


def test_train_minimises_the_min_snr_loss_it_reports():
    """The first reported loss is the min-SNR-weighted loss of the initial network on the
    first batch, recomputed from the same generator draws."""
    data, sde, seed, batch = _toy(), VPSDE(), 3, 16
    torch.manual_seed(0)
    net = MLP(hidden=8, layers=1)
    init = MLP(hidden=8, layers=1)
    init.load_state_dict(net.state_dict())
    r = train(net, sde, data, steps=2, batch_size=batch, seed=seed, progress=False,
              loss_weighting="min_snr", min_snr_gamma=2.0)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(data.shape[0], (batch,), generator=g)
    t = sde.t_min + (1.0 - sde.t_min) * torch.rand(batch, generator=g)
    z = torch.randn((batch, 2), generator=g)
    with torch.no_grad():
        expected = eps_loss(init, sde, data[idx], t, z, weight=min_snr_weight(sde, t, 2.0))
        plain = eps_loss(init, sde, data[idx], t, z)
    assert r.loss_history[0] == pytest.approx(float(expected), rel=1e-6)
    assert abs(r.loss_history[0] - float(plain)) > 1e-3


def test_bad_recipe_arguments_name_themselves():
    with pytest.raises(ValueError, match="loss_weighting"):
        train(MLP(hidden=8, layers=1), VPSDE(), _toy(), steps=1, loss_weighting="snr",
              progress=False)
    with pytest.raises(ValueError, match="min_snr.*velocity|velocity.*uniform"):
        train(MLP(hidden=8, layers=1), VPSDE(), _toy(), steps=1, loss_weighting="min_snr",
              target="velocity", progress=False)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("gpu-imagenet")


def test_a_cosine_run_resumes_only_with_its_own_length(tmp_path):
    data = _toy()
    kw = dict(batch_size=8, progress=False, lr_schedule="cosine", checkpoint_dir=tmp_path / "ck",
              loss_weighting="min_snr")
    torch.manual_seed(0)
    train(MLP(hidden=8, layers=1), VPSDE(), data, steps=4, **kw)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="schedule_steps"):
        train(MLP(hidden=8, layers=1), VPSDE(), data, steps=6, resume=True, **kw)
    with pytest.raises(ValueError, match="loss_weighting"):
        train(MLP(hidden=8, layers=1), VPSDE(), data, steps=4, resume=True,
              **dict(kw, loss_weighting="uniform"))
    train(MLP(hidden=8, layers=1), VPSDE(), data, steps=4, resume=True, **kw)  # same run: fine


def test_every_recipe_option_is_a_train_option_and_explicit_flags_win(tmp_path):
    plain = vars(parse_args(["train", "--dataset", "mnist", "--steps", "1", "--out", "x"]))
    for recipe in RECIPES.values():
        unknown = set(recipe.options) - set(plain)
        assert not unknown, f"{recipe.name} sets options train does not have: {unknown}"
        args = parse_args(["train", "--recipe", recipe.name, "--out", "x"])
        for key, value in recipe.options.items():
            assert getattr(args, key) == value, key
    args = parse_args(["train", "--recipe", "cpu-mnist", "--steps", "7", "--lr", "1e-3",
                       "--no-evaluate", "--out", "x"])
    assert (args.steps, args.lr, args.evaluate) == (7, 1e-3, False)
    assert args.batch_size == RECIPES["cpu-mnist"].options["batch_size"]


def test_train_without_dataset_or_steps_names_the_flag(tmp_path, capsys):
    assert main(["train", "--steps", "3", "--out", str(tmp_path / "a")]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["train", "--dataset", "two_moons", "--out", str(tmp_path / "a")]) == 2
    assert "--steps" in capsys.readouterr().err


def test_progress_grids_and_a_folder_left_with_only_them(tmp_path, capsys):
    out = tmp_path / "moons"
    args = ["train", "--dataset", "two_moons", "--steps", "4", "--batch-size", "8",
            "--hidden", "8", "--layers", "1", "--n-points", "64", "--sample-every", "2",
            "--checkpoint-every", "100",  # the first grid comes before any periodic save
            "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "progress").iterdir()) == ["step_000002.png",
                                                                    "step_000004.png"]
    assert GenerativeModel.load(out).info["lr_schedule"] == "constant"
    (tmp_path / "stopped" / "progress").mkdir(parents=True)  # killed before its first save
    stopped = [a if a != str(out) else str(tmp_path / "stopped") for a in args]
    assert main(stopped) == 2
    assert "--force" in capsys.readouterr().err
    assert main(stopped + ["--force"]) == 0
    assert (tmp_path / "stopped" / "config.json").is_file()


@pytest.mark.slow
def test_the_recipe_on_the_command_line_writes_its_card(tmp_path, capsys):
    """A 3-step recipe run: the recipe's network and schedule, progress grids, and the card
    with the recipe's choices and the recognisability paragraph."""
    out = tmp_path / "mine"
    assert main(["train", "--recipe", "cpu-mnist", "--steps", "3", "--batch-size", "4",
                 "--sample-every", "3", "--evaluate-samples", "20", "--card-samples", "4",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    o = RECIPES["cpu-mnist"].options
    assert cfg["net"]["config"]["base_channels"] == o["base_channels"]
    assert cfg["training"]["lr_schedule"] == "cosine" and cfg["training"]["device"] == "cpu"
    assert cfg["training"]["wall_time"] > 0
    card = (out / "README.md").read_text()
    assert "recipe: `cpu-mnist`" in card and "min-SNR" in card and "wall time" in card
    assert "Recognisability (20 samples" in card and "classifier is confident" in card
    assert (out / "progress" / "step_000003.png").is_file()
    assert isinstance(GenerativeModel.load(out).net, UNet)


def test_recognisability_of_real_digits_and_of_wrong_requests():
    x, y = classifier_data("test")
    x, y = x[:100], y[:100]
    r = recognisability(x, y)
    clf = load_classifier()
    with torch.no_grad():
        p = clf(x).softmax(-1)
    conf = p.max(-1).values > 0.9
    assert r["confident"] == pytest.approx(float(conf.double().mean()))
    assert r["confident_agree"] == pytest.approx(float((conf & (p.argmax(-1) == y)).double()
                                                       .mean()))
    assert r["confident_agree"] > 0.9 and r["classes"] == 10
    wrong = recognisability(x, (y + 1) % 10)
    assert wrong["agree"] < 0.05 and wrong["confident"] == r["confident"]
    assert recognisability(x)["agree"] is None
    with pytest.raises(ValueError, match="requested"):
        recognisability(x, y[:5])
    with pytest.raises(ValueError, match="threshold"):
        recognisability(x, y, threshold=1.0)


def test_train_options_are_train_keywords_with_grad_clip_zero_meaning_none():
    import inspect

    from diffusion_lab.recipes import TRAIN_OPTIONS, train_options
    from diffusion_lab.training import train

    assert set(TRAIN_OPTIONS) <= set(inspect.signature(train).parameters)
    kw = train_options(get_recipe("cpu-mnist").options)
    assert kw == dict(batch_size=64, lr=2e-3, warmup=100, lr_schedule="cosine",
                      loss_weighting="min_snr", min_snr_gamma=5.0, ema_decay=0.995,
                      grad_clip=1.0, label_dropout=0.1)
    assert train_options({"grad_clip": 0.0, "steps": 5, "out": "x"}) == {"grad_clip": None}
