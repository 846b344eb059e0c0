"""Bad inputs to the samplers' own options, ``sample``'s dispatch and ``GenerativeModel.generate``
that used to pass silently (an option without effect, a truthy string taken as True, a float64
network output turning a float32 run into float64, a [2, 2] label tensor flattened) or failed
with an error that did not name the argument (``float()``'s message for ``s_tmax``, Python's
``OverflowError`` for a huge DDIM η, ``sample() got multiple values``). Each row failed before
the fix it names; every refusal names the argument (``match``)."""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import tiny_conditional_model

from diffusion_lab.samplers import (
    COMMON_OPTIONS,
    SAMPLERS,
    check_arguments,
    method_options,
    sample,
)
from diffusion_lab.sde import VPSDE


def eps_half(x, t):
    return 0.5 * x


def _sample(method, **opts):
    steps = opts.pop("steps", 6)
    return sample(eps_half, VPSDE(), (4, 2), method=method, steps=steps,
                  generator=torch.Generator().manual_seed(0), **opts)


OPTIONS = [  # (method, options, error, match): refused before any network call
    # a value Python's own float()/pow reported without the argument's name
    ("ddim", {"eta": 1e300}, ValueError, r"eta=1e\+300 is too large for step 0"),
    ("edm", {"s_churn": 1.0, "s_tmax": "abc"}, TypeError, "s_tmax must be a number, got str"),
    ("edm", {"s_churn": 1.0, "s_tmax": None}, TypeError, "s_tmax must be a number, got NoneType"),
    # accepted silently before
    ("edm", {"s_churn": 1.0, "s_tmax": True}, TypeError, "s_tmax must be a number, got bool"),
    ("edm", {"s_churn": 1.0, "s_tmax": "inf"}, TypeError, "s_tmax must be a number, got str"),
    ("edm", {"s_churn": 1.0, "s_tmax": float("nan")}, ValueError,
     r"s_tmax must be >= 0 \(inf allowed\), got nan"),
    ("exponential_integrator", {"stochastic": 0}, TypeError,
     "stochastic must be True or False, got int"),
    ("exponential_integrator", {"stochastic": "no"}, TypeError,
     "stochastic must be True or False, got str"),
    ("ddim", {"denoise": "yes"}, TypeError, "denoise must be True or False, got str"),
    ("unipc", {"denoise": 1}, TypeError, "denoise must be True or False, got int"),
    ("restart", {"denoise": None}, TypeError, "denoise must be True or False, got NoneType"),
    ("dpm_solver", {"progress": 1}, TypeError, "progress must be True or False, got int"),
    # an option that would have had no effect
    ("edm", {"s_noise": 1.007}, ValueError, "s_noise, s_tmin and s_tmax shape the churn"),
    ("edm", {"s_tmin": 0.05, "s_tmax": 1.0}, ValueError, "with s_churn=0 they have no effect"),
    ("probability_flow", {"solver": "rk45", "grid": "karras"}, ValueError,
     "grid is for the fixed-step solvers .*rk45 chooses its own steps"),
    ("probability_flow", {"solver": "heun", "rtol": 1e-3}, ValueError,
     "rtol and atol are for solver='rk45'; solver='heun'"),
    ("probability_flow", {"solver": "rk4", "atol": -1.0}, ValueError, "rtol and atol are for"),
    ("unipc", {"order": 1, "corrector": False, "variant": "bh1"}, ValueError,
     "variant='bh1' has no effect with order=1 and corrector=False"),
    ("restart", {"restarts": 0, "restart_steps": 4}, ValueError,
     "restart_steps=4 has no effect with restarts=0"),
    # the entry of t_restart named
    ("restart", {"t_restart": (0.1, float("nan"))}, ValueError,
     r"t_restart\[1\] must be finite and > 0, got nan"),
    ("restart", {"t_restart": ("0.1", 0.3)}, TypeError, r"t_restart\[0\] must be a number"),
]


@pytest.mark.parametrize("method,opts,error,match", OPTIONS,
                         ids=[f"{m}-{'-'.join(map(str, o))}" for m, o, _, _ in OPTIONS])
def test_sampler_options_are_refused_naming_the_argument(method, opts, error, match):
    calls = []

    def eps(x, t):
        calls.append(1)
        return 0.5 * x

    x1 = VPSDE().prior_sample((4, 2), generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=match):
        SAMPLERS[method](eps, VPSDE(), x1, steps=6, **opts)
    with pytest.raises(error, match=match):  # and through sample()
        _sample(method, **opts)
    assert not calls  # refused before the first network call


@pytest.mark.parametrize("method,opts", [
    ("ddim", {"order": 2}), ("unipc", {"eta": 0.5}), ("restart", {"s_churn": 1.0}),
    ("edm", {"solver": "rk45"}), ("euler_maruyama", {"snr": 0.1}),
])
def test_an_option_a_method_does_not_take_is_named_with_what_it_takes(method, opts):
    key = next(iter(opts))
    own = ", ".join(method_options(method)) or r"\(none\)"
    with pytest.raises(TypeError, match=rf"method '{method}' takes no option '{key}'; its own "
                       rf"options: {own}; every method takes: t_end, grid"):
        _sample(method, **opts)


def test_method_options_are_the_signature_beyond_the_shared_one():
    assert method_options("ddim") == ("eta",)
    assert method_options("unipc") == ("order", "corrector", "variant")
    assert method_options("restart") == ("t_restart", "restarts", "restart_steps")
    assert method_options("euler_maruyama") == ()
    assert COMMON_OPTIONS == ("t_end", "grid", "y", "callback", "generator", "progress",
                              "denoise", "info")
    for method in SAMPLERS:  # every sampler takes the shared options
        _sample(method, t_end=0.01, grid="uniform", y=None, callback=None, progress=False,
                denoise=True, info={})


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_a_network_output_that_would_change_the_dtype_is_refused(method):
    """ε̂ in float64 for a float32 x used to promote the whole run: a float64 result for a
    float32 request. Integer outputs and other devices are refused the same way."""
    with pytest.raises(TypeError, match=r"eps_model must return a floating tensor on x's "
                       r"device that keeps x's dtype \(torch.float32 on cpu\), got torch.float64"):
        sample(lambda x, t: (0.5 * x).double(), VPSDE(), (4, 2), method=method, steps=4,
               generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("out,got", [
    (lambda x: torch.zeros(x.shape, dtype=torch.long), "torch.int64 on cpu"),
    (lambda x: torch.zeros(x.shape, device="meta"), "torch.float32 on meta"),
])
def test_integer_or_other_device_network_outputs_are_refused(out, got):
    with pytest.raises(TypeError, match=f"eps_model must return .* got {got}"):
        sample(lambda x, t: out(x), VPSDE(), (4, 2), method="ddim", steps=3)


def test_a_lower_precision_network_output_keeps_the_run_in_x_dtype():
    """bfloat16 ε̂ (autocast) on a float32 x keeps float32: accepted, as before."""
    out = sample(lambda x, t: (0.5 * x).bfloat16(), VPSDE(), (4, 2), method="ddim", steps=3)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_valid_options_still_give_the_same_numbers():
    """The checks change no output: explicit defaults equal omitted ones, bitwise."""
    for method, opts in [("edm", {"s_noise": 1.0, "s_tmin": 0.0, "s_tmax": float("inf")}),
                         ("probability_flow", {"solver": "rk45", "rtol": 1e-5, "atol": 1e-5}),
                         ("probability_flow", {"solver": "heun", "rtol": 1e-5}),
                         ("unipc", {"order": 1, "corrector": False, "variant": "bh2"}),
                         ("ddim", {"eta": 0.5, "denoise": False}),
                         ("exponential_integrator", {"stochastic": True})]:
        base = {k: v for k, v in opts.items() if k in ("solver", "order", "corrector", "eta")}
        assert torch.equal(_sample(method, **opts), _sample(method, **base)), method


# -- check_arguments: a sampler's own checks without sampling -----------------------------------
def test_check_arguments_raises_what_the_sampler_raises_and_nothing_else():
    vp = VPSDE()
    for method in SAMPLERS:
        assert check_arguments(method, vp, (1, 2), 3 if method == "restart" else 1) is None
    with pytest.raises(ValueError, match="restart needs steps >= 2"):
        check_arguments("restart", vp, (1, 2), 1)
    with pytest.raises(ValueError, match=r"t_hi=0.3 must exceed the snapped t_lo=0.3046"):
        check_arguments("restart", vp, (1, 2), 2)
    with pytest.raises(TypeError, match="takes no option 'eta'"):
        check_arguments("unipc", vp, (1, 2), 5, eta=0.3)
    with pytest.raises(ValueError, match="unknown method"):
        check_arguments("nope", vp, (1, 2), 5)


# -- GenerativeModel.generate ------------------------------------------------------------------
_cond = tiny_conditional_model


GENERATE = [
    (dict(generator=torch.Generator()), TypeError, "generate sets generator itself .*seed="),
    (dict(dtype=torch.float64), TypeError, "generate sets dtype itself"),
    (dict(device="cpu"), TypeError, "generate sets device itself"),
    (dict(y=torch.zeros(4, dtype=torch.long)), TypeError, "generate sets y itself .*labels="),
    (dict(shape=(4, 2)), TypeError, "generate sets shape itself"),
    (dict(clip="no"), TypeError, "clip must be True or False, got str"),
    (dict(progress=None), TypeError, "progress must be True or False, got NoneType"),
    (dict(labels=torch.zeros(2, 2, dtype=torch.long)), ValueError,
     r"labels must be a 1-D tensor \[n\], got shape \[2, 2\]"),
    (dict(method="ddim", order=2), TypeError, "method 'ddim' takes no option 'order'"),
    (dict(method="edm", s_churn=1.0, s_tmax=None), TypeError, "s_tmax must be a number"),
]


@pytest.mark.parametrize("kwargs,error,match", GENERATE, ids=[str(k) for k, _, _ in GENERATE])
def test_generate_refuses_with_the_argument_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        _cond().generate(**dict(dict(n=4, steps=3), **kwargs))
