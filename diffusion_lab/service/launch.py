"""Start and stop a real server process on a free localhost port (tests, benchmarks, notebooks).

    with ServerProcess("--concurrency", "1") as server:
        httpx.get(server.url + "/api/health")

The server is ``python -m diffusion_lab serve`` from this very package (the parent of the
imported ``diffusion_lab`` is put first on ``PYTHONPATH``), bound to 127.0.0.1 only. It is
stopped by its PID (SIGTERM, then SIGKILL after a grace period); waiting for it is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m diffusion_lab serve --host 127.0.0.1 --port <free> *args`` as a child."""

    def __init__(self, *args: str, startup_timeout: float = 60.0, threads: int = 1,
                 attempts: int = 3):
        self.args, self.startup_timeout, self.attempts = list(args), startup_timeout, attempts
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads),
                        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT),
                                                               os.environ.get("PYTHONPATH")) if p))
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> ServerProcess:
        for _ in range(self.attempts):  # another process may grab the port in between
            self.port = free_port()
            self._log = tempfile.NamedTemporaryFile("w+", prefix="dl-serve-", suffix=".log")
            cmd = [sys.executable, "-m", "diffusion_lab", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "warning", *self.args]
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log,
                                            stderr=subprocess.STDOUT)
            if self._wait_healthy():
                return self
            log = self.log_text()
            self.stop()
            if "address already in use" not in log.lower():
                raise RuntimeError(f"the server did not become healthy:\n{log[-3000:]}")
        raise RuntimeError(f"no free port after {self.attempts} attempts")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        return False

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmRSS not found")

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

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
