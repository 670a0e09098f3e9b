"""genreclf.dataset's pure parts: which acquired tracks are usable, and which genres a split lacks (no Prefect)."""

from __future__ import annotations

from typing import Any

from genreclf.acquire import TrackResult
from genreclf.dataset import split_warnings, usable_tracks


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
        "genre 'duo' (2 tracks) is not in val: it cannot be validated or tested there; add tracks of it",
        "genre 'solo' (1 track) is not in val or test: it cannot be validated or tested there; add tracks of it",
    ]
    assert split_warnings([{"genre": "rock", "split": "train"}]) == []  # one split in all: nothing is missing
