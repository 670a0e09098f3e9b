"""Promotion as a compare-and-swap: two evaluations promoting at once, each in its own process, on a local store
and on a real S3 server (SeaweedFS on loopback), always leave the better model as champion."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from genreclf.datasets.manifest import Manifest
from genreclf.errors import ModelError
from genreclf.reports import registry
from genreclf.settings import Settings
from genreclf.store.keys import CHAMPION_KEY, champion_line_key, manifest_key
from genreclf.store.storage import Store
from tests import s3server
from tests.s3server import S3Server

SCORES = {"base": 0.5, "worse": 0.7, "better": 0.9}
LINE = "l1"


def entry(store: Store, run_id: str) -> dict[str, Any]:
    return registry.champion_entry(store, run_id=run_id, model_key=f"runs/{run_id}/model.pt", dataset_id="d1",
                                   line=LINE, labels=["a", "b"], score=SCORES[run_id])  # fmt: skip


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
        if key != champion_line_key(LINE):  # the champion the candidate is compared with is its line's
            return found
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
        _, version = store.read_versioned(champion_line_key(LINE))
        store.write_if(champion_line_key(LINE), f'{{"run_id": "other-{uuid.uuid4().hex}"}}'.encode(), version)
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

    assert decision.promote and decision.reason.startswith("the first champion of its line")
    assert registry.read_champion(store)["run_id"] == "better"


def test_a_worse_candidate_leaves_the_champion(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    registry.promote_if_better(store, entry(store, "better"), stored_score)

    decision = registry.promote_if_better(store, entry(store, "worse"), stored_score)

    assert not decision.promote and "does not beat champion better (0.900)" in decision.reason
    assert registry.read_champion(store)["run_id"] == "better"
    assert store.keys("") == [CHAMPION_KEY, champion_line_key(LINE)]  # the lock file is not a key


def _manifest_of(store: Store, dataset_id: str, labels: list[str]) -> Manifest:
    """A dataset's manifest as the registry reads it (its genres and configs); its shards are not needed here."""
    m = Manifest(dataset_id=dataset_id, catalog_version="c", feature_config={}, feature_hash="f1",
                 segment_config={"window_s": 3.0}, labels=labels, split_seed=0, shards=[])  # fmt: skip
    store.write_json(manifest_key(dataset_id), dataclasses.asdict(m))
    return m


def test_each_line_keeps_its_champion_and_the_most_recent_is_the_default(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    gtzan = _manifest_of(store, "gtzan", ["blues", "jazz"])
    demo = _manifest_of(store, "demo", ["chirp", "drone"])
    assert registry.line_of(gtzan) != registry.line_of(demo)

    def candidate(run_id: str, m: Manifest, score: float) -> dict[str, Any]:
        return registry.champion_entry(store, run_id=run_id, model_key=f"runs/{run_id}/model.pt",
                                       dataset_id=m.dataset_id, line=registry.line_of(m), labels=m.labels,
                                       score=score)  # fmt: skip

    compared: list[str] = []

    def score(champion: dict[str, Any]) -> float:
        compared.append(champion["run_id"])
        return float(champion["track_accuracy"])

    assert registry.promote_if_better(store, candidate("g1", gtzan, 0.8), score).promote
    # A model of other genres, even a worse one, is never compared with (or promoted over) the GTZAN champion.
    first_demo = registry.promote_if_better(store, candidate("d1", demo, 0.5), score)
    assert first_demo.promote and first_demo.reason.startswith("the first champion of its line")
    assert compared == []
    assert registry.read_champion(store, registry.line_of(gtzan))["run_id"] == "g1"
    assert registry.read_champion(store)["run_id"] == "d1"  # the most recently promoted
    assert [c["run_id"] for c in registry.champions(store)] == ["d1", "g1"]

    assert not registry.promote_if_better(store, candidate("g2", gtzan, 0.7), score).promote
    assert compared == ["g1"]
    assert registry.read_champion(store)["run_id"] == "d1"  # a refused candidate names no one
    assert registry.read_champion(store, registry.line_of(gtzan)[:6])["run_id"] == "g1"  # a unique start will do
    with pytest.raises(ModelError, match="is not one of the lines"):
        registry.read_champion(store, "nosuchline")


def test_a_champion_json_written_before_lines_keeps_working(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    gtzan = _manifest_of(store, "gtzan", ["blues", "jazz"])
    demo = _manifest_of(store, "demo", ["chirp", "drone"])
    old = {"run_id": "old", "model_key": "runs/old/model.pt", "model_uri": store.uri("runs/old/model.pt"),
           "dataset_id": "gtzan", "track_accuracy": 0.6, "promoted_at": "2026-11-01T00:00:00+00:00"}  # fmt: skip
    store.write_json(CHAMPION_KEY, old)

    # Read as the champion of its dataset's line, by every reader.
    assert registry.read_champion(store)["line"] == registry.line_of(gtzan)
    assert registry.read_champion(store, registry.line_of(gtzan))["run_id"] == "old"

    # Another line's promotion names its own champion in champion.json, and the old one stays its line's.
    demo_entry = registry.champion_entry(store, run_id="d1", model_key="runs/d1/model.pt", dataset_id="demo",
                                         line=registry.line_of(demo), labels=demo.labels, score=0.9)  # fmt: skip
    assert registry.promote_if_better(store, demo_entry, stored_score).promote
    assert registry.read_champion(store)["run_id"] == "d1"
    assert [c["run_id"] for c in registry.champions(store)] == ["d1", "old"]

    # A candidate of its line is compared with it, and must beat it.
    worse = registry.champion_entry(store, run_id="g2", model_key="runs/g2/model.pt", dataset_id="gtzan",
                                    line=registry.line_of(gtzan), labels=gtzan.labels, score=0.5)  # fmt: skip
    decision = registry.promote_if_better(store, worse, stored_score)
    assert not decision.promote and "does not beat champion old (0.600)" in decision.reason
