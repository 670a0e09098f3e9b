"""Where a training run's batches come from, and its normalisation statistics: the splits resident on the device,
held there a chunk at a time, or streamed from the shards by a DataLoader (`TrainConfig.resident`)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from genreclf.datasets.loader import Normalizer, StreamingSegments
from genreclf.datasets.manifest import Manifest
from genreclf.datasets.resident import ChunkedSplit, ResidentSplit, budget_bytes, eval_batch_size, split_bytes
from genreclf.errors import DataError
from genreclf.models.inference import eval_logits, stream_accuracy
from genreclf.models.runs import TrainConfig
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Reseed every RNG from (seed, epoch): a resumed run draws exactly what an uninterrupted one would."""
    s = seed * 100_003 + epoch
    torch.manual_seed(s)
    random.seed(s)
    return torch.Generator().manual_seed(s)


def loader(
    ds: StreamingSegments,
    cfg: TrainConfig,
    device: torch.device,
    gen: torch.Generator,
    *,
    batch: int | None = None,
    drop_last: bool = False,
) -> DataLoader[tuple[torch.Tensor, int]]:
    # More workers than row groups would only idle. The generator keeps the loader off the global torch RNG
    # (it draws a worker seed even without workers); the stream itself is seeded from (seed, epoch, worker).
    return DataLoader(
        ds,
        batch_size=batch or cfg.batch_size,
        num_workers=min(cfg.num_workers, len(ds.units)),
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=gen,
        persistent_workers=False,
    )


@dataclass
class RunData:
    """Where a run's batches come from: the splits resident on the device when they fit its budget, else held a
    chunk at a time there (the next read while one trains); crops cut on the device in batch either way. With
    `cfg.resident=False`, streamed from the shards by a DataLoader (the plain path)."""

    train_ds: StreamingSegments
    val_loader: DataLoader[tuple[torch.Tensor, int]]
    train: ResidentSplit | ChunkedSplit | None
    val: ResidentSplit | ChunkedSplit | None
    crop: int
    frames: int

    @classmethod
    def open(
        cls, store: Store, manifest: Manifest, cfg: TrainConfig, device: torch.device, *, crop: int, val_split: str
    ) -> RunData:
        train_ds = StreamingSegments(store, manifest, "train", crop_frames=crop,
                                     crops_per_segment=cfg.crops_per_segment, shuffle_buffer=cfg.shuffle_buffer,
                                     seed=cfg.seed)  # fmt: skip
        val_ds = StreamingSegments(store, manifest, val_split, train=False)
        val_loader = loader(val_ds, cfg, device, torch.Generator().manual_seed(0))
        train: ResidentSplit | ChunkedSplit | None = None
        val: ResidentSplit | ChunkedSplit | None = None
        where, budget = placement(manifest, cfg, device, val_split)
        if where == "resident":
            t0 = time.perf_counter()
            train = ResidentSplit.load(store, manifest, "train", device)
            val = train if val_split == "train" else ResidentSplit.load(store, manifest, val_split, device)
            log.info("read %d training and %d validation segments onto %s in %.1f s", len(train), len(val), device,
                     time.perf_counter() - t0)  # fmt: skip
        elif where == "chunked":
            try:  # two chunks at a time: the one training and the next
                train = ChunkedSplit.open(store, manifest, "train", device, budget // 2)
                val = ChunkedSplit.open(store, manifest, val_split, device, budget // 2)
            except DataError as e:
                log.warning("%s; streaming it instead", e)
                train = val = None
        return cls(train_ds, val_loader, train, val, crop, manifest.mel_shape[1])

    def normalizer(self, store: Store, manifest: Manifest, cfg: TrainConfig, device: torch.device) -> Normalizer:
        """Per-mel-band statistics of the training split, in one pass over its whole segments: those resident on
        the device when they are (not read again), else streamed from the shards."""
        t0 = time.perf_counter()
        if isinstance(self.train, ResidentSplit):
            mel = self.train.mel
            parts: Iterable[Any] = (mel[i : i + 256].cpu() for i in range(0, len(mel), 256))
        else:
            ds = StreamingSegments(store, manifest, "train", train=False, seed=cfg.seed)
            parts = (x for x, _ in loader(ds, cfg, device, torch.Generator().manual_seed(cfg.seed)))
        norm = Normalizer.fit_stream(parts)
        log.info("normalisation statistics of %d training segments in %.1f s", manifest.rows("train"),
                 time.perf_counter() - t0)  # fmt: skip
        return norm

    def steps(self, cfg: TrainConfig, n_train: int, batch: int, *, drop_last: bool) -> int:
        """Steps an epoch of batches of `batch`. Streamed, each loader worker drops its own last partial batch, so an
        epoch has at most n // batch steps, and a split smaller than a batch keeps its partial batches, at most one
        per worker."""
        if drop_last:
            return n_train // batch
        return 1 if self.train is not None else max(1, min(cfg.num_workers, len(self.train_ds.units)))

    def train_batches(
        self, cfg: TrainConfig, device: torch.device, epoch: int, batch: int, *, drop_last: bool
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches of `batch` random crops, drawn from (seed, epoch) whichever the path."""
        gen = seed_epoch(cfg.seed, epoch)
        if self.train is None:
            self.train_ds.set_epoch(epoch)
            return loader(self.train_ds, cfg, device, gen, batch=batch, drop_last=drop_last)
        on_device = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        return self.train.crop_batches(batch_size=batch, crop=self.crop,
                                       crops_per_segment=cfg.crops_per_segment, generator=on_device,
                                       drop_last=drop_last)  # fmt: skip

    @torch.inference_mode()
    def val_accuracy(self, model: nn.Module, norm: Normalizer, device: torch.device, window: int | None) -> float:
        """Accuracy per segment on the validation split, whole segments scored as evaluation scores them; on the
        device, in large batches with one host sync."""
        if self.val is None:
            return stream_accuracy(model, self.val_loader, norm, device=device, window=window)
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        for x, y in self.val.segment_batches(eval_batch_size(self.frames, window, device)):
            correct += (eval_logits(model, x, norm, device, window).argmax(1) == y).sum()
        return int(correct) / len(self.val) if len(self.val) else 0.0


def placement(manifest: Manifest, cfg: TrainConfig, device: torch.device, val_split: str) -> tuple[str, int]:
    """("resident", "chunked" or "streamed", the device's budget): `cfg.resident`, else whether the splits fit."""
    if cfg.resident is False:
        return "streamed", 0
    budget = budget_bytes(device)
    need = split_bytes(manifest, "train") + (split_bytes(manifest, val_split) if val_split != "train" else 0)
    if cfg.resident or need <= budget:
        return "resident", budget
    log.info("training data held a chunk at a time: its %.0f MB exceed %s's budget of %.0f MB", need / 1e6, device,
             budget / 1e6)  # fmt: skip
    return "chunked", budget
