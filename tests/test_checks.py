"""The exercise checkers (``diffusion_lab.checks``) pass right answers and catch wrong ones.

For every checker: the package-correct answer passes (prints ✓, returns True); at
least one typical wrong answer fails (returns False) with the *specific* diagnosis
(a dropped square root, a flipped sign, a factor of 2, β for ᾱ, …); a stub that
raises ``NotImplementedError("hint: …")`` reports "not implemented yet: hint: …"
and returns False; a crashing answer is reported in one line, never a traceback.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import checks
from diffusion_lab.schedules import Schedule


def _view(c, x):
    return c.reshape(-1, *([1] * (x.dim() - 1)))


# -- right answers (as a learner would write them, not the checkers' own code) ---------------
def alpha_bars(betas):
    return torch.cat([betas.new_ones(1), torch.cumprod(1 - betas, 0)])


def q_sample(x0, ab, noise):
    a = _view(ab, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def forward_step(x, beta, z):
    return (1 - beta).sqrt() * x + beta.sqrt() * z


def linear_integral(t, lo, hi):
    return lo * t + 0.5 * t**2 * (hi - lo)


def cosine_integral(t, s):
    th = lambda u: (u + s) / (1 + s) * math.pi / 2  # noqa: E731
    return -2 * (torch.log(torch.cos(th(t))) - math.log(math.cos(th(0.0))))


def discrete_betas(schedule, T):
    grid = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    b = schedule.integral(grid)
    return 1 - torch.exp(-(b[1:] - b[:-1]))


class Geometric(Schedule):
    def __init__(self, beta_min, beta_max):
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t):
        return self.beta_min * (self.beta_max / self.beta_min) ** t

    def integral(self, t):
        r = self.beta_max / self.beta_min
        return self.beta_min * (r**t - 1) / math.log(r)


def posterior(xi, x0, b, ab, abp):
    mean = abp.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - abp) / (1 - ab) * xi
    return mean, (1 - abp) / (1 - ab) * b


def predict_x0(xi, eps, ab):
    a = _view(ab, xi)
    return (xi - (1 - a).sqrt() * eps) / a.sqrt()


def ancestral_mean(xi, eps, b, ab):
    return (xi - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt()


def gaussian_kl(m1, v1, m2, v2):
    d = m1.shape[-1]
    return 0.5 * (d * (v1 / v2 - 1 + torch.log(v2 / v1)) + ((m1 - m2) ** 2).sum(-1) / v2)


def time_embedding(t, dim):
    half = dim // 2
    w = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype) / half)
    a = 1000 * t[:, None] * w
    return torch.cat([torch.sin(a), torch.cos(a)], 1)


def resblock_params(cin, cout, tdim):
    skip = cin * cout + cout if cin != cout else 0
    return (2 * cin + 9 * cin * cout + cout + tdim * 2 * cout + 2 * cout + 2 * cout
            + 9 * cout * cout + cout + skip)


def attention(q, k, v):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v


def gaussian_score(x, mu, var):
    return -(x - mu) / var


def vp_marginal(t, lo, hi):
    b = lo * t + 0.5 * t**2 * (hi - lo)
    m = torch.exp(-0.5 * b)
    return m, torch.sqrt(1 - m**2)


def _g2(sde, t, x):
    return _view(sde.diffusion(t), x) ** 2


def reverse_em_step(x, t, dt, sde, score, z):
    g2 = _g2(sde, t, x)
    return x - (sde.drift(x, t) - g2 * score(x, t)) * dt + g2.sqrt() * math.sqrt(dt) * z


def pf_drift(x, t, sde, score):
    return sde.drift(x, t) - 0.5 * _g2(sde, t, x) * score(x, t)


def langevin_step(x, score, eps, z):
    return x + eps * score(x) + math.sqrt(2 * eps) * z


def _h(ms, ss, mt, st):
    return math.log(mt / st) - math.log(ms / ss)


def ddim_step(x, eps, ms, ss, mt, st, eta, z):
    c = eta * st * math.sqrt(1 - math.exp(-2 * _h(ms, ss, mt, st)))
    return mt * (x - ss * eps) / ms + math.sqrt(st**2 - c**2) * eps + c * z


def dpm_solver_pp1_step(x, x0, ms, ss, mt, st):
    return st / ss * x - mt * (math.exp(-_h(ms, ss, mt, st)) - 1) * x0


def dpm_solver_2m(a, b, h, hp):
    r = hp / h
    return (1 + 1 / (2 * r)) * a - 1 / (2 * r) * b


def corrector_step_size(score, z, snr, alpha):
    ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
    return (2 * alpha * (snr * ratio) ** 2).expand(z.shape[0])


# -- typical wrong answers, each with the words its diagnosis must contain --------------------
class GeometricNoMinusOne(Geometric):
    def integral(self, t):
        r = self.beta_max / self.beta_min
        return self.beta_min * r**t / math.log(r)


def _kl_std_log(m1, v1, m2, v2):
    d = m1.shape[-1]
    return 0.5 * (d * (v1 / v2 - 1 + 0.5 * torch.log(v2 / v1)) + ((m1 - m2) ** 2).sum(-1) / v2)


def _embed_no_scale(t, dim):
    return time_embedding(t / 1000, dim)


def _embed_cos_first(t, dim):
    e = time_embedding(t, dim)
    return torch.cat([e[:, dim // 2:], e[:, : dim // 2]], 1)


def _ddim_sigma_s(x, eps, ms, ss, mt, st, eta, z):
    c = eta * st * math.sqrt(1 - math.exp(-2 * _h(ms, ss, mt, st)))
    return mt * (x - ss * eps) / ms + math.sqrt(ss**2 - c**2) * eps + c * z


def conditional_velocity(x0, z, t):
    return z - x0


def velocity_to_eps(x, u, t):
    return x + (1 - t)[:, None] * u


def flow_euler_step(x, u_model, t, dt):
    return x - dt * u_model(x, torch.full((x.shape[0],), t, dtype=x.dtype))


def straightness(traj, times):
    dt = (times[1:] - times[:-1]).abs()
    energy = sum(((traj[k + 1] - traj[k]) ** 2).sum(-1) / dt[k] for k in range(len(dt)))
    return ((traj[-1] - traj[0]) ** 2).sum(-1) / ((times[-1] - times[0]).abs() * energy)


def replacement_step(x, k, mask, m, s, z):
    return torch.where(mask.bool(), x, m * k + s * z)


def gaussian_conditional(mu, cov, mask, xk):
    f, o = mask.bool(), ~mask.bool()
    s_fo = cov[f][:, o]
    sol = torch.linalg.solve(cov[o][:, o], torch.stack([xk[o] - mu[o]], 1))
    mean = mu[f] + (s_fo @ sol)[:, 0]
    return mean, cov[f][:, f] - s_fo @ torch.linalg.solve(cov[o][:, o], s_fo.T)


def x0_projection_step(x, eps, k, mask, ms, ss, mt, st):
    x0 = (x - ss * eps) / ms
    return mt * torch.where(mask.bool(), x0, k) + st * eps


def cfg_eps(ec, eu, w):
    return (1 - w) * eu + w * ec


CASES = [
    # (checker, right answer, [(wrong answer, words in the diagnosis), ...])
    ("check_alpha_bars", alpha_bars, [
        (lambda b: torch.cumprod(1 - b, 0), "ᾱ_0 = 1 is missing"),
        (lambda b: torch.cat([b.new_ones(1), torch.cumprod(b, 0)]), "used β where α = 1 − β"),
    ]),
    ("check_q_sample", q_sample, [
        (lambda x0, ab, n: _view(ab, x0) * x0 + (1 - _view(ab, x0)) * n,
         "a square root is missing"),
        (lambda x0, ab, n: ab.sqrt() * x0 + (1 - ab).sqrt() * n, "a broadcasting slip"),
    ]),
    ("check_forward_step", forward_step, [
        (lambda x, b, z: x + b.sqrt() * z, "shrink factor √(1 − β) is missing"),
        (lambda x, b, z: (1 - b) * x + b * z, "square roots are missing"),
    ]),
    ("check_linear_integral", linear_integral, [
        (lambda t, lo, hi: lo + t * (hi - lo), "the rate β(t), not its integral"),
        (lambda t, lo, hi: lo * t + t**2 * (hi - lo), "the ½"),
    ]),
    ("check_cosine_integral", cosine_integral, [
        (lambda t, s: -2 * torch.log(torch.cos((t + s) / (1 + s) * math.pi / 2)), "ᾱ(0) must be 1"),
        (lambda t, s: 0.5 * cosine_integral(t, s), "the square is missing"),
        (lambda t, s: -cosine_integral(t, s), "the sign is flipped"),
    ]),
    ("check_discrete_betas", discrete_betas, [
        (lambda sched, T: sched.beta(torch.linspace(0, 1, T + 1, dtype=torch.float64)[1:]) / T,
         "Riemann approximation"),
        (lambda sched, T: 1 - discrete_betas(sched, T), "you returned α_i"),
    ]),
    ("check_custom_schedule", Geometric, [(GeometricNoMinusOne, "the − 1 is missing")]),
    ("check_posterior", posterior, [
        (lambda xi, x0, b, ab, abp: (posterior(xi, x0, b, ab, abp)[0], b),
         "that is the forward variance β_i"),
        (lambda xi, x0, b, ab, abp: (posterior(xi, x0, b, ab, abp)[0],
                                     posterior(xi, x0, b, ab, abp)[1].sqrt()),
         "an extra square root"),
    ]),
    ("check_predict_x0", predict_x0, [
        (lambda xi, e, ab: (xi - (1 - _view(ab, xi)) * e) / _view(ab, xi),
         "square roots are missing"),
    ]),
    ("check_ancestral_mean", ancestral_mean, [
        (lambda xi, e, b, ab: xi - b / (1 - ab).sqrt() * e, "division by √α_i"),
        (lambda xi, e, b, ab: (xi - b / (1 - ab) * e) / (1 - b).sqrt(),
         "is missing its square root"),
    ]),
    ("check_gaussian_kl", gaussian_kl, [
        (lambda m1, v1, m2, v2: gaussian_kl(m2, v2, m1, v1), "the arguments are swapped"),
        (_kl_std_log, "standard deviations"),
        (lambda m1, v1, m2, v2: 2 * gaussian_kl(m1, v1, m2, v2), "factor of 2"),
    ]),
    ("check_time_embedding", time_embedding, [
        (_embed_no_scale, "time_scale = 1000"),
        (_embed_cos_first, "the sines come first"),
    ]),
    ("check_resblock_params", resblock_params, [
        (lambda a, b, c: resblock_params(a, b, c) - (a * b + b if a != b else 0),
         "skip convolution"),
        (lambda a, b, c: resblock_params(a, b, c) - c * b - b, "2·out_ch"),
    ]),
    ("check_attention", attention, [
        (lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2), -1) @ v, "divided by √d"),
    ]),
    ("check_gaussian_score", gaussian_score, [
        (lambda x, m, v: (x - m) / v, "points towards the mean"),
        (lambda x, m, v: -(x - m) / v.sqrt(), "not by the standard deviation"),
    ]),
    ("check_vp_marginal", vp_marginal, [
        (lambda t, lo, hi: (vp_marginal(t, lo, hi)[0], 1 - vp_marginal(t, lo, hi)[0] ** 2),
         "sub-VP"),
        (lambda t, lo, hi: (vp_marginal(t, lo, hi)[0] ** 2, vp_marginal(t, lo, hi)[1]),
         "the ½ is missing"),
    ]),
    ("check_reverse_em_step", reverse_em_step, [
        (lambda x, t, dt, sde, s, z: reverse_em_step(x, t, dt, sde, lambda a, b: -s(a, b), z),
         "the score term has the wrong sign"),
        (lambda x, t, dt, sde, s, z: pf_drift(x, t, sde, s) * -dt + x
         + _g2(sde, t, x).sqrt() * math.sqrt(dt) * z, "probability-flow drift"),
        (lambda x, t, dt, sde, s, z: reverse_em_step(x, t, dt, sde, s, z * math.sqrt(dt)),
         "√dt, not dt"),
    ]),
    ("check_pf_drift", pf_drift, [
        (lambda x, t, sde, s: sde.drift(x, t) - _g2(sde, t, x) * s(x, t), "the ½ is missing"),
    ]),
    ("check_langevin_step", langevin_step, [
        (lambda x, s, e, z: x + e * s(x) + math.sqrt(e) * z, "√(2ε) z, not √ε z"),
    ]),
    ("check_ddim_step", ddim_step, [
        (_ddim_sigma_s, "not σ_s"),
        (lambda x, e, ms, ss, mt, st, eta, z: mt * (x - ss * e) / ms + st * e
         + eta * st * math.sqrt(1 - math.exp(-2 * _h(ms, ss, mt, st))) * z,
         "must shrink to √(σ_t² − c²)"),
    ]),
    ("check_dpm_solver_pp1_step", dpm_solver_pp1_step, [
        (lambda x, x0, ms, ss, mt, st: st / ss * x - mt * math.expm1(_h(ms, ss, mt, st)) * x0,
         "the exponent is −h"),
        (lambda x, x0, ms, ss, mt, st: mt / ms * x - mt * math.expm1(-_h(ms, ss, mt, st)) * x0,
         "σ_t/σ_s"),
    ]),
    ("check_dpm_solver_2m", dpm_solver_2m, [
        (lambda a, b, h, hp: dpm_solver_2m(a, b, hp, h), "r = h_prev/h"),
    ]),
    ("check_corrector_step_size", corrector_step_size, [
        (lambda s, z, snr, a: (2 * a * snr * z.flatten(1).norm(dim=1).mean()
                               / s.flatten(1).norm(dim=1).mean()).expand(z.shape[0]),
         "must be squared"),
        (lambda s, z, snr, a: corrector_step_size(s, z, snr, a) / a, "α is missing"),
        (lambda s, z, snr, a: 2 * a * (snr * z.flatten(1).norm(dim=1) / s.flatten(1).norm(dim=1)) ** 2,
         "per-sample norms"),
    ]),
]
CASES += [
    ("check_conditional_velocity", conditional_velocity, [
        (lambda x0, z, t: x0 - z, "the sign of the velocity is flipped"),
        (lambda x0, z, t: z, "that is the ε-prediction target"),
        (lambda x0, z, t: (1 - t)[:, None] * x0 + t[:, None] * z, "that is the point x_t"),
    ]),
    ("check_velocity_to_eps", velocity_to_eps, [
        (lambda x, u, t: x + u, "the (1 − t) factor is missing"),
        (lambda x, u, t: x - (1 - t)[:, None] * u, "the sign of the velocity"),
        (lambda x, u, t: x + t[:, None] * u, "not t"),
    ]),
    ("check_flow_euler_step", flow_euler_step, [
        (lambda x, um, t, dt: 2 * x - flow_euler_step(x, um, t, dt), "the wrong way"),
        (lambda x, um, t, dt: flow_euler_step(x, um, t, 1.0), "the step size dt is missing"),
        (lambda x, um, t, dt: flow_euler_step(x, lambda a, b: um(a, b - dt), t, dt),
         "evaluate u at the start of the step"),
    ]),
    ("check_straightness", straightness, [
        (lambda tr, ts: straightness(tr, ts) * (ts[-1] - ts[0]).abs(), "the length L"),
        (lambda tr, ts: 1 / straightness(tr, ts), "the ratio is inverted"),
        (lambda tr, ts: straightness(tr, torch.arange(len(ts), dtype=ts.dtype)) * (len(ts) - 1)
         / (ts[-1] - ts[0]).abs(), "divide each"),
    ]),
]
CASES += [
    ("check_replacement_step", replacement_step, [
        (lambda x, k, mk, m, s, z: replacement_step(x, k, 1 - mk, m, s, z), "the mask is inverted"),
        (lambda x, k, mk, m, s, z: replacement_step(x, k, mk, 1.0, 0.0, z), "is not noised"),
        (lambda x, k, mk, m, s, z: replacement_step(x, k, mk, 1.0, s, z), "not scaled by m_t"),
        (lambda x, k, mk, m, s, z: replacement_step(x, k, mk, m, s * s, z), "σ_t² where σ_t"),
    ]),
    ("check_gaussian_conditional", gaussian_conditional, [
        (lambda mu, c, mk, x: gaussian_conditional(mu, c, 1 - mk, x), "the mask is inverted"),
        (lambda mu, c, mk, x: (gaussian_conditional(mu, c, mk, x)[0],
                               c[mk.bool()][:, mk.bool()]), "the Schur correction is missing"),
        (lambda mu, c, mk, x: gaussian_conditional(mu * mk, c, mk, x),
         "prior mean of the known part is not subtracted"),
        (lambda mu, c, mk, x: (gaussian_conditional(mu, c, mk, x)[0],
                               2 * c[mk.bool()][:, mk.bool()]
                               - gaussian_conditional(mu, c, mk, x)[1]), "the wrong sign"),
    ]),
    ("check_x0_projection_step", x0_projection_step, [
        (lambda x, e, k, mk, ms, ss, mt, st: x0_projection_step(x, e, k, 1 - mk, ms, ss, mt, st),
         "the mask is inverted"),
        (lambda x, e, k, mk, ms, ss, mt, st: torch.where(mk.bool(), (x - ss * e) / ms, k),
         "the step is not re-noised"),
        (lambda x, e, k, mk, ms, ss, mt, st: mt * ((torch.where(mk.bool(), x, k) - ss * e) / ms)
         + st * e, "project x̂_0, not the noisy state"),
        (lambda x, e, k, mk, ms, ss, mt, st: x0_projection_step(x, e, k, mk, 1.0, ss, mt, st),
         "the division by m_s is missing"),
    ]),
    ("check_cfg_eps", cfg_eps, [
        (lambda ec, eu, w: (1 + w) * ec - w * eu, "the (1 + w) ε_y − w ε_∅ convention"),
        (lambda ec, eu, w: cfg_eps(eu, ec, w), "are swapped"),
        (lambda ec, eu, w: eu - w * (ec - eu), "wrong sign"),
        (lambda ec, eu, w: w * ec, "baseline is missing"),
    ]),
]
IDS = [c[0] for c in CASES]
WRONG = [(c[0], w, words) for c in CASES for w, words in c[2]]
WRONG_IDS = [f"{name}-{words[:24]}" for name, _, words in WRONG]


def test_every_checker_is_covered():
    assert sorted(IDS) == sorted(checks.__all__)


@pytest.mark.parametrize("name,right", [(c[0], c[1]) for c in CASES], ids=IDS)
def test_right_answer_passes(name, right, capsys):
    assert getattr(checks, name)(right) is True
    out = capsys.readouterr().out
    assert out.startswith("✓") and "✗" not in out, out


@pytest.mark.parametrize("name,wrong,words", WRONG, ids=WRONG_IDS)
def test_typical_mistake_is_diagnosed(name, wrong, words, capsys):
    assert getattr(checks, name)(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("✗") and words in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", IDS)
def test_stub_reports_not_implemented(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("hint: think about it")

    target = stub
    if name == "check_custom_schedule":
        class Stub(Schedule):
            def __init__(self, beta_min, beta_max):
                pass

            def beta(self, t):
                raise NotImplementedError("hint: think about it")

        target = Stub
    assert getattr(checks, name)(target) is False
    out = capsys.readouterr().out
    assert out.startswith("…") and "not implemented yet: hint: think about it" in out, out


@pytest.mark.parametrize("name", IDS)
def test_crash_is_one_line_not_a_traceback(name, capsys):
    def broken(*args, **kwargs):
        return torch.ones(2, 3) @ torch.ones(4, 5)  # RuntimeError: shapes cannot be multiplied

    target = broken
    if name == "check_custom_schedule":
        class Broken(Schedule):
            def __init__(self, beta_min, beta_max):
                raise RuntimeError("shapes cannot be multiplied")

        target = Broken
    assert getattr(checks, name)(target) is False
    out = capsys.readouterr().out
    assert out.startswith("✗") and "raised RuntimeError" in out and out.count("\n") == 1, out


def test_wrong_value_without_known_mistake_shows_the_error(capsys):
    assert checks.check_q_sample(lambda x0, ab, n: q_sample(x0, ab, n) + 0.1) is False
    out = capsys.readouterr().out
    assert "does not match: max |yours − expected| = 0.1" in out, out


def test_float32_and_missing_return_are_named(capsys):
    assert checks.check_q_sample(lambda x0, ab, n: q_sample(x0.float(), ab.float(), n.float()))\
        is False
    assert "not to float64 precision" in capsys.readouterr().out
    assert checks.check_q_sample(lambda x0, ab, n: None) is False
    assert "forget the `return`" in capsys.readouterr().out


def test_not_callable(capsys):
    assert checks.check_q_sample(3.0) is False
    assert "expected a function" in capsys.readouterr().out
