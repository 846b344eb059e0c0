"""Serve a notebook with Voilà on a free localhost port, and stop it by its PID.

    with VoilaProcess("notebooks/10_dashboard.ipynb") as voila:
        browser.get(voila.url + "/")

``make dashboard`` runs the same command in the foreground on port 8866. The server binds
127.0.0.1 only, imports this very package (its parent goes first on ``PYTHONPATH``, and
into the kernel's environment), and is stopped by SIGTERM, then SIGKILL after a grace
period; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..service.launch import free_port

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "10_dashboard.ipynb"
READY_PATH = "/voila/static/voila.js"  # a static file: answering it starts no kernel


def voila_command(notebook, port: int, host: str = "127.0.0.1") -> list[str]:
    """The Voilà command line: no browser, MathJax off (no CDN), tracebacks hidden."""
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}",
            f"--Voila.ip={host}", "--no-browser", "--Voila.mathjax_url=",
            "--VoilaConfiguration.show_tracebacks=False"]


class VoilaProcess:
    """``voila NOTEBOOK`` on a free 127.0.0.1 port, as a child process."""

    def __init__(self, notebook=NOTEBOOK, startup_timeout: float = 60.0, threads: int = 1,
                 attempts: int = 3):
        self.notebook, self.startup_timeout, self.attempts = Path(notebook), startup_timeout, \
            attempts
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path)
        self.env.pop("DIFFUSION_LAB_HEADLESS", None)  # the page has a live frontend
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> VoilaProcess:
        for _ in range(self.attempts):  # another process may grab the port in between
            self.port = free_port()
            self._log = tempfile.NamedTemporaryFile("w+", prefix="dl-voila-", suffix=".log")
            self.process = subprocess.Popen(voila_command(self.notebook, self.port),
                                            cwd=ROOT, env=self.env, stdout=self._log,
                                            stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
            log = self.log_text()
            self.stop()
            if "address already in use" not in log.lower():
                raise RuntimeError(f"Voilà did not start:\n{log[-3000:]}")
        raise RuntimeError(f"no free port after {self.attempts} attempts")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + READY_PATH, timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        return False

    def stop(self, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VoilaProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
