"""Parquet shards of log-mel segments with labels and split, and the manifest that makes them a dataset."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genreclf.errors import DataError, StorageError
from genreclf.storage import DATASET_LATEST, Store, dataset_prefix

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST_VERSION = 1


def shard_schema(n_mels: int, frames: int, feature_hash: str) -> pa.Schema:
    """One row per segment; the spectrogram is an Arrow fixed-shape tensor (n_mels, frames) of float16."""
    return pa.schema(
        [
            pa.field("segment_id", pa.string(), nullable=False),
            pa.field("track_id", pa.string(), nullable=False),
            pa.field("artist_id", pa.string()),
            pa.field("genre", pa.string(), nullable=False),
            pa.field("label", pa.int16(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("offset_s", pa.float32(), nullable=False),
            pa.field("mel", pa.fixed_shape_tensor(pa.float16(), (n_mels, frames)), nullable=False),
        ],
        metadata={b"genreclf.feature_hash": feature_hash.encode()},
    )


@dataclass
class SegmentRows:
    """Columns of segments on their way into a shard (`mel` is (n, n_mels, frames))."""

    segment_id: list[str] = field(default_factory=list)
    track_id: list[str] = field(default_factory=list)
    artist_id: list[str | None] = field(default_factory=list)
    genre: list[str] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    offset_s: list[float] = field(default_factory=list)
    mel: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.segment_id)

    def to_table(self, feature_hash: str) -> pa.Table:
        mel = np.stack(self.mel).astype(np.float16)
        schema = shard_schema(mel.shape[1], mel.shape[2], feature_hash)
        columns: list[Any] = [
            pa.array(self.segment_id, pa.string()),
            pa.array(self.track_id, pa.string()),
            pa.array(self.artist_id, pa.string()),
            pa.array(self.genre, pa.string()),
            pa.array(self.label, pa.int16()),
            pa.array(self.split, pa.string()),
            pa.array(self.offset_s, pa.float32()),
            pa.FixedShapeTensorArray.from_numpy_ndarray(mel),
        ]
        return pa.Table.from_arrays(columns, schema=schema)


def write_shard(store: Store, key: str, rows: SegmentRows, *, feature_hash: str) -> dict[str, Any]:
    """Write one shard atomically; return its manifest entry (key, rows, rows per split and genre)."""
    if not len(rows):
        raise DataError(f"{store.uri(key)}: refusing to write an empty shard")
    table = rows.to_table(feature_hash)
    bytes_per_row = max(1, table.nbytes // table.num_rows)
    buf = io.BytesIO()
    # Row groups of ~32 MB: big enough to read fast, small enough to stream.
    pq.write_table(table, buf, row_group_size=max(1, (32 << 20) // bytes_per_row), compression="zstd")
    store.write_bytes(key, buf.getvalue())
    return {
        "key": key,
        "rows": table.num_rows,
        "bytes": buf.tell(),
        "splits": dict(Counter(rows.split)),
        "genres": dict(Counter(rows.genre)),
    }


@dataclass(frozen=True)
class Manifest:
    """What a dataset is. Readers trust only the manifest, which is written last."""

    dataset_id: str
    catalog_version: str
    feature_config: dict[str, Any]
    feature_hash: str
    segment_config: dict[str, Any]
    labels: list[str]
    split_seed: int
    shards: list[dict[str, Any]]
    created_at: str = ""
    version: int = MANIFEST_VERSION

    @property
    def mel_shape(self) -> tuple[int, int]:
        from genreclf.features import FeatureConfig

        cfg = FeatureConfig(**self.feature_config)
        samples = round(self.segment_config["window_s"] * cfg.sample_rate)
        return cfg.n_mels, cfg.frames(samples)

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


def write_manifest(store: Store, manifest: Manifest, *, make_latest: bool = True) -> str:
    """Write the manifest (last, atomically) and point LATEST at the dataset; return the manifest's URI."""
    for shard in manifest.shards:
        if not store.exists(shard["key"]):
            raise DataError(f"{store.uri(shard['key'])} is listed in the manifest but was not written")
    data = manifest.to_json()
    data["created_at"] = data["created_at"] or datetime.now(UTC).isoformat()
    uri = store.write_json(f"{dataset_prefix(manifest.dataset_id)}/manifest.json", data)
    if make_latest:
        store.write_text(DATASET_LATEST, manifest.dataset_id)
    log.info("dataset %s: %d segments in %d shards", manifest.dataset_id, manifest.rows(), len(manifest.shards))
    return uri


def read_manifest(store: Store, dataset_id: str = "latest") -> Manifest:
    if dataset_id == "latest":
        if not store.exists(DATASET_LATEST):
            raise StorageError(f"no dataset in {store.url} yet: run the build-dataset flow first")
        dataset_id = store.read_text(DATASET_LATEST).strip()
    key = f"{dataset_prefix(dataset_id)}/manifest.json"
    if not store.exists(key):
        raise StorageError(f"{store.uri(key)} does not exist: dataset {dataset_id} was never completed")
    data = store.read_json(key)
    if data.get("version") != MANIFEST_VERSION:
        raise DataError(f"{store.uri(key)}: manifest version {data.get('version')}, expected {MANIFEST_VERSION}")
    return Manifest(**data)


@dataclass
class SplitArrays:
    """One split in memory: spectrograms (n, n_mels, frames) float16, labels (n,), track ids (n,)."""

    mel: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def iter_shard_tables(store: Store, manifest: Manifest, split: str | None = None) -> Iterator[pa.Table]:
    """Yield each shard's rows (of one split when given), checking the feature hash of every shard."""
    for shard in manifest.shards:
        if split is not None and not shard["splits"].get(split):
            continue
        table = store.read_parquet(shard["key"])
        got = (table.schema.metadata or {}).get(b"genreclf.feature_hash", b"").decode()
        if got != manifest.feature_hash:
            raise DataError(
                f"{store.uri(shard['key'])}: features {got or 'untagged'} do not match the manifest's "
                f"{manifest.feature_hash}; rebuild the dataset"
            )
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        yield table


def load_split(store: Store, manifest: Manifest, split: str) -> SplitArrays:
    """Read one split into memory, in shard order."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    mels, labels, tracks = [], [], []
    for table in iter_shard_tables(store, manifest, split):
        if table.num_rows == 0:
            continue
        mels.append(table["mel"].combine_chunks().to_numpy_ndarray())
        labels.append(table["label"].to_numpy())
        tracks.append(table["track_id"].to_numpy(zero_copy_only=False))
    if not mels:
        n_mels, frames = manifest.mel_shape
        return SplitArrays(np.zeros((0, n_mels, frames), np.float16), np.zeros(0, np.int64), np.zeros(0, object))
    return SplitArrays(np.concatenate(mels), np.concatenate(labels).astype(np.int64), np.concatenate(tracks))
