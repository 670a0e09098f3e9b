"""Artist genres: one GET /artists/{id} per artist (the batch endpoint is gone), cached in the store across runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from genreclf.sources.spotify.client import SpotifyClient
from genreclf.sources.spotify.crawl import PlaylistCrawl, load_crawled_tracks
from genreclf.store.keys import ARTIST_CACHE_KEY
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

_ARTIST_SCHEMA = pa.schema(
    [
        pa.field("artist_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("genres", pa.list_(pa.string())),
        pa.field("fetched_at", pa.float64()),
    ]
)


def read_artist_cache(store: Store) -> dict[str, dict[str, Any]]:
    """artist_id -> {name, genres, fetched_at} from the store; empty when there is no cache yet."""
    if not store.exists(ARTIST_CACHE_KEY):
        return {}
    return {row["artist_id"]: row for row in store.read_parquet(ARTIST_CACHE_KEY).to_pylist()}


def _write_artist_cache(store: Store, cache: Mapping[str, Mapping[str, Any]]) -> None:
    rows = [dict(v) for _, v in sorted(cache.items())]
    store.write_parquet(ARTIST_CACHE_KEY, pa.Table.from_pylist(rows, schema=_ARTIST_SCHEMA))


def first_artist_ids(store: Store, crawls: Sequence[PlaylistCrawl]) -> list[str]:
    """Distinct first-artist ids of the crawled tracks, in playlist order (the artists whose genres vote)."""
    tracks = load_crawled_tracks(store, crawls)
    ids = tracks.select(pl.col("artist_ids").list.first()).to_series().drop_nulls()
    return ids.unique(maintain_order=True).to_list()


def lookup_artist_genres(
    client: SpotifyClient,
    store: Store,
    artist_ids: Iterable[str],
    *,
    max_age_days: float = 90.0,
    save_every: int = 200,
) -> dict[str, list[str]]:
    """artist_id -> Spotify micro-genres, from the store's cache or GET /artists/{id} one at a time.

    Entries older than `max_age_days` are looked up again. Progress is saved every `save_every` lookups and
    when a lookup fails, so a retry resumes where this one stopped.
    """
    wanted = list(dict.fromkeys(artist_ids))
    cache = read_artist_cache(store)
    now = time.time()
    todo = [a for a in wanted if a not in cache or now - (cache[a]["fetched_at"] or 0) > max_age_days * 86_400]
    log.info(
        "artist genres: %d of %d artists cached, looking up %d",
        len(wanted) - len(todo),
        len(wanted),
        len(todo),
    )
    done = 0
    try:
        for artist_id in todo:
            artist = client.artist(artist_id) or {}
            cache[artist_id] = {
                "artist_id": artist_id,
                "name": artist.get("name"),
                "genres": [str(g) for g in artist.get("genres") or []],  # absent for some apps and artists
                "fetched_at": time.time(),
            }
            done += 1
            if done % save_every == 0:
                _write_artist_cache(store, cache)
    finally:
        if done:
            _write_artist_cache(store, cache)
    return {a: list(cache[a]["genres"] or []) for a in wanted if a in cache}
