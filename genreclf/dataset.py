"""Build a dataset: acquired tracks -> split -> log-mel shards -> manifest (the library behind build-dataset)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any

import numpy as np

from genreclf import audio
from genreclf.audio import SegmentConfig
from genreclf.errors import ConfigError
from genreclf.features import FeatureConfig, log_mel_batch
from genreclf.shards import SegmentRows, write_shard
from genreclf.storage import Store, audio_key, dataset_prefix

log = logging.getLogger(__name__)


def check_configs(seg: SegmentConfig, feat: FeatureConfig) -> None:
    if seg.sample_rate != feat.sample_rate:
        raise ConfigError(
            f"segment sample rate {seg.sample_rate} differs from the feature sample rate {feat.sample_rate}"
        )


def dataset_id_for(
    catalog_version: str, track_ids: list[str], *, seg: SegmentConfig, feat: FeatureConfig, split_seed: int
) -> str:
    """Same catalog, same usable tracks, same configs and seed -> same dataset id."""
    blob = json.dumps(
        [catalog_version, sorted(track_ids), dataclasses.asdict(seg), dataclasses.asdict(feat), split_seed]
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def shard_key(dataset_id: str, index: int) -> str:
    return f"{dataset_prefix(dataset_id)}/shards/part-{index:05d}.parquet"


def build_shard(
    store: Store,
    key: str,
    tracks: list[dict[str, Any]],
    *,
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
) -> dict[str, Any]:
    """Compute the log-mels of the tracks' windows and write them as one shard; return its manifest entry.

    Each track is a dict with track_id, artist_id, genre, split and offsets (seconds, from acquisition).
    """
    check_configs(seg, feat)
    label_of = {g: i for i, g in enumerate(labels)}
    win = round(seg.window_s * seg.sample_rate)
    rows = SegmentRows()
    for t in tracks:
        y, _ = audio.read_flac(store.read_bytes(audio_key(t["track_id"])))
        windows = []
        for off in t["offsets"]:
            start = round(off * seg.sample_rate)
            w = y[start : start + win]
            windows.append(np.pad(w, (0, win - len(w))) if len(w) < win else w)
        mel = log_mel_batch(np.stack(windows), cfg=feat)  # (n, n_mels, frames)
        for i, (off, m) in enumerate(zip(t["offsets"], mel, strict=True)):
            rows.segment_id.append(f"{t['track_id']}-{i:04d}")
            rows.track_id.append(t["track_id"])
            rows.artist_id.append(t.get("artist_id"))
            rows.genre.append(t["genre"])
            rows.label.append(label_of[t["genre"]])
            rows.split.append(t["split"])
            rows.offset_s.append(off)
            rows.mel.append(m)
    entry = write_shard(store, key, rows, feature_hash=feat.hash)
    log.info("wrote %s: %d segments of %d tracks", key, entry["rows"], len(tracks))
    return entry
