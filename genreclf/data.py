"""Splits grouped by artist, normalisation statistics, and torch datasets over spectrogram arrays."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from genreclf.errors import DataError

if TYPE_CHECKING:
    import polars as pl

FRACTIONS = (0.6, 0.2, 0.2)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def split_groups(tracks: pl.DataFrame) -> dict[str, str]:
    """Map each track id to its group: its first artist, or itself when the artist is unknown.

    Tracks that share an ISRC (the same recording under two ids) are merged into one group.
    """
    uf = _UnionFind()
    by_isrc: dict[str, str] = {}
    has_isrc = "isrc" in tracks.columns
    for row in tracks.iter_rows(named=True):
        group = f"artist:{row['artist_id']}" if row.get("artist_id") else f"track:{row['track_id']}"
        uf.union(f"track:{row['track_id']}", group)
        isrc = row.get("isrc") if has_isrc else None
        if isrc:
            if isrc in by_isrc:
                uf.union(group, by_isrc[isrc])
            by_isrc.setdefault(isrc, group)
    return {tid: uf.find(f"track:{tid}") for tid in tracks["track_id"].to_list()}


def assign_splits(
    tracks: pl.DataFrame, *, seed: int = 0, fractions: tuple[float, float, float] = FRACTIONS
) -> pl.DataFrame:
    """Split tracks into train/val/test (60/20/20 by default), grouped by artist and stratified by genre.

    Deterministic from `seed`: each group gets a hash rank from (seed, group), and within each genre (a group's
    most common genre) the lowest ranks go to test, then val, the rest to train. A genre with 3 or more groups
    gets at least one in each split. Returns (track_id, split).
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    if tracks.height == 0:
        raise DataError("no tracks to split")
    groups = split_groups(tracks)
    genres_of: dict[str, Counter[str]] = defaultdict(Counter)
    for tid, genre in zip(tracks["track_id"].to_list(), tracks["genre"].to_list(), strict=True):
        genres_of[groups[tid]][genre] += 1
    by_genre: dict[str, list[str]] = defaultdict(list)
    for group, counts in genres_of.items():
        top = min(counts, key=lambda g: (-counts[g], g))  # most common; ties by name
        by_genre[top].append(group)
    split_of: dict[str, str] = {}
    for members in by_genre.values():
        members.sort(key=lambda g: _rank(seed, g))
        n = len(members)
        n_test, n_val = round(n * fractions[2]), round(n * fractions[1])
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        elif n == 2:
            n_test, n_val = 1, 0
        else:
            n_test, n_val = 0, 0
        for i, group in enumerate(members):
            split_of[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    import polars as pl  # imported here: training reads shards and needs no polars

    ids = tracks["track_id"].to_list()
    return pl.DataFrame({"track_id": ids, "split": [split_of[groups[t]] for t in ids]})


@dataclass(frozen=True)
class Normalizer:
    """Per-mel-band mean and std from the training split; saved with the model."""

    mean: np.ndarray  # (n_mels,)
    std: np.ndarray  # (n_mels,)

    @classmethod
    def fit(cls, mel: np.ndarray, chunk: int = 1024) -> Normalizer:
        """Statistics of (n, n_mels, frames) spectrograms, in float64 chunks so float16 input does not overflow."""
        if len(mel) == 0:
            raise DataError("cannot compute normalisation statistics: the training split is empty")
        total = np.zeros(mel.shape[1])
        total_sq = np.zeros(mel.shape[1])
        count = 0
        for i in range(0, len(mel), chunk):
            part = mel[i : i + chunk].astype(np.float64)
            total += part.sum(axis=(0, 2))
            total_sq += np.square(part).sum(axis=(0, 2))
            count += part.shape[0] * part.shape[2]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-8))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, mel: torch.Tensor) -> torch.Tensor:
        """(..., n_mels, frames) -> normalised float32."""
        mean = torch.as_tensor(self.mean, device=mel.device)[:, None]
        std = torch.as_tensor(self.std, device=mel.device)[:, None]
        return (mel.float() - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Normalizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


class SpectrogramDataset(Dataset[tuple[torch.Tensor, int]]):
    """Spectrograms (n, n_mels, frames) as (1, n_mels, crop) tensors.

    With `crop_frames`, each item is a random crop (training); without, the whole segment (evaluation).
    Items are un-normalised float32; normalisation runs on the batch, on the training device.
    """

    def __init__(self, mel: np.ndarray, labels: np.ndarray, *, crop_frames: int | None = None) -> None:
        if len(mel) != len(labels):
            raise DataError(f"{len(mel)} spectrograms but {len(labels)} labels")
        if crop_frames is not None and crop_frames > mel.shape[-1]:
            raise DataError(f"crop of {crop_frames} frames is longer than the segments ({mel.shape[-1]} frames)")
        self.mel, self.labels, self.crop_frames = mel, labels, crop_frames

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.mel[i]
        if self.crop_frames is not None:
            start = int(torch.randint(0, x.shape[-1] - self.crop_frames + 1, ()).item())
            x = x[:, start : start + self.crop_frames]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None], int(self.labels[i])
