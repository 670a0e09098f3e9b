"""Which acquired tracks a dataset can use: one per recording, each with a single genre, its audio in the store; what
is left out goes to the quarantine with the reason. And what a planned track carries into its shard."""

from __future__ import annotations

import logging

from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12 (compute-shards' DatasetPlan)

from genreclf.acquisition.acquire import TrackResult
from genreclf.datasets.shards import SPLITS
from genreclf.ingest.catalog import CatalogRow

log = logging.getLogger(__name__)


class AcquiredTrack(CatalogRow):
    """A catalog row whose audio is in the store: its windows' offsets (seconds), where the audio is, its hash."""

    offsets: list[float]
    audio_key: str
    audio_hash: str


class PlannedTrack(TypedDict):
    """A track of a planned dataset: what its shard and the splits table are made from."""

    track_id: str
    artist_id: str | None
    isrc: str | None
    genre: str
    offsets: list[float]
    audio_key: str
    audio_hash: str
    split: str


def _describe(row: CatalogRow) -> str:
    return f"track {row['track_id']} ({row.get('source_ref') or row.get('title') or row.get('audio_uri')})"


def usable_tracks(rows: list[CatalogRow], results: list[TrackResult]) -> tuple[list[AcquiredTrack], list[TrackResult]]:
    """Join catalog rows with their acquisition results -> (usable tracks, quarantined results).

    A usable track is its catalog row plus its result's `offsets`, `audio_key` and `audio_hash`. The same recording
    (the same decoded samples) found more than once is kept once, at the first place in catalog order (a copied
    file, a re-encoded lossless copy); when its copies are labelled with different genres, none is kept and each is
    quarantined as a label conflict, since the catalog cannot say which label is right.
    """
    result_of = {r.track_id: r for r in results}
    quarantined = [r for r in results if not r.ok]
    copies: dict[str, list[AcquiredTrack]] = {}  # audio hash -> its tracks, in catalog order
    for row in rows:
        r = result_of.get(row["track_id"])
        if r is not None and r.ok:
            t: AcquiredTrack = {**row, "offsets": r.offsets, "audio_key": r.audio_key, "audio_hash": r.audio_hash}
            copies.setdefault(t["audio_hash"] or t["track_id"], []).append(t)
    usable = []
    for group in copies.values():
        first, rest = group[0], group[1:]
        genres = sorted({t["genre"] for t in group})
        if len(genres) > 1:
            for t in group:
                others = ", ".join(f"{_describe(o)} in {o['genre']}" for o in group if o is not t)
                why = f"labelled {t['genre']}, but the same recording is {others}; keep one copy, in its right genre"
                quarantined.append(_quarantine(t, "label-conflict", f"{_describe(t)}: {why}"))
            continue
        usable.append(first)
        why = f"the same recording as {_describe(first)}; kept once"
        quarantined += [_quarantine(t, "duplicate", f"{_describe(t)}: {why}") for t in rest]
    repeated = sum(len(g) > 1 for g in copies.values())
    if repeated:
        log.warning("%d recordings are in the catalog more than once; see the quarantine table", repeated)
    order = {row["track_id"]: i for i, row in enumerate(rows)}
    return sorted(usable, key=lambda t: order[t["track_id"]]), quarantined


def _quarantine(track: AcquiredTrack, stage: str, reason: str) -> TrackResult:
    return TrackResult(
        track["track_id"],
        False,
        stage=stage,
        reason=reason,
        audio_key=track["audio_key"],
        audio_hash=track["audio_hash"],
    )


def split_warnings(tracks: list[PlannedTrack]) -> list[str]:
    """A line per genre that is missing from a split (too few tracks, or a split file without it): its figures on
    that split cannot be measured, so a report's 100 % for it would mean nothing."""
    splits_of: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for t in tracks:
        splits_of.setdefault(t["genre"], set()).add(t["split"])
        count[t["genre"]] = count.get(t["genre"], 0) + 1
    present = {s for got in splits_of.values() for s in got}
    cannot = {"train": "learned", "val": "validated", "test": "tested"}
    out = []
    for genre in sorted(splits_of):
        missing = [s for s in SPLITS if s in present and s not in splits_of[genre]]
        if missing:
            out.append(
                f"genre {genre!r} ({count[genre]} track{'s' if count[genre] != 1 else ''}) is not in "
                f"{' or '.join(missing)}: it cannot be {' or '.join(cannot[s] for s in missing)}; add tracks of it"
            )
    return out
