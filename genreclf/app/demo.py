"""A synthetic folder catalog: a few seconds of clearly different sounds per genre, so the pipeline needs nothing."""

from __future__ import annotations

import hashlib
import json
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
# What the demo wrote last, file by file: the hash of the samples it rendered and of the bytes it wrote, kept beside
# the catalog folder (not in it: it is no track). Ogg Vorbis encodes the same samples to other bytes each time (a
# random stream serial), so a rerun keeps a file that still holds the same render rather than writing it again: the
# catalog, dataset and run are then reused.
RENDERED = ".{name}.genreclf-demo.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_demo_catalog(root: str | Path, *, tracks_per_genre: int = 10, seconds: float = 6.0, seed: int = 0) -> Path:
    """Write `root/<genre>/<genre>-NN.<wav|flac|ogg>` and return `root`. Deterministic from `seed`."""
    if tracks_per_genre < 3:
        raise ConfigError("the demo needs at least 3 tracks per genre (one each for train, val and test)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    record_path = root.parent / RENDERED.format(name=root.name)
    before = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record: dict[str, dict[str, str]] = {}
    for genre, synth in GENRES.items():
        (root / genre).mkdir(parents=True, exist_ok=True)
        for i in range(tracks_per_genre):
            y = synth(rng, t)
            y = (0.3 * y / np.max(np.abs(y)) + rng.normal(0, 0.003, len(t))).astype(np.float32)
            name = f"{genre}/{genre}-{i:02d}.{FORMATS[i % len(FORMATS)]}"
            path, samples = root / name, _sha256(y.tobytes())
            old = before.get(name, {})
            if old.get("samples") == samples and path.is_file() and _sha256(path.read_bytes()) == old.get("bytes"):
                record[name] = old  # the same render, untouched since: keep its bytes
                continue
            sf.write(path, y, SR)
            record[name] = {"samples": samples, "bytes": _sha256(path.read_bytes())}
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return root
