"""A dataset from a catalog version, without Prefect: decoded audio -> artist-grouped splits -> log-mel shards ->
manifest.

The stages, in the order and with the reuse the build-dataset flow gives them (flows/build_dataset.py runs each as
a task): acquisition in batches of tracks on a thread pool, one plan, shards on a thread pool, the manifest last.
For scripts, benchmarks and tests, and for anyone who wants a dataset from Python:

    from genreclf.datasets.build import build_dataset
    built = build_dataset(Store.open("./store"), "latest", DatasetParams().segment_config(), ...)
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from genreclf.acquisition.acquire import TrackResult, acquire_rows, acquire_track
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import DecodedAudio
from genreclf.datasets import dataset
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.manifest import Manifest, read_manifest, set_latest
from genreclf.datasets.shards import ShardEntry
from genreclf.ingest import catalog, overrides
from genreclf.ingest.catalog import CatalogRow
from genreclf.settings import Settings, get_settings
from genreclf.store.storage import Store

MAX_BATCH = 256  # tracks per acquisition batch at most


@dataclass(frozen=True)
class Built:
    """What `build_dataset` made or found."""

    plan: dataset.DatasetPlan
    manifest: Manifest
    new: bool  # False: a dataset of the same audio and settings was in the store, and is reused as it is
    shards_reused: int  # shards of a new dataset that were already in the store (an earlier, interrupted build)

    @property
    def dataset_id(self) -> str:
        return self.plan.dataset_id


def batches(n: int, *, workers: int, max_size: int = MAX_BATCH) -> list[range]:
    """Split n tracks into batches: about four per worker (so a slow batch does not hold the others up), at most
    `max_size` tracks each (so a retry or a crash costs little)."""
    if n == 0:
        return []
    size = min(max_size, max(1, math.ceil(n / (4 * workers))))
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def build_dataset(
    store: Store,
    catalog_version: str,
    seg: SegmentConfig,
    feat: FeatureConfig,
    *,
    split_seed: int = 0,
    assigned: dict[str, str] | None = None,
    shard_mb: float = 128.0,
    workers: int | None = None,
    settings: Settings | None = None,
) -> Built:
    """Build (or reuse) the dataset of `catalog_version` ("latest" or an id) with label overrides applied, on
    `workers` threads (default: this machine's cores). `assigned`: KEY -> split from a split file."""
    settings = settings or get_settings()
    workers = workers or os.cpu_count() or 2
    store.sweep_temp()
    version = overrides.apply_overrides(store, catalog.resolve_version(store, catalog_version))
    rows = catalog.rows_of(catalog.read_catalog(store, version))
    handoff = DecodedAudio()  # decoded samples go from acquisition to their shard, when both run here
    acquire = functools.partial(acquire_track, store, cfg=seg, yt=settings.youtube, handoff=handoff,
                                audio_format=settings.audio_format)  # fmt: skip
    results = acquire_in_batches(rows, acquire, workers=workers)
    plan = dataset.plan_dataset(store, version, rows, results, seg=seg, feat=feat, split_seed=split_seed,
                                assigned=assigned, shard_mb=shard_mb, handoff=handoff)  # fmt: skip
    if plan.built:
        set_latest(store, plan.dataset_id)
        return Built(plan, read_manifest(store, plan.dataset_id), new=False, shards_reused=0)
    reused = sum(store.exists(s.key) for s in plan.shards)

    def shard(s: dataset.ShardPlan) -> ShardEntry:
        return dataset.build_shard(store, s.key, s.tracks, labels=plan.labels, seg=seg, feat=feat, handoff=handoff)

    with ThreadPoolExecutor(workers) as pool:
        entries = list(pool.map(shard, plan.shards))
    return Built(plan, dataset.finish_dataset(store, plan, entries), new=True, shards_reused=reused)


def acquire_in_batches(
    rows: list[CatalogRow], acquire: Callable[[CatalogRow], TrackResult], *, workers: int
) -> list[TrackResult]:
    """`acquire` every row, a batch per thread at a time (`acquire_rows`: a bot check stops its batch); one result
    per row, in order."""
    parts = batches(len(rows), workers=workers)
    with ThreadPoolExecutor(workers) as pool:
        done = pool.map(lambda part: acquire_rows(rows[part.start : part.stop], acquire), parts)
        return [result for batch in done for result in batch]
