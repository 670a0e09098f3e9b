"""Prefect tasks of the Spotify ingest, each calling one genreclf.sources.spotify function.

None of them uses Prefect's result cache: what they read changes on Spotify's side, and the store already
keeps what does not change (a playlist snapshot, an artist's genres). None has task retries: the client already
retried each request (genreclf.retry); a playlist still failing is reported by the flow and read by the next run.

Calls to the Web API hold a slot of the global concurrency limit `spotify-api` (infra/local_stack.py creates it),
so crawls on several workers share one app's rate limit; without the limit they run unlimited.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from genreclf.sources import spotify
from genreclf.store.storage import Store

SPOTIFY_LIMIT = "spotify-api"


@task(cache_policy=NO_CACHE)
def crawl_playlist(client: spotify.SpotifyClient, ref: spotify.PlaylistRef, store_url: str) -> spotify.PlaylistCrawl:
    """One playlist into the store (skipped when its snapshot is already there)."""
    with concurrency(SPOTIFY_LIMIT, occupy=1, strict=False):
        crawl = spotify.crawl_playlist(client, Store.open(store_url), ref)
    skipped = ", ".join(f"{n} {kind}" for kind, n in crawl.skipped.items() if n) or "none"
    get_run_logger().info(
        "%s: %r by %s (%s), snapshot %s: %d tracks, skipped %s%s",
        ref.genre,
        crawl.name,
        crawl.owner,
        ref.playlist_id,
        crawl.snapshot_id,
        crawl.tracks,
        skipped,
        " (unchanged: read from the store)" if crawl.cached else "",
    )
    return crawl


@task(cache_policy=NO_CACHE)
def lookup_artist_genres(
    client: spotify.SpotifyClient, store_url: str, crawls: Sequence[spotify.PlaylistCrawl]
) -> dict[str, list[str]]:
    """Spotify genres of each track's first artist, one request per artist not yet in the store's cache."""
    store = Store.open(store_url)
    with concurrency(SPOTIFY_LIMIT, occupy=1, strict=False):
        genres = spotify.lookup_artist_genres(client, store, spotify.first_artist_ids(store, crawls))
    with_genres = sum(bool(g) for g in genres.values())
    get_run_logger().info("artist genres: %d artists, %d with genres", len(genres), with_genres)
    return genres


@task(cache_policy=NO_CACHE)
def write_catalog(
    store_url: str,
    crawls: Sequence[spotify.PlaylistCrawl],
    config: spotify.PlaylistsConfig,
    artist_genres: dict[str, list[str]] | None,
    conflict_rule: spotify.ConflictRule,
    failures: Sequence[spotify.PlaylistFailure],
) -> spotify.IngestSummary:
    """Labels resolved, catalog written as a new version, report beside it."""
    summary = spotify.write_spotify_catalog(
        Store.open(store_url),
        crawls,
        config=config,
        artist_genres=artist_genres,
        rule=conflict_rule,
        failures=failures,
    )
    get_run_logger().info(
        "catalog %s: %d tracks, %d conflicts; report %s",
        summary.version,
        summary.tracks,
        len(summary.conflicts),
        summary.report_uri,
    )
    return summary
