"""What a dataset is: its manifest (shards, counts, configs, label map), written last and all a reader trusts."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genreclf.datasets.shards import ShardEntry
from genreclf.errors import DataError, StorageError
from genreclf.store.keys import DATASET_LATEST, lineage_key, manifest_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """What a dataset is. Readers trust only the manifest, which is written last.

    `shards` lists every shard with its rows per split and genre; `labels` is the label map (index -> genre);
    `splits_key` names the table of every track's split (`splits.parquet`); `parent` is the dataset whose
    split assignment this one kept (incremental builds), `lineage` the line of datasets it belongs to.
    """

    dataset_id: str
    catalog_version: str
    feature_config: dict[str, Any]
    feature_hash: str
    segment_config: dict[str, Any]
    labels: list[str]
    split_seed: int
    shards: list[ShardEntry]
    created_at: str = ""
    version: int = MANIFEST_VERSION
    splits_key: str | None = None
    parent: str | None = None
    lineage: str | None = None
    split_source: str = "seed"  # "seed", or the digest of the imported split file ("file:<digest>")
    warnings: list[str] = field(default_factory=list)  # what a reader of its figures must know (a genre not in test)

    @property
    def mel_shape(self) -> tuple[int, int]:
        from genreclf.datasets.features import FeatureConfig

        cfg = FeatureConfig(**self.feature_config)
        samples = round(self.segment_config["window_s"] * cfg.sample_rate)
        return cfg.n_mels, cfg.frames(samples)

    def row_groups(self, split: str) -> list[tuple[str, int | None, int]]:
        """The parts of the shards that hold `split`, in shard order: (shard key, row group, rows) per row group
        of it, or (shard key, None, rows) for a whole shard written before shards recorded their row groups."""
        parts: list[tuple[str, int | None, int]] = []
        for shard in self.shards:
            if not shard["splits"].get(split):
                continue
            if "row_groups" not in shard:
                parts.append((shard["key"], None, shard["splits"][split]))
                continue
            parts += [(shard["key"], i, n) for i, (s, n) in enumerate(shard["row_groups"]) if s == split]
        return parts

    def rows(self, split: str | None = None) -> int:
        if split is None:
            return sum(s["rows"] for s in self.shards)
        return sum(s["splits"].get(split, 0) for s in self.shards)

    def counts(self) -> dict[str, dict[str, int]]:
        """Segments per split and per genre across all shards: {"splits": {...}, "genres": {...}}."""
        splits: Counter[str] = Counter()
        genres: Counter[str] = Counter()
        for s in self.shards:
            splits.update(s["splits"])
            genres.update(s["genres"])
        return {"splits": dict(splits), "genres": dict(genres)}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Written into manifest.json for people and tools; derived from `shards`, so not read back.
_DERIVED = ("counts", "total_rows")


def write_manifest(store: Store, manifest: Manifest, *, make_latest: bool = True) -> str:
    """Write the manifest (last, atomically) and point LATEST (and the lineage) at the dataset; return its URI."""
    for shard in manifest.shards:
        if not store.exists(shard["key"]):
            raise DataError(f"{store.uri(shard['key'])} is listed in the manifest but was not written")
    if manifest.splits_key and not store.exists(manifest.splits_key):
        raise DataError(f"{store.uri(manifest.splits_key)} is listed in the manifest but was not written")
    data = manifest.to_json()
    data["created_at"] = data["created_at"] or datetime.now(UTC).isoformat()
    data["counts"], data["total_rows"] = manifest.counts(), manifest.rows()
    uri = store.write_json(manifest_key(manifest.dataset_id), data)
    if manifest.lineage:
        store.write_text(lineage_key(manifest.lineage), manifest.dataset_id)
    if make_latest:
        set_latest(store, manifest.dataset_id)
    log.info("dataset %s: %d segments in %d shards", manifest.dataset_id, manifest.rows(), len(manifest.shards))
    return uri


def set_latest(store: Store, dataset_id: str) -> None:
    """Make `dataset_id` the store's latest dataset (what `read_manifest(store)` reads)."""
    store.write_text(DATASET_LATEST, dataset_id)


def read_manifest(store: Store, dataset_id: str = "latest") -> Manifest:
    if dataset_id == "latest":
        if not store.exists(DATASET_LATEST):
            raise StorageError(f"no dataset in {store.url} yet: run the build-dataset flow first")
        dataset_id = store.read_text(DATASET_LATEST).strip()
    key = manifest_key(dataset_id)
    if not store.exists(key):
        raise StorageError(f"{store.uri(key)} does not exist: dataset {dataset_id} was never completed")
    data = store.read_json(key)
    if data.get("version") != MANIFEST_VERSION:
        raise DataError(f"{store.uri(key)}: manifest version {data.get('version')}, expected {MANIFEST_VERSION}")
    for name in _DERIVED:
        data.pop(name, None)
    return Manifest(**data)


def datasets_of_catalog(store: Store, catalog_version: str) -> list[Manifest]:
    """The completed datasets built from a catalog version, newest first."""
    found = [
        read_manifest(store, key.split("/")[1])
        for key in store.keys("datasets/")
        if key.endswith("/manifest.json") and key.count("/") == 2
    ]
    mine = [m for m in found if m.catalog_version == catalog_version]
    return sorted(mine, key=lambda m: m.created_at, reverse=True)
