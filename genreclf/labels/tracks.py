"""What the audit reads of each track, shard by shard: summary features of its crops (or its segments' stored
embeddings), its label and artist, and a fingerprint for finding copies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import iter_shard_tables, window_starts
from genreclf.datasets.manifest import Manifest
from genreclf.errors import DataError
from genreclf.labels import duplicates
from genreclf.store.storage import Store

if TYPE_CHECKING:
    from genreclf.labels.audit import AuditConfig


@dataclass
class Tracks:
    ids: list[str]
    labels: np.ndarray  # (tracks,) label index into the manifest's labels
    artists: list[str | None]
    crop_features: np.ndarray  # (crops, features)
    crop_track: np.ndarray  # (crops,) index into ids
    fingerprints: dict[str, np.ndarray]


def read_tracks(store: Store, manifest: Manifest, cfg: AuditConfig, network: str | None = None) -> Tracks:
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
        for s in window_starts(mel.shape[2], crop, cover_end=False) if network is None else []:
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
    return Tracks(
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
