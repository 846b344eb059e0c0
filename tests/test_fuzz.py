"""Property-based fuzzing (hypothesis) of the package's entry points: whatever is passed, a
call either succeeds — and then its result has the documented properties — or fails with the
package's own clear error: a ValueError / TypeError / FloatingPointError /
FileNotFoundError raised by diffusion_lab code (not by torch, json or pydantic deep inside),
with a one-line message. Never a KeyError, AttributeError, IndexError, OverflowError,
RecursionError or RuntimeError.

Fuzzed: ``sample`` (shape, method, steps, dtype, device, generator, grid, t_end),
``GenerativeModel.generate`` (n, labels, guidance, seed, method, steps), ``time_grid``
(steps, t_end, kind, SDE parameters) and checkpoint configs (any JSON value put at any place
of a valid ``config.json``, keys removed or added, arbitrary bytes).
"""

from __future__ import annotations

import json
import math
import shutil
import traceback

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from diffusion_lab._cli import raised_by_package
from diffusion_lab.checkpoint import load_checkpoint, save_checkpoint
from diffusion_lab.model import GenerativeModel
from diffusion_lab.nets import MLP
from diffusion_lab.samplers import SAMPLERS, sample
from diffusion_lab.sde import VESDE, VPSDE, SubVPSDE
from diffusion_lab.timegrid import GRIDS, time_grid

CLEAR = (ValueError, TypeError, FloatingPointError, FileNotFoundError)
FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def clear_or_ok(call):
    """Run ``call``; a failure must be the package's own clear error. Returns the result or
    the error."""
    try:
        out = call()
    except CLEAR as err:
        assert raised_by_package(err), f"{type(err).__name__} raised outside diffusion_lab: {err}"
        last = traceback.extract_tb(err.__traceback__)[-1]
        assert last.line.lstrip().startswith("raise"), (  # raised on purpose, not by math.log
            f"{type(err).__name__} {err!r} came from {last.filename}:{last.lineno}: {last.line}")
        msg = str(err)
        assert msg and "\n" not in msg, repr(msg)
        event(f"refused: {type(err).__name__}")
        return err
    event("accepted")
    return out


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                 st.text(max_size=4), st.lists(st.integers(-1, 3), max_size=3))
small_int = st.integers(-2, 5)


def corrupted(valid: dict, bad: dict):
    """Valid keyword arguments with 0, 1 or 2 of them replaced by a bad value: the success
    path is exercised about a third of the time, each refusal on its own or combined."""
    @st.composite
    def build(draw):
        kwargs = {k: draw(v) for k, v in valid.items()}
        names = draw(st.lists(st.sampled_from(sorted(bad)), max_size=2, unique=True))
        for k in names:
            kwargs[k] = draw(bad[k])
        return kwargs
    return build()


SAMPLE_VALID = dict(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 3)), method=st.sampled_from(sorted(SAMPLERS)),
    steps=st.integers(1, 4), dtype=st.sampled_from([torch.float32, torch.float64]),
    device=st.sampled_from(["cpu", torch.device("cpu")]), generator=st.just("cpu"),
    grid=st.sampled_from(GRIDS), t_end=st.one_of(st.none(), st.floats(1e-3, 0.5)),
    sde=st.sampled_from([VPSDE, SubVPSDE, VESDE]))
SAMPLE_BAD = dict(
    shape=st.one_of(st.lists(st.one_of(st.integers(-2, 0), st.floats(0, 4), st.text(max_size=2),
                                       st.booleans()), min_size=1, max_size=3).map(tuple), junk),
    method=junk, steps=st.one_of(st.integers(-2, 0), junk),
    dtype=st.sampled_from([torch.int64, torch.bool, None, "float32", torch.complex64]),
    device=st.sampled_from(["bogus", "cuda:7", 3, "meta:0"]),
    generator=st.sampled_from([42, "x", 1.5]), grid=junk,
    t_end=st.one_of(st.floats(allow_nan=True, allow_infinity=True), junk))


@FUZZ
@given(kw=corrupted(SAMPLE_VALID, SAMPLE_BAD))
def test_fuzz_sample(kw):
    gen = torch.Generator().manual_seed(0) if kw["generator"] == "cpu" else kw["generator"]
    shape, dtype = kw["shape"], kw["dtype"]
    out = clear_or_ok(lambda: sample(lambda x, t: torch.zeros_like(x), kw["sde"](), shape,
                                     method=kw["method"], steps=kw["steps"], generator=gen,
                                     dtype=dtype, device=kw["device"], grid=kw["grid"],
                                     t_end=kw["t_end"]))
    if isinstance(out, torch.Tensor):
        assert out.shape == tuple(shape) and out.dtype == (dtype or torch.float32)
        assert bool(torch.isfinite(out).all())


_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        g = torch.Generator().manual_seed(0)
        net = MLP(hidden=8, layers=1, num_classes=3)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        _MODEL = GenerativeModel(net, "vp")
    return _MODEL


GENERATE_VALID = dict(
    n=st.integers(1, 5), labels=st.one_of(st.none(), st.integers(0, 2)),
    guidance=st.one_of(st.none(), st.floats(-3, 5)), seed=st.integers(0, 2**64 - 1),
    method=st.sampled_from(sorted(SAMPLERS)), steps=st.integers(1, 3))
GENERATE_BAD = dict(
    n=st.one_of(st.integers(-1, 0), junk),
    labels=st.one_of(
        st.integers(-2, -1), st.integers(3, 5), st.booleans(), st.floats(allow_nan=True),
        st.text(max_size=2),
        st.lists(st.one_of(st.integers(-1, 3), st.floats(0, 3), st.booleans()), max_size=5),
        st.lists(st.integers(-1, 3), min_size=1, max_size=5).flatmap(lambda v: st.sampled_from(
            [torch.tensor(v), torch.tensor(v, dtype=torch.float32), torch.tensor(v).bool()]))),
    guidance=st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda g: not math.isfinite(g)), st.text(max_size=2), st.booleans()),
    seed=st.one_of(st.integers(-5, -1), st.integers(2**64, 2**70), st.floats(allow_nan=True),
                   junk),
    method=junk, steps=st.one_of(st.integers(-1, 0), junk))


@FUZZ
@given(kw=corrupted(GENERATE_VALID, GENERATE_BAD))
def test_fuzz_generate(kw):
    def run():
        return _model().generate(kw["n"], method=kw["method"], steps=kw["steps"],
                                 seed=kw["seed"], labels=kw["labels"], guidance=kw["guidance"])

    out = clear_or_ok(run)
    if isinstance(out, torch.Tensor):
        assert out.shape == (kw["n"], 2) and bool(torch.isfinite(out).all())
        assert torch.equal(out, run())  # bitwise reproducible


@FUZZ
@given(steps=st.one_of(st.integers(-2, 3000), junk),
       t_end=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), junk,
                       st.floats(0, 1).map(torch.tensor)),
       kind=st.one_of(st.sampled_from(GRIDS), junk),
       sde=st.one_of(st.sampled_from([VPSDE(), SubVPSDE(), VESDE()]),
                     st.builds(lambda lo, hi: (lo, hi), st.floats(1e-6, 1e3), st.floats(1e-3, 1e6))))
def test_fuzz_time_grid(steps, t_end, kind, sde):
    if isinstance(sde, tuple):  # VE parameters first (their own checks)
        sde = clear_or_ok(lambda: VESDE(sigma_min=sde[0], sigma_max=sde[1]))
        if isinstance(sde, Exception):
            return
    grid = clear_or_ok(lambda: time_grid(sde, steps, t_end, kind))
    if isinstance(grid, torch.Tensor):
        end = sde.t_min if t_end is None else float(t_end)
        assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
        assert grid[0] == 1.0 and grid[-1] == end and bool((grid[1:] < grid[:-1]).all())


# -- checkpoint configs ----------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
              st.sampled_from(["MLP", "UNet", "VPSDE", "VESDE", "LinearSchedule", "os.system",
                               "../model.safetensors", "/etc/passwd", "ema.safetensors"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    net = MLP(hidden=8, layers=1, num_classes=2)
    path = save_checkpoint(root / "ck", net, VPSDE(), ema=net, step=3, data_shape=(2,),
                           class_names=["a", "b"])
    return path, json.loads((path / "config.json").read_text())


@st.composite
def mutated_configs(draw, config):
    cfg = json.loads(json.dumps(config))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(cfg))
        where = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if not where:
            cfg = draw(json_values) if action == "set" else cfg
            continue
        parent = cfg
        for k in where[:-1]:
            parent = parent[k]
        if not isinstance(parent, (dict, list)):
            continue
        if action == "set":
            parent[where[-1]] = draw(json_values)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        if not isinstance(cfg, dict):
            break
    return cfg


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_checkpoint_config(folder, data):
    path, config = folder
    cfg = data.draw(mutated_configs(config))
    text = json.dumps(cfg, allow_nan=True)  # NaN / Infinity reach the parser on purpose
    try:
        (path / "config.json").write_text(text)
        out = clear_or_ok(lambda: load_checkpoint(path))
        if not isinstance(out, Exception):  # it loaded: then it is a sane model
            model = GenerativeModel.load(path) if out.data.get("shape") else None
            if model is not None and isinstance(clear_or_ok(lambda: model), GenerativeModel):
                x = clear_or_ok(lambda: model.generate(2, steps=2))
                assert not isinstance(x, torch.Tensor) or bool(torch.isfinite(x).all())
    finally:
        (path / "config.json").write_text(json.dumps(config))


@FUZZ
@given(blob=st.one_of(st.binary(max_size=64),
                      st.builds(lambda n, body: n.to_bytes(8, "little") + body,
                                st.integers(0, 2**64 - 1), st.binary(max_size=40)),
                      st.builds(lambda h: len(h).to_bytes(8, "little") + h,
                                st.text(max_size=60).map(str.encode))),
       name=st.sampled_from(["config.json", "model.safetensors", "ema.safetensors",
                             "complete.json"]))
def test_fuzz_checkpoint_bytes(folder, tmp_path, blob, name):
    path = shutil.copytree(folder[0], tmp_path / f"ck-{abs(hash((blob, name)))}")
    (path / name).write_bytes(blob)
    out = clear_or_ok(lambda: load_checkpoint(path))
    assert isinstance(out, Exception) or math.isfinite(float(out.net.out.weight.sum()))
    shutil.rmtree(path)
