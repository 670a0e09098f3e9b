"""YoutubeConfig: how tracks are searched, matched and downloaded; every GENRECLF_YOUTUBE_<FIELD> is a field here.

Its own module, importing neither yt-dlp nor pydantic, so `genreclf.settings` can hold one (`Settings.youtube`,
read from the environment) and code that only passes a config around imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

from genreclf.retry import RetryPolicy


@dataclass(frozen=True)
class YoutubeConfig:
    """How tracks are searched, matched and downloaded; `GENRECLF_YOUTUBE_<FIELD>` sets each field
    (`GENRECLF_YOUTUBE_RETRIES=5`), see `genreclf.settings.Settings.youtube`.

    `search` is a yt-dlp URL template with `{n}` and `{query}`: `ytsearch{n}:{query}` searches YouTube; an http(s)
    template gets the query URL-encoded and must answer with something yt-dlp reads as a playlist (an RSS feed).
    A candidate is accepted when its duration is within max(`duration_tolerance_s`, `duration_tolerance_frac` x
    the track's) and its title (with channel) names the track well enough (`min_title_similarity`, 0..1).
    """

    search: str = "ytsearch{n}:{query}"
    candidates: int = 5  # search results considered per track
    duration_tolerance_s: float = 10.0  # accept |candidate - Spotify| <= max(this, frac * Spotify's)
    duration_tolerance_frac: float = 0.05
    min_title_similarity: float = 0.5
    format: str = "bestaudio/best"  # yt-dlp format selector
    cookies_file: str | None = None  # Netscape cookies.txt, for YouTube's sign-in and bot checks
    # The JavaScript runtime yt-dlp solves YouTube's challenges with: deno (the one installed with genreclf, unless
    # js_runtime_path names another), node (>= 20), bun or quickjs (js_runtime_path, or found on PATH).
    js_runtime: str = "deno"
    js_runtime_path: str | None = None
    # More yt-dlp extractor arguments, as its --extractor-args takes them, several separated by spaces: a PO-token
    # provider plugin's ("youtubepot-bgutilhttp:base_url=http://127.0.0.1:4416") or tokens ("youtube:po_token=...").
    extractor_args: str = ""
    sleep_interval_s: float = 0.0  # sleep before each download (yt-dlp --sleep-interval)
    max_sleep_interval_s: float = 0.0  # sleep a random time up to this instead (--max-sleep-interval)
    sleep_requests_s: float = 0.0  # sleep between extraction requests (--sleep-requests)
    socket_timeout_s: float = 30.0
    retries: int = 3  # per search or download (genreclf.retry: the only layer that retries them)
    backoff_s: float = 2.0  # first wait between attempts, doubling
    max_backoff_s: float = 60.0  # longest wait between attempts; a longer Retry-After is not waited for

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
