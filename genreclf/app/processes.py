"""The processes the `genreclf` command and `infra/local_stack.py` start and stop: each in a session of its own (a
terminal's Ctrl-C does not reach it; a stop signals its whole group), known by PID, and never signalled once its PID
may belong to another program."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from genreclf.errors import GenreclfError


class StillThere(GenreclfError):
    """A process group that did not go, even after SIGKILL."""


def spawn(command: list[str], env: Mapping[str, str], log_path: Path) -> int:
    """Start `command` in its own session (so a Ctrl-C in the terminal does not reach it, and a stop can signal its
    whole process group), stdin from /dev/null, stdout and stderr appended to `log_path`; its PID."""
    # posix_spawn, not Popen: the process outlives this call, and a Popen dropped while its child runs warns.
    return os.posix_spawn(
        sys.executable,
        command,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


def alive(pid: int) -> bool:
    """Whether `pid` runs (an exited child of ours is reaped first, so its zombie does not count)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    return True


def is_ours(pid: int, marker: bytes) -> bool:
    """Whether `pid` is still the process we started: alive, leading its own process group (its own session) and,
    where /proc tells, with `marker` in its command line. A PID reused by another program fails this and is never
    signalled."""
    if not alive(pid):
        return False
    try:
        if os.getpgid(pid) != pid:
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # no /proc (macOS): the group check has to do
        return True
    # Empty for a zombie, and read empty here for a moment just after `prefect server start` was spawned (the local
    # stack's start took its server for gone): the group check has to do then too.
    return marker in cmdline or not cmdline


def terminate(pid: int, timeout_s: float = 15.0, *, first: int = signal.SIGTERM, what: str = "a process") -> None:
    """Send `first` to the process group `pid` leads (it and anything it forked), then SIGKILL what is left after
    `timeout_s`. Raises StillThere if the group outlives SIGKILL."""
    for sig, wait_s in ((first, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.1)
    raise StillThere(f"{what} (process group {pid}) is still there after SIGKILL; stop it by hand")


def _group_alive(pgid: int) -> bool:
    alive(pgid)  # reaps the leader if it is our exited child, so a zombie does not count
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
