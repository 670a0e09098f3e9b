"""Crawl rate of the Spotify ingest against the loopback Web API stand-in (items per second).

    .venv/bin/python benchmarks/ingest.py [--playlists 20] [--tracks 1000] [--artists 500]

This measures genreclf's side (spotipy, JSON, parsing, Parquet writes to a local store) with a server that
answers at once; against api.spotify.com the rate is bound by round trips (50 items a page) and rate limits.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genreclf.settings import Settings  # noqa: E402
from genreclf.sources import spotify  # noqa: E402
from genreclf.sources.spotify.taxonomy import load_taxonomy  # noqa: E402
from genreclf.store.storage import Store  # noqa: E402
from tests.spotify_standin import (  # noqa: E402
    SpotifyStandin,
    StandinPlaylist,
    local_entry,
    make_track,
    spotify_id,
    track_entry,
)

GENRES = ("jazz", "rock", "hiphop", "classical")


def populate(api: SpotifyStandin, *, playlists: int, tracks: int, artists: int) -> list[spotify.PlaylistRef]:
    refs = []
    for p in range(playlists):
        entries = []
        for t in range(tracks):
            n = p * tracks + t
            artist = spotify_id("ar", n % artists)
            track = make_track(
                spotify_id("tr", n), f"Track {n}", [(artist, f"Artist {n % artists}")], isrc=f"QZ{n:010d}"
            )
            entries.append(track_entry(track) if t % 100 else local_entry(f"Local {n}", "Me"))
        playlist_id = spotify_id("pl", p)
        api.add_playlist(StandinPlaylist(id=playlist_id, name=f"Playlist {p}", entries=entries))
        refs.append(spotify.PlaylistRef(genre=GENRES[p % len(GENRES)], playlist_id=playlist_id, ref=playlist_id))
    for a in range(artists):
        api.add_artist(spotify_id("ar", a), f"Artist {a}", ["bebop", "hard bop"])
    return refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--playlists", type=int, default=20)
    parser.add_argument("--tracks", type=int, default=1000, help="entries per playlist")
    parser.add_argument("--artists", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with SpotifyStandin() as api, tempfile.TemporaryDirectory() as tmp:
        refs = populate(api, playlists=args.playlists, tracks=args.tracks, artists=args.artists)
        settings = Settings(spotify_api_url=api.api_url, spotify_token_url=api.token_url, cache_dir=Path(tmp))
        client = spotify.connect(spotify.Credentials(api.client_id, api.client_secret), settings=settings)
        store = Store.open(str(Path(tmp) / "store"), settings)
        items = args.playlists * args.tracks

        start = time.perf_counter()
        crawls = [spotify.crawl_playlist(client, store, r) for r in refs]
        crawl_s = time.perf_counter() - start
        pages = api.count(r"/v1/playlists/.*/items")

        start = time.perf_counter()
        for r in refs:
            spotify.crawl_playlist(client, store, r)
        cached_s = time.perf_counter() - start

        start = time.perf_counter()
        genres = spotify.lookup_artist_genres(client, store, spotify.first_artist_ids(store, crawls))
        artists_s = time.perf_counter() - start

        start = time.perf_counter()
        config = spotify.PlaylistsConfig(
            source="benchmark", genres=GENRES, playlists=tuple(refs), taxonomy=load_taxonomy()
        )
        summary = spotify.write_spotify_catalog(store, crawls, config=config, artist_genres=genres)
        catalog_s = time.perf_counter() - start

    print(f"stand-in: {args.playlists} playlists x {args.tracks} entries = {items:,} items, {pages} pages")
    print(
        f"crawl (all snapshots new):  {crawl_s:6.2f} s  {items / crawl_s:9,.0f} items/s  {pages / crawl_s:6.0f} pages/s"
    )
    print(f"rerun (snapshots unchanged): {cached_s:5.2f} s  {args.playlists / cached_s:9,.0f} playlists/s")
    print(f"artist genres ({len(genres)} lookups): {artists_s:5.2f} s  {len(genres) / artists_s:6,.0f} artists/s")
    print(f"labels + catalog write ({summary.tracks:,} tracks): {catalog_s:5.2f} s")
    # The whole process, the stand-in's own copy of every playlist included (it serves them from memory).
    print(f"peak memory (RSS) of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
