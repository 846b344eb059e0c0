"""kill -9 at every point of a checkpoint save, in real subprocesses.

A child process (forked from one that imported torch once, so each starts in
milliseconds) trains a tiny MLP (10 steps, a checkpoint every 5) and is SIGKILLed at
one chosen *event* of the run: after each file of the save is fsynced, with a 0-byte
config.json just created, before and after each rename / exchange. The events are listed
by a dry run of the same instrumented code in this process; each child parks itself at its
event (it prints ``HANG``) and is killed there. Afterwards, for every kill point:

* the final name holds nothing, or a checkpoint that loads completely (never a half-written
  one promoted);
* resuming gives weights, EMA, optimizer state and loss history bit-identical to an
  uninterrupted run — directly, or after the explicit ``recover_checkpoint`` when the save
  had finished but was not yet renamed into place (then resuming without it is a clear
  error that names the recovery).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import diffusion_lab.atomic as atomic
import diffusion_lab.checkpoint as ckpt_mod
from diffusion_lab.atomic import interrupted_saves
from diffusion_lab.checkpoint import load_checkpoint, recover_checkpoint
from diffusion_lab.nets import MLP
from diffusion_lab.sde import VPSDE
from diffusion_lab.training import train

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 10, 5


def run_training(path, steps=STEPS):
    """The run every process does: same data, same initial weights, same seed."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(128, 2, generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP(hidden=16, layers=2)
    return train(net, VPSDE(), data, steps=steps, batch_size=16, lr=1e-3, seed=3,
                 checkpoint_dir=path, checkpoint_every=EVERY, resume=True, progress=False)


def _name(p) -> str:
    """A path's name with the random parts taken out (the same in every process)."""
    n = Path(p).name
    if n.startswith(".ck."):
        return re.sub(r"-\w+$", "", n)
    return n if n == "ck" or "." in n else "parent"


def install_hooks(events: list, kill_at: int | None, exchange: bool, log=lambda s: None):
    """Record (and, at ``kill_at``, park on) every durable step of a save."""
    real_fsync_file, real_fsync_dir = atomic.fsync_file, atomic.fsync_dir
    real_replace, real_exchange, real_write_json = os.replace, atomic._exchange, \
        ckpt_mod._write_json

    def event(name):
        events.append(name)
        log(name)
        if kill_at is not None and len(events) == kill_at:
            log("HANG")
            time.sleep(300)
            os._exit(3)

    def fsync_file(p):
        real_fsync_file(p)
        event(f"fsynced {_name(p)}")

    def fsync_dir(p):
        real_fsync_dir(p)
        event(f"fsynced dir {_name(p)}")

    def replace(src, dst):
        event(f"before rename {_name(src)} -> {_name(dst)}")
        real_replace(src, dst)
        event(f"after rename {_name(src)} -> {_name(dst)}")

    def swap(a, b):
        if not exchange:
            return False
        event("before exchange")
        done = real_exchange(a, b)
        event("after exchange")
        return done

    def write_json(p, obj):
        if Path(p).name == "config.json":
            Path(p).touch()
            event("0-byte config.json")
        real_write_json(p, obj)

    atomic.fsync_file = ckpt_mod.fsync_file = fsync_file
    atomic.fsync_dir = fsync_dir
    os.replace = replace
    atomic._exchange = swap
    ckpt_mod._write_json = write_json

    def undo():
        atomic.fsync_file = ckpt_mod.fsync_file = real_fsync_file
        atomic.fsync_dir = real_fsync_dir
        os.replace = real_replace
        atomic._exchange = real_exchange
        ckpt_mod._write_json = real_write_json
    return undo


def zygote_main():
    """A process that imports torch once, then forks one child per kill point (so each
    child starts in milliseconds); each child runs the training with the hooks and parks at
    its event. Protocol on stdin: ``path kill_at exchange|two-renames`` per line."""
    import tempfile

    torch.set_num_threads(1)

    def log(s):
        os.write(1, (s + "\n").encode())

    with tempfile.TemporaryDirectory() as warm:  # lazy imports and first-call costs, once
        run_training(Path(warm) / "ck")
    log("READY")
    for line in sys.stdin:
        path, kill_at, mode = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                log(f"PID {os.getpid()}")
                install_hooks([], int(kill_at), mode == "exchange", log)
                run_training(path)
                log("DONE")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        log(f"REAPED {os.waitstatus_to_exitcode(status)}")


class Zygote:
    def __init__(self):
        code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_kill9; "
                "test_kill9.zygote_main()")
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""
        assert self._until(lambda b: b.endswith(b"READY\n"))[-1] == "READY"

    def _until(self, done, timeout: float = 240.0) -> list[str]:
        deadline, fd = time.monotonic() + timeout, self.proc.stdout.fileno()
        while not done(self.buf):
            left = deadline - time.monotonic()
            assert left > 0, f"no progress: {self.buf.decode()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"the zygote exited: {self.buf.decode()}"
                self.buf += chunk
        lines, self.buf = self.buf.decode().split("\n")[:-1], b""
        return lines

    def kill_at(self, path: Path, k: int, exchange: bool) -> list[str]:
        """Run a child to event ``k``, SIGKILL it there; returns its event lines."""
        mode = "exchange" if exchange else "two-renames"
        self.proc.stdin.write(f"{path} {k} {mode}\n".encode())
        self.proc.stdin.flush()
        lines = self._until(lambda b: b.endswith(b"HANG\n") or b"DONE" in b)
        assert lines[-1] == "HANG", lines
        pid = int(lines[0].split()[1])
        os.kill(pid, signal.SIGKILL)
        reaped = self._until(lambda b: b.endswith(b"\n") and b"REAPED" in b)
        assert reaped == [f"REAPED {-signal.SIGKILL}"], reaped
        return lines[1:-1]

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def _state(path: Path):
    ck = load_checkpoint(path, training_state=True)
    return ({k: v.clone() for k, v in ck.net.state_dict().items()},
            {k: v.clone() for k, v in ck.ema.state_dict().items()},
            ck.optimizer_state, ck.train_state)


def _assert_same(a, b):
    for x, y in zip(a[:2], b[:2], strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    for i, s in a[2]["state"].items():
        for k, v in s.items():
            assert torch.equal(v, b[2]["state"][i][k]) if torch.is_tensor(v) else v == \
                b[2]["state"][i][k], (i, k)
    assert a[3]["step"] == b[3]["step"] == STEPS
    assert torch.equal(a[3]["loss_history"], b[3]["loss_history"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ck"
    run_training(path)
    return _state(path)


def _events(tmp_path: Path, exchange: bool) -> list[str]:
    events: list[str] = []
    undo = install_hooks(events, None, exchange)
    try:
        run_training(tmp_path / "dry" / "ck")
    finally:
        undo()
    return events


def _check_after_kill(path: Path, reference, lines) -> str:
    """The invariant after a kill; then resume (recovering explicitly when needed)."""
    where = lines[-1]
    if path.exists():
        assert load_checkpoint(path, training_state=True).train_state["step"] in (EVERY, STEPS)
        outcome = "checkpoint in place"
    elif interrupted_saves(path):
        with pytest.raises(FileNotFoundError, match="recover_checkpoint"):
            run_training(path)
        assert "restored" in recover_checkpoint(path)
        outcome = "recovered explicitly"
    else:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            load_checkpoint(path)
        outcome = "nothing saved: starts over"
    run_training(path)
    _assert_same(_state(path), reference)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck"], where
    return outcome


def _kill_everywhere(tmp_path, reference, zygote, exchange: bool, pick) -> dict:
    events = _events(tmp_path, exchange)
    points = pick(events)
    assert points, events
    outcomes = {}
    for k in points:
        path = tmp_path / f"k{k}" / "ck"
        lines = zygote.kill_at(path, k, exchange)
        assert lines == events[:k], (lines, events[:k])  # the same events, in the same order
        outcomes.setdefault(events[k - 1], _check_after_kill(path, reference, lines))
    return outcomes


@pytest.mark.slow
def test_kill9_at_every_point_of_the_first_save(tmp_path, reference, zygote):
    def first_save(events):
        end = next(i for i, e in enumerate(events) if e.startswith("after rename .ck.tmp"))
        return list(range(1, end + 3))  # every event up to the directory fsync after it

    outcomes = _kill_everywhere(tmp_path, reference, zygote, True, first_save)
    assert len(outcomes) >= 12
    assert outcomes["0-byte config.json"] == "nothing saved: starts over"
    assert outcomes["fsynced config.json"] == "nothing saved: starts over"
    assert outcomes["fsynced complete.json"] == "recovered explicitly"
    assert outcomes["after rename .ck.tmp -> ck"] == "checkpoint in place"
    assert set(outcomes.values()) == {"nothing saved: starts over", "recovered explicitly",
                                      "checkpoint in place"}


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_kill9_while_replacing_a_checkpoint(tmp_path, reference, zygote, exchange):
    """Killed around the commit of the second save: the old or the new checkpoint is in
    place (exchange), or, between the two plain renames, both wait beside it for the
    explicit recovery; resuming ends bit-identical either way."""
    def commit_of_second_save(events):
        first = next(i for i, e in enumerate(events) if e.startswith("after rename .ck.tmp"))
        second = [i + 1 for i, e in enumerate(events) if i > first and (
            "rename" in e or "exchange" in e or e == "fsynced complete.json")]
        return second

    outcomes = _kill_everywhere(tmp_path, reference, zygote, exchange,
                                commit_of_second_save)
    if exchange:
        assert set(outcomes.values()) == {"checkpoint in place"}
    else:
        assert "recovered explicitly" in outcomes.values()
