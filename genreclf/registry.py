"""The model registry: every run under its own id, and a champion promoted only when a model beats it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genreclf.evaluation import evaluate_model
from genreclf.shards import Manifest, read_manifest
from genreclf.storage import CHAMPION_KEY, Store

log = logging.getLogger(__name__)

METRIC = ("track", "accuracy")  # what "better" means: test accuracy per track


def score_of(report: dict[str, Any]) -> float:
    return float(report[METRIC[0]][METRIC[1]])


def read_champion(store: Store) -> dict[str, Any] | None:
    return store.read_json(CHAMPION_KEY) if store.exists(CHAMPION_KEY) else None


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


def promote(store: Store, *, run_id: str, model_key: str, dataset_id: str, score: float) -> dict[str, Any]:
    champion = {
        "run_id": run_id,
        "model_key": model_key,
        "model_uri": store.uri(model_key),
        "dataset_id": dataset_id,
        "track_accuracy": score,
        "promoted_at": datetime.now(UTC).isoformat(),
    }
    store.write_json(CHAMPION_KEY, champion)
    log.info("promoted run %s to champion (track accuracy %.3f)", run_id, score)
    return champion


def challenge(store: Store, report: dict[str, Any], manifest: Manifest) -> Decision:
    """Score the champion on the candidate's test split and promote the candidate if it is better."""
    champion = read_champion(store)
    champion_score = None
    compatible = False
    if champion is not None and champion["run_id"] == report["run_id"]:
        return Decision(False, f"run {report['run_id']} is already the champion")
    if champion is not None and store.exists(champion["model_key"]):
        champ_manifest = read_manifest(store, champion["dataset_id"])
        compatible = (
            champ_manifest.labels == manifest.labels
            and champ_manifest.feature_hash == manifest.feature_hash
            and champ_manifest.segment_config == manifest.segment_config
        )
        if compatible:
            champion_score = score_of(evaluate_model(store, champion["model_key"], manifest))
    decision = decide(score_of(report["models"][report["model"]]), champion, champion_score, compatible=compatible)
    if decision.promote:
        promote(
            store,
            run_id=report["run_id"],
            model_key=store.key_of(report["model_uri"]),
            dataset_id=report["dataset_id"],
            score=score_of(report["models"][report["model"]]),
        )
    return decision
