"""Crawling playlists: one playlist snapshot's tracks into the store, read again only when the snapshot changes."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import polars as pl
import pyarrow as pa

from genreclf.errors import SourceError
from genreclf.sources.spotify.client import SpotifyClient
from genreclf.sources.spotify.playlists import PlaylistRef
from genreclf.store.keys import playlist_crawl_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


CRAWL_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int32()),
        pa.field("track_id", pa.string()),
        pa.field("title", pa.string()),
        pa.field("artists", pa.list_(pa.string())),
        pa.field("artist_ids", pa.list_(pa.string())),
        pa.field("duration_ms", pa.int64()),
        pa.field("isrc", pa.string()),
        pa.field("added_at", pa.string()),
    ]
)
_CRAWL_META = b"genreclf.spotify.playlist"
SKIP_KINDS = ("local", "episode", "unavailable")


@dataclass(frozen=True)
class PlaylistCrawl:
    """What one crawled (or cached) playlist snapshot gave: small enough to pass between tasks."""

    genre: str
    playlist_id: str
    name: str
    owner: str
    snapshot_id: str
    key: str
    tracks: int
    skipped: dict[str, int]
    cached: bool


@dataclass(frozen=True)
class PlaylistFailure:
    genre: str
    playlist_id: str
    ref: str
    error: str


def parse_items(entries: Iterable[Mapping[str, Any] | None]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Track rows from playlist item entries; local files, episodes and unavailable tracks skipped and counted."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for position, entry in enumerate(entries):
        if entry is None:
            skipped["unavailable"] += 1
            continue
        obj = entry.get("item") or entry.get("track")
        if entry.get("is_local") or (obj and obj.get("is_local")):
            skipped["local"] += 1
        elif not obj:
            skipped["unavailable"] += 1  # removed from Spotify, or not available in this market
        elif obj.get("type") == "episode" or obj.get("episode") is True:
            skipped["episode"] += 1
        elif not obj.get("id") or obj.get("is_playable") is False:
            skipped["unavailable"] += 1
        else:
            artists = [a for a in obj.get("artists") or [] if a]
            isrc = ((obj.get("external_ids") or {}).get("isrc") or "").strip().upper().replace("-", "")
            rows.append(
                {
                    "position": position,
                    "track_id": obj["id"],
                    "title": obj.get("name"),
                    "artists": [a.get("name") for a in artists],
                    "artist_ids": [a.get("id") for a in artists],
                    "duration_ms": obj.get("duration_ms"),
                    "isrc": isrc or None,
                    "added_at": entry.get("added_at"),
                }
            )
    return rows, skipped


def crawl_playlist(client: SpotifyClient, store: Store, ref: PlaylistRef) -> PlaylistCrawl:
    """Read one playlist's tracks into the store, unless this snapshot is already there.

    Two requests tell whether anything changed (GET /playlists/{id} for its snapshot_id); only a new snapshot
    is paged through. Raises SourceError (404, 403, a long rate limit) or TransientSourceError.
    """
    meta = client.playlist(ref.playlist_id)
    snapshot_id = str(meta.get("snapshot_id") or "")
    name = str(meta.get("name") or "")
    owner_doc = meta.get("owner") or {}
    owner = str(owner_doc.get("display_name") or owner_doc.get("id") or "")
    if not snapshot_id:
        raise SourceError(f"playlist {ref.playlist_id}: the API returned no snapshot_id")
    key = playlist_crawl_key(ref.playlist_id, snapshot_id)
    cached = store.exists(key)
    info: dict[str, Any]
    if cached:
        info = json.loads(store.read_parquet(key).schema.metadata[_CRAWL_META])
        log.info(
            "playlist %s (%s): snapshot unchanged, %d tracks from the store", ref.playlist_id, name, info["tracks"]
        )
    else:
        rows, skipped = parse_items(client.playlist_items(ref.playlist_id))
        info = {
            "playlist_id": ref.playlist_id,
            "name": name,
            "owner": owner,
            "snapshot_id": snapshot_id,
            "tracks": len(rows),
            "skipped": {kind: skipped.get(kind, 0) for kind in SKIP_KINDS},
            "crawled_at": datetime.now(UTC).isoformat(),
        }
        table = pa.Table.from_pylist(rows, schema=CRAWL_SCHEMA).replace_schema_metadata(
            {_CRAWL_META: json.dumps(info).encode()}
        )
        store.write_parquet(key, table)
        log.info("playlist %s (%s): %d tracks; skipped %s", ref.playlist_id, name, len(rows), info["skipped"])
    return PlaylistCrawl(
        genre=ref.genre,
        playlist_id=ref.playlist_id,
        name=name,
        owner=owner,
        snapshot_id=snapshot_id,
        key=key,
        tracks=info["tracks"],
        skipped=info["skipped"],
        cached=cached,
    )


def load_crawled_tracks(store: Store, crawls: Sequence[PlaylistCrawl]) -> pl.DataFrame:
    """All crawled track rows with their playlist's genre, id, snapshot and order in the playlists file."""
    frames = []
    for order, c in enumerate(crawls):
        df = cast(pl.DataFrame, pl.from_arrow(store.read_parquet(c.key).cast(CRAWL_SCHEMA)))
        frames.append(
            df.with_columns(
                genre=pl.lit(c.genre),
                source_ref=pl.lit(c.playlist_id),
                snapshot_id=pl.lit(c.snapshot_id),
                playlist_order=pl.lit(order, dtype=pl.Int32),
            )
        )
    if not frames:
        empty = cast(pl.DataFrame, pl.from_arrow(CRAWL_SCHEMA.empty_table()))
        return empty.with_columns(
            genre=pl.lit(None, pl.String),
            source_ref=pl.lit(None, pl.String),
            snapshot_id=pl.lit(None, pl.String),
            playlist_order=pl.lit(None, pl.Int32),
        )
    return pl.concat(frames, how="vertical")
