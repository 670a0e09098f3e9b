"""build-dataset: catalog -> decoded audio -> artist-grouped splits -> log-mel shards (threads or Dask) -> manifest."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows import events
from flows.params import DatasetParams
from genreclf import catalog, dataset, shards
from genreclf.audio import SegmentConfig
from genreclf.errors import DataError
from genreclf.features import FeatureConfig
from genreclf.settings import Settings, get_settings
from genreclf.storage import Store, dataset_prefix
from tasks.acquire import acquire_tracks
from tasks.catalog import read_catalog_rows
from tasks.dataset import build_shard, plan_shards, read_split_file, split_tracks, write_manifest, write_splits
from tasks.progress import Progress


def feature_task_runner(settings: Settings | None = None) -> TaskRunner[Any]:
    """The Dask cluster at GENRECLF_DASK_ADDRESS when set, else threads on this machine."""
    address = (settings or get_settings()).dask_address
    if address:
        from prefect_dask import DaskTaskRunner  # imported here: only a Dask deployment needs it

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=os.cpu_count() or 2)


@flow(name="compute-shards", flow_run_name="compute-shards-{dataset_id}")
def compute_shards(storage_url: str, dataset_id: str, plan: dict[str, Any], seg: SegmentConfig,
                   feat: FeatureConfig) -> list[dict[str, Any]]:  # fmt: skip
    """Compute the planned log-mel shards (existing ones are reused) on this flow's task runner."""
    futures = [
        build_shard.submit(storage_url, s["key"], s["tracks"], plan["labels"], seg, feat, index=i)
        for i, s in enumerate(plan["shards"])
    ]
    progress = Progress(len(futures), f"shards written ({len(futures)})")
    entries = []
    for f in futures:
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
    seg, feat = params.segment_config(), params.feature_config()
    dataset.check_configs(seg, feat)

    rows = read_catalog_rows(store.url, version)
    results = acquire_tracks(store.url, rows, seg)
    usable, quarantined = dataset.usable_tracks(rows, results)
    skipped = catalog.read_skipped(store, version)  # by the scan: dangling or looping links
    if quarantined or skipped:
        create_table_artifact(
            [{"track_id": r.get("track_id") or r.get("path"), "stage": r["stage"], "reason": r["reason"]}
             for r in skipped + quarantined],
            key="quarantine",
            description=f"{len(quarantined)} of {len(rows)} tracks quarantined in catalog {version}"
            + (f"; {len(skipped)} scanned entries skipped" if skipped else ""),
        )  # fmt: skip
        logger.warning("%d of %d tracks quarantined%s (see the quarantine artifact)", len(quarantined), len(rows),
                       f", {len(skipped)} scanned entries skipped" if skipped else "")  # fmt: skip
    quarantined = skipped + quarantined
    if not usable:
        raise DataError(f"catalog {version}: no track could be decoded; see the quarantine table for why")

    assigned = read_split_file(params.split_file) if params.split_file else None
    split_source = dataset.split_source_of(assigned)
    dataset_id = dataset.dataset_id_for(
        version,
        {t["track_id"]: t["audio_hash"] for t in usable},
        seg=seg,
        feat=feat,
        split_seed=params.split_seed,
        split_source=split_source,
    )
    if store.exists(f"{dataset_prefix(dataset_id)}/manifest.json"):
        logger.info("dataset %s is already built from the same audio; reusing it", dataset_id)
        store.write_text(shards.DATASET_LATEST, dataset_id)
        events.dataset_built(dataset_id, new=False, storage_url=store.url)
        return dataset_id

    # Incremental: the newest dataset of this lineage keeps its splits and its groups of tracks per shard.
    lineage = dataset.lineage_for(split_seed=params.split_seed, split_source=split_source)
    parent = dataset.lineage_head(store, lineage)
    split_of = split_tracks(usable, params.split_seed, store.url, parent, assigned)
    tracks = [
        {"track_id": r["track_id"], "artist_id": r["artist_id"], "isrc": r.get("isrc"), "genre": r["genre"],
         "split": split_of[r["track_id"]], "offsets": r["offsets"], "audio_key": r["audio_key"],
         "audio_hash": r["audio_hash"]}
        for r in usable if r["track_id"] in split_of
    ]  # fmt: skip
    if not tracks:
        raise DataError(f"catalog {version}: the split file {params.split_file} lists none of the usable tracks")
    warnings = dataset.split_warnings(tracks)
    for line in warnings:
        logger.warning(line)
    plan = plan_shards(store.url, tracks, parent, seg, feat, params.shard_mb)
    reused = sum(store.exists(s["key"]) for s in plan["shards"])
    logger.info("dataset %s: %d tracks in %d shards (%d already computed), parent %s",
                dataset_id, len(tracks), len(plan["shards"]), reused, parent)  # fmt: skip
    entries = compute_shards.with_options(task_runner=feature_task_runner())(store.url, dataset_id, plan, seg, feat)
    store.write_json(f"{dataset_prefix(dataset_id)}/quarantine.json", quarantined)
    manifest = shards.Manifest(
        dataset_id=dataset_id,
        catalog_version=version,
        feature_config=dataclasses.asdict(feat),
        feature_hash=feat.hash,
        segment_config=dataclasses.asdict(seg),
        labels=plan["labels"],
        split_seed=params.split_seed,
        shards=entries,
        splits_key=write_splits(store.url, dataset_id, tracks, plan),
        parent=parent,
        lineage=lineage,
        split_source=split_source,
        warnings=warnings,
    )
    write_manifest(store.url, manifest)
    counts = manifest.counts()
    create_table_artifact(
        [{"split": s, "segments": manifest.rows(s)} for s in shards.SPLITS]
        + [{"genre": g, "segments": n} for g, n in sorted(counts["genres"].items())],
        key="dataset-stats",
        description=f"dataset {dataset_id}: {manifest.rows()} segments of {len(tracks)} tracks, "
        f"{len(manifest.shards)} shards ({reused} reused), "
        f"{math.ceil(sum(e['bytes'] for e in manifest.shards) / 2**20)} MB",
    )
    events.dataset_built(dataset_id, new=True, storage_url=store.url)
    return dataset_id
