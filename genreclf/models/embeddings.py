"""A pretrained network's segment embeddings of a dataset: computed once per shard, stored as Parquet, reused.

Each shard's embeddings are `embeddings/<network id>/<feature hash>/<shard>.parquet` (`keys.embedding_key`): one row
per segment (segment_id, track_id, label, split, embedding float32), in the shard's order. The network id names the
network, the sha256 of its converted weights and the extraction's version, and the shard key names the shard's
content, so a stored file is reused only when it was made from the same segments by the same weights; training a
head, the kNN baseline and the label audit all read the same files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import read_shard_table
from genreclf.datasets.manifest import Manifest
from genreclf.datasets.shards import SPLITS
from genreclf.errors import ConfigError, DataError, ModelError, StorageError
from genreclf.models.musicnn import EMBEDDING_DIM, EMBEDDING_LAYERS, FEATURES, Musicnn, segment_embeddings
from genreclf.store.keys import embedding_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

EXTRACTION_VERSION = 1  # bump when what an embedding holds changes: stored ones are then computed again
BATCH_SEGMENTS = 8  # whole segments per forward pass (a 30 s segment is 10 patches)


@dataclass(frozen=True)
class Embeddings:
    """One split's segment embeddings, in shard order."""

    x: np.ndarray  # (n, EMBEDDING_DIM) float32
    labels: np.ndarray  # (n,) int64
    track_ids: np.ndarray  # (n,) object

    def __len__(self) -> int:
        return len(self.labels)


# Most of musicnn's pooled channels are dead: on GTZAN 1,082 of the 1,706 embedding values vary by under 1e-6 across
# tracks (float rounding of a constant), against 0.1-10 for the live ones. Standardizing such a column divides its
# rounding noise by ~1e-12: a model on it then hangs on noise that another device or the least fine-tuning changes
# (fine-tuning from such a head went to a loss of 700,000 in its first epoch). Models read the columns that vary.
MIN_STD = 1e-3


def live_columns(x: np.ndarray) -> np.ndarray:
    """(n, dim) embeddings -> (dim,) bool: the columns whose standard deviation is above MIN_STD."""
    return np.asarray(x.std(axis=0) > MIN_STD)


def network_id(name: str, weights_sha256: str) -> str:
    """What decides an embedding's values besides the segment: the network, its weights, the extraction."""
    return f"{name}-{weights_sha256[:12]}-v{EXTRACTION_VERSION}"


def check_features(manifest: Manifest, name: str) -> None:
    """A ConfigError unless the dataset's spectrograms are the network's input."""
    if FeatureConfig(**manifest.feature_config) != FEATURES:
        raise ConfigError(
            f"dataset {manifest.dataset_id} has {manifest.feature_config['n_mels']}-mel spectrograms at "
            f"{manifest.feature_config['sample_rate']} Hz; {name} needs its own input (16 kHz, 96 mels, log10): "
            f"build the dataset for it (`genreclf run --model {name}`, or build-dataset with "
            f"DatasetParams().for_model({name!r}))"
        )


def usable_network(manifest: Manifest) -> str | None:
    """The pretrained network whose embeddings of this dataset the audit may use (`ensure_embeddings` computes any
    missing): the default one when its weights are cached and the dataset holds its input; else None."""
    from genreclf.models import DEFAULT_PRETRAINED, weights

    if FeatureConfig(**manifest.feature_config) != FEATURES or not weights.available(DEFAULT_PRETRAINED):
        return None
    return DEFAULT_PRETRAINED


def cached_network_id(name: str) -> str:
    """The network id of the cached weights of `name`; a ModelError saying how to fetch them."""
    from genreclf.models import weights

    found = weights.status(name)
    if not found["ok"]:
        raise ModelError(f"pretrained weights {name}: {found['why']}")
    return network_id(name, found["provenance"]["weights_sha256"])


def pretrained_backbone(name: str, device: torch.device) -> Musicnn:
    """The cached network `name` in eval mode on `device`; a ModelError saying how to fetch it."""
    from genreclf.models import weights

    state, _ = weights.load(name)
    net = Musicnn()
    net.load_state_dict(state)
    return net.to(device).eval()


def _schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("segment_id", pa.string(), nullable=False),
            pa.field("track_id", pa.string(), nullable=False),
            pa.field("label", pa.int16(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), EMBEDDING_DIM), nullable=False),
        ],
        metadata={"genreclf.layers": ",".join(f"{k}:{v}" for k, v in EMBEDDING_LAYERS.items())},
    )


@torch.inference_mode()
def embed_table(net: Musicnn, table: pa.Table, *, device: torch.device) -> pa.Table:
    """A shard's rows (`mel` as a tensor column, as `read_shard_table` gives them) -> its embedding rows."""
    mel = table["mel"].combine_chunks().to_numpy_ndarray()  # (n, n_mels, frames) float16
    parts = []
    for i in range(0, len(mel), BATCH_SEGMENTS):
        x = torch.from_numpy(np.asarray(mel[i : i + BATCH_SEGMENTS], np.float32))[:, None].to(device)
        parts.append(segment_embeddings(net, x).float().cpu().numpy())  # (batch, EMBEDDING_DIM)
    emb = np.concatenate(parts) if parts else np.zeros((0, EMBEDDING_DIM), np.float32)
    values = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), EMBEDDING_DIM)
    columns = [table["segment_id"], table["track_id"], table["label"], table["split"], values]
    return pa.Table.from_arrays(columns, schema=_schema())


def ensure_embeddings(store: Store, manifest: Manifest, name: str, *, device: torch.device) -> str:
    """Embeddings of every shard of the dataset under network `name`, computing only the missing ones -> the network
    id (what `load_embeddings` takes). Only the shards without embeddings are read, and the network is loaded only
    for them. Logs how many were reused and computed."""
    check_features(manifest, name)
    net_id = cached_network_id(name)
    net: Musicnn | None = None
    reused, made, t0 = 0, 0, time.perf_counter()
    for shard in manifest.shards:
        key = embedding_key(net_id, shard["key"])
        if store.exists(key) and _rows(store, key) == shard["rows"]:
            reused += 1
            continue
        net = net or pretrained_backbone(name, device)
        table = read_shard_table(store, manifest, shard["key"])
        store.write_parquet(key, embed_table(net, table, device=device), compression="zstd")
        made += 1
        log.info("embedded %s: %d segments", shard["key"], shard["rows"])
    log.info("%s embeddings of dataset %s: %d shards reused, %d computed in %.1f s", name, manifest.dataset_id,
             reused, made, time.perf_counter() - t0)  # fmt: skip
    return net_id


def _rows(store: Store, key: str) -> int:
    try:
        return store.read_parquet(key, columns=["label"]).num_rows
    except (StorageError, pa.ArrowException, OSError) as e:  # unreadable (cut short): computed again
        log.warning("%s cannot be read (%s); computing it again", key, e)
        return -1


def embedding_array(table: pa.Table) -> np.ndarray:
    """The `embedding` column of stored embedding rows -> (rows, EMBEDDING_DIM) float32."""
    return table["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, EMBEDDING_DIM)


def load_embeddings(store: Store, manifest: Manifest, net_id: str, split: str) -> Embeddings:
    """One split's embeddings (`ensure_embeddings` made them), in shard order."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    xs, labels, tracks = [], [], []
    for shard in manifest.shards:
        if not shard["splits"].get(split):
            continue
        table = store.read_parquet(embedding_key(net_id, shard["key"]))
        table = table.filter(pa.compute.equal(table["split"], split))
        xs.append(embedding_array(table))
        labels.append(table["label"].to_numpy().astype(np.int64))
        tracks.append(table["track_id"].to_numpy(zero_copy_only=False))
    if not xs:
        return Embeddings(np.zeros((0, EMBEDDING_DIM), np.float32), np.zeros(0, np.int64), np.zeros(0, object))
    return Embeddings(np.concatenate(xs), np.concatenate(labels), np.concatenate(tracks))
