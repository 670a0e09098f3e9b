"""genreclf.datasets.dataset without Prefect: which acquired tracks are usable, which genres a split lacks, and the
samples acquisition hands to the shards."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from genreclf.acquisition import audio
from genreclf.acquisition.acquire import TrackResult, acquire_track
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import DecodedAudio
from genreclf.datasets.dataset import build_shard, finish_dataset, plan_dataset
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.tracks import PlannedTrack, split_warnings, usable_tracks
from genreclf.ingest.catalog import CatalogRow
from genreclf.store.storage import Store


def row(tid: str, genre: str) -> dict[str, Any]:
    return {"track_id": tid, "genre": genre, "source_ref": f"{genre}/{tid}.wav"}


def ok(tid: str, audio: str) -> TrackResult:
    return TrackResult(tid, True, [0.0], audio_key=f"audio/{audio}.flac", audio_hash=audio)


def test_usable_tracks_keep_a_recording_once_and_drop_label_conflicts() -> None:
    rows = [row("a", "rock"), row("b", "rock"), row("c", "jazz"), row("d", "rock"), row("e", "jazz"), row("f", "pop")]
    results = [ok("a", "h1"), ok("b", "h1"), ok("c", "h2"), ok("d", "h2"), ok("e", "h3")]
    results.append(TrackResult("f", False, stage="decode", reason="corrupt"))

    usable, quarantined = usable_tracks(rows, results)

    assert [t["track_id"] for t in usable] == ["a", "e"]
    assert usable[0]["audio_key"] == "audio/h1.flac" and usable[0]["offsets"] == [0.0]
    stages = {q.track_id: q.stage for q in quarantined}
    assert stages == {"b": "duplicate", "c": "label-conflict", "d": "label-conflict", "f": "decode"}
    reason = {q.track_id: q.reason for q in quarantined}
    assert reason["b"] == "track b (rock/b.wav): the same recording as track a (rock/a.wav); kept once"
    assert reason["c"].startswith("track c (jazz/c.wav): labelled jazz, but the same recording is track d (rock/d.wav)")


def test_split_warnings_name_each_genre_missing_from_a_split() -> None:
    tracks = [{"genre": "rock", "split": s} for s in ("train", "train", "val", "test")] + [
        {"genre": "solo", "split": "train"},
        {"genre": "duo", "split": "train"},
        {"genre": "duo", "split": "test"},
    ]

    warnings = split_warnings(tracks)

    assert warnings == [
        "genre 'duo' (2 tracks) is not in val: it cannot be validated; add tracks of it",
        "genre 'solo' (1 track) is not in val or test: it cannot be validated or tested; add tracks of it",
    ]
    assert split_warnings([{"genre": "rock", "split": "train"}]) == []  # one split in all: nothing is missing


# --- samples handed from acquisition to the shard: the same shard as from the stored FLAC ---------------------


def test_decoded_audio_keeps_the_newest_within_its_bytes_and_hands_each_over_once() -> None:
    handoff = DecodedAudio(max_bytes=3 * 400)
    for name in ("a", "b", "c", "d"):  # 400 bytes each: "a" goes to make room for "d"
        handoff.put(name, 22_050, np.full(100, ord(name), np.float32))
    handoff.put("huge", 22_050, np.zeros(1_000, np.float32))  # bigger than the whole: not kept, nothing dropped

    assert handoff.take("a", 22_050) is None
    assert handoff.take("b", 16_000) is None  # the same hash at another rate is other samples
    b = handoff.take("b", 22_050)
    assert b is not None and b[0] == ord("b")
    assert handoff.take("b", 22_050) is None  # taken once
    handoff.discard(["c", "missing"], 22_050)
    assert handoff.nbytes == 400 and handoff.take("d", 22_050) is not None and handoff.nbytes == 0


def test_a_shard_from_handed_over_samples_is_the_shard_from_the_stored_flac(tmp_path: Path) -> None:
    import soundfile as sf

    seg = SegmentConfig(window_s=0.5, hop_s=0.5, silence_db=-120.0)
    feat = FeatureConfig(n_mels=16, n_fft=256, hop_length=128)
    rng = np.random.default_rng(0)
    rows: list[CatalogRow] = []
    for i, genre in enumerate(("rock", "jazz", "rock")):
        path = tmp_path / f"t{i}.wav"  # 44.1 kHz stereo: decoding resamples and mixes down
        sf.write(path, rng.normal(0, 0.2, (round(1.3 * 44_100), 2)).astype(np.float32), 44_100)
        rows.append({"track_id": f"t{i}", "genre": genre, "audio_uri": str(path), "artist_id": f"a{i}"})  # type: ignore[typeddict-item]
    store = Store.open(str(tmp_path / "store"))
    handoff = DecodedAudio()

    results = [acquire_track(store, r, cfg=seg, scratch_dir=tmp_path / "scratch", handoff=handoff) for r in rows]
    tracks: list[PlannedTrack] = [
        {"track_id": r.track_id, "artist_id": row.get("artist_id"), "isrc": None, "genre": row["genre"],
         "offsets": r.offsets, "audio_key": r.audio_key, "audio_hash": r.audio_hash, "split": "train"}
        for r, row in zip(results, rows, strict=True)
    ]  # fmt: skip
    for t in tracks:  # what is handed over is what the stored FLAC gives back, bit for bit
        held = handoff.take(t["audio_hash"], seg.sample_rate)
        assert held is not None
        assert np.array_equal(held, audio.read_stored(store.read_bytes(t["audio_key"]))[0])
        handoff.put(t["audio_hash"], seg.sample_rate, held)
    handed = build_shard(store, "s/handed.parquet", tracks, labels=["jazz", "rock"], seg=seg, feat=feat,
                         handoff=handoff)  # fmt: skip

    assert handoff.nbytes == 0  # each track's samples were taken
    read_back = build_shard(store, "s/read.parquet", tracks, labels=["jazz", "rock"], seg=seg, feat=feat)
    assert store.read_bytes("s/handed.parquet") == store.read_bytes("s/read.parquet")
    assert handed["rows"] == read_back["rows"] == 9  # 3 windows of each 1.3 s track

    # Audio stored as WAV (GENRECLF_AUDIO_FORMAT=wav) is the same samples: the same tracks, the same shard.
    wav = Store.open(str(tmp_path / "wav"))
    as_wav = [acquire_track(wav, r, cfg=seg, scratch_dir=tmp_path / "scratch", audio_format="wav") for r in rows]
    assert [r.audio_hash for r in as_wav] == [t["audio_hash"] for t in tracks]
    wav_tracks = [t | {"audio_key": r.audio_key} for t, r in zip(tracks, as_wav, strict=True)]
    build_shard(wav, "s/read.parquet", wav_tracks, labels=["jazz", "rock"], seg=seg, feat=feat)  # type: ignore[arg-type]
    assert wav.read_bytes("s/read.parquet") == store.read_bytes("s/read.parquet")


def test_planning_drops_the_samples_no_shard_will_take(tmp_path: Path) -> None:
    import soundfile as sf

    seg = SegmentConfig(window_s=0.5, hop_s=0.5, silence_db=-120.0)
    feat = FeatureConfig(n_mels=16, n_fft=256, hop_length=128)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", rng.normal(0, 0.2, 30_000).astype(np.float32), 22_050)
    shutil.copy(tmp_path / "a.wav", tmp_path / "copy.wav")  # the same recording, labelled otherwise: quarantined
    rows: list[CatalogRow] = [
        {"track_id": name, "genre": genre, "audio_uri": str(tmp_path / f"{name}.wav"), "artist_id": name}  # type: ignore[typeddict-item]
        for name, genre in (("a", "rock"), ("copy", "jazz"), ("b", "rock"))
    ]
    store = Store.open(str(tmp_path / "store"))
    handoff = DecodedAudio()
    results = [acquire_track(store, r, cfg=seg, scratch_dir=tmp_path / "scratch", handoff=handoff) for r in rows]
    one_track = 30_000 * 4  # float32 samples at the same rate: nothing to resample
    assert handoff.nbytes == 2 * one_track  # a and its copy are one recording

    plan = plan_dataset(store, "v1", rows, results, seg=seg, feat=feat, split_seed=0, handoff=handoff)

    assert [t["track_id"] for t in plan.tracks] == ["b"]
    assert handoff.nbytes == one_track
    entries = [build_shard(store, s.key, s.tracks, labels=plan.labels, seg=seg, feat=feat, handoff=handoff)
               for s in plan.shards]  # fmt: skip
    assert handoff.nbytes == 0 and sum(e["rows"] for e in entries) == 3
    finish_dataset(store, plan, entries)
    again = [acquire_track(store, r, cfg=seg, handoff=handoff) for r in rows]  # stored: nothing decoded, nothing kept
    assert handoff.nbytes == 0
    assert plan_dataset(store, "v1", rows, again, seg=seg, feat=feat, split_seed=0, handoff=handoff).built
