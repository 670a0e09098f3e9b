"""Log-mel spectrograms under one frozen config (numpy/torch in, out; no I/O)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from genreclf.store.keys import content_id


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides a spectrogram's values. Its `hash` tags every shard, so configs never mix."""

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    log_offset: float = 1e-6  # log(mel + log_offset)
    # How mel power becomes the stored feature: "log" is log(mel + log_offset); "log10" is log10(1 + 10000 * mel),
    # musicnn's input (computed in float32: the musicnn package's float16 overflows to inf on loud music).
    compression: Literal["log", "log10"] = "log"

    def window_frames(self, window_s: float) -> int:
        """Frames of a window of `window_s` seconds, at this config's sample rate."""
        return self.frames(round(window_s * self.sample_rate))

    @property
    def hash(self) -> str:
        fields = dataclasses.asdict(self)
        if fields["compression"] == "log":  # as before the field existed: existing shards keep their keys
            del fields["compression"]
        return content_id(fields, length=12)

    def frames(self, n_samples: int) -> int:
        """Frames of a centred STFT over `n_samples`."""
        return 1 + n_samples // self.hop_length


# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def parabola_shift(left: np.ndarray | float, mid: np.ndarray | float, right: np.ndarray | float) -> np.ndarray:
    """Where the parabola through three equally spaced values peaks, in steps from the middle one (-0.5..0.5); 0
    where they do not curve down. Refines a peak found on a grid (a lag, an offset) to between its points."""
    curve = np.asarray(left - 2 * mid + right, dtype=float)
    shift = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    return np.clip(shift, -0.5, 0.5)


def _hz_to_mel(hz: float) -> float:
    return _MIN_LOG_MEL + float(np.log(hz / _MIN_LOG_HZ)) / _LOGSTEP if hz >= _MIN_LOG_HZ else hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    hz[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=8)
def mel_filters(cfg: FeatureConfig) -> np.ndarray:
    """Slaney mel filterbank -> (n_mels, 1 + n_fft // 2) float32; equal to `librosa.filters.mel` (tested), written
    in numpy so that predicting does not import librosa (scipy and numba: about a second)."""
    fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
    fft_hz = np.fft.rfftfreq(n=cfg.n_fft, d=1.0 / cfg.sample_rate)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(fmax), cfg.n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    weights = np.zeros((cfg.n_mels, len(fft_hz)), dtype=np.float32)
    for i in range(cfg.n_mels):  # triangles: up from band i, down to band i + 2
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (mel_hz[2 : cfg.n_mels + 2] - mel_hz[: cfg.n_mels]))[:, np.newaxis]  # equal area per band
    return weights


@lru_cache(maxsize=8)
def _torch_consts(cfg: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.hann_window(cfg.n_fft, periodic=True), torch.from_numpy(mel_filters(cfg))


# Samples per torch call. Measured on one core (30 s windows, n_fft 2048): one window per call 14 ms, 4 per call
# 32 ms each, 12 per call 39 ms each (the spectrogram of many windows falls out of cache); librosa 29 ms.
CHUNK_SAMPLES = 1 << 20


def log_mel_batch(windows: np.ndarray | torch.Tensor, *, cfg: FeatureConfig, chunk: int | None = None) -> np.ndarray:
    """Log-mel of a batch of windows (n, samples) -> (n, n_mels, frames) float32, with torch on the CPU.

    Matches `librosa.feature.melspectrogram` (centred, zero-padded, power 2, Slaney mels) followed by
    `log(mel + log_offset)`; see tests/test_features.py for the tolerance. Windows go through torch `chunk` at a
    time (default: as many as fit in about a million samples).
    """
    x = torch.as_tensor(windows, dtype=torch.float32)
    if x.ndim == 1:
        x = x[None]
    chunk = chunk or max(1, CHUNK_SAMPLES // max(1, x.shape[-1]))
    window, fb = _torch_consts(cfg)
    out = []
    with torch.inference_mode():
        for part in torch.split(x, chunk):
            spec = torch.stft(
                part,
                cfg.n_fft,
                cfg.hop_length,
                window=window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )  # (chunk, freqs, frames)
            power = spec.real.square()  # (chunk, freqs, frames); in place below: one temporary, not three
            power.addcmul_(spec.imag, spec.imag)
            mel = torch.matmul(fb, power)  # (chunk, n_mels, frames)
            out.append(compress(mel, cfg=cfg))
    return torch.cat(out).numpy()


LOG10_SCALE = 10_000.0  # musicnn's log10(1 + 10000 * mel)


def compress(mel: torch.Tensor, *, cfg: FeatureConfig) -> torch.Tensor:
    """Mel power -> the stored feature, in place: `log(mel + log_offset)` or `log10(1 + 10000 * mel)`."""
    if cfg.compression == "log10":
        return mel.mul_(LOG10_SCALE).log1p_().div_(np.log(10))
    return mel.add_(cfg.log_offset).log_()


def natural_log_mel(x: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Stored features (any compression) -> `log(mel + log_offset)` float32, what summary features and the
    near-duplicate detector read: the same array for "log" features, converted back for "log10"."""
    x = np.asarray(x, dtype=np.float32)
    if cfg.compression == "log":
        return x
    power = np.maximum(np.expm1(x * np.float32(np.log(10))) / np.float32(LOG10_SCALE), 0)
    return np.log(power + np.float32(cfg.log_offset))


class _Blocks:
    """`one_torch_thread` blocks running now, and torch's thread count before the first of them."""

    lock = threading.Lock()
    running = 0
    before = 0


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run this thread's torch ops on one intra-op thread inside the block; torch's count is restored after the
    last block running ends.

    For callers that already run one computation per core (shards on a thread pool): torch's default, a thread per
    core inside each call, oversubscribes the cores, and on a shared machine its OpenMP threads then wait on each
    other: measured here with other work running, log-mels of 3 s windows took 220 ms per batch of 32 on 2 threads
    against 24 ms on one (30 s windows: 2.5 s against 0.43 s); idle, 2 threads gained under 20 %.
    With OpenMP, torch's count is per thread, and a thread takes the process's count when it first runs torch; so
    each block sets its own thread's, and only the last one to end puts the process's count back (a block that
    ended before it would otherwise restore the 1 that the others set).
    """
    with _Blocks.lock:
        if _Blocks.running == 0:
            _Blocks.before = torch.get_num_threads()
        _Blocks.running += 1
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _Blocks.lock:
            _Blocks.running -= 1
            if _Blocks.running == 0:
                torch.set_num_threads(_Blocks.before)


def features_batch(windows: np.ndarray, *, sample_rate: int, cfg: FeatureConfig) -> np.ndarray:
    """Features of windows decoded at `sample_rate`: (n, samples) -> (n, n_mels, frames) float32.

    Audio is decoded and stored at one rate (SegmentConfig.sample_rate) whatever the features; a config at another
    rate (musicnn's 16 kHz) gets the windows resampled first (soxr, HQ, as decoding), each to exactly
    `round(samples * cfg.sample_rate / sample_rate)` samples, so every window has the same frames.
    """
    if sample_rate != cfg.sample_rate:
        import soxr

        n = round(windows.shape[-1] * cfg.sample_rate / sample_rate)
        out = np.zeros((len(windows), n), np.float32)
        for i, w in enumerate(windows):
            r = soxr.resample(np.asarray(w, np.float32), sample_rate, cfg.sample_rate, quality="HQ")[:n]
            out[i, : len(r)] = r
        windows = out
    return log_mel_batch(windows, cfg=cfg)


def log_mel(y: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel of one mono signal (samples,) -> (n_mels, frames) float32."""
    return log_mel_batch(y[None], cfg=cfg)[0]


def log_mel_librosa(y: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """The reference path with librosa -> (n_mels, frames); slower, used to check `log_mel` and in benchmarks."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    return compress(torch.from_numpy(mel.astype(np.float32)), cfg=cfg).numpy()
