"""Shards and manifests: what is written reads back, only completed datasets are visible, configs never mix."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from genreclf.acquisition.audio import encode_flac
from genreclf.datasets import shards
from genreclf.datasets.dataset import build_shard
from genreclf.datasets.features import log_mel_batch
from genreclf.datasets.loader import StreamingSegments, iter_shard_tables, load_split
from genreclf.datasets.manifest import Manifest, read_manifest, write_manifest
from genreclf.datasets.shards import SegmentRows, mel_numpy, read_shard_entry, write_shard
from genreclf.errors import ConfigError, DataError, StorageError
from genreclf.settings import Settings
from genreclf.store.keys import DATASET_LATEST, audio_key, dataset_prefix
from genreclf.store.storage import Store
from tests.s3server import S3Server
from tests.shard_rows import FEAT, FRAMES, LABELS, N_MELS, SEG, SPLITS_A, WIN, make_rows, shard_key


@pytest.fixture
def store(store_url: str) -> Store:
    return Store.open(store_url)


def manifest_of(dataset_id: str, shards: list[dict[str, Any]], *, feature_hash: str = FEAT.hash) -> Manifest:
    return Manifest(
        dataset_id=dataset_id,
        catalog_version="cat1",
        feature_config=dataclasses.asdict(FEAT),
        feature_hash=feature_hash,
        segment_config=dataclasses.asdict(SEG),
        labels=LABELS,
        split_seed=0,
        shards=shards,
    )


def write_dataset(store: Store, dataset_id: str, shards: list[SegmentRows], **kw: bool) -> Manifest:
    entries = [
        write_shard(store, shard_key(dataset_id, i), rows, feature_hash=FEAT.hash) for i, rows in enumerate(shards)
    ]
    manifest = manifest_of(dataset_id, entries)
    write_manifest(store, manifest, **kw)
    return manifest


# --- write and read back --------------------------------------------------------------------------------------


def test_shard_entry_describes_what_was_written(store: Store, rng: np.random.Generator) -> None:
    rows = make_rows(rng, SPLITS_A)

    entry = write_shard(store, "datasets/a/shards/part-00000.parquet", rows, feature_hash=FEAT.hash)

    assert entry == {
        "key": "datasets/a/shards/part-00000.parquet",
        "rows": 8,
        "bytes": len(store.read_bytes("datasets/a/shards/part-00000.parquet")),
        "sha256": hashlib.sha256(store.read_bytes("datasets/a/shards/part-00000.parquet")).hexdigest(),
        "splits": {"train": 4, "val": 2, "test": 2},
        "genres": {"jazz": 4, "rock": 4},
        "row_groups": [["train", 4], ["val", 2], ["test", 2]],  # one split per row group, train first
    }
    # Read back from the store: all but the hash, which would mean reading every byte of every reused shard.
    assert read_shard_entry(store, entry["key"]) == {k: v for k, v in entry.items() if k != "sha256"}
    table = store.read_parquet(entry["key"])
    assert table.schema.metadata[b"genreclf.feature_hash"] == FEAT.hash.encode()
    assert table.column("split").to_pylist() == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    assert pq.ParquetFile(store.path(entry["key"])).metadata.num_row_groups == 3
    # Stored as one binary value per row (fast to decode), read as an Arrow fixed-shape float16 tensor.
    tensor = next(iter_shard_tables(store, manifest_of("a", [entry])))
    assert tensor.schema.field("mel").type == pa.fixed_shape_tensor(pa.float16(), (N_MELS, FRAMES))
    assert mel_numpy(table).shape == (8, N_MELS, FRAMES)


def test_splits_read_back_within_float16(store: Store, rng: np.random.Generator) -> None:
    rows = make_rows(rng, SPLITS_A)
    write_dataset(store, "a", [rows])

    manifest = read_manifest(store, "latest")

    for split in ["train", "val", "test"]:
        arrays = load_split(store, manifest, split)
        idx = [i for i, s in enumerate(rows.split) if s == split]
        expected = np.stack([rows.mel[i] for i in idx])
        assert arrays.mel.dtype == np.float16
        assert arrays.mel.shape == (len(idx), N_MELS, FRAMES)
        np.testing.assert_array_equal(arrays.mel, expected.astype(np.float16))
        np.testing.assert_allclose(arrays.mel, expected, rtol=1e-3, atol=1e-3)
        assert arrays.labels.tolist() == [rows.label[i] for i in idx]
        assert arrays.labels.dtype == np.int64
        assert arrays.track_ids.tolist() == [rows.track_id[i] for i in idx]


def test_manifest_round_trip(store: Store, rng: np.random.Generator) -> None:
    written = write_dataset(store, "a", [make_rows(rng, SPLITS_A), make_rows(rng, ["train", "test"], prefix="u")])

    manifest = read_manifest(store, "latest")

    assert store.read_text(DATASET_LATEST) == "a"
    assert manifest.created_at  # stamped when written
    assert dataclasses.replace(manifest, created_at="") == written
    assert read_manifest(store, "a") == manifest
    assert manifest.mel_shape == (N_MELS, FRAMES)
    assert manifest.rows() == 10
    assert manifest.rows("train") == 5
    assert manifest.counts() == {"splits": {"train": 5, "val": 2, "test": 3}, "genres": {"jazz": 6, "rock": 4}}


def test_splits_concatenate_shards_in_order(store: Store, rng: np.random.Generator) -> None:
    first, second = make_rows(rng, ["train"] * 4), make_rows(rng, ["train"] * 2 + ["val"] * 2, prefix="u")
    manifest = write_dataset(store, "a", [first, second])

    train = load_split(store, manifest, "train")

    assert train.track_ids.tolist() == ["t0", "t0", "t1", "t1", "u0", "u0"]
    np.testing.assert_array_equal(train.mel[4:], np.stack(second.mel[:2]).astype(np.float16))


def test_a_split_reads_only_the_shards_that_hold_it(store: Store, rng: np.random.Generator) -> None:
    manifest = write_dataset(store, "a", [make_rows(rng, ["train"] * 4), make_rows(rng, ["val"] * 2, prefix="u")])
    store.delete(shard_key("a", 0))  # holds no val rows, so reading val must not touch it

    assert load_split(store, manifest, "val").track_ids.tolist() == ["u0", "u0"]
    with pytest.raises(StorageError, match="does not exist"):
        load_split(store, manifest, "train")


def test_an_empty_split_has_the_manifest_shape(store: Store, rng: np.random.Generator) -> None:
    manifest = write_dataset(store, "a", [make_rows(rng, ["train"] * 4)])

    test = load_split(store, manifest, "test")

    assert test.mel.shape == (0, N_MELS, FRAMES)
    assert len(test) == 0


def test_unknown_split_is_refused(store: Store, rng: np.random.Generator) -> None:
    manifest = write_dataset(store, "a", [make_rows(rng, SPLITS_A)])

    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split(store, manifest, "dev")


def test_an_empty_shard_is_refused(store: Store) -> None:
    with pytest.raises(DataError, match="empty shard"):
        write_shard(store, "datasets/a/shards/part-00000.parquet", SegmentRows(), feature_hash=FEAT.hash)
    assert store.keys("datasets") == []


# --- only completed datasets are visible ------------------------------------------------------------------


def test_no_dataset_yet(store: Store) -> None:
    with pytest.raises(StorageError, match="no dataset"):
        read_manifest(store)


def test_a_dataset_without_manifest_is_not_readable_and_latest_stays(store: Store, rng: np.random.Generator) -> None:
    write_dataset(store, "a", [make_rows(rng, SPLITS_A)])
    before = read_manifest(store)
    train_before = load_split(store, before, "train")

    # Dataset b crashes after its shards, before its manifest.
    write_shard(store, shard_key("b", 0), make_rows(rng, SPLITS_A, prefix="b"), feature_hash=FEAT.hash)

    with pytest.raises(StorageError, match="never completed") as e:
        read_manifest(store, "b")
    assert store.uri(f"{dataset_prefix('b')}/manifest.json") in str(e.value)
    after = read_manifest(store)
    assert after == before
    train_after = load_split(store, after, "train")
    np.testing.assert_array_equal(train_after.mel, train_before.mel)
    assert train_after.track_ids.tolist() == train_before.track_ids.tolist()


def test_write_manifest_refuses_a_missing_shard(store: Store, rng: np.random.Generator) -> None:
    write_dataset(store, "a", [make_rows(rng, SPLITS_A)])
    entry = write_shard(store, shard_key("b", 0), make_rows(rng, SPLITS_A), feature_hash=FEAT.hash)
    missing = {**entry, "key": shard_key("b", 1)}

    with pytest.raises(DataError, match="not written") as e:
        write_manifest(store, manifest_of("b", [entry, missing]))

    assert store.uri(shard_key("b", 1)) in str(e.value)
    assert not store.exists(f"{dataset_prefix('b')}/manifest.json")
    assert store.read_text(DATASET_LATEST) == "a"


def test_write_manifest_without_make_latest(store: Store, rng: np.random.Generator) -> None:
    write_dataset(store, "a", [make_rows(rng, SPLITS_A)])

    write_dataset(store, "b", [make_rows(rng, SPLITS_A)], make_latest=False)

    assert read_manifest(store).dataset_id == "a"
    assert read_manifest(store, "b").dataset_id == "b"


def test_a_manifest_of_another_version_is_refused(store: Store, rng: np.random.Generator) -> None:
    manifest = write_dataset(store, "a", [make_rows(rng, SPLITS_A)])
    store.write_json(f"{dataset_prefix('a')}/manifest.json", {**manifest.to_json(), "version": 99})

    with pytest.raises(DataError, match="manifest version 99"):
        read_manifest(store, "a")


# --- feature configs never mix ----------------------------------------------------------------------------


def test_a_shard_with_another_feature_hash_is_refused(store: Store, rng: np.random.Generator) -> None:
    other = dataclasses.replace(FEAT, fmin=30.0).hash
    entry = write_shard(store, shard_key("a", 0), make_rows(rng, SPLITS_A), feature_hash=other)
    manifest = manifest_of("a", [entry])
    write_manifest(store, manifest)

    with pytest.raises(DataError, match=f"features {other} do not match the manifest's {FEAT.hash}"):
        load_split(store, manifest, "train")


def whole_table(rows: SegmentRows, feature_hash: str) -> pa.Table:
    """The rows as one shard table, ordered train, val, test: what a shard holds, built at once."""
    order = rows.split_order()
    mel = np.ascontiguousarray(np.stack([rows.mel[i] for i in order]), dtype=np.float16)
    schema = shards.shard_schema(mel.shape[1], mel.shape[2], feature_hash)
    return pa.Table.from_arrays([*rows.meta_columns(order), shards._mel_array(mel)], schema=schema)


def test_an_untagged_shard_is_refused(store: Store, rng: np.random.Generator) -> None:
    table = whole_table(make_rows(rng, SPLITS_A), FEAT.hash).replace_schema_metadata(None)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store.write_bytes(shard_key("a", 0), buf.getvalue())
    manifest = manifest_of("a", [{"key": shard_key("a", 0), "rows": 8, "splits": {"train": 4}, "genres": {}}])

    with pytest.raises(DataError, match="untagged"):
        list(iter_shard_tables(store, manifest))


def test_shard_writer_writes_each_row_group_once_its_rows_are_in_to_the_bytes_of_the_whole_table(
    store: Store, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(rng, ["train"] * 9 + ["val"] * 4 + ["test"] * 3)
    table = whole_table(rows, FEAT.hash)
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 3 * (table.nbytes // table.num_rows))  # 3 rows per row group
    # What writing the whole table at once gives: one split per row group, even groups within a split.
    groups = [("train", 0, 3), ("train", 3, 3), ("train", 6, 3), ("val", 9, 2), ("val", 11, 2), ("test", 13, 3)]
    buf = io.BytesIO()
    compression = {name: "zstd" for name in table.schema.names} | {"mel": shards.MEL_COMPRESSION}
    with pq.ParquetWriter(buf, table.schema, compression=compression) as whole:
        for _, start, n in groups:
            whole.write_table(table.slice(start, n), row_group_size=n)

    written = []
    with shards.ShardWriter(store, "s/streamed.parquet", rows, n_mels=N_MELS, frames=FRAMES,
                            feature_hash=FEAT.hash) as writer:  # fmt: skip
        for i in range(0, len(rows), 2):  # two rows at a time, as batches of spectrograms come
            writer.add(np.stack(rows.mel[i : i + 2]).astype(np.float16))
            written.append(writer.written)
            assert not store.exists("s/streamed.parquet")  # streamed to a temporary until it is whole
        entry = writer.close()

    assert written == [0, 1, 2, 2, 3, 4, 5, 6]  # after rows 0-1, 0-3, 0-5, ...: each group goes once it is full
    assert store.read_bytes("s/streamed.parquet") == buf.getvalue()
    assert entry["row_groups"] == [[split, n] for split, _, n in groups]
    assert entry == write_shard(store, "s/whole.parquet", rows, feature_hash=FEAT.hash) | {"key": "s/streamed.parquet"}


def test_a_shard_writer_that_fails_half_way_leaves_nothing(store: Store, rng: np.random.Generator) -> None:
    rows = make_rows(rng, ["train"] * 6)
    with (
        pytest.raises(RuntimeError, match="decoder died"),
        shards.ShardWriter(
            store, "s/broken.parquet", rows, n_mels=N_MELS, frames=FRAMES, feature_hash=FEAT.hash
        ) as writer,
    ):
        writer.add(np.stack(rows.mel[:3]).astype(np.float16))
        raise RuntimeError("decoder died")
    with (
        pytest.raises(DataError, match="without close"),
        shards.ShardWriter(
            store, "s/unclosed.parquet", rows, n_mels=N_MELS, frames=FRAMES, feature_hash=FEAT.hash
        ) as writer,
    ):
        writer.add(np.stack(rows.mel).astype(np.float16))

    assert not store.exists("s/broken.parquet") and not store.exists("s/unclosed.parquet")
    assert not list(Path(store.path(".tmp")).glob("*"))  # the temporaries went too


# --- build_shard: audio in the store -> log-mel shard -------------------------------------------------------


def test_build_shard_from_stored_audio(store: Store, tone: np.ndarray, rng: np.random.Generator) -> None:
    noise = rng.normal(0, 0.1, tone.size).astype(np.float32)
    store.write_bytes(audio_key("tone"), encode_flac(tone, sr=SEG.sample_rate))
    store.write_bytes(audio_key("noise"), encode_flac(noise, sr=SEG.sample_rate))
    tracks: list[dict[str, Any]] = [
        {"track_id": "tone", "artist_id": "a1", "genre": "rock", "split": "train", "offsets": [0.0, 0.25, 0.5]},
        # 0.9 s + 0.25 s runs past the end of the second: that window is zero-padded.
        {"track_id": "noise", "artist_id": None, "genre": "jazz", "split": "val", "offsets": [0.0, 0.9]},
    ]

    entry = build_shard(store, shard_key("a", 0), tracks, labels=LABELS, seg=SEG, feat=FEAT)
    manifest = manifest_of("a", [entry])
    write_manifest(store, manifest)

    assert entry["splits"] == {"train": 3, "val": 2}
    train, val = load_split(store, manifest, "train"), load_split(store, manifest, "val")
    assert train.labels.tolist() == [1, 1, 1]
    assert val.labels.tolist() == [0, 0]
    # FLAC is 16-bit and the shard float16: compare with the log-mel of the same quantised audio.
    quantised = np.round(tone * 32_768) / 32_768
    expected = log_mel_batch(
        np.stack([quantised[round(o * SEG.sample_rate) :][:WIN] for o in [0.0, 0.25, 0.5]]), cfg=FEAT
    )
    np.testing.assert_allclose(train.mel.astype(np.float32), expected, atol=0.02, rtol=2e-3)
    tail = np.pad(noise[round(0.9 * SEG.sample_rate) :], (0, WIN - (tone.size - round(0.9 * SEG.sample_rate))))
    np.testing.assert_allclose(val.mel[1].astype(np.float32), log_mel_batch(tail, cfg=FEAT)[0], atol=0.05, rtol=5e-3)
    table = store.read_parquet(entry["key"], columns=["segment_id", "offset_s", "artist_id"])
    assert table.column("segment_id").to_pylist() == ["tone-0000", "tone-0001", "tone-0002", "noise-0000", "noise-0001"]
    assert table.column("offset_s").to_pylist() == pytest.approx([0.0, 0.25, 0.5, 0.0, 0.9])
    assert table.column("artist_id").to_pylist() == ["a1", "a1", "a1", None, None]


def test_build_shard_refuses_features_above_the_decoding_rate(store: Store) -> None:
    with pytest.raises(ConfigError, match="feature sample rate 44100 is above the decoding rate 22050"):
        build_shard(
            store, shard_key("a", 0), [], labels=LABELS, seg=SEG, feat=dataclasses.replace(FEAT, sample_rate=44_100)
        )


# --- a writer killed before its manifest --------------------------------------------------------------------

_KILLED_WRITER = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from tests.shard_rows import make_rows, shard_key, FEAT, SPLITS_A
from genreclf.datasets.shards import write_shard
from genreclf.store.storage import Store
store = Store.open({url!r})
rng = np.random.default_rng(1)
for i in range(10_000):  # shards of dataset b, forever; the manifest would come after
    write_shard(store, shard_key("b", i), make_rows(rng, SPLITS_A * 20, prefix="b"), feature_hash=FEAT.hash)
"""


def test_a_writer_killed_before_its_manifest_leaves_the_old_dataset(
    store: Store, store_url: str, rng: np.random.Generator
) -> None:
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    write_dataset(store, "a", [make_rows(rng, SPLITS_A)])
    before = read_manifest(store)
    train_before = load_split(store, before, "train")
    code = _KILLED_WRITER.format(root=str(Path(__file__).resolve().parents[1]), url=store_url)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while len(store.keys("datasets/b/shards")) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-write: no cleanup, no manifest
    finally:
        proc.kill()
        proc.wait()

    assert proc.returncode == -signal.SIGKILL
    assert len(store.keys("datasets/b/shards")) >= 3
    with pytest.raises(StorageError, match="never completed"):
        read_manifest(store, "b")
    after = read_manifest(store)
    assert after == before and store.read_text(DATASET_LATEST) == "a"
    np.testing.assert_array_equal(load_split(store, after, "train").mel, train_before.mel)


# --- streaming ----------------------------------------------------------------------------------------------


def streamed(ds: StreamingSegments, **loader: Any) -> tuple[np.ndarray, list[int]]:
    from torch.utils.data import DataLoader

    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=None, **loader):
        xs.append(x.numpy())
        ys.append(int(y))
    return np.stack(xs), ys


@pytest.fixture
def streaming_dataset(store: Store, rng: np.random.Generator) -> tuple[Manifest, list[SegmentRows]]:
    shards = [make_rows(rng, SPLITS_A * 3, prefix=p) for p in "tuvw"]
    return write_dataset(store, "a", shards), shards


def test_streaming_gives_each_segment_of_a_split_once_across_workers(
    store: Store, streaming_dataset: tuple[Manifest, list[SegmentRows]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, shards = streaming_dataset
    monkeypatch.setattr("genreclf.datasets.shards.ROW_GROUP_BYTES", 4 * N_MELS * FRAMES)  # ~2 rows a row group
    manifest = write_dataset(store, "b", shards)
    expected = sorted(
        m.astype(np.float16).tobytes()
        for rows in shards
        for m, s in zip(rows.mel, rows.split, strict=True)
        if s == "train"
    )
    assert sum(len(s["row_groups"]) for s in manifest.shards) > 8

    for workers in (0, 2):
        ds = StreamingSegments(store, manifest, "train", train=True, shuffle_buffer=5, seed=3)
        xs, _ = streamed(ds, num_workers=workers)
        assert xs.shape == (len(expected), 1, N_MELS, FRAMES) and xs.dtype == np.float32
        assert sorted(x[0].astype(np.float16).tobytes() for x in xs) == expected
    # Two processes of a data-parallel job split the row groups between them too.
    halves = [streamed(StreamingSegments(store, manifest, "val", rank=r, world_size=2, train=False))[0] for r in (0, 1)]
    assert len(halves[0]) + len(halves[1]) == manifest.rows("val") and min(map(len, halves)) > 0


def test_streaming_shuffles_by_seed_and_epoch(
    store: Store, streaming_dataset: tuple[Manifest, list[SegmentRows]]
) -> None:
    manifest, _ = streaming_dataset
    ds = StreamingSegments(store, manifest, "train", crop_frames=10, shuffle_buffer=8, seed=1)

    first, again = streamed(ds), streamed(ds)
    ds.set_epoch(1)
    other = streamed(ds)

    np.testing.assert_array_equal(first[0], again[0])
    assert first[0].shape == (manifest.rows("train"), 1, N_MELS, 10)
    assert not np.array_equal(first[0], other[0])
    assert sorted(first[1]) == sorted(other[1])


def test_streaming_evaluation_cuts_fixed_windows_in_order(
    store: Store, streaming_dataset: tuple[Manifest, list[SegmentRows]]
) -> None:
    manifest, shards = streaming_dataset
    val = np.stack([m for rows in shards for m, s in zip(rows.mel, rows.split, strict=True) if s == "val"])
    val = val.astype(np.float16).astype(np.float32)

    xs, _ = streamed(StreamingSegments(store, manifest, "val", crop_frames=20, train=False))

    # 44 frames in windows of 20: starts 0, 20 and 24 (the last ends at the segment's end).
    ds = StreamingSegments(store, manifest, "val", crop_frames=20, train=False)
    assert ds.windows_per_segment() == 3 and len(ds) == len(xs) == 3 * len(val)
    np.testing.assert_array_equal(xs[0::3, 0], val[:, :, 0:20])
    np.testing.assert_array_equal(xs[2::3, 0], val[:, :, 24:44])
    whole, _ = streamed(StreamingSegments(store, manifest, "val", train=False))
    np.testing.assert_array_equal(whole[:, 0], val)


def test_streaming_refuses_a_crop_longer_than_the_segments(
    store: Store, streaming_dataset: tuple[Manifest, list[SegmentRows]]
) -> None:
    with pytest.raises(DataError, match="does not fit"):
        StreamingSegments(store, streaming_dataset[0], "train", crop_frames=FRAMES + 1)


# --- on S3 (SeaweedFS on loopback) --------------------------------------------------------------------------


def test_round_trip_on_s3(s3_server: S3Server, rng: np.random.Generator) -> None:
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint_url,
        s3_access_key=s3_server.access_key,
        s3_secret_key=SecretStr(s3_server.secret_key),
    )
    store = Store.open(f"s3://{s3_server.bucket}/shards-round-trip", settings=settings)
    shards = [make_rows(rng, SPLITS_A), make_rows(rng, ["train", "test"], prefix="u")]

    written = write_dataset(store, "a", shards)
    manifest = read_manifest(store)

    assert store.url.startswith("s3://") and manifest.dataset_id == "a"
    assert dataclasses.replace(manifest, created_at="") == written
    train = load_split(store, manifest, "train")
    expected = np.stack([m for rows in shards for m, s in zip(rows.mel, rows.split, strict=True) if s == "train"])
    np.testing.assert_array_equal(train.mel, expected.astype(np.float16))
    xs, _ = streamed(StreamingSegments(store, manifest, "train", train=False))
    np.testing.assert_array_equal(xs[:, 0], expected.astype(np.float16).astype(np.float32))
    objects = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="shards-round-trip/")
    keys = sorted(o["Key"] for o in objects["Contents"] if not o["Key"].endswith("/"))  # not directory markers
    assert keys == [
        "shards-round-trip/datasets/LATEST",
        "shards-round-trip/datasets/a/manifest.json",
        "shards-round-trip/datasets/a/shards/part-00000.parquet",
        "shards-round-trip/datasets/a/shards/part-00001.parquet",
        "shards-round-trip/store.json",
    ]
