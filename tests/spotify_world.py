"""The Spotify catalog the stand-in serves in the tests: two jazz playlists (one 3 pages long, with every kind
of item genreclf skips), a rock one and an editorial one, their artists, and a playlists config that declares them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genreclf.sources import spotify
from tests.spotify_standin import (
    SpotifyStandin,
    StandinPlaylist,
    episode_entry,
    local_entry,
    make_track,
    spotify_id,
    track_entry,
)

CLIENT_ID, CLIENT_SECRET = "standin-client", "standin-secret"
JAZZ_1, JAZZ_2, ROCK_1, EDITORIAL = (spotify_id("pl", n) for n in (1, 2, 3, 9))
BEBOP_ARTIST, ROCK_ARTIST, CROSSOVER_ARTIST = (spotify_id("ar", n) for n in (1, 2, 3))
SHARED_TRACK = spotify_id("tr", 999)  # in a jazz and a rock playlist
FAST = spotify.RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, max_retry_after_s=5)


def world_track(n: int, artist: str, *, isrc: str | None = None, **kw: Any) -> dict[str, Any]:
    """Track `n` of the world, by `artist`."""
    return make_track(spotify_id("tr", n), f"Track {n}", [(artist, f"Artist {artist[-1]}")], isrc=isrc, **kw)


def populate(api: SpotifyStandin) -> None:
    """Two jazz playlists (one 3 pages long, with every kind of skipped item), a rock one, an editorial one."""
    jazz_1: list[dict[str, Any] | None] = [
        track_entry(world_track(n, BEBOP_ARTIST, isrc=f"USJZ1{n:07d}")) for n in range(120)
    ]
    jazz_1[10] = local_entry("Home Recording", "Me")
    jazz_1[60] = track_entry(None)  # removed from Spotify
    jazz_1[61] = None
    jazz_1[62] = episode_entry(spotify_id("ep", 1), "A Podcast")
    jazz_1[63] = track_entry(world_track(63, BEBOP_ARTIST, is_playable=False))
    jazz_1.append(track_entry(make_track(SHARED_TRACK, "Crossover", [(CROSSOVER_ARTIST, "Crossover Artist")])))
    api.add_playlist(StandinPlaylist(id=JAZZ_1, name="Bebop Essentials", entries=jazz_1, snapshot_id="c25hcA==/1"))
    jazz_2: list[dict[str, Any] | None] = [
        # Same recording as jazz_1's track 0 (same ISRC), released under another track id.
        track_entry(world_track(500, BEBOP_ARTIST, isrc="USJZ10000000")),
        track_entry(world_track(1, BEBOP_ARTIST, isrc="USJZ10000001")),  # the same track id again
        track_entry(world_track(501, BEBOP_ARTIST)),
    ]
    api.add_playlist(StandinPlaylist(id=JAZZ_2, name="Hard Bop", entries=jazz_2, legacy_track_key=True))
    rock: list[dict[str, Any] | None] = [track_entry(world_track(700 + n, ROCK_ARTIST)) for n in range(5)]
    rock.append(track_entry(make_track(SHARED_TRACK, "Crossover", [(CROSSOVER_ARTIST, "Crossover Artist")])))
    api.add_playlist(StandinPlaylist(id=ROCK_1, name="Rock Classics", entries=list(rock)))
    api.add_playlist(
        StandinPlaylist(id=EDITORIAL, name="Rock This", entries=list(rock), owner_id="spotify", editorial=True)
    )
    api.add_artist(BEBOP_ARTIST, "Artist 1", ["bebop", "hard bop", "jazz"])
    api.add_artist(ROCK_ARTIST, "Artist 2", ["album rock", "classic rock"])
    api.add_artist(CROSSOVER_ARTIST, "Artist 3", ["jazz rock", "blues rock", "jazz fusion"])


def write_playlists_file(tmp_path: Path, rock: list[str]) -> str:
    """A playlists config declaring both jazz playlists and `rock` (a list of playlist URLs or ids)."""
    path = tmp_path / "playlists.toml"
    path.write_text(
        "version = 1\n[genres]\n"
        f'jazz = ["https://open.spotify.com/playlist/{JAZZ_1}?si=abc", "spotify:playlist:{JAZZ_2}"]\n'
        f"rock = {json.dumps(rock)}\n"
    )
    return str(path)
