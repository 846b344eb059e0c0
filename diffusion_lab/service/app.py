"""The FastAPI application: routes, the SSE stream, and the error contract.

Every client error is a 4xx JSON body ``{"error", "field", "message", "errors"}``:

    400  malformed JSON (field "body")              413  body over the limit (field "body")
    404  unknown model (field "model"), unknown path 405  wrong HTTP method
    415  a POST body not sent as application/json (field "body")
    422  any field out of range / of the wrong type / unknown, path-like model names, a model
         that does not support the task, labels or guidance the model cannot take, bad PNGs
    503  queue full (``Retry-After`` header, seconds)

Anything else is a bug in the server and is a 500 (logged with its traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib import resources

import torch
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..samplers import SAMPLERS
from .catalog import ModelCache, discover
from .imaging import decode_mask, decode_png
from .jobs import Busy, Cancelled, Scheduler, Work, execute
from .limits import BodySizeLimit
from .schemas import (
    LIMITS,
    MASK_PRESETS,
    ColorizeRequest,
    GenerateRequest,
    InpaintRequest,
    RequestError,
    check_against,
    field_of,
)

log = logging.getLogger("diffusion_lab.service")
STATIC = resources.files("diffusion_lab.service") / "static"


def error_response(status: int, field: str | None, message: str, errors=None,
                   headers=None) -> JSONResponse:
    body = {"error": HTTPStatus(status).phrase, "field": field, "message": message,
            "errors": errors or [{"field": field, "message": message}]}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_response(request, exc: RequestValidationError) -> JSONResponse:
    """pydantic's errors → one named field (the most specific error of the first field);
    a body that is not JSON at all → 415 (wrong Content-Type) or 400 (malformed)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if content_type and media != "application/json" and not media.endswith("+json"):
        return error_response(415, "body", "the body must be JSON sent with Content-Type: "
                              f"application/json, got Content-Type {content_type!r}")
    for e in exc.errors():
        if e["type"] == "json_invalid":
            where = f" at character {e['loc'][1]}" if len(e["loc"]) > 1 else ""
            reason = (e.get("ctx") or {}).get("error", e["msg"])
            return error_response(400, "body", f"malformed JSON{where}: {reason}")
    errors = []
    for e in exc.errors():
        given = repr(e.get("input"))
        errors.append({"field": field_of(e["loc"]), "message": e["msg"], "type": e["type"],
                       "input": given if len(given) <= 80 else given[:77] + "..."})
    first = errors[0]["field"].split("[")[0]
    same = [e for e in errors if e["field"].split("[")[0] == first]
    best = max(same, key=lambda e: e["field"].count("["))
    message = f"{best['field']}: {best['message']} (got {best['input']})"
    return error_response(422, best["field"], message, errors)


def create_app(checkpoints=None, *, concurrency: int = 1, queue_size: int = 8,
               threads: int | None = None, cache_size: int = 2) -> FastAPI:
    """The app serving every generative checkpoint in ``checkpoints`` (default: the bundled
    ``data/checkpoints``); ``concurrency`` generations at once, ``queue_size`` waiting,
    ``threads`` torch threads per generation, at most ``cache_size`` models in memory."""
    from .catalog import DEFAULT_CHECKPOINTS

    cards = discover(checkpoints if checkpoints is not None else DEFAULT_CHECKPOINTS)
    scheduler = Scheduler(concurrency, queue_size, threads)
    cache = ModelCache(cards, cache_size)
    active: set[threading.Event] = set()

    @asynccontextmanager
    async def lifespan(app):
        yield
        for cancel in list(active):  # stop running jobs at their next step, then exit
            cancel.set()
        scheduler.shutdown()

    app = FastAPI(title="diffusion_lab generation service", lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # the docs pages would load a CDN
    app.add_middleware(BodySizeLimit, max_bytes=LIMITS.max_body_bytes)
    app.state.scheduler, app.state.cache = scheduler, cache

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request, exc):
        return _validation_response(request, exc)

    @app.exception_handler(RequestError)
    async def on_request_error(request, exc: RequestError):
        return error_response(exc.status, exc.field, exc.message)

    @app.exception_handler(Busy)
    async def on_busy(request, exc: Busy):
        return error_response(503, None, str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(HTTPException)
    async def on_http(request, exc: HTTPException):
        return error_response(exc.status_code, None, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_bug(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, None, f"internal error: {type(exc).__name__}")

    def prepare(request, task: str) -> Work:
        card = cards.get(request.model)
        if card is None:
            raise RequestError(404, "model", f"unknown model {request.model!r}; available: "
                               f"{', '.join(cards)}")
        seed = request.seed if request.seed is not None else secrets.randbelow(LIMITS.max_seed)
        job = check_against(request, card, task, seed)
        if task == "generate":
            return Work(job)
        shape = card.data_shape
        if task == "inpaint":
            images = torch.stack([decode_png(url, shape, f"images[{i}]")
                                  for i, url in enumerate(request.images)])
            mask = decode_mask(request.mask, *shape[1:])
        else:
            images, mask = _grey_batch(request.images, shape), None
        return Work(job, images, mask)

    async def run(work: Work) -> dict:
        cancel = threading.Event()
        future = scheduler.submit(execute, work, cache, cancel)
        active.add(cancel)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancel.set()
            future.cancel()
            raise
        finally:
            active.discard(cancel)

    def stream(work: Work) -> StreamingResponse:
        """Server-sent events: ``preview`` (x̂_0 at each step), then ``result`` or ``error``."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def push(kind: str, payload) -> None:
            loop.call_soon_threadsafe(events.put_nowait, sse(kind, payload))

        def finished() -> None:  # on the loop, after every preview the worker pushed
            events.put_nowait(None)
            active.discard(cancel)

        future = scheduler.submit(execute, work, cache, cancel, lambda p: push("preview", p))
        active.add(cancel)
        future.add_done_callback(lambda f: loop.is_closed() or loop.call_soon_threadsafe(finished))

        async def body():
            try:
                yield ": admitted\n\n"
                while (event := await events.get()) is not None:
                    yield event
                if future.cancelled() or isinstance(future.exception(), Cancelled):
                    return
                if future.exception() is not None:
                    exc = future.exception()
                    log.error("stream job failed", exc_info=exc)
                    yield sse("error", {"error": "Internal Server Error",
                                        "message": f"internal error: {type(exc).__name__}"})
                else:
                    yield sse("result", future.result())
            finally:  # the client went away (or we are done): stop the job at its next step
                cancel.set()
                future.cancel()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/models")
    async def models():
        return {"models": [card.public() for card in cards.values()], "methods": list(SAMPLERS),
                "mask_presets": list(MASK_PRESETS), "limits": LIMITS.as_dict()}

    @app.get("/api/stats")
    async def stats():
        return {"scheduler": scheduler.stats(), "cache": cache.stats(), "limits": LIMITS.as_dict()}

    @app.post("/api/generate")
    async def generate(request: GenerateRequest):
        return await run(prepare(request, "generate"))

    @app.post("/api/generate/stream")
    async def generate_stream(request: GenerateRequest):
        return stream(prepare(request, "generate"))

    @app.post("/api/inpaint")
    async def inpaint(request: InpaintRequest):
        return await run(prepare(request, "inpaint"))

    @app.post("/api/inpaint/stream")
    async def inpaint_stream(request: InpaintRequest):
        return stream(prepare(request, "inpaint"))

    @app.post("/api/colorize")
    async def colorize(request: ColorizeRequest):
        return await run(prepare(request, "colorize"))

    @app.post("/api/colorize/stream")
    async def colorize_stream(request: ColorizeRequest):
        return stream(prepare(request, "colorize"))

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _grey_batch(urls, shape) -> torch.Tensor:
    """Colorize inputs: grey (or RGB, whose luminance is taken) PNGs of the model's size."""
    decoded = [decode_png(url, shape, f"images[{i}]", grey_ok=True) for i, url in enumerate(urls)]
    channels = {x.shape[0] for x in decoded}
    if len(channels) > 1:
        raise RequestError(422, "images", "images must be all grey or all RGB, not a mix")
    return torch.stack(decoded)


def sse(kind: str, payload) -> str:
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"
