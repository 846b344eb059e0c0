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
# -- lesson 09: interpolation and inversion ----------------------------------------------------
def slerp(z0, z1, alpha):
    out = []
    for a, b in zip(z0, z1, strict=True):
        cos = float(a @ b / (a.norm() * b.norm()))
        th = math.acos(max(-1.0, min(1.0, cos)))
        out.append((1 - alpha) * a + alpha * b if th < 1e-6 else
                   (math.sin((1 - alpha) * th) * a + math.sin(alpha * th) * b) / math.sin(th))
    return torch.stack(out)


def _slerp_no_fallback(z0, z1, alpha):
    th = torch.arccos(((z0 * z1).sum(1, keepdim=True) / (z0.norm(dim=1, keepdim=True)
                                                        * z1.norm(dim=1, keepdim=True))).clamp(-1, 1))
    return (torch.sin((1 - alpha) * th) * z0 + torch.sin(alpha * th) * z1) / torch.sin(th)


def _slerp_batch_norm(z0, z1, alpha):
    th = torch.arccos(((z0 * z1).sum(1, keepdim=True) / (z0.norm() * z1.norm())).clamp(-1, 1))
    return (torch.sin((1 - alpha) * th) * z0 + torch.sin(alpha * th) * z1) / torch.sin(th)


def ddim_invert_step(x, eps_model, s, t, coef):
    (ms, ss), (mt, st) = coef(s), coef(t)
    e = eps_model(x, torch.full((x.shape[0],), s, dtype=x.dtype))
    return mt / ms * x + (st - mt * ss / ms) * e


def _invert_eps_at_t(x, eps_model, s, t, coef):
    return ddim_invert_step(x, lambda a, b: eps_model(a, b - s + t), s, t, coef)


def _invert_target_x0(x, eps_model, s, t, coef):
    mt, st = coef(t)
    e = eps_model(x, torch.full((x.shape[0],), s, dtype=x.dtype))
    return (x - st * e) + st * e


def sdedit_encode(x0, t, z, coef):
    m, s = coef(t)
    return m * x0 + s * z


def linear_mix_norm(alpha, d):
    return torch.sqrt(d * (1 - 2 * alpha * (1 - alpha)))


CASES += [
    ("check_slerp", slerp, [
        (lambda z0, z1, a: (1 - a) * z0 + a * z1, "that is the linear interpolation"),
        (_slerp_batch_norm, "not normalised per sample"),
        (_slerp_no_fallback, "parallel rows give NaN"),
        (lambda z0, z1, a: slerp(z1, z0, a), "the weights are swapped"),
    ]),
    ("check_ddim_invert_step", ddim_invert_step, [
        (_invert_eps_at_t, "you used the target time t"),
        (_invert_target_x0, "you used the target time's m_t, σ_t there"),
        (lambda x, em, s, t, coef: ddim_invert_step(x, em, t, s, coef), "the step in the other direction"),
        (lambda x, em, s, t, coef: ddim_invert_step(x, em, s, t, lambda u: coef(u)[::-1]),
         "m and σ are swapped"),
    ]),
    ("check_sdedit_encode", sdedit_encode, [
        (lambda x0, t, z, coef: sdedit_encode(x0, t, z, lambda u: coef(u)[::-1]), "m and σ are swapped"),
        (lambda x0, t, z, coef: coef(t)[0] ** 2 * x0 + coef(t)[1] ** 2 * z, "those are the variances"),
        (lambda x0, t, z, coef: x0 + coef(t)[1] * z, "the data is not shrunk"),
    ]),
    ("check_linear_mix_norm", linear_mix_norm, [
        (lambda a, d: math.sqrt(d) * torch.ones_like(a), "norms do not add linearly"),
        (lambda a, d: linear_mix_norm(a, d) ** 2, "a square root is missing"),
        (lambda a, d: ((1 - a) ** 2 + a**2).sqrt() * d, "the square root must cover d"),
    ]),
]


# -- issue 9: loops and the Tweedie / DSM bridge ----------------------------------------------
def l_simple_loss(eps_model, x0, ab, t, noise):
    a = _view(ab, x0)
    return ((eps_model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t) - noise) ** 2).mean()


def tweedie_x0(x, score, m, sigma):
    return (x + _view(sigma, x) ** 2 * score) / _view(m, x)


def dsm_loss(score, noise, sigma):
    return ((score + noise / _view(sigma, noise)) ** 2).sum(1)


def _ms(sde, u):
    m, s = sde.marginal(torch.tensor(u, dtype=torch.float64))
    return float(m), float(s)


def ddim_loop(eps_model, sde, x, grid, drop_last=False, eps_at_end=False):
    pairs = list(zip(grid[:-1], grid[1:], strict=True))
    for s, t in pairs[:-1] if drop_last else pairs:
        (ms, ss), (mt, st) = _ms(sde, s), _ms(sde, t)
        eps = eps_model(x, torch.full((x.shape[0],), t if eps_at_end else s, dtype=x.dtype))
        x = mt * (x - ss * eps) / ms + st * eps
    return x


def ancestral_loop(eps_model, sde, x, grid, noises, beta_var=False, var_not_std=False):
    for (s, t), z in zip(zip(grid[:-1], grid[1:], strict=True), noises, strict=True):
        (ms, ss), (mt, st) = _ms(sde, s), _ms(sde, t)
        x0 = (x - ss * eps_model(x, torch.full((x.shape[0],), s, dtype=x.dtype))) / ms
        a = (ms / mt) ** 2  # ᾱ_s / ᾱ_t: the forward transition t → s, like α_i
        var_f = ss**2 - a * st**2  # like β_i
        mean = math.sqrt(a) * st**2 / ss**2 * x + mt * var_f / ss**2 * x0  # lesson 03's μ̃
        var = var_f if beta_var else var_f * st**2 / ss**2
        x = mean + (var if var_not_std else math.sqrt(var)) * z
    return x


CASES += [
    ("check_l_simple_loss", l_simple_loss, [
        (lambda e, x0, ab, t, n: ((e(x0, t) - n) ** 2).mean(), "must see the noisy x_t"),
        (lambda e, x0, ab, t, n:
         ((e(_view(ab, x0).sqrt() * x0 + (1 - _view(ab, x0)).sqrt() * n, t) - x0) ** 2).mean(),
         "the target of ε-prediction is the noise"),
        (lambda e, x0, ab, t, n: 18 * l_simple_loss(e, x0, ab, t, n), "you summed"),
    ]),
    ("check_tweedie_x0", tweedie_x0, [
        (lambda x, s, m, sg: (x + _view(sg, x) * s) / _view(m, x), "multiplied by σ², not σ"),
        (lambda x, s, m, sg: x + _view(sg, x) ** 2 * s, "divide by m"),
        (lambda x, s, m, sg: (x - _view(sg, x) ** 2 * s) / _view(m, x), "the score is *added*"),
    ]),
    ("check_dsm_loss", dsm_loss, [
        (lambda s, e, sg: dsm_loss(s, -e, sg), "not ‖s − ε/σ‖²"),
        (lambda s, e, sg: ((s + e / _view(sg, e) ** 2) ** 2).sum(1), "one power of σ"),
        (lambda s, e, sg: dsm_loss(s, e, sg) / 3, "don't average"),
    ]),
    ("check_ddim_loop", ddim_loop, [
        (lambda e, sde, x, g: ddim_loop(e, sde, x, g, drop_last=True), "one step is missing"),
        (lambda e, sde, x, g: ddim_loop(e, sde, x, g, eps_at_end=True), "the start of the step"),
    ]),
    ("check_ancestral_loop", ancestral_loop, [
        (lambda e, sde, x, g, n: ancestral_loop(e, sde, x, g, n, beta_var=True),
         "DDPM's other choice"),
        (lambda e, sde, x, g, n: ancestral_loop(e, sde, x, g, n, var_not_std=True),
         "not by the variance"),
    ]),
]



# -- lesson 08 · evaluation ------------------------------------------------------------------------
def frechet(mu1, c1, mu2, c2):
    w, v = torch.linalg.eigh(c1)
    r1 = (v * w.sqrt()) @ v.T
    lam = torch.linalg.eigvalsh(r1 @ c2 @ r1).clamp(min=0)
    return ((mu1 - mu2) ** 2).sum() + c1.trace() + c2.trace() - 2 * lam.sqrt().sum()


def hutchinson(f, x, probes):
    est = []
    for v in probes:
        xr = x.clone().requires_grad_(True)
        (vj,) = torch.autograd.grad(f(xr), xr, grad_outputs=v)
        est.append((vj * v).sum(-1))
    return torch.stack(est).mean(0)


def bpd(log_px, d):
    return -log_px / (d * math.log(2)) + math.log2(256 / 2)


def kid_mmd(r, q):
    m, f = r.shape
    k = lambda a, b: (a @ b.T / f + 1) ** 3  # noqa: E731
    krr, kqq = k(r, r), k(q, q)
    within = (krr.sum() - krr.trace() + kqq.sum() - kqq.trace()) / (m * (m - 1))
    return within - 2 * k(r, q).mean()


def nn_ratio(q, train):
    d = torch.cdist(q, train).sort(dim=1).values
    return d[:, 0] / d[:, 1]


CASES += [
    ("check_frechet_distance", frechet, [
        (lambda m1, c1, m2, c2: ((m1 - m2) ** 2).sum() + c1.trace() + c2.trace()
         - 2 * (c1 @ c2).abs().sqrt().trace(), "not the elementwise √"),
        (lambda m1, c1, m2, c2: frechet(m1, c1, m2, c2) - ((m1 - m2) ** 2).sum(),
         "the mean term ‖μ₁ − μ₂‖² is missing"),
        (lambda m1, c1, m2, c2: (frechet(m1, c1, m2, c2) + c1.trace() + c2.trace()
                                 + ((m1 - m2) ** 2).sum()) / 2, "the factor 2 is missing"),
    ]),
    ("check_hutchinson_divergence", hutchinson, [
        (lambda f, x, p: hutchinson(f, x, p) * p.shape[0], "do not sum them"),
        (lambda f, x, p: (p * f(x)).sum(-1).mean(0), "vᵀ f(x) is not vᵀ (∂f/∂x) v"),
        (lambda f, x, p: hutchinson(f, x, p[:1]), "not only the first"),
    ]),
    ("check_bits_per_dim", bpd, [
        (lambda lp, d: -lp / (d * math.log(2)), "the bin-width offset is missing"),
        (lambda lp, d: -lp / d + 7, "divide by ln 2"),
        (lambda lp, d: -lp / (d * math.log(2)) + 8, "belongs to data in [0, 1]"),
    ]),
    ("check_kid_mmd", kid_mmd, [
        (lambda r, q: ((r @ r.T / r.shape[1] + 1) ** 3).mean() + ((q @ q.T / q.shape[1] + 1) ** 3)
         .mean() - 2 * ((r @ q.T / r.shape[1] + 1) ** 3).mean(), "biased"),
        (lambda r, q: kid_mmd(r, q) + ((r @ q.T / r.shape[1] + 1) ** 3).mean(),
         "the cross term has the factor 2"),
    ]),
    ("check_nn_distance_ratio", nn_ratio, [
        (lambda q, t: 1 / nn_ratio(q, t), "the ratio is inverted"),
        (lambda q, t: nn_ratio(q, t) ** 2, "not squared ones"),
        (lambda q, t: (lambda d: d[:, 0] / d[:, 2])(torch.cdist(q, t).sort(dim=1).values),
         "not the third"),
    ]),
]



# -- lesson 12: the EDM design space (right answers written independently of the package) ----
def karras_sigmas(smin, smax, n, rho):
    i = torch.arange(n, dtype=torch.float64)
    return (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho


def edm_precond(sigma, sd):
    return (sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt(),
            1 / (sigma**2 + sd**2).sqrt(), torch.log(sigma) / 4)


def edm_heun_step(x, denoiser, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    return x + (sigma_next - sigma) * (d + (x_e - denoiser(x_e, sigma_next)) / sigma_next) / 2


def churn(x, sigma, gamma, noise):
    sh = sigma * (1 + gamma)
    return x + (sh**2 - sigma**2) ** 0.5 * noise, sh


def unic1_step(x, x0_s, x0_t, sigma_s, sigma_t, m_t, h, variant):
    phi = math.expm1(-h)
    b = -h if variant == "bh1" else phi
    return sigma_t / sigma_s * x - m_t * phi * x0_s - m_t * b * (x0_t - x0_s) / 2


def _unic1_variants_swapped(x, x0_s, x0_t, sigma_s, sigma_t, m_t, h, variant):
    return unic1_step(x, x0_s, x0_t, sigma_s, sigma_t, m_t, h, "bh1" if variant == "bh2" else "bh2")


def _heun_no_final_euler(x, den, s, sn):
    d = (x - den(x, s)) / s
    xe = x + (sn - s) * d
    return x + (sn - s) * (d + (xe - den(xe, sn)) / sn) / 2


def _heun_second_slope_at_sigma(x, den, s, sn):
    d = (x - den(x, s)) / s
    xe = x + (sn - s) * d
    return xe if sn == 0 else x + (sn - s) * (d + (xe - den(xe, s)) / s) / 2


CASES += [
    ("check_karras_sigmas", karras_sigmas, [
        (lambda a, b, n, r: (b**r + torch.linspace(0, 1, n, dtype=torch.float64) * (a**r - b**r))
         ** (1 / r), "ρ is applied the wrong way round"),
        (lambda a, b, n, r: karras_sigmas(a, b, n + 1, r)[:-1], "i/(n − 1), not i/n"),
        (lambda a, b, n, r: karras_sigmas(a, b, n, 1.0), "uniform in σ"),
        (lambda a, b, n, r: karras_sigmas(a, b, n, r).flip(0), "the wrong way"),
    ]),
    ("check_edm_preconditioning", edm_precond, [
        (lambda s, sd: (torch.zeros_like(s), *edm_precond(s, sd)[1:]), "c_skip is missing"),
        (lambda s, sd: (s**2 / (s**2 + sd**2), *edm_precond(s, sd)[1:]), "not σ²/(σ² + σ_d²)"),
        (lambda s, sd: (edm_precond(s, sd)[0], s / (s**2 + sd**2).sqrt(), *edm_precond(s, sd)[2:]),
         "the σ_d factor is missing"),
        (lambda s, sd: (*edm_precond(s, sd)[:2], 1 / s, edm_precond(s, sd)[3]), "not 1/σ"),
        (lambda s, sd: (*edm_precond(s, sd)[:3], torch.log(s)), "the factor ¼ is missing"),
    ]),
    ("check_edm_heun_step", edm_heun_step, [
        (lambda x, den, s, sn: x + (sn - s) * (x - den(x, s)) / s, "the Euler step only"),
        (_heun_no_final_euler, "the last step is a plain Euler step"),
        (_heun_second_slope_at_sigma, "evaluate the second slope at σ_next"),
    ]),
    ("check_unic1_step", unic1_step, [
        (lambda x, a, b, ss, st, m, h, v: st / ss * x - m * math.expm1(-h) * a, "predictor alone"),
        (lambda x, a, b, ss, st, m, h, v: 2 * unic1_step(x, a, b, ss, st, m, h, v)
         - (st / ss * x - m * math.expm1(-h) * a), "ρ = ½"),
        (_unic1_variants_swapped, "you used"),
        (lambda x, a, b, ss, st, m, h, v: unic1_step(x, a, b, st, ss, m, h, v), "σ_t/σ_s"),
    ]),
    ("check_churn", churn, [
        (lambda x, s, g, z: (x + s * g * z, s * (1 + g)), "variances add"),
        (lambda x, s, g, z: (x + ((s + g) ** 2 - s**2) ** 0.5 * z, s + g), "not σ + γ"),
        (lambda x, s, g, z: (x + s * (1 + g) * z, s * (1 + g)), "not σ̂"),
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



def test_dsm_loss_is_the_eps_loss_over_sigma_squared():
    """The identity behind check_dsm_loss: ‖s + ε/σ‖² = ‖ε − ε_θ‖²/σ² for ε_θ = −σ s."""
    g = torch.Generator().manual_seed(0)
    s, e = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g,
                                                                             dtype=torch.float64)
    sigma = torch.rand(5, generator=g, dtype=torch.float64) + 0.1
    eps_theta = -_view(sigma, s) * s
    torch.testing.assert_close(dsm_loss(s, e, sigma), ((e - eps_theta) ** 2).sum(1) / sigma**2)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unic1_step_is_the_package_corrector(variant):
    """The exercise's UniC-1 (as the checker and the test's right answer write it) is the
    correction ``diffusion_lab.unipc`` applies after a first-order step."""
    from diffusion_lab import unipc
    from diffusion_lab.sde import get_sde
    from diffusion_lab.timegrid import coefficients

    sde = get_sde("vp")
    cs, ct = coefficients(sde, 0.6), coefficients(sde, 0.35)
    g = torch.Generator().manual_seed(5)
    x, x0_s, x0_t = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    package = unipc._correct(x, cs, x0_t, [(cs.lam, x0_s)], ct, 1, variant)
    mine = unic1_step(x, x0_s, x0_t, cs.sigma, ct.sigma, ct.m, ct.lam - cs.lam, variant)
    torch.testing.assert_close(mine, package, rtol=1e-12, atol=1e-12)
