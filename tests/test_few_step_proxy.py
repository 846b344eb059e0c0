"""benchmarks/few_step_proxy.py: its measuring pieces against closed forms on a Gaussian oracle,
and the committed CSV against the claims made from it (no wall-clock numbers, no MNIST run)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

from diffusion_lab import samplers as S
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import get_sde

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
import few_step_proxy as P  # noqa: E402

F64 = torch.float64
T_ENDS = [1e-3, 0.05, 0.075, 0.1]


@pytest.fixture(scope="module")
def oracle():
    sde = get_sde("vp")
    return sde, GaussianOracle(sde, [0.3, -0.2], [[0.04, 0.01], [0.01, 0.02]])


def _x1(sde, n, seed):  # what sample() / GenerativeModel.generate draw first
    return sde.prior_sample((n, 2), generator=torch.Generator().manual_seed(seed), dtype=F64)


# -- the measuring pieces -------------------------------------------------------------------------

def test_reference_is_the_closed_form_flow_and_converges_at_order_2(oracle):
    """Gaussian data: the PF-ODE map is linear and known (GaussianOracle.pf_map); the reference
    hits it at every t_end, its x̂_0 is Tweedie's at the exact x_t, and halving the λ-step
    divides the error by about 4 (DPM-Solver++(2M) is second order)."""
    sde, o = oracle
    x1 = _x1(sde, 256, 3)
    errs = {}
    for h in (0.12, 0.06):
        ref = P.reference(o, sde, x1, T_ENDS, h)
        assert sorted(ref) == T_ENDS
        errs[h] = []
        for t in T_ENDS:
            exact = o.pf_map(x1, 1.0, t)
            m, s = (float(v) for v in sde.marginal(torch.tensor(t, dtype=F64)))
            x0_exact = (exact - s * o(exact, t)) / m
            errs[h].append(float(P.distances(ref[t][0], exact).mean()))
            assert float(P.distances(ref[t][1], x0_exact).mean()) < 2e-3, (h, t)
    assert max(errs[0.06]) < 1e-4
    for coarse, fine in zip(errs[0.12], errs[0.06], strict=True):
        assert 3.0 < coarse / fine < 5.0, errs


def test_reference_grid_passes_through_every_end_with_bounded_steps(oracle):
    sde, _ = oracle
    grid = P.reference_grid(sde, T_ENDS, 0.1)
    assert grid[0] == sde.t_max and grid[-1] == min(T_ENDS)
    assert all(t in grid for t in T_ENDS)
    lam = sde.half_log_snr(torch.tensor(grid, dtype=F64))
    steps = lam[1:] - lam[:-1]
    assert bool((steps > 0).all()) and float(steps.max()) <= 0.1 + 1e-9


def test_the_proxy_sees_an_accurate_solve_as_0_and_a_coarse_or_misaligned_one_as_large(oracle):
    """sample() draws x_1 from the seeded generator exactly as prior_sample does (the convention
    the MNIST run relies on): an accurate UniPC solve lies on the reference, a 2-step DDIM does
    not, nor does the accurate solve of another seed's x_1."""
    sde, o = oracle
    ref = P.reference(o, sde, _x1(sde, 64, 5), [0.05], 0.03)[0.05][1]

    def run(steps, method="unipc", seed=5):
        return S.sample(o, sde, (64, 2), method=method, steps=steps, dtype=F64, t_end=0.05,
                        denoise=True, generator=torch.Generator().manual_seed(seed))

    scale = float(ref.norm(dim=1).mean())
    assert float(P.distances(run(200), ref).mean()) < 1e-4 * scale
    assert float(P.distances(run(2, "ddim"), ref).mean()) > 1e-2 * scale
    assert float(P.distances(run(200, seed=6), ref).mean()) > 0.3 * scale
    with pytest.raises(ValueError, match="one shape"):
        P.distances(ref, ref[:3])


def test_is_deterministic_says_which_configs_ignore_the_sampler_noise(oracle):
    """Each CONFIG run twice from the same x_1 with differently seeded generators: identical
    output exactly when ``is_deterministic`` says so (so the excluded ones are the noisy ones)."""
    sde, o = oracle
    x = _x1(sde, 16, 0)
    for name, (method, rule, opts) in P.CONFIGS.items():
        steps = rule(10, opts.get("denoise", False)) or rule(11, opts.get("denoise", False))
        a, b = (S.SAMPLERS[method](o, sde, x.clone(), steps=steps,
                                   generator=torch.Generator().manual_seed(g), **opts)
                for g in (1, 2))
        assert torch.equal(a, b) == P.is_deterministic(method, opts), name
    assert "unipc3_bh1_end005" in P.deterministic_configs()
