"""The folder source and the versioned catalog: scanning ROOT/<genre>/<file>, schema checks, versions in the store."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import soundfile as sf

from genreclf.catalog import (
    CATALOG_COLUMNS,
    CATALOG_SCHEMA,
    CatalogRow,
    read_catalog,
    resolve_version,
    rows_of,
    to_table,
    version_of,
    write_catalog,
)
from genreclf.errors import DataError, SourceError, StorageError
from genreclf.keys import CATALOG_LATEST, catalog_key
from genreclf.sources.local import scan_folder, track_id_for
from genreclf.storage import Store

SR = 22_050


def make_folder(root: Path, tone: np.ndarray) -> Path:
    """jazz: two files and a cover; rock: one file in a subfolder and an upper-case suffix; a hidden folder."""
    for rel in ["jazz/a.wav", "jazz/b.flac", "rock/live/c.wav", "rock/D.WAV"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone, SR)
    (root / "jazz" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "jazz" / "notes.txt").write_text("not audio")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.wav").write_bytes(b"")
    return root


def catalog(n: int = 4, genre: str = "jazz") -> pl.DataFrame:
    """A catalog frame in the schema, as a source would build it."""
    return pl.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "title": [f"song {i}" for i in range(n)],
            "artists": [[f"artist {i % 2}"] for i in range(n)],
            "artist_id": [f"ar{i % 2}" for i in range(n)],
            "duration_s": [30.0] * n,
            "isrc": [None] * n,
            "genre": [genre] * n,
            "label_source": ["playlist"] * n,
            "source": ["spotify"] * n,
            "source_ref": ["pl1"] * n,
            "snapshot_id": ["snap1"] * n,
            "artist_genre_vote": [None] * n,
            "audio_uri": [f"/music/{i}.mp3" for i in range(n)],
            "content_hash": [f"{i:064x}" for i in range(n)],
        },
        schema_overrides={"isrc": pl.String, "artist_genre_vote": pl.String},
    )


# --- scan_folder --------------------------------------------------------------------------------------------


def test_scan_folder_finds_audio_by_genre_folder(tone: np.ndarray, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music", tone)

    df = scan_folder(root).tracks

    assert df.columns == CATALOG_COLUMNS
    assert sorted(df["source_ref"].to_list()) == ["jazz/a.wav", "jazz/b.flac", "rock/D.WAV", "rock/live/c.wav"]
    genre_of = dict(zip(df["source_ref"], df["genre"], strict=True))
    assert genre_of == {"jazz/a.wav": "jazz", "jazz/b.flac": "jazz", "rock/D.WAV": "rock", "rock/live/c.wav": "rock"}
    assert df["audio_uri"].to_list() == [str((root / ref).resolve()) for ref in df["source_ref"]]
    assert df["track_id"].to_list() == [track_id_for(ref) for ref in df["source_ref"]]
    assert df["artist_id"].null_count() == df.height  # each file is its own split group
    assert set(df["label_source"]) == {"folder"}
    assert df["title"].to_list()[0] == "a"


def test_scan_folder_output_passes_the_schema(tone: np.ndarray, tmp_path: Path) -> None:
    table = to_table(scan_folder(make_folder(tmp_path / "music", tone)).tracks)

    assert table.schema == CATALOG_SCHEMA
    assert table.num_rows == 4


def test_track_ids_survive_moving_the_folder(tone: np.ndarray, tmp_path: Path) -> None:
    before = scan_folder(make_folder(tmp_path / "here", tone)).tracks
    shutil.move(tmp_path / "here", tmp_path / "there")

    after = scan_folder(tmp_path / "there").tracks

    assert after["track_id"].to_list() == before["track_id"].to_list()
    assert after["audio_uri"].to_list() != before["audio_uri"].to_list()


def test_scan_fingerprints_files_and_rehashes_only_what_changed(tone: np.ndarray, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music", tone)
    cache = tmp_path / "hashes.sqlite"

    first = scan_folder(root, hash_cache=cache)
    again = scan_folder(root, hash_cache=cache)
    sf.write(root / "jazz" / "a.wav", tone[::-1], SR)  # same size, new content
    edited = scan_folder(root, hash_cache=cache)

    assert first.hashed == 4 and again.hashed == 0 and edited.hashed == 1
    digest = dict(zip(first.tracks["source_ref"], first.tracks["content_hash"], strict=True))
    assert again.tracks.equals(first.tracks)
    changed = dict(zip(edited.tracks["source_ref"], edited.tracks["content_hash"], strict=True))
    assert {ref for ref in digest if digest[ref] != changed[ref]} == {"jazz/a.wav"}
    assert changed["jazz/a.wav"] == hashlib.sha256((root / "jazz" / "a.wav").read_bytes()).hexdigest()
    assert version_of(to_table(edited.tracks)) != version_of(to_table(first.tracks))


def test_scan_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist") as e:
        scan_folder(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)


def test_scan_empty_folder_names_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(SourceError, match="no genre folders") as e:
        scan_folder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)


def test_scan_genre_folder_without_audio_names_it(tone: np.ndarray, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "music", tone)
    (root / "blues").mkdir()
    (root / "blues" / "cover.jpg").write_bytes(b"\xff\xd8\xff")

    with pytest.raises(SourceError, match="no audio files") as e:
        scan_folder(root)
    assert str(root / "blues") in str(e.value)


# --- to_table -----------------------------------------------------------------------------------------------


def test_to_table_casts_to_the_schema_in_order() -> None:
    df = catalog().select(list(reversed(CATALOG_COLUMNS))).with_columns(extra=pl.lit(1))

    table = to_table(df)

    assert table.schema == CATALOG_SCHEMA
    assert table.column("track_id").to_pylist() == ["t0", "t1", "t2", "t3"]


def test_to_table_rejects_duplicate_track_ids() -> None:
    df = pl.concat([catalog(3), catalog(2)])

    with pytest.raises(DataError, match="duplicate track ids") as e:
        to_table(df)
    assert "t0" in str(e.value) and "t1" in str(e.value)


def test_to_table_names_missing_columns() -> None:
    with pytest.raises(DataError, match="missing columns") as e:
        to_table(catalog().drop("genre", "isrc"))
    assert "'isrc'" in str(e.value) and "'genre'" in str(e.value)


def test_to_table_rejects_an_empty_catalog() -> None:
    with pytest.raises(DataError, match="no tracks"):
        to_table(catalog().clear())


@pytest.mark.parametrize("column", ["track_id", "genre"])
def test_to_table_rejects_rows_without_id_or_genre(column: str) -> None:
    df = catalog().with_columns(pl.when(pl.col("track_id") == "t2").then(None).otherwise(pl.col(column)).alias(column))

    with pytest.raises(DataError, match="without track_id or genre"):
        to_table(df)


# --- versions in the store ------------------------------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Store:
    return Store.open(store_url)


def test_write_then_read_latest(store: Store) -> None:
    version = write_catalog(store, catalog())

    assert store.read_text(CATALOG_LATEST) == version
    back = read_catalog(store)
    assert back.equals(pl.from_arrow(to_table(catalog())))  # type: ignore[arg-type]
    assert read_catalog(store, version).equals(back)


def test_same_content_gives_the_same_version_and_no_rewrite(store: Store) -> None:
    version = write_catalog(store, catalog())
    first = store.read_parquet(catalog_key(version)).schema.metadata

    again = write_catalog(store, catalog().reverse())  # same tracks in another order

    assert again == version
    assert store.read_parquet(catalog_key(version)).schema.metadata == first  # not rewritten
    assert store.keys("catalogs") == [catalog_key(version), CATALOG_LATEST]


def test_changed_content_gives_a_new_version_and_keeps_the_old(store: Store) -> None:
    old = write_catalog(store, catalog(genre="jazz"))

    new = write_catalog(store, catalog(genre="blues"))

    assert new != old
    assert store.read_text(CATALOG_LATEST) == new
    assert set(read_catalog(store)["genre"]) == {"blues"}
    assert set(read_catalog(store, old)["genre"]) == {"jazz"}


def test_rewriting_old_content_points_latest_back(store: Store) -> None:
    old = write_catalog(store, catalog(3))
    write_catalog(store, catalog(4))

    assert write_catalog(store, catalog(3)) == old
    assert resolve_version(store) == old


@pytest.mark.parametrize(
    "change",
    [
        pl.col("genre").replace({"jazz": "blues"}),
        pl.col("artist_id").replace({"ar0": "ar9"}),
        pl.col("audio_uri").str.replace("/music/", "/other/"),
        # ISRCs merge recordings into one split group, so they are content too.
        pl.lit("USRC17607839").alias("isrc"),
    ],
    ids=["genre", "artist_id", "audio_uri", "isrc"],
)
def test_every_column_that_changes_splits_or_labels_changes_the_version(store: Store, change: pl.Expr) -> None:
    old = write_catalog(store, catalog())

    new = write_catalog(store, catalog().with_columns(change))

    assert new != old
    assert read_catalog(store).equals(pl.from_arrow(to_table(catalog().with_columns(change))))  # type: ignore[arg-type]


def test_no_catalog_yet_says_what_to_run(store: Store) -> None:
    with pytest.raises(StorageError, match="no catalog"):
        read_catalog(store)


def test_an_unknown_version_is_a_storage_error(store: Store) -> None:
    write_catalog(store, catalog())

    with pytest.raises(StorageError, match="does not exist"):
        read_catalog(store, "0123456789abcdef")


def test_catalog_types_survive_the_store(store: Store) -> None:
    write_catalog(store, catalog())

    back = read_catalog(store)

    assert back.schema["artists"] == pl.List(pl.String)
    assert back.schema["duration_s"] == pl.Float64
    assert pa.Table.from_pylist(back.to_dicts(), schema=CATALOG_SCHEMA).num_rows == 4


def test_catalog_row_names_the_catalog_columns(store: Store) -> None:
    write_catalog(store, catalog())

    rows = rows_of(read_catalog(store))

    assert list(CatalogRow.__annotations__) == CATALOG_COLUMNS
    assert all(list(r) == CATALOG_COLUMNS for r in rows)
