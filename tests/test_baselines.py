"""Summary features of the baselines, from log-mels: shapes, finite values, tempo, configs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genreclf.datasets.features import FeatureConfig, log_mel, log_mel_batch
from genreclf.errors import ModelError
from genreclf.models.baselines import FEATURE_BLOCKS, summary_feature_blocks, summary_features

SR = 22_050
CFG = FeatureConfig()
WIDTHS = {"mfcc": 40, "delta": 40, "contrast": 14, "spectral": 8, "energy": 3, "rhythm": 12}


def clicks(bpm: float, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Bursts of decaying noise on every beat, float32 mono at 22,050 Hz."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1e-3, round(seconds * SR))
    burst = rng.normal(0, 0.5, 441) * np.exp(-np.arange(441) / 60)
    for start in np.arange(0, seconds - 0.05, 60 / bpm):
        i = round(start * SR)
        y[i : i + len(burst)] += burst
    return y.astype(np.float32)


def sine(hz: float, seconds: float = 3.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


def test_shapes_of_the_default_the_mel_bands_and_each_block(rng: np.random.Generator) -> None:
    mel = rng.normal(-5, 2, (3, 128, 200)).astype(np.float16)
    assert summary_features(mel, cfg=CFG).shape == (3, sum(WIDTHS.values()))
    assert summary_features(mel, cfg=CFG, blocks=FEATURE_BLOCKS).shape == (3, 256 + sum(WIDTHS.values()))
    blocks = summary_feature_blocks(mel, cfg=CFG)
    assert {k: v.shape for k, v in blocks.items()} == {"mel": (3, 256)} | {k: (3, w) for k, w in WIDTHS.items()}
    assert all(v.dtype == np.float32 for v in blocks.values())
    assert summary_features(mel[:0], cfg=CFG).shape == (0, sum(WIDTHS.values()))


def test_mel_block_is_the_mean_and_std_of_each_band(rng: np.random.Generator) -> None:
    mel = rng.normal(-5, 2, (2, 128, 50)).astype(np.float16)
    expected = np.concatenate([mel.astype(np.float32).mean(axis=2), mel.astype(np.float32).std(axis=2)], axis=1)
    np.testing.assert_allclose(summary_features(mel, cfg=CFG, blocks=("mel",)), expected, rtol=1e-5, atol=1e-5)


def test_chunks_do_not_change_the_features(rng: np.random.Generator) -> None:
    mel = rng.normal(-5, 2, (5, 128, 120)).astype(np.float32)
    np.testing.assert_allclose(summary_features(mel, cfg=CFG, chunk=2), summary_features(mel, cfg=CFG), rtol=1e-5)


def test_silence_and_a_constant_tone_give_finite_features() -> None:
    silence = np.full((1, 128, 130), np.log(CFG.log_offset), np.float32)
    tone = log_mel(sine(440.0), cfg=CFG)[None]
    for mel in (silence, tone):
        for name, x in summary_feature_blocks(mel, cfg=CFG).items():
            assert np.isfinite(x).all(), name
    centroid_khz = summary_feature_blocks(tone, cfg=CFG)["spectral"][0, 0]
    assert 0.35 < centroid_khz < 0.55  # the mel bands' centre frequencies line up with the tone's


@pytest.mark.parametrize("bpm", [100.0, 120.0, 150.0])
def test_tempo_of_a_click_train(bpm: float) -> None:
    mel = log_mel(clicks(bpm), cfg=CFG)[None]
    tempo = 2 ** summary_feature_blocks(mel, cfg=CFG)["rhythm"][0, 2]
    assert abs(tempo - bpm) < 2.0, tempo


def test_different_sounds_give_different_features() -> None:
    mel = log_mel_batch(np.stack([sine(440.0), sine(2000.0), clicks(120.0, seconds=3.0)]), cfg=CFG)
    x = summary_features(mel, cfg=CFG)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert not np.allclose(x[i], x[j], rtol=0.05), (i, j)


def test_a_64_mel_config() -> None:
    cfg = dataclasses.replace(CFG, n_mels=64, fmax=8000.0)
    mel = log_mel_batch(np.stack([sine(440.0), clicks(120.0, seconds=3.0)]), cfg=cfg)
    x = summary_features(mel, cfg=cfg, blocks=FEATURE_BLOCKS)
    assert x.shape == (2, 128 + sum(WIDTHS.values()))
    assert np.isfinite(x).all()


def test_unknown_blocks_and_too_short_segments_are_clear_errors() -> None:
    mel = np.zeros((1, 128, 100), np.float32)
    with pytest.raises(ModelError, match="unknown feature blocks \\['chroma'\\]"):
        summary_features(mel, cfg=CFG, blocks=("mfcc", "chroma"))
    with pytest.raises(ModelError, match="no feature blocks"):
        summary_features(mel, cfg=CFG, blocks=())
    with pytest.raises(ModelError, match="too short"):
        summary_features(mel[:, :, :5], cfg=CFG)


def test_few_mels_leave_some_contrast_bands_empty_and_still_give_finite_features() -> None:
    cfg = FeatureConfig(n_mels=16, n_fft=256, hop_length=128)  # the tiny test datasets' features
    mel = np.random.default_rng(0).normal(0, 1, (4, 16, 87)).astype(np.float16)
    assert np.isfinite(summary_features(mel, cfg=cfg)).all()
