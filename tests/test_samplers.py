"""Samplers: API, validation, bookkeeping (callback, info, NFE, seeds), the time grids,
the exact algebraic identities between samplers, and the Langevin corrector.

Accuracy against closed forms is in ``test_samplers_accuracy.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import restart as restart_module
from diffusion_lab import sampler_run
from diffusion_lab import samplers as S
from diffusion_lab import unipc as unipc_module
from diffusion_lab.oracles import GaussianOracle
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE
from diffusion_lab.timegrid import coefficients, time_grid

F64 = torch.float64
MEAN, COV = [1.0, -0.5], [[1.0, 0.5], [0.5, 0.8]]
VARIANTS = [  # (method, options) covering every code path
    ("euler_maruyama", {}),
    ("predictor_corrector", {}),
    ("predictor_corrector", {"n_corrector": 2}),
    ("probability_flow", {"solver": "euler"}),
    ("probability_flow", {"solver": "heun"}),
    ("probability_flow", {"solver": "rk4"}),
    ("probability_flow", {"solver": "rk45"}),
    ("exponential_integrator", {}),
    ("exponential_integrator", {"stochastic": False}),
    ("ddim", {}),
    ("ddim", {"eta": 0.5}),
    ("dpm_solver", {}),
    ("dpm_solver", {"order": 1}),
    ("ancestral", {}),
    ("ancestral", {"variance": "beta"}),
    ("edm", {}),
    ("edm", {"s_churn": 10.0}),
    ("restart", {}),
    ("restart", {"restarts": 2, "restart_steps": 1, "t_restart": (0.2, 0.6)}),
    ("unipc", {}),
    ("unipc", {"order": 1}),
    ("unipc", {"corrector": False}),
    ("unipc", {"order": 3, "variant": "bh1"}),
]



@pytest.fixture(scope="module")
def vp():
    return VPSDE()


@pytest.fixture(scope="module")
def oracle(vp):
    return GaussianOracle(vp, MEAN, COV)


class Counting:
    """Wraps an eps_model and counts its calls (the independent NFE count)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t, y=None):
        self.calls += 1
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        return self.model(x, t) if y is None else self.model(x, t, y)


def _prior(n=16, seed=0, sde=None):
    return (sde or VPSDE()).prior_sample((n, 2), torch.Generator().manual_seed(seed), dtype=F64)


# -- sample() and the registry ---------------------------------------------------------------
def test_registry_and_dispatch(oracle, vp):
    assert set(S.SAMPLERS) == {"euler_maruyama", "predictor_corrector", "probability_flow",
                               "exponential_integrator", "ddim", "dpm_solver", "ancestral", "edm",
                               "restart", "unipc"}
    assert set(S.DEFAULT_GRIDS) == set(S.SAMPLERS)
    # one source of truth for the default grids: the modules' constants are DEFAULT_GRIDS' entries
    assert unipc_module.DEFAULT_GRID == S.DEFAULT_GRIDS["unipc"]
    assert restart_module.DEFAULT_GRID == S.DEFAULT_GRIDS["restart"]
    assert S._Run is sampler_run._Run and S.DEFAULT_GRIDS is sampler_run.DEFAULT_GRIDS
    for method in ("unipc", "restart"):  # grid=None is DEFAULT_GRIDS[method]
        info = {}
        S.sample(oracle, vp, (4, 2), method=method, steps=6, dtype=F64, info=info)
        assert info["grid"] == S.DEFAULT_GRIDS[method]
    # sample() == prior draw + the sampler function, with the same generator stream
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = S.sample(oracle, vp, (8, 2), method="ddim", steps=5, generator=g1, dtype=F64, eta=0.3)
    x1 = vp.prior_sample((8, 2), g2, dtype=F64)
    b = S.ddim(oracle, vp, x1, steps=5, generator=g2, eta=0.3)
    assert torch.equal(a, b)
    assert S.sample(oracle, vp, (4, 2), steps=2).dtype == torch.float32  # the documented default


def test_unknown_method_lists_valid_names(oracle, vp):
    msg = "unknown method 'heun'; valid: euler_maruyama, .*dpm_solver, ancestral, edm"
    with pytest.raises(ValueError, match=msg):
        S.sample(oracle, vp, (4, 2), method="heun")


@pytest.mark.parametrize("method,opts", VARIANTS)
def test_seeds_nfe_callback_and_info(method, opts, oracle, vp):
    """Same seed → bitwise equal; NFE in ``info`` = true model calls; the callback sees
    every step once with increasing index, decreasing t ending at t_end, and the final x."""
    steps = 6
    runs = []
    for seed in (1, 1, 2):
        model, calls, info = Counting(oracle), [], {}
        out = S.sample(model, vp, (32, 2), method=method, steps=steps, dtype=F64,
                       generator=torch.Generator().manual_seed(seed), info=info,
                       callback=lambda i, t, x, x0, c=calls: c.append((i, t, x.clone(), x0)),
                       **opts)
        runs.append(out)
        assert info["nfe"] == model.calls and info["method"] == method
        assert info["t_end"] == vp.t_min
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    idx = [c[0] for c in calls]
    ts = [c[1] for c in calls]
    assert idx == list(range(len(calls))) and all(isinstance(t, float) for t in ts)
    assert ts[-1] == pytest.approx(vp.t_min, abs=1e-12)
    assert torch.equal(calls[-1][2], runs[2])
    if method == "restart":  # main grid to t_lo, K × the segment t_hi → t_lo, main grid to t_end
        k, seg = opts.get("restarts", 1), info["restart_steps"]
        assert seg == opts.get("restart_steps", 2)  # None: the 6-step grid's count, floored at 2
        (t_lo, t_hi), main = info["t_restart"], time_grid(vp, steps, kind=info["grid"]).tolist()
        loop = time_grid(vp, seg, t_lo, info["grid"], t_start=t_hi).tolist()
        j = main.index(t_lo)
        assert ts == main[1:j + 1] + loop[1:] * k + main[j + 1:]
        assert info["nfe"] == len(calls) == info["steps"] == steps + k * seg
        return
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    if opts.get("solver") == "rk45":
        assert info["steps"] == len(calls)
        assert info["nfe"] == 1 + 6 * (info["steps"] + info["rejected"])
        return
    assert len(calls) == steps == info["steps"]
    if method == "edm":  # Heun on every step but the last (Euler)
        assert info["nfe"] == 2 * steps - 1
        return
    per_step = {"predictor_corrector": 1 + opts.get("n_corrector", 1),
                "probability_flow": {"euler": 1, "heun": 2, "rk4": 4}.get(opts.get("solver"))}
    assert info["nfe"] == steps * (per_step.get(method) or 1)


def test_callback_x0_hat_is_the_tweedie_estimate_of_the_step(oracle, vp):
    """ddim's callback reports x̂_0 = (x_s − σ_s ε̂(x_s, s))/m_s at the step's start state."""
    x1 = _prior(8)
    states, x0s = [x1], []
    grid = time_grid(vp, 4).tolist()
    S.ddim(oracle, vp, x1, steps=4, grid="uniform",
           callback=lambda i, t, x, x0: (states.append(x), x0s.append(x0)))
    for i, (x, x0) in enumerate(zip(states[:-1], x0s, strict=True)):
        m, s = coefficients(vp, grid[i])[:2]
        expected = (x - s * oracle(x, torch.full((8,), grid[i], dtype=F64))) / m
        torch.testing.assert_close(x0, expected, rtol=1e-12, atol=1e-12)


def test_denoise_is_one_tweedie_step(oracle, vp):
    x1, info = _prior(8), {}
    xt = S.dpm_solver(oracle, vp, x1, steps=5)
    x0 = S.dpm_solver(oracle, vp, x1, steps=5, denoise=True, info=info)
    m, s = coefficients(vp, vp.t_min)[:2]
    tend = torch.full((8,), vp.t_min, dtype=F64)
    torch.testing.assert_close(x0, (xt - s * oracle(xt, tend)) / m, rtol=0, atol=1e-13)
    assert info["nfe"] == 6


def test_progress_bar_runs(oracle, vp, capsys):
    S.ddim(oracle, vp, _prior(4), steps=3, progress=True)
    S.probability_flow(oracle, vp, _prior(4), steps=3, progress=True)


def test_class_labels_are_passed_through(vp):
    seen = []

    def model(x, t, y=None):
        seen.append(y)
        return torch.zeros_like(x)

    S.ddim(model, vp, _prior(4), steps=2, y=torch.tensor([1, 2, 3, 4]))
    S.ddim(model, vp, _prior(4), steps=2)
    assert [s is None for s in seen] == [False, False, True, True]


# -- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps must be >= 1"),
    ({"steps": 2.5}, "steps must be an int"),
    ({"t_end": 0.0}, "t_end must lie in the open interval"),
    ({"t_end": 1.0}, "t_end must lie in the open interval"),
    ({"t_end": 1.5}, "t_end must lie in the open interval"),
    ({"grid": "cosine"}, "unknown grid 'cosine'; valid: karras, logsnr, quadratic, uniform"),
])
def test_shared_argument_errors(kwargs, match, oracle, vp):
    kwargs = {"steps": 3, **kwargs}
    for fn in S.SAMPLERS.values():
        with pytest.raises((ValueError, TypeError), match=match):
            fn(oracle, vp, _prior(4), **kwargs)


@pytest.mark.parametrize("method,opts,match", [
    ("ddim", {"eta": -0.1}, "eta must be finite and >= 0"),
    ("ddim", {"eta": 5.0}, "eta=5.0 is too large"),
    ("predictor_corrector", {"snr": 0.0}, "snr must be finite and > 0"),
    ("predictor_corrector", {"n_corrector": -1}, "n_corrector must be >= 0"),
    ("predictor_corrector", {"norm": "sample"}, r"(unexpected keyword argument|takes no option) 'norm'"),
    ("edm", {"s_churn": -1.0}, "s_churn must be finite and >= 0"),
    ("edm", {"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmax must be >= s_tmin"),
    ("probability_flow", {"solver": "midpoint"}, "unknown solver 'midpoint'"),
    ("probability_flow", {"solver": "rk45", "rtol": 0.0}, "rtol must be finite and > 0"),
    ("dpm_solver", {"order": 4}, "order must be 1, 2 or 3"),
    ("dpm_solver", {"eta": -1.0}, "eta"),
    ("ancestral", {"variance": "fixed"}, "unknown variance 'fixed'"),
    ("ddim", {"snr": 0.1}, r"(unexpected keyword argument|takes no option) 'snr'"),
    ("unipc", {"order": 4}, "order must be 1, 2 or 3, got 4"),
    ("unipc", {"variant": "bh3"}, "unknown variant 'bh3'; valid: bh1, bh2"),
    ("unipc", {"corrector": 1}, "corrector must be a bool, got int"),
    ("unipc", {"eta": 0.5}, r"(unexpected keyword argument|takes no option) 'eta'"),
    ("restart", {"t_restart": (0.5, 0.3)}, r"t_restart must satisfy t_end < t_lo < t_hi"),
    ("restart", {"t_restart": 0.3}, r"t_restart must be a pair \(t_lo, t_hi\), got 0.3"),
    ("restart", {"t_restart": (0.1, 1.5)}, "t_restart must satisfy"),
    ("restart", {"restarts": -1}, "restarts must be >= 0"),
    ("restart", {"restart_steps": 0}, "restart_steps must be >= 1"),
    ("restart", {"restart_steps": 1.5}, "restart_steps must be an int"),
    ("restart", {"steps": 1}, "restart needs steps >= 2"),
    ("restart", {"steps": 2}, r"t_hi=0.3 must exceed the snapped t_lo=0.3046.* use more steps"),
    ("restart", {"t_end": 0.2}, "t_restart must satisfy t_end < t_lo"),
])
def test_method_option_errors(method, opts, match, oracle, vp):
    opts = {"steps": 3, **opts}
    with pytest.raises((ValueError, TypeError), match=match):
        S.SAMPLERS[method](oracle, vp, _prior(4), **opts)
    with pytest.raises((ValueError, TypeError), match=match):  # and through sample()
        S.sample(oracle, vp, (4, 2), method=method, **opts)


def test_bad_inputs_and_bad_models(oracle, vp):
    x = _prior(4)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains non-finite"):
        S.ddim(oracle, vp, bad, steps=2)
    msg = r"eps_model must return a tensor shaped like x \[4, 2\], got \[4, 3\]"
    with pytest.raises(ValueError, match=msg):
        S.ddim(lambda x, t: torch.zeros(4, 3, dtype=F64), vp, x, steps=2)

    def nan_late(x, t):
        return oracle(x, t) if float(t[0]) > 0.5 else torch.full_like(x, float("inf"))

    with pytest.raises(ValueError, match=r"non-finite values at step 2, t=0\.334"):
        S.euler_maruyama(nan_late, vp, x, steps=3)
    with pytest.raises(TypeError, match="eps_model must be callable"):
        S.ddim("model", vp, x, steps=2)
    with pytest.raises(TypeError, match="info must be a dict"):
        S.ddim(oracle, vp, x, steps=2, info=[])


# -- time grids -----------------------------------------------------------------------------
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_time_grids(sde):
    n, t_end = 8, 0.01
    u = torch.linspace(0, 1, n + 1, dtype=F64)
    torch.testing.assert_close(time_grid(sde, n, t_end, "uniform"), 1 - u * (1 - t_end))
    torch.testing.assert_close(time_grid(sde, n, t_end, "quadratic"),
                               t_end + (1 - t_end) * (1 - u) ** 2)
    lg = time_grid(sde, n, t_end, "logsnr")
    assert lg[0] == 1.0 and lg[-1] == t_end
    lam = sde.half_log_snr(lg)
    torch.testing.assert_close(sde.log_snr(lg), 2 * lam)
    step = torch.full((n,), float(lam[1] - lam[0]), dtype=F64)
    torch.testing.assert_close(lam[1:] - lam[:-1], step, rtol=1e-9, atol=1e-9)
    assert time_grid(sde, 3)[-1] == sde.t_min


# -- exact identities between samplers (float64) --------------------------------------------
@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_deterministic_first_order_samplers_coincide(sde):
    """DDIM η=0 = exponential integrator (ODE) = DPM-Solver++1: the same map written three ways."""
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(64, sde=sde)
    a = S.ddim(o, sde, x1, steps=17, grid="logsnr")
    b = S.exponential_integrator(o, sde, x1, steps=17, grid="logsnr", stochastic=False)
    c = S.dpm_solver(o, sde, x1, steps=17, grid="logsnr", order=1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_ancestral_posterior_equals_ddim_eta_one(sde):
    o = GaussianOracle(sde, MEAN, COV)
    x1 = _prior(64, sde=sde)
    a = S.ancestral(o, sde, x1, steps=12, generator=torch.Generator().manual_seed(5))
    b = S.ddim(o, sde, x1, steps=12, eta=1.0, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_ancestral_beta_variance_is_ddpm_beta_for_vp(oracle, vp):
    """With x̂_0 known, "beta" differs from "posterior" only in the noise scale √β_i vs √β̃_i,
    β_i = 1 − ᾱ_s/ᾱ_t and β̃_i = β_i (1 − ᾱ_t)/(1 − ᾱ_s) (DDPM eq. 7)."""
    x1 = _prior(16)
    s, t = time_grid(vp, 1).tolist()
    ab_s, ab_t = coefficients(vp, s).m ** 2, coefficients(vp, t).m ** 2
    beta = 1 - ab_s / ab_t
    beta_tilde = beta * (1 - ab_t) / (1 - ab_s)
    out = {}
    for v in ("beta", "posterior"):
        out[v] = S.ancestral(oracle, vp, x1, steps=1, variance=v,
                             generator=torch.Generator().manual_seed(0))
    z = torch.randn(x1.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(out["beta"] - out["posterior"], (beta**0.5 - beta_tilde**0.5) * z,
                               rtol=1e-10, atol=1e-12)


def test_dpm_solver_takes_first_order_steps_exactly_where_the_step_ratio_is_extreme(oracle, vp):
    """A 2M step needs r = h_{i-1}/h_i >= 0.7; otherwise (and on the first step) the update is
    DPM-Solver++1 with the current x̂_0. Rebuilt here step by step from the callback's states."""
    x1 = _prior(32)
    for grid in ("uniform", "logsnr"):
        rec = []
        out = S.dpm_solver(oracle, vp, x1, steps=12, grid=grid,
                           callback=lambda i, t, x, x0, r=rec: r.append((x, x0)))
        ts = time_grid(vp, 12, kind=grid).tolist()
        lam = [coefficients(vp, t).lam for t in ts]
        hs = [b - a for a, b in zip(lam, lam[1:], strict=False)]
        low = [i == 0 or hs[i - 1] / hs[i] < S.DPM_MIN_STEP_RATIO for i in range(12)]
        x = x1
        for i in range(12):
            cs, ct = coefficients(vp, ts[i]), coefficients(vp, ts[i + 1])
            x0 = rec[i][1]
            if low[i]:
                d = x0
            else:
                r = hs[i - 1] / hs[i]
                d = (1 + 0.5 / r) * x0 - 0.5 / r * rec[i - 1][1]
            x = (ct.sigma / cs.sigma) * x - ct.m * math.expm1(-hs[i]) * d
            torch.testing.assert_close(x, rec[i][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
        if grid == "logsnr":
            assert low == [True] + [False] * 11  # equal steps in λ: r = 1
        else:
            assert low[-1] and not all(low[1:])  # the long last step of a uniform-t grid


# -- the Langevin corrector -----------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.2, 0.5, 1.5])
def test_langevin_stationary_variance(ratio):
    """Fixed step ε, exact Gaussian score of variance v at t = 0.4: the chain settles at
    variance v / (1 − ε/(2v)) (AR(1) with coefficient 1 − ε/v). 20000 chains."""
    sde = VPSDE()
    o = GaussianOracle(sde, [0.3], [[0.5]])
    mu, v = (float(a.reshape(())) for a in o.marginal_mean_cov(0.4))
    eps, n = ratio * v, 20000
    g = torch.Generator().manual_seed(11)
    x = mu + math.sqrt(v) * torch.randn(n, 1, generator=g, dtype=F64)
    n_iter = math.ceil(math.log(1e-8) / math.log(abs(1 - ratio)))
    for _ in range(n_iter):
        x, size = S.langevin_corrector_step(o, sde, x, 0.4, step_size=eps, generator=g)
    assert torch.equal(size, torch.full((n,), eps, dtype=F64))
    stationary = v / (1 - eps / (2 * v))
    var_hat = float(x.var())
    se = stationary * math.sqrt(2 / n)  # Gaussian chain: SE of a variance
    assert abs(var_hat - stationary) < 5 * se
    assert abs(var_hat - v) > 5 * se  # and the finite-step bias is really there
    assert abs(float(x.mean()) - mu) < 5 * math.sqrt(stationary / n)


def test_langevin_snr_step_size_rule(oracle):
    """ε = 2 α (snr ‖z‖/‖s‖)² with batch-mean norms, the same z used in the update."""
    sde = oracle.sde
    x = _prior(10) * 0.7 + 0.2
    t, snr, alpha = 0.3, 0.16, 0.97
    new, size = S.langevin_corrector_step(oracle, sde, x, t, snr=snr, alpha=alpha,
                                          generator=torch.Generator().manual_seed(4))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    score = oracle.score(x, t)
    zn, sn = z.norm(dim=1).mean().expand(10), score.norm(dim=1).mean().expand(10)
    expected = 2 * alpha * (snr * zn / sn) ** 2
    torch.testing.assert_close(size, expected, rtol=1e-12, atol=0)
    e = expected[:, None]
    torch.testing.assert_close(new, x + e * score + (2 * e).sqrt() * z, rtol=1e-12, atol=1e-12)


def test_predictor_corrector_is_langevin_then_reverse_sde_euler(oracle, vp):
    """PC = [Langevin at s with α = ᾱ_s/ᾱ_t = exp(−∫_t^s β)] then an Euler–Maruyama step of
    ``sde.reverse`` (an independent implementation of the reverse SDE)."""
    x1 = _prior(64)
    out = S.predictor_corrector(oracle, vp, x1, steps=3, grid="uniform",
                                generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(6)
    rev = vp.reverse(oracle.score)
    x, grid = x1, time_grid(vp, 3).tolist()
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        s64, t64 = torch.tensor(s, dtype=F64), torch.tensor(t, dtype=F64)
        alpha = math.exp(-float(vp.schedule.integral(s64) - vp.schedule.integral(t64)))
        x, _ = S.langevin_corrector_step(oracle, vp, x, s, snr=0.16, alpha=alpha, generator=g)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = x - rev.drift(x, s) * (s - t) + float(rev.diffusion(s64)) * math.sqrt(s - t) * z
    torch.testing.assert_close(out, x, rtol=1e-10, atol=1e-10)
