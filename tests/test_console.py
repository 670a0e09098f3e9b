"""The CLI's terminal: progress steps become bars, Prefect's engine lines stay out unless verbose."""

from __future__ import annotations

import io
import logging
import os
import signal
import time

import pytest
from rich.console import Console

from genreclf import interrupts, progress
from genreclf.app import console


def _record(name: str, level: int, pathname: str, msg: str = "m") -> logging.LogRecord:
    return logging.LogRecord(name, level, pathname, 1, msg, None, None)


def test_engine_lines_are_dropped_and_flow_lines_kept() -> None:
    chatter = console.EngineChatter()
    assert chatter.prefect_dir is not None
    engine = chatter.prefect_dir + "flow_engine.py"
    assert not chatter.filter(_record("prefect.task_runs", logging.INFO, engine, "Finished in state Completed()"))
    assert chatter.filter(_record("prefect.task_runs", logging.WARNING, engine, "Task run failed"))
    assert chatter.filter(_record("prefect.flow_runs", logging.INFO, "/repo/flows/train.py", "training resnet18"))
    assert chatter.filter(
        _record("genreclf.models.training", logging.INFO, "/repo/genreclf/models/training.py", "epoch 1")
    )


def test_the_engines_lines_about_a_genreclf_error_are_dropped_as_the_command_prints_it_once() -> None:
    from genreclf.errors import DataError

    chatter = console.EngineChatter()
    engine = f"{chatter.prefect_dir}task_engine.py"
    error = DataError("catalog c1: no track is usable")
    failed = _record("prefect.task_runs", logging.ERROR, engine, f"Task run failed with exception: {error!r}")
    failed.exc_info = (DataError, error, None)
    assert not chatter.filter(failed)
    state = f"Finished in state Failed('Task run encountered an exception DataError: {error}')"
    assert not chatter.filter(_record("prefect.flow_runs", logging.ERROR, engine, state))
    # Anything else the engine says at ERROR still shows: nothing else would tell the user.
    assert chatter.filter(_record("prefect.flow_runs", logging.ERROR, engine, "Task run failed: OSError(28)"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_after_a_ctrl_c_or_sigterm_nothing_passes_but_the_commands_own_line(signum: int) -> None:
    chatter = console.EngineChatter()
    crash = _record("prefect.flow_runs", logging.ERROR, f"{chatter.prefect_dir}flow_engine.py",
                    "Crash detected! Execution was aborted by a termination signal.")  # fmt: skip
    quarantined = _record("prefect.task_runs", logging.WARNING, "/repo/tasks/acquire.py",
                          "quarantined at download: the decoder was stopped by signal 2")  # fmt: skip
    assert not chatter.filter(crash)  # Prefect catches SIGTERM itself: its crash line can come first
    assert chatter.filter(quarantined)

    with interrupts.handled():
        with pytest.raises(interrupts.Interrupted) as stopped:
            os.kill(os.getpid(), signum)  # a real signal, handled in this (the main) thread
            time.sleep(5)
        assert stopped.value.exit_code == 128 + signum
        assert interrupts.received() is not None and not chatter.filter(quarantined)
    assert chatter.filter(quarantined) and signal.getsignal(signum) is not None  # handlers and state restored


def test_steps_draw_one_bar_per_stage_and_lines_print_above(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(console, "Console", lambda stderr: Console(file=out, width=100, force_terminal=False))
    with console.live_stages(verbose=False) as display:
        assert display.running() is None
        for i in range(3):
            progress.report("tracks acquired", i + 1, 3)
        assert display.running() == "after tracks acquired (3 of 3)"  # what a Ctrl-C's line says, as the next starts
        progress.report("epochs of run r", 1, 2, "loss 0.500, val accuracy 0.750")
        assert display.running() == "during epochs of run r (1 of 2)"
        logging.getLogger("genreclf.test").warning("a track was quarantined")
        bars = {t.description: t for t in display.bars.tasks}
    assert bars["tracks acquired"].completed == 3 and bars["tracks acquired"].total == 3
    assert bars["epochs of run r"].fields["detail"] == "loss 0.500, val accuracy 0.750"
    text = out.getvalue()
    assert "warning: a track was quarantined" in text
    assert "tracks acquired" in text and "3/3" in text
    assert logging.getLogger(progress.LOGGER_NAME).propagate  # restored after the display


def test_a_stage_run_again_gets_a_new_bar(monkeypatch) -> None:
    monkeypatch.setattr(console, "Console", lambda stderr: Console(file=io.StringIO(), force_terminal=False))
    with console.live_stages(verbose=False) as display:
        progress.report("shards written", 1, 1)
        progress.report("shards written", 0, 2)
        assert [t.total for t in display.bars.tasks] == [1, 2]


def test_steps_cost_nothing_without_a_display() -> None:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger(progress.LOGGER_NAME)
    logger.addHandler(handler)
    try:
        logging.getLogger("genreclf").setLevel(logging.INFO)
        progress.report("tracks acquired", 1, 10)
    finally:
        logger.removeHandler(handler)
    assert seen == []


def test_demo_uses_the_default_store_unless_it_holds_another_catalogs_champion(tmp_path, monkeypatch) -> None:
    import argparse

    from genreclf.app import cli
    from genreclf.store.keys import CHAMPION_KEY
    from genreclf.store.storage import Store

    default = tmp_path / "genreclf-data"
    monkeypatch.setenv("GENRECLF_STORAGE_URL", str(default))
    args = argparse.Namespace(store=None, dir=str(tmp_path / "genreclf-demo"))
    assert cli._demo_store(args) == (str(default), True)  # empty: the demo's champion lands where status looks

    Store.open(str(default)).write_json(CHAMPION_KEY, {"run_id": "real", "dataset_id": "not-a-demo"})
    assert cli._demo_store(args) == (str(tmp_path / "genreclf-demo" / "store"), False)

    args.store = str(default)  # asked for explicitly: the user's choice
    assert cli._demo_store(args) == (str(default), True)


def test_prefects_termination_signal_passing_through_a_wait_stops_the_task_threads() -> None:
    # During a flow run Prefect's own SIGTERM handler replaces genreclf's and raises TerminationSignal in the
    # main thread; a flow waiting for its tasks notes it, so that threads mid-shard stop at their next track.
    from concurrent.futures import ThreadPoolExecutor

    from prefect.exceptions import TerminationSignal

    with interrupts.handled():
        interrupts.check()  # nothing yet
        interrupts.note(ValueError("an ordinary error is not an interrupt"))
        interrupts.check()
        interrupts.note(TerminationSignal(signal=signal.SIGTERM))
        with ThreadPoolExecutor(1) as pool, pytest.raises(interrupts.Interrupted) as stopped:
            pool.submit(interrupts.check).result()
        assert stopped.value.exit_code == 143
    interrupts.check()  # handled() is over: nothing noted any more


_STUCK = """
import signal, sys, threading, time
from genreclf import interrupts

def task():  # a task thread, checking between tracks
    while True:
        try:
            interrupts.check()
        except interrupts.Interrupted as e:
            print(f"task stopped by {e.signum} {e.during}", flush=True)
            return
        time.sleep(0.01)

with interrupts.handled(line=lambda s: f"stopped by {s.signum} {s.during}; resume with the same command"):
    with interrupts.describing(lambda: "during shards written (0 of 1)"):
        signal.signal(signal.SIGTERM, lambda *_: None)  # another handler takes SIGTERM, as Prefect's does
        worker = threading.Thread(target=task)
        worker.start()
        print("ready", flush=True)
        worker.join()
        while True:  # the main thread waits on something that never ends
            time.sleep(0.1)
"""


def test_a_signal_someone_else_handles_still_stops_the_task_threads_and_the_process_by_the_deadline() -> None:
    # Prefect's SIGTERM handler replaces genreclf's during a flow run; the wakeup-fd watcher sees the signal anyway,
    # so task threads stop at their next check, and a main thread that never unwinds ends at the deadline.
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _STUCK], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - t0

    assert proc.returncode == 143
    assert out == "task stopped by 15 during shards written (0 of 1)\n"
    assert err == "stopped by 15 during shards written (0 of 1); resume with the same command\n"  # once
    assert interrupts.OVERDUE_S <= took < interrupts.OVERDUE_S + 5.0
