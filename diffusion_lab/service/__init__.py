"""The generation service: an HTTP API and a web page over the bundled models.

    python -m diffusion_lab serve --host 127.0.0.1 --port 8000 [--checkpoints DIR]

    GET  /api/health              {"status": "ok"}
    GET  /api/models              {"models": [{"name", "data_shape", "num_classes",
                                   "class_names", "sde", "kind", "tasks", ...}],
                                   "methods", "mask_presets", "limits"}
    GET  /api/stats               queue, workers and model-cache counters
    POST /api/generate            {"model", "n", "method", "steps", "seed", "labels", "guidance"}
                                  → {"images": [PNG data URLs], "nfe", "seconds", "seed", ...}
    POST /api/generate/stream     the same as server-sent events: "preview" (x̂_0 each step),
                                  then "result" (the /api/generate body) or "error"
    POST /api/inpaint[/stream]    + {"images": [PNG], "mask": preset | PNG}   image models
    POST /api/colorize[/stream]   + {"images": [grey PNG]}                    RGB image models
    GET  /                        the web page (static/index.html, plain HTML + JS)

2-D point models answer with ``"images": []``, ``"points"`` (the n × 2 coordinates) and
``"plot"`` (a scatter PNG). Validation and limits: :mod:`.schemas`; errors: :mod:`.app`;
queue and workers: :mod:`.jobs`; models and their cache: :mod:`.catalog`.

FastAPI and uvicorn come with the ``serve`` extra (``pip install -e ".[serve]"``; ``dev``
includes it); importing this package does not import them.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def create_app(*args, **kwargs):
    """:func:`diffusion_lab.service.app.create_app` (imported on first use)."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(host: str = "127.0.0.1", port: int = 8000, checkpoints=None, *, concurrency: int = 1,
          queue_size: int = 8, threads: int | None = None, cache_size: int = 2,
          log_level: str = "info") -> None:
    """Serve the app with uvicorn until interrupted (Ctrl-C / SIGTERM)."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("the service needs FastAPI and uvicorn: pip install -e \".[serve]\"") \
            from exc
    try:
        app = create_app(checkpoints, concurrency=concurrency, queue_size=queue_size,
                         threads=threads, cache_size=cache_size)
    except (FileNotFoundError, ValueError) as exc:  # a bad --checkpoints or --concurrency
        raise SystemExit(f"diffusion_lab serve: {exc}") from exc
    sched, cache = app.state.scheduler, app.state.cache
    print(f"diffusion_lab service: {len(cache.cards)} models ({', '.join(cache.cards)}) on "
          f"http://{host}:{port}/ -- {sched.concurrency} at a time x {sched.threads} threads, "
          f"queue {sched.queue_size}, cache {cache.max_models} models", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5, limit_concurrency=256)
