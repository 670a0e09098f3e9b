"""Ctrl-C and SIGTERM in a `genreclf` command: one line, exit 130 or 143, nothing left running, nothing lost.

Every stage writes atomically and a rerun resumes (tracks acquired, shards written, epochs checkpointed), so an
interrupted command has nothing to save: it stops the work in flight and says how to resume. What made it hang
before was waiting: Prefect's engine draining its log queue into a temporary server the same Ctrl-C had killed,
and the interpreter joining task threads that were mid-track. `stop()` waits for neither.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the first signal's number, once it came; read by the console to drop the crash lines


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM while `handled()` is active.

    A KeyboardInterrupt, so Prefect's engine takes it for what it is (it marks the run Crashed, "aborted by an
    interrupt signal", and re-raises it) and nothing that catches Exception swallows it.
    """

    def __init__(self, signum: int, during: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.during = during  # what was running, when the command knows it ("training", "acquiring audio")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process killed by the signal: 130, 143


def received() -> Interrupted | None:
    """The interrupt, if SIGINT or SIGTERM arrived while `handled()` was active (whatever became of its exception:
    a library may have caught and wrapped it on the way up)."""
    return Interrupted(_received[0]) if _received else None


def note(exc: BaseException) -> None:
    """Take `exc`, passing through the main thread, for the interrupt it is: a KeyboardInterrupt, or the
    TerminationSignal Prefect's own SIGTERM handler raises during a flow run (it replaces ours then), so that
    `check()` stops the task threads at once rather than after the engine has waited for them."""
    signum = getattr(exc, "signum", None) or getattr(exc, "signal", None)
    if isinstance(exc, KeyboardInterrupt):
        _received.append(int(signum or signal.SIGINT))
    elif isinstance(signum, int) and not isinstance(exc, Exception):
        _received.append(signum)


def check() -> None:
    """Raise `Interrupted`, in whatever thread, once SIGINT or SIGTERM arrived while `handled()` was active.

    The signal interrupts the main thread only; loops that run in task threads (a shard's tracks, a batch's tracks,
    a download's chunks) call this, so that a Ctrl-C does not wait for them to finish: Prefect's task runner waits
    for its running tasks as the flow unwinds. In a deployment's worker it raises once a cancellation's SIGTERM has
    passed through a flow waiting for its tasks (`note`), so those stop at once too.
    """
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; a second one ends the process at once.

    Only from the main thread (where Python runs signal handlers); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        _received.append(signum)
        for s in SIGNALS:
            signal.signal(s, _at_once)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, first) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()


def _at_once(signum: int, frame: FrameType | None) -> None:
    """A second SIGINT or SIGTERM: the user insists while the first is cleaned up. End now, children too (a
    temporary server is in its own session, out of the terminal's reach, but still our child)."""
    _kill_children(signal.SIGKILL)
    os._exit(128 + signum)


def stop(exc: Interrupted, line: str, *, quiet: bool = True) -> NoReturn:
    """Print `line` (the one the user reads), stop every child process, and end with `exc`'s exit code.

    Nothing after the line reaches the terminal unless `quiet` is False: task threads still running see their
    server gone and would print what the user does not need. Exits with os._exit, as joining those threads (a
    track mid-download, an epoch mid-batch) is what hung: their writes are atomic, a rerun redoes them.
    """
    for s in SIGNALS:  # a second signal during the clean-up ends it at once
        signal.signal(s, _at_once)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    if os.environ.get("PREFECT_API_URL"):  # a running server: its logs of the run (a temporary one is gone)
        from genreclf.prefect_setup import drain_prefect

        drain_prefect(timeout_s=2.0)
    stop_children()
    os._exit(exc.exit_code)


def stop_children(timeout_s: float = 3.0) -> None:
    """SIGTERM this process's children (ffmpeg, loader workers), then SIGKILL those left after `timeout_s`."""
    alive = _kill_children(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    if alive:
        _kill_children(signal.SIGKILL)


def _kill_children(sig: int) -> list[int]:
    import psutil

    pids = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.send_signal(sig)
            pids.append(child.pid)
    return pids


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
