"""Ctrl-C and SIGTERM in a `genreclf` command: one line, exit 130 or 143, nothing left running, nothing lost.

Every stage writes atomically and a rerun resumes (tracks acquired, shards written, epochs checkpointed), so an
interrupted command has nothing to save: it stops the work in flight and says how to resume. What made it hang
before was waiting: Prefect's engine draining its log queue into a temporary server the same Ctrl-C had killed,
and the interpreter joining task threads that were mid-track. `stop()` waits for neither.

A signal is seen twice: by its handler in the main thread (ours, or Prefect's own SIGTERM handler during a flow
run, which replaces ours), and by a watcher thread that reads the signal numbers Python writes to its wakeup fd
whoever's handler runs. The watcher marks the interrupt at once, so task threads stop at their next `check()`
however the main thread unwinds, and it holds the command to its word: whatever is still waiting `OVERDUE_S`
after the signal (an engine reporting a crash to a busy server, a thread inside one long write), the line is
said and the process ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
OVERDUE_S = 3.5  # from the signal to the end of the process, whatever is still running then

_lock = threading.RLock()  # re-entered when a signal handler runs in the main thread while it holds it
_received: list[Interrupted] = []  # the first interrupt, once it came; read by check(), received() and the console
_describers: list[Callable[[], str | None]] = []  # what is running now, innermost last (see `describing`)
_said: list[str] = []  # the line, once said (by `stop` or by the watcher at the deadline)


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
    a library may have caught and wrapped it on the way up), with what was running when it came."""
    return _received[0] if _received else None


def _mark(signum: int) -> Interrupted:
    """Record the first interrupt and what was running then; later ones change nothing."""
    with _lock:
        if not _received:
            during = None
            if _describers:
                with contextlib.suppress(Exception):  # a description is a courtesy; the interrupt is not
                    during = _describers[-1]()
            _received.append(Interrupted(signum, during))
        return _received[0]


@contextlib.contextmanager
def describing(running: Callable[[], str | None]) -> Iterator[None]:
    """While active, an interrupt records `running()` as what it interrupted ("during shards written (0 of 1)")."""
    _describers.append(running)
    try:
        yield
    finally:
        _describers.remove(running)


def note(exc: BaseException) -> None:
    """Take `exc`, passing through the main thread, for the interrupt it is: a KeyboardInterrupt, or the
    TerminationSignal Prefect's own SIGTERM handler raises during a flow run (it replaces ours then), so that
    `check()` stops the task threads at once rather than after the engine has waited for them."""
    signum = getattr(exc, "signum", None) or getattr(exc, "signal", None)
    if isinstance(exc, KeyboardInterrupt):
        _mark(int(signum or signal.SIGINT))
    elif isinstance(signum, int) and not isinstance(exc, Exception):
        _mark(signum)


def check() -> None:
    """Raise `Interrupted`, in whatever thread, once SIGINT or SIGTERM arrived while `handled()` was active.

    The signal interrupts the main thread only; loops that run in task threads (a shard's tracks, a batch's tracks,
    a download's chunks) call this, so that a Ctrl-C does not wait for them to finish: Prefect's task runner waits
    for its running tasks as the flow unwinds. In a deployment's worker it raises once a cancellation's SIGTERM has
    passed through a flow waiting for its tasks (`note`), so those stop at once too.
    """
    if _received:
        raise Interrupted(_received[0].signum, _received[0].during)


@contextlib.contextmanager
def handled(line: Callable[[Interrupted], str] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread; a second one ends the process at once.

    With `line` (what to tell the user), the process also ends `OVERDUE_S` after the first signal, saying `line`
    if `stop()` has not said it yet, whatever the main thread is still waiting for. Only from the main thread
    (where Python runs signal handlers); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        stopped = _mark(signum)
        for s in SIGNALS:
            signal.signal(s, _at_once)
        raise Interrupted(signum, stopped.during)

    previous = {s: signal.signal(s, first) for s in SIGNALS}
    watcher = _Watcher.start(line)
    try:
        yield
    finally:
        if watcher is not None:
            watcher.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()
        _said.clear()


class _Watcher:
    """Reads the numbers of the signals Python has caught from its wakeup fd, in a thread of its own: marks the
    first SIGINT or SIGTERM at once (whichever handler the main thread runs for it), then ends the process at the
    deadline if it is still here."""

    def __init__(self, read_fd: int, write_fd: int, line: Callable[[Interrupted], str] | None) -> None:
        self.read_fd, self.write_fd, self.line = read_fd, write_fd, line
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="genreclf-interrupts", daemon=True)

    @classmethod
    def start(cls, line: Callable[[Interrupted], str] | None) -> _Watcher | None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # what the C signal handler needs: it must never block
        if signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False) != -1:  # an event loop in this thread owns it
            signal.set_wakeup_fd(-1)
            os.close(read_fd)
            os.close(write_fd)
            return None
        watcher = cls(read_fd, write_fd, line)
        watcher.thread.start()
        return watcher

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.closed.set()
        os.close(self.write_fd)  # the thread reads the end of the pipe and returns
        self.thread.join(timeout=1.0)

    def _run(self) -> None:
        try:
            while chunk := os.read(self.read_fd, 64):
                if signums := [n for n in chunk if n in SIGNALS]:
                    stopped = _mark(signums[0])
                    if self.line is not None:
                        self._end_by_the_deadline(stopped, self.line)
                        return
        finally:
            os.close(self.read_fd)

    def _end_by_the_deadline(self, stopped: Interrupted, line: Callable[[Interrupted], str]) -> None:
        if self.closed.wait(OVERDUE_S):  # the command ended on its own meanwhile
            return
        with contextlib.suppress(Exception):
            _say(line(stopped), quiet=True)
        _kill_children(signal.SIGKILL)
        os._exit(stopped.exit_code)


def _at_once(signum: int, frame: FrameType | None) -> None:
    """A second SIGINT or SIGTERM: the user insists while the first is cleaned up. End now, children too (a
    temporary server is in its own session, out of the terminal's reach, but still our child)."""
    _kill_children(signal.SIGKILL)
    os._exit(128 + signum)


def stop(exc: Interrupted, line: str, *, quiet: bool = True, cleanup: Callable[[], None] | None = None) -> NoReturn:
    """Print `line` (the one the user reads), run `cleanup` (bounded by its own timeout: the deadline ends the
    process anyway), stop every child process, and end with `exc`'s exit code.

    Nothing after the line reaches the terminal unless `quiet` is False: task threads still running see their
    server gone and would print what the user does not need. Exits with os._exit, as joining those threads (a
    track mid-download, an epoch mid-batch) is what hung: their writes are atomic, a rerun redoes them.
    """
    for s in SIGNALS:  # a second signal during the clean-up ends it at once
        signal.signal(s, _at_once)
    _say(line, quiet=quiet)
    if cleanup is not None:
        with contextlib.suppress(Exception):
            cleanup()
    stop_children()
    os._exit(exc.exit_code)


def _say(line: str, *, quiet: bool) -> None:
    """Print `line` once (from `stop` or the watcher, whichever comes first); with `quiet`, nothing after it."""
    with _lock:
        if _said:
            return
        _said.append(line)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)


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
