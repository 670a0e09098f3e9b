"""What training and evaluation read from a dataset: segments streamed from its shards, whole splits, and the
normalisation statistics of the training split."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from genreclf.datasets.manifest import Manifest
from genreclf.datasets.shards import SPLITS, mel_numpy, with_tensor_mel
from genreclf.errors import DataError, StorageError
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Normalizer:
    """Per-mel-band mean and std from the training split; saved with the model."""

    mean: np.ndarray  # (n_mels,)
    std: np.ndarray  # (n_mels,)

    @classmethod
    def fit_stream(cls, batches: Iterable[np.ndarray | torch.Tensor]) -> Normalizer:
        """Statistics of spectrograms streamed in parts of shape (..., n_mels, frames), e.g. a loader's batches;
        in float64 (float16 input would overflow), holding one part at a time."""
        total: np.ndarray | None = None
        total_sq: np.ndarray | None = None
        count = 0
        for batch in batches:
            part = np.asarray(batch, dtype=np.float64)
            part = part.reshape(-1, *part.shape[-2:])  # (n, n_mels, frames)
            if total is None or total_sq is None:
                total, total_sq = np.zeros(part.shape[1]), np.zeros(part.shape[1])
            total += part.sum(axis=(0, 2))
            total_sq += np.square(part).sum(axis=(0, 2))
            count += part.shape[0] * part.shape[2]
        if total is None or total_sq is None or count == 0:
            raise DataError("cannot compute normalisation statistics: the training split is empty")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-8))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    @classmethod
    def identity(cls, n_mels: int) -> Normalizer:
        """Mean 0 and std 1: for a network that normalizes its input itself."""
        return cls(np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32))

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


@dataclass
class SplitArrays:
    """One split in memory: spectrograms (n, n_mels, frames) float16, labels (n,), track ids (n,)."""

    mel: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def check_hash(store: Store, key: str, schema: pa.Schema, manifest: Manifest) -> None:
    got = (schema.metadata or {}).get(b"genreclf.feature_hash", b"").decode()
    if got != manifest.feature_hash:
        raise DataError(
            f"{store.uri(key)}: features {got or 'untagged'} do not match the manifest's "
            f"{manifest.feature_hash}; rebuild the dataset"
        )


def read_shard_table(store: Store, manifest: Manifest, key: str, split: str | None = None) -> pa.Table:
    """One shard's rows (of one split when given) with `mel` as an Arrow fixed-shape tensor column, its feature hash
    checked against the manifest's."""
    table = store.read_parquet(key)
    check_hash(store, key, table.schema, manifest)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    return with_tensor_mel(table)


def iter_shard_tables(store: Store, manifest: Manifest, split: str | None = None) -> Iterator[pa.Table]:
    """`read_shard_table` of each shard of the dataset (that holds `split`, when given)."""
    for shard in manifest.shards:
        if split is None or shard["splits"].get(split):
            yield read_shard_table(store, manifest, shard["key"], split)


def load_split(store: Store, manifest: Manifest, split: str) -> SplitArrays:
    """Read one split into memory, in shard order (for small datasets; `StreamingSegments` streams)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    mels, labels, tracks = [], [], []
    for table in iter_shard_tables(store, manifest, split):
        if table.num_rows == 0:
            continue
        mels.append(table["mel"].combine_chunks().to_numpy_ndarray())
        labels.append(table["label"].to_numpy())
        tracks.append(table["track_id"].to_numpy(zero_copy_only=False))
    if not mels:
        n_mels, frames = manifest.mel_shape
        return SplitArrays(np.zeros((0, n_mels, frames), np.float16), np.zeros(0, np.int64), np.zeros(0, object))
    return SplitArrays(np.concatenate(mels), np.concatenate(labels).astype(np.int64), np.concatenate(tracks))


class StreamingSegments(IterableDataset[tuple[torch.Tensor, int]]):
    """One split of a dataset streamed from its shards, row group by row group; never the whole split in memory.

    Row groups are dealt out to readers: DataLoader worker w of W in process `rank` of `world_size` reads every
    (world_size * W)-th row group of the split, so every segment is read once per epoch across all of them.

    `train=True`: row groups in a new random order each epoch (`set_epoch`), rows through a buffer of
    `shuffle_buffer` segments, and `crops_per_segment` random crops of `crop_frames` from each, dealt out of the
    buffer one at a time (so a batch rarely holds two crops of one segment). `train=False`: shard order, and each
    segment cut into fixed windows of `crop_frames` (the last one ending where the segment ends).
    Without `crop_frames`, whole segments. Yields (x (1, n_mels, frames) float32, label), un-normalised.
    """

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        split: str,
        *,
        crop_frames: int | None = None,
        train: bool = True,
        crops_per_segment: int = 1,
        shuffle_buffer: int = 1_000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        open_files: int = 8,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        frames = manifest.mel_shape[1]
        if crop_frames is not None and not 0 < crop_frames <= frames:
            raise DataError(f"crop of {crop_frames} frames does not fit segments of {frames} frames")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in 0..{world_size - 1}")
        if crops_per_segment < 1:
            raise DataError(f"crops_per_segment must be at least 1, not {crops_per_segment}")
        self.store, self.manifest, self.split = store, manifest, split
        self.crop_frames, self.train, self.seed = crop_frames, train, seed
        self.crops_per_segment = crops_per_segment if train and crop_frames is not None else 1
        self.shuffle_buffer = shuffle_buffer if train else 0
        self.rank, self.world_size, self.open_files = rank, world_size, open_files
        self.epoch = 0
        # (shard key, row group index or None for "the whole shard, filtered"): the units of work.
        self.units: list[tuple[str, int | None]] = [(key, group) for key, group, _ in manifest.row_groups(split)]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    @property
    def num_segments(self) -> int:
        return self.manifest.rows(self.split)

    def windows_per_segment(self) -> int:
        if self.crop_frames is None or self.train:
            return self.crops_per_segment
        return len(self._window_starts(self.manifest.mel_shape[1]))

    def __len__(self) -> int:
        """Items in one epoch across all readers: segments times crops (training) or windows (evaluating)."""
        return self.num_segments * self.windows_per_segment()

    def _my_units(self) -> list[tuple[str, int | None]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        units = list(self.units)
        if self.train:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(units))
            units = [units[i] for i in order]
        reader, readers = self.rank * workers + worker, self.world_size * workers
        return units[reader::readers]

    def _window_starts(self, frames: int) -> list[int]:
        return window_starts(frames, self.crop_frames or frames)

    def _read(self) -> Iterator[tuple[np.ndarray, int]]:
        files: dict[str, pq.ParquetFile] = {}
        try:
            for key, group in self._my_units():
                if key not in files:
                    if len(files) >= self.open_files:
                        files.pop(next(iter(files))).close()
                    try:
                        files[key] = pq.ParquetFile(self.store.fs.open_input_file(self.store.path(key)))
                    except FileNotFoundError as e:
                        raise StorageError(f"{self.store.uri(key)} does not exist") from e
                    check_hash(self.store, key, files[key].schema_arrow, self.manifest)
                pf = files[key]
                if group is None:
                    table = pf.read(columns=["mel", "label", "split"])
                    table = table.filter(pc.equal(table["split"], self.split))
                else:
                    table = pf.read_row_group(group, columns=["mel", "label"])
                mel, labels = mel_numpy(table), table.column("label").to_numpy()
                for i in range(len(labels)):
                    yield mel[i], int(labels[i])
        finally:
            for pf in files.values():
                pf.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, info.id if info is not None else 0, 1])
        rows = self._read()
        if self.shuffle_buffer > 1 or self.crops_per_segment > 1:
            rows = _shuffled(rows, max(1, self.shuffle_buffer), rng, repeats=self.crops_per_segment)
        for mel, label in rows:
            frames = mel.shape[-1]
            if self.crop_frames is None:
                starts = [0]
            elif self.train:
                starts = [int(rng.integers(0, frames - self.crop_frames + 1))]
            else:
                starts = self._window_starts(frames)
            width = self.crop_frames or frames
            for s in starts:
                x = np.ascontiguousarray(mel[:, s : s + width], dtype=np.float32)
                yield torch.from_numpy(x)[None], label  # (1, n_mels, frames)


def window_starts(frames: int, window: int, *, cover_end: bool = True) -> list[int]:
    """Starts of back-to-back windows over `frames`; one window (from 0) when `window` covers them all.

    With `cover_end`, a last window ends at the end, so every frame is seen (it may overlap the one before):
    what a model's input is cut into. Without it the tail shorter than a window is dropped, so no two windows
    share a frame: the audit's crops, each an independent sample of the track."""
    if window >= frames:
        return [0]
    starts = list(range(0, frames - window + 1, window))
    if cover_end and starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def _shuffled(
    rows: Iterator[tuple[np.ndarray, int]], size: int, rng: np.random.Generator, *, repeats: int = 1
) -> Iterator[tuple[np.ndarray, int]]:
    """A shuffle buffer: hold about `size` rows (copied, so a row group is freed once read), each `repeats` times
    (the same array), and emit a random entry."""
    buffer: list[tuple[np.ndarray, int]] = []
    for mel, label in rows:
        row = (mel.copy(), label)
        buffer += [row] * repeats
        while len(buffer) >= size * repeats:
            i = int(rng.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    order = rng.permutation(len(buffer))
    for i in order:
        yield buffer[i]
