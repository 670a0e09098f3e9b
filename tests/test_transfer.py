"""Frozen pretrained heads: the torch head computes what scikit-learn fitted, and a run trains, saves and evaluates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.manifest import Manifest
from genreclf.errors import ConfigError
from genreclf.models import embeddings, inference, runs, training
from genreclf.models.embeddings import Embeddings
from genreclf.models.files import weights_key
from genreclf.models.musicnn import EMBEDDING_DIM, FEATURES
from genreclf.models.transfer import Head, fit_head, head_module
from genreclf.reports import evaluation
from genreclf.store.keys import embedding_key
from genreclf.store.storage import Store
from tests.tiny import make_tiny_dataset

SEG_3S = SegmentConfig(window_s=3.0, hop_s=3.0)


def _embeddings(n: int, classes: list[int], seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    labels = np.asarray(classes * (n // len(classes)), np.int64)
    x = rng.normal(0, 1, (len(labels), EMBEDDING_DIM)).astype(np.float32) * rng.uniform(0.1, 5, EMBEDDING_DIM)
    x[:, :20] += labels[:, None] * 2.0  # (n, EMBEDDING_DIM): a few columns tell the classes apart
    return Embeddings(x.astype(np.float32), labels, np.asarray([f"t{i}" for i in range(len(labels))], object))


@pytest.mark.parametrize(
    ("head", "classes"),
    [
        (Head(("max_pool",), 1.0), [0, 1, 2]),
        (Head(("penultimate", "max_pool"), 0.1), [0, 2]),  # binary, and class 1 absent from training
        (Head(("max_pool", "penultimate"), 1e-2, hidden=16), [0, 1, 2]),
        (Head(("mean_pool",), 1e-2, hidden=16), [1, 2]),
    ],
)
def test_the_torch_head_gives_scikit_learns_probabilities(head: Head, classes: list[int]) -> None:
    train, test = _embeddings(60, classes), _embeddings(30, [0, 1, 2], seed=1)
    fitted = fit_head(head, train, seed=0)
    cols = [c for c in range(3) if c in classes]
    want = fitted.model.predict_proba(fitted.scaler.transform(test.x[:, fitted.columns]))  # (n, classes seen)
    with torch.no_grad():
        got = torch.softmax(head_module(fitted, 3)(torch.from_numpy(test.x)).double(), 1).numpy()
    np.testing.assert_allclose(got[:, cols], want, atol=2e-5)
    assert np.all(got[:, [c for c in range(3) if c not in classes]] < 1e-6)  # a class never seen is never said


def test_a_head_reads_only_the_columns_that_vary() -> None:
    """A constant column (a dead channel), plus rounding noise, gets no weight: standardizing it would blow its
    noise up to the scale of a real feature."""
    data = _embeddings(60, [0, 1, 2])
    x = data.x.copy()
    x[:, 5] = 3.0 + np.random.default_rng(0).normal(0, 1e-9, len(x))  # (n,): constant up to float noise
    fitted = fit_head(Head(("max_pool",), 1.0), Embeddings(x, data.labels, data.track_ids), seed=0)
    assert 5 not in fitted.columns and 6 in fitted.columns
    weight = head_module(fitted, 3)[-1].weight
    assert torch.all(weight[:, 5] == 0) and weight.abs().max() < 100


@pytest.fixture(scope="module")
def frozen_run(musicnn_weights, tmp_path_factory) -> tuple[Store, Manifest, str]:
    """(store, its tiny dataset at musicnn's features, the run id of a frozen head trained on it): made once."""
    store = Store.open(str(tmp_path_factory.mktemp("frozen") / "store"))
    manifest = make_tiny_dataset(store, feat=FEATURES, seg=SEG_3S, tracks_per_class=5)
    cfg = runs.TrainConfig(model="musicnn-msd")
    run_id = runs.run_id_for(manifest.dataset_id, cfg)
    result = training.fit(store, manifest, cfg, run_id=run_id)
    assert result.new_epochs == 1 and result.best_val_accuracy == 1.0  # the classes light up different bands
    return store, manifest, run_id


def test_a_frozen_head_trains_saves_and_is_evaluated_like_any_model(frozen_run, caplog) -> None:
    store, manifest, run_id = frozen_run
    _, bundle = inference.load_model(store, weights_key(run_id), torch.device("cpu"))
    assert bundle["pretrained"]["wheel_sha256"] == "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
    assert bundle["head"]["chosen_on"] == "val" and bundle["head"]["refit_on"] == "train+val"
    assert len(bundle["head"]["candidates"]) >= 10
    scores = evaluation.evaluate_model(store, weights_key(run_id), manifest, device="cpu")
    assert scores["track"]["accuracy"] == 1.0
    # The embeddings are stored per shard, and a second run (another seed) reuses them.
    net_id = bundle["embeddings"]
    key = embedding_key(net_id, manifest.shards[0]["key"])
    assert store.read_parquet(key).num_rows == manifest.rows()
    before = store.read_bytes(key)
    caplog.set_level("INFO", logger="genreclf.models.embeddings")
    again = training.fit(store, manifest, runs.TrainConfig(model="musicnn-msd", seed=1), run_id="seed1")
    assert again.new_epochs == 1 and store.read_bytes(key) == before
    assert "1 shards reused, 0 computed" in caplog.text
    # The same run id is not fitted again.
    assert training.fit(store, manifest, runs.TrainConfig(model="musicnn-msd"), run_id=run_id).new_epochs == 0


def test_a_dataset_without_the_networks_features_is_refused_with_what_to_do(musicnn_weights, tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    with pytest.raises(ConfigError, match=r"musicnn-msd needs its own input .*genreclf run --model musicnn-msd"):
        training.fit(store, manifest, runs.TrainConfig(model="musicnn-msd"), run_id="r")
    assert not store.exists(weights_key("r"))


def test_embeddings_are_keyed_by_the_weights(musicnn_weights) -> None:
    a = embeddings.network_id("musicnn-msd", "a" * 64)
    assert a != embeddings.network_id("musicnn-msd", "b" * 64) and a.startswith("musicnn-msd-")


@pytest.mark.slow
def test_fine_tuning_starts_from_the_network_and_a_probed_head_and_resumes(musicnn_weights, tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store, feat=FEATURES, seg=SEG_3S, tracks_per_class=4)
    cfg = runs.TrainConfig(model="musicnn-msd", finetune=True, epochs=2, batch_size=8, crops_per_segment=1,
                               max_steps_per_epoch=2, lr=1e-3)  # fmt: skip
    first = training.fit(store, manifest, cfg, run_id="ft", stop_after=1)
    assert first.epochs == 1 and first.best_val_accuracy == 1.0  # the probed head is right from the first epoch
    assert first.history[0]["train_loss"] < 2.0  # the features the head was fitted on did not move at the start
    _, bundle = inference.load_model(store, weights_key("ft"), torch.device("cpu"))
    assert bundle["head"]["start_of"] == "finetune" and bundle["pretrained"]["name"] == "musicnn-msd"
    assert bundle["normalizer"]["mean"] == [0.0] * 96  # the network's own batch norm normalizes its input
    done = training.fit(store, manifest, cfg, run_id="ft")
    assert done.epochs == 2 and done.new_epochs == 1  # resumed after epoch 1
    scores = evaluation.evaluate_model(store, weights_key("ft"), manifest, device="cpu")
    assert scores["track"]["accuracy"] == 1.0


def test_a_frozen_heads_model_predicts_audio_at_the_decoding_rate(frozen_run) -> None:
    """Predicting decodes at the dataset's rate (22,050 Hz) and resamples to the network's 16 kHz, as the build did;
    its windows' probabilities are the softmax of the model on those features."""
    from genreclf.datasets.features import features_batch
    from genreclf.reports.predict import Predictor

    store, _, run_id = frozen_run
    predictor = Predictor(store, run_id, device="cpu")
    t = np.arange(int(22_050 * 7.5)) / 22_050
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 7.5 s: two 3 s windows and a padded tail
    pred = predictor.predict_audio(y, source="tone")
    assert pred.window_probabilities.shape == (3, 3) and np.allclose(pred.window_probabilities.sum(1), 1, atol=1e-5)
    windows = np.stack([y[:66_150], y[66_150:132_300]])
    mel = features_batch(windows, sample_rate=22_050, cfg=FEATURES)
    assert mel.shape == (2, 96, 188)
    with torch.no_grad():
        want = torch.softmax(predictor.model(torch.from_numpy(mel)[:, None]), 1).numpy()
    np.testing.assert_allclose(pred.window_probabilities[:2], want, atol=1e-5)
