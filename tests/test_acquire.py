"""Acquiring tracks end to end on loopback: search, yt-dlp download, ffmpeg decode, segments, quarantine, reruns."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from genreclf.acquisition import audio
from genreclf.acquisition.acquire import TrackResult, acquire_track, content_hash_of
from genreclf.acquisition.audio import SegmentConfig
from genreclf.errors import TransientSourceError
from genreclf.sources.youtube import YT_DLP_VERSION, YoutubeConfig
from genreclf.store.keys import audio_key, sidecar_key
from genreclf.store.storage import Store
from tests.audio_server import AudioServer, SearchHit, make_audio

# Very long audio is cut at max_seconds (here 5 s): the rule is "decode the first max_seconds, record it".
SEG = SegmentConfig(window_s=1.0, hop_s=1.0, max_seconds=5.0)
ROOT = Path(__file__).resolve().parents[1]


def row(tid: str, uri: str | None = None, *, title: str = "", artists: tuple[str, ...] = (),
        duration: float | None = None, genre: str = "tone") -> dict[str, Any]:  # fmt: skip
    return {
        "track_id": tid, "title": title or None, "artists": list(artists), "artist_id": artists[0] if artists else None,
        "duration_s": duration, "isrc": None, "genre": genre, "label_source": "playlist", "source": "spotify",
        "source_ref": None, "snapshot_id": None, "artist_genre_vote": None, "audio_uri": uri,
    }  # fmt: skip


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "tone.mp3": make_audio(d / "tone.mp3", seconds=3, freq=440),
        "tone.webm": make_audio(d / "tone.webm", seconds=3, freq=660),
        "tone.m4a": make_audio(d / "tone.m4a", seconds=3, freq=880),
        "lofi.mp3": make_audio(d / "lofi.mp3", seconds=3, sr=8000, channels=1),
        "long.mp3": make_audio(d / "long.mp3", seconds=12),
        "big.mp3": make_audio(d / "big.mp3", seconds=40, codec_args=("-b:a", "192k")),
        "silence.mp3": make_audio(d / "silence.mp3", source="anullsrc=r=44100:cl=stereo", codec_args=("-t", "3")),
    }
    (d / "corrupt.mp3").write_bytes(b"\xff\xfb\x90" + bytes(range(256)) * 16)
    (d / "empty.mp3").write_bytes(b"")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", "-c:v", "mpeg4",
                    str(d / "video.mp4")], check=True)  # fmt: skip
    files.update({p.name: p for p in (d / "corrupt.mp3", d / "empty.mp3", d / "video.mp4")})
    return files


@pytest.fixture(scope="module")
def server(media: dict[str, Path]) -> Iterator[AudioServer]:
    with AudioServer() as srv:
        for name, path in media.items():
            srv.add_file(f"/{name}", path)
        srv.add_search(
            "artist - song",
            [SearchHit("Artist - Song (Live)", "/tone.mp3", 3.0, "live1"),
             SearchHit("Artist - Song (Official Audio)", "/tone.webm", 3.0, "off1"),
             SearchHit("Artist - Song extended", "/long.mp3", 60.0, "ext1")],
        )  # fmt: skip
        srv.add_search("far - away", [SearchHit("Far - Away (1 hour)", "/long.mp3", 3600.0, "hour1")])
        srv.add_search("odd - one", [SearchHit("Odd - One", "/tone.mp3", None, "nodur1")])
        srv.add_search(
            "gone - again",
            [SearchHit("Gone - Again (Official Audio)", "/removed.mp3", 3.0, "removed1"),
             SearchHit("Gone - Again", "/tone.m4a", 3.0, "alt1")],
        )  # fmt: skip
        yield srv


@pytest.fixture
def yt(server: AudioServer) -> YoutubeConfig:
    return YoutubeConfig(search=server.search_template, retries=1, backoff_s=0.01, socket_timeout_s=2.0)


def mixed_rows(server: AudioServer, media: dict[str, Path]) -> list[dict[str, Any]]:
    u = server.url
    return [
        row("searched", title="Song", artists=("Artist",), duration=3.0),
        row("webm", u("/tone.webm")),
        row("m4a", u("/tone.m4a")),
        row("mp3", u("/tone.mp3")),
        row("lofi", u("/lofi.mp3")),
        row("long", u("/long.mp3")),
        row("local", str(media["tone.mp3"])),
        row("corrupt", u("/corrupt.mp3")),
        row("empty", u("/empty.mp3")),
        row("video", u("/video.mp4")),
        row("silence", u("/silence.mp3")),
        row("missing", u("/missing.mp3")),
        row("page", u("/page.html")),
        row("local-corrupt", str(media["corrupt.mp3"])),
        row("nothing", title="Nothing", artists=("Nobody",), duration=200.0),
        row("far", title="Away", artists=("Far",), duration=3.0),
        row("notitle"),
    ]


EXPECTED_BAD = {  # track -> (stage, words in the reason)
    "corrupt": ("decode", "cannot decode"),
    "empty": ("download", "empty file (0 bytes)"),
    "video": ("decode", "no audio stream"),
    "silence": ("segment", "silent"),
    "missing": ("download", "HTTP 404"),
    "page": ("download", "no audio or video found"),
    "local-corrupt": ("decode", "cannot decode"),
    "nothing": ("match", "no search results for 'Nobody - Nothing'"),
    "far": ("match", "no candidate within tolerance"),
    "notitle": ("search", "no title to search for"),
}


def acquire_all(store: Store, rows: list[dict[str, Any]], yt: YoutubeConfig, scratch: Path) -> list[TrackResult]:
    return [acquire_track(store, r, cfg=SEG, yt=yt, scratch_dir=scratch) for r in rows]


def test_good_tracks_go_through_and_bad_ones_are_quarantined_with_reasons(
    server: AudioServer, media: dict[str, Path], yt: YoutubeConfig, tmp_path: Path
) -> None:
    store, scratch = Store.open(str(tmp_path / "store")), tmp_path / "scratch"
    results = {r.track_id: r for r in acquire_all(store, mixed_rows(server, media), yt, scratch)}

    bad = {t: (r.stage, r.reason) for t, r in results.items() if not r.ok}
    assert set(bad) == set(EXPECTED_BAD), bad
    for tid, (stage, words) in EXPECTED_BAD.items():
        assert bad[tid][0] == stage and words in bad[tid][1], (tid, bad[tid])
        assert bad[tid][1].startswith(f"track {tid} ("), bad[tid]
        assert not store.exists(sidecar_key(tid)) or tid == "silence"
    far_reason = bad["far"][1]
    assert "'Far - Away (1 hour)': duration 3600 s vs 3 s on Spotify (off by 3597 s, tolerance 10 s)" in far_reason

    for tid in ("searched", "webm", "m4a", "mp3", "lofi", "local"):
        assert results[tid].ok and results[tid].offsets == [0.0, 1.0, 2.0], (tid, results[tid])
        y, sr = audio.read_stored(store.read_bytes(results[tid].audio_key))
        assert sr == SEG.sample_rate and abs(len(y) / sr - 3.0) < 0.1, tid
        assert results[tid].audio_hash == audio.pcm_sha256(y), tid
        assert 0.05 < np.abs(y).max() <= 1.0, tid  # lavfi's sine peaks at 1/8
    assert results["long"].ok and results["long"].offsets == [0.0, 1.0, 2.0, 3.0, 4.0]

    side = store.read_json(sidecar_key("searched"))
    assert side["video_id"] == "off1" and side["title"] == "Artist - Song (Official Audio)"
    assert side["source_url"] == server.url("/tone.webm") and side["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert side["yt_dlp_version"] == YT_DLP_VERSION and 0.9 < side["match_score"] <= 1.0
    assert side["query"] == "Artist - Song" and [c["video_id"] for c in side["candidates"]] == ["off1", "live1", "ext1"]
    assert "off by 57 s" in side["candidates"][2]["reason"]
    assert store.read_json(sidecar_key("long"))["truncated_at_s"] == 5.0
    assert store.read_json(sidecar_key("mp3"))["extractor"] == "Generic"
    # a local file is stored under its bytes' hash, searched and downloaded audio under the track id
    local_hash = hashlib.sha256(media["tone.mp3"].read_bytes()).hexdigest()
    assert results["local"].audio_key == audio_key("local", local_hash) == f"audio/sha256/{local_hash}.flac"
    assert store.read_json(sidecar_key("local", local_hash))["source_uri"] == str(media["tone.mp3"])
    assert results["mp3"].audio_key == audio_key("mp3")
    assert not scratch.exists() or not any(scratch.rglob("*"))  # downloads are removed once stored

    # A rerun with the same inputs fetches nothing and gives the same answers: stored tracks are reused, and so
    # are failures (remembered under a hash of the row and the configs).
    requests = server.requests.copy()
    again = {r.track_id: r for r in acquire_all(store, mixed_rows(server, media), yt, scratch)}
    assert again == results
    assert server.requests == requests
    # Changed inputs try a failed track again: here a longer duration tolerance lets "far" match.
    lenient = dataclasses.replace(yt, duration_tolerance_s=4000.0)
    far = next(r for r in mixed_rows(server, media) if r["track_id"] == "far")
    assert acquire_track(store, far, cfg=SEG, yt=lenient, scratch_dir=scratch).ok
    # New windows re-cut the stored audio without fetching it.
    requests = server.requests.copy()
    recut = acquire_track(store, mixed_rows(server, media)[0], cfg=SegmentConfig(window_s=2.0, hop_s=1.0), yt=yt)
    assert recut.ok and recut.offsets == [0.0, 1.0] and server.requests == requests


def test_stored_audio_and_fingerprint_are_those_the_flac_round_trip_gave(tmp_path: Path) -> None:
    # Acquisition no longer decodes its own FLAC to fingerprint it: the fingerprint, the stored bytes and the
    # windows must be what decoding, writing with libsndfile and reading back gave (stores made before match).
    import io

    import soundfile as sf

    src = make_audio(tmp_path / "noise.mp3", source="anoisesrc=color=pink:amplitude=0.4:sample_rate=44100:duration=4")
    y = audio.decode(src, sr=SEG.sample_rate)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), SEG.sample_rate, format="FLAC", subtype="PCM_16")
    before, _ = audio.read_stored(buf.getvalue())
    store = Store.open(str(tmp_path / "store"))

    r = acquire_track(store, row("noise", str(src)), cfg=SEG, scratch_dir=tmp_path / "scratch")

    assert r.ok and r.audio_hash == audio.pcm_sha256(before)
    assert store.read_bytes(r.audio_key) == buf.getvalue()
    assert r.offsets == audio.segment(before, cfg=SEG)[1].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_audio_stored_as_wav_is_the_same_audio_and_either_format_is_reused(tmp_path: Path) -> None:
    """GENRECLF_AUDIO_FORMAT=wav stores the same 16-bit samples without encoding them: same fingerprint, windows
    and samples as FLAC; a track already stored in one format is reused, not decoded again, under the other."""
    import io

    import soundfile as sf

    src = make_audio(tmp_path / "noise.mp3", source="anoisesrc=color=pink:amplitude=0.4:sample_rate=44100:duration=4")
    flac_store, wav_store = Store.open(str(tmp_path / "flac")), Store.open(str(tmp_path / "wav"))
    scratch = tmp_path / "scratch"
    as_flac = acquire_track(flac_store, row("noise", str(src)), cfg=SEG, scratch_dir=scratch, audio_format="flac")
    as_wav = acquire_track(wav_store, row("noise", str(src)), cfg=SEG, scratch_dir=scratch, audio_format="wav")

    assert as_flac.audio_key.endswith(".flac") and as_wav.audio_key.endswith(".wav")
    assert (as_wav.audio_hash, as_wav.offsets) == (as_flac.audio_hash, as_flac.offsets)
    wav_bytes = wav_store.read_bytes(as_wav.audio_key)
    from_wav, sr = audio.read_stored(wav_bytes)
    assert sr == SEG.sample_rate and np.array_equal(
        from_wav, audio.read_stored(flac_store.read_bytes(as_flac.audio_key))[0]
    )
    info = sf.info(io.BytesIO(wav_bytes))  # a plain 16-bit mono WAV any tool reads: 44-byte header, then samples
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert len(wav_bytes) == 44 + 2 * len(from_wav)
    content = content_hash_of(row("noise", str(src)))
    assert wav_store.read_json(sidecar_key("noise", content))["audio_format"] == "wav"

    # Each store keeps what it has when the setting changes: nothing is decoded again (a new window size is only
    # segmented), and no copy in the other format appears.
    other = dataclasses.replace(SEG, window_s=2.0)
    for store, have, setting in ((wav_store, as_wav, "flac"), (flac_store, as_flac, "wav")):
        decoded_at = store.read_json(sidecar_key("noise", content))["decoded_at"]
        again = acquire_track(store, row("noise", str(src)), cfg=other, scratch_dir=scratch, audio_format=setting)
        assert (again.ok, again.audio_key, again.audio_hash) == (True, have.audio_key, have.audio_hash)
        assert store.read_json(sidecar_key("noise", content))["decoded_at"] == decoded_at
        assert not store.exists(audio_key("noise", content, setting))

    with pytest.raises(Exception, match="audio format 'mp3'"):
        audio.encode_with_samples(from_wav, sr=SEG.sample_rate, fmt="mp3")


def test_a_setting_that_does_not_fit_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from genreclf.errors import ConfigError
    from genreclf.settings import get_settings

    monkeypatch.setenv("GENRECLF_AUDIO_FORMAT", "mp3")
    with pytest.raises(ConfigError, match="GENRECLF_AUDIO_FORMAT='mp3': Input should be 'flac' or 'wav'"):
        get_settings()
    monkeypatch.setenv("GENRECLF_AUDIO_FORMAT", "wav")
    monkeypatch.setenv("GENRECLF_YOUTUBE_RETRIES", "many")
    with pytest.raises(ConfigError, match="GENRECLF_YOUTUBE_RETRIES='many'"):
        get_settings()


def test_a_result_without_duration_is_checked_once_decoded(
    server: AudioServer, yt: YoutubeConfig, tmp_path: Path
) -> None:
    r = acquire_track(Store.open(str(tmp_path / "s")), row("odd", title="One", artists=("Odd",), duration=200.0),
                      cfg=SEG, yt=yt, scratch_dir=tmp_path / "scratch")  # fmt: skip
    assert not r.ok and r.stage == "match" and "downloaded nodur1 is 3 s, the track 200 s" in r.reason


def test_an_unavailable_best_candidate_falls_back_to_the_next(
    server: AudioServer, yt: YoutubeConfig, tmp_path: Path
) -> None:
    store = Store.open(str(tmp_path / "s"))
    r = acquire_track(store, row("gone", title="Again", artists=("Gone",), duration=3.0), cfg=SEG, yt=yt,
                      scratch_dir=tmp_path / "scratch")  # fmt: skip
    assert r.ok and store.read_json(sidecar_key("gone"))["video_id"] == "alt1"


def test_transient_faults_are_retried_then_raised_for_the_task_to_retry(
    server: AudioServer, yt: YoutubeConfig, tmp_path: Path
) -> None:
    store = Store.open(str(tmp_path / "s"))
    server.fail("/tone.m4a", status=503, times=2)
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        acquire_track(store, row("t", server.url("/tone.m4a")), cfg=SEG, yt=yt, scratch_dir=tmp_path / "scratch")
    assert not store.exists(audio_key("t"))
    assert acquire_track(store, row("t", server.url("/tone.m4a")), cfg=SEG, yt=yt, scratch_dir=tmp_path / "x").ok


KILLED_RUN = """
import sys
from pathlib import Path
from genreclf.acquisition.acquire import acquire_track
from genreclf.acquisition.audio import SegmentConfig
from genreclf.sources.youtube import YoutubeConfig
from genreclf.store.storage import Store
url, store_url, scratch = sys.argv[1:4]
row = {"track_id": "big", "audio_uri": url}
acquire_track(Store.open(store_url), row, cfg=SegmentConfig(window_s=1.0, hop_s=1.0),
              yt=YoutubeConfig(retries=0), scratch_dir=Path(scratch))
"""


def test_a_download_killed_half_way_is_finished_by_the_rerun(
    server: AudioServer, media: dict[str, Path], yt: YoutubeConfig, tmp_path: Path
) -> None:
    store_url, scratch = str(tmp_path / "store"), tmp_path / "scratch"
    server.stalled.clear()
    server.release.clear()
    server.fail("/big.mp3", mode="stall", times=1, after=1)  # the probe passes; the download stalls half way
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN), server.url("/big.mp3"), store_url, str(scratch)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert server.stalled.wait(30), "the download never started"
        part = scratch / "big" / "big.mp3.part"
        deadline = time.monotonic() + 10
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        server.release.set()
        if proc.poll() is None:
            proc.kill()
    size = len(server.files["/big.mp3"][0])
    assert 0 < part.stat().st_size < size  # half a file, under a name nobody takes as finished
    store = Store.open(store_url)
    assert not store.exists(audio_key("big")) and not store.exists(sidecar_key("big"))

    r = acquire_track(store, row("big", server.url("/big.mp3")), cfg=SEG, yt=yt, scratch_dir=scratch)
    assert r.ok and r.offsets == [0.0, 1.0, 2.0, 3.0, 4.0]
    y, _ = audio.read_stored(store.read_bytes(audio_key("big")))
    want = audio.decode(media["big.mp3"], sr=SEG.sample_rate, max_seconds=SEG.max_seconds)
    assert len(y) == len(want) and np.allclose(y, want, atol=1e-4)  # the whole file, not the half
    assert any(p == "/big.mp3" and start > 0 for p, start in server.range_starts)  # the rerun resumed the part
    assert not (scratch / "big").exists()


# ----------------------------------------------------------------------------------------------------------
# Through Prefect: the build-dataset flow and the global limits


@pytest.fixture
def youtube_env(server: AudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRECLF_YOUTUBE_SEARCH", server.search_template)
    monkeypatch.setenv("GENRECLF_YOUTUBE_RETRIES", "1")
    monkeypatch.setenv("GENRECLF_YOUTUBE_BACKOFF_S", "0.01")
    monkeypatch.setenv("GENRECLF_YOUTUBE_SOCKET_TIMEOUT_S", "2")
    monkeypatch.setenv("GENRECLF_CACHE_DIR", str(tmp_path / "cache"))


def catalog_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    from genreclf.ingest.catalog import CATALOG_SCHEMA

    return pl.from_arrow(__import__("pyarrow").Table.from_pylist(rows, schema=CATALOG_SCHEMA))  # type: ignore[return-value]


@pytest.mark.usefixtures("prefect_server", "youtube_env")
def test_build_dataset_takes_a_mixed_catalog_to_segments_with_a_quarantine_table(
    server: AudioServer, media: dict[str, Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from genreclf.flows.build_dataset import build_dataset
    from genreclf.flows.params import DatasetParams
    from genreclf.ingest.catalog import write_catalog

    genres = ["low", "mid", "high"]
    good = [
        row("searched", title="Song", artists=("Artist",), duration=3.0, genre="high"),
        row("webm", server.url("/tone.webm"), genre="high"),  # what the search finds: the same recording
        row("m4a", server.url("/tone.m4a"), genre="high"),
        row("mp3", server.url("/tone.mp3"), genre="low"),
        row("lofi", server.url("/lofi.mp3"), genre="low"),
        row("long", server.url("/long.mp3"), genre="low"),
    ]
    for i, g in enumerate(genres * 2):
        local = make_audio(tmp_path / f"local{i}.m4a", seconds=3, freq=300 + 100 * i)
        good.append(row(f"local{i}", str(local), genre=g))
    bad = [
        row("missing", server.url("/missing.mp3"), genre="low"),
        row("far", title="Away", artists=("Far",), duration=3.0, genre="mid"),
        row("corrupt", server.url("/corrupt.mp3"), genre="high"),
    ]
    store_url = str(tmp_path / "store")
    version = write_catalog(Store.open(store_url), catalog_frame(good + bad))
    params = DatasetParams(window_s=1.0, hop_s=1.0, n_mels=16, n_fft=512, hop_length=256, sample_rate=16_000)

    dataset_id = build_dataset(version, params=params, storage_url=store_url)

    quarantine = Store.open(store_url).read_json(f"datasets/{dataset_id}/quarantine.json")
    assert {q["track_id"]: q["stage"] for q in quarantine} == {"missing": "download", "far": "match",
                                                                 "corrupt": "decode", "webm": "duplicate"}  # fmt: skip
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["quarantine"])))
    assert arts and "4 of 15 tracks quarantined" in (arts[0].description or "")

    requests = server.requests.copy()
    assert build_dataset(version, params=params, storage_url=store_url) == dataset_id
    assert server.requests == requests  # the rerun fetched nothing


@pytest.mark.usefixtures("prefect_server", "youtube_env")
def test_a_track_failing_transiently_is_quarantined_and_the_others_go_on(
    server: AudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    import genreclf.tasks.acquire

    server.fail("/lofi.mp3", status=503, times=2)
    rows = [row("ok", server.url("/tone.mp3")), row("flaky", server.url("/lofi.mp3"))]
    store_url = str(tmp_path / "store")

    @flow
    def acquire(rows: list[dict[str, Any]]) -> list[TrackResult]:
        return genreclf.tasks.acquire.acquire_tracks(store_url, rows, SEG)

    first = {r.track_id: r for r in acquire(rows)}
    assert first["ok"].ok and not first["flaky"].ok
    assert first["flaky"].stage == "download" and "HTTP 503" in first["flaky"].reason
    assert "a rerun tries again" in first["flaky"].reason
    second = {r.track_id: r for r in acquire(rows)}  # the failure was not cached: now it goes through
    assert second["flaky"].ok and second["ok"] == first["ok"]


@pytest.mark.usefixtures("prefect_server")
def test_limits_from_settings_are_created_and_missing_ones_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from genreclf.settings import get_settings
    from genreclf.tasks.acquire import ensure_limits, network_gate

    monkeypatch.setenv("GENRECLF_YOUTUBE_RATE_LIMIT", "test-yt-requests")
    monkeypatch.setenv("GENRECLF_YOUTUBE_CONCURRENCY_LIMIT", "test-yt-downloads")
    assert ensure_limits(get_settings()) == (None, None)  # neither exists: acquisition runs unlimited

    monkeypatch.setenv("GENRECLF_YOUTUBE_REQUESTS_PER_MINUTE", "30")
    monkeypatch.setenv("GENRECLF_YOUTUBE_MAX_CONCURRENT_DOWNLOADS", "2")
    assert ensure_limits(get_settings()) == ("test-yt-requests", "test-yt-downloads")
    with get_client(sync_client=True) as client:
        rate = client.read_global_concurrency_limit_by_name("test-yt-requests")
        conc = client.read_global_concurrency_limit_by_name("test-yt-downloads")
    assert (rate.limit, rate.slot_decay_per_second) == (1, 0.5) and conc.limit == 2
    monkeypatch.delenv("GENRECLF_YOUTUBE_REQUESTS_PER_MINUTE")
    assert ensure_limits(get_settings())[0] == "test-yt-requests"  # existing limits are used as they are

    @flow
    def gated(rate: str, conc: str) -> str:
        with network_gate(rate, conc)():
            return "ran"

    # Prefect 3.9 with strict=False: a missing limit logs a warning and is skipped; an existing one is taken.
    assert gated("test-yt-missing-rate", "test-yt-missing-conc") == "ran"
    assert gated("test-yt-requests", "test-yt-downloads") == "ran"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("test-yt-downloads").active_slots == 0  # released
