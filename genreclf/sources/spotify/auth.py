"""Spotify credentials and authorization: client credentials or a user's refresh token, and `connect`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests
import spotipy
from spotipy.cache_handler import CacheHandler, MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOAuth, SpotifyOauthError

from genreclf.errors import ConfigError
from genreclf.retry import RetryPolicy
from genreclf.settings import Settings, get_settings
from genreclf.sources.spotify.client import SpotifyClient

log = logging.getLogger(__name__)

AuthMode = Literal["client_credentials", "user"]
USER_SCOPE = "playlist-read-private playlist-read-collaborative"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8888/callback"
DEFAULT_TIMEOUT_S = 15.0


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


@contextlib.contextmanager
def _credentials_errors() -> Iterator[None]:
    """spotipy's refusal of missing credentials, as a ConfigError that names the other place they can come from."""
    try:
        yield
    except SpotifyOauthError as e:
        raise ConfigError(f"Spotify credentials: {e} (or give the flow a Prefect Secret block)") from None


def _user_auth(
    credentials: Credentials | None,
    *,
    settings: Settings,
    redirect_uri: str,
    cache_handler: CacheHandler,
    session: requests.Session | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> _UserAuth:
    credentials = credentials or Credentials()
    with _credentials_errors():
        return _UserAuth(
            token_url=settings.spotify_token_url,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            redirect_uri=redirect_uri,
            scope=USER_SCOPE,
            requests_session=session or _session(),
            requests_timeout=timeout_s,
            open_browser=False,
            cache_handler=cache_handler,
        )


def connect(
    credentials: Credentials | None = None,
    *,
    auth: AuthMode = "client_credentials",
    settings: Settings | None = None,
    policy: RetryPolicy | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
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
    policy = policy or RetryPolicy(
        max_retry_after_s=settings.spotify_max_retry_after_s, cap_setting="GENRECLF_SPOTIFY_MAX_RETRY_AFTER_S"
    )
    _redact_spotipy_logs()
    session = _session()
    manager: SpotifyClientCredentials | SpotifyOAuth
    if auth == "client_credentials":
        with _credentials_errors():
            manager = _ClientCredentials(
                token_url=settings.spotify_token_url,
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                requests_session=session,
                requests_timeout=timeout_s,
                cache_handler=MemoryCacheHandler(),
            )
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
                    f"{path}; authorize once (`genreclf spotify-login`, see docs/spotify.md)"
                )
            handler = TokenFile(path)
        manager = _user_auth(
            credentials,
            settings=settings,
            redirect_uri=redirect_uri,
            cache_handler=handler,
            session=session,
            timeout_s=timeout_s,
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
    manager = _user_auth(
        credentials, settings=settings or get_settings(), redirect_uri=redirect_uri, cache_handler=MemoryCacheHandler()
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
    manager = _user_auth(credentials, settings=settings, redirect_uri=redirect_uri, cache_handler=TokenFile(path))
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
