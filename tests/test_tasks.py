"""Controllable generation (diffusion_lab.tasks) against exact Gaussian oracles, in float64.

Replacement is exact when the observed and generated parts of the data are independent, so
those tests compare with the exact marginal of the generated part at t_end (m² v + σ²);
a correlated Gaussian shows the documented gap of plain replacement and RePaint's smaller gap.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import tasks
from diffusion_lab.data import LUMA_WEIGHTS, luminance
from diffusion_lab.model import GenerativeModel, guided_eps_model
from diffusion_lab.oracles import GaussianMixtureOracle, GaussianOracle
from diffusion_lab.samplers import SAMPLERS, ddim
from diffusion_lab.sde import VPSDE
from diffusion_lab.timegrid import coefficients, time_grid

F64 = torch.float64
SDE_ = VPSDE()
T_END = SDE_.t_min


def _at_t_end(mean, var):
    """Mean and variance of x_{t_end} = m x_0 + σ z for x_0 with the given moments."""
    m, s = coefficients(SDE_, T_END)[:2]
    return m * torch.as_tensor(mean, dtype=F64), m**2 * torch.as_tensor(var, dtype=F64) + s**2


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- inpainting ---------------------------------------------------------------------------------
MU4 = torch.tensor([0.5, -0.3, 1.0, 0.2], dtype=F64)
VAR4 = torch.tensor([0.04, 0.25, 1.0, 0.1], dtype=F64)
MASK4 = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)  # generate coordinates 0, 1


def test_inpainting_diagonal_gaussian_reproduces_the_exact_conditional(check_mean_var):
    """Diagonal covariance: the unknown coordinates are independent of the known ones, so the
    exact conditional is their marginal N(μ_u, v_u), whatever the (atypical) known values."""
    orc = GaussianOracle(SDE_, MU4, VAR4)
    n = 20000
    x_known = torch.tensor([0.0, 0.0, -2.0, 3.0], dtype=F64).expand(n, 4).clone()
    out = tasks.inpaint(orc, SDE_, x_known, MASK4, method="dpm_solver", steps=50, grid="logsnr",
                        generator=_gen())
    assert torch.equal(out[:, 2:], x_known[:, 2:])  # known pixels exactly, bitwise
    check_mean_var(out[:, :2], *_at_t_end(MU4[:2], VAR4[:2]))


def test_the_model_sees_a_forward_sample_of_the_known_pixels_not_clean_pixels(check_mean_var):
    """At each call at time t the known coordinates are m_t x_known + σ_t z with fresh z."""
    orc = GaussianOracle(SDE_, MU4, VAR4)
    seen = []

    def recording(x, t):
        seen.append((x.clone(), float(t[0])))
        return orc(x, t)

    n = 4000
    x_known = torch.tensor([0.0, 0.0, -2.0, 3.0], dtype=F64).expand(n, 4).clone()
    tasks.inpaint(recording, SDE_, x_known, MASK4, method="ancestral", steps=10,
                  generator=_gen(1))
    assert len(seen) == 10
    for x, t in seen[::3]:
        m, s = coefficients(SDE_, t)[:2]
        check_mean_var(x[:, 2:], m * x_known[0, 2:], s**2)
    assert not torch.equal(seen[1][0][:, 2:], seen[2][0][:, 2:])  # a fresh sample per call


def _reference_replace_after_each_step(orc, x_known, mask, steps, method, g, eta=0.0):
    """Song et al.'s loop written out: replace the known part of the state by a forward sample
    at the current time, then take one sampler step (ddim or ancestral)."""
    ts = time_grid(SDE_, steps).tolist()
    x = SDE_.prior_sample(x_known.shape, generator=g, dtype=F64)
    for s, t in zip(ts[:-1], ts[1:], strict=True):
        cs, ct = coefficients(SDE_, s), coefficients(SDE_, t)
        z = torch.randn(x.shape, generator=g, dtype=F64)
        x = torch.where(mask == 0, cs.m * x_known + cs.sigma * z, x)
        eps = orc(x, torch.full((x.shape[0],), s, dtype=F64))
        x0 = (x - cs.sigma * eps) / cs.m
        h = ct.lam - cs.lam
        if method == "ddim":
            frac = eta**2 * -math.expm1(-2 * h)
            x = ct.m * x0 + ct.sigma * math.sqrt(1 - frac) * eps
            x = x + ct.sigma * math.sqrt(frac) * torch.randn(x.shape, generator=g, dtype=F64)
        else:
            var_st = cs.sigma**2 * -math.expm1(-2 * h)
            mean = (x - var_st / cs.sigma * eps) * (ct.m / cs.m)
            sd = math.sqrt(var_st) * ct.sigma / cs.sigma
            x = mean + sd * torch.randn(x.shape, generator=g, dtype=F64)
    return torch.where(mask == 0, x_known, x)


CORR = torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]], dtype=F64)


@pytest.mark.parametrize(("method", "kw"), [("ddim", {"eta": 0.5}), ("ancestral", {})])
def test_replacing_inside_the_model_call_equals_replacing_after_each_step(method, kw):
    orc = GaussianOracle(SDE_, torch.zeros(3), CORR)
    x_known = torch.randn(64, 3, generator=_gen(2), dtype=F64)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    ref = _reference_replace_after_each_step(orc, x_known, mask, 12, method, _gen(3),
                                             kw.get("eta", 0.0))
    out = tasks.inpaint(orc, SDE_, x_known, mask, method=method, steps=12, grid="uniform",
                        generator=_gen(3), **kw)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    # RePaint's own loop without jumps (jump = steps) is the same sampler again
    rp = tasks.inpaint(orc, SDE_, x_known, mask, method=method, steps=12, generator=_gen(3),
                       resample_steps=2, jump=12, **kw)
    torch.testing.assert_close(rp, ref, rtol=0, atol=1e-12)


def test_repaint_loop_matches_euler_maruyama_without_jumps():
    orc = GaussianOracle(SDE_, torch.zeros(3), CORR)
    x_known = torch.randn(16, 3, generator=_gen(4), dtype=F64)
    mask = torch.tensor([0.0, 1.0, 1.0], dtype=F64)
    a = tasks.inpaint(orc, SDE_, x_known, mask, method="euler_maruyama", steps=8,
                      generator=_gen(5))
    b = tasks.inpaint(orc, SDE_, x_known, mask, method="euler_maruyama", steps=8,
                      generator=_gen(5), resample_steps=3, jump=8)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_replacement_is_only_approximate_for_a_correlated_gaussian_and_repaint_narrows_the_gap():
    """Corr(a, b) = 0.9, b = 1.5 known: the exact conditional mean of a is 0.9 · 1.5 = 1.35.
    Plain replacement lands far below (the network never sees a consistent (a, b) pair early
    on); RePaint's re-noising moves it most of the way (measured: 0.87 → 1.24 at 25 steps),
    but still not exactly (its variance undershoots 1 − 0.81 = 0.19)."""
    rho, b, n = 0.9, 1.5, 2000
    orc = GaussianOracle(SDE_, torch.zeros(2), torch.tensor([[1.0, rho], [rho, 1.0]]))
    x_known = torch.zeros(n, 2, dtype=F64)
    x_known[:, 1] = b
    mask = torch.tensor([1.0, 0.0], dtype=F64)
    se = math.sqrt(1.0 / n)  # the marginal std of a bounds every std involved
    plain = tasks.inpaint(orc, SDE_, x_known, mask, method="ancestral", steps=25,
                          generator=_gen(6))[:, 0]
    info = {}
    repaint = tasks.inpaint(orc, SDE_, x_known, mask, method="ancestral", steps=25,
                            generator=_gen(6), resample_steps=10, jump=1, info=info)[:, 0]
    exact = rho * b
    gap_plain, gap_repaint = exact - float(plain.mean()), exact - float(repaint.mean())
    assert gap_plain > 0.3 and gap_plain > 10 * se  # a real, measurable bias
    assert gap_repaint < gap_plain / 2
    assert info["nfe"] == 25 + 9 * 24 and info["resample_steps"] == 10


def test_repaint_path_and_forward_jump(check_mean_var):
    assert tasks._repaint_path(4, 1, 1) == [0, 1, 2, 3, 4]
    assert tasks._repaint_path(4, 3, 2) == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]
    assert tasks._repaint_path(3, 2, 1) == [0, 1, 0, 1, 2, 1, 2, 3]
    # x_s ~ q(x_s | x_0) then the jump: x_t ~ q(x_t | x_0) = N(m_t x_0, σ_t²)
    x0 = torch.tensor([0.7, -1.2], dtype=F64)
    s, t, n = 0.05, 0.1, 20000  # close times: the kernel's variance differs a lot from σ_t²
    xs, _ = SDE_.marginal_sample(x0.expand(n, 2), s, generator=_gen(7))
    xt = tasks.forward_jump(SDE_, xs, s, t, generator=_gen(8))
    (ms, ss), (mt, st) = coefficients(SDE_, s)[:2], coefficients(SDE_, t)[:2]
    check_mean_var(xt, mt * x0, st**2)
    z = torch.randn(xs.shape, generator=_gen(8), dtype=F64)  # the kernel's own noise
    kernel_sd = math.sqrt(st**2 - (mt / ms) ** 2 * ss**2)
    torch.testing.assert_close(xt, (mt / ms) * xs + kernel_sd * z, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="s < t"):
        tasks.forward_jump(SDE_, xs, t, s)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_every_sampler_keeps_known_pixels_and_is_reproducible(method):
    orc = GaussianOracle(SDE_, torch.zeros(3), CORR)
    x_known = torch.randn(4, 3, generator=_gen(9), dtype=F64)
    mask = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    a = tasks.inpaint(orc, SDE_, x_known, mask, method=method, steps=4, generator=_gen(10))
    b = tasks.inpaint(orc, SDE_, x_known, mask, method=method, steps=4, generator=_gen(10))
    assert torch.equal(a, b)
    assert torch.equal(a[:, 1:], x_known[:, 1:])


def test_inpainting_callback_sees_known_pixels_and_bad_masks_are_refused():
    orc = GaussianOracle(SDE_, torch.zeros(3), CORR)
    x_known = torch.randn(5, 3, generator=_gen(11), dtype=F64)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    frames = []
    tasks.inpaint(orc, SDE_, x_known, mask, method="ddim", steps=3, generator=_gen(),
                  callback=lambda i, t, x, x0: frames.append((t, x, x0)))
    assert len(frames) == 3
    for _, _, x0 in frames:
        assert torch.equal(x0[:, 1], x_known[:, 1])
    with pytest.raises(ValueError, match="only 0"):
        tasks.inpaint(orc, SDE_, x_known, torch.full((3,), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="broadcast"):
        tasks.inpaint(orc, SDE_, x_known, torch.ones(2))
    with pytest.raises(TypeError, match="mask"):
        tasks.inpaint(orc, SDE_, x_known, [1, 0, 1])
    with pytest.raises(ValueError, match="RePaint"):
        tasks.inpaint(orc, SDE_, x_known, mask, method="dpm_solver", resample_steps=2)
    with pytest.raises(ValueError, match="unknown method"):
        tasks.inpaint(orc, SDE_, x_known, mask, method="nope")


# -- colorization -------------------------------------------------------------------------------
def test_luma_chroma_basis_is_orthonormal_with_the_luminance_direction_first():
    q = tasks.luma_chroma_basis()
    w = torch.tensor(LUMA_WEIGHTS, dtype=F64)
    torch.testing.assert_close(q @ q.T, torch.eye(3, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(q[0], w / w.norm(), rtol=0, atol=1e-15)
    h = tasks.block_basis(3)
    torch.testing.assert_close(h @ h.T, torch.eye(9, dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(h[0], torch.full((9,), 1 / 3, dtype=F64), rtol=0, atol=1e-15)


def test_colorization_keeps_luminance_and_reproduces_the_chroma_conditional(check_mean_var):
    """Per pixel Σ_p = Qᵀ diag(v_p) Q: luminance and chroma independent, so the chroma of the
    colorized image must be the chroma marginal N((Qμ)_{1,2}, v_{p,1..2})."""
    q = tasks.luma_chroma_basis()
    hw = 4  # a 2x2 image; flattening [3, 2, 2] puts channel c of pixel p at c * 4 + p
    v = torch.tensor([[0.05, 0.02, 0.08], [0.1, 0.05, 0.01],
                      [0.02, 0.1, 0.04], [0.2, 0.03, 0.06]], dtype=F64)
    cov = torch.zeros(12, 12, dtype=F64)
    for p in range(hw):
        idx = torch.arange(3) * hw + p
        cov[idx[:, None], idx[None, :]] = q.T @ torch.diag(v[p]) @ q
    mean = torch.tensor([0.2, -0.1, 0.4], dtype=F64)[:, None, None].expand(3, 2, 2)
    orc = GaussianOracle(SDE_, mean.reshape(-1), cov)
    orc.data_shape = (3, 2, 2)  # same flattening, image-shaped for the task
    n = 4000
    gray = torch.rand(n, 1, 2, 2, generator=_gen(12), dtype=F64) * 1.6 - 0.8
    out = tasks.colorize(orc, SDE_, gray, method="dpm_solver", steps=40, grid="logsnr",
                         generator=_gen(13))
    assert out.shape == (n, 3, 2, 2)
    torch.testing.assert_close(luminance(out), gray, rtol=0, atol=1e-12)
    chroma = torch.einsum("ij,bjhw->bihw", q, out)[:, 1:].reshape(n, 2, 4)
    exp_mean, exp_var = _at_t_end((q @ mean.reshape(3, 4))[1:], v.T[1:])
    check_mean_var(chroma, exp_mean, exp_var)


def test_colorization_validates_shapes_and_ranges_and_accepts_rgb():
    orc = GaussianOracle(SDE_, torch.zeros(12), torch.ones(12) * 0.1)
    orc.data_shape = (3, 2, 2)
    rgb = torch.rand(3, 3, 2, 2, generator=_gen(14), dtype=F64) * 2 - 1
    a = tasks.colorize(orc, SDE_, rgb, method="ddim", steps=3, generator=_gen(15))
    b = tasks.colorize(orc, SDE_, luminance(rgb), method="ddim", steps=3, generator=_gen(15))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tasks.colorize(orc, SDE_, torch.full((1, 1, 2, 2), 1.5, dtype=F64))
    with pytest.raises(ValueError, match="gray"):
        tasks.colorize(orc, SDE_, torch.zeros(1, 2, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match="gray"):
        tasks.colorize(orc, SDE_, torch.zeros(2, 2, dtype=F64))


# -- super-resolution ---------------------------------------------------------------------------
def test_super_resolution_keeps_the_pooled_image_and_reproduces_the_high_pass(check_mean_var):
    """A 4x4 image whose low-pass (block means) and high-pass parts are independent, each
    with a full covariance: the high-pass part of the output must be its marginal."""
    d = 16
    eye = torch.eye(d, dtype=F64).reshape(d, 1, 4, 4)
    p_low = tasks.upsample(tasks.downsample(eye, 2), 2).reshape(d, d)  # A⁺A as a matrix
    p_high = torch.eye(d, dtype=F64) - p_low
    r = torch.randn(d, d, generator=_gen(16), dtype=F64) / 4
    s_high = p_high @ (r @ r.T + 0.05 * torch.eye(d, dtype=F64)) @ p_high
    cov = p_low @ (0.3 * torch.eye(d, dtype=F64)) @ p_low + s_high
    mean = torch.linspace(-0.5, 0.5, d, dtype=F64)
    orc = GaussianOracle(SDE_, mean, cov)
    orc.data_shape = (1, 4, 4)
    n = 4000
    low = torch.rand(n, 1, 2, 2, generator=_gen(17), dtype=F64) - 0.5
    out = tasks.super_resolve(orc, SDE_, low, 2, method="dpm_solver", steps=40, grid="logsnr",
                              generator=_gen(18))
    torch.testing.assert_close(tasks.downsample(out, 2), low, rtol=0, atol=1e-12)
    high = out.reshape(n, d) @ p_high.T
    m, s = coefficients(SDE_, T_END)[:2]  # x_t = m x_0 + σ z; the projected noise is σ² P_high
    exp_var = m**2 * torch.diagonal(s_high) + s**2 * torch.diagonal(p_high)
    check_mean_var(high, m * p_high @ mean, exp_var)


def test_pooling_pseudo_inverse_and_range_fix_keep_the_constraints():
    g = _gen(19)
    y = torch.rand(2, 1, 3, 3, generator=g, dtype=F64) * 2 - 1
    torch.testing.assert_close(tasks.downsample(tasks.upsample(y, 3), 3), y, rtol=0, atol=1e-15)
    x = torch.randn(2, 1, 9, 9, generator=g, dtype=F64) * 3  # far out of range

    def block_min(s):
        return tasks.upsample(-torch.nn.functional.max_pool2d(-s, 3), 3)

    x_c = x - tasks.upsample(tasks.downsample(x, 3) - y, 3)
    fixed = tasks.shrink_into_range(x_c, tasks.upsample(y, 3), block_min)
    assert float(fixed.abs().max()) <= 1.0 + 1e-12
    torch.testing.assert_close(tasks.downsample(fixed, 3), y, rtol=0, atol=1e-12)
    inside = torch.rand(2, 1, 9, 9, generator=g, dtype=F64) * 1.8 - 0.9
    torch.testing.assert_close(tasks.shrink_into_range(inside, torch.zeros_like(inside),
                                                       block_min), inside, rtol=0, atol=0)
    # colour: move towards grey (Y, Y, Y) per pixel; luminance kept
    rgb = torch.randn(4, 3, 5, 5, generator=g, dtype=F64) * 2
    lum = luminance(rgb).clamp(-1, 1)  # a valid target luminance
    rgb = rgb + (lum - luminance(rgb))  # now luminance(rgb) = lum (weights sum to 1)
    fixed = tasks.shrink_into_range(rgb, lum.expand_as(rgb), lambda s: s.amin(1, keepdim=True))
    assert float(fixed.abs().max()) <= 1.0 + 1e-12
    torch.testing.assert_close(luminance(fixed), lum, rtol=0, atol=1e-12)


# -- classifier-free guidance -------------------------------------------------------------------
def _two_class_oracle():
    """1-D: class 0 ~ N(−1, 0.5²), class 1 ~ N(+1, 0.5²), equal weights; null label 2."""
    return GaussianMixtureOracle(SDE_, torch.tensor([[-1.0], [1.0]]), torch.tensor([0.25, 0.25]),
                                 labels=[0, 1])


def test_guidance_w1_is_the_conditional_and_w0_the_unconditional_model_in_one_call():
    orc = _two_class_oracle()
    calls = []

    def counted(x, t, y):
        calls.append(x.shape[0])
        return orc(x, t, y)

    x = torch.randn(32, 1, generator=_gen(20), dtype=F64) * 2
    t = torch.rand(32, generator=_gen(21), dtype=F64) * 0.9 + 0.05
    y = torch.randint(0, 2, (32,), generator=_gen(22))
    null = orc.null_label
    w1 = tasks.classifier_free_guidance(counted, 1.0, null)(x, t, y)
    assert calls == [64]  # one batched forward of 2B rows
    torch.testing.assert_close(w1, orc(x, t, y), rtol=0, atol=1e-12)
    w0 = tasks.classifier_free_guidance(orc, 0.0, null)(x, t, y)
    torch.testing.assert_close(w0, orc(x, t, torch.full_like(y, null)), rtol=0, atol=1e-12)
    w3 = tasks.classifier_free_guidance(orc, 3.0, null)(x, t, y)
    eu, ec = orc(x, t, torch.full_like(y, null)), orc(x, t, y)
    torch.testing.assert_close(w3, eu + 3.0 * (ec - eu), rtol=0, atol=1e-12)
    torch.testing.assert_close(w3, guided_eps_model(orc, y, 3.0, null)(x, t), rtol=0, atol=0)
    uncond = tasks.classifier_free_guidance(orc, 3.0, null)(x, t)
    torch.testing.assert_close(uncond, eu, rtol=0, atol=0)


def test_guided_sampling_concentrates_on_the_class(check_mean_var):
    """Sampling class 1: at w = 1 the class-1 law N(1, 0.25) (P(x < 0) = Φ(−2) = 0.0228);
    at w = 0 both classes (P(x < 0) = 0.5); at w = 4 markedly fewer samples across 0."""
    orc, n = _two_class_oracle(), 4000
    y = torch.ones(n, dtype=torch.long)

    def draw(w):
        eps = tasks.classifier_free_guidance(orc, w, orc.null_label)
        x1 = SDE_.prior_sample((n, 1), generator=_gen(23), dtype=F64)
        return SAMPLERS["dpm_solver"](eps, SDE_, x1, steps=30, grid="logsnr", y=y)[:, 0]

    x0, x1, x4 = draw(0.0), draw(1.0), draw(4.0)
    check_mean_var(x1[:, None], *_at_t_end([1.0], [0.25]))
    p_wrong = {w: float((x < 0).double().mean()) for w, x in ((0, x0), (1, x1), (4, x4))}
    p1 = 0.5 * math.erfc(2 / math.sqrt(2))
    assert abs(p_wrong[0] - 0.5) < 5 * math.sqrt(0.25 / n)
    assert abs(p_wrong[1] - p1) < 5 * math.sqrt(p1 * (1 - p1) / n)
    assert p_wrong[4] < p_wrong[1] - 5 * math.sqrt(p1 * (1 - p1) / n)
    assert float(x4.std()) < float(x1.std())  # sharper


# -- interpolation and inversion ----------------------------------------------------------------
def test_slerp_endpoints_norms_and_angles():
    g = _gen(24)
    d = 784
    z0, z1 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    alphas = torch.linspace(0, 1, 9, dtype=F64)
    path = tasks.slerp(z0, z1, alphas)
    assert path.shape == (9, d)
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    # typical Gaussian norms stay ≈ √D (‖z‖ has std ≈ 1/√2); a linear path dips to ≈ √(D/2)
    assert float((path.norm(dim=1) - math.sqrt(d)).abs().max()) < 5 / math.sqrt(2)
    assert abs(float((0.5 * (z0 + z1)).norm()) - math.sqrt(d / 2)) < 5 / math.sqrt(2)
    # equal norms are kept exactly and the angle to z0 grows linearly
    z1e = z1 * z0.norm() / z1.norm()
    path = tasks.slerp(z0, z1e, alphas)
    torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(9), rtol=1e-12, atol=0)
    theta = torch.arccos(z0 @ z1e / z0.norm() ** 2)
    ang = torch.arccos((path @ z0 / z0.norm() ** 2).clamp(-1, 1))
    torch.testing.assert_close(ang, alphas * theta, rtol=0, atol=1e-6)
    assert tasks.slerp(z0, z1, 0.5).shape == (d,)
    with pytest.raises(ValueError, match="same shape"):
        tasks.slerp(z0, z1[:-1], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        tasks.slerp(z0, z1, 1.5)
    with pytest.raises(ValueError, match="opposite"):
        tasks.slerp(z0, -z0, 0.5)


def test_ddim_inversion_round_trips_with_error_shrinking_like_one_over_steps():
    orc = GaussianOracle(SDE_, torch.tensor([0.3, -0.2]), torch.tensor([[0.5, 0.2], [0.2, 0.3]]))
    x0 = orc.sample(64, generator=_gen(25))
    exact_latent = orc.pf_map(x0, T_END, 1.0)
    errs, latent_errs = [], []
    for steps in (25, 100, 400, 1600):
        z = tasks.ddim_invert(orc, SDE_, x0, steps)
        errs.append(float((ddim(orc, SDE_, z, steps=steps) - x0).abs().max()))
        latent_errs.append(float((z - exact_latent).abs().max()))
    for e_coarse, e_fine in zip(errs[:-1], errs[1:], strict=True):
        assert 3.0 < e_coarse / e_fine < 5.0  # first order: 4x the steps, 1/4 the error
    assert errs[-1] < 1e-2 and latent_errs[-1] < 1e-2
    assert latent_errs == sorted(latent_errs, reverse=True)


# -- the bundled checkpoints (smoke) ------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_model():
    return GenerativeModel.load("data/checkpoints/mnist_cond")


def test_model_inpaint_and_super_resolve_keep_the_observation(mnist_model):
    x = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1
    out = mnist_model.inpaint(x, mask, steps=2, seed=0, labels=[3, 7])
    assert out.shape == x.shape and torch.equal(out[..., :14, :], x[..., :14, :])
    low = tasks.downsample(x, 2)
    sr = mnist_model.super_resolve(low, 2, steps=2, seed=0)
    assert sr.shape == x.shape and float(sr.abs().max()) <= 1.0
    torch.testing.assert_close(tasks.downsample(sr, 2), low, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        mnist_model.inpaint(x * 2, mask, steps=1)
    with pytest.raises(ValueError, match="colorize needs an RGB"):
        mnist_model.colorize(x, steps=1)


def test_model_inpaint_imputes_2d_data_too():
    from diffusion_lab.nets import MLP

    model = GenerativeModel(MLP(hidden=8, layers=1), "vp", data_shape=(2,))
    x = torch.tensor([[3.0, 0.0], [-2.0, 0.0]])  # 2-D data need not lie in [-1, 1]
    out = model.inpaint(x, torch.tensor([0.0, 1.0]), steps=2)
    assert torch.equal(out[:, 0], x[:, 0]) and not torch.equal(out[:, 1], x[:, 1])


def test_model_colorize_keeps_luminance():
    model = GenerativeModel.load("data/checkpoints/colour_mnist")
    gray = torch.linspace(-0.9, 0.9, 2 * 28 * 28).reshape(2, 1, 28, 28)
    out = model.colorize(gray, steps=2, seed=0)
    assert out.shape == (2, 3, 28, 28) and float(out.abs().max()) <= 1.0
    torch.testing.assert_close(luminance(out), gray, rtol=0, atol=1e-5)


def test_model_interpolate_ends_are_the_ddim_decodes(mnist_model):
    g = _gen(26)
    a, b = torch.randn(1, 1, 28, 28, generator=g), torch.randn(1, 1, 28, 28, generator=g)
    path = mnist_model.interpolate(a, b, num=3, steps=2, images=False, labels=5, clip=False)
    net = mnist_model.ema if mnist_model.ema is not None else mnist_model.net
    with torch.no_grad():
        end = ddim(net, mnist_model.sde, b, steps=2, grid="uniform", y=torch.tensor([5]))
    assert path.shape == (3, 1, 28, 28)
    torch.testing.assert_close(path[-1:], end, rtol=1e-4, atol=1e-4)
