"""Prediction targets: conversions against closed forms, the exact velocity against the exact
probability-flow map, the marginal velocity as a posterior mean, and the flow-matching loss."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import parameterizations as P
from diffusion_lab.nets import MLP
from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle
from diffusion_lab.sde import VESDE, VPSDE, RectifiedFlow, SubVPSDE
from diffusion_lab.training import train, velocity_loss

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(), "rf": RectifiedFlow()}
T64 = torch.float64


def _xe(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=T64), torch.randn(n, 2, generator=g, dtype=T64)


@pytest.mark.parametrize("name", SDES)
def test_marginal_rates_are_the_derivatives_of_the_marginal(name):
    sde = SDES[name]
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=T64)
    h = 1e-6
    (mp, sp), (mm, sm) = sde.marginal(t + h), sde.marginal(t - h)
    dm, ds = sde.marginal_rates(t)
    torch.testing.assert_close(dm, (mp - mm) / (2 * h), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ds, (sp - sm) / (2 * h), rtol=1e-6, atol=1e-6)


def test_rectified_flow_rates_match_the_generic_formula_and_exist_at_one():
    rf = RectifiedFlow()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=T64)
    generic = super(RectifiedFlow, rf).marginal_rates(t)  # from f and g²
    for a, b in zip(rf.marginal_rates(t), generic, strict=True):
        torch.testing.assert_close(a, b)
    assert rf.marginal_rates(1.0) == (-1.0, 1.0)


@pytest.mark.parametrize("name", SDES)
def test_round_trips(name):
    sde = SDES[name]
    x, eps = _xe()
    t = torch.linspace(0.1, 0.9, 6, dtype=T64)
    m, s = sde.marginal(t)
    x0 = P.eps_to_x0(x, eps, m, s)
    torch.testing.assert_close(P.x0_to_eps(x, x0, m, s), eps)
    torch.testing.assert_close(P.score_to_eps(P.eps_to_score(eps, s), s), eps)
    v = P.eps_to_v(x, eps, m, s)
    torch.testing.assert_close(v, m[:, None] * eps - s[:, None] * x0)
    torch.testing.assert_close(P.v_to_eps(x, v, m, s), eps)
    u = P.eps_to_velocity(x, eps, sde, t)
    torch.testing.assert_close(P.velocity_to_eps(x, u, sde, t), eps)


@pytest.mark.parametrize("name", SDES)
def test_velocity_is_the_probability_flow_drift(name):
    sde = SDES[name]
    x, eps = _xe(1)
    t = torch.linspace(0.1, 0.9, 6, dtype=T64)
    _, s = sde.marginal(t)
    ode = sde.reverse(lambda xx, tt: -eps / s[:, None], probability_flow=True)
    torch.testing.assert_close(P.eps_to_velocity(x, eps, sde, t), ode.drift(x, t))


def test_v_prediction_on_vp_is_salimans_and_hos():
    sde = VPSDE()
    x, eps = _xe(8)
    t = torch.linspace(0.1, 0.9, 6, dtype=T64)
    m, s = (c[:, None] for c in sde.marginal(t))
    v = P.eps_to_v(x, eps, m[:, 0], s[:, 0])
    x0 = (x - s * eps) / m
    torch.testing.assert_close(m * x - s * v, x0)  # x̂_0 = m x_t − σ v̂ when m² + σ² = 1
    torch.testing.assert_close(m * eps - s * x0, v)


def test_rectified_flow_closed_forms():
    rf = RectifiedFlow()
    x, eps = _xe(2)
    t = torch.linspace(0.1, 0.9, 6, dtype=T64)
    x0 = (x - t[:, None] * eps) / (1 - t[:, None])
    torch.testing.assert_close(P.eps_to_velocity(x, eps, rf, t), eps - x0)
    torch.testing.assert_close(P.eps_to_velocity(x, eps, rf, t), (x - x0) / t[:, None])
    u = torch.randn(6, 2, dtype=T64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(P.velocity_to_eps(x, u, rf, t), x + (1 - t[:, None]) * u)
    torch.testing.assert_close(P.conditional_velocity(x0, eps, rf, t), eps - x0)
    # at t = 1 the velocity still determines ε (W = 1): ε̂ = x
    torch.testing.assert_close(P.velocity_to_eps(x, u, rf, 1.0), x)


@pytest.mark.parametrize("name", SDES)
def test_exact_velocity_is_the_time_derivative_of_the_exact_flow_map(name):
    sde = SDES[name]
    oracle = GaussianOracle(sde, [0.5, -1.0], [[0.3, 0.1], [0.1, 0.2]])
    x, _ = _xe(4)
    for s in (0.2, 0.5, 0.8):
        h = 1e-5
        fd = (oracle.pf_map(x, s, s + h) - oracle.pf_map(x, s, s - h)) / (2 * h)
        u = P.eps_to_velocity(x, oracle(x, s), sde, s)
        torch.testing.assert_close(u, fd, rtol=1e-5, atol=1e-5 * (1 + fd.abs().max().item()))


def test_marginal_velocity_is_the_posterior_mean_of_the_conditional_one():
    """u(x, t) = E[z − x_0 | x_t = x] by self-normalised importance sampling over x_0 ~ p_0."""
    rf = RectifiedFlow()
    oracle = GaussianMixtureOracle(rf, [[-1.0, 0.0], [1.0, 0.5]], [0.05, 0.1])
    g = torch.Generator().manual_seed(5)
    x0 = oracle.sample(400_000, generator=g)
    x = torch.tensor([[0.2, 0.1], [-0.5, 0.3], [1.0, -0.2]], dtype=T64)
    t = 0.6
    u_exact = P.eps_to_velocity(x, oracle(x, t), rf, t)
    for xi, ui in zip(x, u_exact, strict=True):
        logw = -((xi - (1 - t) * x0) ** 2).sum(-1) / (2 * t**2)
        w = torch.softmax(logw, 0)
        z = (xi - (1 - t) * x0) / t
        mc = (w[:, None] * (z - x0)).sum(0)
        ess = 1.0 / (w**2).sum()
        assert ess > 1000
        torch.testing.assert_close(mc, ui, rtol=0, atol=5.0 / math.sqrt(ess))


def test_wrappers_invert_each_other_and_sample_the_exact_flow():
    rf = RectifiedFlow()
    oracle = GaussianOracle(rf, [0.5, -1.0], [0.2, 0.1])
    u_model = P.eps_model_as_velocity(oracle, rf)
    eps_model = P.velocity_model_as_eps(u_model, rf)
    x, _ = _xe(6)
    t = torch.full((6,), 0.4, dtype=T64)
    torch.testing.assert_close(eps_model(x, t), oracle(x, t))
    from diffusion_lab.samplers import probability_flow
    out = probability_flow(eps_model, rf, x, steps=200, solver="rk4", grid="uniform")
    torch.testing.assert_close(out, oracle.pf_map(x, rf.t_max, rf.t_min), rtol=1e-6, atol=1e-6)


def test_bad_inputs_are_named():
    x, eps = _xe()
    with pytest.raises(ValueError, match="m must be nonzero"):
        P.eps_to_x0(x, eps, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"sigma must be a number or a \[B\] = \[6\] tensor"):
        P.eps_to_score(eps, torch.ones(3))
    with pytest.raises(TypeError, match="sde must be a diffusion_lab SDE"):
        P.eps_to_velocity(x, eps, "rf", 0.5)
    with pytest.raises(TypeError, match="u_model must be callable"):
        P.velocity_model_as_eps(3, RectifiedFlow())
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        P.conditional_velocity(x, eps[:3], RectifiedFlow(), 0.5)


def test_velocity_loss_is_the_conditional_flow_matching_loss():
    rf = RectifiedFlow()
    x0, z = _xe(7, n=8)
    t = torch.linspace(0.05, 0.95, 8, dtype=T64)

    def net(xt, tt):  # the exact conditional velocity recovered from x_t and x_0: loss 0
        return (xt - x0) / tt[:, None]

    assert velocity_loss(net, rf, x0, t, z).item() < 1e-24
    zero = MLP(hidden=8, layers=1).double()  # zero-initialised output layer
    torch.testing.assert_close(velocity_loss(zero, rf, x0, t, z), ((z - x0) ** 2).mean())
    vp = VPSDE()  # a general process: the target is m' x_0 + σ' z
    want = (P.conditional_velocity(x0, z, vp, t) ** 2).mean()
    torch.testing.assert_close(velocity_loss(zero, vp, x0, t, z), want)


def test_train_with_velocity_target_records_it_and_refuses_unknown_targets():
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    res = train(MLP(hidden=8, layers=1), RectifiedFlow(), data, steps=3, batch_size=16,
                progress=False, target="velocity")
    # the zero-initialised net's first loss is E‖z − x_0‖² on the first batch, ≈ 1 + 1 = 2
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(64, (16,), generator=g)
    torch.rand(16, generator=g)
    noise = torch.randn((16, 2), generator=g)
    assert res.loss_history[0] == pytest.approx(((noise - data[idx]) ** 2).mean().item(), rel=1e-6)
    assert res.info["target"] == "velocity"
    with pytest.raises(ValueError, match="unknown target 'score'; valid: eps, velocity"):
        train(MLP(hidden=8, layers=1), RectifiedFlow(), data, steps=1, target="score",
              progress=False)


def test_generative_model_refuses_a_velocity_target():
    from diffusion_lab.model import GenerativeModel

    model = GenerativeModel(MLP(hidden=8, layers=1), "rectified_flow")
    with pytest.raises(ValueError, match="GenerativeModel.train trains noise predictors"):
        model.train(torch.randn(16, 2), steps=1, target="velocity", progress=False)
