"""The `genreclf` command: errors are clear and fast; status reads the store."""

import subprocess
import sys
from pathlib import Path

from genreclf.cli import main
from genreclf.models.baselines import knn_k
from genreclf.storage import Store
from tests.test_model_files import plant_pickle
from tests.tiny import make_tiny_dataset


def test_run_on_a_missing_folder_fails_at_once_naming_it(tmp_path: Path, capsys) -> None:
    rc = main(["run", "--catalog", str(tmp_path / "nope"), "--store", str(tmp_path / "store")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope'}: catalog folder does not exist" in err


def test_run_on_a_genre_folder_without_audio_names_it(tmp_path: Path, capsys) -> None:
    (tmp_path / "cat" / "jazz").mkdir(parents=True)
    (tmp_path / "cat" / "jazz" / "notes.txt").write_text("not audio")
    assert main(["run", "--catalog", str(tmp_path / "cat")]) == 2
    assert f"{tmp_path / 'cat' / 'jazz'}: genre folder has no audio files" in capsys.readouterr().err


def test_status_prints_dataset_and_champion(tmp_path: Path, capsys) -> None:
    store = Store.open(str(tmp_path / "store"))
    make_tiny_dataset(store)
    assert main(["status", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "catalog:  none" in out and "dataset:  tiny (36 segments: train 24, val 6, test 6; 3 genres)" in out
    assert "champion: none" in out


def test_predict_refuses_a_model_outside_the_store_without_running_it(tmp_path: Path, capsys) -> None:
    store = Store.open(str(tmp_path / "store"))
    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "evil.pt", marker)  # ../evil.pt from the store's root
    plant_pickle(Path(store.path("runs/old/model.pt")), marker)  # a run with a pickle that runs code
    for model, says in [
        ("../evil.pt", "model '../evil.pt' must be a run id or a run in the store"),
        (str(tmp_path / "evil.pt"), "must be a run id or a run in the store"),
        ("old", "was written by an older genreclf in a format that can run code, and is not loaded; retrain"),
    ]:
        rc = main(["predict", str(tmp_path / "song.wav"), "--model", model, "--store", store.url])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "", model
        assert err.startswith("genreclf: error: ") and says in err and err.count("\n") == 1, err
    assert not marker.exists()


def test_the_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("genreclf")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "demo" in proc.stdout and "run" in proc.stdout


def test_knn_k_is_55_unless_classes_are_smaller() -> None:
    assert knn_k(10_000, 10) == 55
    assert knn_k(72, 4) == 18
    assert knn_k(3, 5) == 1
