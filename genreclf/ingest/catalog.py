"""The labelled track catalog: one Parquet schema for every source, versioned in the store."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import cast

import polars as pl
import pyarrow as pa
from typing_extensions import TypedDict  # typing's is refused by pydantic (Prefect's flow parameters) before 3.12

from genreclf.errors import DataError, StorageError
from genreclf.store.keys import CATALOG_LATEST, catalog_key, skipped_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("track_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("artists", pa.list_(pa.string())),
        # Grouping key for splits: the first artist; null when unknown (each track is then its own group).
        pa.field("artist_id", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("isrc", pa.string()),
        pa.field("genre", pa.string(), nullable=False),
        # Provenance of the label: "folder", "playlist", ...; the source's reference (a playlist id, a path).
        pa.field("label_source", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_ref", pa.string()),
        pa.field("snapshot_id", pa.string()),
        pa.field("artist_genre_vote", pa.string()),
        # Where the audio is: a local path, file://, s3:// or http(s) URL; null means "search for it".
        pa.field("audio_uri", pa.string()),
        # sha256 of the audio file's bytes where the catalog points at a file (a folder catalog); null where the
        # audio is found at acquisition. It makes the catalog version, and everything derived, follow the audio.
        pa.field("content_hash", pa.string()),
    ]
)
CATALOG_COLUMNS = CATALOG_SCHEMA.names
# Columns a source may leave out (null for every row): only sources that read files know their content hash.
OPTIONAL_COLUMNS = ("content_hash",)


class CatalogRow(TypedDict):
    """One catalog row as Python values: the columns of CATALOG_SCHEMA, in its order (a test holds them equal)."""

    track_id: str
    title: str | None
    artists: list[str] | None
    artist_id: str | None
    duration_s: float | None
    isrc: str | None
    genre: str
    label_source: str
    source: str
    source_ref: str | None
    snapshot_id: str | None
    artist_genre_vote: str | None
    audio_uri: str | None
    content_hash: str | None


def to_table(df: pl.DataFrame) -> pa.Table:
    """Check a catalog frame against the schema and return it as an Arrow table in schema order."""
    df = df.with_columns(pl.lit(None, pl.String).alias(c) for c in OPTIONAL_COLUMNS if c not in df.columns)
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"catalog is missing columns {missing}; expected {CATALOG_COLUMNS}")
    if df.height == 0:
        raise DataError("catalog has no tracks")
    if df["track_id"].null_count() or df["genre"].null_count():
        raise DataError("catalog has rows without track_id or genre")
    dupes = df["track_id"].filter(df["track_id"].is_duplicated()).unique().to_list()
    if dupes:
        raise DataError(f"catalog has duplicate track ids, e.g. {dupes[:3]}")
    table = df.select(CATALOG_COLUMNS).to_arrow()
    return table.cast(CATALOG_SCHEMA)


def version_of(table: pa.Table) -> str:
    """A content hash of every column: the same rows give the same version, any change a new one."""
    h = hashlib.sha256()
    for row in table.select(CATALOG_COLUMNS).sort_by("track_id").to_pylist():
        h.update(repr(sorted(row.items())).encode())
    return h.hexdigest()[:16]


BASE_VERSION_META = b"genreclf.base_version"


def write_catalog(
    store: Store, df: pl.DataFrame, *, skipped: list[dict[str, str]] | None = None, base: str | None = None
) -> str:
    """Write the catalog as a new version (never overwriting another one), point LATEST at it, return the version.

    `skipped` lists what the source left out of it ({path, reason}: a dangling link, a loop); build-dataset shows
    it in its quarantine table at stage "scan". `base` is the version this one was derived from (by applying label
    overrides), recorded in the file's metadata.
    """
    table = to_table(df)
    version = version_of(table)
    key = catalog_key(version)
    if not store.exists(key):
        meta = {b"genreclf.created_at": datetime.now(UTC).isoformat().encode()}
        if base:
            meta[BASE_VERSION_META] = base.encode()
        store.write_parquet(key, table.replace_schema_metadata(meta))
        log.info("wrote catalog %s (%d tracks) to %s", version, table.num_rows, store.uri(key))
    if skipped or store.exists(skipped_key(version)):
        store.write_json(skipped_key(version), [{"stage": "scan", **s} for s in skipped or []])
    store.write_text(CATALOG_LATEST, version)
    return version


def base_version(store: Store, version: str) -> str:
    """The version a derived catalog was made from (see `write_catalog`), or `version` itself."""
    meta = store.read_parquet(catalog_key(version), columns=[]).schema.metadata or {}  # the footer, not the rows
    return meta[BASE_VERSION_META].decode() if BASE_VERSION_META in meta else version


def read_skipped(store: Store, version: str) -> list[dict[str, str]]:
    """What the source left out of a catalog version, with why (see `write_catalog`)."""
    key = skipped_key(version)
    return list(store.read_json(key)) if store.exists(key) else []


def resolve_version(store: Store, version: str = "latest") -> str:
    if version != "latest":
        return version
    if not store.exists(CATALOG_LATEST):
        raise StorageError(f"no catalog in {store.url} yet: run `genreclf run --catalog DIR` or the ingest flow first")
    return store.read_text(CATALOG_LATEST).strip()


def read_catalog(store: Store, version: str = "latest") -> pl.DataFrame:
    version = resolve_version(store, version)
    return pl.from_arrow(store.read_parquet(catalog_key(version)))  # type: ignore[return-value]


def rows_of(df: pl.DataFrame) -> list[CatalogRow]:
    """The rows of a frame with the catalog's columns (`read_catalog`'s, or a source's before it is written)."""
    return cast("list[CatalogRow]", df.to_dicts())
