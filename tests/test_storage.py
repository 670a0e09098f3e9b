"""The store on a local folder and on a real S3 server (SeaweedFS on loopback): round trips, keys, atomicity,
compare-and-swap, the sweep of killed writers' temporaries, and S3 errors that say what to check."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from pydantic import SecretStr

from genreclf.errors import ConfigError, StorageError
from genreclf.settings import Settings
from genreclf.store.filesystems import filesystem_for
from genreclf.store.storage import TEMP_PREFIX, Store
from tests.s3server import S3Server

# The session-scoped SeaweedFS fixture, by name (move it to conftest.py once other modules need S3).


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


def test_write_if_is_a_compare_and_swap(store: Store) -> None:
    assert store.read_versioned("reg/champ.json") == (None, None)

    assert store.write_if("reg/champ.json", b"first", None)  # only if absent
    assert not store.write_if("reg/champ.json", b"again", None)
    data, version = store.read_versioned("reg/champ.json")
    assert data == b"first" and version is not None
    assert not store.write_if("reg/champ.json", b"guess", version + "x")
    assert store.write_if("reg/champ.json", b"second", version)
    assert not store.write_if("reg/champ.json", b"stale", version)  # the version it expected is gone

    assert store.read_bytes("reg/champ.json") == b"second"
    assert store.read_versioned("reg/champ.json")[1] not in (None, version)
    assert store.keys("") == ["reg/champ.json"]  # no lock file, no temporary


def test_keys_never_lists_temporaries(store: Store) -> None:
    store.write_bytes("a/b.bin", b"x")
    store.fs.open_output_stream(store.path(f"{TEMP_PREFIX}/{uuid.uuid4().hex}-b.bin")).close()
    store.fs.open_output_stream(store.path(f"a/b.bin.tmp-{uuid.uuid4().hex}")).close()  # before 2026-11

    assert store.keys("") == ["a/b.bin"]
    assert store.keys("a") == ["a/b.bin"]


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
    assert files == ["a/b.bin", "a/c.json", "a/d.parquet", "store.json"]  # and the store's format record


KILLED_WRITER = """
import sys, time
from genreclf.store.storage import Store
store = Store.open(sys.argv[1])
with store._atomic("audio/big.flac") as tmp, store.fs.open_output_stream(tmp) as f:
    for i in range(1000):
        f.write(b"x" * (1 << 20))
        f.flush()
        if i == int(sys.argv[2]):
            print(tmp, flush=True)
        time.sleep(0.01)
"""


def start_killed_writer(url: str, env: dict[str, str], *, after_mib: int) -> str:
    """Run a writer of a big file in a process of its own and SIGKILL it after `after_mib` MiB; return its temp."""
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, url, str(after_mib)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert writer.stdout is not None
        tmp = writer.stdout.readline().strip()
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert tmp, "the writer died before writing"
    return tmp


def test_sweep_removes_the_temporary_of_a_killed_writer(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    store.write_bytes("audio/other.flac", b"x")
    killed = Path(start_killed_writer(store.url, {}, after_mib=2))
    assert killed.is_file() and killed.stat().st_size >= 2 << 20
    assert killed.parent == tmp_path / "s" / TEMP_PREFIX  # never under a final name
    assert store.keys("") == ["audio/other.flac"]
    assert not store.exists("audio/big.flac")

    assert store.sweep_temp() == 0  # it is young: it could be a live writer's
    assert killed.is_file()

    hours_ago = time.time() - 2 * 3600
    os.utime(killed, (hours_ago, hours_ago))
    fresh = tmp_path / "s" / TEMP_PREFIX / f"{uuid.uuid4().hex}-live.bin"
    fresh.write_bytes(b"a live writer's")

    assert store.sweep_temp() == 1
    assert not killed.exists()
    assert fresh.is_file()
    assert store.read_bytes("audio/other.flac") == b"x"


def test_sweep_of_legacy_temporaries_beside_final_keys_is_asked_for(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s"))
    store.write_bytes("audio/a.flac", b"a")
    old = tmp_path / "s" / "audio" / f"a.flac.tmp-{uuid.uuid4().hex}"
    young = tmp_path / "s" / "audio" / f"b.flac.tmp-{uuid.uuid4().hex}"
    for path in (old, young):
        path.write_bytes(b"part")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))

    assert store.sweep_temp() == 0  # the default looks under .tmp/ only
    assert store.sweep_temp(legacy=True) == 1

    assert not old.exists() and young.exists()
    assert store.keys("audio") == ["audio/a.flac"]


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


def every_operation(store: Store) -> dict[str, Any]:
    return {
        "exists": lambda: store.exists("k"),
        "keys": lambda: store.keys(""),
        "read_bytes": lambda: store.read_bytes("k"),
        "write_text": lambda: store.write_text("k", "v"),
        "read_parquet": lambda: store.read_parquet("t.parquet"),
        "write_parquet": lambda: store.write_parquet("t.parquet", table()),
        "delete": lambda: store.delete("k"),
        "read_versioned": lambda: store.read_versioned("k"),
        "write_if": lambda: store.write_if("k", b"v", None),
        "sweep_temp": lambda: store.sweep_temp(),
    }


@pytest.mark.e2e
def test_s3_wrong_secret_key_says_which_settings_to_check(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)
    Store.open(f"s3://{s3_server.bucket}/creds").write_text("k", "v")
    s3_env(monkeypatch, s3_server, secret_key="wrong")

    with pytest.raises(StorageError) as e:
        Store.open(f"s3://{s3_server.bucket}/creds").write_text("k", "v2")

    message = str(e.value)
    assert message.startswith(f"s3://{s3_server.bucket}/creds/k: S3 refused the request")
    for setting in (
        "GENRECLF_S3_ACCESS_KEY",
        "GENRECLF_S3_SECRET_KEY",
        f"GENRECLF_S3_ENDPOINT_URL={s3_server.endpoint_url}",
        "GENRECLF_S3_REGION=us-east-1",
    ):
        assert setting in message
    assert "\n" not in message
    for name, operation in every_operation(Store.open(f"s3://{s3_server.bucket}/creds")).items():
        with pytest.raises(StorageError, match="check GENRECLF_S3_ACCESS_KEY and GENRECLF_S3_SECRET_KEY"):
            operation()
            pytest.fail(f"{name} did not fail")


@pytest.mark.e2e
def test_s3_missing_bucket_says_how_to_create_it(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)
    bucket = f"missing-{uuid.uuid4().hex[:12]}"

    with pytest.raises(StorageError) as e:
        Store.open(f"s3://{bucket}/genreclf")  # it reads the store's format record at once

    assert str(e.value) == (
        f"s3://{bucket}/genreclf/store.json: bucket {bucket} does not exist at {s3_server.endpoint_url}; "
        f"create it with python infra/create_bucket.py s3://{bucket}"
    )
    # A bucket deleted after the store was opened: every operation says so.
    opened = Store.open(f"s3://{s3_server.bucket}/missing-later")
    gone = dataclasses.replace(opened, root=f"{bucket}/genreclf", url=f"s3://{bucket}/genreclf")
    for name, operation in every_operation(gone).items():
        with pytest.raises(StorageError, match=f"bucket {bucket} does not exist"):
            operation()
            pytest.fail(f"{name} did not fail")

    # The command it names works as written.
    command = str(e.value).split("create it with ")[1].split()
    root = Path(__file__).resolve().parents[1]
    made = subprocess.run([sys.executable, *command[1:]], cwd=root, env=os.environ, capture_output=True, text=True)
    assert made.returncode == 0 and f"created bucket {bucket}" in made.stdout, made.stderr
    Store.open(f"s3://{bucket}/genreclf").write_text("k", "v")


@pytest.mark.e2e
def test_s3_endpoint_that_does_not_answer_names_the_setting(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_env(monkeypatch, s3_server)
    monkeypatch.setenv("GENRECLF_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens

    with pytest.raises(StorageError, match=r"cannot reach S3 at http://127.0.0.1:9 .*check GENRECLF_S3_ENDPOINT_URL"):
        Store.open(f"s3://{s3_server.bucket}/x").exists("k")


@pytest.mark.e2e
def test_s3_sweep_aborts_the_upload_of_a_killed_writer(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, s3_server)
    store = Store.open(f"s3://{s3_server.bucket}/sweep-{uuid.uuid4().hex[:12]}")
    env = {k: v for k, v in os.environ.items() if k.startswith("GENRECLF_S3_")}
    prefix = f"{store.root.partition('/')[2]}/{TEMP_PREFIX}/"
    client = s3_server.client()

    def uploads() -> list[str]:
        return [
            u["Key"] for u in client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", [])
        ]

    killed = start_killed_writer(store.url, env, after_mib=12)  # past pyarrow's first part: a multipart upload
    store.fs.open_output_stream(store.path(f"{TEMP_PREFIX}/{uuid.uuid4().hex}-moved.bin")).close()
    assert uploads() == [killed.partition("/")[2]]
    assert store.keys("") == []

    assert store.sweep_temp() == 0  # young: could be live writers
    assert len(uploads()) == 1

    assert store.sweep_temp(max_age_s=0) == 2  # the killed upload and the temp object
    assert uploads() == []
    assert store.fs.get_file_info(pafs.FileSelector(store.path(TEMP_PREFIX), allow_not_found=True)) == []
