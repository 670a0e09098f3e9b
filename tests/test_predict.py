"""Prediction with a trained model: files, the CLI, out-of-distribution evaluation and the batch predict flow."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreclf.app.cli import main
from genreclf.app.demo import make_demo_catalog
from genreclf.errors import AudioError, ModelError, SourceError
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.reports.predict import (
    Predictor,
    audio_files_under,
    error_row,
    evaluate_catalog,
    predict_rows,
    write_predictions,
)
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """A champion small CNN trained on a demo catalog with the library's calls, no flow; (store, catalog folder)."""
    from genreclf.datasets.build import build_dataset
    from genreclf.ingest import catalog
    from genreclf.models.runs import run_id_for
    from genreclf.models.training import fit
    from genreclf.reports import registry
    from genreclf.reports.evaluation import evaluate_run

    root = make_demo_catalog(tmp_path_factory.mktemp("catalog"), tracks_per_genre=5, seconds=4.0)
    store = Store.open(str(tmp_path_factory.mktemp("store")))
    catalog.write_catalog(store, scan_folder(str(root)).tracks)
    params = DatasetParams.small()
    manifest = build_dataset(store, "latest", params.segment_config(), params.feature_config()).manifest
    cfg = TrainParams.small().model_copy(update={"model": "small_cnn", "epochs": 6}).config()
    run_id = fit(store, manifest, cfg, run_id=run_id_for(manifest.dataset_id, cfg)).run_id
    assert registry.challenge(store, evaluate_run(store, run_id, manifest, baselines=False), manifest).promote
    return store, root


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the model never saw (another seed), one folder per genre."""
    return make_demo_catalog(tmp_path_factory.mktemp("fresh"), tracks_per_genre=3, seconds=4.0, seed=7)


def test_predict_files_finds_their_genres(trained: tuple[Store, Path], fresh: Path) -> None:
    store, _ = trained
    predictor = Predictor(store)
    files = sorted(fresh.glob("*/*"))
    hits = 0
    for f in files:
        pred = predictor.predict_file(f)
        assert pred.probabilities.shape == (4,) and np.isclose(pred.probabilities.sum(), 1.0)
        assert pred.window_probabilities.shape == (len(pred.offsets_s), 4)
        hits += pred.top(1)[0][0] == f.parent.name
    assert hits / len(files) >= 0.75  # chance is 0.25


def test_bad_inputs_are_clear_errors(trained: tuple[Store, Path], tmp_path: Path) -> None:
    predictor = Predictor(trained[0])
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match=r"notes\.mp3: cannot decode"):
        predictor.predict_file(text)
    with pytest.raises(AudioError, match="too short"):
        predictor.predict_audio(np.zeros(100, np.float32) + 0.1, source="short.wav")
    with pytest.raises(ModelError, match="no model 'nope'"):
        Predictor(trained[0], "nope")


def test_cli_predict_prints_top_genres_and_goes_on_after_a_bad_file(
    trained: tuple[Store, Path], fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    good = fresh / "drone" / "drone-00.wav"
    rc = main(["predict", "--store", trained[0].url, "--timeline", str(bad), str(good)])
    out, err = capsys.readouterr()
    assert rc == 1 and "1 of 2 inputs failed" in err
    assert f"{bad}: error: {bad}: file is empty" in err  # errors on stderr, predictions on stdout
    assert f"{good}: drone" in out and "0:00.0-0:01.5  drone" not in out  # windows are 3 s long
    assert "0:00.0-0:03.0" in out


def test_out_of_distribution_catalog_is_scored_separately(trained: tuple[Store, Path], fresh: Path) -> None:
    store, _ = trained
    rows = scan_folder(fresh).tracks.to_dicts()
    rows.append({**rows[0], "track_id": "unknown-genre", "genre": "polka"})
    report = evaluate_catalog(Predictor(store), store, rows)
    assert report["track"]["n"] == 12 and report["track"]["accuracy"] >= 0.75
    assert report["skipped"] == [{"track_id": "unknown-genre", "reason": "genre 'polka' is not one the model knows"}]


def test_predict_flow_stores_a_prediction_per_track(trained: tuple[Store, Path]) -> None:
    import polars as pl

    from genreclf.flows.predict import predict

    store, _ = trained
    uri = predict(storage_url=store.url, device="cpu")
    table = pl.from_arrow(store.read_parquet(store.key_of(uri)))
    assert isinstance(table, pl.DataFrame) and table.height == 20 and table["error"].null_count() == 20
    assert (table["genre"] == table["catalog_genre"]).mean() >= 0.75


def test_cli_predicts_a_url_downloaded_with_yt_dlp(
    trained: tuple[Store, Path], fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.audio_server import AudioServer

    mp3 = tmp_path / "drone.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(fresh / "drone" / "drone-01.flac"), str(mp3)],
                   check=True)  # fmt: skip
    with AudioServer() as server:
        url = server.add_file("/drone.mp3", mp3)
        missing = server.url("/missing.mp3")
        rc = main(["predict", "--store", trained[0].url, url, missing])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"{url}: drone" in out
    assert f"{missing}: error:" in err and "404" in err


def test_importing_predict_leaves_out_what_predicting_a_file_does_not_need() -> None:
    # scikit-learn and polars cost seconds of `genreclf predict`; torchvision is imported when a ResNet is built.
    code = "import sys, genreclf.app.cli, genreclf.reports.predict; print(' '.join(sorted(sys.modules)))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = set(got.stdout.split())
    assert {"genreclf.reports.predict", "torch"} <= modules
    assert not {"sklearn", "polars", "torchvision", "prefect", "genreclf.reports.evaluation"} & modules


def test_audio_files_under_a_folder_are_the_catalogs_audio_sorted_without_hidden(tmp_path: Path) -> None:
    names = ["b/2.flac", "b/1.MP3", "a.wav", "notes.txt", ".hidden.wav", ".cache/x.wav", "c/d/deep.ogg", "t/a.txt"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    got = [p.relative_to(tmp_path).as_posix() for p in audio_files_under(tmp_path)]
    assert got == ["a.wav", "b/1.MP3", "b/2.flac", "c/d/deep.ogg"]
    with pytest.raises(SourceError, match=r"t: no audio files"):
        audio_files_under(tmp_path / "t")
    with pytest.raises(SourceError, match="not a folder"):
        audio_files_under(tmp_path / "a.wav")


def test_predictions_are_written_as_csv_and_json_with_errors_as_rows(
    trained: tuple[Store, Path], fresh: Path, tmp_path: Path
) -> None:
    predictor = Predictor(trained[0])
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    good = fresh / "drone" / "drone-00.wav"
    rows = list(predict_rows(predictor, [str(good), str(bad)]))
    error = rows[1]["error"]
    assert error is not None and error.startswith(f"{bad}: file is empty")
    assert rows[0]["genre"] == "drone" and rows[1] == error_row(str(bad), error)
    assert list(rows[0]["probabilities"]) == predictor.labels
    assert np.isclose(sum(rows[0]["probabilities"].values()), 1.0, atol=1e-5)

    out = io.StringIO()
    assert write_predictions(iter(rows), "csv", out, labels=predictor.labels) == 1
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == ["path", "genre", "probability", *(f"p_{g}" for g in predictor.labels), "error"]
    assert table[1][:2] == [str(good), "drone"] and float(table[1][2]) == rows[0]["probability"] and table[1][-1] == ""
    assert table[2] == [str(bad), "", "", *([""] * len(predictor.labels)), error]

    out = io.StringIO()
    assert write_predictions(rows, "json", out, labels=predictor.labels) == 1
    assert json.loads(out.getvalue()) == rows
    out = io.StringIO()
    write_predictions([], "json", out, labels=predictor.labels)
    assert json.loads(out.getvalue()) == []
