"""`genreclf verify` and `genreclf gc` on a store with history: four catalog generations, one file changed in each,
a champion; the store's format record."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreclf.app.cli import main
from genreclf.app.demo import make_demo_catalog
from genreclf.datasets.build import build_dataset
from genreclf.datasets.manifest import read_manifest
from genreclf.errors import StorageError
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.ingest import catalog
from genreclf.models.runs import run_id_for
from genreclf.models.training import fit
from genreclf.reports import registry
from genreclf.reports.evaluation import evaluate_run
from genreclf.reports.predict import Predictor
from genreclf.sources.local import scan_folder
from genreclf.store import format as store_format
from genreclf.store import storage
from genreclf.store.storage import Store
from genreclf.upkeep.gc import collect
from genreclf.upkeep.inventory import DAY_S, Retention
from genreclf.upkeep.verify import verify
from tests.s3server import S3Server

GENERATIONS = 4
PARAMS = DatasetParams.small()


def new_version(store: Store, root: Path) -> str:
    version = catalog.write_catalog(store, scan_folder(str(root), hash_cache=False).tracks)
    build_dataset(store, version, PARAMS.segment_config(), PARAMS.feature_config())
    return version


def change_one_file(root: Path, generation: int) -> Path:
    """Another recording under the same name: noise of its own seed, so new bytes, audio and shards."""
    path = next(iter(sorted((root / "noise").glob("*.wav"))))
    y = np.random.default_rng(100 + generation).normal(0, 0.2, 4 * 22_050).astype(np.float32)
    sf.write(path, y, 22_050)
    return path


def age(store_root: Path, seconds: float) -> None:
    """Make everything in a local store `seconds` older, as if written that much earlier (in the same order)."""
    for p in store_root.rglob("*"):
        if p.is_file():
            then = p.stat().st_mtime - seconds
            os.utime(p, (then, then))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(store, catalog folder, catalog versions oldest first): GENERATIONS builds, then a champion trained on the
    last; built once, each test works on a copy."""
    base = tmp_path_factory.mktemp("history")
    root = make_demo_catalog(base / "catalog", tracks_per_genre=3, seconds=4.0)
    store = Store.open(str(base / "store"))
    versions = [new_version(store, root)]
    for g in range(1, GENERATIONS):
        change_one_file(root, g)
        versions.append(new_version(store, root))
    manifest = read_manifest(store)
    cfg = TrainParams.small().model_copy(update={"model": "small_cnn", "epochs": 1}).config()
    run_id = fit(store, manifest, cfg, run_id=run_id_for(manifest.dataset_id, cfg)).run_id
    assert registry.challenge(store, evaluate_run(store, run_id, manifest, baselines=False), manifest).promote
    return base / "store", root, versions


@pytest.fixture
def copy(history: tuple[Path, Path, list[str]], tmp_path: Path) -> Store:
    shutil.copytree(history[0], tmp_path / "store")
    age(tmp_path / "store", 2 * DAY_S)
    return Store.open(str(tmp_path / "store"))


def test_a_healthy_store_verifies_clean_and_lists_the_superseded_generations_as_orphans_of_nothing(
    copy: Store,
) -> None:
    result = verify(copy, deep=True)

    assert result.problems == []
    assert result.checked["datasets"] == GENERATIONS and result.checked["champions"] == 1
    assert result.orphans == []  # every generation's catalog still names its audio, every dataset its shards


def test_gc_frees_the_superseded_generations_and_leaves_a_store_that_verifies_predicts_and_rebuilds_nothing(
    copy: Store, history: tuple[Path, Path, list[str]]
) -> None:
    _, root, versions = history
    before = {k: copy.read_bytes(k) for k in copy.keys("") if not k.startswith(("audio/", "shards/"))}
    latest = read_manifest(copy)
    superseded = [read_manifest(copy, d) for d in {m.split("/")[1] for m in copy.keys("datasets/")} - {"lineages",
                  "LATEST", latest.dataset_id}]  # fmt: skip
    old_shards = {s["key"] for m in superseded for s in m.shards} - {s["key"] for s in latest.shards}

    dry = collect(copy, Retention(catalogs=1))
    assert not dry.applied and set(dry.keys) >= old_shards and len(old_shards) >= GENERATIONS - 1
    assert {k for k in dry.keys if k.startswith("datasets/")} == {
        k for m in superseded for k in copy.keys(f"datasets/{m.dataset_id}/")
    }
    # Each superseded generation's changed file: its audio and sidecar (4 s of noise, decoded once each).
    assert sum(k.startswith("audio/sha256/") for k in dry.keys) == 2 * (GENERATIONS - 1)
    assert all(copy.exists(k) for k in dry.keys)  # a dry run deletes nothing

    done = collect(copy, Retention(catalogs=1), apply=True)
    assert done.keys == dry.keys and done.bytes == dry.bytes and not any(copy.exists(k) for k in done.keys)
    assert collect(copy, Retention(catalogs=1)).keys == []
    result = verify(copy, deep=True)
    assert result.problems == [] and result.orphans == []
    assert all(copy.read_bytes(k) == v for k, v in before.items() if not k.startswith(("datasets/", "runs/")))
    assert Predictor(copy, device="cpu").predict_file(next(iter(sorted(root.rglob("*.wav"))))).top(1)
    rebuilt = build_dataset(copy, versions[-1], PARAMS.segment_config(), PARAMS.feature_config())
    assert not rebuilt.new and rebuilt.manifest.dataset_id == latest.dataset_id


def test_gc_keeps_what_is_younger_than_its_grace_and_the_newest_catalogs_by_default(
    history: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    shutil.copytree(history[0], tmp_path / "store")
    store = Store.open(str(tmp_path / "store"))
    assert collect(store, Retention(catalogs=1)).keys == []  # all of it written in the last day
    age(tmp_path / "store", 2 * DAY_S)
    by_default = collect(store)  # the newest 3 catalogs: only the first generation goes
    assert {k.split("/")[0] for k in by_default.keys} == {"audio", "datasets", "shards"}
    assert by_default.objects["audio/"] == 2


def test_gc_beside_a_running_build_leaves_what_the_build_needs(
    copy: Store, history: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(history[1], root)
    change_one_file(root, 99)
    built: list[object] = []
    build = threading.Thread(target=lambda: built.append(new_version(copy, root)))
    build.start()
    collected = []
    while build.is_alive():  # gc, again and again, for as long as the build runs
        collected.append(collect(copy, Retention(catalogs=1), apply=True))
    build.join()

    assert built and collected  # the first collection started while the build ran (is_alive was checked)
    manifest = read_manifest(copy)
    assert manifest.catalog_version == built[0]
    assert verify(copy).problems == []
    cfg = TrainParams.small().model_copy(update={"model": "small_cnn", "epochs": 1}).config()
    assert fit(copy, manifest, cfg, run_id="after-gc").new_epochs == 1


def test_verify_names_a_flipped_byte_a_deleted_audio_and_a_truncated_model_and_fixes_none(
    copy: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = read_manifest(copy).shards[0]["key"]
    audio = next(k for k in copy.keys("audio/sha256/") if k.endswith(".flac"))
    weights = f"{registry.read_champion(copy)['model_key']}"
    data = bytearray(copy.read_bytes(shard))
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(shard, bytes(data))
    copy.delete(audio)
    truncated = copy.read_bytes(weights)[:-100]
    copy.write_bytes(weights, truncated)

    assert main(["verify", "--store", copy.url]) == 1
    out = capsys.readouterr().out
    assert f"missing  {audio}:" in out and f"corrupt  {weights}: does not match the sha256" in out
    assert shard not in out  # same size: only the bytes tell
    assert main(["verify", "--store", copy.url, "--deep", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    found = {(f["kind"], f["key"]) for f in report["findings"]}
    assert {("corrupt", shard), ("missing", audio), ("corrupt", weights)} <= found
    assert not report["ok"] and all(f["fix"] for f in report["findings"])
    # Nothing was repaired.
    assert not copy.exists(audio) and copy.read_bytes(weights) == truncated and copy.read_bytes(shard) == data


def test_cli_gc_is_a_dry_run_unless_applied(copy: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc", "--store", copy.url, "--keep-catalogs", "1"]) == 0
    out = capsys.readouterr().out
    assert "would delete" in out and "a dry run: nothing was deleted" in out and "shards/" in out
    listed = collect(copy, Retention(catalogs=1)).keys
    assert all(copy.exists(k) for k in listed)
    assert main(["gc", "--store", copy.url, "--keep-catalogs", "1", "--apply", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"] == listed
    assert main(["gc", "--store", copy.url, "--grace", "soon"]) == 2
    assert "--grace 'soon': give a number and a unit" in capsys.readouterr().err


# --- the store's format record ------------------------------------------------------------------------------


def test_a_new_store_records_its_format_and_an_older_one_is_recorded_without_moving_anything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Store.open(str(tmp_path / "new"))
    assert json.loads((tmp_path / "new" / "store.json").read_text())["format"] == store_format.STORE_FORMAT

    (tmp_path / "old" / "catalogs").mkdir(parents=True)
    (tmp_path / "old" / "catalogs" / "LATEST").write_text("v1")
    old = Store.open(str(tmp_path / "old"))
    info = json.loads((tmp_path / "old" / "store.json").read_text())
    assert (info["format"], info["upgraded_from"]) == (store_format.STORE_FORMAT, 0)
    assert "format 0" in caplog.text and old.read_text("catalogs/LATEST") == "v1"


def test_a_store_of_a_newer_format_or_a_broken_record_is_refused(tmp_path: Path) -> None:
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "store.json").write_text(json.dumps({"format": 99, "written_by": "genreclf 9.0"}))
    with pytest.raises(StorageError, match=r"format 99, written by genreclf 9.0; .* upgrade genreclf"):
        Store.open(str(tmp_path / "newer"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "store.json").write_text("{")
    with pytest.raises(StorageError, match=r"broken/store.json is not JSON"):
        Store.open(str(tmp_path / "broken"))
    assert str(tmp_path / "broken") not in {u.removeprefix("file://") for u in storage._FORMAT_CHECKED}


@pytest.mark.usefixtures("prefect_server")
def test_the_flows_report_as_the_commands_do_and_verify_store_fails_on_a_missing_shard(copy: Store) -> None:
    from genreclf.flows.upkeep import gc_flow, verify_store_flow

    assert verify_store_flow(copy.url)["findings"] == []
    dry = gc_flow(copy.url, keep_catalogs=1)
    assert dry["total_objects"] > 0 and all(copy.exists(k) for k in dry["keys"])
    assert gc_flow(copy.url, apply=True, keep_catalogs=1)["keys"] == dry["keys"]
    shard = read_manifest(copy).shards[0]["key"]
    copy.delete(shard)
    with pytest.raises(StorageError, match=f"1 objects missing or corrupt in {copy.url}, the first {shard}"):
        verify_store_flow(copy.url)


@pytest.mark.e2e
def test_verify_and_gc_on_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENRECLF_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("GENRECLF_S3_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("GENRECLF_S3_SECRET_KEY", s3_server.secret_key)
    store = Store.open(f"s3://{s3_server.bucket}/upkeep-{uuid.uuid4().hex[:12]}")
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=4.0)
    new_version(store, root)
    first = read_manifest(store)
    change_one_file(root, 1)
    new_version(store, root)

    assert verify(store, deep=True).problems == []
    dry = collect(store, Retention(catalogs=1, grace_s=0))
    assert {k for k in dry.keys if k.startswith("datasets/")} == set(store.keys(f"datasets/{first.dataset_id}/"))
    assert sum(k.startswith("audio/sha256/") for k in dry.keys) == 2  # the changed file's old audio and sidecar
    assert collect(store, Retention(catalogs=1, grace_s=0), apply=True).keys == dry.keys
    assert not any(store.exists(k) for k in dry.keys)
    after = verify(store, deep=True)
    assert after.problems == [] and after.orphans == []
    shard = read_manifest(store).shards[0]["key"]
    store.delete(shard)
    assert [(f.kind, f.key) for f in verify(store).problems] == [("missing", shard)]


def test_a_champion_of_an_earlier_genreclf_a_torch_pickle_is_checked_for_presence(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    entry = {"run_id": "old", "model_key": "runs/old/model.pt", "track_accuracy": 0.5}
    store.write_json("registry/champion.json", entry)
    store.write_bytes("runs/old/model.pt", b"a pickle of tensors")
    assert verify(store).problems == []
    store.delete("runs/old/model.pt")
    assert [(f.kind, f.key) for f in verify(store).problems] == [("missing", "runs/old/model.pt")]
