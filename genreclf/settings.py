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

    # Compute.
    dask_address: str | None = None
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None picks the best available

    # Where per-user caches live (decoded audio scratch, Spotify artist cache).
    cache_dir: Path = Path.home() / ".cache" / "genreclf"


def get_settings() -> Settings:
    """Read the settings afresh (cheap; lets tests and flows change the environment between calls)."""
    return Settings()
