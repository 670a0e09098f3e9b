"""Spotify ingest: playlist refs, taxonomy, labels; the client and the flow against the Web API stand-in."""

from __future__ import annotations

import json
import logging
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import polars as pl
import pytest

from genreclf.errors import ConfigError, SourceError, TransientSourceError
from genreclf.ingest.catalog import read_catalog
from genreclf.settings import Settings
from genreclf.sources import spotify
from genreclf.sources.spotify.taxonomy import load_taxonomy, parse_taxonomy
from genreclf.store.keys import ingest_report_key
from genreclf.store.storage import Store
from tests.spotify_standin import SpotifyStandin, spotify_id, track_entry
from tests.spotify_world import (
    BEBOP_ARTIST,
    CLIENT_ID,
    CLIENT_SECRET,
    EDITORIAL,
    FAST,
    JAZZ_1,
    JAZZ_2,
    ROCK_1,
    ROCK_ARTIST,
    SHARED_TRACK,
    populate,
    world_track,
    write_playlists_file,
)


@pytest.fixture
def api() -> Iterator[SpotifyStandin]:
    standin = SpotifyStandin(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    populate(standin)
    with standin:
        yield standin


@pytest.fixture
def settings(api: SpotifyStandin, tmp_path: Path) -> Settings:
    return Settings(
        spotify_api_url=api.api_url,
        spotify_token_url=api.token_url,
        spotify_max_retry_after_s=5,
        cache_dir=tmp_path / "cache",
        storage_url=str(tmp_path / "store"),
    )


def connect(settings: Settings, **kw: Any) -> spotify.SpotifyClient:
    kw.setdefault("policy", FAST)
    return spotify.connect(spotify.Credentials(CLIENT_ID, CLIENT_SECRET), settings=settings, **kw)


def ref(genre: str, playlist_id: str) -> spotify.PlaylistRef:
    return spotify.PlaylistRef(genre=genre, playlist_id=playlist_id, ref=playlist_id)


# --------------------------------------------------------------------------------------------------------------
# Playlist refs and the playlists file


@pytest.mark.parametrize(
    "text",
    [
        "37i9dQZF1DXbITWG1ZJKYt",
        "spotify:playlist:37i9dQZF1DXbITWG1ZJKYt",
        "spotify:user:someone:playlist:37i9dQZF1DXbITWG1ZJKYt",
        "https://open.spotify.com/playlist/37i9dQZF1DXbITWG1ZJKYt",
        "https://open.spotify.com/playlist/37i9dQZF1DXbITWG1ZJKYt?si=4f1d0a2b3c4d4e5f",
        "https://open.spotify.com/playlist/37i9dQZF1DXbITWG1ZJKYt?si=abc&pi=u-xyz",
        "https://open.spotify.com/intl-de/playlist/37i9dQZF1DXbITWG1ZJKYt",
        "http://open.spotify.com/playlist/37i9dQZF1DXbITWG1ZJKYt/",
        "open.spotify.com/embed/playlist/37i9dQZF1DXbITWG1ZJKYt",
        "  37i9dQZF1DXbITWG1ZJKYt\n",
    ],
)
def test_playlist_refs_in_every_form(text: str) -> None:
    assert spotify.parse_playlist_ref(text) == "37i9dQZF1DXbITWG1ZJKYt"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://open.spotify.com/album/4aawyAB9vmqN3uQ7FjRGTy?si=x", "album, not a playlist"),
        ("spotify:track:11dFghVXANMlKmJXsNCbNl", "track, not a playlist"),
        ("37i9dQZF1DXbITWG1ZJKY", "22 letters and digits, this one has 21"),
        ("https://example.com/playlist/37i9dQZF1DXbITWG1ZJKYt", "not a Spotify playlist"),
        ("", "not a Spotify playlist"),
    ],
)
def test_bad_playlist_refs_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        spotify.parse_playlist_ref(text)


def test_example_playlists_file_loads() -> None:
    config = spotify.load_playlists_config(Path(__file__).parents[1] / "configs" / "playlists.example.toml")
    assert config.genres == ("jazz", "rock", "hiphop", "classical")
    assert all(len(p.playlist_id) == 22 for p in config.playlists)
    assert config.taxonomy.version


def test_bad_playlist_string_names_string_and_file(tmp_path: Path) -> None:
    path = tmp_path / "playlists.toml"
    path.write_text(
        '[genres]\njazz = ["spotify:playlist:37i9dQZF1DXbITWG1ZJKYt", "https://open.spotify.com/album/x"]\n'
    )
    with pytest.raises(ConfigError, match=r"playlists\.toml: genre 'jazz': 'https://open\.spotify\.com/album/x'"):
        spotify.load_playlists_config(path)


def test_playlists_file_yaml_override_and_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "playlists.yaml"
    path.write_text(f"genres:\n  jazz:\n    - {JAZZ_1}\n    - spotify:playlist:{JAZZ_1}\n  rock: [{ROCK_1}]\n")
    config = spotify.load_playlists_config(path)
    assert [(p.genre, p.playlist_id) for p in config.playlists] == [("jazz", JAZZ_1), ("rock", ROCK_1)]

    override = spotify.load_playlists_config(tmp_path / "absent.toml", override={"metal": [JAZZ_2]})
    assert override.genres == ("metal",) and override.source == "flow parameter `playlists`"

    path.write_text(f"genres:\n  jazz: [{JAZZ_1}]\n  rock: [{JAZZ_1}]\n")
    with pytest.raises(ConfigError, match="listed under both 'jazz' and 'rock'"):
        spotify.load_playlists_config(path)
    path.write_text(f"genre:\n  jazz: [{JAZZ_1}]\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        spotify.load_playlists_config(path)
    with pytest.raises(ConfigError, match=r"copy configs/playlists\.example\.toml"):
        spotify.load_playlists_config(tmp_path / "absent.toml")


# --------------------------------------------------------------------------------------------------------------
# Taxonomy


@pytest.mark.parametrize(
    ("micro", "target"),
    [
        ("bebop", "jazz"),
        ("Hard  Bop", "jazz"),
        ("jazz rap", "hiphop"),  # the head word comes last
        ("soul jazz", "jazz"),
        ("blues rock", "rock"),
        ("pop punk", "rock"),
        ("k-pop", "pop"),
        ("western swing", "country"),  # an exact name beats the "swing" keyword
        ("dubstep", "electronic"),  # "dub" is a whole word only
        ("modern alternative rock", "rock"),
        ("polka", None),
    ],
)
def test_taxonomy_maps_micro_genres(micro: str, target: str | None) -> None:
    assert load_taxonomy().map_genre(micro) == target


def test_taxonomy_votes_and_checks_itself() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.vote(["bebop", "hard bop", "jazz rap"]) == "jazz"
    assert taxonomy.vote(["bebop", "jazz rap"]) is None  # a tie is no vote
    assert taxonomy.vote(["polka"]) is None
    with pytest.raises(ConfigError, match="listed under both jazz and rock"):
        parse_taxonomy(
            {"version": "1", "targets": {"jazz": {"genres": ["fusion"]}, "rock": {"genres": ["Fusion"]}}},
            source="t.toml",
        )
    with pytest.raises(ConfigError, match="version"):
        parse_taxonomy({"targets": {"jazz": {"genres": ["bebop"]}}}, source="t.toml")


# --------------------------------------------------------------------------------------------------------------
# Labels


def _tracks(*rows: tuple[str, str | None, str, str, str]) -> pl.DataFrame:
    """(track_id, isrc, artist_id, genre, playlist) rows, in playlists-file order."""
    return pl.DataFrame(
        [
            {
                "position": i,
                "track_id": t,
                "title": f"title {t}",
                "artists": [f"name {a}"],
                "artist_ids": [a],
                "duration_ms": 180_500,
                "isrc": isrc,
                "added_at": None,
                "genre": g,
                "source_ref": p,
                "snapshot_id": f"snap-{p}",
                "playlist_order": int(p[1:]),
            }
            for i, (t, isrc, a, g, p) in enumerate(rows)
        ]
    )


def test_labels_dedupe_by_track_id_and_isrc() -> None:
    tracks = _tracks(
        ("t1", "ISRC1", "a1", "jazz", "p1"),
        ("t2", "ISRC1", "a1", "jazz", "p2"),  # same recording, another track id
        ("t1", "ISRC1", "a1", "jazz", "p2"),  # same track again
        ("t3", None, "a2", "jazz", "p2"),
    )
    catalog, conflicts = spotify.resolve_labels(tracks, votes={"a1": "jazz"})
    assert catalog["track_id"].to_list() == ["t1", "t3"] and not conflicts
    first = catalog.row(0, named=True)
    assert first["source_ref"] == "p1" and first["snapshot_id"] == "snap-p1"
    assert first["artist_genre_vote"] == "jazz" and first["label_source"] == "playlist"
    assert first["duration_s"] == pytest.approx(180.5) and first["audio_uri"] is None


def test_conflicts_majority_then_artist_vote_then_drop() -> None:
    tracks = _tracks(
        ("maj", None, "a1", "jazz", "p1"),
        ("maj", None, "a1", "jazz", "p2"),
        ("maj", None, "a1", "rock", "p3"),
        ("tie", None, "a2", "jazz", "p1"),
        ("tie", None, "a2", "rock", "p3"),
        ("drop", None, "a3", "jazz", "p1"),
        ("drop", None, "a3", "rock", "p3"),
    )
    votes = {"a1": "rock", "a2": "rock", "a3": "pop"}
    catalog, conflicts = spotify.resolve_labels(tracks, votes=votes)
    labels = dict(zip(catalog["track_id"], catalog["genre"], strict=True))
    assert labels == {"maj": "jazz", "tie": "rock"}
    by_id = {c.track_id: c for c in conflicts}
    assert by_id["maj"].genres == {"jazz": 2, "rock": 1} and by_id["maj"].reason.startswith("majority")
    assert by_id["tie"].resolved == "rock" and "vote" in by_id["tie"].reason
    assert by_id["drop"].resolved is None
    assert catalog.filter(pl.col("track_id") == "tie")["source_ref"].item() == "p3"

    catalog, conflicts = spotify.resolve_labels(tracks, votes=votes, rule="drop")
    assert catalog.height == 0 and len(conflicts) == 3


def test_credentials_from_secret_hide_the_secret() -> None:
    creds = spotify.Credentials.from_secret('{"client_id": "id", "client_secret": "s3cr3t"}', source="block x")
    assert creds.client_secret == "s3cr3t" and "s3cr3t" not in repr(creds)
    with pytest.raises(ConfigError, match="block x must hold JSON"):
        spotify.Credentials.from_secret({"client_id": "id"}, source="block x")


# --------------------------------------------------------------------------------------------------------------
# The client against the stand-in


def test_crawl_follows_pages_and_skips_what_is_not_a_track(
    api: SpotifyStandin, settings: Settings, tmp_path: Path
) -> None:
    client, store = connect(settings), Store.open(str(tmp_path / "store"))
    crawl = spotify.crawl_playlist(client, store, ref("jazz", JAZZ_1))

    assert crawl.skipped == {"local": 1, "episode": 1, "unavailable": 3}
    assert crawl.tracks == 121 - 5 and not crawl.cached
    assert crawl.name == "Bebop Essentials" and crawl.snapshot_id == "c25hcA==/1"
    pages = [r for r in api.requests if r.path.endswith("/items")]
    assert [r.query["offset"] for r in pages] == ["0", "50", "100"]
    assert all(r.query["limit"] == "50" and "isrc" in r.query["fields"] for r in pages)
    rows = store.read_parquet(crawl.key).to_pylist()
    assert rows[0]["isrc"] == "USJZ10000000" and rows[0]["duration_ms"] == 200_000
    assert rows[0]["artist_ids"] == [BEBOP_ARTIST] and rows[0]["artists"] == ["Artist 1"]

    legacy = spotify.crawl_playlist(client, store, ref("jazz", JAZZ_2))  # entries under `track` only
    assert legacy.tracks == 3

    again = spotify.crawl_playlist(client, store, ref("jazz", JAZZ_1))
    assert again.cached and again.tracks == crawl.tracks and again.skipped == crawl.skipped
    assert api.count(f"/v1/playlists/{JAZZ_1}/items") == 3  # no new page requests


def test_429_waits_as_retry_after_says(
    api: SpotifyStandin, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(settings)
    api.fail(r"/v1/playlists/.*/items", status=429, times=1, retry_after=1)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="genreclf"):
        crawl = spotify.crawl_playlist(client, Store.open(str(tmp_path / "s")), ref("rock", ROCK_1))
    assert time.monotonic() - start >= 1.0
    assert crawl.tracks == 6
    assert "Retry-After" in caplog.text and "retrying in 1.0 s" in caplog.text


def test_long_retry_after_fails_with_a_time_to_come_back(api: SpotifyStandin, settings: Settings) -> None:
    client = connect(settings)
    api.fail(r"/v1/playlists/.*", status=429, times=1, retry_after=3600)
    with pytest.raises(spotify.RateLimitedError, match=r"wait 3600 s.*retry after 20\d\d-") as info:
        client.playlist(ROCK_1)
    assert info.value.retry_at.timestamp() > time.time() + 3500
    sent = len(api.requests)
    with pytest.raises(spotify.RateLimitedError, match="not sent"):
        client.playlist(JAZZ_1)  # fails at once, without asking again
    assert len(api.requests) == sent


def test_5xx_and_timeouts_are_retried_then_given_up(api: SpotifyStandin, settings: Settings) -> None:
    client = connect(settings, timeout_s=0.3)
    api.fail(r"/v1/playlists/.*", status=503, times=2)
    assert client.playlist(ROCK_1)["name"] == "Rock Classics"
    api.fail(r"/v1/playlists/.*", status=200, times=1, delay_s=1.0)  # slower than the timeout
    assert client.playlist(ROCK_1)["name"] == "Rock Classics"
    api.fail(r"/v1/playlists/.*", status=502, times=10)
    with pytest.raises(TransientSourceError, match=r"HTTP 502; gave up after 4 attempts"):
        client.playlist(ROCK_1)


def test_401_fetches_a_new_token_once(api: SpotifyStandin, settings: Settings) -> None:
    client = connect(settings)
    api.revoke_tokens()
    assert client.playlist(ROCK_1)["snapshot_id"]
    assert api.count("/api/token", method="POST") == 2

    api.reject_all_tokens = True
    with pytest.raises(SourceError, match="rejected a freshly issued access token"):
        client.playlist(ROCK_1)
    assert api.count("/api/token", method="POST") == 3  # one refresh, not a loop


def test_editorial_playlist_fails_at_once_saying_why(api: SpotifyStandin, settings: Settings) -> None:
    client = connect(settings)
    with pytest.raises(SourceError, match=r"404.*editorial") as info:
        spotify.crawl_playlist(client, Store.open(settings.storage_url), ref("rock", EDITORIAL))
    assert not isinstance(info.value, TransientSourceError)
    assert api.count(f"/v1/playlists/{EDITORIAL}") == 1


def test_missing_credentials_and_403_say_what_to_do(
    api: SpotifyStandin, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPOTIPY_CLIENT_ID", raising=False)
    with pytest.raises(ConfigError, match=r"SPOTIPY_CLIENT_ID.*Secret block"):
        spotify.connect(settings=settings)
    client = connect(settings)
    api.fail(r"/v1/playlists/.*", status=403)
    with pytest.raises(SourceError, match="development-mode app may only read playlists its user owns"):
        client.playlist(JAZZ_1)


def test_bad_credentials_fail_early_and_secrets_stay_out_of_logs(
    api: SpotifyStandin, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError, match="invalid_client") as info:
        spotify.connect(spotify.Credentials(CLIENT_ID, "wrong-secret"), settings=settings, policy=FAST)
    assert "wrong-secret" not in str(info.value)
    assert api.count(r"/v1/.*") == 0

    caplog.clear()
    api.clear_requests()
    api.refresh_tokens.add("the-refresh-token")
    creds = spotify.Credentials(CLIENT_ID, CLIENT_SECRET, refresh_token="the-refresh-token")
    with caplog.at_level(logging.DEBUG):
        client = spotify.connect(creds, auth="user", settings=settings, policy=FAST)
        client.playlist(ROCK_1)
    assert "Bearer [redacted]" in caplog.text and "Basic [redacted]" in caplog.text
    for secret in (CLIENT_SECRET, "the-refresh-token", client.sp.auth_manager.cache_handler.token_info["access_token"]):
        assert secret not in caplog.text
    assert [r.query.get("grant_type") for r in api.requests if r.path == "/api/token"] == ["refresh_token"]


def test_user_authorization_then_headless_refresh(api: SpotifyStandin, settings: Settings) -> None:
    creds = spotify.Credentials(CLIENT_ID, CLIENT_SECRET)
    url = spotify.authorization_url(creds, settings=settings)
    assert url.startswith(f"{api.url}/authorize?") and f"client_id={CLIENT_ID}" in url and "playlist-read" in url
    with pytest.raises(ConfigError, match="needs a refresh token"):
        spotify.connect(creds, auth="user", settings=settings)

    code = api.issue_auth_code(spotify.DEFAULT_REDIRECT_URI)
    path = spotify.exchange_code(f"{spotify.DEFAULT_REDIRECT_URI}?code={code}&state=x", creds, settings=settings)
    assert path == spotify.token_path(settings) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] in api.refresh_tokens

    client = spotify.connect(creds, auth="user", settings=settings, policy=FAST)
    api.revoke_tokens()
    assert client.playlist(JAZZ_1)["name"] == "Bebop Essentials"
    grants = [r.query.get("grant_type") for r in api.requests if r.path == "/api/token"]
    assert grants == ["authorization_code", "refresh_token"]


def test_artist_genres_are_looked_up_once_across_runs(api: SpotifyStandin, settings: Settings) -> None:
    client, store = connect(settings), Store.open(settings.storage_url)
    gone = spotify_id("ar", 404)
    genres = spotify.lookup_artist_genres(client, store, [BEBOP_ARTIST, ROCK_ARTIST, BEBOP_ARTIST, gone])
    assert genres == {
        BEBOP_ARTIST: ["bebop", "hard bop", "jazz"],
        ROCK_ARTIST: ["album rock", "classic rock"],
        gone: [],
    }
    assert api.count(r"/v1/artists/.*") == 3

    assert spotify.lookup_artist_genres(connect(settings), store, [BEBOP_ARTIST, gone]) == {
        BEBOP_ARTIST: ["bebop", "hard bop", "jazz"],
        gone: [],
    }
    assert api.count(r"/v1/artists/.*") == 3  # all from the store's cache
    spotify.lookup_artist_genres(client, store, [ROCK_ARTIST], max_age_days=0)
    assert api.count(r"/v1/artists/.*") == 4  # stale: asked again


# --------------------------------------------------------------------------------------------------------------
# The flow, end to end


@pytest.fixture
def flow_env(api: SpotifyStandin, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("GENRECLF_SPOTIFY_API_URL", api.api_url)
    monkeypatch.setenv("GENRECLF_SPOTIFY_TOKEN_URL", api.token_url)
    monkeypatch.setenv("GENRECLF_SPOTIFY_MAX_RETRY_AFTER_S", "5")
    monkeypatch.setenv("GENRECLF_CACHE_DIR", str(settings.cache_dir))
    return settings


@pytest.mark.e2e
@pytest.mark.slow
def test_flow_end_to_end_then_skips_unchanged_playlists(
    prefect_server: None,
    api: SpotifyStandin,
    flow_env: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.artifacts import Artifact

    from genreclf.flows.ingest_spotify import ingest_spotify

    monkeypatch.setenv("SPOTIPY_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPOTIPY_CLIENT_SECRET", CLIENT_SECRET)
    playlists_file = write_playlists_file(tmp_path, [ROCK_1, EDITORIAL])
    store = Store.open(flow_env.storage_url)

    version = ingest_spotify(playlists_file=playlists_file, storage_url=store.url)

    catalog = read_catalog(store, version)
    assert catalog["track_id"].is_unique().all()
    counts = dict(catalog.group_by("genre").len().iter_rows())
    # jazz: 116 from JAZZ_1 less the crossover track, plus one new track from JAZZ_2; rock: 5 + the crossover
    # track, which is in one playlist of each genre and goes to rock, its artist's vote ("jazz rock", "blues rock").
    assert counts == {"jazz": 115 + 1, "rock": 6}
    shared = catalog.filter(pl.col("track_id") == SHARED_TRACK).row(0, named=True)
    assert shared["genre"] == "rock" and shared["source_ref"] == ROCK_1 and shared["artist_genre_vote"] == "rock"
    bebop = catalog.filter(pl.col("artist_id") == BEBOP_ARTIST)
    assert set(bebop["artist_genre_vote"]) == {"jazz"} and set(bebop["source"]) == {"spotify"}
    assert set(bebop["snapshot_id"]) <= {"c25hcA==/1", "AAAAAQ+snapshot/1=="}

    report = store.read_json(ingest_report_key(version))
    assert [f["playlist_id"] for f in report["failures"]] == [EDITORIAL]
    assert "editorial" in report["failures"][0]["error"]
    assert [c["track_id"] for c in report["conflicts"]] == [SHARED_TRACK]
    artifact = cast(Artifact | None, Artifact.get("spotify-ingest-playlists"))
    assert artifact is not None and EDITORIAL in str(artifact.data)

    # Nothing changed: no items pages, no artists; the same catalog version.
    api.clear_requests()
    assert ingest_spotify(playlists_file=playlists_file, storage_url=store.url) == version
    assert api.count(r"/v1/playlists/.*/items") == 0 and api.count(r"/v1/artists/.*") == 0

    # One playlist changed: only it is paged through again.
    api.playlists[ROCK_1].entries.append(track_entry(world_track(800, ROCK_ARTIST)))
    api.playlists[ROCK_1].snapshot_id = "AAAAAg+snapshot/2=="
    api.clear_requests()
    new_version = ingest_spotify(playlists_file=playlists_file, storage_url=store.url)
    assert new_version != version
    assert api.count(r"/v1/playlists/.*/items") == 1 and api.count(f"/v1/playlists/{ROCK_1}/items") == 1
    assert read_catalog(store).height == catalog.height + 1
    assert read_catalog(store, version).height == catalog.height  # the old version is still there


@pytest.mark.e2e
def test_flow_secret_block_and_early_failures(
    prefect_server: None, api: SpotifyStandin, flow_env: Settings, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    from genreclf.flows.ingest_spotify import ingest_spotify

    store_url = flow_env.storage_url
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[genres]\njazz = ["{JAZZ_1}", "spotify:album:{JAZZ_2}"]\n')
    with pytest.raises(ConfigError, match=rf"bad\.toml: genre 'jazz': 'spotify:album:{JAZZ_2}' is a Spotify album"):
        ingest_spotify(playlists_file=str(bad), storage_url=store_url, secret_block="spotify-standin")
    assert api.requests == []  # rejected before any request

    Secret(value={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).save("spotify-standin", overwrite=True)
    version = ingest_spotify(
        playlists_file=str(tmp_path / "absent.toml"),
        storage_url=store_url,
        secret_block="spotify-standin",
        playlists={"rock": [ROCK_1]},
        artist_genres=False,
    )
    catalog = read_catalog(Store.open(store_url), version)
    assert catalog.height == 6 and catalog["artist_genre_vote"].null_count() == 6
    assert api.count(r"/v1/artists/.*") == 0

    with pytest.raises(SourceError, match=r"none of the 1 playlists could be read.*editorial"):
        ingest_spotify(
            playlists_file=str(bad),
            storage_url=store_url,
            secret_block="spotify-standin",
            playlists={"rock": [EDITORIAL]},
        )
