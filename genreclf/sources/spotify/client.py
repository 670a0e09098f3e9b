"""The Spotify Web API client: the endpoints genreclf reads, under one fault policy (genreclf.retry)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import requests
import spotipy
from spotipy.oauth2 import SpotifyOauthError

from genreclf.errors import ConfigError, SourceError
from genreclf.retry import RateLimitedError, RetryableError, RetryPolicy, call_with_retries, retry_after_from

log = logging.getLogger(__name__)
T = TypeVar("T")

# Web API limits (2026): items pages hold at most 50 entries, search pages at most 10 results, and there is no
# batch /artists?ids= endpoint any more for development-mode apps.
ITEMS_PAGE_MAX = 50
PLAYLIST_FIELDS = "id,name,owner(id,display_name),snapshot_id"
_TRACK_FIELDS = "type,id,name,duration_ms,is_local,is_playable,episode,external_ids(isrc),artists(id,name)"
# The 2026 API puts the track (or episode) under `item`; older responses and SDKs under `track`. Ask for both.
ITEM_FIELDS = f"next,total,items(added_at,is_local,item({_TRACK_FIELDS}),track({_TRACK_FIELDS}))"

_PLAYLIST_NOT_FOUND = (
    "Check the ID. Spotify-owned editorial and algorithmic playlists (owner 'spotify': Today's Top Hits, "
    "Discover Weekly, ...) answer 404 to development-mode apps: copy the tracks into a playlist you own"
)

# Errors from the token endpoint that no retry fixes: wrong id/secret, revoked refresh token.
_CREDENTIAL_ERRORS = {
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "invalid_request",
    "invalid_scope",
}


class NotFoundError(SourceError):
    """The API answered 404: a wrong ID, or a playlist this app may not read."""


class SpotifyClient:
    """spotipy with our fault policy: 429 (Retry-After honoured, capped), 5xx and timeouts retried by
    `genreclf.retry.call_with_retries`, one token refresh on 401, and 404/403 failing at once saying why."""

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

    def check_credentials(self) -> None:
        """Fetch an access token now, so bad credentials fail before the crawl starts."""
        self.call("access token", lambda: self.sp.auth_manager.get_access_token(as_dict=False))

    # -- the fault policy
    def call(self, what: str, fn: Callable[[], T], *, not_found: str = "") -> T:
        """Run one request under the retry policy; `what` names it in logs and errors."""
        refreshed = False

        def attempt() -> T:
            nonlocal refreshed
            self._check_blocked(what)
            try:
                return fn()
            except spotipy.SpotifyException as e:
                if e.http_status == 401 and not refreshed:
                    # An expired or revoked access token: fetch a new one once (not counted as an attempt).
                    refreshed = True
                    log.info("%s: access token rejected (401); fetching a new one", what)
                    self._expire_token()
                    return attempt()
                raise _api_error(e, what=what, not_found=not_found) from None
            except (requests.Timeout, requests.ConnectionError) as e:
                raise RetryableError(f"{what}: {type(e).__name__}") from None
            except SpotifyOauthError as e:
                if e.error in _CREDENTIAL_ERRORS:
                    raise ConfigError(
                        f"Spotify's token endpoint {self.token_url} refused the credentials ({e.error}: "
                        f"{e.error_description}); check SPOTIPY_CLIENT_ID / SPOTIPY_CLIENT_SECRET or the "
                        "secret block (for auth='user', authorize again to get a new refresh token)"
                    ) from None
                raise RetryableError(f"{what}: token endpoint: {e.error}") from None

        try:
            return call_with_retries(attempt, policy=self.policy, sleep=self._sleep)
        except RateLimitedError as e:
            self._blocked_until = e.retry_at
            raise

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


def _api_error(e: spotipy.SpotifyException, *, what: str, not_found: str) -> Exception:
    """What an HTTP error of the Web API means: RetryableError for 429 and 5xx, a SourceError saying why else."""
    status = e.http_status
    if status == 429:
        return RetryableError(f"{what}: Spotify rate limit (HTTP 429)", retry_after=retry_after_from(e.headers))
    if status >= 500:
        return RetryableError(f"{what}: HTTP {status}")
    if status == 401:
        return SourceError(
            f"{what}: Spotify rejected a freshly issued access token (401): check that the app "
            "is allowed to use the Web API and that the user is on its allowlist"
        )
    if status == 404:
        return NotFoundError(f"{what}: not found (404). {not_found}".rstrip())
    if status == 403:
        return SourceError(
            f"{what}: forbidden (403: {_reason(e)}). A development-mode app may only read "
            "playlists its user owns or follows; see docs/spotify.md (2026 API limits)"
        )
    return SourceError(f"{what}: HTTP {status} ({_reason(e)})")


def _reason(e: spotipy.SpotifyException) -> str:
    msg = str(e.msg).split("\n", 1)[-1].strip()
    return msg or str(e.reason or "no detail")
