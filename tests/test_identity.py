"""Identity by content, through the build-dataset flow: what a track is, is what its file holds.

Two catalogs with the same paths and different audio never share decoded audio or shards; a file edited in place
is decoded again (alone) and gives a new catalog version and dataset; the same recording twice is kept once (or
reported as a label conflict); links are resolved; truncated files are quarantined; a genre missing from a split
is named.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreclf.acquisition import audio
from genreclf.datasets import dataset
from genreclf.datasets.loader import load_split
from genreclf.datasets.manifest import read_manifest
from genreclf.errors import AudioError
from genreclf.flows.build_dataset import build_dataset
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog
from genreclf.models.runs import TrainConfig, run_id_for
from genreclf.store.storage import Store
from genreclf.tasks.catalog import scan_folder_catalog

pytestmark = pytest.mark.usefixtures("prefect_server")

SR = 16_000
PARAMS = DatasetParams(window_s=1.0, hop_s=1.0, n_mels=16, n_fft=512, hop_length=256, sample_rate=SR)


def tone(path: Path, freq: float, *, seconds: float = 2.0, fmt: str | None = None) -> Path:
    t = np.arange(round(seconds * SR)) / SR
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format=fmt)
    return path


def folder(root: Path, freqs: dict[str, list[float]]) -> Path:
    """ROOT/<genre>/s<i>.wav, one tone per file."""
    for genre, fs in freqs.items():
        for i, f in enumerate(fs):
            tone(root / genre / f"s{i}.wav", f)
    return root


def build(root: Path, store_url: str) -> str:
    return build_dataset(scan_folder_catalog(str(root), store_url), params=PARAMS, storage_url=store_url)


def quarantine(store: Store, dataset_id: str) -> dict[str, tuple[str, str]]:
    """source path (or scanned path) -> (stage, reason) of the dataset's quarantine table."""
    version = read_manifest(store, dataset_id).catalog_version
    ref_of = dict(catalog.read_catalog(store, version).select("track_id", "source_ref").iter_rows())
    out = {}
    for q in store.read_json(f"datasets/{dataset_id}/quarantine.json"):
        out[q.get("path") or ref_of[q["track_id"]]] = (q["stage"], q["reason"])
    return out


def peak_hz(mel_track: np.ndarray) -> int:
    return int(np.argmax(mel_track.astype(np.float32).mean(axis=(0, 2))))


def test_two_catalogs_with_the_same_paths_never_share_audio_and_an_edit_redoes_one_file(
    tmp_path: Path, store_url: str
) -> None:
    freqs_a = {"low": [200, 220, 240], "high": [2000, 2200, 2400]}
    cat_a = folder(tmp_path / "catA", freqs_a)
    cat_b = folder(tmp_path / "catB", {"low": [2000, 2200, 2400], "high": [200, 220, 240]})  # swapped sounds
    store = Store.open(store_url)

    ds_a = build(cat_a, store_url)
    ds_b = build(cat_b, store_url)

    assert ds_a != ds_b
    assert run_id_for(ds_a, TrainConfig()) != run_id_for(ds_b, TrainConfig())
    # catB's stored audio and spectrograms are catB's sounds: its "low" tracks are high tones
    for ds, low_is_high in ((ds_a, False), (ds_b, True)):
        manifest = read_manifest(store, ds)
        train = load_split(store, manifest, "train")
        low = train.labels == manifest.labels.index("low")
        mean_band = {"low": peak_hz(train.mel[low]), "high": peak_hz(train.mel[~low])}
        assert (mean_band["low"] > mean_band["high"]) == low_is_high, (ds, mean_band)
    sides = [store.read_json(k) for k in store.keys("audio/sha256") if k.endswith(".json")]
    assert len(sides) == 6  # six distinct recordings in all; catB decoded none of catA's files again
    assert {Path(s["source_uri"]).parts[-3] for s in sides} == {"catA"}

    # Overwrite one file in place: a new catalog version and dataset; only that file is decoded again.
    before = set(store.keys("audio/sha256"))
    tone(cat_a / "low" / "s0.wav", 300)
    ds_a2 = build(cat_a, store_url)
    added = set(store.keys("audio/sha256")) - before
    assert ds_a2 not in (ds_a, ds_b)
    assert len(added) == 2 and {Path(k).suffix for k in added} == {".flac", ".json"}
    assert catalog.resolve_version(store) != read_manifest(store, ds_a).catalog_version
    # and the rerun without changes reuses everything
    assert build(cat_a, store_url) == ds_a2


def test_duplicates_links_and_truncated_files_are_found_and_reported(tmp_path: Path, store_url: str) -> None:
    root = folder(tmp_path / "music", {"low": [200, 220, 240, 260], "high": [2000, 2200, 2400, 2600]})
    (root / "low" / "s9-copy-of-s0.wav").write_bytes((root / "low" / "s0.wav").read_bytes())  # same genre: kept once
    pcm, _ = sf.read(root / "low" / "s1.wav", dtype="int16")
    sf.write(root / "high" / "s0.flac", pcm, SR, format="FLAC")  # low/s1 re-encoded losslessly, under another genre
    (root / "alias").symlink_to(".")  # a link back into the catalog: not a second copy
    os.symlink(tmp_path / "nowhere.wav", root / "low" / "gone.wav")  # dangling
    os.symlink(root / "high" / "loop-b.wav", root / "high" / "loop-a.wav")
    os.symlink(root / "high" / "loop-a.wav", root / "high" / "loop-b.wav")  # a loop
    outside = folder(tmp_path / "elsewhere", {"x": [3000]})
    (root / "high" / "more").symlink_to(outside / "x")  # a folder outside the catalog: followed
    cut = tone(tmp_path / "full.wav", 250, seconds=3.0).read_bytes()
    (root / "low" / "cut.wav").write_bytes(cut[: int(len(cut) * 0.6)])  # a copy cut short
    tone(root / "solo" / "only.wav", 5000)  # a genre with one file: train only

    ds = build(root, store_url)
    store = Store.open(store_url)

    q = quarantine(store, ds)
    stage, reason = q["low/s9-copy-of-s0.wav"]
    assert stage == "duplicate" and reason.endswith(
        "the same recording as track f07a8f87b42eabbc (low/s0.wav); kept once"
    )
    assert q["low/s1.wav"][0] == q["high/s0.flac"][0] == "label-conflict"
    assert "labelled high, but the same recording is track f02f00e18044c965 (low/s1.wav) in low" in q["high/s0.flac"][1]
    assert q["alias"][0] == "scan" and "inside the catalog" in q["alias"][1]
    assert "dangling symlink" in q["low/gone.wav"][1]
    assert "loop" in q["high/loop-a.wav"][1] and "loop" in q["high/loop-b.wav"][1]
    assert q["low/cut.wav"][0] == "decode" and "truncated: 1.8 s" in q["low/cut.wav"][1]
    assert len(q) == 8, q

    kept = dataset.read_splits(store, ds)
    assert kept is not None
    version = read_manifest(store, ds).catalog_version
    refs = dict(catalog.read_catalog(store, version).select("track_id", "source_ref").iter_rows())
    kept_refs = sorted(refs[t] for t in kept["track_id"])
    assert kept_refs == sorted(["low/s0.wav", "low/s2.wav", "low/s3.wav", "high/s0.wav", "high/s1.wav", "high/s2.wav",
                                "high/s3.wav", "high/more/s0.wav", "solo/only.wav"])  # fmt: skip
    warnings = read_manifest(store, ds).warnings
    assert len(warnings) == 1 and "'solo' (1 track)" in warnings[0] and "val or test" in warnings[0]


def test_decoding_a_many_channel_high_rate_file_keeps_memory_to_the_output(tmp_path: Path) -> None:
    # 60 s of 6 channels at 96 kHz: 138 MB as float32 at its own rate, 5 MB as mono at 22,050 Hz.
    path = tmp_path / "surround.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=96_000, channels=6, subtype="PCM_16") as f:
        for _ in range(60):
            f.write((0.1 * rng.standard_normal((96_000, 6))).astype(np.float32))

    tracemalloc.start()
    y = audio.decode(path, sr=22_050)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(y) == 60 * 22_050
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


def test_truncated_flac_and_wav_are_refused_with_what_to_do(tmp_path: Path) -> None:
    for fmt in ("WAV", "FLAC"):
        full = tone(tmp_path / f"full.{fmt.lower()}", 440, seconds=4.0, fmt=fmt)
        cut = tmp_path / f"cut.{fmt.lower()}"
        cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
        assert len(audio.decode(full, sr=SR)) == 4 * SR
        with pytest.raises(AudioError, match=r"truncated: .* header declares 4\.0 s .* copy or download it again") as e:
            audio.decode(cut, sr=SR)
        assert str(cut) in str(e.value)
