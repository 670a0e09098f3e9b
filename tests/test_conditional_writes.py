"""The probe of an S3 server's conditional writes: SeaweedFS honours them, a stand-in that ignores them is found out
and refused before a promotion could overwrite another, the answer is remembered per store and endpoint, and a
local store is never probed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from genreclf.errors import StorageError
from genreclf.reports import registry
from genreclf.settings import Settings
from genreclf.store import conditional
from genreclf.store.conditional import FACT, conditional_writes_honoured
from genreclf.store.format import read_format, remember
from genreclf.store.keys import CHAMPION_KEY, champion_line_key
from genreclf.store.storage import Store
from tests.s3_ignoring import IgnoringS3
from tests.s3server import S3Server

REFUSAL = "ignores If-None-Match and If-Match"


@pytest.fixture(autouse=True)
def probes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """What each probe in the test found wrong; the process starts with no answers, as a new one would."""
    monkeypatch.setattr(conditional, "_ANSWERS", {})
    found: list[list[str]] = []
    probe = conditional._probe

    def counted(store: Store) -> list[str]:
        found.append(probe(store))
        return found[-1]

    monkeypatch.setattr(conditional, "_probe", counted)
    return found


@pytest.fixture
def ignoring() -> Iterator[IgnoringS3]:
    with IgnoringS3() as s3:
        yield s3


def open_s3(endpoint_url: str, bucket: str, *, access_key: str = "k", secret_key: str = "s") -> Store:
    settings = Settings(s3_endpoint_url=endpoint_url, s3_access_key=access_key, s3_secret_key=SecretStr(secret_key))
    return Store.open(f"s3://{bucket}/cw-{uuid.uuid4().hex[:12]}", settings=settings)


def open_seaweedfs(server: S3Server, url: str | None = None) -> Store:
    settings = Settings(s3_endpoint_url=server.endpoint_url, s3_access_key=server.access_key,
                        s3_secret_key=SecretStr(server.secret_key))  # fmt: skip
    return Store.open(url or f"s3://{server.bucket}/cw-{uuid.uuid4().hex[:12]}", settings=settings)


def candidate(store: Store, run_id: str) -> dict[str, Any]:
    return registry.champion_entry(store, run_id=run_id, model_key=f"runs/{run_id}/model.pt", dataset_id="d1",
                                   line="l1", labels=["a", "b"], score=0.9)  # fmt: skip


@pytest.mark.e2e
def test_seaweedfs_honours_conditional_writes_probed_once_per_store(
    s3_server: S3Server, probes: list[list[str]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="genreclf.store.conditional")
    store = open_seaweedfs(s3_server)

    assert conditional_writes_honoured(store)

    assert probes == [[]]  # the race let exactly one create through, and both wrong conditions were refused
    assert f"the S3 server at {s3_server.endpoint_url} honours conditional writes (probed in" in caplog.text
    remembered = (read_format(store) or {})[FACT]
    assert remembered == {"endpoint": s3_server.endpoint_url, "honoured": True, "probed_at": remembered["probed_at"]}
    prefix = store.path(".locks/").partition("/")[2]
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    assert listed.get("Contents", []) == []  # the scratch key is gone

    assert conditional_writes_honoured(store)  # this process remembers
    monkeypatch.setattr(conditional, "_ANSWERS", {})  # as a new process: store.json remembers
    again = open_seaweedfs(s3_server, store.url)
    assert conditional_writes_honoured(again)
    assert len(probes) == 1

    # Promotion's compare-and-swap still works, and still refuses a lost race.
    assert again.write_if("registry/x.json", b"1", None)
    assert not again.write_if("registry/x.json", b"2", None)
    _, version = again.read_versioned("registry/x.json")
    assert again.write_if("registry/x.json", b"3", version)
    assert not again.write_if("registry/x.json", b"4", version)
    assert again.read_bytes("registry/x.json") == b"3"
    assert registry.promote_if_better(again, candidate(again, "run1"), lambda champion: None).promote
    assert registry.read_champion(again, "l1")["run_id"] == "run1"


def test_a_server_that_ignores_conditional_writes_is_found_out(
    ignoring: IgnoringS3, probes: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="genreclf.store.conditional")
    store = open_s3(ignoring.endpoint_url, ignoring.bucket)

    assert not conditional_writes_honoured(store)

    assert probes == [
        [
            "2 of 2 racing If-None-Match creates went through",
            "If-None-Match: * over an existing key went through",
            "If-Match on a wrong ETag went through",
        ]
    ]
    assert f"the S3 server at {ignoring.endpoint_url} ignores conditional writes (probed in" in caplog.text
    assert (read_format(store) or {})[FACT]["honoured"] is False
    assert not [key for key in ignoring.objects if "/.locks/" in key]  # the scratch key is gone

    with pytest.raises(StorageError) as refused:
        store.write_if("registry/x.json", b"1", None)

    message = str(refused.value)
    assert message.startswith(f"{store.uri('registry/x.json')}: not written: the S3 server at {ignoring.endpoint_url} "
                              f"{REFUSAL} (probed ")  # fmt: skip
    assert "two promotions at once could overwrite each other" in message
    assert "use a server that honours them (AWS S3, SeaweedFS, MinIO)" in message
    assert f"remove 'conditional_writes' from {store.uri('store.json')} to probe again" in message
    assert not store.exists("registry/x.json")
    assert len(probes) == 1


def test_a_promotion_on_a_server_that_ignores_conditional_writes_is_refused(ignoring: IgnoringS3) -> None:
    store = open_s3(ignoring.endpoint_url, ignoring.bucket)

    with pytest.raises(StorageError, match=REFUSAL):
        registry.promote_if_better(store, candidate(store, "run1"), lambda champion: None)

    assert not store.exists(champion_line_key("l1"))
    assert not store.exists(CHAMPION_KEY)
    assert registry.read_champion(store) is None


def test_an_answer_remembered_for_another_endpoint_is_probed_again(
    ignoring: IgnoringS3, probes: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_s3(ignoring.endpoint_url, ignoring.bucket)
    # Probed when the store was served by another server, which honoured them.
    elsewhere = {"endpoint": "http://127.0.0.1:9", "honoured": True, "probed_at": "2026-01-01T00:00:00+00:00"}
    remember(store, FACT, elsewhere)

    assert not conditional_writes_honoured(store)

    assert len(probes) == 1
    assert (read_format(store) or {})[FACT]["endpoint"] == ignoring.endpoint_url
    monkeypatch.setattr(conditional, "_ANSWERS", {})
    assert not conditional_writes_honoured(store)  # remembered for this endpoint now: not probed again
    assert len(probes) == 1


def test_a_local_store_is_never_probed(tmp_path: Path, probes: list[list[str]]) -> None:
    store = Store.open(str(tmp_path / "store"))

    assert conditional_writes_honoured(store)
    assert store.write_if("registry/x.json", b"1", None)
    assert not store.write_if("registry/x.json", b"2", None)

    assert probes == []
    assert FACT not in (read_format(store) or {})
    assert not list((tmp_path / "store" / ".locks").glob("probe-*"))
