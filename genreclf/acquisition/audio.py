"""Decode any audio ffmpeg reads to mono float32 at one sample rate, and cut it into windows (numpy in, out)."""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import io
import logging
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genreclf.errors import AudioError, ConfigError, TransientSourceError
from genreclf.store.keys import content_id

if TYPE_CHECKING:  # imported where used, so training and the GPU benchmark need no libsndfile
    import soundfile as sf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentConfig:
    """How tracks become training windows.

    A window starts every `hop_s` seconds; the tail is zero-padded when it holds at least `min_fill` of a window
    and dropped otherwise. Windows quieter than `silence_db` (RMS, dBFS) are dropped.
    """

    sample_rate: int = 22_050
    window_s: float = 30.0
    hop_s: float = 30.0
    min_fill: float = 0.5
    silence_db: float = -60.0
    max_seconds: float = 1_800.0  # decode at most this much of a track (a 10-hour "mix" is not a song)

    @property
    def hash(self) -> str:
        return content_id(dataclasses.asdict(self), length=12)


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise ConfigError("ffmpeg is not installed; install it (Debian: apt-get install -y ffmpeg)")
    return exe


# Read in-process by libsndfile (no ffmpeg process to start: about twice as fast on song-length files), from a path
# with one of these extensions or from bytes, when the first bytes are those of such a file; anything else goes
# through ffmpeg, which also words the errors. Both routes give the same samples for the same file.
# Not MP3: libsndfile's MP3 decoder (mpg123) prints its complaints ("part2_3_length too large", a search for a
# frame in a text file named .mp3) to fd 2, past Python, hundreds of lines over the progress bars, and libsndfile
# has no switch to quiet it. ffmpeg's go to a pipe.
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au"})
_SOUNDFILE_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"dns.")


def _soundfile_reads(head: bytes) -> bool:
    return head[:4] in _SOUNDFILE_MAGIC


# Frames per block when decoding in-process: the channels are averaged and resampled block by block, so peak
# memory is the mono output at the target rate, not the whole file at its native rate and channel count. 2**18
# (6 s at 44.1 kHz, 2 MB of stereo float32) decoded mp3 and FLAC ~4 % faster than 2**16, to the same samples.
BLOCK_FRAMES = 1 << 18
# A complete file decodes to exactly the frames its header declares; allow a little for rounding.
TRUNCATION_SLACK_S = 0.1


def _wav_declared_frames(f: sf.SoundFile, head: bytes) -> int | None:
    """Frames a RIFF/WAVE header declares in its `data` chunk (libsndfile reports what is there instead)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    block_align = None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            channels = int.from_bytes(head[pos + 10 : pos + 12], "little")
            bits = int.from_bytes(head[pos + 22 : pos + 24], "little") if pos + 24 <= len(head) else 0
            block_align = channels * max(bits, 8) // 8
        if chunk == b"data":
            # 0 and 0xFFFFFFFF mean "unknown" (written by a stream that could not seek back)
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _declared_frames(f: sf.SoundFile, head: bytes) -> int | None:
    """How many frames the file's header says it holds, where the format records it (WAV, FLAC), else None."""
    if f.format == "WAV":
        return _wav_declared_frames(f, head)
    if f.format == "FLAC":
        return f.frames or None  # STREAMINFO's total samples; 0 means unknown
    return None


def _head(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source[:4096]
    with open(source, "rb") as fh:
        return fh.read(4096)


def _text_line(head: bytes) -> str | None:
    """The first line of `head` (up to 40 characters) when the file holds text (UTF-8, no control characters)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end of `head` is kept back
    except UnicodeDecodeError:
        return None
    if not all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return None
    lines = text.lstrip("\ufeff").strip().splitlines()
    if not lines:
        return None
    line = lines[0].strip()
    return line if len(line) <= 40 else line[:40] + "..."


# Up to this many channels `channel_mean` adds columns in numpy's own order; from 8 on, numpy sums pairwise.
_SEQUENTIAL_MEAN_MAX = 7


def channel_mean(block: np.ndarray) -> np.ndarray:
    """Mean of the channels of (frames, channels) float32 -> (frames,), bit for bit `block.mean(axis=1)`.

    numpy reduces a short inner axis one frame at a time: on stereo that was ~40 % of decoding an mp3. Adding whole
    columns in the same order (from +0.0, then dividing by the count) gives the same samples, hence the same
    fingerprints, at ~1/10 of the cost (tests/test_audio.py checks the bits).
    """
    n = block.shape[1]
    if n > _SEQUENTIAL_MEAN_MAX:
        return block.mean(axis=1)
    out = block[:, 0] + np.float32(0.0)  # a new array; +0.0 turns -0.0 into +0.0, as numpy's sum from 0 does
    for c in range(1, n):
        out += block[:, c]
    if n > 1:
        out /= np.float32(n)
    return out


def _decode_soundfile(
    source: Path | bytes, head: bytes, *, sr: int, max_seconds: float | None, label: str
) -> np.ndarray | None:
    """Mono float32 at `sr` via libsndfile and soxr (channel mean, as ffmpeg's path); None when it cannot read it.

    Decodes in blocks: each block is averaged to mono and fed to a streaming resampler. Raises AudioError when the
    file holds fewer frames than its header declares (a copy or download cut short).
    """
    import soundfile as sf
    import soxr  # librosa's resampler

    try:
        f = sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    with f:
        file_sr = f.samplerate
        declared = _declared_frames(f, head)
        limit = round(max_seconds * file_sr) if max_seconds else None
        stream = soxr.ResampleStream(file_sr, sr, 1, dtype="float32", quality="HQ") if file_sr != sr else None
        parts: list[np.ndarray] = []
        got = 0
        try:
            while limit is None or got < limit:
                # read() returns only the frames that are there (blocks() pads a short read with stale memory)
                n = BLOCK_FRAMES if limit is None else min(BLOCK_FRAMES, limit - got)
                block = f.read(n, dtype="float32", always_2d=True)  # (frames, channels)
                if not len(block):
                    break
                got += len(block)
                mono = channel_mean(block)  # (frames,)
                parts.append(stream.resample_chunk(mono) if stream else mono)
        except (sf.LibsndfileError, RuntimeError) as e:
            if got == 0 and not declared:
                return None  # ffmpeg may read it, and words the error if not
            log.debug("%s: read stopped after %d frames (%s)", label, got, e)
        if got == 0 and not declared:
            return None
        if stream is not None:
            parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    expected = min(declared, limit) if declared and limit else declared
    if expected and got < expected - TRUNCATION_SLACK_S * file_sr:
        raise AudioError(
            f"{label}: truncated: {got / file_sr:.1f} s of audio where its header declares {declared / file_sr:.1f} s"
            " (a copy or download cut short); copy or download it again"
        )
    if not parts:
        return None
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def decode(source: str | Path | bytes, *, sr: int, max_seconds: float | None = None, name: str = "") -> np.ndarray:
    """Decode a file path or encoded bytes to mono float32 at `sr` Hz -> (samples,).

    Anything ffmpeg reads: an audio file, or an audio or video container (mp4, mkv, mov, webm, ...), of which the
    first audio stream is decoded; one without an audio stream raises AudioError. `name` labels the input in
    errors (default: the path, or `<bytes>`).
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    if isinstance(source, bytes):
        data: bytes | None = source
        if not data:
            raise AudioError(f"{label}: file is empty (0 bytes); download it again or remove it")
        inp, head = "pipe:0", _head(data)
        y = (
            _decode_soundfile(data, head, sr=sr, max_seconds=max_seconds, label=label)
            if _soundfile_reads(head)
            else None
        )
        if y is not None:
            return y
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: file is empty (0 bytes); download it again or remove it")
        data, inp, head = None, str(path), _head(path)
        if path.suffix.lower() in SOUNDFILE_EXTENSIONS and _soundfile_reads(head):
            y = _decode_soundfile(path, head, sr=sr, max_seconds=max_seconds, label=label)
            if y is not None:
                return y
    if data is not None and _is_quicktime(data):
        # MP4/MOV/M4A keep their index (moov) after the media unless written for streaming: from a pipe, which
        # cannot seek, ffmpeg decodes nothing and still exits 0. Give it a file.
        with tempfile.NamedTemporaryFile(prefix="genreclf-decode-") as tmp:
            tmp.write(data)
            tmp.flush()
            proc = _run_ffmpeg(tmp.name, None, sr=sr, max_seconds=max_seconds)
            proc.stderr = proc.stderr.replace(tmp.name.encode(), inp.encode())
    else:
        proc = _run_ffmpeg(inp, data, sr=sr, max_seconds=max_seconds)
    if proc.returncode < 0:
        # Killed, not failed: a Ctrl-C in the terminal reaches ffmpeg too. Nothing is known about the file, so
        # nothing may be recorded against it; a rerun decodes it again.
        raise TransientSourceError(f"{label}: the decoder was stopped by signal {-proc.returncode} before it finished")
    if proc.returncode != 0:
        if _no_audio_stream(proc):
            # A video without a sound track, an image, a subtitle file: the container opened, nothing to hear.
            raise AudioError(
                f"{label}: no audio stream (a video without sound, an image or a page?); use a file with a sound "
                "track, or remove this one"
            )
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = err[-1] if err else f"ffmpeg exited with {proc.returncode}"
        if detail.startswith(f"{inp}: "):  # ffmpeg's "<input>: <why>": no demuxer could open it
            raise AudioError(f"{label}: cannot decode: {_not_audio(head, detail.removeprefix(f'{inp}: '))}")
        raise AudioError(f"{label}: cannot decode ({detail}); check that it is a complete audio file")
    y = np.frombuffer(proc.stdout, dtype=np.float32)
    if y.size == 0:
        raise AudioError(f"{label}: decoded to no samples (truncated or empty audio)")
    return y.copy()


def _run_ffmpeg(
    inp: str, data: bytes | None, *, sr: int, max_seconds: float | None
) -> subprocess.CompletedProcess[bytes]:
    """ffmpeg decoding the first audio stream of `inp` (a path, or `pipe:0` fed `data`) to mono f32le at `sr`."""
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-i", inp]
    if max_seconds:
        cmd += ["-t", str(max_seconds)]
    # -map 0:a:0: the first audio stream only, so a video's pictures are never decoded.
    # -rematrix_maxval 1: downmix to the mean of the channels (ffmpeg's default mix is 3 dB hotter for stereo)
    cmd += ["-map", "0:a:0", "-ac", "1", "-rematrix_maxval", "1.0", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    return subprocess.run(cmd, input=data, capture_output=True, check=False)


# The first box of an ISO base media file (mp4, m4a, m4b, mov, 3gp): `ftyp`, or in old QuickTime files another.
_QUICKTIME_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def _is_quicktime(data: bytes) -> bool:
    return data[4:8] in _QUICKTIME_BOXES


def _no_audio_stream(proc: subprocess.CompletedProcess[bytes]) -> bool:
    return b"matches no streams" in proc.stderr


def _not_audio(head: bytes, why: str) -> str:
    """What a file ffmpeg cannot open is, and what to do, in words; `why` is ffmpeg's reason without the path."""
    line = _text_line(head)
    what = f"not audio but text ({line!r})" if line else f"not an audio file ffmpeg can read ({why})"
    return f"{what}; remove it, or replace it with the audio file"


# libsndfile's float -> 16-bit FLAC conversion: scale by 2**15, round half to even, clip to int16; reading scales
# back by 2**-15. `pcm16` and `from_pcm16` do the same in numpy (tests/test_audio.py checks both against libsndfile).
PCM16_SCALE = 32_768.0


def pcm16(y: np.ndarray) -> np.ndarray:
    """Float samples -> (samples,) int16, exactly what libsndfile stores for them in a 16-bit FLAC (clipped to
    full scale). Raises AudioError on NaN, which has no 16-bit value."""
    s = np.asarray(y) * PCM16_SCALE  # in the input's precision (float32 or float64), as libsndfile's write
    if np.isnan(s).any():
        raise AudioError("decoded audio holds NaN samples; the file is corrupt or its decoder failed")
    np.rint(s, out=s)
    np.clip(s, -PCM16_SCALE, PCM16_SCALE - 1, out=s)
    return s.astype(np.int16)


def from_pcm16(q: np.ndarray) -> np.ndarray:
    """16-bit samples -> (samples,) float32, as `read_stored` gives them (q / 32768, exact)."""
    return np.multiply(q, np.float32(1.0 / PCM16_SCALE), dtype=np.float32)


def encode_flac(y: np.ndarray, *, sr: int) -> bytes:
    """Encode mono float audio as 16-bit FLAC (lossless for what the features see; clipped to full scale)."""
    return _flac_bytes(pcm16(y), sr=sr)


# How decoded audio is stored: the same 16-bit samples either way, so the same fingerprints, dataset ids and
# shards. FLAC takes about half the bytes; WAV (a header and the samples) costs no encoding, which is about a
# fifth of the CPU of a build from mp3s (benchmarks/features.py).
STORED_FORMATS = ("flac", "wav")


def encode_with_samples(y: np.ndarray, *, sr: int, fmt: str = "flac") -> tuple[bytes, np.ndarray]:
    """Encode mono float audio as 16-bit `fmt` (FLAC or WAV) -> (bytes, (samples,) float32 that `read_stored`
    gives back for them).

    The samples come from the 16-bit values themselves, not from decoding the bytes again: the same bits
    (tests/test_audio.py), without a decoder pass.
    """
    if fmt not in STORED_FORMATS:
        raise ConfigError(f"audio format {fmt!r}: use one of {', '.join(STORED_FORMATS)}")
    q = pcm16(y)
    return (_flac_bytes(q, sr=sr) if fmt == "flac" else _wav_bytes(q, sr=sr)), from_pcm16(q)


def _wav_bytes(q: np.ndarray, *, sr: int) -> bytes:
    """A 16-bit mono RIFF/WAVE file of int16 samples: its 44-byte header, then the samples, little-endian."""
    samples = np.ascontiguousarray(q, dtype="<i2")
    header = b"RIFF" + struct.pack("<I", 36 + samples.nbytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16)  # PCM, mono, byte rate, align, bits
    return b"".join((header, b"data", struct.pack("<I", samples.nbytes), samples.data))  # the samples copied once


def _flac_bytes(q: np.ndarray, *, sr: int) -> bytes:
    # int16 in, so libsndfile converts nothing; the bytes are those its float path wrote for the same samples
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, q, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def read_stored(data: bytes) -> tuple[np.ndarray, int]:
    """Read stored audio (FLAC or WAV bytes from `encode_with_samples` or `encode_flac`) -> ((samples,) float32,
    sample rate)."""
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return y, int(sr)


def pcm_sha256(y: np.ndarray) -> str:
    """sha256 of decoded samples (float32): two files holding the same recording, whatever their container or
    name, give the same hash once decoded the same way."""
    return hashlib.sha256(np.ascontiguousarray(y, dtype=np.float32).data).hexdigest()  # .data: no bytes copy


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS of a window (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def segment_offsets(n_samples: int, *, cfg: SegmentConfig) -> list[int]:
    """Start samples of the windows of a track of `n_samples` under the tail rule of `cfg`."""
    win = round(cfg.window_s * cfg.sample_rate)
    hop = round(cfg.hop_s * cfg.sample_rate)
    if win <= 0 or hop <= 0:
        raise ConfigError(f"window_s and hop_s must be positive, got {cfg.window_s} and {cfg.hop_s}")
    offsets = []
    start = 0
    while start < n_samples:
        if n_samples - start >= win or (n_samples - start) >= cfg.min_fill * win:
            offsets.append(start)
        if start + win >= n_samples:
            break
        start += hop
    return offsets


def usable_starts(y: np.ndarray, *, cfg: SegmentConfig) -> list[int]:
    """Start samples of the windows of `y` that are kept: `segment_offsets`, less the silent ones.

    Raises AudioError when nothing usable is left (too short or silent). Acquisition needs only these; `segment`
    cuts the windows too.
    """
    win = round(cfg.window_s * cfg.sample_rate)
    starts = [s for s in segment_offsets(len(y), cfg=cfg) if rms_db(y[s : s + win]) >= cfg.silence_db]
    if not starts:
        seconds = len(y) / cfg.sample_rate
        if seconds < cfg.min_fill * cfg.window_s:
            raise AudioError(
                f"too short: {seconds:.1f} s of audio, a window needs at least {cfg.min_fill * cfg.window_s:.1f} s"
            )
        raise AudioError(f"silent: every window is below {cfg.silence_db:.0f} dBFS")
    return starts


def segment(y: np.ndarray, *, cfg: SegmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut a track into windows -> (windows (n, window samples) float32, offsets in seconds (n,)).

    Silent windows are dropped, the tail is zero-padded. Raises AudioError when nothing usable is left (too short
    or silent).
    """
    win = round(cfg.window_s * cfg.sample_rate)
    starts = usable_starts(y, cfg=cfg)
    windows = np.zeros((len(starts), win), dtype=np.float32)
    for i, start in enumerate(starts):
        w = y[start : start + win]
        windows[i, : len(w)] = w
    return windows, np.asarray(starts, dtype=np.float64) / cfg.sample_rate
