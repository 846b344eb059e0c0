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


# -- the committed CSVs and the claims made from them ---------------------------------------------

def _rows(name):
    with open(RESULTS / name) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def rows():
    return _rows("few_step_proxy.csv")


@pytest.fixture(scope="module")
def fid():
    return P.fid_at_10()


def _configs(rows, nfe):
    return [r for r in rows if r["config"] in P.CONFIGS and int(r["nfe"]) == nfe]


def test_rows_match_the_script(rows):
    assert rows and list(rows[0]) == P.FIELDS
    for r in rows:
        nfe, steps, seed = int(r["nfe"]), int(r["steps"]), int(r["seed"])
        assert seed != 0, r  # 0 is the report seed
        if r["config"] in P.CONFIGS:
            method, rule, opts = P.CONFIGS[r["config"]]
            assert r["method"] == method and steps == rule(nfe, opts.get("denoise", False)), r
            assert float(r["t_end"]) == opts.get("t_end", 1e-3)
            assert r["denoise"] == str(opts.get("denoise", False))
        elif r["config"] in P.REFERENCE_ROWS:
            method, ref_steps, opts = P.REFERENCE_ROWS[r["config"]]
            assert (r["method"], steps, nfe) == (method, ref_steps, ref_steps + 1)
        else:
            assert r["config"] == "reference_2x" and nfe == steps + 1, r
        assert 0 <= float(r["l2_median"]) <= float(r["l2_max"])
        assert float(r["l2_mean"]) <= float(r["l2_rms"]) + 1e-6 <= float(r["l2_max"]) + 2e-6
        assert float(r["l2_mean_clip"]) <= float(r["l2_mean"]) + 1e-6  # clipping contracts


def test_every_deterministic_config_has_a_10_nfe_row_and_no_stochastic_one_any(rows):
    at10 = _configs(rows, 10)
    assert sorted(r["config"] for r in at10) == sorted(P.deterministic_configs())
    assert len({r["n"] for r in at10}) == 1
    assert all(P.is_deterministic(*P.CONFIGS[r["config"]][::2]) for r in rows
               if r["config"] in P.CONFIGS)


def test_paired_columns_are_differences_to_the_best_of_the_same_end(rows):
    """The mean of d − d_best equals the difference of the means, best = lowest of its group."""
    for nfe in (5, 10, 20):
        groups = {}
        for r in _configs(rows, nfe):
            groups.setdefault((r["n"], r["t_end"], r["denoise"]), []).append(r)
        for group in groups.values():
            best = min(group, key=lambda r: float(r["l2_mean"]))
            for r in group:
                diff = float(r["l2_mean"]) - float(best["l2_mean"])
                assert abs(float(r["diff_best"]) - diff) < 1e-4, r
            assert float(best["diff_best"]) == float(best["diff_best_se"]) == 0.0


def test_the_reference_is_converged_and_coarser_ones_are_not(rows):
    """Halving the reference's step moves it ≥ 50× less than the significant (> 2 s.e.) paired
    differences between 10-NFE configs, at every end a config uses; the 120- and 30-step UniPC
    solves (the earlier scratch reference) are ≥ 50× farther from it than that."""
    check = {(float(r["t_end"]), r["denoise"]): r for r in rows if r["config"] == "reference_2x"}
    assert set(check) == {(float(r["t_end"]), r["denoise"]) for r in _configs(rows, 10)}
    significant = [float(r["diff_best"]) for r in _configs(rows, 10)
                   if float(r["diff_best"]) > 2 * float(r["diff_best_se"])]
    worst = max(float(r["l2_mean"]) for r in check.values())
    assert worst * 50 < min(significant), (worst, significant)
    assert max(float(r["l2_max"]) for r in check.values()) < 0.05
    for name in P.REFERENCE_ROWS:
        (r,) = [r for r in rows if r["config"] == name]
        assert float(r["l2_mean"]) > 50 * float(check[(0.05, "True")]["l2_mean"]), r


def test_the_chosen_config_is_the_closest_of_those_ending_at_005(rows):
    end005 = [r for r in _configs(rows, 10) if float(r["t_end"]) == 0.05]
    best = min(end005, key=lambda r: float(r["l2_mean"]))
    assert best["config"] == P.CLAIM["chosen"] == "unipc3_bh1_end005"
    for r in end005:
        if r is not best:  # paired: the same x_1, so the margin is surer than the means' s.e.
            assert float(r["diff_best"]) > 2 * float(r["diff_best_se"]), r


def test_rank_agreement_with_fid_is_as_claimed(rows, fid):
    assert set(fid) >= set(P.deterministic_configs())
    pairs = P.rank_agreement(rows, fid)
    assert len(pairs) == P.CLAIM["pairs"]
    assert sum(p["agree"] for p in pairs) == P.CLAIM["agree"]
    assert {(p["lower_proxy"], p["higher_proxy"]) for p in pairs if not p["agree"]} \
        == P.CLAIM["disagree"]
    pairs = P.rank_agreement(rows, P.fid_at_10(n=2000))  # 4x the samples: the same verdicts
    assert (len(pairs), sum(p["agree"] for p in pairs)) == (P.CLAIM["pairs_2000"],
                                                           P.CLAIM["agree_2000"])
    assert {(p["lower_proxy"], p["higher_proxy"]) for p in pairs if not p["agree"]} \
        <= P.CLAIM["disagree"]


def test_the_fid_rows_reproduce_the_committed_tuning_row():
    """few_step_proxy_fid.csv was written by few_step_fid.py with the tuning protocol: where
    few_step_fid.csv holds the same (config, NFE, n, seed), the FID is the same."""
    new = {(r["config"], r["nfe"], r["n"], r["seed"]): float(r["fid"])
           for r in _rows("few_step_proxy_fid.csv")}
    old = {(r["config"], r["nfe"], r["n"], r["seed"]): float(r["fid"])
           for r in _rows("few_step_fid.csv") if r["family"] == "ours"}
    shared = set(new) & set(old)
    assert shared
    for k in shared:
        assert abs(new[k] - old[k]) < 1e-5, k
    assert all(r["role"] == "tuning" and r["seed"] != "0" for r in _rows("few_step_proxy_fid.csv"))
