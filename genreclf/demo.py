"""A synthetic folder catalog: a few seconds of clearly different sounds per genre, so the pipeline needs nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from genreclf.errors import ConfigError

SR = 22_050
FORMATS = ("wav", "flac", "ogg")


def _drone(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    f0 = rng.uniform(80, 140)
    return np.sum([np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3)], axis=0)


def _chirp(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    period = rng.uniform(0.4, 0.8)
    phase_t = np.mod(t, period) / period
    f = rng.uniform(600, 1000) * 2 ** (2 * phase_t)  # two octaves up, every period
    return np.sin(2 * np.pi * np.cumsum(f) / SR)


def _noise(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    white = rng.normal(0, 1, len(t))
    return np.diff(white, prepend=0.0) * 0.5  # tilted towards the highs


def _pulse(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    beat = 60 / rng.uniform(90, 150)
    env = np.exp(-np.mod(t, beat) * 30)
    return env * np.sin(2 * np.pi * rng.uniform(50, 70) * t) * 2


GENRES = {"drone": _drone, "chirp": _chirp, "noise": _noise, "pulse": _pulse}


def make_demo_catalog(root: str | Path, *, tracks_per_genre: int = 10, seconds: float = 6.0, seed: int = 0) -> Path:
    """Write `root/<genre>/<genre>-NN.<wav|flac|ogg>` and return `root`. Deterministic from `seed`."""
    if tracks_per_genre < 3:
        raise ConfigError("the demo needs at least 3 tracks per genre (one each for train, val and test)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    for genre, synth in GENRES.items():
        (root / genre).mkdir(parents=True, exist_ok=True)
        for i in range(tracks_per_genre):
            y = synth(rng, t)
            y = 0.3 * y / np.max(np.abs(y)) + rng.normal(0, 0.003, len(t))
            fmt = FORMATS[i % len(FORMATS)]
            sf.write(root / genre / f"{genre}-{i:02d}.{fmt}", y.astype(np.float32), SR)
    return root
