"""TensorFlow checkpoints (the tensor-bundle format) read with numpy alone: `read_bundle(index, data)`.

Written here because no maintained package reads them without TensorFlow itself (a 600 MB dependency for 150
tensors). The format, from TensorFlow's `tensor_bundle.proto` and `core/lib/io/table` (LevelDB's SSTable):
- `<prefix>.index` is an SSTable whose keys are tensor names and whose values are `BundleEntryProto`s (dtype, shape,
  shard, offset and size in the data file); the empty key holds the `BundleHeaderProto` (shard count, endianness);
- `<prefix>.data-00000-of-00001` holds the raw little-endian tensor bytes at those offsets.
Only what TensorFlow writes for checkpoints is read: uncompressed blocks, one data shard, whole (unsliced) tensors of
numeric dtypes. The blocks' and tensors' CRC32Cs are not checked: the files are pinned by sha256 (`weights.py`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from genreclf.errors import ModelError

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_TRAILER = 5  # after every block: compression type (1 byte) and a CRC (4 bytes)

# TensorFlow's DataType enum -> numpy (types.proto).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}  # fmt: skip


class BundleError(ModelError):
    """A checkpoint file is not a tensor bundle this reader understands, or is cut short."""


@dataclass(frozen=True)
class Entry:
    """Where one tensor lives in the data file (a `BundleEntryProto`)."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    sliced: bool


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Protobuf / LevelDB varint at `pos` -> (value, position after it)."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise BundleError("a varint runs past its buffer")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's fields, in order -> [(field number, int or bytes)]; groups are not used by bundles."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise BundleError("a protobuf field runs past its message")
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire in (1, 5):  # fixed64, fixed32 (the entry's crc32c)
            width = 8 if wire == 1 else 4
            out.append((number, int.from_bytes(buf[pos : pos + width], "little")))
            pos += width
        else:
            raise BundleError(f"protobuf wire type {wire} is not used by tensor bundles")
    return out


def _entry(value: bytes) -> Entry:
    dtype, shard, offset, size, sliced = 0, 0, 0, 0, False
    shape: list[int] = []
    for number, v in _fields(value):
        if number == 1 and isinstance(v, int):
            dtype = v
        elif number == 2 and isinstance(v, bytes):  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            for dim_number, dim in _fields(v):
                if dim_number == 2 and isinstance(dim, bytes):
                    shape.append(next((int(s) for n, s in _fields(dim) if n == 1), 0))
        elif number == 3 and isinstance(v, int):
            shard = v
        elif number == 4 and isinstance(v, int):
            offset = v
        elif number == 5 and isinstance(v, int):
            size = v
        elif number == 7:
            sliced = True
    return Entry(dtype=dtype, shape=tuple(shape), shard_id=shard, offset=offset, size=size, sliced=sliced)


def _block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the block at `offset` (LevelDB's prefix-compressed block format)."""
    if offset + size + _TRAILER > len(table):
        raise BundleError(f"a block at byte {offset} runs past the end of the index ({len(table)} bytes)")
    if table[offset + size] != 0:
        raise BundleError("the index has compressed blocks, which TensorFlow does not write for checkpoints")
    block = table[offset : offset + size]
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        fresh, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + fresh]
        pos += fresh
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def read_index(index: bytes) -> dict[str, Entry]:
    """The bytes of a `.index` file -> {tensor name: Entry}; refuses a file that is not a tensor bundle's index."""
    if len(index) < _FOOTER or int.from_bytes(index[-8:], "little") != _MAGIC:
        raise BundleError("not a TensorFlow checkpoint index (no SSTable footer; truncated?)")
    footer = index[-_FOOTER:]
    _, pos = _varint(footer, 0)  # the metaindex block's offset and size: bundles keep nothing there
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: dict[str, Entry] = {}
    header_seen = False
    for _, handle in _block(index, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block(index, offset, size):
            if key == b"":  # BundleHeaderProto: num_shards = 1, endianness = 2 (0: little)
                header = dict(_fields(value))
                if header.get(2, 0) != 0:
                    raise BundleError("the checkpoint was written big-endian")
                header_seen = True
                continue
            entries[key.decode()] = _entry(value)
    if not header_seen:
        raise BundleError("the index has no bundle header: not a tensor bundle")
    return entries


def read_bundle(index: bytes, data: bytes, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Tensors of a one-shard bundle -> {name: array} (all of them, or `names`, each of which must be there).

    Refuses, with a BundleError naming the tensor, one that is sliced, of a dtype numpy cannot take, or whose bytes
    do not fit its shape or lie past the end of `data`.
    """
    entries = read_index(index)
    wanted = names if names is not None else sorted(entries)
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise BundleError(f"the checkpoint has no tensor {', '.join(missing)}")
    out = {}
    for name in wanted:
        e = entries[name]
        dtype = _DTYPES.get(e.dtype)
        if dtype is None or e.sliced or e.shard_id != 0:
            why = "is sliced" if e.sliced else f"is in shard {e.shard_id}" if e.shard_id else f"has dtype {e.dtype}"
            raise BundleError(f"tensor {name} {why}, which this reader does not handle")
        count = int(np.prod(e.shape, dtype=np.int64))
        if count * np.dtype(dtype).itemsize != e.size:
            raise BundleError(f"tensor {name}: {e.size} bytes do not hold shape {list(e.shape)}")
        if e.offset + e.size > len(data):
            raise BundleError(f"tensor {name} ends at byte {e.offset + e.size}, past the data file ({len(data)} bytes)")
        out[name] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=e.offset).reshape(
            e.shape
        )
    return out
