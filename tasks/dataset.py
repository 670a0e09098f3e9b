"""Tasks of build-dataset after acquisition (tasks/acquire.py): plan the dataset, compute its shards, finish it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from genreclf.acquisition.acquire import TrackResult
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import process_handoff
from genreclf.datasets import dataset, splits
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.manifest import Manifest
from genreclf.datasets.shards import ShardEntry
from genreclf.datasets.tracks import PlannedTrack
from genreclf.ingest.catalog import CatalogRow
from genreclf.store.storage import Store


@task(name="read-split-file")
def read_split_file(split_file: str) -> dict[str, str]:
    """KEY -> split from a split file (not cached: the file may change)."""
    return splits.load_split_file(split_file)


@task(name="plan-dataset", cache_policy=NO_CACHE)
def plan_dataset(
    storage_url: str,
    version: str,
    rows: list[CatalogRow],
    results: list[TrackResult],
    seg: SegmentConfig,
    feat: FeatureConfig,
    split_seed: int,
    assigned: dict[str, str] | None,
    shard_mb: float,
) -> dataset.DatasetPlan:
    """Usable tracks, their splits and shards, and the dataset id (not cached: it reads the store's lineage)."""
    return dataset.plan_dataset(
        Store.open(storage_url), version, rows, results, seg=seg, feat=feat, split_seed=split_seed,
        assigned=assigned, shard_mb=shard_mb, handoff=process_handoff(),
    )  # fmt: skip


@task(name="log-mel-shard", task_run_name="shard-{index}", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def build_shard(
    storage_url: str,
    key: str,
    tracks: list[PlannedTrack],
    labels: list[str],
    seg: SegmentConfig,
    feat: FeatureConfig,
    index: int = 0,
) -> ShardEntry:
    """One shard; not cached by Prefect: its key is derived from its content, and an existing one is reused."""
    store = Store.open(storage_url)
    return dataset.build_shard(store, key, tracks, labels=labels, seg=seg, feat=feat, handoff=process_handoff())


@task(name="finish-dataset", cache_policy=NO_CACHE)
def finish_dataset(storage_url: str, plan: dataset.DatasetPlan, entries: list[ShardEntry]) -> Manifest:
    """The quarantine and splits tables, then the manifest (last)."""
    return dataset.finish_dataset(Store.open(storage_url), plan, entries)
