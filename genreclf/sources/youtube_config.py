"""YoutubeConfig: how tracks are searched, matched and downloaded; every GENRECLF_YOUTUBE_<FIELD> is a field here.

Its own module, importing neither yt-dlp nor pydantic, so `genreclf.settings` can hold one (`Settings.youtube`,
read from the environment) and code that only passes a config around imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from genreclf.retry import RetryPolicy


def _doc(default: Any, doc: str) -> Any:
    """A field's default and what it does (docs/settings.md's table is generated from these)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class YoutubeConfig:
    """How tracks are searched, matched and downloaded; `GENRECLF_YOUTUBE_<FIELD>` sets each field
    (`GENRECLF_YOUTUBE_RETRIES=5`), see `genreclf.settings.Settings.youtube`.

    `search` is a yt-dlp URL template with `{n}` and `{query}`: `ytsearch{n}:{query}` searches YouTube; an http(s)
    template gets the query URL-encoded and must answer with something yt-dlp reads as a playlist (an RSS feed).
    A candidate is accepted when its duration is within max(`duration_tolerance_s`, `duration_tolerance_frac` x
    the track's) and its title (with channel) names the track well enough (`min_title_similarity`, 0..1).
    """

    search: str = _doc("ytsearch{n}:{query}", "yt-dlp URL template searched per track, with `{n}` and `{query}`")
    candidates: int = _doc(5, "search results considered per track")
    duration_tolerance_s: float = _doc(10.0, "accept a candidate within max(this, frac x the track's) seconds")
    duration_tolerance_frac: float = _doc(0.05, "the fraction of the track's duration in that tolerance")
    min_title_similarity: float = _doc(0.5, "how well (0..1) a candidate's title and channel must name the track")
    format: str = _doc("bestaudio/best", "yt-dlp format selector")
    cookies_file: str | None = _doc(None, "Netscape cookies.txt, for YouTube's sign-in and bot checks")
    js_runtime: str = _doc("deno", "the JavaScript runtime yt-dlp solves YouTube's challenges with: deno (the one "
                           "installed with genreclf), node (>= 20), bun or quickjs")  # fmt: skip
    js_runtime_path: str | None = _doc(None, "the runtime's executable, where it is not the installed deno or on PATH")
    extractor_args: str = _doc("", "more yt-dlp extractor arguments as `--extractor-args` takes them, space-separated: "
                               "a PO-token provider's (`youtubepot-bgutilhttp:base_url=...`) or tokens")  # fmt: skip
    sleep_interval_s: float = _doc(0.0, "sleep before each download (yt-dlp `--sleep-interval`)")
    max_sleep_interval_s: float = _doc(0.0, "sleep a random time up to this instead (`--max-sleep-interval`)")
    sleep_requests_s: float = _doc(0.0, "sleep between extraction requests (`--sleep-requests`)")
    socket_timeout_s: float = _doc(30.0, "yt-dlp's socket timeout")
    retries: int = _doc(3, "retries per search or download (genreclf.retry, the only layer that retries them)")
    backoff_s: float = _doc(2.0, "first wait between attempts, doubling")
    max_backoff_s: float = _doc(60.0, "longest wait between attempts; a longer Retry-After is not waited for")

    def tolerance(self, expected_s: float) -> float:
        return max(self.duration_tolerance_s, self.duration_tolerance_frac * expected_s)

    def retry_policy(self) -> RetryPolicy:
        """How `genreclf.retry.call_with_retries` treats one search or download."""
        return RetryPolicy(
            max_attempts=self.retries + 1,
            backoff_base_s=self.backoff_s,
            backoff_max_s=self.max_backoff_s,
            max_retry_after_s=self.max_backoff_s,
            cap_setting="GENRECLF_YOUTUBE_MAX_BACKOFF_S",
        )
