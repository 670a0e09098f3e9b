"""build-dataset: catalog -> decoded audio -> artist-grouped splits -> log-mel shards (threads or Dask) -> manifest."""

from __future__ import annotations

import math
import os
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from genreclf.acquisition.acquire import TrackResult
from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets import shards
from genreclf.datasets.dataset import DatasetPlan, read_plan, write_plan
from genreclf.datasets.manifest import set_latest
from genreclf.datasets.shards import ShardEntry
from genreclf.flows import events
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog, overrides
from genreclf.settings import Settings, get_settings
from genreclf.store.keys import quarantine_key
from genreclf.store.storage import Store
from genreclf.tasks import wait_for
from genreclf.tasks.acquire import acquire_tracks, as_is
from genreclf.tasks.catalog import read_catalog_rows
from genreclf.tasks.dataset import build_shard, finish_dataset, plan_dataset, read_split_file
from genreclf.tasks.progress import Progress


def feature_task_runner(settings: Settings | None = None) -> TaskRunner[Any]:
    """The Dask cluster at GENRECLF_DASK_ADDRESS when set, else threads on this machine: acquisition batches and
    shards run there."""
    address = (settings or get_settings()).dask_address
    if address:
        from prefect_dask import DaskTaskRunner  # imported here: only a Dask deployment needs it

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2)


def feature_workers(settings: Settings | None = None) -> int:
    """Tasks `feature_task_runner` runs at once: the Dask cluster's threads, or this machine's cores."""
    address = (settings or get_settings()).dask_address
    if address:
        from distributed import Client

        with Client(address, timeout=30) as client:
            return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 2


@flow(name="acquire-audio", flow_run_name="acquire-audio-{catalog_version}")
def acquire_audio(storage_url: str, catalog_version: str, seg: SegmentConfig) -> list[TrackResult]:
    """Bring every track's audio into the store, in batches on this flow's task runner (threads, or Dask).

    Takes the catalog version, not its rows: a subflow's parameters are validated and stored by Prefect.
    """
    rows = catalog.rows_of(catalog.read_catalog(Store.open(storage_url), catalog_version))
    return acquire_tracks(storage_url, rows, seg, workers=feature_workers())


@flow(name="compute-shards", flow_run_name="compute-shards-{dataset_id}")
def compute_shards(storage_url: str, dataset_id: str) -> list[ShardEntry]:
    """Compute the planned log-mel shards (existing ones are reused) on this flow's task runner.

    Takes the dataset id, not the plan: a subflow's parameters are validated and stored by Prefect, and a plan
    holds every track's offsets.
    """
    return build_shards(storage_url, read_plan(Store.open(storage_url), dataset_id))


def build_shards(storage_url: str, plan: DatasetPlan) -> list[ShardEntry]:
    """The plan's shards as tasks on the current flow's task runner (call inside a flow), in plan order."""
    futures = [
        build_shard.submit(storage_url, s.key, as_is(s.tracks), plan.labels, plan.seg, plan.feat, index=i)
        for i, s in enumerate(plan.shards)
    ]
    progress = Progress(len(futures), "shards written")
    entries = []
    for f in futures:
        wait_for(f)
        entries.append(f.result())
        progress.advance()
    return entries


@flow(
    name="build-dataset",
    flow_run_name="build-dataset-{catalog_version}",
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2),  # type: ignore[arg-type]
)
def build_dataset(
    catalog_version: str = "latest", params: DatasetParams | None = None, storage_url: str | None = None
) -> str:
    """Build (or reuse) the dataset of a catalog version; returns the dataset id."""
    logger = get_run_logger()
    params = params or DatasetParams()
    store = Store.open(storage_url)
    if swept := store.sweep_temp():  # what writes killed mid-way left behind (an hour old or more)
        logger.info("removed %d temporary files of interrupted writes from %s", swept, store.url)
    version = catalog.resolve_version(store, catalog_version)
    version = overrides.apply_overrides(store, version)  # the verdicts users accepted from label audits
    seg, feat = params.segment_config(), params.feature_config()

    # On a Dask cluster the tasks run in subflows with the Dask runner; otherwise on this flow's own threads, as a
    # subflow would only add its own start and end (about a second each against a server).
    on_dask = bool(get_settings().dask_address)
    rows = read_catalog_rows(store.url, version)
    if on_dask:
        results = acquire_audio.with_options(task_runner=feature_task_runner())(store.url, version, seg)
    else:
        results = acquire_tracks(store.url, rows, seg)
    assigned = read_split_file(params.split_file) if params.split_file else None
    plan = plan_dataset(
        store.url, version, as_is(rows), as_is(results), seg, feat, params.split_seed, assigned, params.shard_mb
    )
    report_quarantine(plan, len(rows), store)
    if plan.built:
        logger.info("dataset %s is already built from the same audio; reusing it", plan.dataset_id)
        set_latest(store, plan.dataset_id)
        events.dataset_built(plan.dataset_id, new=False, storage_url=store.url)
        return plan.dataset_id

    for warning in plan.warnings:
        logger.warning(warning)
    reused = sum(store.exists(s.key) for s in plan.shards)
    logger.info("dataset %s: %d tracks in %d shards (%d already computed), parent %s",
                plan.dataset_id, len(plan.tracks), len(plan.shards), reused, plan.parent)  # fmt: skip
    if on_dask:
        write_plan(store, plan)  # the subflow reads it, rather than taking every track's offsets as parameters
        entries = compute_shards.with_options(task_runner=feature_task_runner())(store.url, plan.dataset_id)
    else:
        entries = build_shards(store.url, plan)
    manifest = finish_dataset(store.url, plan, entries)
    counts = manifest.counts()
    create_table_artifact(
        [{"split": s, "segments": manifest.rows(s)} for s in shards.SPLITS]
        + [{"genre": g, "segments": n} for g, n in sorted(counts["genres"].items())],
        key="dataset-stats",
        description=f"dataset {plan.dataset_id}: {manifest.rows()} segments of {len(plan.tracks)} tracks, "
        f"{len(manifest.shards)} shards ({reused} reused), "
        f"{math.ceil(sum(e['bytes'] for e in manifest.shards) / 2**20)} MB",
    )
    events.dataset_built(plan.dataset_id, new=True, storage_url=store.url)
    return plan.dataset_id


def report_quarantine(plan: DatasetPlan, n_tracks: int, store: Store) -> None:
    """The `quarantine` table artifact and a warning naming where it is kept, when anything was left out (the
    artifact goes with a temporary Prefect server; the store's copy, written with the dataset, stays)."""
    if not plan.quarantined:
        return
    skipped = sum(q["stage"] == "scan" for q in plan.quarantined)
    tracks = len(plan.quarantined) - skipped
    summary = f"{tracks} of {n_tracks} tracks quarantined in catalog {plan.catalog_version}" + (
        f"; {skipped} scanned entries skipped" if skipped else ""
    )
    create_table_artifact(
        [{"track_id": q.get("track_id") or q.get("path"), "stage": q["stage"], "reason": q["reason"]}
         for q in plan.quarantined],
        key="quarantine",
        description=summary,
    )  # fmt: skip
    where = store.uri(quarantine_key(plan.dataset_id))
    get_run_logger().warning("%s: kept in %s with the dataset, and in the quarantine artifact", summary, where)
