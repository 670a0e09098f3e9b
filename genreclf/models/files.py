"""Model files in the store: weights as safetensors and the rest as JSON, so loading a model never runs code.

A run's model is `runs/<run_id>/model.safetensors` (the weights) and `runs/<run_id>/model.json` (model name and
config, labels, normaliser, feature and segment configs, run id, epoch, and the sha256 of the weights file). The
weights are written first and the JSON last; each write is atomic, and a reader checks the sha256, so new weights
are never paired with an old JSON. Runs written by earlier versions have `runs/<run_id>/model.pt`, a torch pickle: it
is read with `torch.load(weights_only=True)` only, which refuses anything but tensors and plain containers.

The safetensors format is written and read here from its spec (an 8-byte little-endian header length, a JSON header
`{name: {dtype, shape, data_offsets}}` with an optional `"__metadata__"` of strings, then the raw little-endian
bytes), so a bare GPU image with torch, numpy and pyarrow needs no `safetensors` package.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import re
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from genreclf.errors import ModelError
from genreclf.store.keys import model_file_key

if TYPE_CHECKING:
    from genreclf.store.storage import Store

WEIGHTS = "model.safetensors"
META = "model.json"
LEGACY = "model.pt"  # a torch pickle, written by earlier versions
# What predicting needs from model.json (or a legacy bundle) besides the weights.
REQUIRED = ("model", "num_classes", "dropout", "labels", "normalizer", "feature_config", "segment_config")

_RUN_ID = re.compile(r"[A-Za-z0-9_.-]+")
_RUN_KEY = re.compile(rf"runs/([A-Za-z0-9_.-]+)(?:/({re.escape(WEIGHTS)}|{re.escape(LEGACY)}))?/?")

# --- safetensors ------------------------------------------------------------------------------------------------

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the reference implementation's limit


def save_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """Tensors (any device, layout or stride) -> the bytes of a safetensors file, names sorted, data 8-byte aligned."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES or name == "__metadata__":
            raise ModelError(f"cannot save tensor {name!r} of dtype {t.dtype} as safetensors")
        blob = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # native order: little-endian on every host we run
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def load_safetensors(data: bytes, *, name: str = "<bytes>") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The bytes of a safetensors file -> (tensors on the CPU, metadata). Refuses, with a ModelError, a header that
    is not a JSON object of known dtypes, or offsets that leave the data, overlap, leave holes or miss a byte."""

    def bad(why: str) -> ModelError:
        return ModelError(f"{name}: not a valid safetensors file ({why})")

    if len(data) < 8:
        raise bad("shorter than its 8-byte header length")
    (n,) = struct.unpack_from("<Q", data)
    if n < 2 or n > min(_MAX_HEADER, len(data) - 8):
        raise bad(f"a header of {n} bytes in a file of {len(data)}")
    try:
        header = json.loads(data[8 : 8 + n], object_pairs_hook=_unique_keys)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise bad(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must map strings to strings")
    entries = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"{key!r}: an entry needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = _DTYPES.get(str(info["dtype"])), info["shape"], info["data_offsets"]
        if dtype is None:
            raise bad(f"{key!r}: unknown dtype {info['dtype']!r}")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"{key!r}: shape {shape!r} is not a list of sizes")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
            raise bad(f"{key!r}: data_offsets {offsets!r} are not two integers")
        if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
            raise bad(f"{key!r}: data_offsets {offsets} do not hold {shape} {info['dtype']}")
        entries.append((offsets[0], offsets[1], key, dtype, shape))
    body, end = memoryview(data)[8 + n :], 0
    tensors = {}
    for begin, stop, key, dtype, shape in sorted(entries, key=lambda e: (e[0], e[1])):
        if begin != end:
            raise bad(f"{key!r} starts at byte {begin}, not {end}: tensors overlap or leave a hole")
        if stop > len(body):
            raise bad(f"{key!r} ends at byte {stop}, past the data ({len(body)} bytes)")
        raw = bytearray(body[begin:stop])  # a copy: aligned, writable, and not tied to `data`
        tensors[key] = torch.frombuffer(raw, dtype=dtype).reshape(shape) if raw else torch.empty(shape, dtype=dtype)
        end = stop
    if end != len(body):
        raise bad(f"{len(body) - end} bytes after the last tensor")
    return tensors, metadata


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("a key appears twice")
    return dict(pairs)


# --- run ids and keys -------------------------------------------------------------------------------------------


def is_run_id(text: str) -> bool:
    """One safe path component: letters, digits, '-', '_' and '.', but not '.' or '..'."""
    return _RUN_ID.fullmatch(text) is not None and text not in (".", "..")


def check_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise ModelError(f"{run_id!r} is not a run id: use letters, digits, '-', '_' and '.' (not '.' or '..')")
    return run_id


def parse_run_key(key: str) -> tuple[str, str | None] | None:
    """`(run id, file name or None)` of `runs/<id>`, `runs/<id>/model.safetensors` or `runs/<id>/model.pt`; None for
    any other key, so nothing outside `runs/` can be named."""
    found = _RUN_KEY.fullmatch(key)
    if found is None or not is_run_id(found[1]):
        return None
    return found[1], found[2]


def weights_key(run_id: str) -> str:
    return model_file_key(check_run_id(run_id), WEIGHTS)


def find_model(store: Store, run_id: str, file: str | None = None, *, shown: str | None = None) -> str:
    """The key of the model of a run: `file` if given, else its safetensors, else a legacy `model.pt`."""
    names = [file] if file else [WEIGHTS, LEGACY]
    for key in (model_file_key(check_run_id(run_id), name) for name in names):
        if store.exists(key):
            return key
    raise ModelError(
        f"no model {shown or run_id!r} in {store.url} (looked for {store.uri(model_file_key(run_id, names[0]))})"
    )


# --- reading and writing a run's model --------------------------------------------------------------------------


def write_model(store: Store, run_id: str, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """Write `runs/<run_id>/model.safetensors`, then `model.json` with the weights' sha256; return the weights' URI."""
    data = save_safetensors(state_dict, {"format": "pt"})
    uri = store.write_bytes(weights_key(run_id), data)
    store.write_json(model_file_key(run_id, META), {**meta, "weights": WEIGHTS, "weights_sha256": _sha256(data)})
    return uri


def read_model(store: Store, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`(state dict on the CPU, everything else)` of the model at `key`, a model key inside `runs/`."""
    parsed = parse_run_key(key)
    if parsed is None or parsed[1] is None:
        raise ModelError(f"{key!r} is not a model key in runs/ of {store.url}; models are loaded from runs/ only")
    run_id, file = parsed
    if file == LEGACY:
        state, meta = _read_legacy(store, key)
    else:
        meta_key = model_file_key(run_id, META)
        meta, data = store.read_json(meta_key), store.read_bytes(key)
        if not isinstance(meta, dict) or meta.get("weights_sha256") != _sha256(data):
            raise ModelError(
                f"{store.uri(key)} does not match {store.uri(meta_key)} (sha256 of the weights): the run is being "
                "written or a write was cut short; retry, or resume the run to write both again"
            )
        state, _ = load_safetensors(data, name=store.uri(key))
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ModelError(f"{store.uri(key)}: not a genreclf model (no {', '.join(missing)})")
    return state, meta


def _read_legacy(store: Store, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        bundle = torch.load(io.BytesIO(store.read_bytes(key)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(
            f"{store.uri(key)} was written by an older genreclf in a format that can run code, and is not loaded; "
            "retrain with `genreclf run --catalog DIR` (or the train flow) to save it as safetensors"
        ) from e
    if not isinstance(bundle, dict) or not isinstance(bundle.get("state_dict"), dict):
        raise ModelError(f"{store.uri(key)}: not a genreclf model (no state_dict)")
    return bundle.pop("state_dict"), bundle


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
