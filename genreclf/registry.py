"""The model registry: every run under its own id, and a champion promoted only when a model beats it.

Promotion is a compare-and-swap on `registry/champion.json`: read the champion with its version, score it on the
candidate's test split, and write the candidate only if the champion is still the one that was scored
(`Store.write_if`). If another evaluation promoted in between, the write is refused and the candidate is compared
again with the new champion, so two evaluations finishing together always leave the better model as champion.

The store does the excluding (an exclusive flock on a local store, a conditional PUT with If-Match / If-None-Match
on S3), not Prefect: a global concurrency limit lives in one Prefect server, and two processes each running their
own temporary server (ephemeral mode) would both get a slot, while every runner shares the store.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from genreclf.errors import ModelError
from genreclf.keys import CHAMPION_KEY
from genreclf.storage import Store

if TYPE_CHECKING:
    from genreclf.evaluation import Report, Scores
    from genreclf.manifest import Manifest

log = logging.getLogger(__name__)

METRIC: Final = ("track", "accuracy")  # what "better" means: test accuracy per track
PROMOTION_ATTEMPTS = 10  # champions replaced while one candidate is being compared, before giving up

# Scores a champion (its registry entry) on the candidate's test split; None when it cannot be scored there.
ScoreChampion = Callable[[dict[str, Any]], float | None]


def score_of(scores: Scores) -> float:
    return float(scores[METRIC[0]][METRIC[1]])


def read_champion(store: Store) -> dict[str, Any] | None:
    data, _ = store.read_versioned(CHAMPION_KEY)
    return None if data is None else json.loads(data)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    candidate_score: float, champion: dict[str, Any] | None, champion_score: float | None, *, compatible: bool
) -> Decision:
    """Promote when there is no champion, when the champion cannot be scored on this split (other genres or
    features), or when the candidate is strictly better than the champion on the same test split."""
    if champion is None:
        return Decision(True, f"no champion yet; promoted with track accuracy {candidate_score:.3f}")
    if not compatible or champion_score is None:
        return Decision(
            True,
            f"champion {champion['run_id']} predicts other genres or features and cannot be scored on this split; "
            f"promoted with track accuracy {candidate_score:.3f}",
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


def champion_entry(store: Store, *, run_id: str, model_key: str, dataset_id: str, score: float) -> dict[str, Any]:
    """The registry entry of a candidate, as `promote_if_better` writes it (with `promoted_at`)."""
    return {
        "run_id": run_id,
        "model_key": model_key,
        "model_uri": store.uri(model_key),
        "dataset_id": dataset_id,
        "track_accuracy": score,
    }


def promote_if_better(
    store: Store, candidate: dict[str, Any], score_champion: ScoreChampion, *, attempts: int = PROMOTION_ATTEMPTS
) -> Decision:
    """Make `candidate` (a `champion_entry`) the champion if it beats the current one, as a compare-and-swap.

    Reads the champion and its version, scores it with `score_champion`, decides, and writes only if the champion
    is unchanged; when another promotion got in first, decides again against the new champion.
    """
    candidate_score = float(candidate["track_accuracy"])
    tried: tuple[bytes, Decision] | None = None  # the last entry written and why
    for _ in range(attempts):
        data, version = store.read_versioned(CHAMPION_KEY)
        champion = None if data is None else json.loads(data)
        if champion is not None and champion["run_id"] == candidate["run_id"]:
            if tried is not None and data == tried[0]:  # our write landed though its answer was lost (a retried PUT)
                return tried[1]
            return Decision(False, f"run {candidate['run_id']} is already the champion")
        champion_score = None if champion is None else score_champion(champion)
        decision = decide(candidate_score, champion, champion_score, compatible=champion_score is not None)
        if not decision.promote:
            return decision
        entry = {**candidate, "promoted_at": datetime.now(UTC).isoformat()}
        tried = json.dumps(entry, indent=2, sort_keys=True, default=str).encode(), decision
        if store.write_if(CHAMPION_KEY, tried[0], version):
            # The decision's reason says so once, where it is reported (the evaluate flow's log, the report).
            log.debug("promoted run %s to champion (track accuracy %.3f)", candidate["run_id"], candidate_score)
            return decision
        log.info("the champion changed while run %s was compared with it; comparing again", candidate["run_id"])
    raise ModelError(
        f"run {candidate['run_id']} not promoted: the champion changed {attempts} times while it was being compared; "
        "rerun the evaluation's promotion step"
    )


def score_on_split(store: Store, manifest: Manifest, champion: dict[str, Any]) -> float | None:
    """The champion's score on the test split of `manifest`; None when its model is gone or it predicts other
    genres, or was trained on other features or segments."""
    # Imported here: reading the champion (predict, the CLI, the promotion itself) needs no torch.
    from genreclf.evaluation import evaluate_model
    from genreclf.manifest import read_manifest
    from genreclf.models.files import parse_run_key

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
    """Score the champion on the candidate's test split and promote the candidate if it is better."""
    candidate = champion_entry(
        store,
        run_id=report["run_id"],
        model_key=store.key_of(report["model_uri"]),
        dataset_id=report["dataset_id"],
        score=score_of(report["models"][report["model"]]),
    )
    return promote_if_better(store, candidate, functools.partial(score_on_split, store, manifest))
