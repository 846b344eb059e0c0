"""Straightness against closed forms; reflow pairs are the ODE's end points."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.reflow import reflow_pairs, straightness
from diffusion_lab.sde import RectifiedFlow


def test_a_straight_constant_speed_path_has_straightness_one():
    t = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[-3.0, 0.5]])
    traj = t[:, None, None] * a + (1 - t[:, None, None]) * b
    torch.testing.assert_close(straightness(traj, t), torch.ones(1, dtype=torch.float64))


def test_a_quarter_circle_has_straightness_eight_over_pi_squared():
    t = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    phi = 0.5 * math.pi * t
    traj = torch.stack([torch.cos(phi), torch.sin(phi)], -1)[:, None, :]
    assert straightness(traj, t).item() == pytest.approx(8 / math.pi**2, rel=1e-6)


def test_uneven_speed_on_a_line_is_penalised():
    t = torch.linspace(0.0, 1.0, 1001, dtype=torch.float64)
    traj = (t**2)[:, None, None] * torch.ones(1, 1, 2, dtype=torch.float64)  # ẋ = 2t
    # chord² / (L ∫ 4t² · 2 dt) = 2 / (8/3) = 3/4
    assert straightness(traj, t).item() == pytest.approx(0.75, rel=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="times must have one entry per recorded state"):
        straightness(torch.zeros(3, 2, 2), [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly monotone"):
        straightness(torch.zeros(3, 2, 2), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="traj must be a tensor"):
        straightness(torch.zeros(3, 2), [0.0, 0.5, 1.0])


def test_reflow_pairs_end_where_the_exact_flow_map_does():
    rf = RectifiedFlow()
    oracle = GaussianOracle(rf, [1.0, -0.5], [0.3, 0.05])
    z = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x0, z_out = reflow_pairs(oracle, rf, z, steps=100)
    assert z_out is z
    torch.testing.assert_close(x0, oracle.pf_map(rf.t_max * z, rf.t_max, rf.t_min),
                               rtol=1e-7, atol=1e-7)
