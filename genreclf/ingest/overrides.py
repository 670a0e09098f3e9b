"""Label overrides: the audit verdicts a user accepted, kept as versions in the store, applied by the next build.

An override sets a track's genre (its label source becomes "audit") or leaves the track out (a second copy of a
recording). Every accept writes a new version holding all overrides so far (`labels/<version>/overrides.json`,
never overwritten) and points `labels/LATEST` at it. A build applies the latest version to its catalog and
builds the catalog version that results, so the dataset, and every model trained on it, names the labels it had.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import polars as pl
from typing_extensions import TypedDict

from genreclf.errors import DataError
from genreclf.ingest import catalog
from genreclf.store.keys import LABEL_OVERRIDES_LATEST, content_id, label_overrides_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)

AUDIT_SOURCE = "audit"  # the catalog's label_source of an overridden genre


class Override(TypedDict):
    """One accepted verdict. `genre` None leaves the track out. `content_hash` is the audio the verdict was about,
    where the catalog knows it: if the file changes, the override no longer applies."""

    track_id: str
    content_hash: str | None
    genre: str | None
    previous: str
    reason: str
    audit_id: str
    accepted_at: str


def latest_version(store: Store) -> str | None:
    return store.read_text(LABEL_OVERRIDES_LATEST).strip() if store.exists(LABEL_OVERRIDES_LATEST) else None


def read_overrides(store: Store, version: str | None = None) -> dict[str, Override]:
    """The overrides of a version (default: the latest), by track id; empty when none were ever accepted."""
    version = version or latest_version(store)
    if version is None:
        return {}
    return {o["track_id"]: o for o in store.read_json(label_overrides_key(version))}


def accept(store: Store, new: list[Override], *, forget: list[str] | None = None) -> str:
    """Add `new` to the latest overrides (a track's newer override replaces its older one), leave out the tracks
    in `forget`, write that as a new version and make it the latest; returns it."""
    merged = read_overrides(store)
    for track_id in forget or []:
        if merged.pop(track_id, None) is None:
            raise DataError(f"track {track_id} has no label override to forget")
    merged.update({o["track_id"]: o for o in new})
    entries = [merged[t] for t in sorted(merged)]
    version = content_id(entries, length=16)
    if not store.exists(label_overrides_key(version)):
        store.write_json(label_overrides_key(version), entries)
    store.write_text(LABEL_OVERRIDES_LATEST, version)
    log.info("label overrides %s: %d tracks (%d new)", version, len(entries), len(new))
    return version


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def apply_overrides(store: Store, version: str) -> str:
    """The catalog version a build should read: `version` with the latest overrides applied (written as a new
    catalog version, derived from it, when they change anything), or `version` itself when they change nothing.

    A version derived by older overrides is taken back to its source first, so overrides taken back or replaced
    since are undone, and the same source with the same overrides always gives the same version. An override
    whose audio changed since the audit (another content hash) is not applied, and said so.
    """
    overrides = read_overrides(store)
    base = catalog.base_version(store, version)  # a catalog made by applying older overrides: start from its source
    if not overrides:
        return base
    df = catalog.read_catalog(store, base)
    relabel: dict[str, str] = {}
    drop: dict[str, Override] = {}
    stale = []
    for tid, genre, source, content in df.select("track_id", "genre", "label_source", "content_hash").iter_rows():
        o = overrides.get(tid)
        if o is None:
            continue
        if o["content_hash"] and content and o["content_hash"] != content:
            stale.append(tid)
        elif o["genre"] is None:
            drop[tid] = o
        elif (genre, source) != (o["genre"], AUDIT_SOURCE):
            relabel[tid] = o["genre"]
    if stale:
        log.warning("%d label overrides are not applied, as the audio changed since the audit: %s",
                    len(stale), ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))  # fmt: skip
    if not relabel and not drop:
        return base
    ids = pl.col("track_id")
    df = df.filter(~ids.is_in(list(drop))).with_columns(
        pl.when(ids.is_in(list(relabel))).then(ids.replace(relabel)).otherwise(pl.col("genre")).alias("genre"),
        pl.when(ids.is_in(list(relabel))).then(pl.lit(AUDIT_SOURCE)).otherwise(pl.col("label_source"))
        .alias("label_source"),
    )  # fmt: skip
    skipped = catalog.read_skipped(store, base) + [
        {"stage": "audit", "track_id": tid, "reason": f"left out by label audit {o['audit_id']}: {o['reason']}"}
        for tid, o in drop.items()
    ]
    derived = catalog.write_catalog(store, df, skipped=skipped, base=base)
    log.info("applied label overrides %s to catalog %s: %d relabelled, %d left out -> catalog %s",
             latest_version(store), base, len(relabel), len(drop), derived)  # fmt: skip
    return derived
