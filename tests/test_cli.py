"""The `genreclf` command: errors are clear and fast; status reads the store."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from genreclf.app.cli import main
from genreclf.app.demo import make_demo_catalog
from genreclf.models.baselines import knn_k
from genreclf.models.runs import TrainConfig
from genreclf.models.training import fit
from genreclf.reports import registry
from genreclf.reports.evaluation import evaluate_run
from genreclf.store.keys import CHAMPION_KEY, splits_key
from genreclf.store.storage import Store
from tests.planted import plant_pickle
from tests.tiny import SEG, make_tiny_dataset


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


def test_status_lists_each_lines_champion_and_predict_says_which_it_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two catalogs of other genres in one store: neither champion replaces the other."""
    store = Store.open(str(tmp_path / "store"))
    lines = {}
    for dataset_id, classes in (("three", 3), ("two", 2)):
        manifest = make_tiny_dataset(store, classes=classes, dataset_id=dataset_id)
        cfg = TrainConfig(model="small_cnn", epochs=1, crop_s=0.3, device="cpu")
        fit(store, manifest, cfg, run_id=f"r-{dataset_id}")
        decision = registry.challenge(
            store, evaluate_run(store, f"r-{dataset_id}", manifest, baselines=False), manifest
        )
        assert decision.promote and decision.reason.startswith("the first champion of its line"), decision
        lines[dataset_id] = registry.line_of(manifest)
    song = tmp_path / "song.wav"
    sf.write(song, np.random.default_rng(0).normal(0, 0.1, SEG.sample_rate).astype(np.float32), SEG.sample_rate)

    assert main(["status", "--store", store.url]) == 0
    champions = [line for line in capsys.readouterr().out.splitlines() if line.startswith("champion:")]
    assert len(champions) == 2, champions
    assert champions[0].startswith(f"champion: line {lines['two']} (the default for predict): run r-two, ")
    assert "2 genres: genre0, genre1" in champions[0]
    assert champions[1].startswith(f"champion: line {lines['three']}: run r-three, ")

    assert main(["predict", "--store", store.url, "--device", "cpu", str(song)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model: the most recently promoted champion, of line {lines['two']} (2 lines have one:")
    assert "run r-two (2 genres: genre0, genre1) on cpu" in out
    assert main(["predict", "--store", store.url, "--device", "cpu", "--line", lines["three"][:5], str(song)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model: the champion of line {lines['three']}: run r-three (3 genres: genre0, genre1, ")
    assert main(["predict", "--store", store.url, "--line", "zzz", str(song)]) == 2
    assert "line 'zzz' is not one of the lines with a champion" in capsys.readouterr().err


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


def test_predict_runs_on_genreclf_device_or_device_and_refuses_one_this_machine_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(str(tmp_path / "store"))
    fit(store, make_tiny_dataset(store), TrainConfig(model="small_cnn", epochs=1, crop_s=0.3, device="cpu"), run_id="r")
    song = tmp_path / "song.wav"
    sf.write(song, np.random.default_rng(0).normal(0, 0.1, SEG.sample_rate).astype(np.float32), SEG.sample_rate)
    predict = ["predict", "--model", "r", "--store", store.url, str(song)]

    monkeypatch.setenv("GENRECLF_DEVICE", "cpu")
    assert main(predict) == 0
    out = capsys.readouterr().out
    assert (
        "model: runs/r/model.safetensors (3 genres: genre0, genre1, genre2) on cpu" in out and f"{song}: genre" in out
    )
    for env, device, says in [
        ("tpu", None, "GENRECLF_DEVICE='tpu' is not a device; use cpu, cuda, cuda:N or mps"),
        ("cuda:7", None, "GENRECLF_DEVICE='cuda:7': this machine has"),
        ("cpu", "cuda:7", "device='cuda:7': this machine has"),
    ]:
        monkeypatch.setenv("GENRECLF_DEVICE", env)
        rc = main([*predict, *(["--device", device] if device else [])])
        out, err = capsys.readouterr()
        assert rc == 2 and out == "", (env, device)
        assert err.startswith(f"genreclf: error: {says}") and err.count("\n") == 1, err
    monkeypatch.setenv("GENRECLF_DEVICE", "tpu")  # not read when --device is given
    assert main([*predict, "--device", "cpu"]) == 0 and "on cpu" in capsys.readouterr().out


def test_predict_a_folder_as_csv_rows_with_errors_as_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    store = Store.open(str(tmp_path / "store"))
    fit(store, make_tiny_dataset(store), TrainConfig(model="small_cnn", epochs=1, crop_s=0.3, device="cpu"), run_id="r")
    folder = tmp_path / "songs"
    (folder / "sub").mkdir(parents=True)
    noise = np.random.default_rng(0).normal(0, 0.1, SEG.sample_rate).astype(np.float32)
    sf.write(folder / "a.wav", noise, SEG.sample_rate)
    sf.write(folder / "sub" / "b.flac", noise, SEG.sample_rate)
    (folder / "broken.wav").write_bytes(b"RIFF....not audio")
    (folder / "notes.txt").write_text("not audio")

    rc = main(["predict", str(folder), "--model", "r", "--store", store.url, "--format", "csv"])
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 1 and "1 of 3 inputs failed" in err and "model: runs/r" in err  # stdout holds the rows only
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "broken.wav", "b.flac"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 2 and all(r["genre"] and float(r["probability"]) > 0 for r in good)
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4 for r in good)
    assert "broken.wav" in rows[1]["error"] and rows[1]["genre"] == ""


def test_run_with_a_device_this_machine_lacks_fails_before_any_flow_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=1.0)
    run = ["run", "--catalog", str(root), "--store", str(tmp_path / "store")]
    assert main([*run, "--device", "tpu"]) == 2
    assert "genreclf: error: device='tpu' is not a device" in capsys.readouterr().err
    monkeypatch.setenv("GENRECLF_DEVICE", "cuda:7")
    assert main(run) == 2
    assert "genreclf: error: GENRECLF_DEVICE='cuda:7': this machine has" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_the_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("genreclf")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "demo" in proc.stdout and "run" in proc.stdout


def test_bare_genreclf_prints_help_and_version_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: genreclf" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("genreclf ")


@pytest.mark.slow  # the whole CLI in a subprocess, 7 s: CI runs it
def test_prefect_that_does_not_start_in_time_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=1.0)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": "",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}  # fmt: skip
    env.pop("PREFECT_API_URL")
    exe = Path(sys.executable).with_name("genreclf")
    proc = subprocess.run([str(exe), "run", "--catalog", str(root), "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "genreclf: error:" in proc.stderr and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in proc.stderr


def test_knn_k_is_55_unless_classes_are_smaller() -> None:
    assert knn_k(10_000, 10) == 55
    assert knn_k(72, 4) == 18
    assert knn_k(3, 5) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_run_takes_a_split_file_naming_wav_files_and_a_seed(tmp_path: Path, capsys) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=4.0)
    lines = ["path,split"]  # the published-list style: .wav names for files shipped as .wav, .flac and .ogg
    for genre in sorted(p.name for p in root.iterdir()):
        for f, split in zip(sorted((root / genre).iterdir()), ("train", "val", "test"), strict=True):
            lines.append(f"{genre}/{f.stem}.wav,{split}")
    split_file = tmp_path / "split.csv"
    split_file.write_text("\n".join(lines) + "\n")
    store_url = str(tmp_path / "store")
    argv = ["run", "--catalog", str(root), "--small", "--epochs", "1", "--model", "small_cnn", "--store", store_url]
    assert main([*argv, "--split-file", str(split_file), "--seed", "2"]) == 0
    store = Store.open(store_url)
    champion = store.read_json(CHAMPION_KEY)
    assert store.read_json(f"runs/{champion['run_id']}/config.json")["train"]["seed"] == 2
    splits = pl.read_parquet(store.path(splits_key(champion["dataset_id"])))
    assert splits.height == 12 and splits["split"].to_list().count("test") == 4  # every file matched its .wav name
    assert "Test accuracy" in capsys.readouterr().out


def test_run_says_which_model_and_how_to_get_the_pretrained_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without weights in the cache: a pretrained model fails in one line saying what to run, before any flow; the
    default falls back to ResNet-18 and says how to get the pretrained one; --finetune needs a pretrained model."""
    from genreclf.models import default_model

    monkeypatch.setenv("GENRECLF_CACHE_DIR", str(tmp_path / "empty-cache"))
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=1.0)
    run = ["run", "--catalog", str(root), "--store", str(tmp_path / "store")]
    assert main([*run, "--model", "musicnn-msd"]) == 2
    err = capsys.readouterr().err
    assert "--model musicnn-msd: pretrained weights not fetched; run `genreclf weights fetch musicnn-msd`" in err
    assert main([*run, "--model", "resnet18", "--finetune"]) == 2
    assert "--finetune fine-tunes a pretrained network; resnet18" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
    name, why = default_model()
    assert name == "resnet18" and "`genreclf weights fetch` gets the pretrained musicnn-msd" in why


def test_weights_list_and_a_bad_fetch_are_one_line_each(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GENRECLF_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["weights", "list"]) == 1
    out = capsys.readouterr().out
    assert "musicnn-msd  not fetched; run `genreclf weights fetch musicnn-msd`" in out and "musicnn-mtt" in out
    (tmp_path / "bad.whl").write_bytes(b"not a wheel")
    assert main(["weights", "fetch", "musicnn-msd", "--from", str(tmp_path / "bad.whl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err and "truncated" in err
    assert main(["weights", "fetch", "vggish"]) == 2
    assert "unknown pretrained network 'vggish'; known: musicnn-msd, musicnn-mtt" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "weights" / "musicnn-msd").exists()


@pytest.mark.parametrize(
    ("argv", "usage", "said"),
    [
        (["run", "--catalg", "x"], "usage: genreclf run ", "--catalg: did you mean --catalog?"),
        (["predict", "--bogus", "f.mp3"], "usage: genreclf predict ", "unrecognized arguments: --bogus"),
        (["weights", "fetch", "--frm", "x"], "usage: genreclf weights fetch ", "--frm: did you mean --from?"),
        (["rnu"], "usage: genreclf [-h]", "rnu: did you mean run?"),
    ],
)
def test_a_mistyped_option_or_command_gets_its_commands_usage_and_a_suggestion(
    argv: list[str], usage: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(usage) and said in err


def test_the_demo_catalog_is_byte_identical_on_a_rerun(tmp_path: Path) -> None:
    """Ogg Vorbis encodes the same samples to other bytes each time: a rerun keeps the files of the same render,
    so the catalog version (and what follows from it) is the same; a changed setting or file is rendered again."""
    from genreclf.ingest.catalog import to_table, version_of
    from genreclf.sources.local import scan_folder

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.*"))}

    root = make_demo_catalog(tmp_path / "demo", tracks_per_genre=3, seconds=1.0)
    first = files(root)
    assert files(make_demo_catalog(root, tracks_per_genre=3, seconds=1.0)) == first
    version = version_of(to_table(scan_folder(root, hash_cache=False).tracks))
    assert version_of(to_table(scan_folder(root, hash_cache=False).tracks)) == version
    (root / "chirp" / "chirp-02.ogg").write_bytes(b"edited")
    again = files(make_demo_catalog(root, tracks_per_genre=3, seconds=1.0))
    assert again["chirp/chirp-02.ogg"].startswith(b"OggS")  # rendered again
    longer = files(make_demo_catalog(root, tracks_per_genre=3, seconds=2.0))
    assert all(longer[name] != first[name] for name in first if name.endswith(".wav"))


def test_the_commands_parser_imports_no_torch() -> None:
    # `genreclf --help`, `--version` and every command's argument errors answer before torch (1.4 s) is imported.
    code = "import sys; from genreclf.app.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
