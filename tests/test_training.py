import dataclasses

import numpy as np
import pytest
import torch

from genreclf.errors import ModelError
from genreclf.storage import Store
from genreclf.training import TrainConfig, fit, load_model, spec_augment
from tests.tiny import make_tiny_dataset

CFG = TrainConfig(model="small_cnn", epochs=4, batch_size=8, lr=3e-3, crop_s=0.3, patience=10, seed=3)


def test_fit_learns_a_separable_tiny_dataset(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    result = fit(store, manifest, CFG, run_id="r1")
    assert result.epochs == 4
    assert result.best_val_accuracy >= 0.8
    assert store.exists("runs/r1/model.pt") and store.exists("runs/r1/checkpoint.pt")
    saved = store.read_json("runs/r1/config.json")
    assert saved["train"] == dataclasses.asdict(CFG) and saved["dataset_id"] == "tiny"
    _, bundle = load_model(store, "runs/r1/model.pt", torch.device("cpu"))
    assert bundle["labels"] == manifest.labels and bundle["epoch"] == result.best_epoch
    assert len(bundle["normalizer"]["mean"]) == 16


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path) -> None:
    whole = Store.open(str(tmp_path / "whole"))
    make_tiny_dataset(whole)
    uninterrupted = fit(whole, make_tiny_dataset(whole), CFG, run_id="r")

    parts = Store.open(str(tmp_path / "parts"))
    manifest = make_tiny_dataset(parts)
    first = fit(parts, manifest, CFG, run_id="r", stop_after=2)  # "killed" after epoch 2
    assert first.epochs == 2
    resumed = fit(parts, manifest, CFG, run_id="r")
    assert resumed.epochs == 4
    assert resumed.history == uninterrupted.history
    a, _ = load_model(whole, "runs/r/model.pt")
    b, _ = load_model(parts, "runs/r/model.pt")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_a_finished_run_is_not_trained_again(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    fit(store, manifest, CFG, run_id="r")
    again = fit(store, manifest, CFG, run_id="r")
    assert again.epochs == 4 and len(again.history) == 4


def test_resuming_with_another_config_is_refused(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    fit(store, manifest, CFG, run_id="r", stop_after=1)
    with pytest.raises(ModelError, match="new run id"):
        fit(store, manifest, dataclasses.replace(CFG, lr=1e-2), run_id="r")


def test_spec_augment_masks_a_band_and_a_span() -> None:
    torch.manual_seed(0)
    x = torch.ones(16, 1, 32, 50)
    y = spec_augment(x, freq_mask=8, time_mask=10)
    assert y.shape == x.shape
    zeros = (y == 0).float()
    assert 0 < zeros.mean() < 0.5
    # each masked example is masked on whole rows (mel bands) and/or whole columns (frames)
    ex = zeros[0, 0].numpy()
    rows, cols = ex.all(axis=1), ex.all(axis=0)
    assert np.array_equal(ex.astype(bool), rows[:, None] | cols[None, :])


def test_training_imports_without_prefect_polars_librosa_or_pydantic() -> None:
    """The GPU image has torch, numpy and pyarrow only: benchmarks/train.py must run there as it is."""
    import subprocess
    import sys

    blocked = ["prefect", "polars", "librosa", "pydantic", "pydantic_settings", "sklearn", "matplotlib"]
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
        + "import genreclf.training, genreclf.models, genreclf.data, genreclf.shards, genreclf.storage\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
