"""Decode any audio ffmpeg reads to mono float32 at one sample rate, and cut it into windows (numpy in, out)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from genreclf.errors import AudioError, ConfigError


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
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise ConfigError("ffmpeg is not installed; install it (Debian: apt-get install -y ffmpeg)")
    return exe


# Read in-process by libsndfile (no ffmpeg process to start: about twice as fast on song-length files), from a path
# with one of these extensions or from bytes; anything libsndfile refuses goes through ffmpeg, which also words the
# errors. Both routes give the same samples for the same file.
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au"})


def _decode_soundfile(source: Path | bytes, *, sr: int, max_seconds: float | None) -> np.ndarray | None:
    """Mono float32 at `sr` via libsndfile and soxr (channel mean, as ffmpeg's path); None when it cannot read it."""
    import soxr  # librosa's resampler

    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as f:
            frames = -1 if not max_seconds else round(max_seconds * f.samplerate)
            y = f.read(frames=frames, dtype="float32", always_2d=True)
            file_sr = f.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    if y.size == 0:
        return None
    mono = y.mean(axis=1)
    if file_sr != sr:
        mono = soxr.resample(mono, file_sr, sr, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode(source: str | Path | bytes, *, sr: int, max_seconds: float | None = None, name: str = "") -> np.ndarray:
    """Decode a file path or encoded bytes to mono float32 at `sr` Hz -> (samples,).

    `name` labels the input in errors when `source` is bytes.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    if isinstance(source, bytes):
        data: bytes | None = source
        if not data:
            raise AudioError(f"{label}: file is empty (0 bytes); download it again or remove it")
        inp = "pipe:0"
        y = _decode_soundfile(data, sr=sr, max_seconds=max_seconds)
        if y is not None:
            return y
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(f"{label}: no such file")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: file is empty (0 bytes); download it again or remove it")
        data, inp = None, str(path)
        if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
            y = _decode_soundfile(path, sr=sr, max_seconds=max_seconds)
            if y is not None:
                return y
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-i", inp]
    if max_seconds:
        cmd += ["-t", str(max_seconds)]
    # -rematrix_maxval 1: downmix to the mean of the channels (ffmpeg's default mix is 3 dB hotter for stereo)
    cmd += ["-map", "0:a:0", "-ac", "1", "-rematrix_maxval", "1.0", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("matches no streams" in line for line in err):
            raise AudioError(f"{label}: no audio stream (is it a video without sound, an image or a page?)")
        detail = err[-1] if err else f"ffmpeg exited with {proc.returncode}"
        raise AudioError(f"{label}: cannot decode ({detail}); check that it is a complete audio file")
    y = np.frombuffer(proc.stdout, dtype=np.float32)
    if y.size == 0:
        raise AudioError(f"{label}: decoded to no samples (truncated or empty audio)")
    return y.copy()


def encode_flac(y: np.ndarray, *, sr: int) -> bytes:
    """Encode mono float audio as 16-bit FLAC (lossless for what the features see)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def read_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Read FLAC bytes written by `encode_flac` -> ((samples,) float32, sample rate)."""
    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return y, int(sr)


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


def segment(y: np.ndarray, *, cfg: SegmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut a track into windows -> (windows (n, window samples) float32, offsets in seconds (n,)).

    Silent windows are dropped. Raises AudioError when nothing usable is left (too short or silent).
    """
    win = round(cfg.window_s * cfg.sample_rate)
    windows, offsets = [], []
    for start in segment_offsets(len(y), cfg=cfg):
        w = y[start : start + win]
        if rms_db(w) < cfg.silence_db:
            continue
        if len(w) < win:
            w = np.pad(w, (0, win - len(w)))
        windows.append(w)
        offsets.append(start / cfg.sample_rate)
    if not windows:
        seconds = len(y) / cfg.sample_rate
        if seconds < cfg.min_fill * cfg.window_s:
            raise AudioError(
                f"too short: {seconds:.1f} s of audio, a window needs at least {cfg.min_fill * cfg.window_s:.1f} s"
            )
        raise AudioError(f"silent: every window is below {cfg.silence_db:.0f} dBFS")
    return np.stack(windows).astype(np.float32, copy=False), np.asarray(offsets, dtype=np.float64)
