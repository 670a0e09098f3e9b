"""build-dataset: catalog -> decoded audio -> artist-grouped splits -> log-mel shards -> manifest."""

from __future__ import annotations

import math
import os
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import DatasetParams
from genreclf import catalog, dataset, shards
from genreclf.errors import DataError
from genreclf.storage import Store, dataset_prefix
from tasks.catalog import read_catalog_rows
from tasks.dataset import acquire_batch, build_shard, split_tracks, write_manifest


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _shard_groups(tracks: list[dict[str, Any]], *, bytes_per_segment: int, target_bytes: float) -> list[list[dict]]:
    """Consecutive tracks whose segments add up to about `target_bytes` of float16 spectrograms."""
    groups: list[list[dict]] = [[]]
    size = 0
    for t in tracks:
        if groups[-1] and size + len(t["offsets"]) * bytes_per_segment > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += len(t["offsets"]) * bytes_per_segment
    return groups


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
    version = catalog.resolve_version(store, catalog_version)
    seg, feat = params.segment_config(), params.feature_config()
    dataset.check_configs(seg, feat)

    rows = read_catalog_rows(store.url, version)
    batches = _chunks(rows, params.tracks_per_batch)
    futures = acquire_batch.map(store.url, batches, unmapped(seg), index=range(len(batches)))
    results = [r for f in futures for r in f.result()]
    quarantined = [r for r in results if not r["ok"]]
    if quarantined:
        create_table_artifact(
            [{"track_id": r["track_id"], "stage": r["stage"], "reason": r["reason"]} for r in quarantined],
            key="quarantine",
            description=f"{len(quarantined)} of {len(rows)} tracks quarantined in catalog {version}",
        )
        logger.warning("%d of %d tracks quarantined (see the quarantine artifact)", len(quarantined), len(rows))
    offsets = {r["track_id"]: r["offsets"] for r in results if r["ok"]}
    usable = [row for row in rows if row["track_id"] in offsets]
    if not usable:
        raise DataError(f"catalog {version}: no track could be decoded; see the quarantine table for why")

    dataset_id = dataset.dataset_id_for(version, list(offsets), seg=seg, feat=feat, split_seed=params.split_seed)
    if store.exists(f"{dataset_prefix(dataset_id)}/manifest.json"):
        logger.info("dataset %s is already built; reusing it", dataset_id)
        store.write_text(shards.DATASET_LATEST, dataset_id)
        return dataset_id

    split_of = split_tracks(usable, params.split_seed)
    labels = sorted({row["genre"] for row in usable})
    tracks = [
        {"track_id": r["track_id"], "artist_id": r["artist_id"], "genre": r["genre"],
         "split": split_of[r["track_id"]], "offsets": offsets[r["track_id"]]}
        for r in usable
    ]  # fmt: skip
    frames = feat.frames(round(seg.window_s * seg.sample_rate))
    groups = _shard_groups(tracks, bytes_per_segment=2 * feat.n_mels * frames, target_bytes=params.shard_mb * 2**20)
    entries = build_shard.map(
        store.url, dataset_id, range(len(groups)), groups, unmapped(labels), unmapped(seg), unmapped(feat)
    )
    store.write_json(f"{dataset_prefix(dataset_id)}/quarantine.json", quarantined)
    manifest = shards.Manifest(
        dataset_id=dataset_id,
        catalog_version=version,
        feature_config=feat.__dict__.copy(),
        feature_hash=feat.hash,
        segment_config=seg.__dict__.copy(),
        labels=labels,
        split_seed=params.split_seed,
        shards=[e.result() for e in entries],
    )
    write_manifest(store.url, manifest)
    counts = manifest.counts()
    create_table_artifact(
        [{"split": s, "segments": manifest.rows(s)} for s in shards.SPLITS]
        + [{"genre": g, "segments": n} for g, n in sorted(counts["genres"].items())],
        key="dataset-stats",
        description=f"dataset {dataset_id}: {manifest.rows()} segments of {len(tracks)} tracks, "
        f"{len(manifest.shards)} shards, {math.ceil(sum(e['bytes'] for e in manifest.shards) / 2**20)} MB",
    )
    return dataset_id
