"""Decoded samples handed from acquisition to the shard that computes their log-mels next, in the same process."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

# What a `DecodedAudio` holds at most by default: about 25 minutes of audio at 22,050 Hz (float32), so that the
# handoff adds a bounded ~128 MB to a build's peak memory, whatever the catalog's size.
HANDOFF_BYTES = 128 << 20


class DecodedAudio:
    """Samples of tracks just decoded, handed from acquisition to the shard that computes their log-mels next.

    build-dataset decodes a track, stores it as FLAC (kept for reruns and other configs), then computes the
    log-mels of its windows: reading that FLAC back cost about a tenth of the whole path (15 ms of ~135 ms per
    minute of audio). Samples are kept by content (their sha256 and rate), exactly as `read_stored` gives them, up to
    `max_bytes` (the oldest dropped first), and each is taken once. A miss (a track acquired in another process or an
    earlier run, or dropped) reads the FLAC: the same samples either way, so shards are the same bytes.
    """

    def __init__(self, max_bytes: int = HANDOFF_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # acquisition and shards run on a thread pool

    def put(self, audio_hash: str, sr: int, y: np.ndarray) -> None:
        """Keep `y` (samples, float32, not written to after) for `take`; the oldest go when it would not fit."""
        if y.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop((audio_hash, sr), None)
            self._bytes -= old.nbytes if old is not None else 0
            while self._items and self._bytes + y.nbytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1].nbytes
            self._items[audio_hash, sr] = y
            self._bytes += y.nbytes

    def take(self, audio_hash: str, sr: int) -> np.ndarray | None:
        """The samples put for `audio_hash` at `sr`, removed from here; None when they are not here."""
        with self._lock:
            y = self._items.pop((audio_hash, sr), None)
            self._bytes -= y.nbytes if y is not None else 0
            return y

    def discard(self, audio_hashes: Iterable[str], sr: int) -> None:
        """Drop the samples of tracks that will not be computed here (a reused shard, a quarantined duplicate)."""
        for h in audio_hashes:
            self.take(h, sr)

    @property
    def nbytes(self) -> int:
        return self._bytes


@functools.cache
def process_handoff() -> DecodedAudio:
    """This process's one `DecodedAudio`, shared by the acquisition and shard tasks on its threads (a Dask worker
    has its own). A function rather than a module constant: a task pickled by value (Dask) refers to it by name, so
    each process finds its own, where a constant's lock would have to be pickled."""
    return DecodedAudio()
