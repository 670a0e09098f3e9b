"""build-dataset's dataset half: incremental splits and shards, a split file, the Dask path, the bucket script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreclf.app.demo import make_demo_catalog
from genreclf.datasets import dataset
from genreclf.datasets.loader import load_split
from genreclf.datasets.manifest import read_manifest
from genreclf.flows.build_dataset import build_dataset
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store
from tests.s3server import S3Server

pytestmark = pytest.mark.usefixtures("prefect_server")

# 3 s tracks in 1 s windows of 32 mels; shards of ~3 tracks, so there are several.
PARAMS = DatasetParams(window_s=1.0, hop_s=1.0, n_mels=32, n_fft=512, hop_length=256, shard_mb=0.05)


def build(root: Path, store_url: str, params: DatasetParams = PARAMS) -> str:
    version = catalog.write_catalog(Store.open(store_url), scan_folder(str(root)).tracks)
    return build_dataset(version, params=params, storage_url=store_url)


def splits_of(store: Store, dataset_id: str) -> dict[str, str]:
    return dict(dataset.read_splits(store, dataset_id).select("track_id", "split").iter_rows())  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_catalog(tmp_path_factory.mktemp("catalog") / "catalog", tracks_per_genre=3, seconds=3.0)


def test_incremental_build_keeps_splits_and_reuses_shards(catalog_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(catalog_dir, root)
    store_url = str(tmp_path / "store")
    store = Store.open(store_url)
    first = read_manifest(store, build(root, store_url))
    old_splits = splits_of(store, first.dataset_id)
    stamps = {s["key"]: Path(store.path(s["key"])).stat().st_mtime_ns for s in first.shards}
    assert len(first.shards) >= 3 and first.splits_key and first.parent is None
    assert read_manifest(store).dataset_id == first.dataset_id

    rng = np.random.default_rng(5)  # new tracks: three new "artists" per genre (folder tracks are their own group)
    for genre in first.labels:
        for i in range(3):
            sf.write(root / genre / f"new-{i}.wav", rng.normal(0, 0.1, 3 * 22_050).astype(np.float32), 22_050)
    second = read_manifest(store, build(root, store_url))

    assert second.dataset_id != first.dataset_id and second.parent == first.dataset_id
    new_splits = splits_of(store, second.dataset_id)
    assert len(new_splits) == len(old_splits) + 12
    assert {t: new_splits[t] for t in old_splits} == old_splits  # nobody moved
    # 3 groups per genre were 1/1/1; of 6, 60/20/20 is 4/1/1: the new ones all go to train.
    per_genre = dataset.read_splits(store, second.dataset_id).group_by("genre", "split").len()  # type: ignore[union-attr]
    assert sorted(set(per_genre.select("split", "len").iter_rows())) == [("test", 1), ("train", 4), ("val", 1)]
    # Old shards are in the new manifest untouched (same key, same file), new tracks are in new shards.
    new_keys = {s["key"] for s in second.shards}
    assert set(stamps) <= new_keys and len(new_keys) > len(stamps)
    assert all(Path(store.path(k)).stat().st_mtime_ns == t for k, t in stamps.items())
    assert second.labels == first.labels
    assert second.rows() == first.rows() + 12 * 3

    assert build(root, store_url) == second.dataset_id  # unchanged: reused as is


def test_split_file_is_imported(catalog_dir: Path, tmp_path: Path) -> None:
    store_url = str(tmp_path / "store")
    files = sorted(p.relative_to(catalog_dir).as_posix() for p in catalog_dir.rglob("*.*"))
    chosen = {f: ("train", "val", "test")[i % 3] for i, f in enumerate(files[:-1])}  # one file left out
    split_file = tmp_path / "split.tsv"
    split_file.write_text("path\tsplit\n" + "".join(f"{f}\t{s}\n" for f, s in chosen.items()))

    dataset_id = build(catalog_dir, store_url, PARAMS.model_copy(update={"split_file": str(split_file)}))

    store = Store.open(store_url)
    manifest = read_manifest(store, dataset_id)
    table = dataset.read_splits(store, dataset_id)
    assert table is not None and table.height == len(chosen)
    rows = catalog.read_catalog(store).select("track_id", "source_ref")
    got = dict(table.join(rows, on="track_id").select("source_ref", "split").iter_rows())
    assert got == chosen
    assert manifest.split_source.startswith("file:")
    assert set(load_split(store, manifest, "test").track_ids) == {
        t for t, s in table.select("track_id", "split").iter_rows() if s == "test"
    }


@pytest.mark.slow  # 7 s: a Dask LocalCluster of its own
def test_dask_path_writes_the_same_shards(catalog_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    local = read_manifest(Store.open(str(tmp_path / "local")), build(catalog_dir, str(tmp_path / "local")))
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        monkeypatch.setenv("GENRECLF_DASK_ADDRESS", cluster.scheduler_address)
        dask_store = Store.open(str(tmp_path / "dask"))
        on_dask = read_manifest(dask_store, build(catalog_dir, dask_store.url))

    assert [s["key"] for s in on_dask.shards] == [s["key"] for s in local.shards]
    assert on_dask.shards == local.shards
    local_store = Store.open(str(tmp_path / "local"))
    for shard in local.shards:
        assert dask_store.read_parquet(shard["key"]).equals(local_store.read_parquet(shard["key"]))


def test_the_library_build_makes_the_flows_dataset_and_reuses_it(catalog_dir: Path, tmp_path: Path) -> None:
    from genreclf.datasets.build import build_dataset as build_without_prefect

    by_flow = read_manifest(Store.open(str(tmp_path / "flow")), build(catalog_dir, str(tmp_path / "flow")))
    store = Store.open(str(tmp_path / "library"))
    catalog.write_catalog(store, scan_folder(str(catalog_dir)).tracks)
    seg, feat = PARAMS.segment_config(), PARAMS.feature_config()

    built = build_without_prefect(store, "latest", seg, feat, shard_mb=PARAMS.shard_mb, workers=2)
    again = build_without_prefect(store, "latest", seg, feat, shard_mb=PARAMS.shard_mb, workers=2)

    assert built.new and built.shards_reused == 0 and built.dataset_id == by_flow.dataset_id
    assert built.manifest.shards == by_flow.shards  # the same keys, rows and content hashes
    assert read_manifest(store).dataset_id == built.dataset_id
    assert not again.new and again.dataset_id == built.dataset_id and again.manifest.shards == built.manifest.shards


def test_create_bucket_script_is_idempotent(s3_server: S3Server, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "GENRECLF_STORAGE_URL": "s3://made-by-infra/genreclf",
        "GENRECLF_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "GENRECLF_S3_ACCESS_KEY": s3_server.access_key,
        "GENRECLF_S3_SECRET_KEY": s3_server.secret_key,
    }
    script = str(Path(__file__).resolve().parents[1] / "infra" / "create_bucket.py")

    runs = [
        subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, cwd=tmp_path) for _ in "ab"
    ]

    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert "created bucket made-by-infra" in runs[0].stdout
    assert "exists" in runs[1].stdout and "nothing to do" in runs[1].stdout
    assert "made-by-infra" in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
