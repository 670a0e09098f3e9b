"""Segment rows and shard keys written by hand, small enough to read: for the shard, loader and manifest tests
(and a writer they run in a subprocess)."""

from __future__ import annotations

import numpy as np

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.shards import SegmentRows
from genreclf.store.keys import dataset_prefix

FEAT = FeatureConfig(n_mels=16, n_fft=256, hop_length=128)


def shard_key(dataset_id: str, index: int) -> str:
    """A per-dataset key for shards written by hand (the flow uses content keys from `plan_shards`)."""
    return f"{dataset_prefix(dataset_id)}/shards/part-{index:05d}.parquet"


SEG = SegmentConfig(window_s=0.25, hop_s=0.25)
WIN = round(SEG.window_s * SEG.sample_rate)
N_MELS, FRAMES = FEAT.n_mels, FEAT.frames(WIN)  # 16, 44
LABELS = ["jazz", "rock"]


def make_rows(rng: np.random.Generator, splits: list[str], *, prefix: str = "t") -> SegmentRows:
    """One segment per entry of `splits`, two segments per track, genres alternating by track."""
    rows = SegmentRows()
    for i, split in enumerate(splits):
        track = i // 2
        genre = LABELS[track % 2]
        rows.segment_id.append(f"{prefix}{track}-{i % 2:04d}")
        rows.track_id.append(f"{prefix}{track}")
        rows.artist_id.append(f"artist{track}" if track % 3 else None)
        rows.genre.append(genre)
        rows.label.append(LABELS.index(genre))
        rows.split.append(split)
        rows.offset_s.append((i % 2) * SEG.hop_s)
        rows.mel.append(rng.normal(-4, 2, (N_MELS, FRAMES)).astype(np.float32))
    return rows


SPLITS_A = ["train", "train", "val", "val", "test", "test", "train", "train"]
