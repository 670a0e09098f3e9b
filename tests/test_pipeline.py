"""The whole pipeline flow on a tiny generated folder catalog, as `genreclf run` runs it."""

from pathlib import Path

import pytest

from genreclf.app.demo import make_demo_catalog
from genreclf.datasets.manifest import read_manifest
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.flows.pipeline import pipeline
from genreclf.models.inference import pick_device
from genreclf.store.storage import Store

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def test_pipeline_end_to_end_then_reuses_everything(tmp_path: Path) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=6, seconds=6.0)
    (root / "drone" / "broken.mp3").write_bytes(b"\xff\xfb\x90" + bytes(range(256)) * 4)
    store_url = str(tmp_path / "store")
    dataset, training = DatasetParams.small(), TrainParams.small().model_copy(update={"epochs": 6})

    out = pipeline(str(root), storage_url=store_url, dataset=dataset, training=training)

    store = Store.open(store_url)
    manifest = read_manifest(store, out["dataset_id"])
    assert manifest.labels == ["chirp", "drone", "noise", "pulse"]
    assert manifest.rows() == 24 * 3  # 6 s tracks, 3 s windows every 1.5 s
    assert all(store.exists(s["key"]) for s in manifest.shards)
    for uri in (out["model_uri"], out["report_uri"], out["confusion_png"], out["manifest_uri"]):
        assert store.exists(store.key_of(uri)), uri
    assert [q["track_id"] for q in out["quarantine"]] and "broken.mp3" in out["quarantine"][0]["reason"]

    models = out["report"]["models"]
    assert set(models) == {"resnet18", "knn", "mlp"}
    assert models["resnet18"]["segment"]["accuracy"] >= 0.7  # chance is 0.25
    assert models["mlp"]["track"]["accuracy"] >= 0.75
    assert out["report"]["promotion"]["promote"]
    assert out["report"]["device"] == str(pick_device())  # no device given, no GENRECLF_DEVICE: the best available

    assert not store.exists(f"runs/{out['run_id']}/checkpoint.pt")  # finished: only the best model is kept
    checkpoint = Path(store.path(f"runs/{out['run_id']}/model.safetensors"))
    before = checkpoint.stat().st_mtime_ns
    again = pipeline(str(root), storage_url=store_url, dataset=dataset, training=training)
    assert (again["dataset_id"], again["run_id"]) == (out["dataset_id"], out["run_id"])
    assert checkpoint.stat().st_mtime_ns == before  # no new training
    assert "already the champion" in again["report"]["promotion"]["reason"]
