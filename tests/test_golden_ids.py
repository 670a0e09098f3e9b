"""Golden content ids: every id that keys an object in the store, from fixed inputs, pinned to a literal.

Changing one of these literals means every existing store's objects under that id are orphaned (a dataset, run,
audit or shard is not found again and is built anew beside the old one). Do not update a literal to make a test
pass: bump the store format version (`genreclf.store.format.STORE_FORMAT`) and migrate the stores instead. A new
config field changes the id unless its default is left out of what is hashed (see `FeatureConfig.hash`).
"""

from __future__ import annotations

import polars as pl

from genreclf.acquisition.acquire import _inputs_fingerprint
from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets import dataset
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.manifest import Manifest
from genreclf.datasets.splits import split_source_of
from genreclf.datasets.tracks import PlannedTrack
from genreclf.ingest import catalog
from genreclf.ingest.catalog import CatalogRow
from genreclf.ingest.overrides import Override, accept
from genreclf.labels.audit import AuditConfig, audit_id_for
from genreclf.models.embeddings import network_id
from genreclf.models.runs import TrainConfig, run_id_for
from genreclf.reports.registry import line_of
from genreclf.sources.local import track_id_for
from genreclf.sources.youtube_config import YoutubeConfig
from genreclf.store.keys import content_id, failure_key, playlist_crawl_key
from genreclf.store.storage import Store

ROW = CatalogRow(
    track_id="t1", title="Song", artists=["A"], artist_id="a1", duration_s=30.0, isrc="US1234567890", genre="rock",
    label_source="folder", source="folder", source_ref="rock/s.wav", snapshot_id=None, artist_genre_vote=None,
    audio_uri="/music/rock/s.wav", content_hash="ab" * 32,
)  # fmt: skip
AUDIO_OF = {"t1": "cd" * 32, "t2": "ef" * 32}


def test_content_id_is_a_truncated_sha256_of_sorted_json() -> None:
    assert content_id({"b": 1, "a": [1.5, None, "é"]}, length=12) == "4402241338ce"
    assert content_id({"a": [1.5, None, "é"], "b": 1}, length=32).startswith(
        content_id({"b": 1, "a": [1.5, None, "é"]}, length=12)
    )


def test_config_hashes_keep_their_values() -> None:
    assert FeatureConfig().hash == "e123ade0e1b6"  # as in test_musicnn: shards of the default config
    assert FeatureConfig(compression="log10").hash == "15e8f7fc8ed5"
    assert SegmentConfig().hash == "8b8d0d9b1df3"


def test_catalog_and_source_ids_keep_their_values() -> None:
    df = pl.DataFrame([ROW, {**ROW, "track_id": "t2", "genre": "jazz", "content_hash": None}])
    assert catalog.version_of(catalog.to_table(df)) == "d378cd040eeef1c7"
    assert track_id_for("rock/s.wav") == "f4980bbdbf1a5840"
    assert playlist_crawl_key("p1", "AAAAAQ+snapshot/1==") == "spotify/playlists/p1/832c4684756b4448.parquet"


def test_dataset_ids_keep_their_values() -> None:
    seg, feat = SegmentConfig(), FeatureConfig()
    assert dataset.dataset_id_for("v1", AUDIO_OF, seg=seg, feat=feat, split_seed=0) == "f93c10f834e92c48"
    from_file = split_source_of({"t1": "train", "t2": "test"})
    assert from_file == "file:1f86ad5f983f"
    assert dataset.dataset_id_for("v1", AUDIO_OF, seg=seg, feat=feat, split_seed=0, split_source=from_file) == (
        "2c6b07555c7a2d2d"
    )
    assert dataset.lineage_for(split_seed=0) == "433c6ddbfa9e"
    assert dataset.lineage_for(split_seed=0, split_source=from_file) == "9c2d515f4a3f"
    tracks = [
        PlannedTrack(track_id="t1", artist_id="a1", isrc=None, genre="rock", split="train", offsets=[0.0, 30.0],
                     audio_key="audio/sha256/x.flac", audio_hash="cd" * 32),
        PlannedTrack(track_id="t2", artist_id=None, isrc=None, genre="jazz", split="test", offsets=[0.0],
                     audio_key="audio/sha256/y.flac", audio_hash="ef" * 32),
    ]  # fmt: skip
    assert (
        dataset.shard_key_for(tracks, labels=["jazz", "rock"], seg=seg, feat=feat)
        == "shards/e123ade0e1b6/101ada117f672f2dc672.parquet"
    )


def test_run_line_and_audit_ids_keep_their_values() -> None:
    assert run_id_for("ds1", TrainConfig()) == "resnet18-6f30b263a56b"
    assert run_id_for("ds1", TrainConfig(model="musicnn-msd")) == "musicnn-msd-4f9f70b793b8"
    manifest = Manifest(
        dataset_id="ds1", catalog_version="v1", feature_config={}, feature_hash=FeatureConfig().hash,
        segment_config={"sample_rate": 22_050, "window_s": 30.0}, labels=["jazz", "rock"], split_seed=0, shards=[],
    )  # fmt: skip
    assert line_of(manifest) == "f244e35f15c4"
    assert audit_id_for("ds1", AuditConfig()) == "9a530172605da0c7"
    network = network_id("musicnn-msd", "12" * 32)
    assert network == "musicnn-msd-121212121212-v1"
    assert audit_id_for("ds1", AuditConfig(), network) == "481a89a365406a3d"


def test_failure_keys_keep_their_values() -> None:
    assert (
        failure_key(_inputs_fingerprint(ROW, SegmentConfig(), None))
        == "audio/failed/0b636b4a44ac92685b314ba5550d1282.json"
    )
    assert (
        failure_key(_inputs_fingerprint(ROW, SegmentConfig(), YoutubeConfig()))
        == "audio/failed/c65617410549a043b6df32977d04d505.json"
    )


def test_label_override_versions_keep_their_values(store_url: str) -> None:
    override = Override(track_id="t1", content_hash="ab" * 32, genre="jazz", previous="rock", reason="audit",
                        audit_id="au1", accepted_at="2026-12-01T00:00:00+00:00")  # fmt: skip
    assert accept(Store.open(store_url), [override]) == "f77ff5a0ece1c570"


def test_the_store_format_is_the_one_these_ids_belong_to() -> None:
    from genreclf.store.format import STORE_FORMAT

    assert STORE_FORMAT == 1  # a literal above changed: bump this, and give `store.format` a migration for it
