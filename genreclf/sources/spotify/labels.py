"""Labels: one genre per recording from the crawled playlists, and the rule that settles conflicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from genreclf.ingest.catalog import CATALOG_COLUMNS

ConflictRule = Literal["majority", "drop"]


@dataclass(frozen=True)
class Conflict:
    """A recording found in playlists of more than one genre, and what became of it."""

    track_id: str
    title: str | None
    artists: str
    isrc: str | None
    genres: dict[str, int]  # genre -> number of playlists of that genre holding the recording
    playlists: list[str]
    resolved: str | None  # the genre kept, or None when the track was dropped
    reason: str


def resolve_labels(
    tracks: pl.DataFrame, *, votes: Mapping[str, str | None], rule: ConflictRule = "majority"
) -> tuple[pl.DataFrame, list[Conflict]]:
    """Catalog rows, one per recording, from crawled tracks (see `load_crawled_tracks`); and the conflicts.

    A recording is a track id, or an ISRC shared by several track ids (the same recording on a single and an
    album): each is kept once, as its first appearance in playlists-file order. Its label is its playlist's
    genre. A recording in playlists of several genres is a conflict, settled by `rule`:

    - "majority": the genre of the most playlists holding it wins; on a tie, the artist-genre vote decides
      when it names one of the tied genres; otherwise the track is dropped.
    - "drop": every conflicting track is dropped.

    `votes` maps an artist id to its artist-genre vote (see `Taxonomy.vote`), recorded in `artist_genre_vote`.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in tracks.sort("playlist_order", "position").iter_rows(named=True):
        if row["track_id"] is None:
            continue
        key = f"isrc:{row['isrc']}" if row["isrc"] else f"id:{row['track_id']}"
        groups.setdefault(key, []).append(row)

    out: list[dict[str, Any]] = []
    conflicts: list[Conflict] = []
    seen_ids: set[str] = set()
    for rows in groups.values():
        playlists_by_genre: dict[str, list[str]] = {}
        for r in rows:
            holders = playlists_by_genre.setdefault(r["genre"], [])
            if r["source_ref"] not in holders:
                holders.append(r["source_ref"])
        first = rows[0]
        artist_id = first["artist_ids"][0] if first["artist_ids"] else None
        vote = votes.get(artist_id) if artist_id else None
        genre: str | None = first["genre"]
        if len(playlists_by_genre) > 1:
            genre, reason = _settle(playlists_by_genre, vote, rule)
            conflicts.append(
                Conflict(
                    track_id=first["track_id"],
                    title=first["title"],
                    artists=", ".join(first["artists"] or []),
                    isrc=first["isrc"],
                    genres={g: len(p) for g, p in playlists_by_genre.items()},
                    playlists=[p for ps in playlists_by_genre.values() for p in ps],
                    resolved=genre,
                    reason=reason,
                )
            )
            if genre is None:
                continue
        chosen = next(r for r in rows if r["genre"] == genre)
        if chosen["track_id"] in seen_ids:
            continue
        seen_ids.add(chosen["track_id"])
        out.append(_catalog_row(chosen, genre, votes))
    return pl.DataFrame(out, schema=_SCHEMA).select(CATALOG_COLUMNS), conflicts


def _catalog_row(chosen: dict[str, Any], genre: str | None, votes: Mapping[str, str | None]) -> dict[str, Any]:
    """The catalog row of a crawled track labelled `genre`."""
    artist_id = chosen["artist_ids"][0] if chosen["artist_ids"] else None
    return {
        "track_id": chosen["track_id"],
        "title": chosen["title"],
        "artists": chosen["artists"],
        "artist_id": artist_id,
        "duration_s": chosen["duration_ms"] / 1000 if chosen["duration_ms"] is not None else None,
        "isrc": chosen["isrc"],
        "genre": genre,
        "label_source": "playlist",
        "source": "spotify",
        "source_ref": chosen["source_ref"],
        "snapshot_id": chosen["snapshot_id"],
        "artist_genre_vote": votes.get(artist_id) if artist_id else None,
        "audio_uri": None,
        "content_hash": None,
    }


_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "track_id": pl.String,
    "title": pl.String,
    "artists": pl.List(pl.String),
    "artist_id": pl.String,
    "duration_s": pl.Float64,
    "isrc": pl.String,
    "genre": pl.String,
    "label_source": pl.String,
    "source": pl.String,
    "source_ref": pl.String,
    "snapshot_id": pl.String,
    "artist_genre_vote": pl.String,
    "audio_uri": pl.String,
    "content_hash": pl.String,
}


def _settle(
    playlists_by_genre: Mapping[str, Sequence[str]], vote: str | None, rule: ConflictRule
) -> tuple[str | None, str]:
    counts = {g: len(p) for g, p in playlists_by_genre.items()}
    if rule == "drop":
        return None, "dropped: in playlists of several genres (conflict_rule=drop)"
    top = max(counts.values())
    tied = [g for g, n in counts.items() if n == top]
    if len(tied) == 1:
        return tied[0], f"majority: {top} of {sum(counts.values())} playlists"
    if vote in tied:
        return vote, f"tie between {', '.join(tied)}; the artist's genres vote {vote}"
    return None, f"dropped: tie between {', '.join(tied)} and no artist-genre vote for one of them"
