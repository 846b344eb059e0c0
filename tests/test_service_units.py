"""The service's pieces in-process: request checks, PNG coding, the LRU cache, the scheduler."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from diffusion_lab.service import imaging
from diffusion_lab.service.catalog import ModelCache, discover
from diffusion_lab.service.jobs import Busy, Scheduler
from diffusion_lab.service.schemas import (
    GenerateRequest,
    InpaintRequest,
    RequestError,
    check_against,
    field_of,
)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


@pytest.fixture(scope="module")
def cards():
    return discover(CHECKPOINTS)


def test_catalog_lists_generative_checkpoints_with_their_stored_shapes(cards):
    # the feature classifier is not a generative checkpoint and is not offered
    assert "mnist_classifier" not in cards
    assert cards["mnist_cond"].data_shape == (1, 28, 28) and cards["mnist_cond"].num_classes == 10
    assert cards["colour_mnist"].data_shape == (3, 28, 28)
    assert cards["colour_mnist"].num_classes is None
    assert cards["toy_two_moons"].data_shape == (2,) and cards["toy_two_moons"].kind == "points"
    assert cards["colour_mnist"].tasks == ("generate", "inpaint", "colorize")
    assert cards["mnist_cond"].tasks == ("generate", "inpaint")
    assert cards["toy_two_moons"].tasks == ("generate",)
    assert cards["mnist_cond"].sde.startswith("VPSDE(")


@pytest.mark.parametrize("body, field", [
    ({"model": "mnist_cond", "n": 17}, "n"),
    ({"model": "mnist_cond", "n": 2, "labels": [1, 10]}, "labels[1]"),
    ({"model": "mnist_cond", "labels": 10}, "labels"),
    ({"model": "mnist_cond", "n": 3, "labels": [1, 2]}, "labels"),
    ({"model": "colour_mnist", "labels": 1}, "labels"),
    ({"model": "mnist_cond", "guidance": 2.0}, "guidance"),
    ({"model": "colour_mnist", "guidance": 2.0}, "guidance"),
    # the sampler's own refusals, made before admission (they were a 500 from the worker)
    ({"model": "toy_two_moons", "method": "restart", "steps": 1}, "steps"),
    ({"model": "mnist_cond", "method": "restart", "steps": 2}, "steps"),
])
def test_model_dependent_checks_name_the_field(cards, body, field):
    request = GenerateRequest.model_validate(body)
    with pytest.raises(RequestError) as err:
        check_against(request, cards[body["model"]], "generate", seed=0)
    assert err.value.status == 422 and err.value.field == field


def test_tasks_a_model_does_not_support_are_refused(cards):
    png = imaging.png_data_url(np.zeros((28, 28), np.uint8))
    request = InpaintRequest.model_validate({"model": "toy_two_moons", "images": [png]})
    with pytest.raises(RequestError) as err:
        check_against(request, cards["toy_two_moons"], "inpaint", seed=0)
    assert err.value.field == "model" and "inpaint" in err.value.message


def test_a_sampler_refusal_is_a_422_naming_steps_with_the_sampler_message(cards):
    request = GenerateRequest.model_validate({"model": "toy_two_moons", "method": "restart",
                                              "steps": 2})
    with pytest.raises(RequestError) as err:
        check_against(request, cards["toy_two_moons"], "generate", seed=0)
    assert err.value.message.startswith("method 'restart' cannot run steps=2 on model "
                                        "'toy_two_moons': t_restart: t_hi=0.3 must exceed")
    png = imaging.png_data_url(np.zeros((28, 28), np.uint8))  # inpainting replaces with it too
    request = InpaintRequest.model_validate({"model": "mnist_cond", "images": [png],
                                             "method": "restart", "steps": 1})
    with pytest.raises(RequestError) as err:
        check_against(request, cards["mnist_cond"], "inpaint", seed=0)
    assert err.value.field == "steps" and "restart needs steps >= 2" in err.value.message
    request = GenerateRequest.model_validate({"model": "toy_two_moons", "method": "restart",
                                              "steps": 3})
    assert check_against(request, cards["toy_two_moons"], "generate", seed=0).steps == 3


def test_a_valid_request_becomes_a_job(cards):
    request = GenerateRequest.model_validate({"model": "mnist_cond", "n": 2, "labels": [3, 4],
                                              "guidance": 1.5, "steps": 7})
    job = check_against(request, cards["mnist_cond"], "generate", seed=11)
    assert (job.n, job.labels, job.guidance, job.steps, job.seed) == (2, [3, 4], 1.5, 7, 11)
    assert job.method == "dpm_solver"


@pytest.mark.parametrize("body, field", [
    ({"model": "x", "n": "4"}, "n"), ({"model": "x", "n": True}, "n"), ({"model": "x", "n": 2.5}, "n"),
    ({"model": "x", "steps": 201}, "steps"), ({"model": "x", "seed": -1}, "seed"),
    ({"model": "x", "guidance": "2.0"}, "guidance"), ({"model": "x", "guidance": float("inf")}, "guidance"),
    ({"model": "x", "method": "dpm"}, "method"), ({"model": "../x"}, "model"),
    ({"model": "a/b"}, "model"), ({"model": ""}, "model"), ({}, "model"),
    ({"model": "x", "colour": 1}, "colour"), ({"model": "x", "labels": [1, "2"]}, "labels[1]"),
])
def test_schema_refuses_with_the_field_named(body, field):
    with pytest.raises(ValidationError) as err:
        GenerateRequest.model_validate_json(__import__("json").dumps(body))
    fields = {field_of(e["loc"]) for e in err.value.errors()}
    assert field in fields


def test_field_of_drops_union_tags():
    assert field_of(("body", "labels", "list[constrained-int]", 2)) == "labels[2]"
    assert field_of(("body", "n")) == "n" and field_of(("body",)) == "body"


def test_png_round_trip_is_exact_for_grey_and_rgb():
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (3, 28, 28), generator=g).float()
    x = levels / 127.5 - 1.0  # exactly representable pixel levels
    for c in (1, 3):
        url = imaging.images_to_data_urls(x[None, :c])[0]
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert img.size == (28, 28) and img.mode == ("L" if c == 1 else "RGB")
        back = imaging.decode_png(url, (c, 28, 28), "images[0]")
        assert torch.equal(((back + 1) * 127.5).round(), levels[:c])


def test_decode_png_refuses_wrong_size_and_garbage():
    small = imaging.png_data_url(np.zeros((14, 14), np.uint8))
    with pytest.raises(RequestError, match="28x28") as err:
        imaging.decode_png(small, (1, 28, 28), "images[2]")
    assert err.value.field == "images[2]"
    for bad in ("data:image/png;base64,!!!", "data:image/png;base64,aGVsbG8=", "hello"):
        with pytest.raises(RequestError) as err:
            imaging.decode_png(bad, (1, 28, 28), "mask")
        assert err.value.field == "mask" and err.value.status == 422


def test_scatter_puts_each_point_at_its_pixel():
    pts = torch.tensor([[0.0, 0.0], [-2.9, 2.9], [2.0, -1.0], [50.0, 0.0]])
    url = imaging.scatter_data_url(pts)
    a = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    scale = (imaging.PLOT_SIZE - 1) / (2 * imaging.PLOT_EXTENT)
    dot = np.array([31, 90, 160])
    for x, y in pts[:3].tolist():
        col = int(np.floor((x + imaging.PLOT_EXTENT) * scale))
        row = int(np.floor((imaging.PLOT_EXTENT - y) * scale))
        assert (a[row, col] == dot).all(), (x, y)
    # three points of 2x2 pixels are drawn, the one outside the window is not
    assert int((a == dot).all(-1).sum()) == 12


def test_mask_presets_and_png_masks():
    m = imaging.preset_mask("right", 28, 28)
    assert m.shape == (1, 1, 28, 28) and m[..., :14].sum() == 0 and m[..., 14:].min() == 1
    assert imaging.preset_mask("center", 28, 28).sum() == 14 * 14
    drawn = np.zeros((28, 28), np.uint8)
    drawn[:, :5] = 255
    drawn[0, 27] = 127  # not light enough: kept
    m = imaging.decode_mask(imaging.png_data_url(drawn), 28, 28)
    assert m.sum() == 28 * 5 and m[0, 0, 0, 27] == 0


def test_lru_cache_evicts_the_least_recently_used_and_loads_once(cards):
    loads = []

    def loader(card):
        loads.append(card.name)
        time.sleep(0.05)
        return object()

    cache = ModelCache(cards, 2, loader=loader)
    with ThreadPoolExecutor(8) as pool:  # 8 simultaneous first uses → one load
        got = list(pool.map(lambda _: cache.get("mnist_cond"), range(8)))
    assert loads == ["mnist_cond"] and all(m is got[0] for m in got)
    cache.get("toy_two_moons")
    cache.get("mnist_cond")  # now the most recent
    cache.get("colour_mnist")  # evicts toy_two_moons
    stats = cache.stats()
    assert stats["loaded"] == ["mnist_cond", "colour_mnist"] and stats["evictions"] == 1
    cache.get("toy_two_moons")
    assert loads == ["mnist_cond", "toy_two_moons", "colour_mnist", "toy_two_moons"]
    with pytest.raises(ValueError, match="max_models"):
        ModelCache(cards, 0)


def test_scheduler_admits_concurrency_plus_queue_then_refuses():
    sched = Scheduler(concurrency=1, queue_size=2, threads=1)
    gate, started = threading.Event(), threading.Event()

    def job(i):
        started.set()
        gate.wait(5)
        return i

    try:
        futures = [sched.submit(job, i) for i in range(3)]
        assert started.wait(5)
        with pytest.raises(Busy) as err:
            sched.submit(job, 3)
        assert err.value.retry_after >= 1
        assert sched.stats()["running"] == 1 and sched.stats()["queued"] == 2
        futures[2].cancel()  # a queued job given up frees its place at once
        sched.submit(job, 4)
        gate.set()
        assert [f.result(5) for f in futures[:2]] == [0, 1]
        deadline = time.monotonic() + 5
        while sched.stats()["queued"] + sched.stats()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        s = sched.stats()
        assert (s["running"], s["queued"], s["completed"], s["rejected"], s["cancelled"]) == \
            (0, 0, 3, 1, 1)
    finally:
        gate.set()
        sched.shutdown()


def test_serve_subcommand_is_wired_and_imports_the_service_lazily():
    import subprocess
    import sys

    from diffusion_lab.__main__ import build_parser, cmd_serve

    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "8123",
                                      "--checkpoints", "some/dir", "--concurrency", "2"])
    assert (args.host, args.port, args.checkpoints, args.concurrency) == \
        ("127.0.0.1", 8123, "some/dir", 2)
    assert args.func is cmd_serve and args.queue_size == 8 and args.cache_size == 2
    # building the CLI (train / sample) does not import the web stack
    code = ("import sys, diffusion_lab.__main__ as m; m.build_parser(); "
            "print(any(k.split('.')[0] in ('fastapi', 'uvicorn') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_checkpoints_folder_lists_only_generative_checkpoints_with_safe_names(tmp_path):
    import shutil

    from diffusion_lab.service import serve

    shutil.copytree(CHECKPOINTS / "toy_two_moons", tmp_path / "moons")
    shutil.copytree(CHECKPOINTS / "toy_two_moons", tmp_path / "has space")  # not a safe name
    shutil.copytree(CHECKPOINTS / "mnist_classifier", tmp_path / "classifier")
    (tmp_path / "empty").mkdir()
    cards = discover(tmp_path)
    assert list(cards) == ["moons"] and cards["moons"].path == tmp_path / "moons"
    with pytest.raises(SystemExit, match="does not exist"):
        serve(port=1, checkpoints=tmp_path / "missing")
    with pytest.raises(SystemExit, match="no diffusion_lab checkpoints"):
        serve(port=1, checkpoints=tmp_path / "empty")
    with pytest.raises(SystemExit, match="concurrency"):
        serve(port=1, checkpoints=tmp_path, concurrency=0)


@pytest.mark.parametrize("method", ["unipc", "restart"])
def test_every_registered_sampler_is_a_valid_method_and_runs(cards, method):
    """The request schema's method Literal is built from SAMPLERS, so the samplers registered
    later (unipc, restart) validate and run: a toy request, executed in-process, reports the
    method and the sampler's own NFE (restart: 6 main steps + one 2-step segment), and its points
    equal ``model.generate`` with the same settings."""
    from diffusion_lab.samplers import SAMPLERS
    from diffusion_lab.service.jobs import Work, execute

    assert set(GenerateRequest.model_json_schema()["properties"]["method"]["enum"]) == set(SAMPLERS)
    request = GenerateRequest.model_validate_json(
        f'{{"model": "toy_two_moons", "n": 3, "method": "{method}", "steps": 6, "seed": 5}}')
    job = check_against(request, cards["toy_two_moons"], "generate", seed=request.seed)
    assert job.method == method and job.seed == 5
    cache = ModelCache(cards, 1)
    out = execute(Work(job), cache, threading.Event())
    assert out["method"] == method and out["nfe"] == {"unipc": 6, "restart": 8}[method]
    expected = cache.get("toy_two_moons").generate(3, method=method, steps=6, seed=5)
    assert torch.equal(torch.tensor(out["points"], dtype=torch.float64), expected.double())
