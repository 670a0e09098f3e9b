"""Filesystems for store URLs: a local path or `file://` URI, or `s3://bucket/prefix` (pyarrow), and the boto3
client for what pyarrow's S3 cannot do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from genreclf.errors import ConfigError

if TYPE_CHECKING:
    from genreclf.settings import Settings


def settings_from_env() -> Settings:
    # Imported here: reading a local store (e.g. on a bare GPU image) needs no pydantic-settings.
    from genreclf.settings import get_settings

    return get_settings()


def filesystem_for(url: str, settings: Settings | None = None) -> tuple[pafs.FileSystem, str]:
    """Return `(filesystem, path)` for a local path, a `file://` URI or an `s3://bucket/key` URI.

    S3 takes its endpoint, keys and region from settings (`GENRECLF_S3_*`); without keys, pyarrow falls back
    to the usual AWS chain (environment, ~/.aws, instance profile).
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and url[1:3] == ":\\"):
        path = parsed.path if parsed.scheme == "file" else url
        return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"{url}: an S3 URL needs a bucket, e.g. s3://my-bucket/genreclf")
        settings = settings or settings_from_env()
        kwargs: dict[str, Any] = {"region": settings.s3_region}
        if settings.s3_endpoint_url:
            endpoint = urlparse(settings.s3_endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
                raise ConfigError(
                    f"GENRECLF_S3_ENDPOINT_URL={settings.s3_endpoint_url!r}: give a URL with its scheme, "
                    "e.g. http://127.0.0.1:8333"
                )
            kwargs["endpoint_override"] = endpoint.netloc
            kwargs["scheme"] = endpoint.scheme
        if settings.s3_access_key and settings.s3_secret_key:
            kwargs["access_key"] = settings.s3_access_key
            kwargs["secret_key"] = settings.s3_secret_key.get_secret_value()
        return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/")
    raise ConfigError(f"{url}: unsupported storage URL; use a local path, file:///abs/path or s3://bucket/prefix")


def s3_client_for(settings: Settings) -> Any:
    """A boto3 S3 client with the endpoint, keys and region `filesystem_for` gives pyarrow, for what pyarrow cannot
    do: conditional writes (If-Match / If-None-Match) and aborting the multipart uploads of killed writers."""
    import boto3
    import botocore.config

    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    keys = bool(settings.s3_access_key and secret)  # as in filesystem_for: both, or the AWS chain
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key if keys else None,
        aws_secret_access_key=secret if keys else None,
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 3}),
    )
