"""Flow ingest-spotify: the declared Spotify playlists, crawled into a new catalog version labelled by genre."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal, cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.blocks.system import Secret

from genreclf.errors import ConfigError, SourceError
from genreclf.settings import get_settings
from genreclf.sources import spotify
from genreclf.store.storage import Store
from genreclf.tasks.spotify import crawl_playlist, lookup_artist_genres, write_catalog

MAX_CONFLICT_ROWS = 500


@flow(name="ingest-spotify")
def ingest_spotify(
    playlists_file: str = "configs/playlists.toml",
    storage_url: str | None = None,
    artist_genres: bool = True,
    secret_block: str | None = None,
    auth: Literal["client_credentials", "user"] = "client_credentials",
    playlists: dict[str, list[str]] | None = None,
    conflict_rule: Literal["majority", "drop"] = "majority",
) -> str:
    """Crawl the playlists declared in `playlists_file` (or the `playlists` parameter) into a catalog version.

    Args:
        playlists_file: TOML or YAML file mapping each genre to playlist IDs, URIs or URLs, plus the taxonomy.
        storage_url: the store (default GENRECLF_STORAGE_URL).
        artist_genres: look up each first artist's Spotify genres as a second opinion on the label.
        secret_block: a Prefect Secret block holding {"client_id", "client_secret"[, "refresh_token"]};
            without one, SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET are read from the environment.
        auth: "client_credentials" (public playlists) or "user" (the authorization-code flow with a refresh
            token, for private playlists and development-mode apps).
        playlists: genre -> playlists, replacing the file's [genres].
        conflict_rule: how a track found in playlists of several genres is labelled ("majority" or "drop").

    Returns the catalog version. Unreadable playlists (404, 403, a long rate limit) are reported and skipped;
    the flow fails only when none can be read.
    """
    logger = get_run_logger()
    config = spotify.load_playlists_config(playlists_file, override=playlists)
    settings = get_settings()
    store = Store.open(storage_url, settings)
    client = spotify.connect(credentials_from_block(secret_block), auth=auth, settings=settings)
    logger.info(
        "%d playlists for %d genres from %s into %s (taxonomy %s)",
        len(config.playlists),
        len(config.genres),
        config.source,
        store.url,
        config.taxonomy.version,
    )

    crawls, failures = _crawl(client, config, store.url)

    create_table_artifact(
        key="spotify-ingest-playlists",
        table=spotify.playlist_table(crawls, failures),
        description=f"Playlists read for {config.source}: tracks kept, items skipped, failures.",
    )
    if not crawls:
        raise SourceError(f"none of the {len(failures)} playlists could be read; first error: {failures[0].error}")

    genres = _artist_genres(client, store, crawls) if artist_genres else None

    summary = write_catalog(store.url, crawls, config, genres, conflict_rule, failures)
    create_table_artifact(
        key="spotify-ingest-genres",
        table=summary.per_genre,
        description=f"Catalog {summary.version}: tracks per genre; report at {summary.report_uri}",
    )
    if summary.conflicts:
        rows = [
            {**asdict(c), "genres": str(c.genres), "playlists": ", ".join(c.playlists)}
            for c in summary.conflicts[:MAX_CONFLICT_ROWS]
        ]
        create_table_artifact(
            key="spotify-ingest-conflicts",
            table=rows,
            description=f"{len(summary.conflicts)} tracks in playlists of several genres "
            f"(conflict_rule={conflict_rule}); all of them in {summary.report_uri}",
        )
    if failures:
        logger.warning(
            "%d of %d playlists failed: see the spotify-ingest-playlists artifact", len(failures), len(config.playlists)
        )
    return summary.version


def _crawl(
    client: spotify.SpotifyClient, config: spotify.PlaylistsConfig, storage_url: str
) -> tuple[list[spotify.PlaylistCrawl], list[spotify.PlaylistFailure]]:
    """Each playlist as a task of its own; one that fails is reported and the others go on."""
    crawls: list[spotify.PlaylistCrawl] = []
    failures: list[spotify.PlaylistFailure] = []
    for ref in config.playlists:
        crawl = crawl_playlist.with_options(task_run_name=f"crawl-{ref.genre}-{ref.playlist_id}")
        state = crawl(client, ref, storage_url, return_state=True)
        if state.is_completed():
            crawls.append(state.result())
        else:
            error = state.result(raise_on_failure=False)
            failures.append(spotify.PlaylistFailure(ref.genre, ref.playlist_id, ref.ref, str(error)))
            get_run_logger().error("%s: playlist %s failed: %s", ref.genre, ref.ref, error)
    return crawls, failures


def _artist_genres(
    client: spotify.SpotifyClient, store: Store, crawls: list[spotify.PlaylistCrawl]
) -> dict[str, list[str]]:
    """Each first artist's Spotify genres; when the lookup fails, whatever earlier runs cached (a second opinion
    only)."""
    lookup = lookup_artist_genres(client, store.url, crawls, return_state=True)
    if lookup.is_completed():
        return cast(dict[str, list[str]], lookup.result())
    get_run_logger().warning("artist genres: %s; using the cached ones", lookup.result(raise_on_failure=False))
    return {a: row["genres"] or [] for a, row in spotify.read_artist_cache(store).items()}


def credentials_from_block(secret_block: str | None) -> spotify.Credentials | None:
    """The app's credentials from a Prefect Secret block; None lets spotipy read SPOTIPY_CLIENT_ID/_SECRET."""
    if not secret_block:
        return None
    try:
        value = cast(Secret, Secret.load(secret_block)).get()
    except ValueError as e:
        raise ConfigError(
            f"no Prefect Secret block named {secret_block!r} ({e}); create one holding "
            '{"client_id": "...", "client_secret": "..."}'
        ) from None
    return spotify.Credentials.from_secret(value, source=f"Prefect Secret block {secret_block!r}")
