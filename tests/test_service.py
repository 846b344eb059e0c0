"""The generation service over real HTTP: a server process on a free localhost port.

One server for the module (started once, stopped by PID at the end): the contract of
issue 13, every class of client error (always a 4xx JSON body naming the field, never a
500), streaming, inpaint / colorize, overload (only 200 / 503 + Retry-After, healthy after),
the LRU cache and a bounded soak with the server's memory measured before and after.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from diffusion_lab import GenerativeModel
from diffusion_lab.classifier import load_classifier
from diffusion_lab.service.launch import ROOT, ServerProcess

CHECKPOINTS = ROOT / "data" / "checkpoints"
IMAGE_MODELS = {"mnist_cond": (1, 28, 28), "colour_mnist": (3, 28, 28)}


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--concurrency", "1", "--queue-size", "3", "--cache-size", "2") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def levels(url: str) -> np.ndarray:
    return np.asarray(decode(url)).astype(np.int64)


def wait_idle(client, timeout=30.0) -> dict:
    """Poll /api/stats until no job runs or waits (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.get("/api/stats").json()["scheduler"]
        if s["running"] == 0 and s["queued"] == 0:
            return s
        time.sleep(0.05)
    raise AssertionError(f"server still busy after {timeout} s: {s}")


def sse_events(response) -> list[tuple[str, dict]]:
    events, kind, data = [], None, ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            events.append((kind, json.loads(data)))
            kind, data = None, ""
    return events


# -- contract ----------------------------------------------------------------------------------
def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_models_report_the_checkpoints_truthfully(client):
    body = client.get("/api/models").json()
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {"mnist_cond", "mnist_cpu", "colour_mnist", "toy_two_moons",
                           "toy_swiss_roll", "toy_checkerboard", "toy_eight_gaussians"}
    for name, m in models.items():
        config = json.loads((CHECKPOINTS / name / "config.json").read_text())
        assert m["data_shape"] == config["data"]["shape"]
        assert m["num_classes"] == config["net"]["config"]["num_classes"]
        assert m["class_names"] == config["data"]["class_names"]
        for key in ("sde", "kind", "tasks"):
            assert key in m
    assert models["mnist_cond"]["num_classes"] == 10 and models["mnist_cond"]["conditional"]
    assert models["toy_two_moons"]["kind"] == "points"
    assert "dpm_solver" in body["methods"] and body["limits"]["max_images"] == 16
    assert body["limits"]["max_steps"] == 200 and body["limits"]["max_body_bytes"] == 1 << 20


def test_generate_mnist_matches_the_package_and_is_reproducible(client):
    body = {"model": "mnist_cond", "n": 4, "method": "dpm_solver", "steps": 8, "seed": 5,
            "labels": [3, 3, 3, 3], "guidance": 2.0}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["seed"] == 5 and out["nfe"] == 8 and out["seconds"] > 0
    assert len(out["images"]) == 4
    for url in out["images"]:
        img = decode(url)
        assert img.format == "PNG" and img.size == (28, 28) and img.mode == "L"
    # the same request gives the same images; the package gives them too (up to 1 grey level,
    # the server's thread count may round differently)
    again = client.post("/api/generate", json=body).json()
    assert again["images"] == out["images"]
    model = GenerativeModel.load(CHECKPOINTS / "mnist_cond")
    x = model.generate(4, method="dpm_solver", steps=8, seed=5, labels=3, guidance=2.0)
    expected = ((x[:, 0] + 1) * 127.5).round().numpy()
    got = np.stack([levels(u) for u in out["images"]])
    assert np.abs(got - expected).max() <= 1


def test_labels_reach_the_model(client):
    """Guided digits of class 7 and of class 1 are classified as such by the bundled classifier
    (a labels mix-up or a dropped label would fail this)."""
    r = client.post("/api/generate", json={"model": "mnist_cond", "n": 4, "steps": 12, "seed": 0,
                                           "labels": [7, 1, 7, 1], "guidance": 3.0})
    x = torch.stack([torch.from_numpy(levels(u)).float()[None] / 127.5 - 1 for u in r.json()["images"]])
    predicted = load_classifier().eval()(x).argmax(1).tolist()
    assert predicted == [7, 1, 7, 1]


def test_generate_points_model_returns_points_and_a_plot(client):
    r = client.post("/api/generate", json={"model": "toy_two_moons", "n": 300, "steps": 10,
                                           "seed": 1, "method": "ddim"})
    out = r.json()
    assert r.status_code == 200 and out["images"] == [] and out["kind"] == "points"
    pts = torch.tensor(out["points"], dtype=torch.float64)
    assert pts.shape == (300, 2)
    model = GenerativeModel.load(CHECKPOINTS / "toy_two_moons")
    torch.testing.assert_close(pts, model.generate(300, method="ddim", steps=10, seed=1).double(),
                               atol=1e-5, rtol=1e-5)
    assert decode(out["plot"]).size == (256, 256)


def test_no_seed_means_a_fresh_seed_that_is_returned_and_replays(client):
    a = client.post("/api/generate", json={"model": "toy_swiss_roll", "n": 20, "steps": 3}).json()
    b = client.post("/api/generate", json={"model": "toy_swiss_roll", "n": 20, "steps": 3,
                                           "seed": a["seed"]}).json()
    assert isinstance(a["seed"], int) and a["points"] == b["points"]


def test_stream_sends_a_preview_per_step_then_the_result(client):
    body = {"model": "mnist_cond", "n": 2, "steps": 6, "seed": 3, "labels": 5}
    with client.stream("POST", "/api/generate/stream", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    kinds = [k for k, _ in events]
    assert kinds == ["preview"] * 6 + ["result"]
    assert [p["step"] for _, p in events[:-1]] == list(range(1, 7))
    ts = [p["t"] for _, p in events[:-1]]
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))  # time runs from 1 towards 0
    for _, p in events[:-1]:
        assert len(p["images"]) == 2 and decode(p["images"][0]).size == (28, 28)
    plain = client.post("/api/generate", json=body).json()
    assert events[-1][1]["images"] == plain["images"]


def test_a_stream_given_up_stops_its_job(client):
    wait_idle(client)
    before = client.get("/api/stats").json()["scheduler"]["cancelled"]
    body = {"model": "mnist_cond", "n": 8, "steps": 200, "seed": 0}  # ~a minute if not stopped
    with client.stream("POST", "/api/generate/stream", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("event: preview"):
                break
    stats = wait_idle(client, timeout=20)
    assert stats["cancelled"] == before + 1


def test_inpaint_keeps_the_known_pixels_exactly(client):
    src = client.post("/api/generate", json={"model": "mnist_cond", "n": 2, "steps": 5,
                                             "seed": 2, "labels": 0}).json()["images"]
    r = client.post("/api/inpaint", json={"model": "mnist_cond", "images": src, "mask": "right",
                                          "method": "ddim", "steps": 5, "seed": 0, "labels": 8})
    assert r.status_code == 200, r.text
    out = r.json()["images"]
    for a, b in zip(src, out, strict=True):
        assert np.array_equal(levels(a)[:, :14], levels(b)[:, :14])
    changed = [not np.array_equal(levels(a)[:, 14:], levels(b)[:, 14:])
               for a, b in zip(src, out, strict=True)]
    assert any(changed)


def test_colorize_keeps_the_luminance(client):
    grey = client.post("/api/generate", json={"model": "mnist_cond", "n": 2, "steps": 5,
                                              "seed": 4, "labels": 2}).json()["images"]
    with client.stream("POST", "/api/colorize/stream",
                       json={"model": "colour_mnist", "images": grey, "steps": 5, "seed": 1,
                             "method": "ddim"}) as r:
        events = sse_events(r)
    assert [k for k, _ in events] == ["preview"] * 5 + ["result"]
    for g, c in zip(grey, events[-1][1]["images"], strict=True):
        rgb = levels(c)
        assert rgb.shape == (28, 28, 3)
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        assert np.abs(luma - levels(g)).max() <= 1.5  # equal up to 8-bit rounding of r, g, b


# -- client errors -----------------------------------------------------------------------------
PNG = "data:image/png;base64," + base64.b64encode(
    (lambda b: (Image.new("L", (28, 28)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO())).decode()
SMALL_PNG = "data:image/png;base64," + base64.b64encode(
    (lambda b: (Image.new("L", (7, 7)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO())).decode()
M = "mnist_cond"
ERRORS = [  # (path, JSON body, status, field)
    ("generate", {"model": M, "n": 0}, 422, "n"),
    ("generate", {"model": M, "n": 17}, 422, "n"),
    ("generate", {"model": "toy_two_moons", "n": 2001}, 422, "n"),
    ("generate", {"model": M, "n": "4"}, 422, "n"),
    ("generate", {"model": M, "n": True}, 422, "n"),
    ("generate", {"model": M, "steps": 0}, 422, "steps"),
    ("generate", {"model": M, "steps": 201}, 422, "steps"),
    ("generate", {"model": M, "method": "dpm"}, 422, "method"),
    ("generate", {"model": M, "method": 3}, 422, "method"),
    ("generate", {"model": M, "labels": 10}, 422, "labels"),
    ("generate", {"model": M, "labels": -1}, 422, "labels"),
    ("generate", {"model": M, "n": 2, "labels": [0, 10]}, 422, "labels[1]"),
    ("generate", {"model": M, "n": 3, "labels": [0, 1]}, 422, "labels"),
    ("generate", {"model": "colour_mnist", "labels": 1}, 422, "labels"),
    ("generate", {"model": M, "labels": 1, "guidance": "abc"}, 422, "guidance"),
    ("generate", {"model": M, "labels": 1, "guidance": "2.0"}, 422, "guidance"),
    ("generate", {"model": M, "labels": 1, "guidance": [2]}, 422, "guidance"),
    ("generate", {"model": M, "labels": 1, "guidance": 1e9}, 422, "guidance"),
    ("generate", {"model": M, "guidance": 2.0}, 422, "guidance"),
    ("generate", {"model": M, "seed": -1}, 422, "seed"),
    ("generate", {"model": M, "seed": 2**40}, 422, "seed"),
    ("generate", {"model": "no_such_model"}, 404, "model"),
    ("generate", {"model": "../data/checkpoints/mnist_cond"}, 422, "model"),
    ("generate", {"model": "mnist_cond/../mnist_cond"}, 422, "model"),
    ("generate", {"model": "/etc/passwd"}, 422, "model"),
    ("generate", {"model": "..\\mnist_cond"}, 422, "model"),
    ("generate", {"model": ""}, 422, "model"),
    ("generate", {"model": 7}, 422, "model"),
    ("generate", {"n": 1}, 422, "model"),
    ("generate", {"model": M, "colour": "red"}, 422, "colour"),
    ("generate", [M], 422, "body"),
    ("generate/stream", {"model": M, "n": 99}, 422, "n"),
    ("generate", {"model": M, "method": "restart", "steps": 1}, 422, "steps"),
    ("generate/stream", {"model": "toy_two_moons", "method": "restart", "steps": 2}, 422, "steps"),
    ("inpaint", {"model": "toy_two_moons", "images": [PNG]}, 422, "model"),
    ("inpaint", {"model": M, "images": []}, 422, "images"),
    ("inpaint", {"model": M, "images": [PNG, SMALL_PNG]}, 422, "images[1]"),
    ("inpaint", {"model": M, "images": ["data:image/png;base64,AAAA"]}, 422, "images[0]"),
    ("inpaint", {"model": M, "images": ["http://example.com/a.png"]}, 422, "images[0]"),
    ("inpaint", {"model": M, "images": [PNG], "mask": "diagonal"}, 422, "mask"),
    ("inpaint", {"model": M, "images": [PNG] * 17}, 422, "images"),
    ("colorize", {"model": M, "images": [PNG]}, 422, "model"),
    ("colorize/stream", {"model": "colour_mnist", "images": [SMALL_PNG]}, 422, "images[0]"),
]


def check_error(r, status, field):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["errors"] and body["error"]


@pytest.mark.parametrize("path, body, status, field", ERRORS,
                         ids=[f"{p}-{f}-{i}" for i, (p, _, _, f) in enumerate(ERRORS)])
def test_client_errors_are_4xx_json_naming_the_field(client, path, body, status, field):
    check_error(client.post(f"/api/{path}", json=body), status, field)


def test_raw_body_errors(client, server):
    url = "/api/generate"
    json_header = {"Content-Type": "application/json"}
    check_error(client.post(url, content=b'{"model": "mnist_cond", "n": ', headers=json_header),
                400, "body")
    check_error(client.post(url, content=b'{"model": "mnist_cond", "guidance": NaN, "labels": 1}',
                            headers=json_header), 422, "guidance")
    check_error(client.post(url, content=b'\xff\xfe', headers=json_header), 400, "body")
    check_error(client.post(url, content=b'model=mnist_cond',
                            headers={"Content-Type": "application/x-www-form-urlencoded"}),
                415, "body")
    big = json.dumps({"model": "mnist_cond", "pad": "x" * (1 << 20)}).encode()
    check_error(client.post(url, content=big, headers=json_header), 413, "body")

    def chunks():  # no Content-Length: the limit holds for a chunked body too
        yield b'{"model": "mnist_cond", "pad": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    check_error(client.post(url, content=chunks(), headers=json_header), 413, "body")
    check_error(client.get("/api/nowhere"), 404, None)
    check_error(client.get("/api/generate"), 405, None)
    assert client.get("/api/health").json() == {"status": "ok"}


# -- load --------------------------------------------------------------------------------------
def test_a_burst_of_requests_gets_only_200_or_503_and_the_server_stays_healthy(client, server):
    rejected_before = wait_idle(client)["rejected"]
    barrier = threading.Barrier(20)
    results: list = [None] * 20

    def one(i):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            barrier.wait(10)
            path = "/api/generate/stream" if i % 4 == 0 else "/api/generate"
            r = c.post(path, json={"model": "mnist_cond", "n": 1, "steps": 15, "seed": i})
            results[i] = (r.status_code, r.headers.get("retry-after"), r.text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert all(r is not None for r in results)
    codes = [r[0] for r in results]
    print(f"burst of 20: {codes.count(200)} x 200, {codes.count(503)} x 503")
    assert set(codes) <= {200, 503} and codes.count(200) >= 1 and codes.count(503) >= 1, codes
    for code, retry, text in results:
        if code == 503:
            assert retry is not None and int(retry) >= 1
            assert json.loads(text)["error"] == "Service Unavailable"
    stats = wait_idle(client)
    assert stats["failed"] == 0 and stats["rejected"] - rejected_before == codes.count(503)
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.post("/api/generate", json={"model": "mnist_cond", "n": 1, "steps": 2}) \
        .status_code == 200


def test_models_are_cached_in_an_lru_of_the_configured_size(client):
    for name in ("toy_two_moons", "toy_checkerboard", "toy_eight_gaussians", "toy_two_moons"):
        assert client.post("/api/generate", json={"model": name, "n": 8, "steps": 2}) \
            .status_code == 200
    cache = client.get("/api/stats").json()["cache"]
    assert cache["max_models"] == 2 and cache["loaded"] == ["toy_eight_gaussians", "toy_two_moons"]
    before = cache["misses"]
    client.post("/api/generate", json={"model": "toy_two_moons", "n": 8, "steps": 2})
    after = client.get("/api/stats").json()["cache"]
    assert after["misses"] == before and after["hits"] >= 1


def test_soak_300_requests_memory_stays_bounded(client, server):
    body = {"model": "toy_two_moons", "n": 64, "steps": 2}
    for _ in range(30):  # warm up: the model loaded, allocator and caches settled
        client.post("/api/generate", json=body)
        client.get("/api/models")
    rss_before = server.rss_bytes()
    completed_before = client.get("/api/stats").json()["scheduler"]["completed"]
    codes = []
    for i in range(100):
        codes.append(client.get("/api/health").status_code)
        codes.append(client.get("/api/models").status_code)
        codes.append(client.post("/api/generate", json=dict(body, seed=i)).status_code)
    rss_after = server.rss_bytes()
    assert codes == [200] * 300
    assert client.get("/api/stats").json()["scheduler"]["completed"] == completed_before + 100
    growth = rss_after - rss_before
    print(f"server RSS {rss_before / 2**20:.1f} MiB -> {rss_after / 2**20:.1f} MiB over 300 requests")
    assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 requests"


# -- fuzz: whatever the JSON, the answer is 200 or a 4xx naming a field ------------------------
_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                  st.text(max_size=12), st.sampled_from(["../x", "a/b", "", "\x00", "3", "1e3"]),
                  st.lists(st.integers(-3, 12), max_size=5), st.dictionaries(st.text(max_size=3),
                                                                             st.integers(), max_size=2))
_FIELDS = {
    "model": st.one_of(st.sampled_from(["toy_two_moons", "toy_checkerboard", "nope"]), _JUNK),
    "n": st.one_of(st.integers(-2, 40), _JUNK),
    "steps": st.one_of(st.integers(-2, 12), _JUNK),
    "method": st.one_of(st.sampled_from(["ddim", "ancestral", "dpm_solver", "restart", "heun"]), _JUNK),
    "seed": st.one_of(st.integers(-2, 2**33), _JUNK),
    "labels": _JUNK, "guidance": st.one_of(st.floats(-1, 30), _JUNK), "extra": _JUNK,
}


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(body=st.fixed_dictionaries({}, optional=_FIELDS))
def test_fuzzed_requests_never_cause_a_server_error(client, body):
    r = client.post("/api/generate", content=json.dumps(body, allow_nan=True),
                    headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 404, 413, 422), (body, r.text)
    if r.status_code != 200:
        assert r.json()["field"], (body, r.text)
