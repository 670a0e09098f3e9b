"""Retrying one network request: a capped exponential backoff, Retry-After honoured (capped), the retry layers.

One layer retries each kind of failure:

- A transient fault of one request (HTTP 429 or 5xx, a timeout, a dropped connection, a 5xx from Spotify's token
  endpoint) is retried by `call_with_retries`, here, and nowhere else. The Spotify client (`RetryPolicy`, 6
  attempts by default) and the YouTube search and download (`GENRECLF_YOUTUBE_RETRIES` + 1 attempts) both use it.
  The caller turns what is transient into `RetryableError`; everything else (404, 403, bad credentials, a video
  that is gone) propagates at once.
- Nothing below it retries: spotipy's requests session has urllib3 retries off, and yt-dlp's own `retries`,
  `fragment_retries` and `extractor_retries` are 0 (a download retried here resumes its `.part` file).
- Nothing above it retries the same faults: the Prefect tasks that call the network (crawl-playlist,
  lookup-artist-genres) have no task retries, and acquire-batch catches a track's transient failure inside the
  batch (its one retry is for the batch itself failing, e.g. the store unreachable). What the library gave up on
  is left for the next run: a track is quarantined as transient and not remembered, a playlist is listed under
  the ingest report's failures.
- A Retry-After longer than the policy allows is not slept through: `RateLimitedError` says when to come back.
  (A 401 from Spotify gets one token refresh in the client, not counted as an attempt.)

Worst case, attempts at one request that keeps failing transiently (default settings):
  before: Spotify 6 (client) x 3 (Prefect task) = 18. YouTube 4 (`with_retries`) x 3 (task) = 12 for a page
  yt-dlp fetches without retrying, and x 4 more (yt-dlp's `retries` / `extractor_retries` = 3) = 48 for a media
  download or a call to YouTube's API.
  now: Spotify 6; YouTube 4 (GENRECLF_YOUTUBE_RETRIES=3, + 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

from genreclf.errors import ConfigError, TransientSourceError

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryableError(TransientSourceError):
    """A transient failure worth another attempt (HTTP 429/5xx, timeout, dropped connection); `retry_after` is
    the server's Retry-After in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientSourceError):
    """The server asked us to wait longer than the policy allows; `retry_at` says when to come back."""

    def __init__(self, message: str, *, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: attempts in all (the first included), the backoff before each retry
    (`backoff_base_s`, doubling, at most `backoff_max_s`), and the longest Retry-After we sit out.

    `cap_setting` names the setting behind `max_retry_after_s`, for the message of RateLimitedError.
    """

    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    cap_setting: str = ""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts={self.max_attempts}: a request is tried at least once (retries >= 0)")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1, 2, ...): base, 2 x base, 4 x base ... capped.

        No jitter: parallel workers are spread by Prefect's global concurrency limits, not by chance."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delay-seconds ("120") or an HTTP-date (RFC 9110); a date in
    the past is 0. None when absent or unreadable (the caller backs off instead)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a bare one is taken as UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_from(headers: Mapping[str, str] | None, *, now: datetime | None = None) -> float | None:
    """`parse_retry_after` of a response's Retry-After header (looked up case-insensitively)."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now=now)


def call_with_retries(fn: Callable[[], T], *, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn` until it returns, retrying RetryableError under `policy`; any other error propagates at once.

    Between attempts it waits the error's Retry-After when there is one, else `policy.backoff(attempt)`, and
    logs the wait. A Retry-After over `policy.max_retry_after_s` raises RateLimitedError at once; after
    `policy.max_attempts` the last error is raised again as RetryableError saying how many attempts were made.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except RetryableError as e:
            if e.retry_after is not None and e.retry_after > policy.max_retry_after_s:
                retry_at = datetime.now(UTC) + timedelta(seconds=e.retry_after)
                limit = (
                    f"{policy.cap_setting}={policy.max_retry_after_s:.0f}"
                    if policy.cap_setting
                    else f"the {policy.max_retry_after_s:.0f} s we wait at most"
                )
                raise RateLimitedError(
                    f"{e}: asked to wait {e.retry_after:.0f} s, more than {limit}; "
                    f"retry after {retry_at:%Y-%m-%d %H:%M:%S} UTC",
                    retry_at=retry_at,
                ) from e
            if attempt >= policy.max_attempts:
                tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                raise RetryableError(f"{e}; gave up after {tries}, try again later", retry_after=e.retry_after) from e
            wait = e.retry_after if e.retry_after is not None else policy.backoff(attempt)
            why = " as Retry-After asks" if e.retry_after is not None else ""
            log.warning("%s; retrying in %.1f s%s (attempt %d of %d)", e, wait, why, attempt, policy.max_attempts)
            sleep(wait)
