"""The one place that reads the environment: every GENRECLF_ variable is declared here."""

from __future__ import annotations

import sys
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

    storage_url: str = Field(
        "./genreclf-data", description="store root: a directory, `file://` or `s3://bucket/prefix`"
    )
    s3_endpoint_url: str | None = Field(None, description="an S3-compatible server, e.g. `http://127.0.0.1:8333`; "
                                        "unset: AWS")  # fmt: skip
    s3_access_key: str | None = Field(None, description="S3 access key; unset: the AWS credential chain")
    s3_secret_key: SecretStr | None = Field(None, description="S3 secret key; unset: the AWS credential chain")
    s3_region: str = Field("us-east-1", description="S3 region")

    spotify_api_url: str = Field("https://api.spotify.com/v1/", description="Spotify Web API base (a stand-in's, "
                                 "in tests)")  # fmt: skip
    spotify_token_url: str = Field("https://accounts.spotify.com/api/token", description="Spotify's token URL")
    spotify_max_retry_after_s: float = Field(120.0, description="the longest `Retry-After` of a 429 that is waited "
                                             "out (see [spotify.md](spotify.md#2026-web-api-limits-development-mode"
                                             "-apps))")  # fmt: skip

    # GENRECLF_YOUTUBE_<FIELD> sets each field of YoutubeConfig, e.g. GENRECLF_YOUTUBE_RETRIES=5; its defaults are
    # declared there only (genreclf/sources/youtube_config.py). Read by _YoutubeEnv below.
    youtube: YoutubeConfig = Field(default_factory=lambda: _YoutubeEnv().youtube, description="how tracks are "
                                   "searched, matched and downloaded (`GENRECLF_YOUTUBE_<FIELD>`)")  # fmt: skip
    youtube_rate_limit: str = Field("youtube-requests", description="the Prefect rate limit (slot decay) the "
                                    "acquire tasks take a slot of per search or download; a missing one is "
                                    "skipped")  # fmt: skip
    youtube_concurrency_limit: str = Field("youtube-downloads", description="the Prefect concurrency limit held "
                                           "per download; a missing one is skipped")  # fmt: skip
    youtube_requests_per_minute: float | None = Field(None, description="set: the flow creates or updates the "
                                                      "rate limit to this")  # fmt: skip
    youtube_max_concurrent_downloads: int | None = Field(None, description="set: the flow creates or updates the "
                                                         "concurrency limit to this")  # fmt: skip

    audio_format: Literal["flac", "wav"] = Field("flac", description="how decoded audio is stored: `flac`, or `wav` "
                                                 "(the same 16-bit samples, about twice the bytes, no encoding: a "
                                                 "build from mp3s takes about a fifth less CPU). Fingerprints, "
                                                 "dataset ids and shards are the same either way, and audio stored "
                                                 "in the other format is reused")  # fmt: skip

    dask_address: str | None = Field(None, description="run the feature tasks on a Dask cluster, e.g. "
                                     "`tcp://scheduler:8786`; unset: threads on this machine")  # fmt: skip
    device: str | None = Field(None, description="`cpu`, `cuda`, `cuda:1`, `mps`: where training, evaluation and "
                               "prediction run unless `--device` or a flow's `device` parameter says otherwise; "
                               "unset: the best available. A device the machine lacks fails at once, naming this "
                               "variable")  # fmt: skip
    cache_dir: Path = Field(Path.home() / ".cache" / "genreclf", description="per-user caches: partial downloads, "
                            "file hashes, the Spotify user token, pretrained weights (`weights/`)")  # fmt: skip


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


TABLE_BEGIN = "<!-- settings table: generated from genreclf/settings.py by `python -m genreclf.settings` -->"
TABLE_END = "<!-- end of the settings table -->"


def settings_table() -> str:
    """The markdown table of every `GENRECLF_` variable: name, default, what it does, from the declarations."""
    import dataclasses

    rows = ["| variable | default | |", "|---|---|---|"]
    for name, spec in Settings.model_fields.items():
        if name == "youtube":
            for f in dataclasses.fields(YoutubeConfig):
                rows.append(_row(f"youtube_{f.name}", f.default, f.metadata["doc"]))
            continue
        default = spec.default_factory() if spec.default_factory else spec.default  # type: ignore[call-arg]
        rows.append(_row(name, default, spec.description or ""))
    return "\n".join(rows)


def _row(name: str, default: object, doc: str) -> str:
    if isinstance(default, Path) and default.is_relative_to(Path.home()):
        shown = f"`~/{default.relative_to(Path.home())}`"
    else:
        shown = "unset" if default is None else '`""`' if default == "" else f"`{default}`"
    return f"| `GENRECLF_{name.upper()}` | {shown} | {doc} |"


def write_settings_table(doc: Path) -> bool:
    """Put the current table between the markers of `doc`; whether it changed."""
    text = doc.read_text()
    begin, end = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
    updated = f"{text[:begin]}\n{settings_table()}\n{text[end:]}"
    if updated != text:
        doc.write_text(updated)
    return updated != text


if __name__ == "__main__":
    changed = write_settings_table(Path(__file__).parents[1] / "docs" / "settings.md")
    sys.stdout.write(f"docs/settings.md: {'table updated' if changed else 'already current'}\n")
