"""Stage progress told as log records: a display (the CLI's) draws one live line per stage; elsewhere they cost nothing.

A step is logged at DEBUG on the `genreclf.progress` logger, which nothing shows by default (the `genreclf` logger
sits at INFO), so thousands of per-track steps never reach Prefect's run logs. The CLI turns the logger on and draws
each step's `Step` (the record's `step` attribute) as a bar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

LOGGER_NAME = "genreclf.progress"
log = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Step:
    stage: str  # e.g. "tracks decoded": one bar per stage
    done: int
    total: int
    detail: str = ""  # e.g. "loss 0.412, val 0.633"


def report(stage: str, done: int, total: int, detail: str = "") -> None:
    """Tell whoever listens that `done` of `total` items of `stage` are finished."""
    if log.isEnabledFor(logging.DEBUG):
        step = Step(stage, done, total, detail)
        log.debug("%s: %d/%d %s", stage, done, total, detail, extra={"step": step})
