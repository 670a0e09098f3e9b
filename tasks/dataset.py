"""Tasks of build-dataset after acquisition (tasks/acquire.py): split, plan and compute shards, write the manifest."""

from __future__ import annotations

from typing import Any

from prefect import task

from genreclf import dataset, shards
from genreclf.audio import SegmentConfig
from genreclf.features import FeatureConfig
from genreclf.storage import Store
from tasks import CACHED


@task(name="split-by-artist", cache_policy=CACHED, persist_result=True)
def split_tracks(
    tracks: list[dict[str, Any]],
    seed: int,
    storage_url: str | None = None,
    parent: str | None = None,
    assigned: dict[str, str] | None = None,
) -> dict[str, str]:
    """track_id -> train/val/test: as `assigned` (a split file's) when given, else 60/20/20 grouped by artist
    and stratified by genre, keeping the assignment of the `parent` dataset (read from `storage_url`)."""
    previous = dataset.read_splits(Store.open(storage_url), parent) if storage_url and parent else None
    return dataset.split_tracks(tracks, seed=seed, previous=previous, assigned=assigned)


@task(name="read-split-file")
def read_split_file(split_file: str) -> dict[str, str]:
    """KEY -> split from a split file (not cached: the file may change)."""
    return dataset.load_split_file(split_file)


@task(name="plan-shards")
def plan_shards(
    storage_url: str,
    tracks: list[dict[str, Any]],
    parent: str | None,
    seg: SegmentConfig,
    feat: FeatureConfig,
    shard_mb: float,
) -> dict[str, Any]:
    """The label map and the shards to have ({labels, shards: [{key, tracks}]}), keeping the parent's groups."""
    store = Store.open(storage_url)
    before = dataset.read_splits(store, parent) if parent else None
    parent_labels = shards.read_manifest(store, parent).labels if parent else None
    labels = dataset.label_map({t["genre"] for t in tracks}, parent_labels)
    plans = dataset.plan_shards(
        tracks, labels=labels, seg=seg, feat=feat, target_bytes=shard_mb * 2**20,
        previous_shard_of=dict(before.select("track_id", "shard").iter_rows()) if before is not None else None,
    )  # fmt: skip
    return {"labels": labels, "shards": [{"key": p.key, "tracks": p.tracks} for p in plans]}


@task(name="log-mel-shard", task_run_name="shard-{index}", retries=2, retry_delay_seconds=5)
def build_shard(
    storage_url: str,
    key: str,
    tracks: list[dict[str, Any]],
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
    index: int = 0,
) -> dict[str, Any]:
    """One shard; not cached by Prefect: its key is derived from its content, and an existing one is reused."""
    return dataset.build_shard(Store.open(storage_url), key, tracks, labels=labels, seg=seg, feat=feat)


@task(name="write-splits")
def write_splits(storage_url: str, dataset_id: str, tracks: list[dict[str, Any]], plan: dict[str, Any]) -> str:
    plans = [dataset.ShardPlan(p["key"], p["tracks"]) for p in plan["shards"]]
    return dataset.write_splits(Store.open(storage_url), dataset_id, tracks, plans)


@task(name="write-manifest")
def write_manifest(storage_url: str, manifest: shards.Manifest) -> str:
    return shards.write_manifest(Store.open(storage_url), manifest)
