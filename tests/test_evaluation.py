import numpy as np
import pytest

from genreclf.errors import ConfigError, ModelError
from genreclf.models.inference import track_scores
from genreclf.models.runs import TrainConfig
from genreclf.models.training import fit
from genreclf.reports import registry
from genreclf.reports.evaluation import (
    classification_metrics,
    confusion_png,
    evaluate_run,
    report_markdown,
    save_report,
)
from genreclf.store.storage import Store
from tests.tiny import make_tiny_dataset

LABELS = ["a", "b", "c"]


def test_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1, 2])
    scores = np.array(
        [
            [0.9, 0.05, 0.05],  # a -> a
            [0.2, 0.7, 0.1],  # a -> b (a second)
            [0.1, 0.8, 0.1],  # b -> b
            [0.1, 0.3, 0.6],  # b -> c (b second)
            [0.5, 0.1, 0.4],  # c -> a (c second)
        ]
    )
    m = classification_metrics(y, scores, LABELS)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["top3_accuracy"] == pytest.approx(1.0)  # 3 classes: every true label is in the top 3
    assert m["confusion"] == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert m["per_genre"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_genre"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_genre"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_track_scores_average_segments() -> None:
    scores = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    labels = np.array([1, 1, 0])
    tracks = np.array(["t2", "t2", "t1"])
    t_scores, t_labels = track_scores(scores, labels, tracks)
    np.testing.assert_allclose(t_scores, [[2.0, 0.0], [0.5, 1.5]])  # t1, then t2
    np.testing.assert_array_equal(t_labels, [0, 1])


def test_confusion_png_is_a_png() -> None:
    png = confusion_png([[3, 1], [0, 4]], ["jazz", "rock"], "test")
    assert png.startswith(b"\x89PNG")


def test_decide_promotion() -> None:
    champ = {"run_id": "old"}
    assert registry.decide(0.7, None, None).promote
    assert registry.decide(0.7, champ, 0.6).promote
    tie = registry.decide(0.6, champ, 0.6)
    assert not tie.promote and "does not beat champion old (0.600)" in tie.reason
    assert not registry.decide(0.5, champ, 0.6).promote
    gone = registry.decide(0.5, champ, None)  # its model was deleted: nothing to keep
    assert gone.promote and "model is gone" in gone.reason


def test_evaluate_run_and_challenge_the_champion(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    cfg = TrainConfig(model="small_cnn", epochs=5, batch_size=8, lr=3e-3, crop_s=0.3, seed=1)
    fit(store, manifest, cfg, run_id="good")
    report = evaluate_run(store, "good", manifest)
    save_report(store, report)
    assert set(report["models"]) == {"small_cnn", "knn", "mlp"}
    assert report["model_uri"] == store.uri("runs/good/model.safetensors")
    assert report["models"]["small_cnn"]["track"]["n"] == 3  # one test track per class
    assert report["models"]["mlp"]["track"]["accuracy"] == 1.0  # separable bands
    assert report["models"]["small_cnn"]["track"]["accuracy"] == 1.0
    for key in ("report.json", "report.md", "confusion.png"):
        assert store.exists(f"runs/good/{key}")

    first = registry.challenge(store, report, manifest)
    assert first.promote and registry.read_champion(store)["run_id"] == "good"

    # A model that learned nothing (a learning rate of 1e-9) must not replace the champion.
    fit(store, manifest, TrainConfig(model="small_cnn", epochs=1, lr=1e-9, crop_s=0.3, seed=2), run_id="bad")
    bad = evaluate_run(store, "bad", manifest, baselines=False)
    assert bad["models"]["small_cnn"]["track"]["accuracy"] < 1.0
    decision = registry.challenge(store, bad, manifest)
    assert not decision.promote and "does not beat champion good (1.000)" in decision.reason
    assert registry.read_champion(store)["run_id"] == "good"


def test_evaluation_runs_on_genreclf_device_unless_told_another_and_names_it(tmp_path, monkeypatch) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    fit(store, manifest, TrainConfig(model="small_cnn", epochs=1, crop_s=0.3, device="cpu"), run_id="r")
    monkeypatch.setenv("GENRECLF_DEVICE", "cpu")
    report = evaluate_run(store, "r", manifest, baselines=False)
    assert report["device"] == "cpu" and "small_cnn scored on `cpu`" in report_markdown(report)
    for bad in ("tpu", "cuda:7"):
        monkeypatch.setenv("GENRECLF_DEVICE", bad)
        with pytest.raises(ConfigError, match=f"^GENRECLF_DEVICE='{bad}'") as e:
            evaluate_run(store, "r", manifest, baselines=False)
        assert "\n" not in str(e.value)
    assert evaluate_run(store, "r", manifest, baselines=False, device="cpu")["device"] == "cpu"  # not read then


def test_evaluating_a_run_id_that_leaves_runs_is_refused(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    for run_id in ["../good", "runs/good", "/tmp/good"]:
        with pytest.raises(ModelError, match="is not a run id"):
            evaluate_run(store, run_id, manifest)
    with pytest.raises(ModelError, match="no model 'missing'"):
        evaluate_run(store, "missing", manifest)


def test_metrics_with_two_genres_and_a_split_holding_one() -> None:
    m = classification_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.9, 0.1]]), ["a", "b"])
    assert m["accuracy"] == 0.5 and m["top3_accuracy"] == 1.0
    assert m["confusion"] == [[0, 0], [1, 1]]
