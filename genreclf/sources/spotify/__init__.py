"""Spotify playlists as a label source; the names other code uses, from the modules that own them.

playlists (the playlists file), taxonomy (micro-genres to target genres), client (the Web API under one fault
policy), auth (credentials, `connect`), crawl (playlist snapshots into the store), artists (artist genres, cached),
labels (one genre per recording, conflicts), report (the catalog version and its report).
"""

from genreclf.retry import RateLimitedError, RetryPolicy
from genreclf.sources.spotify.artists import first_artist_ids, lookup_artist_genres, read_artist_cache
from genreclf.sources.spotify.auth import (
    DEFAULT_REDIRECT_URI,
    USER_SCOPE,
    AuthMode,
    Credentials,
    TokenFile,
    authorization_url,
    connect,
    exchange_code,
    token_path,
)
from genreclf.sources.spotify.client import NotFoundError, SpotifyClient
from genreclf.sources.spotify.crawl import (
    CRAWL_SCHEMA,
    SKIP_KINDS,
    PlaylistCrawl,
    PlaylistFailure,
    crawl_playlist,
    load_crawled_tracks,
    parse_items,
)
from genreclf.sources.spotify.labels import Conflict, ConflictRule, resolve_labels
from genreclf.sources.spotify.playlists import PlaylistRef, PlaylistsConfig, load_playlists_config, parse_playlist_ref
from genreclf.sources.spotify.report import (
    IngestSummary,
    genre_summary,
    playlist_table,
    write_spotify_catalog,
)
from genreclf.sources.spotify.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "CRAWL_SCHEMA",
    "DEFAULT_REDIRECT_URI",
    "SKIP_KINDS",
    "USER_SCOPE",
    "AuthMode",
    "Conflict",
    "ConflictRule",
    "Credentials",
    "IngestSummary",
    "NotFoundError",
    "PlaylistCrawl",
    "PlaylistFailure",
    "PlaylistRef",
    "PlaylistsConfig",
    "RateLimitedError",
    "RetryPolicy",
    "SpotifyClient",
    "Taxonomy",
    "TokenFile",
    "authorization_url",
    "connect",
    "crawl_playlist",
    "exchange_code",
    "first_artist_ids",
    "genre_summary",
    "load_crawled_tracks",
    "load_playlists_config",
    "load_taxonomy",
    "lookup_artist_genres",
    "parse_items",
    "parse_playlist_ref",
    "playlist_table",
    "read_artist_cache",
    "resolve_labels",
    "token_path",
    "write_spotify_catalog",
]
