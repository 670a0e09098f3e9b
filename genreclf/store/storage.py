"""The one place that turns a URI (a path, file://, s3://) into a filesystem: reads, atomic and conditional writes
of store keys (whose names `genreclf.store.keys` gives)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genreclf.errors import StorageError
from genreclf.store import s3_errors
from genreclf.store.filesystems import filesystem_for, s3_client_for, settings_from_env
from genreclf.store.keys import IDENTITY_KEY

if TYPE_CHECKING:
    from genreclf.settings import Settings

log = logging.getLogger(__name__)


# The store's own bookkeeping, at its root and never listed by `keys`: temporaries of writes in progress (swept by
# `sweep_temp` once old) and the lock files of `write_if` on a local store (never swept: see `write_if`).
TEMP_PREFIX = ".tmp"
LOCKS_PREFIX = ".locks"
FORMAT_KEY = "store.json"  # the store's format record (`genreclf.store.format`), not data: never listed
# Temporaries of writers before 2026-11, beside their final key: `<key>.tmp-<uuid4 hex>`.
_LEGACY_TEMP = re.compile(r"\.tmp-[0-9a-f]{32}$")
# Stores whose format this process has checked (`genreclf.store.format`): once each, not at every open.
_FORMAT_CHECKED: set[str] = set()


def _is_bookkeeping(key: str) -> bool:
    return (
        key.startswith((f"{TEMP_PREFIX}/", f"{LOCKS_PREFIX}/"))
        or key == FORMAT_KEY
        or _LEGACY_TEMP.search(key) is not None
    )


class Entry(NamedTuple):
    """A file in the store as a listing gives it: key, bytes, and modification time (seconds since the epoch)."""

    key: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Store:
    """A root in a filesystem with atomic, idempotent reads and writes of keys under it.

    S3 failures a user can fix (credentials, a missing bucket, an endpoint that does not answer) raise a
    StorageError that names the setting to check.
    """

    fs: pafs.FileSystem
    root: str
    url: str
    settings: Settings | None = field(default=None, repr=False, compare=False)  # S3: what boto3 needs too
    # Buckets seen to exist: a missing key is then just missing, without asking the bucket again.
    _buckets_seen: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    @classmethod
    def open(cls, url: str | None = None, settings: Settings | None = None, *, record_format: bool = True) -> Store:
        """Open the store at `url`, or at `GENRECLF_STORAGE_URL` (default `./genreclf-data`), once its format is
        one this genreclf reads (`genreclf.store.format`; `record_format`: write `store.json` where it is missing)."""
        if url is None:
            settings = settings or settings_from_env()
            url = settings.storage_url
        elif urlparse(url).scheme == "s3":
            settings = settings or settings_from_env()  # kept: boto3 needs them too (write_if, sweep_temp)
        fs, root = filesystem_for(url, settings)
        if isinstance(fs, pafs.LocalFileSystem):
            Path(root).mkdir(parents=True, exist_ok=True)
            url = Path(root).as_uri()
        else:
            url = f"s3://{root}"
        store = cls(fs=fs, root=root, url=url, settings=settings)
        if url not in _FORMAT_CHECKED:
            from genreclf.store.format import check_format

            check_format(store, record=record_format)
            if record_format:
                _FORMAT_CHECKED.add(url)
        return store

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
        with self._s3_errors(key):
            found = self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound
        if not found:
            self._check_bucket(key)
        return found

    def keys(self, prefix: str) -> list[str]:
        """Keys of the files under `prefix`, sorted; an absent prefix is empty. Temporaries are never listed."""
        return [e.key for e in self.entries(prefix)]

    def entries(self, prefix: str) -> list[Entry]:
        """The files under `prefix` (as `keys`), each with its size and modification time: one listing."""
        selector = pafs.FileSelector(self.path(prefix), recursive=True, allow_not_found=True)
        with self._s3_errors(prefix):
            infos = [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
        if not infos:
            self._check_bucket(prefix)
        start = len(self.root) + 1
        found = (Entry(i.path[start:], i.size or 0, i.mtime.timestamp() if i.mtime else 0.0) for i in infos)
        return sorted(e for e in found if not _is_bookkeeping(e.key))

    def top_level(self) -> list[str]:
        """Names at the store's root (files and folders), its own bookkeeping (names from '.': temporaries, locks,
        the doctor's probe) left out: one listing."""
        selector = pafs.FileSelector(self.root, recursive=False, allow_not_found=True)
        with self._s3_errors(""):
            infos = self.fs.get_file_info(selector)
        names = [i.path.rstrip("/").rsplit("/", 1)[-1] for i in infos]
        return sorted(n for n in names if not n.startswith("."))

    def read_bytes(self, key: str) -> bytes:
        try:
            with self._s3_errors(key), self.fs.open_input_stream(self.path(key)) as f:
                return bytes(f.read())
        except FileNotFoundError as e:
            self._check_bucket(key)
            raise StorageError(f"{self.uri(key)} does not exist") from e
        except OSError as e:
            raise StorageError(f"{self.uri(key)}: cannot read ({e})") from e

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write atomically: a reader sees the old object or the whole new one, never a part."""
        with self._s3_errors(key), self._atomic(key) as tmp, self.fs.open_output_stream(tmp) as f:
            f.write(data)
        return self.uri(key)

    @contextlib.contextmanager
    def output_stream(self, key: str) -> Iterator[pa.NativeFile]:
        """A stream to write `key` through, atomically: the key appears, whole, when the block ends without an
        error, and not at all otherwise (`write_bytes` for data that is not all in memory at once)."""
        with self._s3_errors(key), self._atomic(key) as tmp, self.fs.open_output_stream(tmp) as f:
            yield f

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
            with self._s3_errors(key):
                return pq.read_table(self.path(key), filesystem=self.fs, columns=columns)
        except FileNotFoundError as e:
            self._check_bucket(key)
            raise StorageError(f"{self.uri(key)} does not exist") from e

    def write_parquet(self, key: str, table: pa.Table, **kwargs: Any) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, **kwargs)
        return self.write_bytes(key, buf.getvalue())

    def delete(self, key: str) -> None:
        if self.exists(key):
            with self._s3_errors(key):
                self.fs.delete_file(self.path(key))

    def delete_many(self, keys: list[str]) -> None:
        """Delete keys that exist (listed just before): on S3 a request per 1,000 keys, not two per key."""
        if self.is_local or not keys:
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    Path(self.path(key)).unlink()
            return
        client = s3_client_for(self._s3_settings())
        for i in range(0, len(keys), 1000):
            bucket, _ = self._bucket_and_name(keys[i])
            objects = [{"Key": self._bucket_and_name(k)[1]} for k in keys[i : i + 1000]]
            with self._s3_errors(keys[i]):
                answer = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if errors := answer.get("Errors"):  # quiet: only the keys it could not delete come back
                first = errors[0]
                raise StorageError(f"s3://{bucket}/{first.get('Key')}: not deleted ({first.get('Code')}: "
                                   f"{first.get('Message')}); {len(errors)} of {len(objects)} keys failed")  # fmt: skip

    # --- compare-and-swap of one key ------------------------------------------------------------------------

    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """`(bytes, version)` of a key, or `(None, None)` when it is absent; pass the version to `write_if`.

        The version is opaque: the sha256 of the bytes on a local store, the ETag on S3.
        """
        if self.is_local:
            try:
                with self.fs.open_input_stream(self.path(key)) as f:
                    data = bytes(f.read())
            except FileNotFoundError:
                return None, None
            return data, hashlib.sha256(data).hexdigest()
        bucket, name = self._bucket_and_name(key)
        with self._s3_errors(key):
            try:
                got = s3_client_for(self._s3_settings()).get_object(Bucket=bucket, Key=name)
            except Exception as e:
                if not s3_errors.is_missing_key(e):
                    raise
                self._check_bucket(key)
                return None, None
            return got["Body"].read(), str(got["ETag"])

    def write_if(self, key: str, data: bytes, expected: str | None) -> bool:
        """Write `data` at `key` only if the key is still at version `expected` (None: only if it is absent).

        Returns False, writing nothing, when another writer got there first: read again and decide again.
        Locally an exclusive flock on a lock file (under `.locks/`, kept: a lock file removed while held would let
        a second writer lock a new file beside it) guards the re-read and the write-then-rename. On S3 the server
        decides, with a conditional PUT (`If-Match: <etag>`, or `If-None-Match: *` for an absent key), which AWS
        S3, SeaweedFS and MinIO honour; on a server that ignores these headers, which would make this an ordinary
        write, it raises a StorageError instead (the server is probed once: `genreclf.store.conditional`).
        """
        if self.is_local:
            import fcntl  # POSIX only: imported here so that the rest of a local store works on Windows too

            lock = Path(self.path(f"{LOCKS_PREFIX}/{key}.lock"))
            lock.parent.mkdir(parents=True, exist_ok=True)
            with lock.open("ab") as held:
                fcntl.flock(held, fcntl.LOCK_EX)  # released when the file is closed
                if self.read_versioned(key)[1] != expected:
                    return False
                self.write_bytes(key, data)
                return True
        self._check_bucket(key)  # SeaweedFS would make a missing bucket, AWS answers NoSuchBucket
        from genreclf.store.conditional import require_conditional_writes  # it imports this module

        require_conditional_writes(self, key)
        bucket, name = self._bucket_and_name(key)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        with self._s3_errors(key):
            try:
                s3_client_for(self._s3_settings()).put_object(Bucket=bucket, Key=name, Body=data, **condition)
            except Exception as e:
                if not s3_errors.is_lost_race(e):
                    raise
                return False
        return True

    # --- temporaries ------------------------------------------------------------------------------------------

    def sweep_temp(self, max_age_s: float = 3600.0, *, legacy: bool = False) -> int:
        """Delete the temporaries that writes killed more than `max_age_s` ago left behind; return how many.

        A live write's temporary is younger (locally its mtime moves with every write; on S3 it exists only
        between the upload and the move). On S3 this also aborts the unfinished multipart uploads of killed
        writers. `legacy=True` also removes `<key>.tmp-<hex>` files that writers before 2026-11 left beside final
        keys; finding them lists the whole store, so it is not the default.
        """
        cutoff_ns = time.time_ns() - int(max_age_s * 1e9)
        selectors = [pafs.FileSelector(self.path(TEMP_PREFIX), recursive=True, allow_not_found=True)]
        if legacy:
            selectors.append(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        swept = 0
        for selector in selectors:
            with self._s3_errors(TEMP_PREFIX):
                infos = self.fs.get_file_info(selector)
            for info in infos:
                temporary = selector.base_dir == self.path(TEMP_PREFIX) or _LEGACY_TEMP.search(info.path)
                if not temporary or info.type != pafs.FileType.File:
                    continue
                if info.mtime_ns is None or info.mtime_ns >= cutoff_ns:  # no age known: keep it
                    continue
                try:
                    with self._s3_errors(TEMP_PREFIX):
                        self.fs.delete_file(info.path)
                    swept += 1
                except FileNotFoundError:
                    pass  # its writer moved it into place, or another sweep removed it
        if not self.is_local:
            swept += self._abort_uploads(cutoff_ns, legacy=legacy)
        if swept:
            log.info("removed %d stale temporaries from %s", swept, self.url)
        return swept

    def _abort_uploads(self, cutoff_ns: int, *, legacy: bool) -> int:
        bucket, base = self._bucket_and_name("")
        prefix = base if legacy else f"{base}{TEMP_PREFIX}/"
        client = s3_client_for(self._s3_settings())
        aborted = 0
        with self._s3_errors(TEMP_PREFIX):
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    key = upload["Key"]
                    stale = upload["Initiated"].timestamp() * 1e9 < cutoff_ns
                    if stale and (key.startswith(f"{base}{TEMP_PREFIX}/") or _LEGACY_TEMP.search(key)):
                        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                        aborted += 1
        return aborted

    def _atomic(self, key: str) -> _AtomicWrite:
        return _AtomicWrite(self, key)

    # --- S3 errors that say what to check ---------------------------------------------------------------------

    def _s3_settings(self) -> Settings:
        return self.settings or settings_from_env()

    def _bucket_and_name(self, key: str) -> tuple[str, str]:
        """S3 bucket and object name of a key (the name of `""` is the store's prefix, with its slash)."""
        bucket, _, name = self.path(key).partition("/")
        return bucket, name

    @contextlib.contextmanager
    def _s3_errors(self, key: str) -> Iterator[None]:
        """Turn the S3 failures a user can fix into a StorageError that names what to check; others pass."""
        try:
            yield
        except (StorageError, FileNotFoundError):
            raise
        except Exception as e:
            if self.is_local:
                raise
            hinted = s3_errors.hinted_error(
                e, uri=self.uri(key), bucket=self._bucket_and_name(key)[0], settings=self._s3_settings()
            )
            if hinted is None:
                raise
            raise hinted from e

    def _check_bucket(self, key: str) -> None:
        """On S3 a missing bucket looks like a missing key: tell them apart (once per bucket and Store)."""
        bucket = self._bucket_and_name(key)[0]
        if self.is_local or bucket in self._buckets_seen:
            return
        with self._s3_errors(key):
            found = self.fs.get_file_info(bucket).type != pafs.FileType.NotFound
        if not found:
            raise s3_errors.no_bucket_error(self.uri(key), bucket, self._s3_settings())
        self._buckets_seen.add(bucket)


class _AtomicWrite:
    """Write to a temporary key and move it into place on success; remove it on failure.

    Temporaries live under `.tmp/` at the store's root, never under a final name, so a writer killed half way
    leaves nothing that looks like data; `Store.sweep_temp` removes them once old. Locally the move is a rename.
    On S3 it is a server-side copy: a writer that fails half way must not leave its part behind, and pyarrow's S3
    stream completes the upload even when closed by an exception.
    """

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.final = store.path(key)
        self.tmp = store.path(f"{TEMP_PREFIX}/{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}")

    def __enter__(self) -> str:
        self.store.fs.create_dir(self.final.rsplit("/", 1)[0], recursive=True)
        if self.store.is_local:  # S3 has no folders to make
            self.store.fs.create_dir(self.tmp.rsplit("/", 1)[0], recursive=True)
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.store.fs.move(self.tmp, self.final)
            return
        try:
            self.store.fs.delete_file(self.tmp)
        except OSError:
            log.debug("could not remove %s", self.tmp)
