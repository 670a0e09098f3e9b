"""The `genreclf ingest-spotify` and `genreclf spotify-login` commands: the Spotify ingest flow and the one-time
user authorization, from the shell."""

from __future__ import annotations

import argparse
import re
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from genreclf.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from genreclf.settings import Settings
    from genreclf.sources.spotify import Credentials
    from genreclf.store.storage import Store

APP_SETTINGS = "developer.spotify.com > Dashboard > your app > Settings"
STORE_HELP = "storage root: a directory or s3://bucket/prefix (default $GENRECLF_STORAGE_URL or ./genreclf-data)"


def _say(text: str = "") -> None:
    print(text)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ingest-spotify` and `spotify-login` to the `genreclf` command's subparsers."""
    _add_ingest_parser(sub)
    _add_login_parser(sub)


def _add_ingest_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Options the flow has a default for are left out of the namespace unless given (argparse.SUPPRESS), so the
    flow's defaults stay the only ones."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "ingest-spotify",
        help="crawl the Spotify playlists of a playlists file into a new catalog version",
        description="Run the ingest-spotify flow here: crawl each genre's playlists (unchanged ones are read from "
        "the store), label the tracks and write a catalog version with its report. Credentials: "
        "SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET, or --secret-block; --auth user also needs "
        "`genreclf spotify-login` once.",
        formatter_class=fmt,
    )
    p.add_argument(
        "--playlists",
        required=True,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="TOML or YAML file mapping each genre to playlists (see configs/playlists.example.toml)",
    )
    p.add_argument("--store", default=argparse.SUPPRESS, metavar="URL", help=STORE_HELP)
    p.add_argument(
        "--auth",
        choices=["client_credentials", "user"],
        default=argparse.SUPPRESS,
        help="client_credentials (the flow's default) reads public playlists; user reads the playlists "
        "you own or follow, with the token `genreclf spotify-login` saved (development-mode apps)",
    )
    p.add_argument(
        "--secret-block",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="Prefect Secret block holding the app's client_id and client_secret (and refresh_token); "
        "default: SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET",
    )
    p.add_argument(
        "--conflict-rule",
        choices=["majority", "drop"],
        default=argparse.SUPPRESS,
        help="a track in playlists of several genres goes to the genre of most of them (majority, the "
        "flow's default; a tie goes to the artist's genres, else dropped) or is dropped",
    )
    p.add_argument(
        "--no-artist-genres",
        dest="artist_genres",
        action="store_false",
        default=argparse.SUPPRESS,
        help="do not look up each first artist's Spotify genres (the artist_genre_vote column)",
    )
    p.set_defaults(func=cmd_ingest_spotify)


def _add_login_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "spotify-login",
        help="authorize genreclf once to read your Spotify playlists (for ingest-spotify --auth user)",
        description="The one-time user authorization: prints an address to open in a browser, then asks for the "
        "address Spotify sends the browser to, and saves the user's token where ingest-spotify --auth user "
        "finds it ($GENRECLF_CACHE_DIR/spotify/user-token.json). Needs SPOTIPY_CLIENT_ID and "
        "SPOTIPY_CLIENT_SECRET (or --secret-block), and the redirect URI listed in the app's settings.",
        formatter_class=fmt,
    )
    p.add_argument(
        "--redirect-uri",
        default=argparse.SUPPRESS,
        metavar="URI",
        help="a Redirect URI listed in the app's settings (default http://127.0.0.1:8888/callback)",
    )
    p.add_argument(
        "--code",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the address the browser was sent to (or its code), instead of pasting it when asked",
    )
    p.add_argument(
        "--secret-block",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="Prefect Secret block holding the app's client_id and client_secret; "
        "default: SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET",
    )
    p.set_defaults(func=cmd_spotify_login)


# --- credentials ----------------------------------------------------------------------------------------------


def _credentials_error(e: Exception, command: str) -> ConfigError:
    """spotipy's "No client_id. Pass it or set a SPOTIPY_CLIENT_ID environment variable" as what to do here."""
    missing = re.search(r"SPOTIPY_[A-Z_]+", str(e))
    what = f"{missing.group(0)} is not set" if missing else f"Spotify credentials: {e}"
    return ConfigError(
        f"{what}: {command} needs the Spotify app's client id and secret; export SPOTIPY_CLIENT_ID and "
        f"SPOTIPY_CLIENT_SECRET ({APP_SETTINGS}), or pass --secret-block NAME"
    )


def _app_credentials(args: argparse.Namespace, command: str) -> Credentials:
    """The app's credentials from --secret-block, else checked to be in the environment (no request made)."""
    from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOauthError

    from genreclf.sources.spotify import Credentials

    block = getattr(args, "secret_block", None)
    if block:
        from genreclf.flows.ingest_spotify import (
            credentials_from_block,  # the flow's reading of the block (and its errors)
        )

        creds = credentials_from_block(block)
        return creds if creds is not None else Credentials()
    try:
        SpotifyClientCredentials()  # spotipy reads SPOTIPY_CLIENT_ID / _SECRET, or says which is missing
    except SpotifyOauthError as e:
        raise _credentials_error(e, command) from None
    return Credentials()


# --- ingest-spotify -------------------------------------------------------------------------------------------


def cmd_ingest_spotify(args: argparse.Namespace) -> int:
    """Check what can be checked in a second, run the ingest-spotify flow here, print what it wrote."""
    from genreclf.settings import get_settings
    from genreclf.sources import spotify
    from genreclf.store.storage import Store

    config = spotify.load_playlists_config(args.playlists)  # a bad file fails before any server starts
    settings = get_settings()
    store = Store.open(getattr(args, "store", None), settings)
    options = {k: getattr(args, k) for k in ("auth", "secret_block", "conflict_rule", "artist_genres") if k in args}
    if "secret_block" not in options:
        _app_credentials(args, "ingest-spotify")
        if options.get("auth") == "user" and not spotify.token_path(settings).is_file():
            raise ConfigError(
                f"--auth user needs a user token and there is none at {spotify.token_path(settings)}: run "
                "`genreclf spotify-login` once (or pass --secret-block NAME holding a refresh_token)"
            )
    from genreclf.flows.ingest_spotify import ingest_spotify  # flows/__init__ sets Prefect up for genreclf first

    _say(f"Crawling {len(config.playlists)} playlists for {len(config.genres)} genres into {store.url} ...")
    from genreclf.app.prefect_setup import prefect_api

    t0 = time.perf_counter()
    with prefect_api():
        version = ingest_spotify(playlists_file=args.playlists, storage_url=store.url, **options)
    return _print_ingest_summary(store, version, time.perf_counter() - t0)


def _print_ingest_summary(store: Store, version: str, seconds: float) -> int:
    """What the run wrote, from the report beside the catalog; 1 when a playlist failed, else 0."""
    from genreclf.store.keys import ingest_report_key

    report: dict[str, Any] = store.read_json(ingest_report_key(version))
    crawls, failures = report["playlists"], report["failures"]
    unchanged = sum(bool(c["cached"]) for c in crawls)
    skipped: Counter[str] = Counter()
    for c in crawls:
        skipped.update(c["skipped"])
    per_genre = ", ".join(f"{g['genre']} {g['tracks']}" for g in report["per_genre"])
    _say(f"\nDone in {seconds:.0f} s.")
    _say(f"  store:     {store.url}")
    _say(f"  catalog:   {version} ({report['tracks']} tracks: {per_genre}; now catalogs/LATEST)")
    _say(f"  report:    {store.uri(ingest_report_key(version))}")
    _say(
        f"  playlists: {len(crawls) + len(failures)}: {len(crawls) - unchanged} crawled, "
        f"{unchanged} unchanged since the last run (read from the store), {len(failures)} failed"
    )
    if sum(skipped.values()):
        kinds = ", ".join(f"{n} {kind}" for kind, n in skipped.items() if n)
        _say(f"  skipped:   {kinds} (playlist items that are not available tracks)")
    if report["conflicts"]:
        _say(
            f"  conflicts: {len(report['conflicts'])} tracks in playlists of several genres "
            f"(conflict_rule {report['conflict_rule']}; listed in the report)"
        )
    for f in failures:
        _say(f"  failed:    {f['genre']}: {f['ref']}: {f['error']}")
    return 1 if failures else 0


# --- spotify-login --------------------------------------------------------------------------------------------


def _code_from(pasted: str, state: str | None) -> str:
    """The authorization code in what the user pasted: the address the browser was sent to, or the bare code."""
    pasted = pasted.strip()
    if "://" not in pasted and "?" not in pasted:
        if not pasted:
            raise ConfigError("nothing pasted: run `genreclf spotify-login` again and paste the whole address")
        return pasted
    query = parse_qs(urlsplit(pasted).query)
    if "error" in query:
        raise ConfigError(
            f"Spotify answered {query['error'][0]!r} instead of a code (was Cancel pressed?): run "
            "`genreclf spotify-login` again and agree"
        )
    if "code" not in query:
        raise ConfigError(
            f"no ?code= in {pasted[:80]!r}: paste the whole address the browser was sent to after agreeing "
            "(it starts with the redirect URI)"
        )
    if state is not None and query.get("state", [state])[0] != state:
        raise ConfigError(
            "that address answers another authorization (its state differs): open the address printed above"
        )
    return query["code"][0]


def cmd_spotify_login(args: argparse.Namespace) -> int:
    """Print the authorization address, take the address the browser lands on, save the user's token."""
    from genreclf.settings import get_settings
    from genreclf.sources import spotify

    settings = get_settings()
    redirect_uri = getattr(args, "redirect_uri", spotify.DEFAULT_REDIRECT_URI)
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        raise ConfigError(
            f"--redirect-uri {redirect_uri!r} is not an http(s) address: give a Redirect URI listed in the app's "
            f"settings ({APP_SETTINGS}), e.g. {spotify.DEFAULT_REDIRECT_URI}"
        )
    creds = _app_credentials(args, "spotify-login")
    code: str | None = getattr(args, "code", None)
    if code is not None:
        code = _code_from(code, None)
    else:
        state = secrets.token_urlsafe(12)
        try:
            url = spotify.authorization_url(creds, settings=settings, redirect_uri=redirect_uri, state=state)
        except ConfigError as e:
            raise _credentials_error(e, "spotify-login") from None
        _say("1. Open this address in a browser (on any machine), log in to Spotify and agree:\n")
        _say(f"   {url}\n")
        _say(f"2. Spotify then sends the browser to {redirect_uri}?code=... . That page does not load; that is")
        _say("   expected. Copy the whole address from the browser's address bar and paste it here.")
        _say(f"   (The app's settings must list {redirect_uri} as a Redirect URI: {APP_SETTINGS}.)\n")
        try:
            pasted = input("Address: ")
        except EOFError:
            raise ConfigError(
                "no address pasted (stdin is closed): run `genreclf spotify-login` in a terminal, or pass the "
                "address with --code URL"
            ) from None
        except KeyboardInterrupt:
            _say("\nCancelled; nothing saved.")
            return 130
        code = _code_from(pasted, state)
    path = _exchange(code, creds, settings=settings, redirect_uri=redirect_uri)
    _say(f"\nSaved the Spotify user token to {path} (readable by you only); it is refreshed on its own.")
    _say("Now: genreclf ingest-spotify --playlists configs/playlists.toml --auth user")
    _say('On a worker without this file, put its "refresh_token" in the Secret block beside the client id and secret.')
    return 0


def _exchange(code: str, creds: Credentials, *, settings: Settings, redirect_uri: str) -> Path:
    """Trade the code for tokens (cached at spotify.token_path), saying what to do when Spotify refuses."""
    import requests

    from genreclf.sources import spotify

    try:
        return spotify.exchange_code(code, creds, settings=settings, redirect_uri=redirect_uri)
    except ConfigError as e:
        if str(e).startswith("Spotify credentials:"):
            raise _credentials_error(e, "spotify-login") from None
        if "invalid_client" in str(e):
            hint = "check SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (or the Secret block)"
        else:
            hint = (
                "a code works once and for a few minutes, and only with the redirect URI it was issued for: run "
                "`genreclf spotify-login` again"
            )
        raise ConfigError(f"{e}; {hint}") from None
    except requests.RequestException as e:
        raise SourceError(
            f"cannot reach Spotify's token endpoint {settings.spotify_token_url} ({type(e).__name__}); check the "
            "network (or GENRECLF_SPOTIFY_TOKEN_URL) and run `genreclf spotify-login --code URL` again"
        ) from None
