"""`genreclf ingest-spotify` and `genreclf spotify-login` through a real argparse parser, against the Spotify
stand-in."""

from __future__ import annotations

import argparse
import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from genreclf.app.cli_spotify import add_parsers
from genreclf.errors import ConfigError, GenreclfError
from genreclf.ingest.catalog import read_catalog, resolve_version
from genreclf.settings import get_settings
from genreclf.sources import spotify
from genreclf.store.storage import Store
from tests.spotify_standin import SpotifyStandin, StandinPlaylist, make_track, spotify_id, track_entry
from tests.spotify_world import CLIENT_ID, CLIENT_SECRET

JAZZ, ROCK, EDITORIAL = (spotify_id("pl", n) for n in (1, 2, 9))
JAZZ_ARTIST, ROCK_ARTIST = spotify_id("ar", 1), spotify_id("ar", 2)


def parser() -> argparse.ArgumentParser:
    """The `genreclf` command as cli.build_parser makes it, with only these two subcommands."""
    p = argparse.ArgumentParser(prog="genreclf")
    add_parsers(p.add_subparsers(dest="command", required=True))
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def api() -> Iterator[SpotifyStandin]:
    standin = SpotifyStandin(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    jazz = [track_entry(make_track(spotify_id("tr", n), f"Jazz {n}", [(JAZZ_ARTIST, "Artist 1")])) for n in range(4)]
    jazz.append(None)  # an unavailable item
    rock = [
        track_entry(make_track(spotify_id("tr", 100 + n), f"Rock {n}", [(ROCK_ARTIST, "Artist 2")])) for n in range(3)
    ]
    standin.add_playlist(StandinPlaylist(id=JAZZ, name="Jazz", entries=jazz))
    standin.add_playlist(StandinPlaylist(id=ROCK, name="Rock", entries=rock))
    standin.add_playlist(
        StandinPlaylist(id=EDITORIAL, name="Rock This", entries=rock, owner_id="spotify", editorial=True)
    )
    standin.add_artist(JAZZ_ARTIST, "Artist 1", ["bebop"])
    standin.add_artist(ROCK_ARTIST, "Artist 2", ["classic rock"])
    with standin:
        yield standin


@pytest.fixture
def env(api: SpotifyStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """genreclf pointed at the stand-in, the app's credentials in the environment; returns the store path."""
    monkeypatch.setenv("GENRECLF_SPOTIFY_API_URL", api.api_url)
    monkeypatch.setenv("GENRECLF_SPOTIFY_TOKEN_URL", api.token_url)
    monkeypatch.setenv("GENRECLF_SPOTIFY_MAX_RETRY_AFTER_S", "5")
    monkeypatch.setenv("GENRECLF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPOTIPY_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SPOTIPY_CLIENT_SECRET", CLIENT_SECRET)
    return tmp_path / "store"


def playlists_file(tmp_path: Path, rock: list[str]) -> str:
    path = tmp_path / "playlists.toml"
    path.write_text(f'version = 1\n[genres]\njazz = ["spotify:playlist:{JAZZ}"]\nrock = {json.dumps(rock)}\n')
    return str(path)


def browser(api: SpotifyStandin, capsys: pytest.CaptureFixture[str], **extra: str) -> Callable[[str], str]:
    """A stand-in for `input()`: the user opens the printed address, agrees, pastes where the browser went."""

    def paste(prompt: str) -> str:
        printed = capsys.readouterr().out
        url = next(w for w in printed.split() if w.startswith(f"{api.url}/authorize?"))
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        assert query["scope"] == spotify.USER_SCOPE
        code = api.issue_auth_code(query["redirect_uri"])
        answer = {"code": code, "state": query["state"], **extra}
        print(prompt)  # what the terminal shows  # noqa: T201
        return f"{query['redirect_uri']}?" + "&".join(f"{k}={v}" for k, v in answer.items())

    return paste


# --- spotify-login ----------------------------------------------------------------------------------------------


def test_login_prints_the_address_and_saves_the_token_where_the_ingest_finds_it(
    api: SpotifyStandin, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", browser(api, capsys))

    assert run("spotify-login") == 0

    out = capsys.readouterr().out
    path = spotify.token_path(get_settings())
    assert f"Saved the Spotify user token to {path}" in out
    assert "genreclf ingest-spotify --playlists configs/playlists.toml --auth user" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] in api.refresh_tokens
    # What `ingest-spotify --auth user` does with it: refresh, read a playlist.
    client = spotify.connect(auth="user", settings=get_settings())
    assert client.playlist(JAZZ)["name"] == "Jazz"


def test_login_with_the_address_on_the_command_line(api: SpotifyStandin, env: Path) -> None:
    redirect = "http://127.0.0.1:9999/done"
    code = api.issue_auth_code(redirect)

    assert run("spotify-login", "--redirect-uri", redirect, "--code", f"{redirect}?code={code}") == 0

    assert spotify.token_path(get_settings()).is_file()
    grants = [r.query.get("grant_type") for r in api.requests if r.path == "/api/token"]
    assert grants == ["authorization_code"]


@pytest.mark.parametrize(
    ("unset", "named"),
    [("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_ID is not set"), ("SPOTIPY_CLIENT_SECRET", "SPOTIPY_CLIENT_SECRET is not")],
)
def test_login_without_the_app_credentials_names_the_variables(
    unset: str, named: str, api: SpotifyStandin, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(unset)

    with pytest.raises(ConfigError) as e:
        run("spotify-login")

    assert str(e.value).startswith(named)
    assert "export SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET" in str(e.value) and "--secret-block" in str(e.value)
    assert api.requests == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--redirect-uri", ""], "--redirect-uri '' is not an http(s) address"),
        (["--redirect-uri", "127.0.0.1:8888/callback"], "e.g. http://127.0.0.1:8888/callback"),
        (["--code", "http://127.0.0.1:8888/callback?error=access_denied"], "'access_denied' instead of a code"),
        (["--code", "http://127.0.0.1:8888/callback?state=x"], "no ?code= in"),
        (["--code", "not-a-code-spotify-gave"], "Invalid authorization code"),
    ],
)
def test_login_mistakes_say_what_to_do(argv: list[str], words: str, api: SpotifyStandin, env: Path) -> None:
    with pytest.raises(GenreclfError) as e:
        run("spotify-login", *argv)

    assert words in str(e.value)
    assert not spotify.token_path(get_settings()).exists()


def test_login_refuses_an_address_from_another_attempt(
    api: SpotifyStandin, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", browser(api, capsys, state="from-another-login"))

    with pytest.raises(ConfigError, match="its state differs"):
        run("spotify-login")
    assert api.count("/api/token", method="POST") == 0


def test_login_without_a_terminal_points_at_code(
    api: SpotifyStandin, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def closed(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", closed)

    with pytest.raises(ConfigError, match="pass the address with --code URL"):
        run("spotify-login")
    out = capsys.readouterr().out
    assert f"{api.url}/authorize?client_id={CLIENT_ID}" in out
    assert f"must list {spotify.DEFAULT_REDIRECT_URI} as a Redirect URI" in out


def test_help_states_the_library_redirect_uri() -> None:
    # The default is the library's (the option is left out of the namespace); its help repeats it: keep them equal.
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    option = next(a for a in sub.choices["spotify-login"]._actions if a.dest == "redirect_uri")
    assert f"(default {spotify.DEFAULT_REDIRECT_URI})" in str(option.help)


# --- ingest-spotify ---------------------------------------------------------------------------------------------


def test_ingest_checks_file_and_credentials_before_any_server_starts(
    api: SpotifyStandin, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"playlists file .*absent\.toml does not exist"):
        run("ingest-spotify", "--playlists", str(tmp_path / "absent.toml"))

    file = playlists_file(tmp_path, [ROCK])
    with pytest.raises(ConfigError, match=r"--auth user needs a user token .* run `genreclf spotify-login` once"):
        run("ingest-spotify", "--playlists", file, "--auth", "user")

    monkeypatch.delenv("SPOTIPY_CLIENT_ID")
    with pytest.raises(ConfigError, match=r"^SPOTIPY_CLIENT_ID is not set: ingest-spotify needs"):
        run("ingest-spotify", "--playlists", file)
    assert api.requests == []


@pytest.mark.e2e
@pytest.mark.slow
def test_ingest_runs_the_flow_and_prints_what_it_wrote(
    prefect_server: None,
    api: SpotifyStandin,
    env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    file = playlists_file(tmp_path, [ROCK, EDITORIAL])

    rc = run("ingest-spotify", "--playlists", file, "--store", str(env))

    out = capsys.readouterr().out
    store = Store.open(str(env))
    version = resolve_version(store)
    assert read_catalog(store, version).height == 7
    assert rc == 1  # one playlist failed; the catalog is written from the others
    assert f"store:     {store.url}\n" in out
    assert f"catalog:   {version} (7 tracks: jazz 4, rock 3; now catalogs/LATEST)" in out
    assert "playlists: 3: 2 crawled, 0 unchanged since the last run (read from the store), 1 failed" in out
    assert "skipped:   1 unavailable (playlist items that are not available tracks)" in out
    assert f"failed:    rock: {EDITORIAL}: playlist {EDITORIAL}: not found (404)" in out
    assert f"report:    {store.uri(f'spotify/reports/{version}.json')}" in out

    # The app's credentials in a Secret block only; authorized as a user; the editorial playlist left out:
    # nothing changed, nothing crawled again.
    from prefect.blocks.system import Secret

    Secret(value={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).save("cli-spotify", overwrite=True)
    monkeypatch.delenv("SPOTIPY_CLIENT_ID")
    monkeypatch.delenv("SPOTIPY_CLIENT_SECRET")
    monkeypatch.setattr("builtins.input", browser(api, capsys))
    assert run("spotify-login", "--secret-block", "cli-spotify") == 0
    capsys.readouterr()
    api.clear_requests()
    file = playlists_file(tmp_path, [ROCK])

    argv = ["--playlists", file, "--store", str(env), "--auth", "user", "--secret-block", "cli-spotify"]
    assert run("ingest-spotify", *argv) == 0

    out = capsys.readouterr().out
    assert "playlists: 2: 0 crawled, 2 unchanged since the last run (read from the store), 0 failed" in out
    assert f"catalog:   {version} (7 tracks: jazz 4, rock 3; now catalogs/LATEST)" in out
    assert api.count(r"/v1/playlists/.*/items") == 0 and api.count(r"/v1/artists/.*") == 0
    # The access token spotify-login saved is still fresh: used as it is, no client-credentials token asked for.
    assert [r.query.get("grant_type") for r in api.requests if r.path == "/api/token"] == []
    assert api.count(f"/v1/playlists/{JAZZ}") == 1 and api.count(f"/v1/playlists/{ROCK}") == 1
