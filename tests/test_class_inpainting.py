"""Inpainting through the class (diffusion_lab.class_inpainting) on exact class-conditional
Gaussian mixtures, in float64: the known-pixel denoising error against its closed form, the
class decision against the exact posterior p(c | b), and an independent re-run of the choice."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab import class_inpainting as ci
from diffusion_lab import inpainting, tasks
from diffusion_lab.oracles import GaussianMixtureOracle
from diffusion_lab.sde import VPSDE
from diffusion_lab.timegrid import coefficients

F64 = torch.float64
SDE_ = VPSDE()
MASK2 = torch.tensor([1.0, 0.0], dtype=F64)  # generate a, keep b
MEANS = torch.tensor([[-1.0, -0.6], [1.0, 0.6], [0.0, 2.0]], dtype=F64)
COV = torch.tensor([[0.3, 0.15], [0.15, 0.2]], dtype=F64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _oracle():
    """Three classes, one Gaussian component each (labels 0, 1, 2; label 3 = null)."""
    return GaussianMixtureOracle(SDE_, MEANS, COV.expand(3, 2, 2).clone(), labels=[0, 1, 2])


def _known(b):
    x = torch.zeros(len(b), 2, dtype=F64)
    x[:, 1] = torch.as_tensor(b, dtype=F64)
    return x


def test_known_denoising_error_matches_its_closed_form_mean():
    """For class-c Gaussian data N(μ, Σ) and the exact ε̂ = σ V⁻¹(x_τ − m μ), V = m²Σ + σ²I:
    z − ε̂ = (I − σ²V⁻¹) z − σ m V⁻¹(x − μ), so E_z ‖A(z − ε̂)‖² = ‖A σ m V⁻¹(x − μ)‖²
    + [(I − σ²V⁻¹)²]_bb. Monte Carlo over 40,000 z against that, for two classes."""
    orc, n, tau = _oracle(), 40_000, 0.4
    x = torch.tensor([[0.3, 0.5]], dtype=F64).expand(n, 2)
    con = tasks.inpainting_constraint(x, MASK2)
    noise = torch.randn(1, n, 2, generator=_gen(1), dtype=F64)
    co = coefficients(SDE_, tau)
    for c in (0, 1):
        got = ci.known_denoising_error(orc, SDE_, con, x, noise, times=(tau,),
                                       y=torch.full((n,), c))
        V = co.m**2 * COV + co.sigma**2 * torch.eye(2, dtype=F64)
        Vi = torch.linalg.inv(V)
        bias = co.sigma * co.m * Vi @ (x[0] - MEANS[c])
        R = torch.eye(2, dtype=F64) - co.sigma**2 * Vi
        want = bias[1] ** 2 + (R @ R)[1, 1]
        se = float(got.std()) / math.sqrt(n)
        assert abs(float(got.mean()) - float(want)) < 4 * se, (c, float(got.mean()), float(want))
    # class 1's mean is closer to b = 0.5: its error is the smaller one
    e0, e1 = (float(ci.known_denoising_error(orc, SDE_, con, x, noise, times=(tau,),
                                             y=torch.full((n,), c)).mean()) for c in (0, 1))
    assert e1 < e0


def test_the_chosen_class_follows_the_exact_posterior_of_the_known_coordinate():
    """b drawn from the data; the exact p(c | b) ∝ N(b; μ_c,b, Σ_bb) is known. Where one class
    has posterior > 0.9 the method must pick it nearly always (measured 0.99); a method that
    scored the wrong label, or the missing coordinate, or picked at random, fails."""
    orc, n = _oracle(), 400
    x, lab = orc.sample(n, generator=_gen(2), return_labels=True)
    con = tasks.inpainting_constraint(_known(x[:, 1]), MASK2)
    info = {}
    out = ci.projection_by_class(orc, SDE_, con, num_classes=3, steps=8, generator=_gen(3),
                                 info=info)
    logp = torch.stack([-0.5 * (x[:, 1] - MEANS[c, 1]) ** 2 / COV[1, 1] for c in range(3)], 1)
    post = torch.softmax(logp, 1)
    sure = post.max(1).values > 0.9
    agree = (info["chosen"] == post.argmax(1))[sure].double().mean()
    assert sure.sum() > 150 and agree > 0.95, (int(sure.sum()), float(agree))
    assert float((info["chosen"] == lab).double().mean()) > 0.8
    assert torch.equal(out[:, 1], x[:, 1])
    assert info["nfe"] == 3 * (8 + len(ci.DEFAULT_CLASS_TIMES)) and info["grad_nfe"] == 0


def test_projection_by_class_is_an_independent_rerun_of_its_definition():
    """The scoring noise is drawn first, then every class's projection completion starts from
    the same generator state; the output is, per sample, the candidate of the class with the
    smallest known-pixel error E(x^(c), c)."""
    orc, n, steps, times = _oracle(), 60, 5, (0.3, 0.5)
    con = tasks.inpainting_constraint(_known(torch.linspace(-1.5, 2.5, n)), MASK2)
    info = {}
    out = ci.projection_by_class(orc, SDE_, con, num_classes=3, steps=steps, times=times,
                                 generator=_gen(5), info=info)
    g = _gen(5)
    noise = torch.randn(len(times), n, 2, generator=g, dtype=F64)
    state = g.get_state()
    cands, errs = [], []
    for c in range(3):
        g.set_state(state)
        y = torch.full((n,), c)
        cands.append(inpainting.ddnm(orc, SDE_, con, steps=steps, eta=0.5, y=y, generator=g))
        errs.append(ci.known_denoising_error(orc, SDE_, con, cands[-1], noise, times=times, y=y))
    errs = torch.stack(errs)
    pick = torch.stack(cands)[errs.argmin(0), torch.arange(n)]
    torch.testing.assert_close(out, pick, rtol=0, atol=0)
    torch.testing.assert_close(info["errors"], errs, rtol=0, atol=0)
    assert len(set(errs.argmin(0).tolist())) == 3  # the choice really differs per sample
    assert not torch.equal(cands[0], cands[1])  # the label changes the completion
    assert info["nfe"] == 3 * (steps + len(times)) and info["classes"] == 3


def test_class_candidates_share_the_random_numbers():
    """With a label-blind model every class's completion is the same (common random numbers)."""
    orc = _oracle()
    blind = lambda x, t, y: orc(x, t)  # noqa: E731
    con = tasks.inpainting_constraint(_known([0.1, 1.2, -0.4]), MASK2)
    info = {}
    cands = ci.class_candidates(blind, SDE_, con, num_classes=4, steps=6, generator=_gen(6),
                                info=info)
    assert cands.shape == (4, 3, 2) and info["nfe"] == 24
    for c in range(1, 4):
        assert torch.equal(cands[c], cands[0])


def test_through_tasks_and_bad_inputs():
    orc = _oracle()
    k = _known([0.5, -0.5, 1.5])
    a = tasks.inpaint(orc, SDE_, k, MASK2, steps=3, num_classes=3, generator=_gen(7))
    b = tasks.inpaint(orc, SDE_, k, MASK2, "projection_by_class", steps=3, num_classes=3,
                      generator=_gen(7))
    assert torch.equal(a, b) and torch.equal(a[:, 1], k[:, 1])
    assert tasks.default_inpaint_method(3) == tasks.DEFAULT_INPAINT_METHOD == "projection_by_class"
    assert tasks.default_inpaint_method(None) == tasks.UNCONDITIONAL_INPAINT_METHOD
    assert tasks.default_inpaint_steps() == 10
    con = tasks.inpainting_constraint(k, MASK2)
    with pytest.raises(ValueError, match="y must be None"):
        ci.projection_by_class(orc, SDE_, con, num_classes=3, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        ci.projection_by_class(orc, SDE_, con, num_classes=1)
    with pytest.raises(ValueError, match="times"):
        ci.projection_by_class(orc, SDE_, con, num_classes=3, times=(0.0, 0.5))
    with pytest.raises(TypeError, match="zeta"):
        ci.projection_by_class(orc, SDE_, con, num_classes=3, zeta=0.5)
    with pytest.raises(ValueError, match="noise must have shape"):
        ci.known_denoising_error(orc, SDE_, con, k, torch.zeros(1, 3, 2, dtype=F64),
                                 times=(0.2, 0.4))
    with pytest.raises(TypeError, match="num_classes applies to method='projection_by_class'"):
        tasks.inpaint(orc, SDE_, k, MASK2, "projection", num_classes=3)


def test_model_inpaint_by_class_and_its_fallbacks():
    from diffusion_lab.classifier import classifier_data
    from diffusion_lab.model import GenerativeModel

    model = GenerativeModel.load("data/checkpoints/mnist_cond")
    x, _ = classifier_data("test")
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1
    info = {}
    out = model.inpaint(x[:2], mask, steps=1, seed=3, info=info, times=(0.5,))
    assert info["classes"] == 10 and info["nfe"] == 10 * (1 + 1)
    assert torch.equal(out[..., :14, :], x[:2, :, :14, :])
    with_labels = {}
    model.inpaint(x[:2], mask, steps=1, seed=3, labels=[1, 2], info=with_labels)
    assert with_labels["candidates"] == 6  # the class is given: the unconditional default
    with pytest.raises(ValueError, match="chooses the class itself"):
        model.inpaint(x[:2], mask, "projection_by_class", steps=1, labels=[1, 2])
