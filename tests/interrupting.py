"""Interrupting `genreclf run` with real signals, as a terminal's Ctrl-C (SIGINT to the whole process group) or a
`kill` (SIGTERM to the process) would, at a chosen stage; used by tests/test_interrupts.py.

`python -m tests.interrupting --runs 20` interrupts that many runs at random moments across the stages and both
set-ups (Prefect's temporary server, a running `genreclf server`), and prints each outcome.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import psutil

from genreclf.app.demo import make_demo_catalog

EXE = Path(sys.executable).with_name("genreclf")
STOP_LIMIT_S = 5.0  # the bound: from the signal to the exit


def _any(store: Path, pattern: str) -> bool:
    return next(store.glob(pattern), None) is not None


# Each stage as the store and the output show it while it runs: it has begun and not ended.
STAGES: dict[str, Callable[[Path, str], bool]] = {
    "acquisition": lambda store, out: _any(store, "audio/**/*.json") and " shards (" not in out,
    "shards": lambda store, out: " shards (" in out and not _any(store, "datasets/*/manifest.json"),
    "training": lambda store, out: _any(store, "runs/*/checkpoint.pt") and not _any(store, "runs/*/finished.json"),
}


@dataclass
class Outcome:
    stage: str  # when the signal was sent, as the store showed it ("before" when nothing had started)
    signum: int
    returncode: int | None  # None: still running STOP_LIMIT_S * 4 after the signal (a hang; it was killed)
    stop_s: float  # from the signal to the exit
    line_s: float | None  # from the signal to its "stopped by" line (the rest of stop_s is the clean-up)
    after: list[str]  # the lines printed after the signal (progress bars left out)
    left: list[str]  # processes of the run still there after it exited

    @property
    def ok(self) -> bool:
        stopped = [line for line in self.after if line.startswith("genreclf: stopped by")]
        return (
            self.returncode == 128 + self.signum
            and self.stop_s <= STOP_LIMIT_S
            and len(stopped) == 1
            and self.after[-1:] == stopped
            and not self.left
        )


@dataclass
class Workspace:
    """A catalog, a store, a Prefect home and a cache, all under `root`; `api_url` is a running server's, if any."""

    root: Path
    catalog: Path
    api_url: str | None = None

    @property
    def store(self) -> Path:
        return self.root / "store"

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PREFECT_HOME": str(self.root / "prefect"), "GENRECLF_CACHE_DIR": str(self.root / "cache"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "160"}  # fmt: skip
        for test_setting in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL"):  # conftest's: a user has neither
            env.pop(test_setting, None)
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        return env

    def command(self, epochs: int) -> list[str]:
        return [str(EXE), "run", "--catalog", str(self.catalog), "--store", str(self.store), "--small",
                "--model", "small_cnn", "--epochs", str(epochs), "--device", "cpu"]  # fmt: skip


def make_catalog(root: Path, *, tracks_per_genre: int = 15, seconds: float = 90.0) -> Path:
    """A catalog of MP3s, so that acquisition runs ffmpeg (which a terminal's Ctrl-C reaches too), long enough that
    acquisition and the shards each take a few seconds on a 2-core machine."""
    make_demo_catalog(root, tracks_per_genre=tracks_per_genre, seconds=seconds)
    for source in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".mp3"):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-b:a", "96k",
                        str(source.with_suffix(".mp3"))], check=True)  # fmt: skip
        source.unlink()
    return root


@contextmanager
def running_server(root: Path) -> Iterator[str]:
    """`genreclf server start` in `root`'s Prefect home, on a free port; stopped on the way out."""
    from tests.s3server import free_ports

    env = Workspace(root, root).env()
    (port,) = free_ports(1)
    subprocess.run([str(EXE), "server", "start", "--port", str(port), "--timeout", "300"], env=env, check=True,
                   capture_output=True, timeout=320)  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        subprocess.run([str(EXE), "server", "stop"], env=env, check=False, capture_output=True, timeout=60)


def interrupt(ws: Workspace, *, at: str, signum: int, epochs: int = 2, delay_s: float = 0.0,
              timeout_s: float = 300.0) -> Outcome:  # fmt: skip
    """Run the pipeline in `ws` and send `signum` once `at` (a STAGES key, or "start": a second after the command
    was typed, as soon as a person could) is running, plus `delay_s`. SIGINT goes to the process group, as a
    terminal sends it; SIGTERM to the process alone, as `kill`. Raises AssertionError if the run ends before the
    stage is seen."""
    out_path = ws.root / f"out-{time.monotonic_ns()}.txt"
    with out_path.open("w") as out:
        proc = subprocess.Popen(ws.command(epochs), stdout=out, stderr=subprocess.STDOUT, env=ws.env(),
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while at != "start" and not STAGES[at](ws.store, out_path.read_text(errors="replace")):
            if proc.poll() is not None:
                raise AssertionError(
                    f"the run ended (rc {proc.returncode}) before {at}: {out_path.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{at} not seen within {timeout_s:.0f} s")
            time.sleep(0.02)
        time.sleep(delay_s + (1.0 if at == "start" else 0.0))
        seen = out_path.read_text(errors="replace")
        stage = next((name for name, running in STAGES.items() if running(ws.store, seen)), "between stages")
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
        before = out_path.stat().st_size
        t0 = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        returncode, line_s = _wait_noting_the_line(proc, out_path, before, t0)
        stop_s = time.monotonic() - t0
        time.sleep(0.3)
        left = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in _alive(family)]
        after = out_path.read_bytes()[before:].decode(errors="replace").splitlines()
        return Outcome(stage, signum, returncode, stop_s, line_s, [line for line in after if not _is_bar(line)], left)
    finally:
        for p in _alive([proc.pid, *_descendants(proc.pid)]):
            p.kill()
        proc.wait()


def _wait_noting_the_line(proc: subprocess.Popen[bytes], out_path: Path, offset: int,
                          t0: float) -> tuple[int | None, float | None]:  # fmt: skip
    """Wait for `proc` to exit, up to STOP_LIMIT_S * 4 after `t0`; its exit code (None: it did not exit) and when
    its "stopped by" line appeared, after `t0`."""
    line_s = None
    while (returncode := proc.poll()) is None and time.monotonic() - t0 < STOP_LIMIT_S * 4:
        if line_s is None and b"genreclf: stopped by" in out_path.read_bytes()[offset:]:
            line_s = time.monotonic() - t0
        time.sleep(0.01)
    if line_s is None and b"genreclf: stopped by" in out_path.read_bytes()[offset:]:
        line_s = time.monotonic() - t0
    return returncode, line_s


def finish(ws: Workspace, *, epochs: int = 2, timeout_s: float = 600.0) -> str:
    """Run the same command to the end; its output."""
    proc = subprocess.run(ws.command(epochs), capture_output=True, text=True, env=ws.env(), timeout=timeout_s,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _is_bar(line: str) -> bool:
    return "━" in line or line.strip() == ""


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _alive(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def _seconds(s: float | None) -> str:
    return "--" if s is None else f"{s:.1f} s"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="genreclf-interrupts-"))
    catalog = make_catalog(root / "catalog")
    results: list[Outcome] = []
    try:
        for setup in ("temporary server", "running server"):
            server: AbstractContextManager[str | None] = (
                nullcontext() if setup == "temporary server" else running_server(root / "server")
            )
            with server as api_url:
                for i in range(args.runs // 2):
                    ws = Workspace(root / f"{setup.split()[0]}-{i}", catalog, api_url)
                    ws.root.mkdir()
                    at = rng.choice(["start", *STAGES])
                    signum = rng.choice([signal.SIGINT, signal.SIGTERM])
                    outcome = interrupt(ws, at=at, signum=signum, delay_s=rng.uniform(0.0, 1.5))
                    rerun = finish(ws)
                    reused = "resuming run" in rerun or "already computed" in rerun or "reusing" in rerun
                    results.append(outcome)
                    _say(f"{setup:<16} {signal.Signals(signum).name:<7} at {outcome.stage:<14} "
                         f"rc {outcome.returncode}  stopped in {outcome.stop_s:4.1f} s "
                         f"(said at {_seconds(outcome.line_s)})  "
                         f"{'ok ' if outcome.ok else 'BAD'}  rerun finished{' and reused work' if reused else ''}; "
                         f"last line: {outcome.after[-1][:90] if outcome.after else '(none)'}")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bad = [o for o in results if not o.ok]
    _say(f"{len(results) - len(bad)} of {len(results)} interrupts ended as they should; "
         f"slowest stop {max(o.stop_s for o in results):.1f} s")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
