"""Label audit: which tracks' genre labels to doubt, and which tracks are the same recording twice, worst first.

How a track is judged:
- likely mislabelled: out-of-fold predictions (every track scored by models that saw neither it, nor its artist,
  nor its near-duplicates) from a logistic regression on the baselines' summary features, and confident learning
  on them (`cleanlab.filter.find_label_issues`: a track is flagged when its given genre's probability is below
  what that genre's tracks usually get, and another genre's is above its own usual level);
- near-duplicate of track X: the same recording re-encoded, trimmed or at another loudness (genreclf.labels.duplicates);
  one copy of each group is kept, the others are suggested for dropping;
- outlier: unlike every other track in the catalog (k-nearest-neighbour distance of its features, cleanlab's
  `OutOfDistribution`), for a person to listen to.
A track's quality is the out-of-fold probability of its given genre (cleanlab's self-confidence); a second copy's
is 1 - similarity. The report ranks second copies first (a verified copy is certain, a low probability is only
likely), then every other track by quality, lowest first.

Cost: reading the shards and the features are linear in the catalog; the k-fold logistic regressions are too
(about a second per thousand tracks); the near-duplicate search is genreclf.labels.duplicates' (see there).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from typing_extensions import TypedDict

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.manifest import Manifest
from genreclf.errors import DataError
from genreclf.ingest import catalog
from genreclf.labels import duplicates
from genreclf.labels.out_of_fold import groups_of, label_issues, out_of_fold_probabilities, outlier_scores
from genreclf.labels.tracks import read_tracks
from genreclf.store.keys import audit_report_key, audit_summary_key, content_id
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

# Bump when the method changes, so that audits stored by the old one are made again rather than reused.
AUDIT_VERSION = 1
# The same, for the method on a pretrained network's embeddings only (its audits' ids name it; summary-feature
# audits keep theirs).
EMBEDDING_AUDIT_VERSION = 1

MISLABELLED, DUPLICATE, OUTLIER = "mislabelled", "near-duplicate", "outlier"
# What accepting a row does: relabel it to `suggested`, drop it (a second copy), nothing (a track without issue,
# the kept copy), or nothing until a person decides (an outlier).
RELABEL, DROP, KEEP, REVIEW = "relabel", "drop", "keep", "review"


@dataclass(frozen=True)
class AuditConfig:
    """How an audit judges labels (its hash is part of the audit id, so a changed config audits again).

    folds, repeats: k of the out-of-fold predictions, and how many k-fold runs (with different fold assignments)
        are averaged
    crop_s: summary features are taken over crops this long; a track's probabilities are the mean over its crops
    regularization: inverse L2 strength (C) of the logistic regression on summary features
    embedding_regularization: the same, on a pretrained network's embeddings (used when the dataset has them)
    min_similarity, min_overlap_s: what counts as a near-duplicate (see `duplicates.find_near_duplicates`)
    outlier_fraction: the fraction of tracks with the lowest out-of-distribution scores flagged as outliers
    """

    folds: int = 5
    repeats: int = 3
    seed: int = 0
    # 5 s crops: on gtzan-sample with 10 labels flipped at random (seeds 1-5, not the benchmark's), 0.82 of the
    # flips ranked in the top 10 % against 0.70 with 10 s crops and 0.66 with whole 30 s clips.
    crop_s: float = 5.0
    regularization: float = 0.1
    # The same on a pretrained network's embeddings (1,706 values a segment, not ~160): see `audit_dataset`.
    embedding_regularization: float = 0.01
    min_similarity: float = duplicates.MIN_SIMILARITY
    min_overlap_s: float = duplicates.MIN_OVERLAP_S
    outlier_fraction: float = 0.02

    def __post_init__(self) -> None:
        if self.folds < 2 or self.repeats < 1 or self.crop_s <= 0 or not 0 <= self.outlier_fraction < 1:
            raise DataError(
                f"audit config {self}: need folds >= 2, repeats >= 1, crop_s > 0 and 0 <= outlier_fraction < 1"
            )


def audit_id_for(dataset_id: str, cfg: AuditConfig, network: str | None = None) -> str:
    """Same dataset (its id follows the audio and labels), same config, same method -> same audit id. `network`: the
    id of the embeddings the out-of-fold model read (`genreclf.models.embeddings.network_id`), None for summary features
    (whose audits keep the ids they had before embeddings were an option)."""
    fields = dataclasses.asdict(cfg)
    inputs: list[Any] = [dataset_id, fields, AUDIT_VERSION]
    if network is None:
        del fields["embedding_regularization"]
    else:
        inputs += [network, EMBEDDING_AUDIT_VERSION]
    return content_id(inputs, length=16)


def audit_network(manifest: Manifest) -> tuple[str, str] | None:
    """(network name, id) of the embeddings an audit of this dataset reads
    (`genreclf.models.embeddings.usable_network`), or None for summary features."""
    from genreclf.models import embeddings

    name = embeddings.usable_network(manifest)
    return None if name is None else (name, embeddings.cached_network_id(name))


def stored_audit(store: Store, manifest: Manifest, cfg: AuditConfig | None = None) -> AuditReport | None:
    """The audit `audit_dataset` would reuse for this dataset and config, if it is stored."""
    found = audit_network(manifest)
    return read_audit(store, audit_id_for(manifest.dataset_id, cfg or AuditConfig(), found[1] if found else None))


class AuditRow(TypedDict):
    """One track's verdict. `suggested` is the genre the data suggests (the out-of-fold favourite, or for a group
    of copies the genre their probabilities favour together); `action` is what accepting the row does."""

    rank: int
    track_id: str
    name: str
    given: str
    suggested: str
    action: str
    quality: float
    issue: str
    reason: str
    duplicate_of: str | None
    similarity: float | None
    p_given: float
    p_suggested: float
    outlier_score: float


@dataclass
class AuditReport:
    audit_id: str
    dataset_id: str
    catalog_version: str
    config: dict[str, Any]
    rows: list[AuditRow]  # worst first
    counts: dict[str, int]
    oof_accuracy: float  # how often the out-of-fold favourite is the given genre: how far the verdicts can be trusted
    seconds: dict[str, float]
    created_at: str = ""
    version: int = AUDIT_VERSION
    pairs: list[dict[str, Any]] = field(default_factory=list)

    def summary_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["rows"]
        return d


def _judge_copies(
    rows: list[AuditRow], ids: list[str], labels: np.ndarray, probs: np.ndarray, lengths: np.ndarray,
    pairs: list[duplicates.DuplicatePair], *, genres: list[str], names: dict[str, str],
) -> None:  # fmt: skip
    """Copies: a group per recording. The copy with the most audio is kept (a trimmed copy goes), the others are
    dropped. Copies labelled alike keep their label unless the kept one is itself likely mislabelled; copies
    labelled differently get the genre their out-of-fold probabilities favour together."""
    n, pos, suggested = len(ids), {t: i for i, t in enumerate(ids)}, probs.argmax(axis=1)
    best: dict[int, duplicates.DuplicatePair] = {}
    groups = groups_of(n, [None] * n, [(pos[p.a], pos[p.b]) for p in pairs])
    for p in pairs:
        for t in (pos[p.a], pos[p.b]):
            if t not in best or p.similarity > best[t].similarity:
                best[t] = p
    members: dict[int, list[int]] = defaultdict(list)
    for t in sorted(best, key=lambda t: (-lengths[t], names.get(ids[t], ids[t]))):
        members[groups[t]].append(t)
    for copies in members.values():
        keep = copies[0]
        agree = len({int(labels[t]) for t in copies}) == 1
        together = int(probs[copies].sum(axis=0).argmax())
        for t in copies:
            p = best[t]
            other = p.b if p.a == ids[t] else p.a
            where = f"{p.overlap_s:.0f} s in common" + (f" at {abs(p.offset_s):.1f} s offset" if p.offset_s else "")
            labelled = "" if agree else f", labelled {genres[labels[pos[other]]]}"
            reason = f"near-duplicate of {names.get(other, other)}{labelled} (similarity {p.similarity:.2f}, {where})"
            mislabelled = rows[t]["issue"] == MISLABELLED
            genre = int(labels[t]) if agree and not mislabelled else together if not agree else int(suggested[t])
            if t != keep:
                action, tail = DROP, f"; drop it, keep {names.get(ids[keep], ids[keep])}"
            else:
                action, tail = (RELABEL if genre != labels[t] else KEEP), "; keep this copy"
            if mislabelled:
                tail += f"; also {rows[t]['reason']}"
            rows[t].update({
                "issue": DUPLICATE, "action": action, "duplicate_of": other, "similarity": p.similarity,
                "quality": 1 - p.similarity if action == DROP else rows[t]["quality"], "suggested": genres[genre],
                "reason": reason + tail,
            })  # fmt: skip


def judge(
    ids: list[str], labels: np.ndarray, probs: np.ndarray, outlier: np.ndarray, lengths: np.ndarray,
    pairs: list[duplicates.DuplicatePair], *, genres: list[str], names: dict[str, str], cfg: AuditConfig,
) -> list[AuditRow]:  # fmt: skip
    """Every track's row, worst first (see the module docstring for how a track is judged).

    `probs` (tracks, genres) are out-of-fold probabilities, `outlier` (tracks,) out-of-distribution scores,
    `lengths` (tracks,) how much audio each track has (any unit), `names` what to call a track in a reason.
    """
    n = len(ids)
    flagged, quality = label_issues(labels, probs)
    rows: list[AuditRow] = []
    suggested = probs.argmax(axis=1)
    for i, tid in enumerate(ids):
        rows.append({
            "rank": 0, "track_id": tid, "name": names.get(tid, tid), "given": genres[labels[i]],
            "suggested": genres[suggested[i]], "action": KEEP, "quality": float(quality[i]), "issue": "",
            "reason": "", "duplicate_of": None, "similarity": None, "p_given": float(probs[i, labels[i]]),
            "p_suggested": float(probs[i, suggested[i]]), "outlier_score": float(outlier[i]),
        })  # fmt: skip
        if suggested[i] != labels[i]:  # said of every track the models disagree with; flagged or not
            rows[i]["reason"] = (
                f"models that never heard it prefer {genres[suggested[i]]} ({probs[i, suggested[i]]:.2f}) to "
                f"{genres[labels[i]]} ({probs[i, labels[i]]:.2f}); not flagged by confident learning"
            )
        if flagged[i] and suggested[i] != labels[i]:
            rows[i].update({"issue": MISLABELLED, "action": RELABEL, "reason": (
                f"likely mislabelled: models that never heard it give {genres[labels[i]]} "
                f"{probs[i, labels[i]]:.2f}, {genres[suggested[i]]} {probs[i, suggested[i]]:.2f}")})  # fmt: skip

    _judge_copies(rows, ids, labels, probs, lengths, pairs, genres=genres, names=names)

    # Outliers: the lowest out-of-distribution scores, where nothing else is said of the track.
    count = int(np.floor(cfg.outlier_fraction * n))
    for i in np.argsort(outlier, kind="stable")[:count]:
        if not rows[i]["issue"]:
            rows[i].update({"issue": OUTLIER, "action": REVIEW, "reason": (
                f"outlier: unlike the other tracks (out-of-distribution score {outlier[i]:.3f}, among the lowest "
                f"{cfg.outlier_fraction:.0%}); worth a listen")})  # fmt: skip

    # Second copies first: a verified copy is certain, a low out-of-fold probability is a likelihood.
    order = sorted(range(n), key=lambda i: (rows[i]["action"] != DROP, rows[i]["quality"], rows[i]["track_id"]))
    ranked = [rows[i] for i in order]
    for r, row in enumerate(ranked, start=1):
        row["rank"] = r
    return ranked


# --- the audit of a dataset, and its files -------------------------------------------------------------------

REPORT_SCHEMA = pa.schema([
    ("rank", pa.int32()), ("track_id", pa.string()), ("name", pa.string()), ("given", pa.string()),
    ("suggested", pa.string()), ("action", pa.string()), ("quality", pa.float64()), ("issue", pa.string()),
    ("reason", pa.string()), ("duplicate_of", pa.string()), ("similarity", pa.float64()),
    ("p_given", pa.float64()), ("p_suggested", pa.float64()), ("outlier_score", pa.float64()),
])  # fmt: skip


def display_names(store: Store, catalog_version: str) -> dict[str, str]:
    """Track id -> what a person recognises: a folder catalog's relative path, else "artists - title"."""
    names = {}
    for row in catalog.rows_of(catalog.read_catalog(store, catalog_version)):
        if row["source"] == "folder" and row["source_ref"]:
            names[row["track_id"]] = row["source_ref"]
        elif row["title"]:
            names[row["track_id"]] = " - ".join(filter(None, [", ".join(row["artists"] or []), row["title"]]))
    return names


def write_audit(store: Store, report: AuditReport) -> str:
    """The report's rows, then its summary (written last: an audit whose summary is there is whole)."""
    store.write_parquet(audit_report_key(report.audit_id), pa.Table.from_pylist(report.rows, schema=REPORT_SCHEMA))
    return store.write_json(audit_summary_key(report.audit_id), report.summary_json())


def read_audit(store: Store, audit_id: str) -> AuditReport | None:
    """A stored audit, or None when there is none (or only part of one, from an interrupted write)."""
    if not store.exists(audit_summary_key(audit_id)):
        return None
    summary = store.read_json(audit_summary_key(audit_id))
    rows = store.read_parquet(audit_report_key(audit_id)).to_pylist()
    return AuditReport(rows=rows, **summary)


def audit_dataset(
    store: Store, manifest: Manifest, cfg: AuditConfig | None = None, *, reuse: bool = True
) -> tuple[AuditReport, bool]:
    """Audit every track of a dataset (all splits) -> (report, whether a stored one was reused).

    An audit is stored under an id made of the dataset id and the config; a stored one is reused unless `reuse`
    is False. The dataset id follows the audio and the labels, so a changed catalog is audited afresh.
    """
    cfg = cfg or AuditConfig()
    found = audit_network(manifest)
    network = found[1] if found else None
    audit_id = audit_id_for(manifest.dataset_id, cfg, network)
    if reuse and (stored := read_audit(store, audit_id)) is not None:
        log.info("audit %s of dataset %s is in the store; reusing it", audit_id, manifest.dataset_id)
        return stored, True

    seconds: dict[str, float] = {}
    t0 = t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[stage] = round(now - t, 2)
        t = now

    if found is not None:  # stored ones are reused (a frozen head's training made them)
        from genreclf.models.embeddings import ensure_embeddings
        from genreclf.models.training import resolve_device

        ensure_embeddings(store, manifest, found[0], device=resolve_device())
    tracks = read_tracks(store, manifest, cfg, network)
    lap("features")
    log.info("auditing with %s", f"the embeddings of {network}" if network else "summary features")
    feat = FeatureConfig(**manifest.feature_config)
    pairs = duplicates.find_near_duplicates(
        tracks.fingerprints, cfg=feat, min_similarity=cfg.min_similarity, min_overlap_s=cfg.min_overlap_s
    )
    lap("near_duplicates")
    n = len(tracks.ids)
    pos = {tid: i for i, tid in enumerate(tracks.ids)}
    groups = groups_of(n, tracks.artists, [(pos[p.a], pos[p.b]) for p in pairs])
    # On embeddings, the same logistic regression at the strength that suits them.
    oof_cfg = cfg if network is None else dataclasses.replace(cfg, regularization=cfg.embedding_regularization)
    probs = out_of_fold_probabilities(
        tracks.crop_features, tracks.crop_track, tracks.labels, groups, num_classes=len(manifest.labels), cfg=oof_cfg
    )
    lap("out_of_fold")
    outlier = outlier_scores(tracks.crop_features, tracks.crop_track, n)
    # How much audio each track has: its fingerprint's windows that are not silence (a zero-padded tail is).
    lengths = np.array([np.count_nonzero(tracks.fingerprints[t].any(axis=1)) for t in tracks.ids])
    rows = judge(
        tracks.ids, tracks.labels, probs, outlier, lengths, pairs, genres=manifest.labels,
        names=display_names(store, manifest.catalog_version), cfg=cfg,
    )  # fmt: skip
    lap("verdicts")
    seconds["total"] = round(time.perf_counter() - t0, 2)
    counts = {"tracks": n} | {kind: sum(r["issue"] == kind for r in rows) for kind in (MISLABELLED, DUPLICATE, OUTLIER)}
    report = AuditReport(
        audit_id=audit_id, dataset_id=manifest.dataset_id, catalog_version=manifest.catalog_version,
        config=dataclasses.asdict(cfg), rows=rows, counts=counts,
        oof_accuracy=round(float((probs.argmax(axis=1) == tracks.labels).mean()), 4), seconds=seconds,
        created_at=datetime.now(UTC).isoformat(), pairs=[dataclasses.asdict(p) for p in pairs],
    )  # fmt: skip
    write_audit(store, report)
    log.info(
        "audited dataset %s: %d tracks, %d likely mislabelled, %d near-duplicates, %d outliers in %.1f s",
        manifest.dataset_id, n, counts[MISLABELLED], counts[DUPLICATE], counts[OUTLIER], seconds["total"],
    )  # fmt: skip
    return report, False
