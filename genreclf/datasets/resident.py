"""A split held on the device that trains on it: read once into one float16 tensor (GPU memory on a GPU, RAM on
the CPU), from which every batch of random crops is cut in one indexing operation, with no loader, no worker and
no per-sample Python. Used when the split fits `budget_bytes`; `StreamingSegments` streams it otherwise."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from genreclf.datasets.loader import load_split, window_starts
from genreclf.datasets.manifest import Manifest
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

# Of the device's free memory, what a resident split may take: the rest is the model's, its activations' and the
# optimizer's (a GPU), or everything else the machine runs (a CPU).
BUDGET_FRACTION = {"cuda": 0.5, "cpu": 0.25}


def split_bytes(manifest: Manifest, split: str) -> int:
    """Bytes of one split's spectrograms as float16."""
    n_mels, frames = manifest.mel_shape
    return manifest.rows(split) * n_mels * frames * 2


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def budget_bytes(device: torch.device) -> int:
    """What a resident split may take on `device`: a fraction of its free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * BUDGET_FRACTION["cuda"])
    return int(_available_ram() * BUDGET_FRACTION["cpu"])


@dataclass
class ResidentSplit:
    """One split on a device: spectrograms (n, n_mels, frames) float16 and labels (n,) int64."""

    mel: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def load(cls, store: Store, manifest: Manifest, split: str, device: torch.device) -> ResidentSplit:
        """Read the split from its shards once (shard order) and copy it to `device` (through pinned memory)."""
        arrays = load_split(store, manifest, split)
        mel = torch.from_numpy(np.ascontiguousarray(arrays.mel))
        labels = torch.from_numpy(arrays.labels)
        if device.type == "cuda":
            mel, labels = mel.pin_memory(), labels.pin_memory()
        return cls(mel.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return self.mel.numel() * self.mel.element_size()

    def crop_batches(
        self, *, batch_size: int, crop: int, crops_per_segment: int, generator: torch.Generator, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An epoch of random crops: every segment `crops_per_segment` times, in a random order, each crop at a
        random start; batches of (x (B, 1, n_mels, crop) float32, labels (B,)), un-normalised.

        The order and the starts are drawn on the device from `generator` (a generator of that device), so the
        epoch is the same for the same seed; each batch is one gather from the resident tensor."""
        n, n_mels, frames = self.mel.shape
        dev = self.mel.device
        order = torch.randperm(n * crops_per_segment, generator=generator, device=dev) % n
        starts = torch.randint(0, frames - crop + 1, (len(order),), generator=generator, device=dev)
        offsets = torch.arange(crop, device=dev)
        bands = torch.arange(n_mels, device=dev)[None, :, None]
        stop = len(order) - len(order) % batch_size if drop_last and len(order) >= batch_size else len(order)
        for i in range(0, stop, batch_size):
            seg = order[i : i + batch_size]
            cols = (starts[i : i + batch_size, None] + offsets)[:, None, :]  # (B, 1, crop)
            x = self.mel[seg[:, None, None], bands, cols]  # (B, n_mels, crop)
            yield x.unsqueeze(1).float(), self.labels[seg]

    def segment_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Whole segments in order, (x (B, 1, n_mels, frames) float32, labels (B,)): for validation."""
        for i in range(0, len(self), batch_size):
            yield self.mel[i : i + batch_size].unsqueeze(1).float(), self.labels[i : i + batch_size]


# Windows a validation pass scores at once: large on a GPU, where a pass costs its launch; as predicting does on a CPU.
WINDOWS_PER_PASS = {"cuda": 1024, "cpu": 64}


def eval_batch_size(frames: int, window: int | None, device: torch.device) -> int:
    """Segments a validation pass scores at once: about `WINDOWS_PER_PASS` windows."""
    per_segment = len(window_starts(frames, window)) if window else 1
    return max(1, WINDOWS_PER_PASS.get(device.type, WINDOWS_PER_PASS["cpu"]) // per_segment)
