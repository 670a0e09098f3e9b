"""The model registry: every run under its own id, and a champion per line, promoted only when a model beats it.

A line is what a model predicts from what: its genres (in order) and its feature and segment configs. A model is
only ever compared with, and promoted over, the champion of its own line (`registry/lines/<line>.json`), so a run
on another catalog starts its own line instead of replacing a model that predicts other genres.
`registry/champion.json` names the most recently promoted champion (what `predict` uses when no line is named);
one written before lines existed is read as its line's champion, and moved to its line at the next promotion.

Promotion is a compare-and-swap on the line's file: read the champion with its version, score it on the
candidate's test split, and write the candidate only if the champion is still the one that was scored
(`Store.write_if`). If another evaluation promoted in between, the write is refused and the candidate is compared
again with the new champion, so two evaluations finishing together always leave the better model as champion.

The store does the excluding (an exclusive flock on a local store, a conditional PUT with If-Match / If-None-Match
on S3), not Prefect: a global concurrency limit lives in one Prefect server, and two processes each running their
own temporary server (ephemeral mode) would both get a slot, while every runner shares the store.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from genreclf.errors import GenreclfError, ModelError
from genreclf.store.keys import CHAMPION_KEY, champion_line_key, content_id
from genreclf.store.storage import Store

if TYPE_CHECKING:
    from genreclf.datasets.manifest import Manifest
    from genreclf.reports.evaluation import Report, Scores

log = logging.getLogger(__name__)

METRIC: Final = ("track", "accuracy")  # what "better" means: test accuracy per track
PROMOTION_ATTEMPTS = 10  # champions replaced while one candidate is being compared, before giving up

# Scores a champion (its registry entry) on the candidate's test split; None when it cannot be scored there.
ScoreChampion = Callable[[dict[str, Any]], float | None]


def score_of(scores: Scores) -> float:
    return float(scores[METRIC[0]][METRIC[1]])


def line_of(manifest: Manifest) -> str:
    """The line of the models trained on `manifest`: a content id of their genres and feature and segment configs."""
    what = {"labels": manifest.labels, "feature_hash": manifest.feature_hash, "segments": manifest.segment_config}
    return content_id(what, length=12)


def read_champion(store: Store, line: str | None = None) -> dict[str, Any] | None:
    """The champion of `line` (a line id, or a unique start of one), or with None the most recently promoted one;
    None when there is none. Raises ModelError for a line the store does not have."""
    if line is None:
        data, _ = store.read_versioned(CHAMPION_KEY)
        return None if data is None else _with_line(store, json.loads(data))
    found = [c for c in champions(store) if c["line"].startswith(line)]
    if len(found) == 1:
        return found[0]
    lines = ", ".join(c["line"] for c in champions(store)) or "none yet"
    why = "matches several" if found else "is not one"
    raise ModelError(f"line {line!r} {why} of the lines with a champion in {store.url} ({lines}); "
                     "`genreclf status` lists them")  # fmt: skip


def champion_of_line(store: Store, line: str) -> dict[str, Any] | None:
    """The champion of exactly `line`, None when it has none yet."""
    return next((c for c in champions(store) if c["line"] == line), None)


def champions(store: Store) -> list[dict[str, Any]]:
    """The champion of every line, the most recently promoted first."""
    found = {c["line"]: c for c in (store.read_json(k) for k in store.keys("registry/lines/") if k.endswith(".json"))}
    data, _ = store.read_versioned(CHAMPION_KEY)
    if data is not None and (legacy := _with_line(store, json.loads(data)))["line"] not in found:
        found[legacy["line"]] = legacy  # written before lines, and not promoted over since
    return sorted(found.values(), key=lambda c: str(c.get("promoted_at", "")), reverse=True)


def _with_line(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with its line and genres; an entry written before lines gets them from its dataset's manifest."""
    if "line" in entry:
        return entry
    from genreclf.datasets.manifest import read_manifest

    try:
        manifest = read_manifest(store, entry["dataset_id"])
    except (GenreclfError, KeyError):  # its dataset is gone: a line of its own, which nothing else joins
        return {**entry, "line": f"run-{entry.get('run_id', 'unknown')}", "labels": []}
    return {**entry, "line": line_of(manifest), "labels": manifest.labels}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    line: str = ""  # the line the candidate was compared in
    champion: str = ""  # the line's champion after the decision (the candidate's run id when promoted)


def decide(candidate_score: float, champion: dict[str, Any] | None, champion_score: float | None) -> Decision:
    """Promote when the line has no champion, when its champion's model is gone, or when the candidate is strictly
    better than the champion on the same test split."""
    if champion is None:
        return Decision(True, f"the first champion of its line; promoted with track accuracy {candidate_score:.3f}")
    if champion_score is None:
        return Decision(
            True,
            f"champion {champion['run_id']}'s model is gone from the store; promoted with track accuracy "
            f"{candidate_score:.3f}",
        )
    if candidate_score > champion_score:
        return Decision(
            True,
            f"track accuracy {candidate_score:.3f} beats champion {champion['run_id']} "
            f"({champion_score:.3f}) on the same test split",
        )
    return Decision(
        False,
        f"not promoted: track accuracy {candidate_score:.3f} does not beat champion {champion['run_id']} "
        f"({champion_score:.3f}) on the same test split",
    )


def champion_entry(
    store: Store, *, run_id: str, model_key: str, dataset_id: str, line: str, labels: list[str], score: float
) -> dict[str, Any]:
    """The registry entry of a candidate of `line` (`line_of` its dataset's manifest), as `promote_if_better`
    writes it (with `promoted_at`)."""
    return {
        "run_id": run_id,
        "model_key": model_key,
        "model_uri": store.uri(model_key),
        "dataset_id": dataset_id,
        "line": line,
        "labels": labels,
        "track_accuracy": score,
    }


def promote_if_better(
    store: Store, candidate: dict[str, Any], score_champion: ScoreChampion, *, attempts: int = PROMOTION_ATTEMPTS
) -> Decision:
    """Make `candidate` (a `champion_entry`) the champion of its line if it beats the current one, as a
    compare-and-swap; then name it in `registry/champion.json`, the most recent champion.

    Reads the line's champion and its version, scores it with `score_champion`, decides, and writes only if the
    champion is unchanged; when another promotion got in first, decides again against the new champion.
    """
    candidate_score = float(candidate["track_accuracy"])
    key = champion_line_key(candidate["line"])
    _move_legacy_champion(store)
    tried: tuple[bytes, Decision] | None = None  # the last entry written and why
    for _ in range(attempts):
        data, version = store.read_versioned(key)
        champion = None if data is None else json.loads(data)
        if champion is not None and champion["run_id"] == candidate["run_id"]:
            if tried is not None and data == tried[0]:  # our write landed though its answer was lost (a retried PUT)
                _name_most_recent(store, champion)
                return tried[1]
            reason = f"run {candidate['run_id']} is already the champion of its line"
            return Decision(False, reason, line=candidate["line"], champion=candidate["run_id"])
        champion_score = None if champion is None else score_champion(champion)
        decision = dataclasses.replace(decide(candidate_score, champion, champion_score), line=candidate["line"])
        if not decision.promote:
            return dataclasses.replace(decision, champion=champion["run_id"] if champion else "")
        decision = dataclasses.replace(decision, champion=candidate["run_id"])
        entry = {**candidate, "promoted_at": datetime.now(UTC).isoformat()}
        tried = json.dumps(entry, indent=2, sort_keys=True, default=str).encode(), decision
        if store.write_if(key, tried[0], version):
            # The decision's reason says so once, where it is reported (the evaluate flow's log, the report).
            log.debug("promoted run %s to champion of line %s (track accuracy %.3f)", candidate["run_id"],
                      candidate["line"], candidate_score)  # fmt: skip
            _name_most_recent(store, entry)
            return decision
        log.info("the champion changed while run %s was compared with it; comparing again", candidate["run_id"])
    raise ModelError(
        f"run {candidate['run_id']} not promoted: the champion changed {attempts} times while it was being compared; "
        "rerun the evaluation's promotion step"
    )


def _move_legacy_champion(store: Store) -> None:
    """A `registry/champion.json` written before lines becomes its line's champion (unless that line has one),
    so that naming a newer champion there does not lose it."""
    data, version = store.read_versioned(CHAMPION_KEY)
    if data is None or "line" in (legacy := json.loads(data)):
        return
    entry = _with_line(store, legacy)
    body = json.dumps(entry, indent=2, sort_keys=True, default=str).encode()
    store.write_if(champion_line_key(entry["line"]), body, None)  # refused when the line has its own: it stays
    store.write_if(CHAMPION_KEY, body, version)  # refused when another promotion named its champion first


def _name_most_recent(store: Store, entry: dict[str, Any], *, attempts: int = PROMOTION_ATTEMPTS) -> None:
    """Name `entry` in `registry/champion.json` unless a later promotion (of any line) already named its own."""
    body = json.dumps(entry, indent=2, sort_keys=True, default=str).encode()
    for _ in range(attempts):
        data, version = store.read_versioned(CHAMPION_KEY)
        if data is not None and str(json.loads(data).get("promoted_at", "")) > str(entry["promoted_at"]):
            return
        if store.write_if(CHAMPION_KEY, body, version):
            return


def score_on_split(store: Store, manifest: Manifest, champion: dict[str, Any]) -> float | None:
    """The champion's score on the test split of `manifest`; None when its model is gone or it predicts other
    genres, or was trained on other features or segments."""
    # Imported here: reading the champion (predict, the CLI, the promotion itself) needs no torch.
    from genreclf.datasets.manifest import read_manifest
    from genreclf.models.files import parse_run_key
    from genreclf.reports.evaluation import evaluate_model

    if parse_run_key(champion["model_key"]) is None or not store.exists(champion["model_key"]):
        return None  # gone, or an entry that names a file outside runs/ (never loaded): the candidate replaces it
    champ_manifest = read_manifest(store, champion["dataset_id"])
    compatible = (
        champ_manifest.labels == manifest.labels
        and champ_manifest.feature_hash == manifest.feature_hash
        and champ_manifest.segment_config == manifest.segment_config
    )
    return score_of(evaluate_model(store, champion["model_key"], manifest)) if compatible else None


def challenge(store: Store, report: Report, manifest: Manifest) -> Decision:
    """Score the champion of the candidate's line on the candidate's test split and promote the candidate if it is
    better."""
    candidate = champion_entry(
        store,
        run_id=report["run_id"],
        model_key=store.key_of(report["model_uri"]),
        dataset_id=manifest.dataset_id,
        line=line_of(manifest),
        labels=manifest.labels,
        score=score_of(report["models"][report["model"]]),
    )
    return promote_if_better(store, candidate, functools.partial(score_on_split, store, manifest))
