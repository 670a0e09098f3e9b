"""The one place that reads the environment: every GENRECLF_ variable is declared here."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment-wide settings, read from `GENRECLF_*` environment variables (or a `.env` file).

    Everything has a laptop default: a local store under `./genreclf-data`, no S3, no Dask, the CPU or
    whatever accelerator torch finds.
    """

    model_config = SettingsConfigDict(env_prefix="GENRECLF_", env_file=".env", extra="ignore")

    # Object storage: a local directory, a file:// URI or an s3://bucket/prefix URI.
    storage_url: str = "./genreclf-data"
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"

    # Spotify Web API; pointed elsewhere for a stand-in.
    spotify_api_url: str = "https://api.spotify.com/v1/"
    spotify_token_url: str = "https://accounts.spotify.com/api/token"
    spotify_max_retry_after_s: float = 120.0

    # YouTube / acquisition (yt-dlp). Search: a yt-dlp URL template with {n} and {query}; "ytsearch{n}:{query}"
    # searches YouTube, an http(s) template (the query URL-encoded) reads a page or feed yt-dlp lists (tests).
    youtube_search: str = "ytsearch{n}:{query}"
    youtube_candidates: int = 5
    youtube_duration_tolerance_s: float = 10.0  # accept |candidate - Spotify| <= max(this, frac * Spotify's)
    youtube_duration_tolerance_frac: float = 0.05
    youtube_min_title_similarity: float = 0.5
    youtube_cookies_file: Path | None = None  # Netscape cookies.txt, for YouTube's sign-in and bot checks
    youtube_sleep_interval_s: float = 0.0  # sleep before each download (yt-dlp --sleep-interval)
    youtube_max_sleep_interval_s: float = 0.0  # sleep a random time up to this instead (--max-sleep-interval)
    youtube_sleep_requests_s: float = 0.0  # sleep between extraction requests (--sleep-requests)
    youtube_socket_timeout_s: float = 30.0
    youtube_retries: int = 3  # per request, with exponential backoff honouring Retry-After
    youtube_backoff_s: float = 2.0
    youtube_max_backoff_s: float = 60.0
    # Prefect global concurrency limits (names) the acquire tasks take slots from; missing limits are skipped.
    youtube_rate_limit: str = "youtube-requests"  # rate limit (slot decay): one slot per search or download
    youtube_concurrency_limit: str = "youtube-downloads"  # at most `limit` downloads at once
    youtube_requests_per_minute: float | None = None  # set: the flow creates/updates the rate limit to this
    youtube_max_concurrent_downloads: int | None = None  # set: the flow creates/updates the concurrency limit

    # Compute.
    dask_address: str | None = None
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None picks the best available

    # Where per-user caches live (decoded audio scratch, Spotify artist cache).
    cache_dir: Path = Path.home() / ".cache" / "genreclf"


def get_settings() -> Settings:
    """Read the settings afresh (cheap; lets tests and flows change the environment between calls)."""
    return Settings()
