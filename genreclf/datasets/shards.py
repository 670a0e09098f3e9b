"""Parquet shards of log-mel segments with their labels and split: the schema, the writer and what a shard holds."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genreclf.errors import DataError
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
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

    def split_order(self) -> list[int]:
        """Row indices ordered train, val, test (stable within a split): a shard's row order."""
        return sorted(range(len(self)), key=lambda i: split_rank(self.split[i]))

    def meta_columns(self, order: list[int]) -> list[pa.Array]:
        """Every column of the rows but `mel`, in `order`."""

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in order]

        return [
            pa.array(pick(self.segment_id), pa.string()),
            pa.array(pick(self.track_id), pa.string()),
            pa.array(pick(self.artist_id), pa.string()),
            pa.array(pick(self.genre), pa.string()),
            pa.array(pick(self.label), pa.int16()),
            pa.array(pick(self.split), pa.string()),
            pa.array(pick(self.offset_s), pa.float32()),
        ]


def split_rank(split: str) -> int:
    """Where rows of `split` go in a shard: train, val, test, then anything else."""
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _mel_array(mel: np.ndarray) -> pa.Array:
    """(rows, n_mels, frames) float16 -> the `mel` column, one fixed-size binary value per row (no copy)."""
    mel = np.ascontiguousarray(mel, dtype=np.float16)
    width = 2 * mel.shape[1] * mel.shape[2]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(mel), [None, pa.py_buffer(mel)])


def _row_group_slices(splits: list[str], *, row_bytes: int) -> list[tuple[str, int, int]]:
    """(split, start, rows) of each row group: about ROW_GROUP_BYTES each (rows of `row_bytes` in memory), one split
    per group."""
    per_group = max(1, ROW_GROUP_BYTES // max(1, row_bytes))
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


class ShardEntry(TypedDict):
    """A shard as the manifest lists it: its key, rows and bytes, rows per split and genre, and the split and
    size of each row group (what a streaming reader deals out)."""

    key: str
    rows: int
    bytes: int
    sha256: NotRequired[str]  # of the file; manifests before 2026-12 have none
    splits: dict[str, int]
    genres: dict[str, int]
    row_groups: list[list[Any]]  # [split, rows] per row group


class _Hashing:
    """A write-only stream that passes bytes on and keeps their sha256 and count (a shard's, as the manifest
    records it: `genreclf verify` checks stored shards against it)."""

    def __init__(self, sink: pa.NativeFile) -> None:
        self.sink, self.digest, self.size = sink, hashlib.sha256(), 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.sink.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass  # the store's stream flushes when it closes

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True  # the stream itself is the store's to close (and move into place)


class ShardWriter:
    """One shard, written row group by row group as its spectrograms come in: the bytes `write_shard` writes for
    the same rows, holding one row group of spectrograms at a time, never the whole shard.

    `rows` gives every column but `mel` (its `mel` is not read), already in shard order (`split_order`); `add`
    takes the spectrograms of the next rows, in that order; `close` returns the shard's manifest entry. Use it as a
    context manager: row groups stream to a temporary key (`Store.output_stream`), which `close` moves into place;
    a block that ends before `close` (an error) removes it, so no part of a shard ever sits at `key`.
    """

    def __init__(
        self, store: Store, key: str, rows: SegmentRows, *, n_mels: int, frames: int, feature_hash: str
    ) -> None:
        if not len(rows):
            raise DataError(f"{store.uri(key)}: refusing to write an empty shard")
        self.store, self.key = store, key
        self.schema = shard_schema(n_mels, frames, feature_hash)
        self.meta = rows.meta_columns(list(range(len(rows))))
        # Row groups as sized from the whole table: its metadata columns and one fixed-size mel value per row.
        table_bytes = sum(c.nbytes for c in self.meta) + len(rows) * 2 * n_mels * frames
        self.groups = _row_group_slices(rows.split, row_bytes=table_bytes // len(rows))
        self.splits, self.genres = dict(Counter(rows.split)), dict(Counter(rows.genre))
        self.pending: list[np.ndarray] = []  # spectrograms of rows not written yet, in order
        self.written = 0  # row groups
        self.closed = False
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ShardWriter:
        self.sink = _Hashing(self._stack.enter_context(self.store.output_stream(self.key)))
        compression = {name: "zstd" for name in self.schema.names} | {"mel": MEL_COMPRESSION}
        self.writer = pq.ParquetWriter(pa.PythonFile(self.sink, mode="w"), self.schema, compression=compression)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self.closed:
            return
        self._drop_writer()
        if exc is None:  # a block that forgot `close`: the shard is not whole, so it is not written
            exc = DataError(f"{self.store.uri(self.key)}: the shard writer was left without close()")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        self._stack.__exit__(exc_type, exc, tb)  # removes the temporary; the error goes on

    def _drop_writer(self) -> None:
        """Close the Parquet writer of a shard that will not be written, before its stream goes: left to the garbage
        collector, it would write its footer into the closed stream and warn."""
        with contextlib.suppress(Exception):
            self.writer.close()

    def add(self, mel: np.ndarray) -> None:
        """Spectrograms of the next rows, (rows, n_mels, frames) float16; full row groups are written at once."""
        self.pending.append(mel)
        have = sum(len(m) for m in self.pending)
        while self.written < len(self.groups) and have >= self.groups[self.written][2]:
            _, start, n = self.groups[self.written]
            ready = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending = [ready[n:]] if len(ready) > n else []
            have -= n
            columns = [c.slice(start, n) for c in self.meta] + [_mel_array(ready[:n])]
            self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema), row_group_size=n)
            self.written += 1

    def close(self) -> ShardEntry:
        """Write the shard to its key (atomically) once every row group is in; return its manifest entry."""
        if self.written != len(self.groups) or self.pending:
            raise DataError(f"{self.store.uri(self.key)}: spectrograms for {len(self.groups)} row groups expected, "
                            f"{self.written} written")  # fmt: skip
        self.writer.close()
        size = self.sink.size
        self.closed = True
        self._stack.close()  # the stream ends and the temporary moves into place
        return {
            "key": self.key,
            "rows": sum(n for _, _, n in self.groups),
            "bytes": size,
            "sha256": self.sink.digest.hexdigest(),
            "splits": self.splits,
            "genres": self.genres,
            "row_groups": [[split, n] for split, _, n in self.groups],
        }


def write_shard(store: Store, key: str, rows: SegmentRows, *, feature_hash: str) -> ShardEntry:
    """Write one shard atomically; return its manifest entry (key, rows, bytes, rows per split and genre, and the
    split and size of each row group)."""
    if not len(rows):
        raise DataError(f"{store.uri(key)}: refusing to write an empty shard")
    order = rows.split_order()
    ordered = SegmentRows(*(
        [values[i] for i in order] for values in (getattr(rows, f) for f in SegmentRows.__dataclass_fields__)
    ))  # fmt: skip
    n_mels, frames = rows.mel[0].shape
    with ShardWriter(store, key, ordered, n_mels=n_mels, frames=frames, feature_hash=feature_hash) as writer:
        writer.add(np.stack(ordered.mel).astype(np.float16, copy=False))
        entry = writer.close()
    entry["splits"], entry["genres"] = dict(Counter(rows.split)), dict(Counter(rows.genre))  # in the rows' order
    return entry


def read_shard_entry(store: Store, key: str) -> ShardEntry:
    """The manifest entry of a shard already in the store (as `write_shard` returned it), from its own rows."""
    with store.fs.open_input_file(store.path(key)) as f:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        table = pf.read(columns=["split", "genre"])
    groups: list[list[Any]] = []
    offset = 0
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
