"""The store on a local folder and on a real S3 server (SeaweedFS on loopback): round trips, keys, atomicity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from pydantic import SecretStr

from genreclf.errors import ConfigError, StorageError
from genreclf.settings import Settings
from genreclf.storage import Store, filesystem_for
from tests import s3server
from tests.s3server import S3Server

# The session-scoped SeaweedFS fixture, by name (move it to conftest.py once other modules need S3).
s3_server = s3server.s3_server


def s3_env(monkeypatch: pytest.MonkeyPatch, server: S3Server, *, secret_key: str | None = None) -> None:
    monkeypatch.setenv("GENRECLF_S3_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("GENRECLF_S3_ACCESS_KEY", server.access_key)
    monkeypatch.setenv("GENRECLF_S3_SECRET_KEY", secret_key or server.secret_key)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh, empty store: a temp folder, or a prefix of its own in the session's S3 bucket."""
    if request.param == "local":
        yield Store.open(str(tmp_path / "store"))
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3_env(monkeypatch, server)
    yield Store.open(f"s3://{server.bucket}/t-{uuid.uuid4().hex[:12]}")


def table() -> pa.Table:
    return pa.table({"track_id": ["a", "b", "c"], "genre": ["jazz", "rock", None], "n": [1, 2, 3]})


# --- round trips on both backends ---------------------------------------------------------------------------


def test_bytes_round_trip(store: Store) -> None:
    data = bytes(range(256)) * 10

    uri = store.write_bytes("audio/x.flac", data)

    assert uri == store.uri("audio/x.flac")
    assert store.read_bytes("audio/x.flac") == data


def test_overwrite_replaces_the_value(store: Store) -> None:
    store.write_bytes("k", b"old value, longer than the new one")

    store.write_bytes("k", b"new")

    assert store.read_bytes("k") == b"new"


def test_json_round_trip(store: Store) -> None:
    obj = {"b": [1, 2.5, None], "a": {"nested": "é"}, "t": True}

    store.write_json("segments/t1.json", obj)

    assert store.read_json("segments/t1.json") == obj


def test_text_round_trip(store: Store) -> None:
    store.write_text("catalogs/LATEST", "abc123\n")

    assert store.read_text("catalogs/LATEST") == "abc123\n"


def test_parquet_round_trip(store: Store) -> None:
    store.write_parquet("catalogs/v1/catalog.parquet", table())

    assert store.read_parquet("catalogs/v1/catalog.parquet").equals(table())
    assert store.read_parquet("catalogs/v1/catalog.parquet", columns=["genre"]).column_names == ["genre"]


def test_keys_lists_files_under_a_prefix_recursively_and_sorted(store: Store) -> None:
    for key in ["d/b/2.bin", "d/a.bin", "d/b/1.bin", "e/x.bin", "dx.bin"]:
        store.write_bytes(key, b"x")

    assert store.keys("d") == ["d/a.bin", "d/b/1.bin", "d/b/2.bin"]
    assert store.keys("d/b") == ["d/b/1.bin", "d/b/2.bin"]
    assert store.keys("nothing-here") == []


def test_exists_and_delete(store: Store) -> None:
    store.write_bytes("a/b.bin", b"x")
    assert store.exists("a/b.bin")
    assert not store.exists("a/c.bin")

    store.delete("a/b.bin")
    store.delete("a/b.bin")  # deleting what is gone is fine (reruns)

    assert not store.exists("a/b.bin")
    assert store.keys("a") == []


def test_reading_a_missing_key_names_its_uri(store: Store) -> None:
    with pytest.raises(StorageError, match="does not exist") as e:
        store.read_bytes("no/such.bin")
    assert store.uri("no/such.bin") in str(e.value)

    with pytest.raises(StorageError, match="does not exist"):
        store.read_parquet("no/such.parquet")


def test_key_of_inverts_uri(store: Store) -> None:
    for key in ["a", "catalogs/v1/catalog.parquet", "datasets/x/shards/part-00000.parquet"]:
        assert store.key_of(store.uri(key)) == key
    assert store.uri("/a/b") == store.uri("a/b")


def test_key_of_a_uri_outside_the_store_fails(store: Store) -> None:
    with pytest.raises(StorageError, match="not inside the store"):
        store.key_of("s3://elsewhere/a/b")
    with pytest.raises(StorageError, match="not inside the store"):
        store.key_of(store.url + "-sibling/a")


def test_a_failing_write_leaves_the_old_value(store: Store) -> None:
    store.write_bytes("k", b"old")

    with pytest.raises(RuntimeError, match="crash"), store._atomic("k") as tmp, store.fs.open_output_stream(tmp) as f:
        f.write(b"partial")
        raise RuntimeError("crash mid-write")

    assert store.read_bytes("k") == b"old"
    assert store.keys("") == ["k"]


def test_a_failing_parquet_write_leaves_the_old_value(store: Store) -> None:
    store.write_parquet("t.parquet", table())

    # The Parquet file is built in memory first, so a writer error never reaches the store.
    with pytest.raises(pa.ArrowException, match="no-such-codec"):
        store.write_parquet("t.parquet", table().append_column("m", pa.array([1, 2, 3])), compression="no-such-codec")

    assert store.read_parquet("t.parquet").equals(table())


# --- local only -----------------------------------------------------------------------------------------------


def test_open_local_creates_the_root_and_gives_a_file_uri(tmp_path: Path) -> None:
    root = tmp_path / "a" / "store"

    store = Store.open(str(root))

    assert root.is_dir()
    assert store.is_local
    assert store.url == root.as_uri()
    assert store.uri("k/v.json") == (root / "k" / "v.json").as_uri()


def test_file_uri_and_path_open_the_same_store(tmp_path: Path) -> None:
    by_path = Store.open(str(tmp_path / "s"))
    by_uri = Store.open((tmp_path / "s").as_uri())

    by_path.write_text("k", "v")

    assert by_uri.root == by_path.root
    assert by_uri.read_text("k") == "v"


def test_open_without_url_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRECLF_STORAGE_URL", str(tmp_path / "from-env"))

    store = Store.open()

    assert store.root == str(tmp_path / "from-env")


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))

    store.write_bytes("a/b.bin", b"x")
    store.write_json("a/c.json", {"x": 1})
    store.write_parquet("a/d.parquet", table())
    with pytest.raises(RuntimeError), store._atomic("a/e.bin") as tmp, store.fs.open_output_stream(tmp) as f:
        f.write(b"partial")
        raise RuntimeError("crash")

    files = sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert files == ["a/b.bin", "a/c.json", "a/d.parquet"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "needs a bucket"),
        ("s3:///prefix", "needs a bucket"),
        ("ftp://host/path", "unsupported storage URL"),
        ("http://host/path", "unsupported storage URL"),
        ("gs://bucket/prefix", "unsupported storage URL"),
    ],
)
def test_bad_urls_raise_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        Store.open(url, settings=Settings())
    assert url in str(e.value)


# --- S3 only --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_s3_store_takes_endpoint_and_keys_from_settings(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)

    store = Store.open(f"s3://{s3_server.bucket}/p/q/")

    assert not store.is_local
    assert store.root == f"{s3_server.bucket}/p/q"
    assert store.url == f"s3://{s3_server.bucket}/p/q"
    store.write_text("k.txt", "v")
    # Another S3 client sees the object at the key the layout promises.
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key="p/q/k.txt")["Body"].read()
    assert body == b"v"


@pytest.mark.e2e
def test_s3_store_at_the_bucket_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)
    store = Store.open(f"s3://{s3_server.bucket}")
    key = f"root-{uuid.uuid4().hex[:8]}/x.bin"

    store.write_bytes(key, b"x")

    assert store.url == f"s3://{s3_server.bucket}"
    assert store.read_bytes(key) == b"x"
    assert store.key_of(store.uri(key)) == key


def test_s3_filesystem_settings() -> None:
    settings = Settings(s3_endpoint_url="http://127.0.0.1:9", s3_access_key="k", s3_secret_key=SecretStr("s"))

    fs, path = filesystem_for("s3://bucket/a/b/", settings)

    assert isinstance(fs, pafs.S3FileSystem)
    assert path == "bucket/a/b"
    assert fs.region == "us-east-1"


@pytest.mark.e2e
def test_s3_bad_credentials_fail_as_storage_error(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)
    Store.open(f"s3://{s3_server.bucket}/creds").write_bytes("k", b"v")
    s3_env(monkeypatch, s3_server, secret_key="wrong")
    store = Store.open(f"s3://{s3_server.bucket}/creds")

    with pytest.raises(StorageError, match="cannot read"):
        store.read_bytes("k")
