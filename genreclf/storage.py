"""The one place that turns a URI (a path, file://, s3://) into a filesystem, and the key layout of the store."""

from __future__ import annotations

import io
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genreclf.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from genreclf.settings import Settings

log = logging.getLogger(__name__)


def _settings() -> Settings:
    # Imported here: reading a local store (e.g. on a bare GPU image) needs no pydantic-settings.
    from genreclf.settings import get_settings

    return get_settings()


# Key layout. Everything the pipeline writes lives under one root, at deterministic keys.
def catalog_key(version: str) -> str:
    return f"catalogs/{version}/catalog.parquet"


CATALOG_LATEST = "catalogs/LATEST"


def audio_key(track_id: str) -> str:
    return f"audio/{track_id}.flac"


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


DATASET_LATEST = "datasets/LATEST"


def lineage_key(lineage: str) -> str:
    """Points at the newest dataset of a lineage (same split seed and split source): incremental builds keep
    its split assignment."""
    return f"datasets/lineages/{lineage}"


def shard_content_key(feature_hash: str, content_hash: str) -> str:
    """Shards are shared between datasets: the key is a hash of everything in them, so an unchanged group of
    tracks is found again instead of recomputed."""
    return f"shards/{feature_hash}/{content_hash}.parquet"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


CHAMPION_KEY = "registry/champion.json"
IDENTITY_KEY = "STORE_ID"


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
        settings = settings or _settings()
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


@dataclass(frozen=True)
class Store:
    """A root in a filesystem with atomic, idempotent reads and writes of keys under it."""

    fs: pafs.FileSystem
    root: str
    url: str

    @classmethod
    def open(cls, url: str | None = None, settings: Settings | None = None) -> Store:
        """Open the store at `url`, or at `GENRECLF_STORAGE_URL` (default `./genreclf-data`)."""
        if url is None:
            settings = settings or _settings()
            url = settings.storage_url
        fs, root = filesystem_for(url, settings)
        if isinstance(fs, pafs.LocalFileSystem):
            Path(root).mkdir(parents=True, exist_ok=True)
            url = Path(root).as_uri()
        else:
            url = f"s3://{root}"
        return cls(fs=fs, root=root, url=url)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}"

    def uri(self, key: str) -> str:
        return f"{self.url}/{key.lstrip('/')}"

    def key_of(self, uri: str) -> str:
        """The key of a URI under this store (inverse of `uri`)."""
        prefix = self.url + "/"
        if not uri.startswith(prefix):
            raise StorageError(f"{uri} is not inside the store {self.url}")
        return uri[len(prefix) :]

    def identity(self) -> str:
        """A random id made when the store is first used: a wiped and recreated store gets a new one, so caches
        keyed on it (the Prefect task cache) never point at outputs that are gone."""
        if not self.exists(IDENTITY_KEY):
            self.write_text(IDENTITY_KEY, uuid.uuid4().hex)
        return self.read_text(IDENTITY_KEY).strip()

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound

    def keys(self, prefix: str) -> list[str]:
        """Keys of the files under `prefix`, sorted; an absent prefix is empty."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        start = len(self.root) + 1
        return sorted(i.path[start:] for i in infos if i.type == pafs.FileType.File)

    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(key)) as f:
                return bytes(f.read())
        except FileNotFoundError as e:
            raise StorageError(f"{self.uri(key)} does not exist") from e
        except OSError as e:
            raise StorageError(f"{self.uri(key)}: cannot read ({e})") from e

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write atomically: a reader sees the old object or the whole new one, never a part."""
        with self._atomic(key) as tmp, self.fs.open_output_stream(tmp) as f:
            f.write(data)
        return self.uri(key)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode())

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(self.path(key), filesystem=self.fs, columns=columns)
        except FileNotFoundError as e:
            raise StorageError(f"{self.uri(key)} does not exist") from e

    def write_parquet(self, key: str, table: pa.Table, **kwargs: Any) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, **kwargs)
        return self.write_bytes(key, buf.getvalue())

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.fs.delete_file(self.path(key))

    def _atomic(self, key: str) -> _AtomicWrite:
        return _AtomicWrite(self, key)


class _AtomicWrite:
    """Write to a temporary key and move it into place on success; remove it on failure.

    Locally the move is a rename. On S3 it is a server-side copy: a writer that fails half way must not leave its
    part behind, and pyarrow's S3 stream completes the upload even when closed by an exception.
    """

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.final = store.path(key)
        self.tmp = f"{self.final}.tmp-{uuid.uuid4().hex}"

    def __enter__(self) -> str:
        parent = self.final.rsplit("/", 1)[0]
        self.store.fs.create_dir(parent, recursive=True)
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.store.fs.move(self.tmp, self.final)
            return
        try:
            self.store.fs.delete_file(self.tmp)
        except OSError:
            log.debug("could not remove %s", self.tmp)
