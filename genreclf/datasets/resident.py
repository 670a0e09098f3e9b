"""A split held on the device that trains on it: read once into one float16 tensor (GPU memory on a GPU, RAM on
the CPU), from which every batch of random crops is cut in one indexing operation, with no loader, no worker and
no per-sample Python. Used when the split fits `budget_bytes`; a split that does not is held a chunk at a time
(`ChunkedSplit`): the next chunk is read while the current one trains."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq
import torch

from genreclf.datasets.loader import check_hash, load_split, window_starts
from genreclf.datasets.manifest import Manifest
from genreclf.datasets.shards import mel_numpy
from genreclf.errors import DataError
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

# Of the device's free memory, what a resident split may take: the rest is the model's, its activations' and the
# optimizer's (a GPU), or everything else the machine runs (a CPU).
BUDGET_FRACTION = {"cuda": 0.5, "cpu": 0.25}


# Row groups read at once: Parquet decodes them without the GIL, so threads read a split at the cores' speed.
READERS = min(8, os.cpu_count() or 1)

Unit = tuple[str, int, int]  # (shard key, row group, rows): the part of a split one row group holds


def split_units(manifest: Manifest, split: str) -> list[Unit] | None:
    """The row groups that hold `split`, in shard order; None when a shard holding it records none (written before
    shards recorded them)."""
    parts = manifest.row_groups(split)
    units = [(key, group, n) for key, group, n in parts if group is not None]
    return units if len(units) == len(parts) else None


def read_units(
    store: Store, manifest: Manifest, units: list[Unit], *, pinned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of `units`, in order: spectrograms (n, n_mels, frames) float16 and labels (n,) int64, each in one
    host tensor (page-locked with `pinned`, for an asynchronous copy to a GPU). `READERS` threads read the row groups,
    each straight into its place: no list of parts, no concatenation, no second copy to pin."""
    n_mels, frames = manifest.mel_shape
    ends = np.cumsum([n for _, _, n in units]).tolist()
    shape = (ends[-1] if ends else 0, n_mels, frames)
    if pinned:
        mel = torch.empty(shape, dtype=torch.float16, pin_memory=True)
        labels = torch.empty(shape[0], dtype=torch.int64, pin_memory=True)
    else:  # numpy asks for huge pages for large arrays: where they are on request (madvise), its memory is first
        # written about 5x as fast as torch's
        mel, labels = torch.from_numpy(np.empty(shape, np.float16)), torch.from_numpy(np.empty(shape[0], np.int64))
    mel_out, labels_out = mel.numpy(), labels.numpy()

    def read(i: int) -> None:
        key, group, n = units[i]
        with store.fs.open_input_file(store.path(key)) as f:
            parquet = pq.ParquetFile(f)
            check_hash(store, key, parquet.schema_arrow, manifest)
            table = parquet.read_row_group(group, columns=["mel", "label"])
        if table.num_rows != n:
            raise DataError(f"{store.uri(key)}: row group {group} holds {table.num_rows} rows, the manifest says {n}; "
                            "the shard changed after its manifest was written: rebuild the dataset")  # fmt: skip
        mel_out[ends[i] - n : ends[i]] = mel_numpy(table)
        labels_out[ends[i] - n : ends[i]] = table.column("label").to_numpy()

    with ThreadPoolExecutor(READERS, thread_name_prefix="read-rows") as pool:
        list(pool.map(read, range(len(units))))
    return mel, labels


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


def free_bytes(device: torch.device) -> int:
    """Memory free on `device` now: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return _available_ram()


def budget_bytes(device: torch.device) -> int:
    """What a resident split may take on `device`: a fraction of its free memory."""
    return int(free_bytes(device) * BUDGET_FRACTION.get(device.type, BUDGET_FRACTION["cpu"]))


@dataclass
class ResidentSplit:
    """One split on a device: spectrograms (n, n_mels, frames) float16 and labels (n,) int64."""

    mel: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def load(cls, store: Store, manifest: Manifest, split: str, device: torch.device) -> ResidentSplit:
        """Read the split from its shards once (shard order), its row groups in parallel into pinned memory on a GPU,
        and copy it to `device`. (Shards that record no row groups are read one after the other.)"""
        units = split_units(manifest, split)
        if units is None:
            arrays = load_split(store, manifest, split)
            mel, labels = torch.from_numpy(arrays.mel), torch.from_numpy(arrays.labels)
        else:
            mel, labels = read_units(store, manifest, units, pinned=device.type == "cuda")
        return cls(mel.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

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


@dataclass
class ChunkedSplit:
    """A split larger than the device's budget, held a chunk at a time: each epoch its row groups in a new order,
    packed into chunks of at most `chunk_bytes`; each chunk is read on a thread while the one
    before trains, and cut into crops as a resident split is. On a GPU the thread copies it from pinned memory on a
    stream of its own, so the copy overlaps the training kernels instead of queueing between them. Batches run
    across chunks, so an epoch has as many steps as a resident one."""

    store: Store
    manifest: Manifest
    split: str
    device: torch.device
    chunk_bytes: int
    units: list[Unit]  # the split's row groups
    _copies: torch.cuda.Stream | None = field(default=None, init=False, repr=False)  # a GPU's copy stream

    @classmethod
    def open(cls, store: Store, manifest: Manifest, split: str, device: torch.device, chunk_bytes: int) -> ChunkedSplit:
        units = split_units(manifest, split)
        if units is None:
            raise DataError(f"dataset {manifest.dataset_id}'s shards record no row groups (written before them): "
                            "rebuild the dataset, or train with resident=False")  # fmt: skip
        return cls(store, manifest, split, device, chunk_bytes, units)

    def _chunks(self, generator: torch.Generator) -> list[list[Unit]]:
        n_mels, frames = self.manifest.mel_shape
        per_row = n_mels * frames * 2
        chunks: list[list[Unit]] = [[]]
        rows = 0  # in the last chunk
        for i in torch.randperm(len(self.units), generator=generator, device=generator.device).tolist():
            unit = self.units[i]
            if chunks[-1] and (rows + unit[2]) * per_row > self.chunk_bytes:
                chunks.append([])
                rows = 0
            chunks[-1].append(unit)
            rows += unit[2]
        return [c for c in chunks if c]

    def _load(self, units: list[Unit]) -> tuple[ResidentSplit, torch.cuda.Event | None]:
        """A chunk read and on its way to the device; on a GPU, with the event its copy records when done."""
        mel, labels = read_units(self.store, self.manifest, units, pinned=self.device.type == "cuda")
        if self.device.type != "cuda":
            return ResidentSplit(mel, labels), None
        if self._copies is None:
            self._copies = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._copies):
            chunk = ResidentSplit(mel.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))
            copied = torch.cuda.Event()
            copied.record(self._copies)
        return chunk, copied

    def _loaded(self, chunks: list[list[Unit]]) -> Iterator[ResidentSplit]:
        """The chunks on the device, one after the other; the next is read on a thread while this one is used."""
        with ThreadPoolExecutor(1, thread_name_prefix="next-chunk") as pool:
            coming = pool.submit(self._load, chunks[0]) if chunks else None
            for i in range(len(chunks)):
                assert coming is not None
                chunk, copied = coming.result()
                if copied is not None:  # the training stream waits for the copy, on the GPU, not the host
                    training = torch.cuda.current_stream(self.device)
                    training.wait_event(copied)
                    for t in (chunk.mel, chunk.labels):  # memory the copy stream allocated, used on this one
                        t.record_stream(training)
                coming = pool.submit(self._load, chunks[i + 1]) if i + 1 < len(chunks) else None
                yield chunk

    def crop_batches(
        self, *, batch_size: int, crop: int, crops_per_segment: int, generator: torch.Generator, drop_last: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As `ResidentSplit.crop_batches`, over chunks in an order drawn from `generator` too; batches run across
        chunks."""
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        for chunk in self._loaded(self._chunks(generator)):
            for x, y in chunk.crop_batches(batch_size=batch_size, crop=crop, crops_per_segment=crops_per_segment,
                                           generator=generator, drop_last=False):  # fmt: skip
                pending.append((x, y))
                yield from _full_batches(pending, batch_size)
        if pending and not drop_last:
            yield torch.cat([x for x, _ in pending]), torch.cat([y for _, y in pending])

    def segment_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Whole segments, chunk after chunk: for validation."""
        for chunk in self._loaded(self._chunks(torch.Generator().manual_seed(0))):
            yield from chunk.segment_batches(batch_size)

    def __len__(self) -> int:
        return sum(n for _, _, n in self.units)


def _full_batches(
    pending: list[tuple[torch.Tensor, torch.Tensor]], size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of exactly `size` from the pieces in `pending` (in order); what is left stays in it."""
    while sum(len(y) for _, y in pending) >= size:
        x, y = torch.cat([x for x, _ in pending]), torch.cat([y for _, y in pending])
        pending[:] = [(x[size:], y[size:])] if len(y) > size else []
        yield x[:size], y[:size]
