"""Parquet shards of log-mel segments with labels and split, the manifest that makes them a dataset, and readers."""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from genreclf.errors import DataError, StorageError
from genreclf.storage import DATASET_LATEST, Store, dataset_prefix, lineage_key

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST_VERSION = 1
# Row groups are the unit a streaming reader hands to a worker: ~16 MB reads, and never two splits in one.
ROW_GROUP_BYTES = 16 << 20
# The spectrogram is stored as one fixed-size binary value per row (float16, C order) and handed to readers as
# an Arrow fixed-shape tensor. Measured: Parquet decodes a fixed-size list (an Arrow tensor column) value by
# value, ~140 segments/s per core at 128x1292; one binary value per row reads at ~2,400/s (lz4).
MEL_COMPRESSION = "lz4"
_SHAPE_KEY, _DTYPE_KEY = b"genreclf.shape", b"genreclf.dtype"


def shard_schema(n_mels: int, frames: int, feature_hash: str) -> pa.Schema:
    """One row per segment; `mel` holds the (n_mels, frames) float16 spectrogram (see `mel_numpy`)."""
    return pa.schema(
        [
            pa.field("segment_id", pa.string(), nullable=False),
            pa.field("track_id", pa.string(), nullable=False),
            pa.field("artist_id", pa.string()),
            pa.field("genre", pa.string(), nullable=False),
            pa.field("label", pa.int16(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("offset_s", pa.float32(), nullable=False),
            pa.field(
                "mel",
                pa.binary(2 * n_mels * frames),
                nullable=False,
                metadata={_SHAPE_KEY: f"{n_mels},{frames}".encode(), _DTYPE_KEY: b"float16"},
            ),
        ],
        metadata={b"genreclf.feature_hash": feature_hash.encode()},
    )


def mel_shape_of(schema: pa.Schema) -> tuple[int, int]:
    meta = schema.field("mel").metadata or {}
    if _SHAPE_KEY not in meta:
        raise DataError("shard has no spectrogram shape in its schema; rebuild the dataset")
    n_mels, frames = (int(v) for v in meta[_SHAPE_KEY].split(b","))
    return n_mels, frames


def mel_numpy(table: pa.Table) -> np.ndarray:
    """The `mel` column of shard rows as a (rows, n_mels, frames) float16 array (zero-copy when one chunk)."""
    n_mels, frames = mel_shape_of(table.schema)
    col = table.column("mel")
    if col.type == pa.fixed_shape_tensor(pa.float16(), (n_mels, frames)):
        return col.combine_chunks().to_numpy_ndarray()
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    width = 2 * n_mels * frames
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return np.zeros((0, n_mels, frames), np.float16)
    flat = np.frombuffer(buf, dtype=np.float16, count=len(arr) * n_mels * frames, offset=arr.offset * width)
    return flat.reshape(len(arr), n_mels, frames)


def with_tensor_mel(table: pa.Table) -> pa.Table:
    """Shard rows with `mel` as an Arrow fixed-shape tensor column (n_mels, frames) of float16."""
    mel = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(mel_numpy(table)))
    return table.set_column(table.schema.get_field_index("mel"), "mel", mel)


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
        """The rows as a shard table, ordered train, val, test (stable within a split)."""
        order = sorted(range(len(self)), key=lambda i: SPLITS.index(self.split[i]) if self.split[i] in SPLITS else 3)
        mel = np.ascontiguousarray(np.stack([self.mel[i] for i in order]), dtype=np.float16)
        schema = shard_schema(mel.shape[1], mel.shape[2], feature_hash)
        width = 2 * mel.shape[1] * mel.shape[2]

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in order]

        columns: list[Any] = [
            pa.array(pick(self.segment_id), pa.string()),
            pa.array(pick(self.track_id), pa.string()),
            pa.array(pick(self.artist_id), pa.string()),
            pa.array(pick(self.genre), pa.string()),
            pa.array(pick(self.label), pa.int16()),
            pa.array(pick(self.split), pa.string()),
            pa.array(pick(self.offset_s), pa.float32()),
            pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(mel), [None, pa.py_buffer(mel)]),
        ]
        return pa.Table.from_arrays(columns, schema=schema)


def _row_group_slices(table: pa.Table) -> list[tuple[str, int, int]]:
    """(split, start, rows) of each row group: about ROW_GROUP_BYTES each, one split per group."""
    per_group = max(1, ROW_GROUP_BYTES // max(1, table.nbytes // max(1, table.num_rows)))
    splits = table.column("split").to_pylist()
    out: list[tuple[str, int, int]] = []
    start = 0
    while start < len(splits):
        end = start
        while end < len(splits) and splits[end] == splits[start]:
            end += 1
        n_groups = math.ceil((end - start) / per_group)
        size = math.ceil((end - start) / n_groups)  # even groups, not one big and a crumb
        for s in range(start, end, size):
            out.append((splits[start], s, min(size, end - s)))
        start = end
    return out


def write_shard(store: Store, key: str, rows: SegmentRows, *, feature_hash: str) -> dict[str, Any]:
    """Write one shard atomically; return its manifest entry (key, rows, bytes, rows per split and genre, and the
    split and size of each row group)."""
    if not len(rows):
        raise DataError(f"{store.uri(key)}: refusing to write an empty shard")
    table = rows.to_table(feature_hash)
    groups = _row_group_slices(table)
    buf = io.BytesIO()
    compression = {name: "zstd" for name in table.schema.names} | {"mel": MEL_COMPRESSION}
    with pq.ParquetWriter(buf, table.schema, compression=compression) as writer:
        for _, start, n in groups:
            writer.write_table(table.slice(start, n), row_group_size=n)
    store.write_bytes(key, buf.getvalue())
    return {
        "key": key,
        "rows": table.num_rows,
        "bytes": buf.tell(),
        "splits": dict(Counter(rows.split)),
        "genres": dict(Counter(rows.genre)),
        "row_groups": [[split, n] for split, _, n in groups],
    }


def read_shard_entry(store: Store, key: str) -> dict[str, Any]:
    """The manifest entry of a shard already in the store (as `write_shard` returned it), from its own rows."""
    with store.fs.open_input_file(store.path(key)) as f:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        table = pf.read(columns=["split", "genre"])
    groups, offset = [], 0
    splits = table.column("split").to_pylist()
    for i in range(meta.num_row_groups):
        n = meta.row_group(i).num_rows
        groups.append([splits[offset] if n else "", n])
        offset += n
    return {
        "key": key,
        "rows": table.num_rows,
        "bytes": store.fs.get_file_info(store.path(key)).size,
        "splits": dict(Counter(splits)),
        "genres": dict(Counter(table.column("genre").to_pylist())),
        "row_groups": groups,
    }


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
    shards: list[dict[str, Any]]
    created_at: str = ""
    version: int = MANIFEST_VERSION
    splits_key: str | None = None
    parent: str | None = None
    lineage: str | None = None
    split_source: str = "seed"  # "seed", or the digest of the imported split file ("file:<digest>")
    warnings: list[str] = field(default_factory=list)  # what a reader of its figures must know (a genre not in test)

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
    uri = store.write_json(f"{dataset_prefix(manifest.dataset_id)}/manifest.json", data)
    if manifest.lineage:
        store.write_text(lineage_key(manifest.lineage), manifest.dataset_id)
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
    for name in _DERIVED:
        data.pop(name, None)
    return Manifest(**data)


@dataclass
class SplitArrays:
    """One split in memory: spectrograms (n, n_mels, frames) float16, labels (n,), track ids (n,)."""

    mel: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _check_hash(store: Store, key: str, schema: pa.Schema, manifest: Manifest) -> None:
    got = (schema.metadata or {}).get(b"genreclf.feature_hash", b"").decode()
    if got != manifest.feature_hash:
        raise DataError(
            f"{store.uri(key)}: features {got or 'untagged'} do not match the manifest's "
            f"{manifest.feature_hash}; rebuild the dataset"
        )


def iter_shard_tables(store: Store, manifest: Manifest, split: str | None = None) -> Iterator[pa.Table]:
    """Yield each shard's rows (of one split when given) with `mel` as an Arrow fixed-shape tensor column,
    checking the feature hash of every shard."""
    for shard in manifest.shards:
        if split is not None and not shard["splits"].get(split):
            continue
        table = store.read_parquet(shard["key"])
        _check_hash(store, shard["key"], table.schema, manifest)
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        yield with_tensor_mel(table)


def load_split(store: Store, manifest: Manifest, split: str) -> SplitArrays:
    """Read one split into memory, in shard order (for small datasets; `StreamingSegments` streams)."""
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


class StreamingSegments(IterableDataset[tuple[torch.Tensor, int]]):
    """One split of a dataset streamed from its shards, row group by row group; never the whole split in memory.

    Row groups are dealt out to readers: DataLoader worker w of W in process `rank` of `world_size` reads every
    (world_size * W)-th row group of the split, so every segment is read once per epoch across all of them.

    `train=True`: row groups in a new random order each epoch (`set_epoch`), rows through a buffer of
    `shuffle_buffer` segments, and a random crop of `crop_frames` from each. `train=False`: shard order, and each
    segment cut into fixed windows of `crop_frames` (the last one ending where the segment ends).
    Without `crop_frames`, whole segments. Yields (x (1, n_mels, frames) float32, label), un-normalised.
    """

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        split: str,
        *,
        crop_frames: int | None = None,
        train: bool = True,
        shuffle_buffer: int = 1_000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        open_files: int = 8,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        frames = manifest.mel_shape[1]
        if crop_frames is not None and not 0 < crop_frames <= frames:
            raise DataError(f"crop of {crop_frames} frames does not fit segments of {frames} frames")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1}")
        self.store, self.manifest, self.split = store, manifest, split
        self.crop_frames, self.train, self.seed = crop_frames, train, seed
        self.shuffle_buffer = shuffle_buffer if train else 0
        self.rank, self.world_size, self.open_files = rank, world_size, open_files
        self.epoch = 0
        # (shard key, row group index or None for "the whole shard, filtered"): the units of work.
        self.units: list[tuple[str, int | None]] = []
        for shard in manifest.shards:
            if not shard["splits"].get(split):
                continue
            if "row_groups" in shard:
                self.units += [(shard["key"], i) for i, (s, _) in enumerate(shard["row_groups"]) if s == split]
            else:  # written before row groups were recorded
                self.units.append((shard["key"], None))

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    @property
    def num_segments(self) -> int:
        return self.manifest.rows(self.split)

    def windows_per_segment(self) -> int:
        if self.crop_frames is None or self.train:
            return 1
        return len(self._window_starts(self.manifest.mel_shape[1]))

    def __len__(self) -> int:
        """Items in one epoch across all readers (segments, times windows when evaluating)."""
        return self.num_segments * self.windows_per_segment()

    def _my_units(self) -> list[tuple[str, int | None]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        units = list(self.units)
        if self.train:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(units))
            units = [units[i] for i in order]
        reader, readers = self.rank * workers + worker, self.world_size * workers
        return units[reader::readers]

    def _window_starts(self, frames: int) -> list[int]:
        crop = self.crop_frames or frames
        starts = list(range(0, frames - crop + 1, crop))
        if starts[-1] + crop < frames:
            starts.append(frames - crop)
        return starts

    def _read(self) -> Iterator[tuple[np.ndarray, int]]:
        files: dict[str, pq.ParquetFile] = {}
        try:
            for key, group in self._my_units():
                if key not in files:
                    if len(files) >= self.open_files:
                        files.pop(next(iter(files))).close()
                    try:
                        files[key] = pq.ParquetFile(self.store.fs.open_input_file(self.store.path(key)))
                    except FileNotFoundError as e:
                        raise StorageError(f"{self.store.uri(key)} does not exist") from e
                    _check_hash(self.store, key, files[key].schema_arrow, self.manifest)
                pf = files[key]
                if group is None:
                    table = pf.read(columns=["mel", "label", "split"])
                    table = table.filter(pc.equal(table["split"], self.split))
                else:
                    table = pf.read_row_group(group, columns=["mel", "label"])
                mel, labels = mel_numpy(table), table.column("label").to_numpy()
                for i in range(len(labels)):
                    yield mel[i], int(labels[i])
        finally:
            for pf in files.values():
                pf.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, info.id if info is not None else 0, 1])
        rows = self._read()
        if self.shuffle_buffer > 1:
            rows = _shuffled(rows, self.shuffle_buffer, rng)
        for mel, label in rows:
            frames = mel.shape[-1]
            if self.crop_frames is None:
                starts = [0]
            elif self.train:
                starts = [int(rng.integers(0, frames - self.crop_frames + 1))]
            else:
                starts = self._window_starts(frames)
            width = self.crop_frames or frames
            for s in starts:
                x = np.ascontiguousarray(mel[:, s : s + width], dtype=np.float32)
                yield torch.from_numpy(x)[None], label  # (1, n_mels, frames)


def _shuffled(
    rows: Iterator[tuple[np.ndarray, int]], size: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, int]]:
    """A shuffle buffer: hold `size` rows (copied, so a row group is freed once read) and emit a random one."""
    buffer: list[tuple[np.ndarray, int]] = []
    for mel, label in rows:
        buffer.append((mel.copy(), label))
        if len(buffer) >= size:
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    order = rng.permutation(len(buffer))
    for i in order:
        yield buffer[i]
