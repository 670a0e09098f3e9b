"""The folder source and the versioned catalog: scanning ROOT/<genre>/<file>, schema checks, versions in the store."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import soundfile as sf

from genreclf.errors import DataError, SourceError, StorageError
from genreclf.ingest.catalog import (
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
from genreclf.sources.local import AUDIO_EXTENSIONS, scan_folder, summarize_ignored, track_id_for
from genreclf.store.keys import CATALOG_LATEST, catalog_key
from genreclf.store.storage import Store

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


def test_scan_fingerprints_files_and_rehashes_only_what_changed(
    tone: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path / "music", tone)
    cache = tmp_path / "hashes.sqlite"

    caplog.set_level("INFO", logger="genreclf.sources.local")
    layout = scan_folder(root, hash_cache=cache, fingerprint=False)  # the CLI's check before a flow starts
    assert layout.hashed == 0 and layout.tracks["content_hash"].null_count() == 4 and not cache.exists()
    caplog.clear()
    first = scan_folder(root, hash_cache=cache)
    again = scan_folder(root, hash_cache=cache)
    # What each scan says is true of it: the first read every file, the second none (they were read before).
    said = [r.getMessage() for r in caplog.records if "found 4 tracks" in r.getMessage()]
    assert said[0].endswith("(4 files read and hashed, 0 unchanged since they were)")
    assert said[1].endswith("(0 files read and hashed, 4 unchanged since they were)")
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
    assert "it holds only files that are not audio: blues/cover.jpg; add some or remove the folder" in str(e.value)


def ffmpeg_media(path: Path, tone: np.ndarray, *, audio: list[str] | None, video: bool) -> Path:
    """A second of `tone` encoded with `audio` (None: no sound track), beside a 16x16 red picture if `video`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = path.with_name(path.name + ".src.wav")
    sf.write(wav, tone, SR, subtype="FLOAT")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if audio is not None:
        cmd += ["-i", str(wav)]
    if video:
        cmd += ["-f", "lavfi", "-i", "color=c=red:s=16x16:r=5:d=1", "-c:v", "mpeg4"]
    cmd += [*(audio or []), "-shortest", str(path)] if audio is not None else [str(path)]
    subprocess.run(cmd, check=True)
    wav.unlink()
    return path


def make_media_folder(root: Path, tone: np.ndarray) -> Path:
    """Video and audio containers beside files that are not audio, and one video without a sound track."""
    # Each at its own level: the same recording twice would be kept once (and the other quarantined as a duplicate).
    ffmpeg_media(root / "jazz" / "concert.mp4", tone * 0.9, audio=["-c:a", "aac", "-b:a", "64k"], video=True)
    ffmpeg_media(root / "jazz" / "session.mkv", tone * 0.8, audio=["-c:a", "libopus", "-b:a", "48k"], video=True)
    ffmpeg_media(root / "jazz" / "take.wav", tone * 0.7, audio=[], video=False)
    ffmpeg_media(root / "rock" / "story.m4b", tone * 0.6, audio=["-c:a", "aac", "-f", "ipod"], video=False)
    ffmpeg_media(root / "rock" / "live.MOV", tone * 0.5, audio=["-c:a", "aac"], video=True)
    ffmpeg_media(root / "rock" / "silent.mp4", tone, audio=None, video=True)
    (root / "jazz" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "jazz" / "notes.txt").write_text("not audio")
    (root / "rock" / "album.cue").write_text('FILE "live.MOV" WAVE')
    (root / "rock" / ".DS_Store").write_bytes(b"\0")  # hidden: not worth a word
    (root / "README.txt").write_text("my music")
    return root


def test_scan_takes_every_container_and_names_what_it_ignores_in_one_line(
    tone: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_media_folder(tmp_path / "music", tone)

    with caplog.at_level(logging.INFO, logger="genreclf.sources.local"):
        scan = scan_folder(root, hash_cache=None)

    refs = sorted(scan.tracks["source_ref"])
    assert refs == ["jazz/concert.mp4", "jazz/session.mkv", "jazz/take.wav", "rock/live.MOV", "rock/silent.mp4",
                    "rock/story.m4b"]  # fmt: skip
    assert scan.skipped == []  # nothing for the quarantine table: these are not catalog entries
    assert scan.ignored == ["README.txt", "jazz/cover.jpg", "jazz/notes.txt", "rock/album.cue"]
    line = (
        "ignored 3 files that are not audio: jazz/cover.jpg, jazz/notes.txt, rock/album.cue; "
        "and 1 file outside the genre folders: README.txt"
    )
    assert scan.ignored_summary == line
    said = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert said == [f"{root}: {line}"]


def test_scan_of_a_folder_of_audio_only_says_nothing_about_ignored_files(tone: np.ndarray, tmp_path: Path) -> None:
    root = tmp_path / "music"
    ffmpeg_media(root / "jazz" / "take.wav", tone, audio=[], video=False)

    scan = scan_folder(root, hash_cache=None)

    assert scan.ignored == [] and scan.ignored_summary is None


def test_ignored_summary_names_a_few_and_counts_the_rest() -> None:
    paths = [f"g{i % 3}/cover{i}.jpg" for i in range(30)] + [f"g1/notes{i}.txt" for i in range(10)] + ["x"]

    line = summarize_ignored(paths)

    assert line == (
        "ignored 40 files that are not audio: g0/cover0.jpg, g1/cover1.jpg, g2/cover2.jpg, g0/cover3.jpg, "
        "g1/cover4.jpg and 35 more (30 .jpg, 10 .txt in all); and 1 file outside the genre folders: x"
    )
    assert summarize_ignored(["a/one.txt"]) == "ignored 1 file that is not audio: a/one.txt"
    assert summarize_ignored([]) is None


def test_predict_and_split_files_share_the_extension_list() -> None:
    # genreclf.reports.predict and genreclf.datasets.splits import this name: video containers with a sound track are
    # audio here.
    assert {".mp4", ".mkv", ".mov", ".m4b", ".webm", ".m4v", ".avi", ".3gp", ".wma", ".ac3", ".mka"} <= AUDIO_EXTENSIONS
    assert not {".jpg", ".png", ".txt", ".cue", ".pdf", ".nfo", ".m3u"} & AUDIO_EXTENSIONS


def test_build_decodes_video_sound_tracks_and_quarantines_a_silent_video(tone: np.ndarray, tmp_path: Path) -> None:
    from genreclf.acquisition.acquire import acquire_track
    from genreclf.acquisition.audio import SegmentConfig
    from genreclf.datasets.tracks import usable_tracks
    from genreclf.ingest.catalog import read_skipped

    root = make_media_folder(tmp_path / "music", tone)
    store = Store.open(str(tmp_path / "store"))
    scan = scan_folder(root, hash_cache=None)
    version = write_catalog(store, scan.tracks, skipped=scan.skipped)
    rows = rows_of(read_catalog(store, version))
    seg = SegmentConfig(window_s=0.5, hop_s=0.5)

    results = {r["source_ref"]: acquire_track(store, r, cfg=seg, scratch_dir=tmp_path / "scratch") for r in rows}

    bad = {ref: (r.stage, r.reason) for ref, r in results.items() if not r.ok}
    assert list(bad) == ["rock/silent.mp4"]
    stage, reason = bad["rock/silent.mp4"]
    assert stage == "decode"
    assert "(rock/silent.mp4): no audio stream" in reason and "use a file with a sound track" in reason
    for ref, r in results.items():
        if ref != "rock/silent.mp4":
            assert r.duration_s == pytest.approx(1.0, abs=0.1), ref
    usable, dropped = usable_tracks(rows, list(results.values()))
    assert len(usable) == 5 and [d.track_id for d in dropped] == [results["rock/silent.mp4"].track_id]
    assert read_skipped(store, version) == []  # the ignored files stay out of the quarantine table


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
