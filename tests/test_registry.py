"""Promotion as a compare-and-swap: two evaluations promoting at once, each in its own process, on a local store
and on a real S3 server (SeaweedFS on loopback), always leave the better model as champion."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from genreclf import registry
from genreclf.errors import ModelError
from genreclf.keys import CHAMPION_KEY
from genreclf.settings import Settings
from genreclf.storage import Store
from tests import s3server
from tests.s3server import S3Server

s3_server = s3server.s3_server

SCORES = {"base": 0.5, "worse": 0.7, "better": 0.9}


def entry(store: Store, run_id: str) -> dict[str, Any]:
    return registry.champion_entry(
        store, run_id=run_id, model_key=f"runs/{run_id}/model.pt", dataset_id="d1", score=SCORES[run_id]
    )


def stored_score(champion: dict[str, Any]) -> float:
    """Scoring on the same split, with the scores known: the test is about the race, not the model."""
    return float(champion["track_accuracy"])


@dataclass(frozen=True)
class RendezvousStore(Store):
    """A store whose first read waits until the other contender has read too, then `pause_s`: both compare with
    the same champion before either writes, and the pauses set whose write comes first."""

    barrier: Any = field(default=None, repr=False, compare=False)
    pause_s: float = 0.0
    _reads: list[str] = field(default_factory=list, repr=False, compare=False)

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        found = super().read_versioned(key)
        self._reads.append(key)
        if len(self._reads) == 1:
            self.barrier.wait()
            time.sleep(self.pause_s)
        return found


def contender(run_id: str, settings: dict[str, str], barrier: Any, inbox: Any, out: Any) -> None:
    """One evaluation process: for each `(store URL, pause)` it is sent, compare `run_id` with the champion there
    and promote it if it is better."""
    for url, pause_s in iter(inbox.get, None):
        opened = Store.open(url, settings=Settings(**settings))
        store = RendezvousStore(
            fs=opened.fs, root=opened.root, url=opened.url, settings=opened.settings, barrier=barrier, pause_s=pause_s
        )
        decision = registry.promote_if_better(store, entry(store, run_id), stored_score)
        out.put((run_id, decision.promote, decision.reason))


@contextlib.contextmanager
def contenders(settings: dict[str, str]) -> Iterator[Callable[[str, float, float], dict[str, tuple[bool, str]]]]:
    """Two evaluation processes, "better" and "worse" (spawned once: each start costs a second); yields
    `race(url, pause_better, pause_worse) -> {run_id: (promoted, reason)}`."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2, timeout=30)
    out = ctx.Queue()
    inboxes = {run_id: ctx.Queue() for run_id in ("better", "worse")}
    procs = [
        ctx.Process(target=contender, args=(run_id, settings, barrier, inbox, out), daemon=True)
        for run_id, inbox in inboxes.items()
    ]

    def race(url: str, pause_better: float, pause_worse: float) -> dict[str, tuple[bool, str]]:
        inboxes["better"].put((url, pause_better))
        inboxes["worse"].put((url, pause_worse))
        try:
            return {run_id: (promoted, reason) for run_id, promoted, reason in (out.get(timeout=60) for _ in procs)}
        except queue.Empty:
            pytest.fail(f"a contender did not answer: exit codes {[p.exitcode for p in procs]}")

    for p in procs:
        p.start()
    try:
        yield race
    finally:
        for inbox in inboxes.values():
            inbox.put(None)
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()


# (a champion before the race?, pause of "better", pause of "worse"): who writes first, on a present or an
# absent champion; equal pauses leave the order to chance.
TRIALS = [(True, 0.0, 0.3), (True, 0.3, 0.0), (False, 0.0, 0.3), (False, 0.3, 0.0), (True, 0.0, 0.0), (False, 0, 0)]


@pytest.mark.parametrize("backend", ["local", pytest.param("s3", marks=pytest.mark.e2e)])
def test_two_concurrent_promotions_leave_the_better_model_as_champion(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings: dict[str, str] = {}
    if backend == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        settings = {
            "s3_endpoint_url": server.endpoint_url,
            "s3_access_key": server.access_key,
            "s3_secret_key": server.secret_key,
        }

    with contenders(settings) as race:
        for i, (base, pause_better, pause_worse) in enumerate(TRIALS):
            url = str(tmp_path / f"s{i}") if backend == "local" else f"s3://{s3server.BUCKET}/race-{uuid.uuid4().hex}"
            store = Store.open(url, settings=Settings(**settings))
            if base:
                assert registry.promote_if_better(store, entry(store, "base"), stored_score).promote

            decisions = race(url, pause_better, pause_worse)

            trial = f"trial {i} (champion before: {base}, pauses better/worse: {pause_better}/{pause_worse})"
            champion = registry.read_champion(store)
            assert champion is not None and champion["run_id"] == "better", f"{trial}: {champion}, {decisions}"
            assert decisions["better"][0], f"{trial}: {decisions}"
            if pause_worse > pause_better:
                # "worse" wrote last: its write was refused, and it lost to "better" when it compared again.
                assert decisions["worse"] == (
                    False,
                    "not promoted: track accuracy 0.700 does not beat champion better (0.900) on the same test split",
                ), trial


def test_promotion_gives_up_when_the_champion_keeps_changing(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))

    def score_while_another_promotes(champion: dict[str, Any]) -> float:
        # Another evaluation replaces the champion while this one is comparing, every time.
        _, version = store.read_versioned(CHAMPION_KEY)
        store.write_if(CHAMPION_KEY, f'{{"run_id": "other-{uuid.uuid4().hex}"}}'.encode(), version)
        return 0.1

    assert registry.promote_if_better(store, entry(store, "base"), stored_score).promote

    with pytest.raises(ModelError, match="the champion changed 3 times while it was being compared"):
        registry.promote_if_better(store, entry(store, "better"), score_while_another_promotes, attempts=3)


@dataclass(frozen=True)
class LostAnswerStore(Store):
    """Writes, then answers as if the write was refused: a conditional PUT retried after its answer was lost."""

    def write_if(self, key: str, data: bytes, expected: str | None) -> bool:
        super().write_if(key, data, expected)
        return False


def test_a_promotion_whose_answer_was_lost_is_reported_as_made(tmp_path: Path) -> None:
    opened = Store.open(str(tmp_path / "store"))
    store = LostAnswerStore(fs=opened.fs, root=opened.root, url=opened.url)

    decision = registry.promote_if_better(store, entry(store, "better"), stored_score)

    assert decision.promote and decision.reason.startswith("no champion yet")
    assert registry.read_champion(store)["run_id"] == "better"


def test_a_worse_candidate_leaves_the_champion(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    registry.promote_if_better(store, entry(store, "better"), stored_score)

    decision = registry.promote_if_better(store, entry(store, "worse"), stored_score)

    assert not decision.promote and "does not beat champion better (0.900)" in decision.reason
    assert registry.read_champion(store)["run_id"] == "better"
    assert store.keys("") == [CHAMPION_KEY]  # the lock file is not a key
