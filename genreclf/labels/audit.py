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

import contextlib
import dataclasses
import io
import logging
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from typing_extensions import TypedDict

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import iter_shard_tables
from genreclf.datasets.manifest import Manifest
from genreclf.errors import DataError
from genreclf.ingest import catalog
from genreclf.labels import duplicates
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


# --- reading what the audit needs from the shards ------------------------------------------------------------


@dataclass
class _Tracks:
    ids: list[str]
    labels: np.ndarray  # (tracks,) label index into the manifest's labels
    artists: list[str | None]
    crop_features: np.ndarray  # (crops, features)
    crop_track: np.ndarray  # (crops,) index into ids
    fingerprints: dict[str, np.ndarray]


def crop_starts(frames: int, crop: int) -> list[int]:
    """Back-to-back crops of `crop` frames; one crop of the whole segment when it is shorter."""
    return list(range(0, frames - crop + 1, crop)) or [0]


def read_tracks(store: Store, manifest: Manifest, cfg: AuditConfig, network: str | None = None) -> _Tracks:
    """Summary features of every crop (or, with `network`, the stored embedding of every segment) and a fingerprint
    of every track, streamed shard by shard: one shard's spectrograms are in memory at a time, and what is kept per
    track is small."""
    from genreclf.models.baselines import summary_features  # scikit-learn and librosa: only an audit needs them

    feat = FeatureConfig(**manifest.feature_config)
    crop = max(1, round(cfg.crop_s * feat.sample_rate / feat.hop_length))
    index: dict[str, int] = {}
    labels: list[int] = []
    artists: list[str | None] = []
    features: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    fingerprints: dict[str, np.ndarray] = {}
    for shard, table in zip(manifest.shards, iter_shard_tables(store, manifest), strict=True):
        if table.num_rows == 0:
            continue
        mel = table["mel"].combine_chunks().to_numpy_ndarray()  # (rows, n_mels, frames) float16
        ids = table["track_id"].to_pylist()
        if again := sorted(set(ids) & fingerprints.keys()):  # plan_shards keeps each track's segments in one shard
            raise DataError(f"{store.uri(shard['key'])}: track {again[0]} is in two shards; rebuild the dataset")
        for tid, label, artist in zip(ids, table["label"].to_pylist(), table["artist_id"].to_pylist(), strict=True):
            if tid not in index:
                index[tid] = len(index)
                labels.append(label)
                artists.append(artist)
        rows = np.array([index[t] for t in ids])
        if network is not None:
            features.append(_embedding_rows(store, network, shard["key"], table))
            owners.append(rows)
        for s in crop_starts(mel.shape[2], crop) if network is None else []:
            features.append(summary_features(mel[:, :, s : s + crop], cfg=feat))
            owners.append(rows)
        segments: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for i, (tid, offset) in enumerate(zip(ids, table["offset_s"].to_pylist(), strict=True)):
            segments[tid].append((offset, i))
        for tid, parts in segments.items():
            fingerprints[tid] = duplicates.fingerprint(_timeline([(o, mel[i]) for o, i in parts], feat), cfg=feat)
    if not index:
        raise DataError(f"dataset {manifest.dataset_id} has no segments to audit")
    crop_features = np.concatenate(features)
    if network is not None:  # dead channels: their rounding noise is no feature (see genreclf.models.embeddings)
        from genreclf.models.embeddings import live_columns

        crop_features = crop_features[:, live_columns(crop_features)]
    return _Tracks(
        ids=list(index), labels=np.asarray(labels, np.int64), artists=artists,
        crop_features=crop_features, crop_track=np.concatenate(owners), fingerprints=fingerprints,
    )  # fmt: skip


def _embedding_rows(store: Store, network: str, shard_key: str, table: pa.Table) -> np.ndarray:
    """The stored embeddings of a shard's segments, in the shard's order: (rows, dim)."""
    from genreclf.models.embeddings import embedding_array
    from genreclf.store.keys import embedding_key

    stored = store.read_parquet(embedding_key(network, shard_key))
    if stored["segment_id"].to_pylist() != table["segment_id"].to_pylist():
        raise DataError(f"{store.uri(embedding_key(network, shard_key))} does not follow its shard; delete it")
    return embedding_array(stored)


def _timeline(segments: list[tuple[float, np.ndarray]], feat: FeatureConfig) -> np.ndarray:
    """A track's segments (offset in seconds, (n_mels, frames)) joined into one (n_mels, frames) float32 timeline:
    where windows overlap (hop shorter than the window) the overlap is taken once; where a quiet window was left
    out, the next one follows on directly."""
    frames_per_s = feat.sample_rate / feat.hop_length
    parts: list[np.ndarray] = []
    end = 0
    for offset, mel in sorted(segments, key=lambda s: s[0]):
        start = round(offset * frames_per_s)
        skip = min(max(0, end - start), mel.shape[1]) if parts else 0
        parts.append(mel[:, skip:])
        end = max(end, start + mel.shape[1])
    return np.concatenate(parts, axis=1).astype(np.float32)


# --- out-of-fold probabilities -------------------------------------------------------------------------------


def _groups(n: int, artists: list[str | None], pairs: list[tuple[int, int]]) -> np.ndarray:
    """(n,) group of each track: tracks of one artist, and copies of one recording, share a group, so that no
    model scores a track after training on its artist or on another copy of it."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, artist in enumerate(artists):
        if artist is not None:
            parent[root(i)] = root(first.setdefault(artist, i))
    for a, b in pairs:
        parent[root(a)] = root(b)
    return np.array([root(i) for i in range(n)])


def out_of_fold_probabilities(
    crop_features: np.ndarray, crop_track: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
    num_classes: int, cfg: AuditConfig,
) -> np.ndarray:  # fmt: skip
    """(tracks, num_classes) probabilities of each track from models that never saw its group.

    Group k-fold, stratified by genre, `cfg.repeats` times with different assignments, averaged; a track's
    probabilities are the mean over its crops. A genre missing from a fold's training tracks gets probability 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(labels)
    folds = min(cfg.folds, len(np.unique(groups)))
    if folds < 2:
        raise DataError(f"{n} tracks in {folds} artist group: an audit needs tracks of at least 2 artists")
    crop_labels = labels[crop_track]
    total = np.zeros((n, num_classes))
    for r in range(cfg.repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=cfg.seed + r)
        with warnings.catch_warnings():  # a genre with fewer tracks than folds: sklearn warns, and copes
            warnings.simplefilter("ignore", UserWarning)
            assignments = list(splitter.split(np.zeros(n), labels, groups))
        for train, test in assignments:
            fit_rows = np.isin(crop_track, train)
            test_rows = np.isin(crop_track, test)
            model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.regularization, max_iter=2000))
            model.fit(crop_features[fit_rows], crop_labels[fit_rows])
            p = np.zeros((int(test_rows.sum()), num_classes))
            p[:, model.classes_] = model.predict_proba(crop_features[test_rows])
            sums = np.zeros((n, num_classes))
            np.add.at(sums, crop_track[test_rows], p)
            counts = np.bincount(crop_track[test_rows], minlength=n)
            total[test] += sums[test] / counts[test, None]
    return total / cfg.repeats


# --- the verdicts --------------------------------------------------------------------------------------------


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a cleanlab function without its progress prints and warnings on stdout."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning on out-of-fold probabilities -> ((tracks,) flagged, (tracks,) self-confidence)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = _quiet(get_label_quality_scores, labels, probs, method="self_confidence")
    present = np.unique(labels)
    if len(present) < 2:
        return np.zeros(len(labels), bool), quality
    # cleanlab wants every class it is given to hold a track: judge among the genres that have some.
    local = np.searchsorted(present, labels)
    sub = probs[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
    # n_jobs=1: cleanlab otherwise forks a multiprocessing pool, which can deadlock in a process that runs threads
    # (a Prefect worker's flow run hung for minutes on it in CI); the work is per genre and small.
    flagged = _quiet(find_label_issues, local, sub, filter_by="prune_by_noise_rate", n_jobs=1)
    return np.asarray(flagged, bool), np.asarray(quality, float)


def _outlier_scores(crop_features: np.ndarray, crop_track: np.ndarray, n: int) -> np.ndarray:
    """(tracks,) cleanlab's out-of-distribution score of each track's mean features: low = unlike the others."""
    from cleanlab.outlier import OutOfDistribution
    from sklearn.preprocessing import StandardScaler

    sums = np.zeros((n, crop_features.shape[1]))
    np.add.at(sums, crop_track, crop_features)
    x = StandardScaler().fit_transform(sums / np.bincount(crop_track, minlength=n)[:, None])
    if n < 3:
        return np.ones(n)
    ood = OutOfDistribution(params={"k": min(10, n - 1)})
    return np.asarray(_quiet(ood.fit_score, features=x), float)


def judge(
    ids: list[str], labels: np.ndarray, probs: np.ndarray, outlier: np.ndarray, lengths: np.ndarray,
    pairs: list[duplicates.DuplicatePair], *, genres: list[str], names: dict[str, str], cfg: AuditConfig,
) -> list[AuditRow]:  # fmt: skip
    """Every track's row, worst first (see the module docstring for how a track is judged).

    `probs` (tracks, genres) are out-of-fold probabilities, `outlier` (tracks,) out-of-distribution scores,
    `lengths` (tracks,) how much audio each track has (any unit), `names` what to call a track in a reason.
    """
    n = len(ids)
    flagged, quality = _label_issues(labels, probs)
    pos = {t: i for i, t in enumerate(ids)}
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

    # Copies: a group per recording. The copy with the most audio is kept (a trimmed copy goes), the others are
    # dropped. Copies labelled alike keep their label unless the kept one is itself likely mislabelled; copies
    # labelled differently get the genre their out-of-fold probabilities favour together.
    best: dict[int, duplicates.DuplicatePair] = {}
    groups = _groups(n, [None] * n, [(pos[p.a], pos[p.b]) for p in pairs])
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
    groups = _groups(n, tracks.artists, [(pos[p.a], pos[p.b]) for p in pairs])
    # On embeddings, the same logistic regression at the strength that suits them.
    oof_cfg = cfg if network is None else dataclasses.replace(cfg, regularization=cfg.embedding_regularization)
    probs = out_of_fold_probabilities(
        tracks.crop_features, tracks.crop_track, tracks.labels, groups, num_classes=len(manifest.labels), cfg=oof_cfg
    )
    lap("out_of_fold")
    outlier = _outlier_scores(tracks.crop_features, tracks.crop_track, n)
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
