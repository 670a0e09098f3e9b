"""Near-duplicate detection on synthesized songs: real ffmpeg re-encodes, trims and gain changes are found with
their offsets; distinct songs (same tempo and drum pattern too), short and silent tracks are not paired."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from genreclf.acquisition.audio import decode
from genreclf.datasets.features import FeatureConfig, log_mel
from genreclf.errors import DataError
from genreclf.labels.duplicates import (
    DuplicatePair,
    find_near_duplicates,
    fingerprint,
    fingerprint_dim,
    step_seconds,
    window_seconds,
)

CFG = FeatureConfig()
SR = CFG.sample_rate
SONG_S = 20.0
# Offsets come from whole fingerprint steps (0.255 s) refined by interpolation: within 0.1 s, GTZAN copies 0.02 s.
OFFSET_TOL_S = 0.1
TRIM_S = 13.5 * step_seconds(CFG)  # half-way between two steps: the hardest case for the offset


@cache
def song(seed: int, *, bpm: float = 120.0, drums_seed: int | None = None) -> np.ndarray:
    """~SONG_S s of a seeded 'song' (samples,) float32: chords of harmonic tones, a bass line and noise-burst drums.

    Songs with different seeds differ in harmony and melody; `drums_seed` lets two songs share tempo and drums.
    """
    rng = np.random.default_rng(seed)
    drum_rng = np.random.default_rng(seed if drums_seed is None else drums_seed)
    beat = int(SR * 60 / bpm)
    n = int(SONG_S * SR)
    y = np.zeros(n + 2 * beat, np.float32)  # cut to n at the end, so the song sounds to its last sample
    t = np.arange(2 * beat) / SR
    env = np.exp(-3 * t).astype(np.float32)
    for start in range(0, n, 2 * beat):  # a chord every two beats
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        for interval in (0, rng.choice([3, 4]), 7, rng.choice([10, 11, 12])):
            f0 = root * 2 ** (interval / 12)
            for h in range(1, 6):
                y[start : start + 2 * beat] += (0.08 / h * np.sin(2 * np.pi * f0 * h * t) * env).astype(np.float32)
        melody = 440 * 2 ** (rng.integers(0, 12) / 12)
        y[start : start + beat] += (0.1 * np.sin(2 * np.pi * melody * t[:beat]) * env[:beat]).astype(np.float32)
    pattern = drum_rng.random(8) < 0.6  # which eighth notes get a burst
    burst = int(0.06 * SR)
    shape = drum_rng.uniform(0.2, 1.0, 8)
    for k, start in enumerate(range(0, n, beat // 2)):
        if pattern[k % 8]:
            y[start : start + burst] += shape[k % 8] * 0.3 * rng.standard_normal(burst) * np.exp(-40 * t[:burst])
    return y[:n] / np.abs(y[:n]).max() * 0.7


def ffmpeg_copy(
    y: np.ndarray, path: Path, *, trim_start_s: float = 0.0, keep_s: float | None = None, gain_db: float = 0.0
) -> np.ndarray:
    """Write `y` as 16-bit WAV, re-encode it with ffmpeg to `path` (codec from the suffix) trimmed and at another
    gain, and decode it back with genreclf -> (samples,)."""
    src = path.with_suffix(".src.wav")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0", str(src)],
        input=y.astype(np.float32).tobytes(),
        check=True,
    )
    cmd = ["ffmpeg", "-v", "error", "-y", "-ss", f"{trim_start_s:.3f}", "-i", str(src)]
    if keep_s is not None:
        cmd += ["-t", f"{keep_s:.3f}"]
    cmd += ["-af", f"volume={gain_db}dB"]
    cmd += ["-c:a", "libmp3lame", "-b:a", "32k"] if path.suffix == ".mp3" else []
    subprocess.run([*cmd, str(path)], check=True)
    return decode(path, sr=SR)


def fp(y: np.ndarray) -> np.ndarray:
    return fingerprint(log_mel(y, cfg=CFG), cfg=CFG)


def pair_of(pairs: list[DuplicatePair], a: str, b: str) -> DuplicatePair | None:
    return next((p for p in pairs if {p.a, p.b} == {a, b}), None)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Five distinct songs (two share tempo and drums) and three copies of songs 1 and 2 made by ffmpeg."""
    tmp = tmp_path_factory.mktemp("dups")
    songs = {f"song{i}": song(i) for i in range(1, 4)}
    songs["song4"] = song(4, drums_seed=1)  # same tempo and drums as song1, other chords and melody
    songs["song5"] = song(5, bpm=96.0)
    prints = {k: fp(y) for k, y in songs.items()}
    # mp3 at 32 kbit/s, first TRIM_S (3.45 s) cut, 8 dB quieter: song1's audio starts TRIM_S before the copy's.
    prints["copy1-mp3"] = fp(ffmpeg_copy(songs["song1"], tmp / "c1.mp3", trim_start_s=TRIM_S, gain_db=-8))
    # the last 6 s cut, 6 dB louder.
    prints["copy1-end"] = fp(ffmpeg_copy(songs["song1"], tmp / "c1.wav", keep_s=SONG_S - 6, gain_db=6))
    # a different excerpt: song2 from 5.1 s, re-encoded and quieter, padded with 4 s of the next 'song'.
    tail = ffmpeg_copy(songs["song2"], tmp / "c2.mp3", trim_start_s=5.1, gain_db=-6)
    prints["xcopy2"] = fp(np.concatenate([tail, song(6)[: 4 * SR]]))
    return prints


def test_copies_are_found_with_their_offsets(catalog: dict[str, np.ndarray]) -> None:
    pairs = find_near_duplicates(catalog, cfg=CFG)

    mp3 = pair_of(pairs, "song1", "copy1-mp3")
    end = pair_of(pairs, "song1", "copy1-end")
    excerpt = pair_of(pairs, "song2", "xcopy2")
    assert mp3 is not None and end is not None and excerpt is not None, pairs
    # a = copy1-mp3 < b = song1: song1 starts TRIM_S before the copy.
    assert (mp3.a, mp3.b) == ("copy1-mp3", "song1")
    assert mp3.offset_s == pytest.approx(-TRIM_S, abs=OFFSET_TOL_S)
    assert end.offset_s == pytest.approx(0.0, abs=OFFSET_TOL_S)
    assert (excerpt.a, excerpt.b) == ("song2", "xcopy2")
    assert excerpt.offset_s == pytest.approx(5.1, abs=OFFSET_TOL_S)
    assert mp3.overlap_s == pytest.approx(SONG_S - TRIM_S, abs=1.0)
    assert excerpt.overlap_s == pytest.approx(SONG_S - 5.1, abs=1.0)  # the 4 s of song6 do not count
    assert min(p.similarity for p in (mp3, end, excerpt)) > 0.8


def test_distinct_songs_are_not_paired(catalog: dict[str, np.ndarray]) -> None:
    pairs = find_near_duplicates(catalog, cfg=CFG)

    families = {"song1": 1, "copy1-mp3": 1, "copy1-end": 1, "song2": 2, "xcopy2": 2, "song3": 3, "song4": 4}
    assert all(families.get(p.a, p.a) == families.get(p.b, p.b) for p in pairs), pairs
    assert len(pairs) == 4  # song1 with both copies, the two copies with each other, song2 with its excerpt
    assert [p.similarity for p in pairs] == sorted((p.similarity for p in pairs), reverse=True)
    # Without the overlap floor too: same tempo and drums (song1, song4) share windows, not a recording.
    originals = {k: v for k, v in catalog.items() if k.startswith("song")}
    assert find_near_duplicates(originals, cfg=CFG, min_overlap_s=0.0) == []


def test_thresholds_filter_pairs(catalog: dict[str, np.ndarray]) -> None:
    assert find_near_duplicates(catalog, cfg=CFG, min_similarity=1.01) == []
    seconds = {t: (len(f) - 1) * step_seconds(CFG) + window_seconds(CFG) for t, f in catalog.items()}
    long = find_near_duplicates(catalog, cfg=CFG, min_overlap_s=16.0)
    # A pair shares min_overlap_s, or half of the shorter track where that is less: song2's excerpt shares ~15 s.
    assert all(p.overlap_s >= min(16.0, 0.5 * min(seconds[p.a], seconds[p.b])) for p in long)
    assert pair_of(long, "song2", "xcopy2") is not None
    strict = find_near_duplicates(catalog, cfg=CFG, min_overlap_s=16.0, min_similarity=0.99)
    assert pair_of(strict, "song2", "xcopy2") is None


def test_gain_changes_nothing() -> None:
    m = log_mel(song(1), cfg=CFG)

    louder = fingerprint(m + np.log(10.0), cfg=CFG)  # +10 dB of power

    np.testing.assert_allclose(louder, fingerprint(m, cfg=CFG), atol=1e-4)


def test_no_pairs_from_empty_or_single_input() -> None:
    assert find_near_duplicates({}, cfg=CFG) == []
    assert find_near_duplicates({"only": fp(song(1))}, cfg=CFG) == []
    no_rows = np.zeros((0, fingerprint_dim(CFG)), np.float32)
    assert find_near_duplicates({"a": no_rows, "b": no_rows}, cfg=CFG) == []


def test_a_track_shorter_than_a_window_has_no_rows_and_never_pairs() -> None:
    short = song(1)[: int(0.8 * window_seconds(CFG) * SR)]

    rows = fp(short)

    assert rows.shape == (0, fingerprint_dim(CFG))
    assert find_near_duplicates({"a": fp(song(1)), "short": rows}, cfg=CFG) == []


def test_silence_never_matches() -> None:
    # Two different songs ending in the same zero-padded tail (as a track's last segment is): silent windows are
    # all-zero rows, so the shared padding is no evidence.
    pad = np.zeros(12 * SR, np.float32)
    a, b = fp(np.concatenate([song(1)[: 8 * SR], pad])), fp(np.concatenate([song(3)[: 8 * SR], pad]))

    assert not np.abs(a[-10:]).any()
    assert find_near_duplicates({"a": a, "b": b}, cfg=CFG, min_similarity=0.0, min_overlap_s=0.0) == []


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(DataError, match="n_mels"):
        fingerprint(np.zeros((64, 500), np.float32), cfg=CFG)
    with pytest.raises(DataError, match="expected"):
        find_near_duplicates({"a": np.zeros((3, 5), np.float32), "b": np.zeros((3, 5), np.float32)}, cfg=CFG)
