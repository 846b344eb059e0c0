"""Inpainting through x̂_0 (diffusion_lab.inpainting) against exact Gaussian answers, in float64.

On a Gaussian the oracle's ε̂ is affine in x, so replacement and the x̂_0-projection (DDNM)
are linear-Gaussian chains: their output law after N steps is computed exactly below by a
mean/covariance recursion (an independent computation), checked against samples, and
compared with the exact conditional. 2-D, corr ρ = 0.9, b = 1.5 known, a | b ~ N(1.35, 0.19):

    method (uniform grid)      N = 10        N = 25        N = 100       N = 400       N = 1600
    replacement (ancestral)   0.76 / 0.24   0.87 / 0.26   0.92 / 0.29   0.94 / 0.30   0.94 / 0.31
    projection η = 0          1.06 / 0.21   1.22 / 0.19   1.29 / 0.19   1.32 / 0.19   1.34 / 0.19
    projection η = 1          0.95 / 0.22   1.21 / 0.18   1.32 / 0.18   1.34 / 0.19   1.35 / 0.19

(mean / variance of a, exact laws of the chains): replacement's bias does not vanish with
N (it converges to 0.94 / 0.31), the projection's does — at first order in 1/N for η = 1,
at half order for η = 0 (gap 0.057, 0.028, 0.015 at N = 100, 400, 1600).

DPS is nonlinear (its step is ζ/‖r‖), so it is sampled (n = 20,000, N = 100): its mean
overshoots, 1.45 / 1.49 / 1.49 at ζ = 0.1 / 0.3 / 1, variance 0.14 / 0.14 / 0.19; with the
projection at η = 0 the mean moves from below to far above with ζ (1.05 / 1.27 / 1.78,
variance 0.17 / 0.12 / 0.11). The gradient step is a heuristic whose size does not adapt:
no ζ gives both moments. Numbers re-measured by the tests below.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import inpainting, tasks
from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle
from diffusion_lab.samplers import ddim
from diffusion_lab.sde import VPSDE
from diffusion_lab.timegrid import coefficients, time_grid

F64 = torch.float64
SDE_ = VPSDE()
RHO, B = 0.9, 1.5
COV2 = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=F64)
MASK2 = torch.tensor([1.0, 0.0], dtype=F64)  # generate a, keep b


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _known2(n):
    x = torch.zeros(n, 2, dtype=F64)
    x[:, 1] = B
    return x


# -- the exact law of a linear-Gaussian chain -------------------------------------------------
def _exact_chain_law(method: str, steps: int, eta: float = 0.0, cov=COV2, mask=MASK2):
    """Mean and covariance of the output of ``method`` ∈ {"replacement", "projection"} on the
    Gaussian N(0, cov) with x_known = (…, B), propagated exactly. With the oracle's affine
    ε̂ = E x (E = σ_s V_s⁻¹, V = m²Σ + σ²I) and x̂_0 = X x (X = (I − σ_s E)/m_s), each step is
    x ← L x + v + noise of covariance Q, so mean ← L mean + v, P ← L P Lᵀ + Q:

        projection   L = m_t F X + a E, v = m_t O k, Q = c² I     (a = √(σ_t² − c²))
        replacement  x̃ = F x + O (m_s k + σ_s z), then the ancestral step
                     x_t = (x̃ − (σ²_{s|t}/σ_s) E x̃)/m_{s|t} + √(σ²_{s|t} σ_t²/σ_s²) z'

    (F, O: diagonal masks of the free / observed coordinates)."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=F64)
    free, obs = torch.diag(mask), torch.diag(1 - mask)
    k = torch.where(mask == 0, B, 0.0).to(F64)
    m, s = SDE_.marginal(time_grid(SDE_, steps))
    ms, ss, mt, st = m[:-1, None, None], s[:-1, None, None], m[1:, None, None], s[1:, None, None]
    h = (torch.log(mt / st) - torch.log(ms / ss))
    eps_lin = ss * torch.linalg.inv(ms**2 * cov + ss**2 * eye)  # [steps, d, d]
    x0_lin = (eye - ss * eps_lin) / ms
    if method == "projection":
        frac = eta**2 * -torch.expm1(-2.0 * h)
        lin = mt * free @ x0_lin + st * torch.sqrt(1.0 - frac) * eps_lin
        off = mt * obs @ k[:, None]
        noise = st**2 * frac * eye
    else:
        var_st = ss**2 * -torch.expm1(-2.0 * h)
        anc = (eye - var_st / ss * eps_lin) * (mt / ms)  # the ancestral step's map on x̃
        lin, off = anc @ free, anc @ (ms * obs @ k[:, None])
        noise = anc @ (ss**2 * obs) @ anc.transpose(1, 2) + var_st * st**2 / ss**2 * eye
    mean, p = torch.zeros(d, dtype=F64), eye.clone()  # the VP prior N(0, I)
    for i in range(steps):
        mean, p = lin[i] @ mean + off[i, :, 0], lin[i] @ p @ lin[i].T + noise[i]
    return mean, p


def _exact_conditional_at_t_end():
    """a | b = B ~ N(ρB, 1 − ρ²), seen at t_end: N(m ρB, m²(1 − ρ²) + σ²)."""
    m, s = coefficients(SDE_, SDE_.t_min)[:2]
    return m * RHO * B, m**2 * (1 - RHO**2) + s**2


@pytest.mark.parametrize(("method", "eta"), [("projection", 0.0), ("projection", 0.7),
                                             ("replacement", 1.0)])
def test_the_exact_chain_law_matches_the_samplers(method, eta, check_mean_var):
    orc = GaussianOracle(SDE_, torch.zeros(2), COV2)
    n, steps = 20000, 12
    kw = {"eta": eta} if method == "projection" else {"sampler": "ancestral", "grid": "uniform"}
    out = tasks.inpaint(orc, SDE_, _known2(n), MASK2, method, steps=steps, generator=_gen(1),
                        **kw)
    assert torch.equal(out[:, 1], _known2(n)[:, 1])
    mean, cov = _exact_chain_law(method, steps, eta)
    check_mean_var(out[:, :1], mean[:1], cov[0, 0])


def test_projection_converges_to_the_exact_conditional_and_replacement_does_not():
    """Exact laws (no sampling): the projection's gap to a | b closes, at first order for
    η = 1 and at half order for η = 0 (4x the steps: 1/4 and 1/2 the gap); replacement's
    does not close (it converges to mean 0.94, variance 0.31)."""
    exact_mean, exact_var = _exact_conditional_at_t_end()

    def gaps(method, eta, steps):
        mean, cov = _exact_chain_law(method, steps, eta)
        return exact_mean - float(mean[0]), float(cov[0, 0]) - exact_var

    for eta, (lo, hi) in ((1.0, (3.0, 5.0)), (0.0, (1.6, 2.5))):
        g = [gaps("projection", eta, n) for n in (100, 400, 1600)]
        assert all(mean_gap > 0 for mean_gap, _ in g)
        for (coarse, _), (fine, _) in zip(g[:-1], g[1:], strict=True):
            assert lo < coarse / fine < hi
        assert g[-1][0] < 0.02 and abs(g[-1][1]) < 0.005
    rep = [gaps("replacement", 1.0, n) for n in (100, 400, 1600)]
    assert min(mean_gap for mean_gap, _ in rep) > 0.4  # ≥ 0.4 below 1.35 however many steps
    assert abs(rep[-1][0] - rep[-2][0]) < 0.01 and rep[-1][1] > 0.1  # … converged, wrong


def test_dps_on_a_correlated_gaussian_overshoots_the_conditional_mean():
    """DPS's measured bias (see the module docstring): it pulls a past ρB, variance too small.
    Also: DPS's gradient step really is what moves a (ζ = 0 is no information at all)."""
    orc = GaussianOracle(SDE_, torch.zeros(2), COV2)
    n = 4000
    exact_mean, exact_var = _exact_conditional_at_t_end()
    con = tasks.inpainting_constraint(_known2(n), MASK2)
    se = math.sqrt(1.0 / n)
    a = inpainting.dps(orc, SDE_, con, steps=100, zeta=1.0, generator=_gen(2))[:, 0]
    assert 0.08 < float(a.mean()) - exact_mean < 0.2 and float(a.mean()) - exact_mean > 5 * se
    assert float(a.var()) < exact_var + 0.02
    none = inpainting.dps(orc, SDE_, con, steps=100, zeta=0.0, generator=_gen(2))[:, 0]
    assert abs(float(none.mean())) < 5 * se  # no gradient: a ~ its N(0, 1) marginal
    both = inpainting.dps_projection(orc, SDE_, con, steps=100, zeta=0.3, generator=_gen(2))
    assert abs(float(both[:, 0].mean()) - exact_mean) < 0.15
    assert torch.equal(both[:, 1], _known2(n)[:, 1])


# -- the pieces against closed forms ----------------------------------------------------------
def test_dps_gradient_is_the_closed_form_for_a_gaussian():
    """x̂_0(x) = μ + m Σ V⁻¹ (x − m μ), V = m²Σ + σ²I, so with r = M_O (k − x̂_0):
    ∇_x ‖r‖² = −2 (m Σ V⁻¹)ᵀ r."""
    mu = torch.tensor([0.2, -0.4, 0.1], dtype=F64)
    cov = torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]], dtype=F64)
    orc = GaussianOracle(SDE_, mu, cov)
    x = torch.randn(5, 3, generator=_gen(3), dtype=F64)
    k = torch.randn(5, 3, generator=_gen(4), dtype=F64)
    mask = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    con = tasks.inpainting_constraint(k, mask)
    t = 0.37
    co = coefficients(SDE_, t)
    eps, x0, grad, rnorm = inpainting.dps_gradient(orc, con, x, t, co)
    jac = co.m * cov @ torch.linalg.inv(co.m**2 * cov + co.sigma**2 * torch.eye(3, dtype=F64))
    x0_exact = mu + (x - co.m * mu) @ jac.T
    r = (k - x0_exact) * (1 - mask)
    torch.testing.assert_close(x0, x0_exact, rtol=0, atol=1e-12)
    torch.testing.assert_close(eps, orc(x, torch.full((5,), t, dtype=F64)), rtol=0, atol=0)
    torch.testing.assert_close(grad, -2.0 * r @ jac, rtol=0, atol=1e-12)
    torch.testing.assert_close(rnorm, r.norm(dim=1), rtol=0, atol=1e-12)
    with torch.no_grad():  # the model's inpaint runs under no_grad; DPS must still work
        assert torch.equal(inpainting.dps_gradient(orc, con, x, t, co)[2], grad)


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_without_observations_the_loop_is_the_ddim_sampler(eta):
    """Nothing observed: projection and DPS do nothing, and the loop (x_1 first, then one
    noise per step from the same generator) is :func:`~diffusion_lab.samplers.ddim`."""
    orc = GaussianOracle(SDE_, torch.tensor([0.3, -0.2]), COV2)
    n, steps = 64, 7
    con = tasks.inpainting_constraint(torch.zeros(n, 2, dtype=F64), torch.ones(2, dtype=F64))
    g = _gen(5)
    x1 = SDE_.prior_sample((n, 2), generator=g, dtype=F64)
    ref = ddim(orc, SDE_, x1, steps=steps, eta=eta, grid="uniform", generator=g)
    info = {}
    ours = inpainting.sample_through_x0(orc, SDE_, con, steps=steps, eta=eta, zeta=0.5,
                                        generator=_gen(5), info=info)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert info["nfe"] == info["grad_nfe"] == steps


def test_projection_equals_a_written_out_ddnm_loop():
    """DDNM (Wang et al. 2023) on a correlated Gaussian, written out: ε̂, x̂_0, replace the
    known part of x̂_0 by k, DDIM step with the network's ε̂."""
    orc = GaussianOracle(SDE_, torch.zeros(3), torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5],
                                                             [0.3, 0.5, 1.0]], dtype=F64))
    k = torch.randn(32, 3, generator=_gen(8), dtype=F64)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    eta, steps, g = 0.4, 9, _gen(9)
    x = SDE_.prior_sample(k.shape, generator=g, dtype=F64)
    ts = time_grid(SDE_, steps).tolist()
    for s, t in zip(ts[:-1], ts[1:], strict=True):
        cs, ct = coefficients(SDE_, s), coefficients(SDE_, t)
        eps = orc(x, torch.full((32,), s, dtype=F64))
        x0 = torch.where(mask == 0, k, (x - cs.sigma * eps) / cs.m)
        c = eta * ct.sigma * math.sqrt(-math.expm1(-2 * (ct.lam - cs.lam)))
        x = ct.m * x0 + math.sqrt(ct.sigma**2 - c**2) * eps
        x = x + c * torch.randn(x.shape, generator=g, dtype=F64)
    ref = torch.where(mask == 0, k, x)
    out = tasks.inpaint(orc, SDE_, k, mask, "projection", steps=steps, eta=eta, generator=_gen(9))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_time_travel_path_and_counts():
    orc = GaussianOracle(SDE_, torch.zeros(2), COV2)
    con = tasks.inpainting_constraint(_known2(8), MASK2)
    info = {}
    inpainting.dps_projection(orc, SDE_, con, steps=6, resample_steps=3, jump=2,
                              generator=_gen(), info=info)
    path = inpainting.repaint_path(6, 3, 2)
    jumps = sum(b < a for a, b in zip(path[:-1], path[1:], strict=True))
    assert info["moves"] == len(path) - 1 and info["nfe"] == len(path) - 1 - jumps
    assert info["nfe"] == info["grad_nfe"] == 6 + 2 * 2 * 2  # 2 jump points x 2 repeats x 2


# -- known pixels, reproducibility, bad input -------------------------------------------------
@pytest.mark.parametrize("method", tasks.INPAINT_METHODS)
def test_every_method_keeps_known_pixels_exactly_and_is_reproducible(method):
    cov = torch.eye(3, dtype=F64) * 0.5 + 0.2
    orc = GaussianOracle(SDE_, torch.zeros(3), cov)
    extra = {}
    if method == "projection_by_class":  # needs classes: two labelled components
        orc = GaussianMixtureOracle(SDE_, torch.tensor([[0.5] * 3, [-0.5] * 3]),
                                    cov.expand(2, 3, 3).clone(), labels=[0, 1])
        extra = {"num_classes": 2}
    k = torch.randn(6, 3, generator=_gen(10), dtype=F64)
    mask = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    a = tasks.inpaint(orc, SDE_, k, mask, method, steps=5, generator=_gen(11), **extra)
    b = tasks.inpaint(orc, SDE_, k, mask, method, steps=5, generator=_gen(11), **extra)
    assert torch.equal(a, b) and torch.equal(a[:, 1], k[:, 1])
    assert not torch.equal(a[:, 0], k[:, 0])


def test_bad_inputs_name_the_argument():
    orc = GaussianOracle(SDE_, torch.zeros(2), COV2)
    k = _known2(4)
    with pytest.raises(ValueError, match="unknown method 'nope'.*dps_projection"):
        tasks.inpaint(orc, SDE_, k, MASK2, "nope")
    with pytest.raises(TypeError, match="sampler applies to method='replacement'"):
        tasks.inpaint(orc, SDE_, k, MASK2, "projection", sampler="ddim")
    with pytest.raises(TypeError, match="sampler only with method='replacement'"):
        tasks.inpaint(orc, SDE_, k, MASK2, "ddim", sampler="ancestral")
    with pytest.raises(ValueError, match="zeta"):
        tasks.inpaint(orc, SDE_, k, MASK2, "dps", zeta=-1.0)
    with pytest.raises(TypeError, match="zeta"):
        tasks.inpaint(orc, SDE_, k, MASK2, "projection", zeta=1.0)
    with pytest.raises(ValueError, match="eta"):
        tasks.inpaint(orc, SDE_, k, MASK2, "projection", eta=5.0, steps=3)
    with pytest.raises(TypeError, match="steps"):
        tasks.inpaint(orc, SDE_, k, MASK2, "dps", steps=2.5)
    with pytest.raises(ValueError, match="resample_steps"):
        tasks.inpaint(orc, SDE_, k, MASK2, "dps_projection", resample_steps=0)
    with pytest.raises(ValueError, match="only 0"):
        tasks.inpaint(orc, SDE_, k, torch.tensor([0.5, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="eps_model must return"):
        tasks.inpaint(lambda x, t: x[:, :1], SDE_, k, MASK2, "projection", steps=2)
    with pytest.raises(TypeError, match="callback"):
        tasks.inpaint(orc, SDE_, k, MASK2, "projection", steps=2, callback=3)


# -- the bundled model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist():
    from diffusion_lab.classifier import classifier_data
    from diffusion_lab.model import GenerativeModel

    x, y = classifier_data("test")
    return GenerativeModel.load("data/checkpoints/mnist_cond"), x, y


def _bottom_mask():
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1
    return mask


def test_model_inpaint_keeps_known_pixels_for_every_method(mnist):
    model, x, _ = mnist
    mask = _bottom_mask()
    for method in tasks.INPAINT_METHODS:
        out = model.inpaint(x[:3], mask, method, steps=2, seed=1)
        assert out.shape == (3, 1, 28, 28) and float(out.abs().max()) <= 1.0
        assert torch.equal(out[..., :14, :], x[:3, :, :14, :]), method
    again = model.inpaint(x[:3], mask, steps=2, seed=1)
    assert torch.equal(again, model.inpaint(x[:3], mask, steps=2, seed=1))
    with pytest.raises(ValueError, match="unknown method"):
        model.inpaint(x[:1], mask, "nearest", steps=1)
    with pytest.raises(ValueError, match="broadcast"):
        model.inpaint(x[:1], torch.ones(1, 1, 14, 28), steps=1)
    with pytest.raises(TypeError, match="sampler"):
        model.inpaint(x[:1], mask, "dps", sampler="ddim", steps=1)


# -- the best-of choice and the committed benchmark -------------------------------------------
def test_best_of_keeps_per_sample_the_candidate_of_smallest_consistency_score():
    """An independent re-run: the same generator draws the scoring noise, then the K
    candidates one after the other; the output is, per sample, the argmin-score candidate,
    and the trace holds best-of-j for j = 1..K."""
    orc = GaussianOracle(SDE_, torch.zeros(2), COV2)
    n, steps, k, times = 50, 6, 3, (0.2, 0.5)
    con = tasks.inpainting_constraint(_known2(n), MASK2)
    trace, info = [], {}
    out = inpainting.projection_best_of(orc, SDE_, con, steps=steps, candidates=k, times=times,
                                        generator=_gen(7), trace=trace, info=info)
    g = _gen(7)
    noise = torch.randn(n, 2, generator=g, dtype=F64)
    cands = [inpainting.ddnm(orc, SDE_, con, steps=steps, eta=0.5, generator=g) for _ in range(k)]
    scores = torch.stack([inpainting.consistency_score(orc, SDE_, con, c, noise, times=times)
                          for c in cands])
    pick = torch.stack(cands)[scores.argmin(0), torch.arange(n)]
    torch.testing.assert_close(out, pick, rtol=0, atol=0)
    assert len(set(scores.argmin(0).tolist())) > 1  # the choice really differs per sample
    assert [t[0] for t in trace] == [(steps + len(times)) * j for j in (1, 2, 3)]
    torch.testing.assert_close(trace[0][1], cands[0], rtol=0, atol=0)
    torch.testing.assert_close(trace[-1][1], out, rtol=0, atol=0)
    assert info["nfe"] == k * (steps + len(times)) and info["grad_nfe"] == 0
    assert torch.equal(out[:, 1], _known2(n)[:, 1])


def test_consistency_score_is_zero_for_a_model_that_returns_the_truth():
    """S(x) = Σ_τ ‖k − A x̂_0(m_τ x + σ_τ z)‖²: with ε̂ = the true noise, x̂_0 = x, so S = 0 for a
    completion that agrees with k and S = len(times)·‖k − A x‖² for one that does not."""
    k = _known2(5)
    con = tasks.inpainting_constraint(k, MASK2)
    noise = torch.randn(5, 2, generator=_gen(8), dtype=F64)
    x = torch.randn(5, 2, generator=_gen(9), dtype=F64)
    for shift, want in ((0.0, 0.0), (0.3, 3 * 0.3**2)):
        xs = x.clone()
        xs[:, 1] = B + shift

        def truth(xt, t, xs=xs):
            m, s = SDE_.marginal(t.to(F64))
            return (xt - m[:, None] * xs) / s[:, None]

        got = inpainting.consistency_score(truth, SDE_, con, xs, noise, times=(0.2, 0.4, 0.6))
        torch.testing.assert_close(got, torch.full((5,), want, dtype=F64), rtol=1e-9, atol=1e-9)


def _committed_default_row():
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "inpainting.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    default = [r for r in rows if r["label"] == "default" and r["mask"] == "bottom"]
    assert len(default) == 1, default
    refs = {r["label"]: float(r["accuracy"]) for r in rows
            if r["label"] in ("original", "erased", "nearest_train", "replacement",
                              "projection_best_of")}
    return default[0], refs


def test_the_committed_benchmark_backs_the_default_inpainting():
    """benchmarks/results/inpainting.csv: the `default` row ran the package default
    (tasks.DEFAULT_INPAINT_METHOD with its default steps and NFE) on 200 held-out digits; it
    reads as the original digit far more often than the erased digit or replacement, and more
    often than the previous default projection_best_of (measured 0.855 vs 0.43, 0.57 and
    0.81, s.e. ≈ 0.025-0.035)."""
    row, refs = _committed_default_row()
    assert row["method"] == tasks.DEFAULT_INPAINT_METHOD == "projection_by_class"
    assert int(row["steps"]) == tasks.default_inpaint_steps()
    assert int(row["nfe"]) == 10 * (tasks.default_inpaint_steps() + 5)
    assert int(row["grad_nfe"]) == 0 and int(row["n"]) == 200
    assert float(row["accuracy"]) > refs["projection_best_of"] > refs["replacement"] + 0.15
    assert float(row["accuracy"]) > refs["erased"] + 0.3


def test_the_default_inpainting_reaches_the_85_percent_target():
    """Issue 11's target, on the committed 200-digit run (0.855 ± 0.025: met, narrowly)."""
    row, _ = _committed_default_row()
    assert float(row["accuracy"]) >= 0.85, row
