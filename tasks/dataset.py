"""Tasks of build-dataset: acquire audio, split, compute log-mel shards, write the manifest."""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect import task

from genreclf import data, dataset, shards
from genreclf.acquire import acquire_track
from genreclf.audio import SegmentConfig
from genreclf.features import FeatureConfig
from genreclf.storage import Store
from tasks import CACHED
from tasks._retry import transient_only


@task(
    name="acquire",
    task_run_name="acquire-batch-{index}",
    cache_policy=CACHED,
    persist_result=True,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=transient_only,
)
def acquire_batch(storage_url: str, rows: list[dict[str, Any]], seg: SegmentConfig, index: int = 0) -> list[dict]:
    """Decode a batch of tracks into the store; each result says ok (with offsets) or why it was quarantined."""
    store = Store.open(storage_url)
    return [acquire_track(store, row, cfg=seg).to_dict() for row in rows]


@task(name="split-by-artist", cache_policy=CACHED, persist_result=True)
def split_tracks(tracks: list[dict[str, Any]], seed: int) -> dict[str, str]:
    """track_id -> train/val/test, 60/20/20 grouped by artist and stratified by genre."""
    frame = pl.DataFrame(tracks).select("track_id", "artist_id", "genre", "isrc")
    return dict(data.assign_splits(frame, seed=seed).iter_rows())


@task(
    name="log-mel-shard",
    task_run_name="shard-{index}",
    cache_policy=CACHED,
    persist_result=True,
    retries=2,
    retry_delay_seconds=5,
)
def build_shard(
    storage_url: str,
    dataset_id: str,
    index: int,
    tracks: list[dict[str, Any]],
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
) -> dict[str, Any]:
    store = Store.open(storage_url)
    key = dataset.shard_key(dataset_id, index)
    return dataset.build_shard(store, key, tracks, labels=labels, seg=seg, feat=feat)


@task(name="write-manifest")
def write_manifest(storage_url: str, manifest: shards.Manifest) -> str:
    return shards.write_manifest(Store.open(storage_url), manifest)
