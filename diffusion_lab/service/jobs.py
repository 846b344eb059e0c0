"""Admission control and the generation work itself.

:class:`Scheduler` runs at most ``concurrency`` generations at once (a thread pool, each
worker with ``threads`` torch threads) and holds at most ``queue_size`` more waiting; a
request beyond ``concurrency + queue_size`` is refused at once with :class:`Busy` (→ 503 with
``Retry-After``), so a burst can never pile up unbounded work or memory.

:func:`execute` is what a worker runs: fetch the model from the cache, sample with a
per-step callback (live x̂_0 previews; a set ``cancel`` event stops the run at the next
step, e.g. when the client went away), and encode the result.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from .imaging import images_to_data_urls, scatter_data_url
from .schemas import Job


class Busy(Exception):
    """Every worker is busy and the queue is full; ``retry_after`` is a whole number of seconds."""

    def __init__(self, retry_after: int, running: int, queued: int):
        super().__init__(f"server busy: {running} generations running and {queued} queued "
                         f"(the limit); retry in {retry_after} s")
        self.retry_after = retry_after


class Cancelled(Exception):
    """Raised inside a sampler's callback when the job's ``cancel`` event is set."""


class Scheduler:
    """A bounded queue in front of a fixed pool of generation threads."""

    def __init__(self, concurrency: int, queue_size: int, threads: int | None = None):
        """``threads=None``: the process's torch threads shared out, cores // concurrency."""
        for name, value, low in (("concurrency", concurrency, 1), ("queue_size", queue_size, 0),
                                 ("threads", threads, 1)):
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        threads = threads or max(1, torch.get_num_threads() // concurrency)
        self.concurrency, self.queue_size, self.threads = concurrency, queue_size, threads
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="generate",
                                        initializer=torch.set_num_threads, initargs=(threads,))
        self._lock = threading.Lock()
        self._admitted = self._running = 0
        self.completed = self.rejected = self.failed = self.cancelled = 0
        self._mean_seconds = 1.0  # running mean of job time, for Retry-After

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` on a worker, or raise :class:`Busy` when the queue is full."""
        with self._lock:
            if self._admitted >= self.concurrency + self.queue_size:
                self.rejected += 1
                raise Busy(self._retry_after(), self._running, self._admitted - self._running)
            self._admitted += 1
        try:
            future = self._pool.submit(self._timed, fn, args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)  # also fires when a queued job is cancelled
        return future

    def _timed(self, fn, args):
        with self._lock:
            self._running += 1
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            seconds = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def _release(self, future: Future | None) -> None:
        with self._lock:
            self._admitted -= 1
            if future is None:
                return
            if future.cancelled() or isinstance(future.exception(), Cancelled):
                self.cancelled += 1
            elif future.exception() is None:
                self.completed += 1
            else:
                self.failed += 1

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, drained at the mean job time."""
        waves = (self._admitted - self.concurrency) / self.concurrency + 1
        return max(1, math.ceil(self._mean_seconds * waves))

    def stats(self) -> dict:
        with self._lock:
            return {"concurrency": self.concurrency, "queue_size": self.queue_size,
                    "threads": self.threads, "running": self._running,
                    "queued": self._admitted - self._running, "completed": self.completed,
                    "rejected": self.rejected, "failed": self.failed,
                    "cancelled": self.cancelled,
                    "mean_seconds": round(self._mean_seconds, 4)}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Work:
    """A checked :class:`Job` plus its decoded inputs (images ``[B, C, H, W]``, mask)."""

    job: Job
    images: Tensor | None = None
    mask: Tensor | None = None


def render(x: Tensor, kind: str) -> dict:
    """The JSON view of samples: PNGs for images; the points and one scatter PNG for 2-D."""
    if kind == "image":
        return {"images": images_to_data_urls(x), "points": None, "plot": None}
    return {"images": [], "points": x.detach().cpu().double().tolist(),
            "plot": scatter_data_url(x)}


def execute(work: Work, cache, cancel: threading.Event, on_preview=None) -> dict:
    """Run ``work`` on the cached model; ``on_preview(event)`` gets each step's x̂_0.

    Returns the response body: ``images`` (or ``points`` + ``plot``), ``nfe``, ``seconds``,
    ``seed`` and the settings used."""
    job = work.job
    card = cache.cards[job.model]
    model = cache.get(job.model)

    def callback(step, t, x, x0_hat):
        if cancel.is_set():
            raise Cancelled()
        if on_preview is not None:
            view = render(x0_hat, card.kind)
            on_preview({"step": step + 1, "steps": job.steps, "t": t,
                        "images": view["images"], "plot": view["plot"]})

    info: dict = {}
    kw = dict(method=job.method, steps=job.steps, seed=job.seed, labels=job.labels,
              guidance=job.guidance, callback=callback, info=info)
    start = time.perf_counter()
    if job.task == "generate":
        x = model.generate(job.n, **kw)
    elif job.task == "inpaint":
        x = model.inpaint(work.images, work.mask, **kw)
    else:
        x = model.colorize(work.images, **kw)
    seconds = time.perf_counter() - start
    return {"model": job.model, "task": job.task, "kind": card.kind, "n": job.n,
            "method": job.method, "steps": job.steps, "seed": job.seed, "labels": job.labels,
            "guidance": job.guidance, "nfe": info.get("nfe"), "seconds": round(seconds, 4),
            **render(x, card.kind)}
