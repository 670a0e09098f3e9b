"""Build a dataset: acquired tracks -> split -> log-mel shards -> manifest (the library behind build-dataset)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from genreclf import interrupts
from genreclf.acquisition import audio
from genreclf.acquisition.acquire import TrackResult
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import DecodedAudio
from genreclf.datasets.features import FeatureConfig, features_batch, one_torch_thread
from genreclf.datasets.manifest import Manifest, read_manifest, write_manifest
from genreclf.datasets.shards import SPLITS, SegmentRows, ShardEntry, ShardWriter, read_shard_entry, split_rank
from genreclf.datasets.splits import split_source_of, split_tracks
from genreclf.datasets.tracks import PlannedTrack, split_warnings, usable_tracks
from genreclf.errors import ConfigError, DataError, StorageError
from genreclf.ingest import catalog
from genreclf.ingest.catalog import CatalogRow
from genreclf.store.keys import (
    audio_key,
    content_id,
    lineage_key,
    manifest_key,
    plan_key,
    quarantine_key,
    shard_content_key,
    splits_key,
)
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

# Windows per log-mel call: enough for torch to batch the FFTs, few enough (32 x 30 s = 85 MB) to stay small.
BATCH_WINDOWS = 32
# Bumped when the bytes of a shard change for the same tracks and configs (layout, encoding).
SHARD_FORMAT = 2


def check_configs(seg: SegmentConfig, feat: FeatureConfig) -> None:
    """Audio is decoded at `seg.sample_rate` and resampled for features at another rate; upsampling adds nothing."""
    if feat.sample_rate > seg.sample_rate:
        raise ConfigError(
            f"feature sample rate {feat.sample_rate} is above the decoding rate {seg.sample_rate}; decode at "
            f"{feat.sample_rate} Hz or more"
        )


def dataset_id_for(
    catalog_version: str,
    audio_of: dict[str, str],
    *,
    seg: SegmentConfig,
    feat: FeatureConfig,
    split_seed: int,
    split_source: str = "seed",
) -> str:
    """Same catalog, same usable tracks with the same decoded audio (`audio_of`: track id -> sha256 of its
    samples), same configs, seed and split source -> same dataset id."""
    parts: list[Any] = [catalog_version, sorted(audio_of.items()), dataclasses.asdict(seg), dataclasses.asdict(feat)]
    parts.append(split_seed)
    if split_source != "seed":  # ids of datasets built before split files stay the same
        parts.append(split_source)
    return content_id(parts, length=16)


def lineage_for(*, split_seed: int, split_source: str = "seed") -> str:
    """Datasets that keep each other's split assignment: same seed, same split source (the seed or a file)."""
    return content_id(["lineage", split_seed, split_source], length=12)


def lineage_head(store: Store, lineage: str) -> str | None:
    """The newest completed dataset of a lineage in this store, if any."""
    key = lineage_key(lineage)
    return store.read_text(key).strip() if store.exists(key) else None


def read_splits(store: Store, dataset_id: str) -> pl.DataFrame | None:
    """A dataset's table of tracks (track_id, artist_id, isrc, genre, split, shard); None if it has none."""
    key = splits_key(dataset_id)
    if not store.exists(key):
        return None
    return pl.from_arrow(store.read_parquet(key))  # type: ignore[return-value]


# --- planning shards ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardPlan:
    """Where each group of tracks goes: `key` is derived from everything in the shard."""

    key: str
    tracks: list[PlannedTrack]


def label_map(genres: set[str], previous: list[str] | None = None) -> list[str]:
    """Label index -> genre. A parent's map is kept and new genres appended, so its shards stay valid."""
    if previous and set(previous) <= genres:
        return [*previous, *sorted(genres - set(previous))]
    return sorted(genres)


def shard_key_for(tracks: list[PlannedTrack], *, labels: list[str], seg: SegmentConfig, feat: FeatureConfig) -> str:
    """The content-derived key of the shard holding `tracks` (track_id, artist_id, genre, split, offsets)."""
    label_of = {g: i for i, g in enumerate(labels)}
    rows = [
        [t["track_id"], t.get("audio_hash"), t.get("artist_id"), t["genre"], label_of[t["genre"]], t["split"],
         list(t["offsets"])]
        for t in tracks
    ]  # fmt: skip
    content = content_id([SHARD_FORMAT, dataclasses.asdict(seg), dataclasses.asdict(feat), rows], length=20)
    return shard_content_key(feat.hash, content)


def plan_shards(
    tracks: list[PlannedTrack],
    *,
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
    target_bytes: float,
    previous_shard_of: dict[str, str] | None = None,
) -> list[ShardPlan]:
    """Group tracks into shards of about `target_bytes` of float16 spectrograms.

    Tracks that were together in a shard of the parent dataset stay together (when all of them are still
    here), so an unchanged group gets the same key and is reused; the other tracks are packed into new
    shards, by split, then track id.
    """
    frames = feat.window_frames(seg.window_s)
    bytes_per_segment = 2 * feat.n_mels * frames
    previous_shard_of = previous_shard_of or {}
    here = {t["track_id"] for t in tracks}
    members: dict[str, list[str]] = {}
    for tid, key in previous_shard_of.items():
        members.setdefault(key, []).append(tid)
    whole = {key for key, tids in members.items() if all(t in here for t in tids)}
    kept: dict[str, list[PlannedTrack]] = {}
    loose: list[PlannedTrack] = []
    for t in tracks:
        old = previous_shard_of.get(t["track_id"])
        if old in whole:
            kept.setdefault(old, []).append(t)
        else:
            loose.append(t)

    def order(t: PlannedTrack) -> tuple[int, str]:  # one order inside every shard, so keys are reproducible
        return SPLITS.index(t["split"]), t["track_id"]

    groups = [sorted(kept[k], key=order) for k in sorted(kept)]
    loose.sort(key=order)
    current: list[PlannedTrack] = []
    size = 0
    for t in loose:
        if current and size + len(t["offsets"]) * bytes_per_segment > target_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(t)
        size += len(t["offsets"]) * bytes_per_segment
    if current:
        groups.append(current)
    return [ShardPlan(shard_key_for(g, labels=labels, seg=seg, feat=feat), g) for g in groups]


def write_splits(store: Store, dataset_id: str, tracks: list[PlannedTrack], plans: list[ShardPlan]) -> str:
    """Write the dataset's track table (track_id, artist_id, isrc, genre, split, shard); return its key."""
    shard_of = {t["track_id"]: p.key for p in plans for t in p.tracks}
    cols = ["track_id", "artist_id", "isrc", "genre", "split"]
    frame = pl.DataFrame(
        [[t.get(c) for c in cols] + [shard_of[t["track_id"]]] for t in tracks],
        schema={c: pl.String for c in [*cols, "shard"]},
        orient="row",
    )
    key = splits_key(dataset_id)
    store.write_parquet(key, frame.sort("track_id").to_arrow(), compression="zstd")
    return key


# --- computing shards ---------------------------------------------------------------------------------------


def _windows(
    store: Store, tracks: list[PlannedTrack], win: int, sr: int, handoff: DecodedAudio | None
) -> Iterator[np.ndarray]:
    """Samples (win,) of every window of the tracks, in order, tails zero-padded: from the samples acquisition
    handed over, else from the stored FLAC (the same values)."""
    for t in tracks:
        interrupts.check()  # a shard takes minutes: a Ctrl-C must not wait for it
        y = handoff.take(t["audio_hash"], sr) if handoff is not None and t.get("audio_hash") else None
        if y is None:
            key = t.get("audio_key") or audio_key(t["track_id"])
            y, got_sr = audio.read_stored(store.read_bytes(key))
            if got_sr != sr:
                raise DataError(f"{store.uri(key)}: {got_sr} Hz, expected {sr} Hz; acquire it again")
        for off in t["offsets"]:
            start = round(off * sr)
            w = y[start : start + win]
            yield np.pad(w, (0, win - len(w))) if len(w) < win else w


def build_shard(
    store: Store,
    key: str,
    tracks: list[PlannedTrack],
    *,
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
    batch_windows: int = BATCH_WINDOWS,
    handoff: DecodedAudio | None = None,
) -> ShardEntry:
    """Compute the log-mels of the tracks' windows and write them as one shard; return its manifest entry.

    Each track's windows start at its `offsets` (seconds, from acquisition). A track's samples are taken from
    `handoff` when acquisition left them there, else read from its FLAC in the store.
    Windows are batched across tracks for the torch log-mel. A shard already at `key` (keys are derived from
    the content) is not computed again.
    """
    check_configs(seg, feat)
    if store.exists(key):
        try:
            entry = read_shard_entry(store, key)
            log.info("%s exists (%d segments); reusing it", key, entry["rows"])
            if handoff is not None:
                handoff.discard((t["audio_hash"] for t in tracks), seg.sample_rate)
            return entry
        except (OSError, StorageError) as e:  # unreadable: compute it again
            log.warning("%s exists but cannot be read (%s); computing it again", key, e)
    # Rows in the shard's order (train, val, test; plan_shards' order already), so that each row group can be
    # written as soon as its spectrograms are computed.
    tracks = sorted(tracks, key=lambda t: split_rank(t["split"]))
    label_of = {g: i for i, g in enumerate(labels)}
    rows = SegmentRows()
    for t in tracks:
        for wi, off in enumerate(t["offsets"]):
            rows.segment_id.append(f"{t['track_id']}-{wi:04d}")
            rows.track_id.append(t["track_id"])
            rows.artist_id.append(t.get("artist_id"))
            rows.genre.append(t["genre"])
            rows.label.append(label_of[t["genre"]])
            rows.split.append(t["split"])
            rows.offset_s.append(off)
    win = round(seg.window_s * seg.sample_rate)
    frames = feat.window_frames(seg.window_s)
    writer = ShardWriter(store, key, rows, n_mels=feat.n_mels, frames=frames, feature_hash=feat.hash)
    batch: list[np.ndarray] = []
    # Shards are built a core each (a thread pool, or Dask workers); the shard streams to the store as it grows.
    with one_torch_thread(), writer:
        for w in _windows(store, tracks, win, seg.sample_rate, handoff):
            batch.append(w)
            if len(batch) >= batch_windows:
                writer.add(features_batch(np.stack(batch), sample_rate=seg.sample_rate, cfg=feat).astype(np.float16))
                batch.clear()
        if batch:
            writer.add(features_batch(np.stack(batch), sample_rate=seg.sample_rate, cfg=feat).astype(np.float16))
        entry = writer.close()
    log.info("wrote %s: %d segments of %d tracks", key, entry["rows"], len(tracks))
    return entry


# --- the whole build ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPlan:
    """What build-dataset makes of a catalog version: the tracks with their split, the shards to have, and the id.

    `quarantined` lists what was left out and why ({track_id or path, stage, reason}). `built` is True when a
    completed dataset with this id is already in the store (then `tracks` and `shards` are empty: nothing to do).
    """

    dataset_id: str
    catalog_version: str
    seg: SegmentConfig
    feat: FeatureConfig
    split_seed: int
    split_source: str
    lineage: str
    parent: str | None
    labels: list[str]
    tracks: list[PlannedTrack]
    shards: list[ShardPlan]
    quarantined: list[dict[str, Any]]
    warnings: list[str]
    built: bool = False


def plan_dataset(
    store: Store,
    version: str,
    rows: list[CatalogRow],
    results: list[TrackResult],
    *,
    seg: SegmentConfig,
    feat: FeatureConfig,
    split_seed: int,
    assigned: dict[str, str] | None = None,
    shard_mb: float = 128.0,
    handoff: DecodedAudio | None = None,
) -> DatasetPlan:
    """Plan the dataset of catalog `version` from its rows and their acquisition results.

    Keeps each recording once (`usable_tracks`), derives the dataset id from the catalog, the decoded audio, the
    configs and the split source, and, unless that dataset is built already, splits the tracks (keeping the
    newest dataset of its lineage's assignment, or as `assigned` by a split file) and groups them into shards.
    The samples acquisition left in `handoff` for tracks the plan leaves out are dropped from it.
    """
    check_configs(seg, feat)
    usable, dropped = usable_tracks(rows, results)
    quarantined: list[dict[str, Any]] = [*catalog.read_skipped(store, version), *(r.to_dict() for r in dropped)]
    if not usable:
        stages = Counter(str(q.get("stage", "?")) for q in quarantined)
        why = ", ".join(f"{n} at {stage}" for stage, n in stages.most_common())
        raise DataError(
            f"catalog {version}: no track is usable ({len(quarantined)} left out: {why}; each is named above with "
            f"its reason). Fix or replace those files{' or use longer ones' if 'segment' in stages else ''}"
        )
    split_source = split_source_of(assigned)
    dataset_id = dataset_id_for(
        version, {t["track_id"]: t["audio_hash"] for t in usable}, seg=seg, feat=feat, split_seed=split_seed,
        split_source=split_source,
    )  # fmt: skip
    lineage = lineage_for(split_seed=split_seed, split_source=split_source)
    plan = DatasetPlan(
        dataset_id=dataset_id, catalog_version=version, seg=seg, feat=feat, split_seed=split_seed,
        split_source=split_source, lineage=lineage, parent=None, labels=[], tracks=[], shards=[],
        quarantined=quarantined, warnings=[], built=store.exists(manifest_key(dataset_id)),
    )  # fmt: skip
    if plan.built:
        _release_unplanned(handoff, results, [], seg.sample_rate)
        return plan

    parent = lineage_head(store, lineage)
    before = read_splits(store, parent) if parent else None
    split_of = split_tracks(usable, seed=split_seed, previous=before, assigned=assigned)
    tracks: list[PlannedTrack] = [
        {"track_id": t["track_id"], "artist_id": t.get("artist_id"), "isrc": t.get("isrc"), "genre": t["genre"],
         "offsets": t["offsets"], "audio_key": t["audio_key"], "audio_hash": t["audio_hash"],
         "split": split_of[t["track_id"]]}
        for t in usable if t["track_id"] in split_of
    ]  # fmt: skip
    if not tracks:
        raise DataError(f"catalog {version}: the split file lists none of the usable tracks")
    labels = label_map({t["genre"] for t in tracks}, read_manifest(store, parent).labels if parent else None)
    plans = plan_shards(
        tracks, labels=labels, seg=seg, feat=feat, target_bytes=shard_mb * 2**20,
        previous_shard_of=dict(before.select("track_id", "shard").iter_rows()) if before is not None else None,
    )  # fmt: skip
    _release_unplanned(handoff, results, tracks, seg.sample_rate)
    return dataclasses.replace(
        plan, parent=parent, labels=labels, tracks=tracks, shards=plans, warnings=split_warnings(tracks)
    )


def _release_unplanned(
    handoff: DecodedAudio | None, results: list[TrackResult], tracks: list[PlannedTrack], sr: int
) -> None:
    """Drop from `handoff` the samples no shard of the plan will take (by hash: a kept copy shares its hash)."""
    if handoff is not None:
        planned = {t["audio_hash"] for t in tracks}
        handoff.discard({r.audio_hash for r in results if r.ok and r.audio_hash not in planned}, sr)


def _with_known_hashes(store: Store, parent: str | None, entries: list[ShardEntry]) -> list[ShardEntry]:
    """Entries of reused shards (read from the store, which records no hash) with the sha256 the parent's manifest
    recorded when it wrote them, so that `genreclf verify` can check them after the parent is collected."""
    if parent is None or all("sha256" in e for e in entries) or not store.exists(manifest_key(parent)):
        return entries
    known = {e["key"]: e["sha256"] for e in read_manifest(store, parent).shards if "sha256" in e}
    return [{**e, "sha256": known[e["key"]]} if "sha256" not in e and e["key"] in known else e for e in entries]


def finish_dataset(store: Store, plan: DatasetPlan, entries: list[ShardEntry]) -> Manifest:
    """Write the quarantine table, the splits table and, last, the manifest of a planned dataset whose shards
    (`entries`, as `build_shard` returned them) are written; point LATEST and the lineage at it."""
    store.write_json(quarantine_key(plan.dataset_id), plan.quarantined)
    entries = _with_known_hashes(store, plan.parent, entries)
    manifest = Manifest(
        dataset_id=plan.dataset_id,
        catalog_version=plan.catalog_version,
        feature_config=dataclasses.asdict(plan.feat),
        feature_hash=plan.feat.hash,
        segment_config=dataclasses.asdict(plan.seg),
        labels=plan.labels,
        split_seed=plan.split_seed,
        shards=entries,
        splits_key=write_splits(store, plan.dataset_id, plan.tracks, plan.shards),
        parent=plan.parent,
        lineage=plan.lineage,
        split_source=plan.split_source,
        warnings=plan.warnings,
    )
    write_manifest(store, manifest)
    return manifest


def write_plan(store: Store, plan: DatasetPlan) -> str:
    """Store a plan, so the shard computation is handed a dataset id, not every track's offsets."""
    return store.write_json(plan_key(plan.dataset_id), dataclasses.asdict(plan))


def read_plan(store: Store, dataset_id: str) -> DatasetPlan:
    """The plan `write_plan` stored for `dataset_id`."""
    d = json.loads(store.read_bytes(plan_key(dataset_id)))
    return DatasetPlan(**{
        **d,
        "seg": SegmentConfig(**d["seg"]),
        "feat": FeatureConfig(**d["feat"]),
        "shards": [ShardPlan(**s) for s in d["shards"]],
    })  # fmt: skip
