"""DDIM between noise levels, SDEdit and interpolation at a level (diffusion_lab.interpolation),
the part-way time grid, and DDIM inversion on the same grid as DDIM (lesson 09)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import interpolation as ip
from diffusion_lab import tasks
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.samplers import DEFAULT_GRIDS, ddim
from diffusion_lab.sde import VPSDE
from diffusion_lab.timegrid import GRIDS, time_grid

F64 = torch.float64
SDE_ = VPSDE()
ORC = GaussianOracle(SDE_, torch.tensor([0.3, -0.2]), torch.tensor([[0.5, 0.2], [0.2, 0.3]]))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_time_grid_t_start_starts_part_way_and_defaults_to_t_max():
    for kind in GRIDS:
        assert torch.equal(time_grid(SDE_, 7, kind=kind, t_start=None), time_grid(SDE_, 7, kind=kind))
        g = time_grid(SDE_, 7, kind=kind, t_start=0.4)
        assert g[0] == 0.4 and g[-1] == SDE_.t_min and bool((g.diff() < 0).all())
    u = time_grid(SDE_, 4, t_end=0.1, kind="uniform", t_start=0.5)
    torch.testing.assert_close(u, torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1], dtype=F64))
    q = time_grid(SDE_, 2, t_end=0.1, kind="quadratic", t_start=0.5)  # t_end + (T − t_end)(1 − u)²
    torch.testing.assert_close(q, torch.tensor([0.5, 0.2, 0.1], dtype=F64))
    for bad in (0.05, 1.5, float("nan")):
        with pytest.raises(ValueError, match="t_start"):
            time_grid(SDE_, 3, t_end=0.1, t_start=bad)
    with pytest.raises(TypeError, match="t_start"):
        time_grid(SDE_, 3, t_start="0.5")


@pytest.mark.parametrize("grid", ["uniform", "quadratic", None])
def test_ddim_decode_from_t_max_is_the_ddim_sampler(grid):
    x1 = torch.randn(16, 2, generator=_gen(1), dtype=F64)
    torch.testing.assert_close(ip.ddim_decode(ORC, SDE_, x1, 1.0, 9, grid=grid),
                               ddim(ORC, SDE_, x1, steps=9, grid=grid), rtol=1e-12, atol=1e-12)


def test_ddim_decode_from_a_level_converges_to_the_exact_flow_at_first_order():
    x_t, t = ORC.sample(64, generator=_gen(2)) * 0.6 + 0.1, 0.6
    exact = ORC.pf_map(x_t, t, SDE_.t_min)
    errs = [float((ip.ddim_decode(ORC, SDE_, x_t, t, n) - exact).abs().max()) for n in (20, 40, 80)]
    for coarse, fine in zip(errs[:-1], errs[1:], strict=True):
        assert 1.7 < coarse / fine < 2.3  # first order
    assert errs[-1] < 2e-2


def test_default_inversion_uses_ddims_default_grid_so_the_round_trip_matches():
    x0 = ORC.sample(128, generator=_gen(3))
    z = tasks.ddim_invert(ORC, SDE_, x0, 30)
    assert torch.equal(z, tasks.ddim_invert(ORC, SDE_, x0, 30, grid=DEFAULT_GRIDS["ddim"]))
    back = ddim(ORC, SDE_, z, steps=30)  # both with their defaults
    matched = ddim(ORC, SDE_, z, steps=30, grid=DEFAULT_GRIDS["ddim"])
    assert torch.equal(back, matched)
    other = "uniform" if DEFAULT_GRIDS["ddim"] != "uniform" else "quadratic"
    z_other = tasks.ddim_invert(ORC, SDE_, x0, 30, grid=other)
    mismatched = ddim(ORC, SDE_, z_other, steps=30)  # inverted on another grid than decoded
    assert float((back - x0).norm(dim=1).mean()) < float((mismatched - x0).norm(dim=1).mean())


def test_noise_to_level_is_the_forward_marginal_and_checks_its_input():
    x0, z = torch.randn(5, 3, generator=_gen(4), dtype=F64), torch.randn(5, 3, generator=_gen(5), dtype=F64)
    want, _ = SDE_.marginal_sample(x0, torch.full((5,), 0.3, dtype=F64), noise=z)
    torch.testing.assert_close(ip.noise_to_level(SDE_, x0, 0.3, z), want, rtol=1e-12, atol=1e-12)
    g1, g2 = _gen(6), _gen(6)
    assert torch.equal(ip.noise_to_level(SDE_, x0, 0.3, generator=g1),
                       ip.noise_to_level(SDE_, x0, 0.3, generator=g2))
    for bad in (0.0, 1.2):
        with pytest.raises(ValueError, match="t must lie"):
            ip.noise_to_level(SDE_, x0, bad, z)
    with pytest.raises(ValueError, match="noise must have"):
        ip.noise_to_level(SDE_, x0, 0.3, z[:2])


def test_sdedit_with_the_exact_model_keeps_the_data_law():
    """x_0 ~ p_0 → x_t ~ p_t exactly → the PF flow back gives p_{t_end}: mean and covariance."""
    n = 4000
    x0 = ORC.sample(n, generator=_gen(7))
    out = ip.sdedit(ORC, SDE_, x0, 0.7, 100, generator=_gen(8))
    mean, cov = ORC.marginal_mean_cov(SDE_.t_min)
    se = (torch.diagonal(cov) / n).sqrt()
    assert bool(((out.mean(0) - mean).abs() < 5 * se + 5e-3).all())
    torch.testing.assert_close(torch.cov(out.T), cov, rtol=0, atol=0.05)
    far = ip.sdedit(ORC, SDE_, x0, 0.05, 20, generator=_gen(8))  # a small t keeps the points
    near = ip.sdedit(ORC, SDE_, x0, 0.7, 20, generator=_gen(8))
    assert float((far - x0).norm(dim=1).mean()) < 0.5 * float((near - x0).norm(dim=1).mean())


def test_interpolation_at_a_level_is_sdedit_of_the_pixel_blend_with_the_same_noise():
    a, b = torch.randn(1, 2, generator=_gen(9), dtype=F64), torch.randn(1, 2, generator=_gen(10), dtype=F64)
    z = torch.randn(1, 2, generator=_gen(11), dtype=F64)
    alphas = [0.0, 0.25, 0.5, 1.0]
    path = ip.interpolate_at_level(ORC, SDE_, a, b, alphas, 0.5, 12, noise=z)
    blends = torch.cat([(1 - al) * a + al * b for al in alphas])
    want = ip.sdedit(ORC, SDE_, blends, 0.5, 12, noise=z.expand(4, 2))
    torch.testing.assert_close(path, want, rtol=1e-12, atol=1e-12)
    assert path.shape == (4, 2)
    with pytest.raises(ValueError, match="alphas"):
        ip.interpolate_at_level(ORC, SDE_, a, b, [0.5, 1.5], 0.5, 3, noise=z)
    with pytest.raises(ValueError, match=r"shape \[1, \.\.\.\]"):
        ip.interpolate_at_level(ORC, SDE_, a.expand(2, 2), b.expand(2, 2), [0.5], 0.5, 3)


def test_ddim_walk_checks_its_grid():
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="at least 2"):
        ip.ddim_walk(ORC, SDE_, x, [0.5])
    with pytest.raises(ValueError, match="strictly"):
        ip.ddim_walk(ORC, SDE_, x, [0.5, 0.3, 0.4])
    up = ip.ddim_walk(ORC, SDE_, x, [0.2, 0.5])  # one step up, by hand
    tb = torch.full((2,), 0.2, dtype=F64)
    (ms, ss), (mt, st) = (tuple(float(v) for v in SDE_.marginal(torch.tensor(s, dtype=F64)))
                          for s in (0.2, 0.5))
    eps = ORC(x, tb)
    torch.testing.assert_close(up, mt * (x - ss * eps) / ms + st * eps, rtol=1e-12, atol=1e-12)
    assert math.isfinite(float(up.sum()))
