"""Decoding files ffmpeg makes, the errors users meet, the window rule, FLAC round trips and the config hash."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from genreclf.acquisition import audio
from genreclf.acquisition.audio import SegmentConfig, decode, encode_flac, read_stored, segment, segment_offsets
from genreclf.errors import AudioError, ConfigError

SR = 22_050

# Lossy codecs are encoded at these settings; their decoders trim the encoder delay, so lengths stay close.
ENCODE_ARGS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "opus": ["-c:a", "libopus", "-b:a", "64k"],
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def write_audio(path: Path, y: np.ndarray, *, sr: int = SR) -> Path:
    """Write `y` ((samples,) or (samples, channels)) in the format of `path`'s suffix."""
    fmt = path.suffix.lstrip(".")
    if fmt in ("wav", "flac"):
        sf.write(path, y, sr, subtype="FLOAT" if fmt == "wav" else "PCM_16")
    else:
        wav = path.with_suffix(".src.wav")
        sf.write(wav, y, sr, subtype="FLOAT")
        ffmpeg("-i", str(wav), *ENCODE_ARGS[fmt], str(path))
    return path


def peak_hz(y: np.ndarray, sr: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(y)))) * sr / len(y)


def stereo(y: np.ndarray) -> np.ndarray:
    return np.stack([y, y], axis=1)


# --- decode -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
def test_decode_gives_mono_float32_at_requested_rate(fmt: str, tone: np.ndarray, tmp_path: Path) -> None:
    path = write_audio(tmp_path / f"tone.{fmt}", stereo(tone))

    y = decode(path, sr=16_000)

    assert y.dtype == np.float32
    assert y.ndim == 1
    # Lossy decoders trim their encoder delay; allow a few milliseconds either way.
    assert abs(len(y) - 16_000) <= 80
    assert peak_hz(y, 16_000) == pytest.approx(440, abs=2)


def test_decode_of_mono_wav_at_its_own_rate_is_sample_exact(tone: np.ndarray, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.wav", tone)

    np.testing.assert_array_equal(decode(path, sr=SR), tone)


def test_decode_downmixes_stereo_to_the_channel_mean(tone: np.ndarray, tmp_path: Path) -> None:
    # Identical channels must give back the channel itself (librosa.to_mono's mean), not a louder sum.
    # ffmpeg's default `-ac 1` matrix weights each channel by 1/sqrt(2), making stereo 3 dB hotter than mono
    # and pushing loud masters past full scale (encode_flac then clips them).
    path = write_audio(tmp_path / "stereo.wav", stereo(tone))

    y = decode(path, sr=SR)

    np.testing.assert_allclose(y, tone, atol=1e-6)


def test_decode_resamples(tone: np.ndarray, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.wav", tone)

    y = decode(path, sr=8_000)

    assert len(y) == 8_000
    assert peak_hz(y, 8_000) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("fmt", ["wav", "flac", "opus"])
def test_decode_from_bytes_matches_decode_from_path(fmt: str, tone: np.ndarray, tmp_path: Path) -> None:
    path = write_audio(tmp_path / f"tone.{fmt}", tone)

    from_bytes = decode(path.read_bytes(), sr=SR)

    np.testing.assert_array_equal(from_bytes, decode(path, sr=SR))


def test_decode_mp3_from_bytes_keeps_the_encoder_padding(tone: np.ndarray, tmp_path: Path) -> None:
    # Pinned behaviour: through a pipe ffmpeg cannot trim the LAME end padding, so the same mp3 read from S3
    # (bytes) is a few hundred near-silent samples longer than read from a path; the start is identical.
    path = write_audio(tmp_path / "tone.mp3", tone)
    from_path = decode(path, sr=SR)

    from_bytes = decode(path.read_bytes(), sr=SR)

    np.testing.assert_array_equal(from_bytes[: len(from_path)], from_path)
    assert 0 <= len(from_bytes) - len(from_path) <= 1152
    assert np.abs(from_bytes[len(from_path) :]).max(initial=0) < 0.01


def test_decode_stops_at_max_seconds(tone: np.ndarray, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.flac", tone)

    # 0.25 s is 5512.5 samples: libsndfile rounds to even, ffmpeg (m4a, bytes it cannot sniff) up.
    assert len(decode(path, sr=SR, max_seconds=0.25)) in (5512, 5513)
    assert len(decode(write_audio(tmp_path / "tone.wav", tone), sr=SR, max_seconds=0.5)) == SR // 2


def test_decode_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.mp3"

    with pytest.raises(AudioError, match="no such file") as e:
        decode(path, sr=SR)
    assert str(path) in str(e.value)


def test_decode_zero_length_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.touch()

    with pytest.raises(AudioError, match="empty") as e:
        decode(path, sr=SR)
    assert str(path) in str(e.value)


def test_decode_zero_bytes_uses_the_given_name() -> None:
    with pytest.raises(AudioError, match=r"^song\.mp3: file is empty"):
        decode(b"", sr=SR, name="song.mp3")


def test_decode_garbage_named_mp3_fails_clearly(rng: np.random.Generator, tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp3"
    path.write_bytes(rng.bytes(4096))

    with pytest.raises(AudioError, match="cannot decode") as e:
        decode(path, sr=SR)
    assert str(path) in str(e.value)


def test_decode_garbage_bytes_uses_the_given_name(rng: np.random.Generator) -> None:
    with pytest.raises(AudioError, match=r"^garbage\.mp3: cannot decode"):
        decode(rng.bytes(4096), sr=SR, name="garbage.mp3")


# What a catalog folder holds by mistake under an audio name: a note, a web page saved by a failed download, and
# bytes that open like an MP3 frame (libsndfile hands those to mpg123, which prints to fd 2 past Python).
NOT_AUDIO = {
    "note.mp3": b"hello\n",
    "page.mp3": b"<!DOCTYPE html>\n<html><body>Too many requests</body></html>\n",
    "frames.mp3": b"\xff\xfb\x90" + bytes(range(256)) * 16,
    "tagged.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x23" + bytes(35) + b"hello world\n" * 10,
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_decode_not_audio_named_mp3_is_one_quiet_line(name: str, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    path = tmp_path / name
    path.write_bytes(NOT_AUDIO[name])

    with pytest.raises(AudioError) as e:
        decode(path, sr=SR)

    with pytest.raises(AudioError) as from_bytes:
        decode(path.read_bytes(), sr=SR, name=name)

    for message, label in ((str(e.value), str(path)), (str(from_bytes.value), name)):
        assert message.startswith(f"{label}: cannot decode: not ")
        assert message.count(name) == 1
        assert "\n" not in message
        assert message.endswith("; remove it, or replace it with the audio file")
    assert capfd.readouterr() == ("", "")  # nothing from libsndfile, mpg123 or ffmpeg reaches the terminal


def test_decode_text_named_mp3_quotes_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "page.mp3"
    path.write_bytes(NOT_AUDIO["page.mp3"])

    with pytest.raises(AudioError, match=r"not audio but text \('<!DOCTYPE html>'"):
        decode(path, sr=SR)


def test_mp3_with_bytes_before_its_first_frame_still_decodes(tone: np.ndarray, tmp_path: Path) -> None:
    # Not an ID3 tag nor a frame at the start: ffmpeg, which searches for the first frame, reads it.
    mp3 = write_audio(tmp_path / "tone.mp3", tone).read_bytes()
    padded = tmp_path / "padded.mp3"
    padded.write_bytes(bytes(100) + mp3)

    y = decode(padded, sr=SR)

    assert abs(len(y) - len(tone)) < 0.1 * SR
    assert peak_hz(y, SR) == pytest.approx(440, abs=3)


def test_a_real_mp3_decodes_with_nothing_on_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    # The demo's drone, 20 s at 96 kbit/s: decoded in blocks, libsndfile's mpg123 printed "part2_3_length (2496)
    # too large for available bit count (2408)" to fd 2 three times, hundreds of lines over a catalog's progress bars.
    from genreclf.app.demo import make_demo_catalog

    drone = sorted((make_demo_catalog(tmp_path / "demo", tracks_per_genre=3, seconds=20.0) / "drone").iterdir())[0]
    path = tmp_path / "drone.mp3"
    ffmpeg("-i", str(drone), "-b:a", "96k", str(path))
    capfd.readouterr()

    for source in (path, path.read_bytes()):
        y = decode(source, sr=SR)
        assert abs(len(y) - 20 * SR) < 0.1 * SR

    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("name", "lavfi_args"),
    [
        ("video.mp4", ["-f", "lavfi", "-i", "color=c=red:s=32x32:d=1", "-c:v", "mpeg4"]),
        ("cover.png", ["-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1"]),
    ],
)
def test_decode_file_without_audio_stream_says_so(name: str, lavfi_args: list[str], tmp_path: Path) -> None:
    path = tmp_path / name
    ffmpeg(*lavfi_args, str(path))

    with pytest.raises(AudioError, match="no audio stream") as e:
        decode(path, sr=SR)
    assert str(e.value).startswith(f"{path}: ")
    assert "use a file with a sound track, or remove this one" in str(e.value)
    with pytest.raises(AudioError, match=rf"^{name}: no audio stream"):
        decode(path.read_bytes(), sr=SR, name=name)


# A second of tone (stereo) as the sound track of each container, beside a tiny video track where the container
# holds video: what a concert film, a music video or an audiobook in a genre folder looks like.
# name -> (audio encoder arguments, video encoder or None)
CONTAINERS: dict[str, tuple[list[str], str | None]] = {
    "clip.mp4": (["-c:a", "aac", "-b:a", "64k"], "mpeg4"),
    "clip.mov": (["-c:a", "aac", "-b:a", "64k"], "mpeg4"),
    "clip.m4v": (["-c:a", "aac", "-b:a", "64k"], "mpeg4"),
    "clip.3gp": (["-c:a", "aac", "-b:a", "32k"], "h263"),
    "clip.mkv": (["-c:a", "libopus", "-b:a", "48k"], "mpeg4"),
    "clip.webm": (["-c:a", "libopus", "-b:a", "48k"], "libvpx"),
    "clip.avi": (["-c:a", "libmp3lame", "-b:a", "64k"], "mpeg4"),
    "book.m4b": (["-c:a", "aac", "-b:a", "64k", "-f", "ipod"], None),
    "song.wma": (["-c:a", "wmav2", "-b:a", "64k"], None),
    "song.ac3": (["-c:a", "ac3", "-b:a", "96k"], None),
    "song.mka": (["-c:a", "flac"], None),
}


def write_container(
    path: Path, y: np.ndarray, audio_args: list[str], video: str | None = None, *, sr: int = SR
) -> Path:
    """Encode `y` with `audio_args` into `path`, beside a 16x16 picture track encoded with `video` if given."""
    wav = path.with_suffix(".src.wav")
    sf.write(wav, y, sr, subtype="FLOAT")
    inputs = ["-i", str(wav)]
    if video:
        size = "176x144" if video == "h263" else "16x16"  # H.263 has a few fixed sizes
        inputs += ["-f", "lavfi", "-i", f"color=c=red:s={size}:r=5"]
        audio_args = [*audio_args, "-c:v", video, "-shortest"]
    ffmpeg(*inputs, *audio_args, str(path))
    wav.unlink()
    return path


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_decode_takes_the_sound_track_of_any_container(name: str, tone: np.ndarray, tmp_path: Path) -> None:
    path = write_container(tmp_path / name, stereo(tone), *CONTAINERS[name])

    y = decode(path, sr=16_000)

    assert y.dtype == np.float32 and y.ndim == 1
    # Encoder delay and frame padding differ by codec (AAC, AC-3 and WMA frames are up to 2048 samples).
    assert abs(len(y) - 16_000) <= 0.1 * 16_000
    assert peak_hz(y, 16_000) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("index", ["at-end", "faststart"])
def test_decode_mp4_from_bytes_whatever_the_index_position(
    index: str, rng: np.random.Generator, tmp_path: Path
) -> None:
    # From S3 a file arrives as bytes. An mp4 whose index (moov) follows the media cannot be read from a pipe:
    # ffmpeg decodes nothing and exits 0. Ten seconds are past what ffmpeg's probe buffers hold.
    t = np.arange(10 * SR) / SR
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)
    faststart = ["-movflags", "+faststart"] if index == "faststart" else []
    path = write_container(tmp_path / "clip.mp4", y, ["-c:a", "aac", "-b:a", "64k", *faststart], "mpeg4")
    assert (path.read_bytes()[:4096].find(b"moov") > 0) == (index == "faststart")

    from_bytes = decode(path.read_bytes(), sr=SR, name="clip.mp4")

    np.testing.assert_array_equal(from_bytes, decode(path, sr=SR))
    assert abs(len(from_bytes) - 10 * SR) < 0.05 * SR  # AAC frames of 1024 samples, priming


def test_truncated_mp3_decodes_to_a_shorter_signal(tone: np.ndarray, tmp_path: Path) -> None:
    # What happens, pinned: ffmpeg decodes the frames that are there and stops, without an error.
    # The acquisition step's duration check is what catches a cut download, not decode().
    full = write_audio(tmp_path / "full.mp3", tone)
    half = tmp_path / "half.mp3"
    data = full.read_bytes()
    half.write_bytes(data[: len(data) // 2])

    y = decode(half, sr=SR)

    assert 0.3 * SR < len(y) < 0.7 * SR
    assert peak_hz(y, SR) == pytest.approx(440, abs=3)


# --- segment_offsets: the tail rule ---------------------------------------------------------------------------

# 100 samples a second and 1 s windows keep the arithmetic readable.
WIN = SegmentConfig(sample_rate=100, window_s=1.0, hop_s=1.0, min_fill=0.5)


@pytest.mark.parametrize(
    ("n_samples", "offsets"),
    [
        (300, [0, 100, 200]),  # whole windows only
        (250, [0, 100, 200]),  # tail of exactly min_fill is kept (and padded)
        (249, [0, 100]),  # tail just under min_fill is dropped
        (100, [0]),
        (50, [0]),  # a short track that fills half a window is one padded window
        (49, []),
        (0, []),
    ],
)
def test_segment_offsets_tail_rule(n_samples: int, offsets: list[int]) -> None:
    assert segment_offsets(n_samples, cfg=WIN) == offsets


@pytest.mark.parametrize(
    ("n_samples", "offsets"),
    [
        (250, [0, 50, 100, 150]),  # the window at 150 ends exactly at the end: stop there
        (260, [0, 50, 100, 150, 200]),  # tail of 60 >= 50 is a padded window
        (240, [0, 50, 100, 150]),  # window at 150 holds 90 samples: padded; no window after it
        (199, [0, 50, 100]),
    ],
)
def test_segment_offsets_with_hop_smaller_than_window(n_samples: int, offsets: list[int]) -> None:
    cfg = dataclasses.replace(WIN, hop_s=0.5)

    assert segment_offsets(n_samples, cfg=cfg) == offsets


@pytest.mark.parametrize("hop_s", [0.25, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("min_fill", [0.0, 0.3, 0.5, 1.0])
def test_segment_offsets_invariants(hop_s: float, min_fill: float) -> None:
    cfg = dataclasses.replace(WIN, hop_s=hop_s, min_fill=min_fill)
    hop = round(hop_s * 100)
    for n in range(1, 520, 7):
        offsets = segment_offsets(n, cfg=cfg)
        assert all(n - o >= min_fill * 100 for o in offsets), (n, offsets)
        assert offsets == [i * hop for i in range(len(offsets))], (n, offsets)
        if offsets and hop <= 100:
            # The last window reaches the end, or the next one would be too empty to keep.
            last = offsets[-1]
            assert last + 100 >= n or n - (last + hop) < min_fill * 100, (n, offsets)


def test_segment_offsets_rejects_zero_window() -> None:
    with pytest.raises(ConfigError, match="positive"):
        segment_offsets(1000, cfg=dataclasses.replace(WIN, window_s=0.0))
    with pytest.raises(ConfigError, match="positive"):
        segment_offsets(1000, cfg=dataclasses.replace(WIN, hop_s=0.0))


# --- segment ------------------------------------------------------------------------------------------------

# 0.4 s windows over a 1 s tone: two whole windows and a tail of exactly half a window.
SEG = SegmentConfig(sample_rate=SR, window_s=0.4, hop_s=0.4, min_fill=0.5)
SEG_WIN = round(0.4 * SR)


def test_segment_cuts_windows_and_pads_the_tail(tone: np.ndarray) -> None:
    windows, offsets = segment(tone, cfg=SEG)

    assert windows.shape == (3, SEG_WIN)
    assert windows.dtype == np.float32
    np.testing.assert_allclose(offsets, [0.0, 0.4, 0.8])
    np.testing.assert_array_equal(windows[1], tone[SEG_WIN : 2 * SEG_WIN])
    tail = len(tone) - 2 * SEG_WIN
    np.testing.assert_array_equal(windows[2, :tail], tone[2 * SEG_WIN :])
    assert not windows[2, tail:].any()


def test_segment_drops_silent_windows(tone: np.ndarray, rng: np.random.Generator) -> None:
    y = tone.copy()
    y[SEG_WIN : 2 * SEG_WIN] = rng.normal(0, 1e-5, SEG_WIN)  # -100 dBFS: silence with a noise floor

    windows, offsets = segment(y, cfg=SEG)

    np.testing.assert_allclose(offsets, [0.0, 0.8])
    np.testing.assert_array_equal(windows[0], tone[:SEG_WIN])


def test_segment_of_a_too_short_track_says_too_short(tone: np.ndarray) -> None:
    with pytest.raises(AudioError, match="too short"):
        segment(tone[: SEG_WIN // 2 - 1], cfg=SEG)


@pytest.mark.parametrize("level", [0.0, 1e-4])
def test_segment_of_a_silent_track_says_silent(level: float, rng: np.random.Generator) -> None:
    y = rng.normal(0, level, SR).astype(np.float32)  # 0 or -80 dBFS

    with pytest.raises(AudioError, match="silent"):
        segment(y, cfg=SEG)


# --- FLAC ---------------------------------------------------------------------------------------------------


def test_flac_round_trip_within_16_bit(tone: np.ndarray) -> None:
    y, sr = read_stored(encode_flac(tone, sr=SR))

    assert sr == SR
    assert y.dtype == np.float32
    assert y.shape == tone.shape
    assert np.abs(y - tone).max() <= 1 / 32_768


def test_flac_clips_out_of_range_samples() -> None:
    y = np.array([1.5, -1.5, 0.25] * 100, dtype=np.float32)

    back, _ = read_stored(encode_flac(y, sr=SR))

    np.testing.assert_allclose(back[:3], [32_767 / 32_768, -1.0, 0.25], atol=1e-6)


def _libsndfile_flac(y: np.ndarray) -> bytes:
    """What `encode_flac` wrote before it quantized in numpy: libsndfile's own float -> 16-bit conversion."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _rounding_edges(dtype: type[np.floating[Any]], rng: np.random.Generator) -> np.ndarray:
    """Every 16-bit step, every half step between them (ties), their float neighbours, out-of-range and odd values."""
    k = np.arange(-32_769, 32_769, dtype=np.float64)
    steps = np.concatenate([k / 32_768, (k + 0.5) / 32_768, (k + 0.5) / 32_767]).astype(dtype)
    odd = np.array([1.0, -1.0, 0.0, -0.0, 1.5, -1.5, 1e30, -1e30, np.inf, -np.inf, 1e-40, -1e-40], dtype)
    return np.concatenate([
        steps, np.nextafter(steps, dtype(2)), np.nextafter(steps, dtype(-2)),
        rng.uniform(-1.2, 1.2, 100_000).astype(dtype), odd,
    ])  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flac_bytes_and_samples_are_those_libsndfile_gives(
    dtype: type[np.floating[Any]], rng: np.random.Generator
) -> None:
    # Identity by content: acquisition fingerprints the samples of `encode_with_samples` instead of decoding
    # the FLAC again; they must be the bits a later read of the stored FLAC gives, and the FLAC bytes the same as
    # libsndfile's float path wrote (stores made before keep their fingerprints and bytes).
    y = _rounding_edges(dtype, rng)
    old = _libsndfile_flac(y)

    flac, samples = audio.encode_with_samples(y, sr=SR)

    assert flac == old == encode_flac(y, sr=SR)
    back, _ = read_stored(flac)
    assert samples.dtype == back.dtype == np.float32
    np.testing.assert_array_equal(samples.view(np.uint32), back.view(np.uint32))
    assert audio.pcm_sha256(samples) == audio.pcm_sha256(back)


def test_every_16_bit_value_reads_back_as_from_pcm16_gives_it() -> None:
    q = np.arange(-32_768, 32_768, dtype=np.int16)
    buf = io.BytesIO()
    sf.write(buf, q, SR, format="FLAC", subtype="PCM_16")

    back, _ = read_stored(buf.getvalue())

    np.testing.assert_array_equal(back.view(np.uint32), audio.from_pcm16(q).view(np.uint32))
    np.testing.assert_array_equal(audio.pcm16(back), q)


def test_pcm16_refuses_nan() -> None:
    with pytest.raises(AudioError, match="NaN"):
        audio.pcm16(np.array([0.1, np.nan], np.float32))


@pytest.mark.parametrize("channels", range(1, 10))
def test_channel_mean_is_numpys_mean_bit_for_bit(channels: int, rng: np.random.Generator) -> None:
    # The downmix decides the decoded samples, hence fingerprints: it must not change with the faster loop.
    x = (rng.standard_normal((50_000, channels)) * 10.0 ** rng.integers(-8, 3, (50_000, channels))).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = 0.0
    x[rng.random(x.shape) < 0.2] = -0.0
    x[:64] = -0.0

    got = audio.channel_mean(x)

    np.testing.assert_array_equal(got.view(np.uint32), x.mean(axis=1).view(np.uint32))


def _decode_as_before(path: Path, sr: int) -> np.ndarray:
    """The in-process decode as it was first written: blocks, numpy's channel mean, streaming soxr."""
    import soxr

    parts = []
    with sf.SoundFile(path) as f:
        stream = soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32", quality="HQ")
        while len(block := f.read(1 << 16, dtype="float32", always_2d=True)):
            parts.append(stream.resample_chunk(block.mean(axis=1)))
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts)


@pytest.mark.parametrize(("name", "channels"), [("stereo.flac", 2), ("surround.wav", 6), ("mono.ogg", 1)])
def test_decode_gives_the_samples_it_always_gave(name: str, channels: int, tmp_path: Path) -> None:
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:sample_rate=44100:duration=4", "-ac",
           str(channels), str(path))  # fmt: skip

    y = decode(path, sr=SR)

    np.testing.assert_array_equal(y.view(np.uint32), _decode_as_before(path, SR).view(np.uint32))


def test_usable_starts_are_the_offsets_segment_keeps(tone: np.ndarray) -> None:
    y = np.concatenate([tone, np.zeros(SR, np.float32), tone, tone[: SR // 3]])

    _, offsets = segment(y, cfg=SEG)
    starts = audio.usable_starts(y, cfg=SEG)

    assert [s / SR for s in starts] == offsets.tolist()
    assert len(starts) < len(segment_offsets(len(y), cfg=SEG))  # the silent second dropped its windows


# --- SegmentConfig.hash -------------------------------------------------------------------------------------


def test_segment_config_hash_is_stable() -> None:
    assert SegmentConfig().hash == SegmentConfig().hash
    assert len(SegmentConfig().hash) == 12
    int(SegmentConfig().hash, 16)


@pytest.mark.parametrize(
    "change",
    [
        {"sample_rate": 16_000},
        {"window_s": 10.0},
        {"hop_s": 15.0},
        {"min_fill": 0.75},
        {"silence_db": -50.0},
        {"max_seconds": 600.0},
    ],
)
def test_segment_config_hash_changes_with_every_field(change: dict[str, Any]) -> None:
    assert dataclasses.replace(SegmentConfig(), **change).hash != SegmentConfig().hash
