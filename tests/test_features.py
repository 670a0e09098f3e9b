"""Log-mel on torch against librosa's reference, shapes, batching, and the feature config hash."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
import torch

from genreclf.datasets.features import (
    FeatureConfig,
    log_mel,
    log_mel_batch,
    log_mel_librosa,
    mel_filters,
    one_torch_thread,
)

# The torch path and librosa agree to float32 rounding; on log values that is far below 1e-3.
PARITY_ATOL = 1e-3

CONFIGS = [
    FeatureConfig(),
    FeatureConfig(n_fft=1024, hop_length=256, n_mels=64, fmin=30.0, fmax=8_000.0),
    FeatureConfig(sample_rate=16_000, n_fft=512, hop_length=160, n_mels=40, log_offset=1e-3),
]


def noise(rng: np.random.Generator, n: int = 22_050) -> np.ndarray:
    return rng.normal(0, 0.1, n).astype(np.float32)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "small", "16k"])
def test_log_mel_matches_librosa_on_noise(cfg: FeatureConfig, rng: np.random.Generator) -> None:
    y = noise(rng)

    diff = np.abs(log_mel(y, cfg=cfg) - log_mel_librosa(y, cfg=cfg))

    assert diff.max() < PARITY_ATOL


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "small", "16k"])
def test_log_mel_matches_librosa_on_a_tone(cfg: FeatureConfig, tone: np.ndarray) -> None:
    diff = np.abs(log_mel(tone, cfg=cfg) - log_mel_librosa(tone, cfg=cfg))

    assert diff.max() < PARITY_ATOL


def test_log_mel_of_silence_is_the_log_offset() -> None:
    cfg = FeatureConfig()

    mel = log_mel(np.zeros(4_096, np.float32), cfg=cfg)

    np.testing.assert_allclose(mel, np.log(cfg.log_offset), rtol=1e-6)


@pytest.mark.parametrize("n_samples", [22_050, 4_096, 2_048, 1_000, 512])
@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=["default", "small"])
def test_log_mel_shape(n_samples: int, cfg: FeatureConfig, rng: np.random.Generator) -> None:
    mel = log_mel(noise(rng, n_samples), cfg=cfg)

    assert mel.shape == (cfg.n_mels, 1 + n_samples // cfg.hop_length)
    assert mel.shape[1] == cfg.frames(n_samples)
    assert mel.dtype == np.float32
    assert np.isfinite(mel).all()


def test_batch_equals_each_item(rng: np.random.Generator) -> None:
    cfg = CONFIGS[1]
    windows = rng.normal(0, 0.1, (5, 8_000)).astype(np.float32)

    batch = log_mel_batch(windows, cfg=cfg, chunk=2)  # chunks of 2, 2, 1

    assert batch.shape == (5, cfg.n_mels, cfg.frames(8_000))
    for window, mel in zip(windows, batch, strict=True):
        np.testing.assert_allclose(mel, log_mel(window, cfg=cfg), atol=1e-5)


def test_batch_accepts_one_signal_and_a_tensor(tone: np.ndarray) -> None:
    cfg = FeatureConfig()
    expected = log_mel(tone, cfg=cfg)

    np.testing.assert_array_equal(log_mel_batch(tone, cfg=cfg)[0], expected)
    np.testing.assert_array_equal(log_mel_batch(torch.from_numpy(tone[None]), cfg=cfg)[0], expected)


def test_mel_filters_shape() -> None:
    cfg = CONFIGS[1]

    fb = mel_filters(cfg)

    assert fb.shape == (cfg.n_mels, 1 + cfg.n_fft // 2)
    assert fb.dtype == np.float32
    # Above fmax every filter is zero.
    top_bin = int(np.ceil(8_000.0 * cfg.n_fft / cfg.sample_rate)) + 1
    assert not fb[:, top_bin:].any()


def test_feature_config_hash_is_stable() -> None:
    assert FeatureConfig().hash == FeatureConfig().hash
    assert len(FeatureConfig().hash) == 12
    int(FeatureConfig().hash, 16)


@pytest.mark.parametrize(
    "change",
    [
        {"sample_rate": 16_000},
        {"n_fft": 1024},
        {"hop_length": 256},
        {"n_mels": 64},
        {"fmin": 20.0},
        {"fmax": 8_000.0},
        {"log_offset": 1e-5},
        {"compression": "log10"},
    ],
)
def test_feature_config_hash_changes_with_every_field(change: dict[str, Any]) -> None:
    assert dataclasses.replace(FeatureConfig(), **change).hash != FeatureConfig().hash


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(),
        FeatureConfig(n_mels=64, n_fft=1024),
        FeatureConfig(n_mels=40, fmin=30.0, fmax=8000.0, sample_rate=16_000, n_fft=512),
    ],
)
def test_mel_filters_equal_librosas_bit_for_bit(cfg: FeatureConfig) -> None:
    import librosa

    want = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    assert np.array_equal(mel_filters(cfg), want) and mel_filters(cfg).dtype == np.float32


def test_one_torch_thread_holds_while_blocks_overlap_and_restores_after_the_last() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen: dict[str, int] = {}

        def first() -> None:  # enters first, ends first
            with one_torch_thread():
                first_in.set()
                second_in.wait(10)
            first_out.set()

        def second() -> None:  # enters while the first runs (so it starts at 1), ends last
            first_in.wait(10)
            with one_torch_thread():
                second_in.set()
                first_out.wait(10)
                seen["second, after the first ended"] = torch.get_num_threads()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)

        def fresh() -> None:  # a thread started later takes the process's count: the one before the blocks
            seen["fresh"] = torch.get_num_threads()

        t = threading.Thread(target=fresh)
        t.start()
        t.join(10)
        assert seen == {"second, after the first ended": 1, "fresh": 2}
    finally:
        torch.set_num_threads(before)


def test_features_of_audio_decoded_at_another_rate_are_those_of_the_same_sound_at_the_features_rate() -> None:
    """Audio is stored at the decoding rate; a 16 kHz config resamples it first, to exactly the window's samples."""
    from genreclf.datasets.features import features_batch

    cfg = FeatureConfig(sample_rate=16_000, n_fft=512, hop_length=256, n_mels=96, compression="log10")

    def tone(sr: int) -> np.ndarray:
        t = np.arange(3 * sr) / sr
        return (0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)

    resampled = features_batch(tone(22_050)[None], sample_rate=22_050, cfg=cfg)
    direct = features_batch(tone(16_000)[None], sample_rate=16_000, cfg=cfg)
    assert resampled.shape == direct.shape == (1, 96, cfg.window_frames(3.0))
    inner = slice(4, -4)  # the resampler's edges differ from a tone that starts and stops at 16 kHz
    np.testing.assert_allclose(resampled[..., inner], direct[..., inner], atol=0.02)


def test_the_parabola_through_three_points_peaks_where_it_should() -> None:
    from genreclf.datasets.features import parabola_shift

    def y(x: float) -> float:
        return -((x - 0.3) ** 2)

    assert np.isclose(parabola_shift(y(-1), y(0), y(1)), 0.3)
    assert parabola_shift(1.0, 1.0, 1.0) == 0.0  # flat: no peak to refine
    assert parabola_shift(0.0, -1.0, 0.0) == 0.0  # a valley, not a peak
    assert parabola_shift(0.0, 1.0, 1.5) == 0.5  # the peak lies beyond the next point: at most half a step
    got = parabola_shift(np.array([y(-1), 0.0]), np.array([y(0), -1.0]), np.array([y(1), 0.0]))
    assert np.allclose(got, [0.3, 0.0])  # per element; a valley gives 0
