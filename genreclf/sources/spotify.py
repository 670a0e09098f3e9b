"""Spotify playlists as a label source: playlist refs, playlists file, API client, crawl, labels, catalog."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import polars as pl
import pyarrow as pa
import requests
import spotipy
import yaml
from spotipy.cache_handler import CacheHandler, MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOAuth, SpotifyOauthError

from genreclf.catalog import CATALOG_COLUMNS, write_catalog
from genreclf.errors import ConfigError, SourceError, TransientSourceError
from genreclf.settings import Settings, get_settings
from genreclf.storage import Store
from genreclf.taxonomy import BUILTIN, Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

T = TypeVar("T")
AuthMode = Literal["client_credentials", "user"]
ConflictRule = Literal["majority", "drop"]

# Web API limits (2026): items pages hold at most 50 entries, search pages at most 10 results, and there is no
# batch /artists?ids= endpoint any more for development-mode apps.
ITEMS_PAGE_MAX = 50
USER_SCOPE = "playlist-read-private playlist-read-collaborative"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8888/callback"
PLAYLIST_FIELDS = "id,name,owner(id,display_name),snapshot_id"
_TRACK_FIELDS = "type,id,name,duration_ms,is_local,is_playable,episode,external_ids(isrc),artists(id,name)"
# The 2026 API puts the track (or episode) under `item`; older responses and SDKs under `track`. Ask for both.
ITEM_FIELDS = f"next,total,items(added_at,is_local,item({_TRACK_FIELDS}),track({_TRACK_FIELDS}))"


# Store keys owned by this source.
def playlist_crawl_key(playlist_id: str, snapshot_id: str) -> str:
    """Where one snapshot of a playlist's tracks lives (snapshot ids hold '/' and '+': the key hashes it)."""
    digest = hashlib.sha256(snapshot_id.encode()).hexdigest()[:16]
    return f"spotify/playlists/{playlist_id}/{digest}.parquet"


ARTIST_CACHE_KEY = "spotify/artists.parquet"


def ingest_report_key(version: str) -> str:
    return f"spotify/reports/{version}.json"


class NotFoundError(SourceError):
    """The API answered 404: a wrong ID, or a playlist this app may not read."""


class RateLimitedError(SourceError):
    """Spotify asked us to wait longer than we are willing to (`GENRECLF_SPOTIFY_MAX_RETRY_AFTER_S`)."""

    def __init__(self, message: str, *, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


# ----------------------------------------------------------------------------------------------------------
# Playlist references and the playlists file

_ID = r"[0-9A-Za-z]{22}"
_BARE_ID = re.compile(rf"^{_ID}$")
_URI = re.compile(rf"^spotify:(?:user:[^:\s]+:)?playlist:(?P<id>{_ID})$")
_URL = re.compile(
    rf"^(?:https?://)?open\.spotify\.com/(?:intl-[A-Za-z-]+/)?(?:embed/)?(?:user/[^/\s]+/)?"
    rf"playlist/(?P<id>{_ID})/?(?:\?[^#\s]*)?(?:#\S*)?$"
)
_OTHER_KIND = re.compile(
    r"(?:open\.spotify\.com/(?:intl-[A-Za-z-]+/)?|spotify:)(?P<kind>album|track|artist|show|episode)"
)
_GENRE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def parse_playlist_ref(ref: str) -> str:
    """The playlist ID in a bare ID, a `spotify:playlist:` URI or an open.spotify.com URL (`?si=` or not).

    Raises ValueError saying what is wrong with `ref`.
    """
    text = ref.strip()
    for pattern in (_BARE_ID, _URI, _URL):
        m = pattern.match(text)
        if m:
            return m.group("id") if "id" in pattern.groupindex else text
    other = _OTHER_KIND.search(text)
    if other:
        raise ValueError(f"is a Spotify {other.group('kind')}, not a playlist")
    if re.fullmatch(r"[0-9A-Za-z]+", text):
        raise ValueError(f"a playlist ID has 22 letters and digits, this one has {len(text)}")
    raise ValueError(
        "is not a Spotify playlist: use its ID, spotify:playlist:ID or https://open.spotify.com/playlist/ID"
    )


@dataclass(frozen=True)
class PlaylistRef:
    """One declared playlist: the genre it labels, its ID, and the string it was written as."""

    genre: str
    playlist_id: str
    ref: str


@dataclass(frozen=True)
class PlaylistsConfig:
    """The genres to learn, the playlists that label them, and the taxonomy that maps artist genres."""

    source: str
    genres: tuple[str, ...]
    playlists: tuple[PlaylistRef, ...]
    taxonomy: Taxonomy


def load_playlists_config(
    path: str | Path | None, *, override: Mapping[str, Sequence[str]] | None = None
) -> PlaylistsConfig:
    """Read and check a playlists file (TOML or YAML) before any request is made.

    `override` (a flow parameter: genre -> playlists) replaces the file's `[genres]`; the file is then only
    read for its `taxonomy`, and may be absent. Every mistake raises ConfigError naming the file and the string.
    """
    doc: dict[str, Any] = {}
    source = str(path) if path else "flow parameter `playlists`"
    file = Path(path).expanduser() if path else None
    if file is not None and file.is_file():
        doc = _read_config_file(file)
    elif override is None:
        raise ConfigError(
            f"playlists file {path} does not exist: copy configs/playlists.example.toml to {path} "
            "and list your playlists, or pass the `playlists` parameter"
        )
    unknown = set(doc) - {"version", "taxonomy", "genres"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; expected version, taxonomy and [genres]")
    if doc.get("version", 1) != 1:
        raise ConfigError(f"{source}: version {doc['version']!r} is not supported (this genreclf reads version 1)")
    taxonomy_ref = doc.get("taxonomy", BUILTIN)
    if not isinstance(taxonomy_ref, str):
        raise ConfigError(f'{source}: `taxonomy` must be a path or "builtin"')
    if taxonomy_ref != BUILTIN and file is not None and not Path(taxonomy_ref).is_absolute():
        taxonomy_ref = str(file.parent / taxonomy_ref)
    taxonomy = load_taxonomy(taxonomy_ref)

    if override is not None:
        genres_doc: Any = dict(override)
        source = "flow parameter `playlists`"
    else:
        genres_doc = doc.get("genres")
    if not isinstance(genres_doc, Mapping) or not genres_doc:
        raise ConfigError(f'{source}: needs a [genres] table mapping each genre to playlists, e.g. jazz = ["..."]')

    refs: list[PlaylistRef] = []
    seen: dict[str, str] = {}
    for genre, playlists in genres_doc.items():
        if not isinstance(genre, str) or not _GENRE_NAME.match(genre):
            raise ConfigError(f"{source}: genre {genre!r} must be lower case letters, digits, - or _ (e.g. hiphop)")
        if isinstance(playlists, str) or not isinstance(playlists, Sequence) or not playlists:
            raise ConfigError(f"{source}: genre {genre!r} needs a non-empty list of playlists")
        for ref in playlists:
            if not isinstance(ref, str):
                raise ConfigError(f"{source}: genre {genre!r}: {ref!r} is not a string")
            try:
                playlist_id = parse_playlist_ref(ref)
            except ValueError as e:
                raise ConfigError(f"{source}: genre {genre!r}: {ref!r} {e}") from None
            if playlist_id in seen:
                if seen[playlist_id] != genre:
                    raise ConfigError(
                        f"{source}: playlist {ref!r} is listed under both {seen[playlist_id]!r} and "
                        f"{genre!r}; a playlist labels exactly one genre"
                    )
                log.info("%s: playlist %s is listed twice under %s; reading it once", source, ref, genre)
                continue
            seen[playlist_id] = genre
            refs.append(PlaylistRef(genre=genre, playlist_id=playlist_id, ref=ref))
    genres = tuple(genres_doc)
    unknown_to_taxonomy = [g for g in genres if g not in taxonomy.targets]
    if unknown_to_taxonomy:
        log.warning(
            "%s: genres %s are not targets of taxonomy %s (%s); artist genres can never agree with them",
            source,
            unknown_to_taxonomy,
            taxonomy.version,
            taxonomy.source,
        )
    return PlaylistsConfig(source=source, genres=genres, playlists=tuple(refs), taxonomy=taxonomy)


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".toml":
            doc = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: a playlists file is .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot parse ({e})") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a table/mapping at the top level")
    return doc


# ----------------------------------------------------------------------------------------------------------
# Credentials and the client


@dataclass(frozen=True)
class Credentials:
    """A Spotify app's client id and secret, and a user's refresh token for the authorization-code flow.

    A field left None is read by spotipy from SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET. Secrets stay out of
    repr() so they cannot end up in a log line or a Prefect state message.
    """

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, value: object, *, source: str) -> Credentials:
        """From a secret's value: a mapping (or its JSON) of client_id, client_secret, maybe refresh_token."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, Mapping) or not value.get("client_id") or not value.get("client_secret"):
            raise ConfigError(
                f'{source} must hold JSON like {{"client_id": "...", "client_secret": "..."}} '
                '(and "refresh_token" for auth="user")'
            )
        extra = set(value) - {"client_id", "client_secret", "refresh_token"}
        if extra:
            raise ConfigError(f"{source}: unexpected keys {sorted(extra)}")
        return cls(
            client_id=str(value["client_id"]),
            client_secret=str(value["client_secret"]),
            refresh_token=str(value["refresh_token"]) if value.get("refresh_token") else None,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: attempts in all, exponential backoff for 5xx/timeouts, the longest
    Retry-After we sit out (a longer one fails with a time to come back)."""

    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int) -> float:
        # Jitter keeps parallel workers from retrying in lockstep.
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


# Errors from the token endpoint that no retry fixes: wrong id/secret, revoked refresh token.
_CREDENTIAL_ERRORS = {
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "invalid_request",
    "invalid_scope",
}


class SpotifyClient:
    """spotipy with our fault policy: Retry-After honoured (capped), 5xx and timeouts retried with backoff,
    one token refresh on 401, and 404/403 failing at once with a message that says why."""

    def __init__(
        self,
        sp: spotipy.Spotify,
        *,
        policy: RetryPolicy,
        token_url: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sp = sp
        self.policy = policy
        self.token_url = token_url
        self._sleep = sleep
        self._blocked_until: datetime | None = None

    # -- the endpoints we use
    def playlist(self, playlist_id: str) -> dict[str, Any]:
        """GET /playlists/{id} with only name, owner and snapshot_id."""
        return self.call(
            f"playlist {playlist_id}",
            lambda: self.sp.playlist(playlist_id, fields=PLAYLIST_FIELDS, additional_types=("track", "episode")),
            not_found=_PLAYLIST_NOT_FOUND,
        )

    def playlist_items(self, playlist_id: str) -> Iterator[dict[str, Any] | None]:
        """Every entry of GET /playlists/{id}/items, following `next` page after page."""
        what = f"playlist {playlist_id} items"
        page: dict[str, Any] | None = self.call(
            what,
            lambda: self.sp.playlist_items(
                playlist_id, fields=ITEM_FIELDS, limit=ITEMS_PAGE_MAX, additional_types=("track", "episode")
            ),
            not_found=_PLAYLIST_NOT_FOUND,
        )
        while page:
            yield from page.get("items") or []
            if not page.get("next"):
                return
            page = self.call(what, partial(self.sp.next, page), not_found=_PLAYLIST_NOT_FOUND)

    def artist(self, artist_id: str) -> dict[str, Any] | None:
        """GET /artists/{id}; None when the artist is gone (404)."""
        try:
            return self.call(f"artist {artist_id}", lambda: self.sp.artist(artist_id))
        except NotFoundError:
            return None

    # -- the fault policy
    def call(self, what: str, fn: Callable[[], T], *, not_found: str = "") -> T:
        """Run one request under the retry policy; `what` names it in logs and errors."""
        attempt = 0
        refreshed = False
        while True:
            self._check_blocked(what)
            attempt += 1
            try:
                return fn()
            except spotipy.SpotifyException as e:
                status = e.http_status
                if status == 429:
                    wait = _retry_after_s(e.headers)
                    if wait is None:
                        wait = self.policy.backoff(attempt)
                    if wait > self.policy.max_retry_after_s:
                        retry_at = datetime.now(UTC) + timedelta(seconds=wait)
                        self._blocked_until = retry_at
                        raise RateLimitedError(
                            f"{what}: Spotify rate limit: asked to wait {wait:.0f} s, more than "
                            f"GENRECLF_SPOTIFY_MAX_RETRY_AFTER_S={self.policy.max_retry_after_s:.0f}; "
                            f"retry after {retry_at:%Y-%m-%d %H:%M:%S} UTC",
                            retry_at=retry_at,
                        ) from None
                    self._retry_or_raise(what, attempt, wait, "rate limited (HTTP 429, Retry-After)")
                elif status == 401 and not refreshed:
                    # An expired or revoked access token: fetch a new one once, then give up.
                    refreshed = True
                    attempt -= 1
                    log.info("%s: access token rejected (401); fetching a new one", what)
                    self._expire_token()
                elif status == 401:
                    raise SourceError(
                        f"{what}: Spotify rejected a freshly issued access token (401): check that the app "
                        "is allowed to use the Web API and that the user is on its allowlist"
                    ) from None
                elif status >= 500:
                    self._retry_or_raise(what, attempt, self.policy.backoff(attempt), f"HTTP {status}")
                elif status == 404:
                    raise NotFoundError(f"{what}: not found (404). {not_found}".rstrip()) from None
                elif status == 403:
                    raise SourceError(
                        f"{what}: forbidden (403: {_reason(e)}). A development-mode app may only read "
                        "playlists its user owns or follows; see the README (Spotify, 2026 API limits)"
                    ) from None
                else:
                    raise SourceError(f"{what}: HTTP {status} ({_reason(e)})") from None
            except (requests.Timeout, requests.ConnectionError) as e:
                self._retry_or_raise(what, attempt, self.policy.backoff(attempt), type(e).__name__)
            except SpotifyOauthError as e:
                if e.error in _CREDENTIAL_ERRORS:
                    raise ConfigError(
                        f"Spotify's token endpoint {self.token_url} refused the credentials ({e.error}: "
                        f"{e.error_description}); check SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET or the "
                        "secret block (for auth='user', authorize again to get a new refresh token)"
                    ) from None
                self._retry_or_raise(what, attempt, self.policy.backoff(attempt), f"token endpoint: {e.error}")

    def _retry_or_raise(self, what: str, attempt: int, wait: float, why: str) -> None:
        if attempt >= self.policy.max_attempts:
            raise TransientSourceError(
                f"{what}: still failing after {attempt} attempts ({why}); try again later"
            ) from None
        log.warning(
            "%s: %s; retrying in %.1f s (attempt %d of %d)",
            what,
            why,
            wait,
            attempt,
            self.policy.max_attempts,
        )
        self._sleep(wait)

    def _check_blocked(self, what: str) -> None:
        # After a long Retry-After every request would only be refused again: fail without asking.
        if self._blocked_until is not None and datetime.now(UTC) < self._blocked_until:
            raise RateLimitedError(
                f"{what}: not sent, Spotify rate limit in force; retry after "
                f"{self._blocked_until:%Y-%m-%d %H:%M:%S} UTC",
                retry_at=self._blocked_until,
            )

    def _expire_token(self) -> None:
        handler = self.sp.auth_manager.cache_handler
        info = handler.get_cached_token()
        if info:
            handler.save_token_to_cache({**info, "expires_at": 0})

    def check_credentials(self) -> None:
        """Fetch an access token now, so bad credentials fail before the crawl starts."""
        self.call("access token", lambda: self.sp.auth_manager.get_access_token(as_dict=False))


_PLAYLIST_NOT_FOUND = (
    "Check the ID. Spotify-owned editorial and algorithmic playlists (owner 'spotify': Today's Top Hits, "
    "Discover Weekly, ...) answer 404 to development-mode apps: copy the tracks into a playlist you own"
)


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _reason(e: spotipy.SpotifyException) -> str:
    msg = str(e.msg).split("\n", 1)[-1].strip()
    return msg or str(e.reason or "no detail")


class _ClientCredentials(SpotifyClientCredentials):
    def __init__(self, *, token_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.OAUTH_TOKEN_URL = token_url


class _UserAuth(SpotifyOAuth):
    """Authorization-code flow that only ever refreshes: a headless run must never stop to prompt."""

    def __init__(self, *, token_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.OAUTH_TOKEN_URL = token_url
        self.OAUTH_AUTHORIZE_URL = _authorize_url(token_url)

    def get_auth_response(self, open_browser: bool | None = None) -> str:
        raise ConfigError(
            "no usable Spotify user token (missing, or authorized for other scopes): authorize once with "
            "genreclf.sources.spotify.authorization_url() and exchange_code(), or put a refresh_token in the "
            "secret block"
        )


class TokenFile(CacheHandler):
    """The user's token (and refresh token) in a JSON file only its owner can read, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_cached_token(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"{self.path}: unreadable Spotify token cache ({type(e).__name__}); delete it and authorize again"
            ) from None

    def save_token_to_cache(self, token_info: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(token_info, f)
        os.replace(tmp, self.path)


def token_path(settings: Settings | None = None) -> Path:
    """Where the user's Spotify token is cached for auth='user' (under GENRECLF_CACHE_DIR)."""
    return (settings or get_settings()).cache_dir / "spotify" / "user-token.json"


def _authorize_url(token_url: str) -> str:
    base = token_url[: -len("/api/token")] if token_url.endswith("/api/token") else token_url.rsplit("/", 1)[0]
    return f"{base}/authorize"


def _session() -> requests.Session:
    # No urllib3 retries at all: with retries=0 spotipy would turn a 5xx into a fake "429 Max Retries" and
    # urllib3 would sleep through Retry-After silently. SpotifyClient.call() decides what to retry.
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _user_auth(
    credentials: Credentials,
    *,
    settings: Settings,
    session: requests.Session,
    timeout_s: float,
    redirect_uri: str,
    cache_handler: CacheHandler,
) -> _UserAuth:
    try:
        return _UserAuth(
            token_url=settings.spotify_token_url,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            redirect_uri=redirect_uri,
            scope=USER_SCOPE,
            requests_session=session,
            requests_timeout=timeout_s,
            open_browser=False,
            cache_handler=cache_handler,
        )
    except SpotifyOauthError as e:
        raise ConfigError(f"Spotify credentials: {e} (or give the flow a Prefect Secret block)") from None


def connect(
    credentials: Credentials | None = None,
    *,
    auth: AuthMode = "client_credentials",
    settings: Settings | None = None,
    policy: RetryPolicy | None = None,
    timeout_s: float = 15.0,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    sleep: Callable[[float], None] = time.sleep,
) -> SpotifyClient:
    """A client for the Web API at GENRECLF_SPOTIFY_API_URL, authorized now (bad credentials fail here).

    auth="client_credentials": the app's id and secret (public playlists only). auth="user": the
    authorization-code flow, refreshing the user's token from `credentials.refresh_token` or from the token
    file (see `token_path`), never prompting; needed for private playlists and for development-mode apps.
    """
    settings = settings or get_settings()
    credentials = credentials or Credentials()
    policy = policy or RetryPolicy(max_retry_after_s=settings.spotify_max_retry_after_s)
    _redact_spotipy_logs()
    session = _session()
    manager: SpotifyClientCredentials | SpotifyOAuth
    if auth == "client_credentials":
        try:
            manager = _ClientCredentials(
                token_url=settings.spotify_token_url,
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                requests_session=session,
                requests_timeout=timeout_s,
                cache_handler=MemoryCacheHandler(),
            )
        except SpotifyOauthError as e:
            raise ConfigError(f"Spotify credentials: {e} (or give the flow a Prefect Secret block)") from None
    elif auth == "user":
        handler: CacheHandler
        if credentials.refresh_token:
            # An expired placeholder makes spotipy refresh on first use.
            handler = MemoryCacheHandler(
                {
                    "access_token": "",
                    "expires_at": 0,
                    "scope": USER_SCOPE,
                    "refresh_token": credentials.refresh_token,
                }
            )
        else:
            path = token_path(settings)
            if not path.is_file():
                raise ConfigError(
                    "auth='user' needs a refresh token: none in the secret block and no token file at "
                    f"{path}; authorize once (see the README: Spotify credentials)"
                )
            handler = TokenFile(path)
        manager = _user_auth(
            credentials,
            settings=settings,
            session=session,
            timeout_s=timeout_s,
            redirect_uri=redirect_uri,
            cache_handler=handler,
        )
    else:
        raise ConfigError(f"auth={auth!r}: use 'client_credentials' or 'user'")
    sp = spotipy.Spotify(
        auth_manager=manager,
        requests_session=session,
        requests_timeout=timeout_s,
    )
    sp.prefix = settings.spotify_api_url.rstrip("/") + "/"
    client = SpotifyClient(sp, policy=policy, token_url=settings.spotify_token_url, sleep=sleep)
    client.check_credentials()
    return client


def authorization_url(
    credentials: Credentials | None = None,
    *,
    settings: Settings | None = None,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    state: str | None = None,
) -> str:
    """Step 1 of the one-time user authorization: the URL to open in a browser (any machine)."""
    settings = settings or get_settings()
    manager = _user_auth(
        credentials or Credentials(),
        settings=settings,
        session=_session(),
        timeout_s=15.0,
        redirect_uri=redirect_uri,
        cache_handler=MemoryCacheHandler(),
    )
    return str(manager.get_authorize_url(state=state))


def exchange_code(
    code_or_redirect_url: str,
    credentials: Credentials | None = None,
    *,
    settings: Settings | None = None,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
) -> Path:
    """Step 2: trade the code (or the URL the browser was sent to) for tokens, cached at `token_path`."""
    settings = settings or get_settings()
    path = token_path(settings)
    manager = _user_auth(
        credentials or Credentials(),
        settings=settings,
        session=_session(),
        timeout_s=15.0,
        redirect_uri=redirect_uri,
        cache_handler=TokenFile(path),
    )
    code = code_or_redirect_url
    if "://" in code:
        code = manager.parse_response_code(code)
    try:
        manager.get_access_token(code=code, as_dict=False, check_cache=False)
    except SpotifyOauthError as e:
        raise ConfigError(f"Spotify refused the authorization code ({e.error}: {e.error_description})") from None
    log.info("cached the Spotify user token at %s", path)
    return path


# spotipy logs request headers (the bearer token, the client secret in Basic auth) and token request bodies at
# DEBUG, and every HTTP error at ERROR although we retry or report it ourselves.
_SECRET_PATTERNS = (
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"('(?:refresh_token|access_token|code|client_secret)':\s*')[^']*'"), r"\1[redacted]'"),
)


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern, replacement in _SECRET_PATTERNS:
            message = pattern.sub(replacement, message)
        record.msg, record.args = message, None
        if record.levelno == logging.ERROR and message.startswith(("HTTP Error", "Max Retries")):
            # SpotifyClient logs or raises its own message for every HTTP error: keep this one for DEBUG only.
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _redact_spotipy_logs() -> None:
    for name in ("spotipy.client", "spotipy.oauth2"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
            logger.addFilter(_RedactSecrets())


# ----------------------------------------------------------------------------------------------------------
# Crawling playlists

CRAWL_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int32()),
        pa.field("track_id", pa.string()),
        pa.field("title", pa.string()),
        pa.field("artists", pa.list_(pa.string())),
        pa.field("artist_ids", pa.list_(pa.string())),
        pa.field("duration_ms", pa.int64()),
        pa.field("isrc", pa.string()),
        pa.field("added_at", pa.string()),
    ]
)
_CRAWL_META = b"genreclf.spotify.playlist"
SKIP_KINDS = ("local", "episode", "unavailable")


@dataclass(frozen=True)
class PlaylistCrawl:
    """What one crawled (or cached) playlist snapshot gave: small enough to pass between tasks."""

    genre: str
    playlist_id: str
    name: str
    owner: str
    snapshot_id: str
    key: str
    tracks: int
    skipped: dict[str, int]
    cached: bool


@dataclass(frozen=True)
class PlaylistFailure:
    genre: str
    playlist_id: str
    ref: str
    error: str


def parse_items(entries: Iterable[Mapping[str, Any] | None]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Track rows from playlist item entries; local files, episodes and unavailable tracks skipped and counted."""
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for position, entry in enumerate(entries):
        if entry is None:
            skipped["unavailable"] += 1
            continue
        obj = entry.get("item") or entry.get("track")
        if entry.get("is_local") or (obj and obj.get("is_local")):
            skipped["local"] += 1
        elif not obj:
            skipped["unavailable"] += 1  # removed from Spotify, or not available in this market
        elif obj.get("type") == "episode" or obj.get("episode") is True:
            skipped["episode"] += 1
        elif not obj.get("id") or obj.get("is_playable") is False:
            skipped["unavailable"] += 1
        else:
            artists = [a for a in obj.get("artists") or [] if a]
            isrc = ((obj.get("external_ids") or {}).get("isrc") or "").strip().upper().replace("-", "")
            rows.append(
                {
                    "position": position,
                    "track_id": obj["id"],
                    "title": obj.get("name"),
                    "artists": [a.get("name") for a in artists],
                    "artist_ids": [a.get("id") for a in artists],
                    "duration_ms": obj.get("duration_ms"),
                    "isrc": isrc or None,
                    "added_at": entry.get("added_at"),
                }
            )
    return rows, skipped


def crawl_playlist(client: SpotifyClient, store: Store, ref: PlaylistRef) -> PlaylistCrawl:
    """Read one playlist's tracks into the store, unless this snapshot is already there.

    Two requests tell whether anything changed (GET /playlists/{id} for its snapshot_id); only a new snapshot
    is paged through. Raises SourceError (404, 403, a long rate limit) or TransientSourceError.
    """
    meta = client.playlist(ref.playlist_id)
    snapshot_id = str(meta.get("snapshot_id") or "")
    name = str(meta.get("name") or "")
    owner_doc = meta.get("owner") or {}
    owner = str(owner_doc.get("display_name") or owner_doc.get("id") or "")
    if not snapshot_id:
        raise SourceError(f"playlist {ref.playlist_id}: the API returned no snapshot_id")
    key = playlist_crawl_key(ref.playlist_id, snapshot_id)
    if store.exists(key):
        info = json.loads(store.read_parquet(key).schema.metadata[_CRAWL_META])
        log.info(
            "playlist %s (%s): snapshot unchanged, %d tracks from the store",
            ref.playlist_id,
            name,
            info["tracks"],
        )
        return PlaylistCrawl(
            genre=ref.genre,
            playlist_id=ref.playlist_id,
            name=name,
            owner=owner,
            snapshot_id=snapshot_id,
            key=key,
            tracks=info["tracks"],
            skipped=info["skipped"],
            cached=True,
        )
    rows, skipped_counter = parse_items(client.playlist_items(ref.playlist_id))
    skipped = {kind: skipped_counter.get(kind, 0) for kind in SKIP_KINDS}
    info = {
        "playlist_id": ref.playlist_id,
        "name": name,
        "owner": owner,
        "snapshot_id": snapshot_id,
        "tracks": len(rows),
        "skipped": skipped,
        "crawled_at": datetime.now(UTC).isoformat(),
    }
    table = pa.Table.from_pylist(rows, schema=CRAWL_SCHEMA).replace_schema_metadata(
        {_CRAWL_META: json.dumps(info).encode()}
    )
    store.write_parquet(key, table)
    log.info("playlist %s (%s): %d tracks; skipped %s", ref.playlist_id, name, len(rows), skipped)
    return PlaylistCrawl(
        genre=ref.genre,
        playlist_id=ref.playlist_id,
        name=name,
        owner=owner,
        snapshot_id=snapshot_id,
        key=key,
        tracks=len(rows),
        skipped=skipped,
        cached=False,
    )


def load_crawled_tracks(store: Store, crawls: Sequence[PlaylistCrawl]) -> pl.DataFrame:
    """All crawled track rows with their playlist's genre, id, snapshot and order in the playlists file."""
    frames = []
    for order, c in enumerate(crawls):
        df = cast(pl.DataFrame, pl.from_arrow(store.read_parquet(c.key).cast(CRAWL_SCHEMA)))
        frames.append(
            df.with_columns(
                genre=pl.lit(c.genre),
                source_ref=pl.lit(c.playlist_id),
                snapshot_id=pl.lit(c.snapshot_id),
                playlist_order=pl.lit(order, dtype=pl.Int32),
            )
        )
    if not frames:
        empty = cast(pl.DataFrame, pl.from_arrow(CRAWL_SCHEMA.empty_table()))
        return empty.with_columns(
            genre=pl.lit(None, pl.String),
            source_ref=pl.lit(None, pl.String),
            snapshot_id=pl.lit(None, pl.String),
            playlist_order=pl.lit(None, pl.Int32),
        )
    return pl.concat(frames, how="vertical")


# ----------------------------------------------------------------------------------------------------------
# Artist genres (one request per artist: the batch endpoint is gone), cached in the store across runs

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


# ----------------------------------------------------------------------------------------------------------
# Labels: one genre per recording


@dataclass(frozen=True)
class Conflict:
    """A recording found in playlists of more than one genre, and what became of it."""

    track_id: str
    title: str | None
    artists: str
    isrc: str | None
    genres: dict[str, int]  # genre -> number of playlists of that genre holding the recording
    playlists: list[str]
    resolved: str | None  # the genre kept, or None when the track was dropped
    reason: str


def resolve_labels(
    tracks: pl.DataFrame, *, votes: Mapping[str, str | None], rule: ConflictRule = "majority"
) -> tuple[pl.DataFrame, list[Conflict]]:
    """Catalog rows, one per recording, from crawled tracks (see `load_crawled_tracks`); and the conflicts.

    A recording is a track id, or an ISRC shared by several track ids (the same recording on a single and an
    album): each is kept once, as its first appearance in playlists-file order. Its label is its playlist's
    genre. A recording in playlists of several genres is a conflict, settled by `rule`:

    - "majority": the genre of the most playlists holding it wins; on a tie, the artist-genre vote decides
      when it names one of the tied genres; otherwise the track is dropped.
    - "drop": every conflicting track is dropped.

    `votes` maps an artist id to its artist-genre vote (see `Taxonomy.vote`), recorded in `artist_genre_vote`.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in tracks.sort("playlist_order", "position").iter_rows(named=True):
        if row["track_id"] is None:
            continue
        key = f"isrc:{row['isrc']}" if row["isrc"] else f"id:{row['track_id']}"
        groups.setdefault(key, []).append(row)

    out: list[dict[str, Any]] = []
    conflicts: list[Conflict] = []
    seen_ids: set[str] = set()
    for rows in groups.values():
        playlists_by_genre: dict[str, list[str]] = {}
        for r in rows:
            holders = playlists_by_genre.setdefault(r["genre"], [])
            if r["source_ref"] not in holders:
                holders.append(r["source_ref"])
        first = rows[0]
        artist_id = first["artist_ids"][0] if first["artist_ids"] else None
        vote = votes.get(artist_id) if artist_id else None
        genre: str | None = first["genre"]
        if len(playlists_by_genre) > 1:
            genre, reason = _settle(playlists_by_genre, vote, rule)
            conflicts.append(
                Conflict(
                    track_id=first["track_id"],
                    title=first["title"],
                    artists=", ".join(first["artists"] or []),
                    isrc=first["isrc"],
                    genres={g: len(p) for g, p in playlists_by_genre.items()},
                    playlists=[p for ps in playlists_by_genre.values() for p in ps],
                    resolved=genre,
                    reason=reason,
                )
            )
            if genre is None:
                continue
        chosen = next(r for r in rows if r["genre"] == genre)
        if chosen["track_id"] in seen_ids:
            continue
        seen_ids.add(chosen["track_id"])
        artist_id = chosen["artist_ids"][0] if chosen["artist_ids"] else None
        out.append(
            {
                "track_id": chosen["track_id"],
                "title": chosen["title"],
                "artists": chosen["artists"],
                "artist_id": artist_id,
                "duration_s": chosen["duration_ms"] / 1000 if chosen["duration_ms"] is not None else None,
                "isrc": chosen["isrc"],
                "genre": genre,
                "label_source": "playlist",
                "source": "spotify",
                "source_ref": chosen["source_ref"],
                "snapshot_id": chosen["snapshot_id"],
                "artist_genre_vote": votes.get(artist_id) if artist_id else None,
                "audio_uri": None,
                "content_hash": None,
            }
        )
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "track_id": pl.String,
        "title": pl.String,
        "artists": pl.List(pl.String),
        "artist_id": pl.String,
        "duration_s": pl.Float64,
        "isrc": pl.String,
        "genre": pl.String,
        "label_source": pl.String,
        "source": pl.String,
        "source_ref": pl.String,
        "snapshot_id": pl.String,
        "artist_genre_vote": pl.String,
        "audio_uri": pl.String,
        "content_hash": pl.String,
    }
    return pl.DataFrame(out, schema=schema).select(CATALOG_COLUMNS), conflicts


def _settle(
    playlists_by_genre: Mapping[str, Sequence[str]], vote: str | None, rule: ConflictRule
) -> tuple[str | None, str]:
    counts = {g: len(p) for g, p in playlists_by_genre.items()}
    if rule == "drop":
        return None, "dropped: in playlists of several genres (conflict_rule=drop)"
    top = max(counts.values())
    tied = [g for g, n in counts.items() if n == top]
    if len(tied) == 1:
        return tied[0], f"majority: {top} of {sum(counts.values())} playlists"
    if vote in tied:
        return vote, f"tie between {', '.join(tied)}; the artist's genres vote {vote}"
    return None, f"dropped: tie between {', '.join(tied)} and no artist-genre vote for one of them"


# ----------------------------------------------------------------------------------------------------------
# The catalog and the report


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
