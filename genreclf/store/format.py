"""The store's format version: `store.json` at its root, written at first use and checked at every open.

A store's objects are found by keys derived from content (see `tests/test_golden_ids.py`). A genreclf whose keys
or layout differ from a store's would not find what the store holds and would build it all again beside it, so:
- a store without `store.json` is either new (nothing in it: `store.json` is written) or was written before the
  format was recorded (layout 0, which this version reads as is: `store.json` is written, and a line says so);
- a store of an older format that needs its objects moved is refused with one line saying what to run (no such
  format yet: the table of migrations below is where one goes);
- a store of a newer format is refused: this genreclf would not find its objects.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from genreclf.errors import StorageError
from genreclf.store.storage import FORMAT_KEY

if TYPE_CHECKING:
    from genreclf.store.storage import Store

log = logging.getLogger(__name__)

STORE_FORMAT = 1
"""Bump it, and add a migration, when a change would orphan what existing stores hold: a key's layout, or an id
that `tests/test_golden_ids.py` pins."""


# Formats this genreclf reads as they are: only `store.json` is written when one is opened.
_READ_AS_IS = {0: "written before the store recorded its format (2026-12); its layout is format 1's"}


def _genreclf_version() -> str:
    try:
        return version("genreclf")
    except PackageNotFoundError:  # a source tree on sys.path (the GPU image runs benchmarks from one)
        return "source"


def read_format(store: Store) -> dict[str, Any] | None:
    """What `store.json` says, or None when the store has none. A `store.json` that is not a format record
    raises a StorageError naming it."""
    if not store.exists(FORMAT_KEY):
        return None
    try:
        info = json.loads(store.read_bytes(FORMAT_KEY))
    except ValueError as e:
        raise StorageError(f"{store.uri(FORMAT_KEY)} is not JSON ({e}): restore it, or move it aside if the store "
                           f"was written by this genreclf (it is rewritten at the next open)") from e  # fmt: skip
    if not isinstance(info, dict) or not isinstance(info.get("format"), int):
        raise StorageError(f"{store.uri(FORMAT_KEY)} has no integer 'format': it is not a genreclf store record")
    return info


# What a genreclf store holds at its root (see docs/store.md).
_STORE_NAMES = {"STORE_ID", "catalogs", "audio", "shards", "embeddings", "datasets", "runs", "registry", "audits",
                "labels", "predictions", "spotify"}  # fmt: skip


def _written_before(store: Store) -> bool:
    """Whether the store holds what a genreclf writes (names at its root: one listing, not recursive)."""
    return bool(set(store.top_level()) & _STORE_NAMES)


def write_format(store: Store, *, found: int | None) -> dict[str, Any]:
    info = {
        "format": STORE_FORMAT,
        "written_by": f"genreclf {_genreclf_version()}",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if found is not None:
        info["upgraded_from"] = found
    store.write_bytes(FORMAT_KEY, json.dumps(info, indent=2).encode() + b"\n")
    return info


def check_format(store: Store, *, record: bool = True) -> dict[str, Any]:
    """The store's format record, written (with `record`) when the store is new or of a format read as is; a
    StorageError when this genreclf cannot use the store."""
    info = read_format(store)
    if info is None:
        if not _written_before(store):  # new (a folder or prefix may hold other things: they are left alone)
            return write_format(store, found=None) if record else {"format": STORE_FORMAT}
        info = {"format": 0}
    found = info["format"]
    if found == STORE_FORMAT:
        return info
    if found > STORE_FORMAT:
        raise StorageError(
            f"store {store.url} is of format {found}, written by {info.get('written_by', 'a newer genreclf')}; "
            f"this genreclf ({_genreclf_version()}) reads format {STORE_FORMAT} and would not find its objects: "
            f"upgrade genreclf (pip install -U genreclf)"
        )
    if found in _READ_AS_IS:
        if not record:
            return info
        log.warning("store %s: format %d (%s): recorded as format %d in %s, nothing moved",
                    store.url, found, _READ_AS_IS[found], STORE_FORMAT, FORMAT_KEY)  # fmt: skip
        return write_format(store, found=found)
    raise StorageError(f"store {store.url} is of format {found}, which no genreclf migration reads: "
                       f"this genreclf reads format {STORE_FORMAT} and formats {sorted(_READ_AS_IS)}")  # fmt: skip


def remember(store: Store, name: str, value: Any) -> None:
    """Record a fact about the store (e.g. what its S3 server honours) in `store.json`, beside its format."""
    info = read_format(store) or check_format(store)
    store.write_bytes(FORMAT_KEY, json.dumps({**info, name: value}, indent=2).encode() + b"\n")
