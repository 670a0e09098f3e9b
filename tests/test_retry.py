"""The one retry helper: Retry-After (seconds and HTTP-date), its cap, the backoff schedule; no real sleeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from genreclf.errors import ConfigError, SourceError, TransientSourceError
from genreclf.retry import (
    RateLimitedError,
    RetryableError,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    retry_after_from,
)

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, backoff_base_s=1.0, backoff_max_s=3.0, max_retry_after_s=60.0)


def failing(*errors: Exception, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A function raising `errors` one call after the other, then returning `result`; and its call count."""
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result

    return fn, calls


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),  # "Tue, 03 Nov 2026 12:01:30 GMT"
        ("Tue, 03 Nov 2026 12:00:45 GMT", 45.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),  # a date in the past: go now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_an_http_date(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_header_is_found_in_any_case() -> None:
    assert retry_after_from({"retry-after": "7"}) == 7.0
    assert retry_after_from({"Retry-After": "8", "Content-Type": "x"}) == 8.0
    assert retry_after_from({"Content-Type": "x"}) is None and retry_after_from(None) is None


def test_backoff_doubles_up_to_its_cap_without_jitter() -> None:
    assert [POLICY.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 3.0, 3.0, 3.0]
    with pytest.raises(ConfigError, match="at least once"):
        RetryPolicy(max_attempts=0)


def test_transient_failures_are_retried_on_the_backoff_schedule(caplog: pytest.LogCaptureFixture) -> None:
    fn, calls = failing(RetryableError("x: HTTP 503"), RetryableError("x: HTTP 502"), RetryableError("x: timeout"))
    slept: list[float] = []
    with caplog.at_level(logging.WARNING, logger="genreclf.retry"):
        assert call_with_retries(fn, policy=POLICY, sleep=slept.append) == "ok"
    assert calls[0] == 4 and slept == [1.0, 2.0, 3.0]
    assert "x: HTTP 503; retrying in 1.0 s (attempt 1 of 4)" in caplog.text


def test_retry_after_is_waited_as_asked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=31), usegmt=True)
    fn, _ = failing(
        RetryableError("x: HTTP 429", retry_after=42.0),
        RetryableError("x: HTTP 503", retry_after=parse_retry_after(date)),
    )
    slept: list[float] = []
    with caplog.at_level(logging.WARNING, logger="genreclf.retry"):
        assert call_with_retries(fn, policy=POLICY, sleep=slept.append) == "ok"
    assert slept[0] == 42.0 and 29.0 < slept[1] <= 31.0  # not capped by backoff_max_s
    assert "retrying in 42.0 s as Retry-After asks" in caplog.text


def test_a_retry_after_over_the_cap_is_not_waited() -> None:
    policy = RetryPolicy(max_attempts=4, max_retry_after_s=60.0, cap_setting="GENRECLF_X_MAX_WAIT_S")
    fn, calls = failing(RetryableError("x: HTTP 429", retry_after=3600.0))
    slept: list[float] = []
    with pytest.raises(
        RateLimitedError, match=r"x: HTTP 429: asked to wait 3600 s, more than GENRECLF_X_MAX_WAIT_S=60"
    ):
        call_with_retries(fn, policy=policy, sleep=slept.append)
    assert calls[0] == 1 and slept == []
    fn, _ = failing(RetryableError("x: HTTP 429", retry_after=3600.0))
    with pytest.raises(RateLimitedError) as info:
        call_with_retries(fn, policy=policy, sleep=slept.append)
    assert isinstance(info.value, TransientSourceError)
    assert 3500 < (info.value.retry_at - datetime.now(UTC)).total_seconds() <= 3600


def test_it_gives_up_after_max_attempts_with_the_last_error() -> None:
    fn, calls = failing(*(RetryableError(f"x: HTTP 50{n}") for n in range(9)))
    slept: list[float] = []
    with pytest.raises(RetryableError, match=r"^x: HTTP 503; gave up after 4 attempts") as info:
        call_with_retries(fn, policy=POLICY, sleep=slept.append)
    assert calls[0] == 4 and len(slept) == 3 and isinstance(info.value.__cause__, RetryableError)
    once, _ = failing(RetryableError("x: HTTP 500"))
    with pytest.raises(RetryableError, match="gave up after 1 attempt,"):
        call_with_retries(once, policy=RetryPolicy(max_attempts=1), sleep=slept.append)


def test_a_permanent_failure_fails_at_once() -> None:
    fn, calls = failing(SourceError("x: HTTP 404"))
    slept: list[float] = []
    with pytest.raises(SourceError, match="404") as info:
        call_with_retries(fn, policy=POLICY, sleep=slept.append)
    assert calls[0] == 1 and slept == [] and not isinstance(info.value, TransientSourceError)
