"""A Prefect progress artifact for a long stage, updated in steps of at least 5 % (not once per item)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class Progress:
    def __init__(self, total: int, description: str, *, step_pct: float = 5.0) -> None:
        self.total, self.done, self.step_pct, self.shown = max(total, 1), 0, step_pct, 0.0
        self.id = cast(UUID, create_progress_artifact(0.0, description=description))

    def advance(self, n: int = 1) -> None:
        self.done += n
        pct = min(100.0, 100.0 * self.done / self.total)
        if pct - self.shown >= self.step_pct or self.done >= self.total:
            update_progress_artifact(self.id, pct)
            self.shown = pct
