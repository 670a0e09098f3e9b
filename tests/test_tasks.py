"""Each Prefect task runs on its own against a real (test) Prefect server, as users test theirs."""

from pathlib import Path

import pytest

from genreclf.acquisition.audio import SegmentConfig
from genreclf.app.demo import make_demo_catalog
from genreclf.datasets.build import batches
from genreclf.datasets.features import FeatureConfig
from genreclf.ingest.catalog import read_catalog
from genreclf.sources.youtube import YoutubeConfig
from genreclf.store.storage import Store
from genreclf.tasks.acquire import acquire_batch
from genreclf.tasks.catalog import read_catalog_rows, scan_folder_catalog
from genreclf.tasks.dataset import plan_dataset

pytestmark = pytest.mark.usefixtures("prefect_server")
SEG = SegmentConfig(window_s=2.0, hop_s=2.0)
YT = YoutubeConfig()
NO_LIMITS = (None, None)


def acquire(store_url: str, rows: list[dict]) -> list:
    """Each track's result, from batches of 4 as the build-dataset flow runs them."""
    parts = [rows[i : i + 4] for i in range(0, len(rows), 4)]
    return [r for i, part in enumerate(parts) for r in acquire_batch(store_url, part, SEG, YT, NO_LIMITS, index=i)]


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=3.0)
    (root / "noise" / "empty.wav").write_bytes(b"")
    return root


def test_scan_folder_task_writes_a_catalog_version(catalog_dir: Path, store_url: str) -> None:
    version = scan_folder_catalog(str(catalog_dir), store_url)
    df = read_catalog(Store.open(store_url), version)
    assert df.height == 13 and sorted(df["genre"].unique()) == ["chirp", "drone", "noise", "pulse"]


def test_acquire_quarantines_bad_files_and_reuses_the_store(catalog_dir: Path, store_url: str) -> None:
    version = scan_folder_catalog(str(catalog_dir), store_url)
    rows = read_catalog_rows(store_url, version)
    results = acquire(store_url, rows)
    bad = [r for r in results if not r.ok]
    assert len(bad) == 1 and "empty.wav" in bad[0].reason and "empty" in bad[0].reason
    # 3 s tracks in 2 s windows: the 1 s tail holds half a window (min_fill 0.5), so it is padded and kept
    assert all(r.offsets == [0.0, 2.0] for r in results if r.ok)
    store = Store.open(store_url)
    written = {r.audio_key: Path(store.path(r.audio_key)).stat().st_mtime_ns for r in results if r.ok}
    assert acquire(store_url, rows) == results
    assert {k: Path(store.path(k)).stat().st_mtime_ns for k in written} == written  # reused, not decoded again


def test_batches_cover_every_track_once_and_stay_few() -> None:
    for n in (0, 1, 7, 20, 1280, 100_000):
        parts = batches(n, workers=2)
        assert [i for p in parts for i in p] == list(range(n))
        assert len(parts) <= max(8, -(-n // 256))
    assert len(batches(20, workers=2)) == 7 and len(batches(1280, workers=2)) == 8
    assert max(len(p) for p in batches(100_000, workers=2)) == 256


def test_plan_task_keeps_every_genre_in_each_split(catalog_dir: Path, store_url: str) -> None:
    version = scan_folder_catalog(str(catalog_dir), store_url)
    rows = read_catalog_rows(store_url, version)
    results = acquire(store_url, rows)
    plan = plan_dataset(store_url, version, rows, results, SEG, FeatureConfig(n_mels=16), 0, None, 128.0)
    assert [q["stage"] for q in plan.quarantined] == ["decode"]  # the empty file
    for genre in ("chirp", "drone", "noise", "pulse"):
        got = sorted(t["split"] for t in plan.tracks if t["genre"] == genre)
        assert got == ["test", "train", "val"]
    assert {t["track_id"] for p in plan.shards for t in p.tracks} == {t["track_id"] for t in plan.tracks}


def test_a_wiped_store_is_acquired_again(catalog_dir: Path, tmp_path: Path) -> None:
    import shutil

    store_url = str(tmp_path / "wiped")
    version = scan_folder_catalog(str(catalog_dir), store_url)
    rows = read_catalog_rows(store_url, version)
    acquire(store_url, rows)
    shutil.rmtree(store_url)
    Store.open(store_url)  # recreated empty, as a user would after `rm -rf`
    again = acquire(store_url, rows)
    assert all(Store.open(store_url).exists(r.audio_key) for r in again if r.ok)
