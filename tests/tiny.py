"""A tiny, separable dataset written straight to the store as real shards and a manifest (for model tests)."""

from __future__ import annotations

import dataclasses

import numpy as np

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.manifest import Manifest, write_manifest
from genreclf.datasets.shards import SegmentRows, write_shard
from genreclf.store.storage import Store

FEAT = FeatureConfig(n_mels=16, n_fft=256, hop_length=128)
SEG = SegmentConfig(window_s=0.5, hop_s=0.5)  # 0.5 s at 22,050 Hz -> 87 frames of hop 128


def make_tiny_dataset(
    store: Store,
    *,
    tracks_per_class: int = 6,
    classes: int = 3,
    seed: int = 0,
    feat: FeatureConfig = FEAT,
    seg: SegmentConfig = SEG,
    dataset_id: str = "tiny",
) -> Manifest:
    """Each class lights up its own band of mels; 2 segments per track; splits by track, 4/1/1 per class."""
    rng = np.random.default_rng(seed)
    frames = feat.window_frames(seg.window_s)
    rows = SegmentRows()
    labels = [f"genre{c}" for c in range(classes)]
    for c in range(classes):
        for t in range(tracks_per_class):
            split = "test" if t == 0 else "val" if t == 1 else "train"
            for s in range(2):
                mel = rng.normal(0, 1, (feat.n_mels, frames))
                band = slice(c * feat.n_mels // classes, (c + 1) * feat.n_mels // classes)
                mel[band] += 3.0
                rows.segment_id.append(f"c{c}t{t}-{s}")
                rows.track_id.append(f"c{c}t{t}")
                rows.artist_id.append(None)
                rows.genre.append(labels[c])
                rows.label.append(c)
                rows.split.append(split)
                rows.offset_s.append(s * seg.hop_s)
                rows.mel.append(mel.astype(np.float32))
    entry = write_shard(store, f"datasets/{dataset_id}/shards/part-00000.parquet", rows, feature_hash=feat.hash)
    manifest = Manifest(
        dataset_id=dataset_id,
        catalog_version="tiny-catalog",
        feature_config=dataclasses.asdict(feat),
        feature_hash=feat.hash,
        segment_config=dataclasses.asdict(seg),
        labels=labels,
        split_seed=0,
        shards=[entry],
    )
    write_manifest(store, manifest)
    return manifest
