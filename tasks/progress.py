"""Progress of a long stage: a Prefect progress artifact updated in steps of at least 5 % (not once per item), and
every item as a `genreclf.progress` step for the CLI's live display."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from genreclf import progress


class Progress:
    def __init__(self, total: int, stage: str, *, step_pct: float = 5.0) -> None:
        self.total, self.done, self.step_pct, self.shown = max(total, 1), 0, step_pct, 0.0
        self.stage = stage
        self.id = cast(UUID, create_progress_artifact(0.0, description=f"{stage} ({total})"))
        progress.report(stage, 0, self.total)

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.done = min(self.total, self.done + n)
        progress.report(self.stage, self.done, self.total, detail)
        pct = 100.0 * self.done / self.total
        if pct - self.shown >= self.step_pct or self.done >= self.total:
            update_progress_artifact(self.id, pct)
            self.shown = pct
