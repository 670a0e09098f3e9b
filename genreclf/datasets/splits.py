"""Train/val/test splits: 60/20/20 grouped by artist and recording, incremental, or read from a split file."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Generic, TypeVar

import polars as pl

from genreclf.errors import ConfigError, DataError
from genreclf.ingest.catalog import CatalogRow
from genreclf.sources.local import AUDIO_EXTENSIONS
from genreclf.store.filesystems import filesystem_for
from genreclf.store.keys import content_id

log = logging.getLogger(__name__)

FRACTIONS = (0.6, 0.2, 0.2)

T = TypeVar("T", str, int)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


class UnionFind(Generic[T]):
    """Groups of items joined pairwise. A group's name is its smallest member, so it does not depend on the
    order of the unions (split assignment hashes it, so it must not)."""

    def __init__(self) -> None:
        self.parent: dict[T, T] = {}

    def find(self, x: T) -> T:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: T, b: T) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def split_groups(tracks: pl.DataFrame) -> dict[str, str]:
    """Map each track id to its group: its first artist, or itself when the artist is unknown.

    Tracks that share an ISRC (the same recording under two ids) are merged into one group.
    """
    uf: UnionFind[str] = UnionFind()
    by_isrc: dict[str, str] = {}
    has_isrc = "isrc" in tracks.columns
    for row in tracks.iter_rows(named=True):
        group = f"artist:{row['artist_id']}" if row.get("artist_id") else f"track:{row['track_id']}"
        uf.union(f"track:{row['track_id']}", group)
        isrc = row.get("isrc") if has_isrc else None
        if isrc:
            if isrc in by_isrc:
                uf.union(group, by_isrc[isrc])
            by_isrc.setdefault(isrc, group)
    return {tid: uf.find(f"track:{tid}") for tid in tracks["track_id"].to_list()}


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(test, val) groups of a genre with `n` groups. A genre with 3 or more groups gets one in each split."""
    n_test, n_val = round(n * fractions[2]), round(n * fractions[1])
    if n >= 3:
        return max(n_test, 1), max(n_val, 1)
    if n == 2:
        return 1, 0
    return 0, 0


def assign_splits(
    tracks: pl.DataFrame,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = FRACTIONS,
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Split tracks into train/val/test (60/20/20 by default), grouped by artist and stratified by genre.

    Deterministic from `seed`: each group gets a hash rank from (seed, group), and within each genre (a group's
    most common genre) the lowest ranks go to test, then val, the rest to train. A genre with 3 or more groups
    gets at least one in each split. Returns (track_id, split).

    `previous` (track_id, split, and artist_id / isrc when known: the `splits.parquet` of an earlier dataset)
    makes it incremental: a group holding a track, artist or recording seen before keeps that split, and only
    new groups are dealt out, to bring each genre as close to the fractions as the kept groups allow. Only when
    a new track links groups that were in different splits (a shared ISRC) does a group move, to the split
    most of its earlier tracks were in.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    if tracks.height == 0:
        raise DataError("no tracks to split")
    groups = split_groups(tracks)
    genres_of: dict[str, Counter[str]] = defaultdict(Counter)
    for tid, genre in zip(tracks["track_id"].to_list(), tracks["genre"].to_list(), strict=True):
        genres_of[groups[tid]][genre] += 1
    kept = _previous_splits(tracks, groups, previous) if previous is not None else {}
    by_genre: dict[str, list[str]] = defaultdict(list)
    for group, counts in genres_of.items():
        top = min(counts, key=lambda g: (-counts[g], g))  # most common; ties by name
        by_genre[top].append(group)
    split_of: dict[str, str] = dict(kept)
    for members in by_genre.values():
        new = sorted((g for g in members if g not in kept), key=lambda g: _rank(seed, g))
        n_test, n_val = _split_counts(len(members), fractions)
        have = Counter(kept[g] for g in members if g in kept)
        n_test, n_val = max(0, n_test - have["test"]), max(0, n_val - have["val"])
        for i, group in enumerate(new):
            split_of[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    import polars as pl  # imported here: training reads shards and needs no polars

    ids = tracks["track_id"].to_list()
    return pl.DataFrame({"track_id": ids, "split": [split_of[groups[t]] for t in ids]})


def _previous_splits(tracks: pl.DataFrame, groups: dict[str, str], previous: pl.DataFrame) -> dict[str, str]:
    """Group -> the split its tracks, artists or recordings had in `previous`."""
    seen: dict[str, dict[str, str]] = {"track_id": {}, "artist_id": {}, "isrc": {}}
    for col, index in seen.items():
        if col in previous.columns:
            for key, split in previous.select(col, "split").drop_nulls().iter_rows():
                if key:
                    index.setdefault(key, split)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for row in tracks.iter_rows(named=True):
        for col, index in seen.items():
            split = index.get(row.get(col) or "")
            if split is not None:
                votes[groups[row["track_id"]]][split] += 1
                break
    kept = {}
    for group, counts in votes.items():
        kept[group] = min(counts, key=lambda s: (-counts[s], SPLIT_ORDER.index(s)))
        if len(counts) > 1:
            log.warning("group %s had tracks in %s; now linked (same artist or ISRC), it moves to %s",
                        group, sorted(counts), kept[group])  # fmt: skip
    return kept


SPLIT_ORDER = ("train", "val", "test")
_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "eval": "test",
}  # fmt: skip


def parse_split_file(text: str, *, name: str = "split file") -> dict[str, str]:
    """Read a predefined split: one `KEY<TAB or comma>SPLIT` per line -> {key: train|val|test}.

    KEY is a track id or a path (`blues/blues.00012.wav`, matched against the end of each track's source path).
    Blank lines and `#` comments are skipped, and so is a header line (`path,split`). SPLIT is train, val or
    test (also training, valid, validation, dev, testing).
    """
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in (line.split("\t") if "\t" in line else line.rsplit(",", 1))]
        if len(parts) != 2 or not parts[0]:
            raise DataError(f"{name}, line {n}: expected KEY,SPLIT (or KEY<TAB>SPLIT), got {raw!r}")
        key, split = parts[0], _SPLIT_NAMES.get(parts[1].lower())
        if split is None:
            if n == 1 or not out:  # a header
                continue
            raise DataError(f"{name}, line {n}: unknown split {parts[1]!r}; use train, val or test")
        if out.get(key, split) != split:
            raise DataError(f"{name}, line {n}: {key} is listed in both {out[key]} and {split}")
        out[key] = split
    if not out:
        raise DataError(f"{name}: no KEY,SPLIT lines")
    return out


def apply_split_file(tracks: pl.DataFrame, assigned: dict[str, str]) -> pl.DataFrame:
    """The splits a split file gives the tracks -> (track_id, split) of the tracks it lists, in input order.

    A key matches a track id, or the end of a track's `source_ref` or `audio_uri` on whole path parts, whatever
    its audio extension (`blues/blues.00012.wav` matches `blues.00012.au` or `.opus`) when that is one file. Tracks
    it does not list are left out (a filtered split drops some files on purpose). Raises DataError when it
    puts one artist or recording in two splits, or when it matches no track.
    """
    by_key: dict[str, str] = {}
    by_stem: defaultdict[str, set[str]] = defaultdict(set)  # path ends without their audio extension
    for row in tracks.iter_rows(named=True):
        by_key[row["track_id"]] = row["track_id"]
        for col in ("source_ref", "audio_uri"):
            parts = str(row.get(col) or "").replace("\\", "/").split("/")
            for i in range(len(parts)):
                if parts[i]:
                    by_key.setdefault("/".join(parts[i:]), row["track_id"])
                    by_stem[_without_audio_extension("/".join(parts[i:]))].add(row["track_id"])
    split_of: dict[str, str] = {}
    unmatched = []
    for key, split in assigned.items():
        path = key.replace("\\", "/").lstrip("./")
        tid = by_key.get(path)
        # GTZAN's lists name .wav files, its distribution ships .au, and users re-encode: the extension may differ.
        stem_matches = by_stem.get(_without_audio_extension(path), set())
        if tid is None and len(stem_matches) == 1:
            (tid,) = stem_matches
        if tid is None:
            unmatched.append(key + (f" ({len(stem_matches)} files of that name)" if stem_matches else ""))
        else:
            split_of[tid] = split
    if not split_of:
        raise DataError(f"the split file matches none of the {tracks.height} tracks, e.g. {list(assigned)[:3]}")
    if unmatched:
        log.warning("split file: %d keys match no usable track, e.g. %s", len(unmatched), unmatched[:3])
    listed = tracks.filter(tracks["track_id"].is_in(list(split_of)))
    groups = split_groups(listed)
    group_split: dict[str, str] = {}
    for tid in listed["track_id"].to_list():
        g = groups[tid]
        if group_split.setdefault(g, split_of[tid]) != split_of[tid]:
            raise DataError(
                f"the split file puts {g.replace(':', ' ')} in both {group_split[g]} and {split_of[tid]}: "
                "one artist or recording must stay in one split; fix the file"
            )
    ids = listed["track_id"].to_list()
    return pl.DataFrame({"track_id": ids, "split": [split_of[t] for t in ids]})


def _without_audio_extension(path: str) -> str:
    """`blues/blues.00012.wav` -> `blues/blues.00012`; a path without an audio extension is returned as it is."""
    stem, dot, ext = path.rpartition(".")
    return stem if dot and "/" not in ext and f".{ext.lower()}" in AUDIO_EXTENSIONS else path


def load_split_file(uri: str) -> dict[str, str]:
    """Read a split file (a local path, file:// or s3:// URI; see `parse_split_file`)."""
    fs, path = filesystem_for(uri)
    try:
        with fs.open_input_stream(path) as f:
            text = bytes(f.read()).decode()
    except FileNotFoundError as e:
        raise ConfigError(f"split file {uri} does not exist") from e
    return parse_split_file(text, name=uri)


def split_source_of(assigned: dict[str, str] | None) -> str:
    """How splits are made: "seed", or "file:<digest of the assignment>"."""
    if assigned is None:
        return "seed"
    return "file:" + content_id(sorted(assigned.items()), length=12)


def split_tracks(
    tracks: Sequence[CatalogRow],
    *,
    seed: int,
    previous: pl.DataFrame | None = None,
    assigned: dict[str, str] | None = None,
) -> dict[str, str]:
    """track_id -> split. From a split file when `assigned` is given (tracks it does not list are left out),
    else 60/20/20 grouped by artist and ISRC, stratified by genre, keeping the `previous` assignment."""
    cols = ["track_id", "artist_id", "genre", "isrc", "source_ref", "audio_uri"]
    frame = pl.DataFrame(
        [{c: t.get(c) for c in cols} for t in tracks], schema={c: pl.String for c in cols}, orient="row"
    )
    if assigned is not None:
        out = apply_split_file(frame, assigned)
    else:
        out = assign_splits(frame.select(cols[:4]), seed=seed, previous=previous)
    return dict(out.iter_rows())
