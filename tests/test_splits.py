"""Splits grouped by artist (and ISRC), deterministic from a seed, every genre in every split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from genreclf.datasets.splits import UnionFind, apply_split_file, assign_splits, parse_split_file, split_groups
from genreclf.errors import DataError
from genreclf.labels.out_of_fold import groups_of

GENRES = ["blues", "classical", "hiphop", "jazz", "metal", "rock"]


def synthetic_tracks(seed: int = 0, n_artists: int = 90, n_solo: int = 40) -> pl.DataFrame:
    """A few hundred tracks: artists with 1-8 tracks, mostly in their own genre but some in others,
    tracks without an artist, and recordings that appear twice (same ISRC, another id and artist)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str | None]] = []
    for a in range(n_artists):
        main = GENRES[a % len(GENRES)]
        for _ in range(int(rng.integers(1, 9))):
            genre = main if rng.random() < 0.8 else str(rng.choice(GENRES))
            rows.append({"artist_id": f"ar{a:03d}", "genre": genre})
    for s in range(n_solo):
        rows.append({"artist_id": None, "genre": GENRES[s % len(GENRES)]})
    for i, row in enumerate(rows):
        row["track_id"] = f"t{i:04d}"
        row["isrc"] = f"ISRC{i:05d}"
    # The same recording on a compilation: a new id under another artist, or with no artist at all.
    for i in rng.choice(len(rows), 25, replace=False):
        other = None if rng.random() < 0.3 else f"ar{int(rng.integers(n_artists)):03d}"
        rows.append({**rows[i], "track_id": f"dup{i:04d}", "artist_id": other})
    return pl.DataFrame(
        rows, schema={"track_id": pl.String, "artist_id": pl.String, "genre": pl.String, "isrc": pl.String}
    )


@pytest.fixture(scope="module")
def tracks() -> pl.DataFrame:
    return synthetic_tracks()


@pytest.fixture(scope="module")
def split(tracks: pl.DataFrame) -> pl.DataFrame:
    return tracks.join(assign_splits(tracks, seed=0), on="track_id")


# --- assign_splits ------------------------------------------------------------------------------------------


def test_returns_one_split_per_track_in_input_order(tracks: pl.DataFrame) -> None:
    out = assign_splits(tracks, seed=0)

    assert out.columns == ["track_id", "split"]
    assert out["track_id"].to_list() == tracks["track_id"].to_list()
    assert set(out["split"]) == {"train", "val", "test"}


def test_no_artist_in_two_splits(split: pl.DataFrame) -> None:
    per_artist = split.drop_nulls("artist_id").group_by("artist_id").agg(pl.col("split").n_unique())

    assert per_artist["split"].max() == 1
    assert per_artist.height > 80


def test_no_recording_in_two_splits(split: pl.DataFrame) -> None:
    per_isrc = split.group_by("isrc").agg(pl.col("split").n_unique(), pl.len())

    assert per_isrc["split"].max() == 1
    assert (per_isrc["len"] > 1).sum() >= 20  # the duplicates were really there


def test_deterministic_for_a_seed_and_different_for_another(tracks: pl.DataFrame) -> None:
    a = assign_splits(tracks, seed=0)

    assert assign_splits(tracks, seed=0).equals(a)
    assert assign_splits(tracks.reverse(), seed=0).sort("track_id").equals(a.sort("track_id"))
    assert not assign_splits(tracks, seed=1).equals(a)


def test_roughly_60_20_20_of_groups(tracks: pl.DataFrame, split: pl.DataFrame) -> None:
    groups = split_groups(tracks)
    split_of_group = {groups[t]: s for t, s in zip(split["track_id"], split["split"], strict=True)}

    counts = Counter(split_of_group.values())
    n = len(split_of_group)

    assert counts["train"] / n == pytest.approx(0.6, abs=0.06)
    assert counts["val"] / n == pytest.approx(0.2, abs=0.05)
    assert counts["test"] / n == pytest.approx(0.2, abs=0.05)


def test_every_genre_appears_in_every_split(split: pl.DataFrame) -> None:
    splits_per_genre = split.group_by("genre").agg(pl.col("split").n_unique())

    assert splits_per_genre.height == len(GENRES)
    assert splits_per_genre["split"].min() == 3


def one_artist_each(genre_groups: dict[str, int]) -> pl.DataFrame:
    """`n` single-track artists for each genre."""
    rows = [
        {"track_id": f"{g}{i}", "artist_id": f"{g}-artist{i}", "genre": g}
        for g, n in genre_groups.items()
        for i in range(n)
    ]
    return pl.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_small_genres_get_one_group_per_split_from_three_groups(seed: int) -> None:
    tracks = one_artist_each({"big": 40, "three": 3, "two": 2, "one": 1})

    out = tracks.join(assign_splits(tracks, seed=seed), on="track_id")
    splits = {g: sorted(out.filter(pl.col("genre") == g)["split"]) for g in ["three", "two", "one"]}

    assert splits == {"three": ["test", "train", "val"], "two": ["test", "train"], "one": ["train"]}


def test_tracks_without_artist_are_their_own_groups() -> None:
    tracks = pl.DataFrame(
        {"track_id": [f"t{i}" for i in range(6)], "artist_id": [None, None, "", "a", "a", None], "genre": ["x"] * 6}
    )

    groups = split_groups(tracks)

    assert len({groups[t] for t in ["t0", "t1", "t2", "t5"]}) == 4
    assert groups["t3"] == groups["t4"]
    assert len(set(groups.values())) == 5


def test_shared_isrcs_chain_groups_together() -> None:
    # a and b share one recording, b and c another: a, b and c must land in one split.
    tracks = pl.DataFrame(
        {
            "track_id": ["1", "2", "3", "4", "5"],
            "artist_id": ["a", "b", "b", "c", None],
            "isrc": ["X", "X", "Y", "Y", "Y"],
            "genre": ["g"] * 5,
        }
    )

    groups = split_groups(tracks)

    assert len(set(groups.values())) == 1


def test_isrc_column_is_optional() -> None:
    tracks = one_artist_each({"g": 10})

    assert assign_splits(tracks, seed=0).height == 10


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.8, 0.3, -0.1), (1.0, 0.1, 0.1)])
def test_bad_fractions_are_refused(tracks: pl.DataFrame, fractions: tuple[float, float, float]) -> None:
    with pytest.raises(DataError, match="fractions"):
        assign_splits(tracks, fractions=fractions)


def test_no_tracks_is_refused(tracks: pl.DataFrame) -> None:
    with pytest.raises(DataError, match="no tracks"):
        assign_splits(tracks.clear())


SHARED_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "gtzan-sample-split.csv"


def folder_tracks(paths: list[str], root: str = "/music/gtzan") -> pl.DataFrame:
    """A folder catalog's rows as `scan_folder` gives them: each file its own group, its path as source_ref."""
    return pl.DataFrame({"track_id": [f"t{i:04d}" for i in range(len(paths))], "artist_id": [None] * len(paths),
                         "source_ref": [f"{root}/{p}" for p in paths]})  # fmt: skip


@pytest.mark.skipif(not SHARED_SPLIT.exists(), reason="needs ../shared/data beside the project")
def test_published_wav_names_match_files_re_encoded_to_opus_or_shipped_as_au() -> None:
    lines = SHARED_SPLIT.read_text().splitlines()[1:]
    published = [line.rsplit(",", 1) for line in lines]  # blues/blues.00042.opus,train
    wav_file = "path,split\n" + "".join(f"{p.removesuffix('.opus')}.wav,{s}\n" for p, s in published)
    assigned = parse_split_file(wav_file)
    assert len(assigned) == len(published) == 191
    for ext in (".opus", ".au"):
        tracks = folder_tracks([p.removesuffix(".opus") + ext for p, _ in published] + ["rock/rock.99999" + ext])
        got = dict(apply_split_file(tracks, assigned).iter_rows())
        assert len(got) == 191  # every listed file, not the unlisted one
        want = {f"t{i:04d}": s for i, (_, s) in enumerate(published)}
        assert got == want


def test_a_name_that_two_files_share_whatever_their_extension_matches_neither(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracks = folder_tracks(["blues/a.mp3", "blues/a.flac", "jazz/b.opus"])
    got = dict(apply_split_file(tracks, {"blues/a.wav": "train", "jazz/b.wav": "test", "blues/a.flac": "val"})
               .iter_rows())  # fmt: skip
    assert got == {"t0001": "val", "t0002": "test"}  # the exact name still matches
    assert "blues/a.wav (2 files of that name)" in caplog.text
    # a dotted name without an audio extension is not cut short
    assert dict(apply_split_file(folder_tracks(["x/v1.2.mp3"]), {"x/v1.2": "train"}).iter_rows()) == {"t0000": "train"}


@pytest.mark.parametrize("order", [[(3, 1), (1, 2), (5, 4)], [(5, 4), (2, 1), (1, 3)], [(4, 5), (2, 3), (3, 1)]])
def test_union_find_names_a_group_by_its_smallest_member_whatever_the_order(order: list[tuple[int, int]]) -> None:
    uf: UnionFind[int] = UnionFind()
    for a, b in order:
        uf.union(a, b)
    assert [uf.find(i) for i in range(1, 6)] == [1, 1, 1, 4, 4]


def test_audit_groups_join_an_artists_tracks_and_copies_across_artists() -> None:
    # tracks 0 and 2 share an artist; 3 is a copy of 1; 4 has no artist and no copy
    groups = groups_of(5, ["a", "b", "a", "c", None], [(3, 1)])
    assert groups.tolist() == [0, 1, 0, 1, 4]
