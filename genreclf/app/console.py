"""The CLI's terminal: one live progress line per stage, log lines above it, Prefect's engine chatter kept out."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from genreclf import interrupts, progress
from genreclf.errors import GenreclfError


def _package_dir(name: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    return str(Path(spec.origin).parent) + os.sep if spec and spec.origin else None


class EngineChatter(logging.Filter):
    """Drops the INFO lines Prefect's engine writes itself ("Finished in state Completed()", "Beginning flow run").

    Flows log through the same run loggers, so the engine's lines are told apart by where they were written: inside
    the prefect package. Warnings and errors pass.

    After a Ctrl-C or SIGTERM nothing passes: the engine's "Crash detected!" lines, its calls to a stopped server,
    a track whose decoder the signal killed say nothing the command's own line does not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.prefect_dir = _package_dir("prefect")

    def filter(self, record: logging.LogRecord) -> bool:
        if interrupts.received():
            return False
        if not record.name.startswith("prefect"):
            return True
        if record.levelno >= logging.WARNING and not (_signal_crash(record) or _about_our_error(record)):
            return True
        return self.prefect_dir is None or not record.pathname.startswith(self.prefect_dir)


# How Prefect's engine words a run stopped by a signal (prefect/states.py). It catches SIGTERM itself during a flow
# run, so its crash lines can come before genreclf's own handler has seen the signal.
_SIGNAL_CRASHES = ("aborted by an interrupt signal", "aborted by a termination signal")


def _about_our_error(record: logging.LogRecord) -> bool:
    """An engine line about a GenreclfError (a task's, then each flow's around it, with tracebacks): the command
    prints the error itself, once, as one line."""
    if record.exc_info and isinstance(record.exc_info[1], GenreclfError):
        return True
    message = record.getMessage()
    return any(f"{name}(" in message or f"exception {name}:" in message for name in _error_names())


def _error_names(cls: type[BaseException] = GenreclfError) -> set[str]:
    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


def _signal_crash(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return any(phrase in message for phrase in _SIGNAL_CRASHES)


class StageDisplay(logging.Handler):
    """A logging handler that draws `genreclf.progress` steps as bars and prints every other record above them."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.bars = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console or Console(stderr=True),
        )
        self.tasks: dict[str, TaskID] = {}
        self.last: progress.Step | None = None
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            step = getattr(record, "step", None)
            if isinstance(step, progress.Step):
                self._draw(step)
                return
            warn = record.levelno >= logging.WARNING
            style = "red" if record.levelno >= logging.ERROR else "yellow" if warn else None
            text = f"{record.levelname.lower()}: {self.format(record)}" if warn else self.format(record)
            self.bars.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)

    def running(self) -> str | None:
        """Where the stages were, from the one drawn last: "during shards written (2 of 5)", or "after tracks
        acquired (60 of 60)" when the next has not drawn its bar yet."""
        step = self.last
        if step is None:
            return None
        return f"{'after' if step.done >= step.total else 'during'} {step.stage} ({step.done} of {step.total})"

    def _draw(self, step: progress.Step) -> None:
        self.last = step
        task = self.tasks.get(step.stage)
        if task is None or (step.done == 0 and self.bars.tasks[task].finished):  # a stage run again: a new bar
            task = self.tasks[step.stage] = self.bars.add_task(step.stage, total=step.total, detail="")
        self.bars.update(task, completed=step.done, total=step.total, detail=step.detail)


@contextmanager
def live_stages(*, verbose: bool) -> Iterator[StageDisplay]:
    """Route log records to a `StageDisplay` for the duration: library INFO lines, flows' own lines, progress bars;
    Prefect's engine lines only with `verbose`."""
    display = StageDisplay()
    if not verbose:
        display.addFilter(EngineChatter())
    root = logging.getLogger()
    steps = logging.getLogger(progress.LOGGER_NAME)
    saved = (root.handlers[:], steps.level, steps.propagate)
    root.handlers = [display]
    steps.setLevel(logging.DEBUG)
    steps.propagate = False  # steps go to the display only, never to Prefect's API log handler
    steps.addHandler(display)
    try:
        with display.bars:
            yield display
    finally:
        steps.removeHandler(display)
        root.handlers, (steps.level, steps.propagate) = saved[0], saved[1:]
