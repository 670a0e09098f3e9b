"""The Spotify catalog version and its report: labels written to the store, with per-genre and per-playlist tables."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from genreclf.ingest.catalog import write_catalog
from genreclf.sources.spotify.crawl import SKIP_KINDS, PlaylistCrawl, PlaylistFailure, load_crawled_tracks
from genreclf.sources.spotify.labels import Conflict, ConflictRule, resolve_labels
from genreclf.sources.spotify.playlists import PlaylistsConfig
from genreclf.store.keys import ingest_report_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    version: str
    tracks: int
    per_genre: list[dict[str, Any]]
    conflicts: list[Conflict]
    report_uri: str


def write_spotify_catalog(
    store: Store,
    crawls: Sequence[PlaylistCrawl],
    *,
    config: PlaylistsConfig,
    artist_genres: Mapping[str, Sequence[str]] | None,
    rule: ConflictRule = "majority",
    failures: Sequence[PlaylistFailure] = (),
) -> IngestSummary:
    """Label the crawled tracks, write them as a new catalog version and a report beside it."""
    taxonomy = config.taxonomy
    votes = {a: taxonomy.vote(g) for a, g in (artist_genres or {}).items()}
    catalog, conflicts = resolve_labels(load_crawled_tracks(store, crawls), votes=votes, rule=rule)
    version = write_catalog(store, catalog)
    per_genre = genre_summary(catalog, crawls, conflicts)
    missing = [g for g in config.genres if g not in {row["genre"] for row in per_genre}]
    if missing:
        log.warning("catalog %s has no tracks for genres %s", version, missing)
    report = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "playlists_file": config.source,
        "taxonomy": {"version": taxonomy.version, "source": taxonomy.source},
        "conflict_rule": rule,
        "artist_genres": artist_genres is not None,
        "tracks": catalog.height,
        "per_genre": per_genre,
        "playlists": [asdict(c) for c in crawls],
        "failures": [asdict(f) for f in failures],
        "conflicts": [asdict(c) for c in conflicts],
    }
    report_uri = store.write_json(ingest_report_key(version), report)
    return IngestSummary(
        version=version,
        tracks=catalog.height,
        per_genre=per_genre,
        conflicts=conflicts,
        report_uri=report_uri,
    )


def genre_summary(
    catalog: pl.DataFrame, crawls: Sequence[PlaylistCrawl], conflicts: Sequence[Conflict]
) -> list[dict[str, Any]]:
    """Per genre: tracks kept, playlists read, conflicts won, and how often the artist-genre vote agrees."""
    rows = []
    for genre in dict.fromkeys(c.genre for c in crawls):
        labelled = catalog.filter(pl.col("genre") == genre)
        voted = labelled.filter(pl.col("artist_genre_vote").is_not_null())
        agree = voted.filter(pl.col("artist_genre_vote") == genre).height
        rows.append(
            {
                "genre": genre,
                "tracks": labelled.height,
                "playlists": sum(c.genre == genre for c in crawls),
                "conflicts_won": sum(c.resolved == genre for c in conflicts),
                "artist_vote_agrees": f"{agree}/{voted.height}",
            }
        )
    return rows


def playlist_table(crawls: Sequence[PlaylistCrawl], failures: Sequence[PlaylistFailure]) -> list[dict[str, Any]]:
    """One row per declared playlist (read, from the store, or failed) for reports and the Prefect UI."""
    rows: list[dict[str, Any]] = [
        {
            "genre": c.genre,
            "playlist_id": c.playlist_id,
            "name": c.name,
            "owner": c.owner,
            "status": "unchanged (store)" if c.cached else "crawled",
            "tracks": c.tracks,
            **{f"skipped_{k}": c.skipped.get(k, 0) for k in SKIP_KINDS},
            "error": "",
        }
        for c in crawls
    ]
    rows += [
        {
            "genre": f.genre,
            "playlist_id": f.playlist_id,
            "name": "",
            "owner": "",
            "status": "failed",
            "tracks": 0,
            **{f"skipped_{k}": 0 for k in SKIP_KINDS},
            "error": f.error,
        }
        for f in failures
    ]
    return rows
