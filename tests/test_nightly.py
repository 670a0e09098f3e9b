"""nightly-retrain on a folder catalog: from scratch, then a warm start from the champion when tracks are added,
then nothing to do when nothing changed."""

import shutil
from pathlib import Path

import pytest

from genreclf.app.demo import make_demo_catalog
from genreclf.flows.nightly import nightly_retrain
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.store.keys import CHAMPION_KEY, run_config_key
from genreclf.store.storage import Store

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]


def test_nightly_warm_start_fine_tunes_the_champion_on_the_grown_dataset(tmp_path: Path) -> None:
    more = make_demo_catalog(tmp_path / "more", tracks_per_genre=8, seconds=4.0)
    root = tmp_path / "catalog"
    for genre in sorted(p.name for p in more.iterdir()):
        (root / genre).mkdir(parents=True)
        for f in sorted((more / genre).iterdir())[:6]:
            shutil.copy(f, root / genre / f.name)
    store_url = str(tmp_path / "store")
    dataset = DatasetParams.small()
    training = TrainParams.small().model_copy(update={"epochs": 2, "model": "small_cnn"})
    params = {"catalog_dir": str(root), "storage_url": store_url, "dataset": dataset, "training": training}

    first = nightly_retrain(**params, warm_start=True)  # no champion yet: from scratch
    store = Store.open(store_url)
    assert store.read_json(run_config_key(first["run_id"]))["train"]["init_from"] is None
    assert store.read_json(CHAMPION_KEY)["run_id"] == first["run_id"]

    for genre in sorted(p.name for p in more.iterdir()):  # two new tracks a genre
        for f in sorted((more / genre).iterdir())[6:]:
            shutil.copy(f, root / genre / f.name)
    grown = nightly_retrain(**params, warm_start=True)
    assert grown["dataset_id"] != first["dataset_id"]
    assert store.read_json(run_config_key(grown["run_id"]))["train"]["init_from"] == first["run_id"]

    champion = store.read_json(CHAMPION_KEY)["run_id"]
    again = nightly_retrain(**params, warm_start=True)  # nothing new
    assert again["dataset_id"] == grown["dataset_id"]
    if champion == grown["run_id"]:  # the fine-tuned model won: nothing to fine-tune
        assert again["run_id"] == champion and "nothing to fine-tune" in again["promotion"]["reason"]
    else:  # it lost: the same warm-started run again, reused
        assert again["run_id"] == grown["run_id"]
