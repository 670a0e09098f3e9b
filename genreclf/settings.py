"""The one place that reads the environment: every GENRECLF_ variable is declared here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from genreclf.errors import ConfigError
from genreclf.sources.youtube_config import YoutubeConfig


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

    # YouTube / acquisition (yt-dlp): GENRECLF_YOUTUBE_<FIELD> sets each field of YoutubeConfig (search template,
    # candidates, tolerances, cookies, sleeps, timeouts, retries), e.g. GENRECLF_YOUTUBE_RETRIES=5; its defaults are
    # declared there only (genreclf/sources/youtube_config.py). Read by _YoutubeEnv below.
    youtube: YoutubeConfig = Field(default_factory=lambda: _YoutubeEnv().youtube)
    # Prefect global concurrency limits (names) the acquire tasks take slots from; missing limits are skipped.
    youtube_rate_limit: str = "youtube-requests"  # rate limit (slot decay): one slot per search or download
    youtube_concurrency_limit: str = "youtube-downloads"  # at most `limit` downloads at once
    youtube_requests_per_minute: float | None = None  # set: the flow creates/updates the rate limit to this
    youtube_max_concurrent_downloads: int | None = None  # set: the flow creates/updates the concurrency limit

    # How decoded audio is stored: "flac" (about half the bytes) or "wav" (no encoding: a build from mp3s takes
    # about a fifth less CPU). The samples are the same, so fingerprints, dataset ids and shards are too; audio
    # stored in one format is reused as it is when the setting changes.
    audio_format: Literal["flac", "wav"] = "flac"

    # Compute.
    dask_address: str | None = None
    # "cpu", "cuda", "cuda:1", "mps": where training, evaluation and prediction run when no device is passed
    # (genreclf.training.resolve_device); None picks the best available. One this machine lacks fails at once.
    device: str | None = None

    # Where per-user caches live (decoded audio scratch, Spotify artist cache).
    cache_dir: Path = Path.home() / ".cache" / "genreclf"


class _YoutubeEnv(BaseSettings):
    """`Settings.youtube` from GENRECLF_YOUTUBE_<FIELD> variables: pydantic-settings' nested fields, split once
    on "_" (here only, so no other setting is read as a nested one). Other GENRECLF_YOUTUBE_* names are ignored."""

    model_config = Settings.model_config | SettingsConfigDict(env_nested_delimiter="_", env_nested_max_split=1)

    youtube: YoutubeConfig = YoutubeConfig()


def get_settings() -> Settings:
    """Read the settings afresh (cheap; lets tests and flows change the environment between calls).

    A value that does not fit raises ConfigError naming its GENRECLF_ variable and what it takes.
    """
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"GENRECLF_{'_'.join(str(part) for part in err['loc']).upper()}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"{problems} (set in the environment or a .env file)") from e
