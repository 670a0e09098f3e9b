"""Tasks that bring each catalog track's audio into the store, under global YouTube rate and concurrency limits.

One task run per track: a track that keeps failing transiently fails alone (and is quarantined by
`acquire_tracks`, not cached, so the next run tries it again), and the Prefect UI shows each track's fate. The task
has no retries: genreclf.retry already retried each search and download (see its docstring for the layers).

Limits are Prefect global concurrency limits named by `GENRECLF_YOUTUBE_RATE_LIMIT` (a rate limit: one slot per
search or download, decaying at requests-per-minute / 60) and `GENRECLF_YOUTUBE_CONCURRENCY_LIMIT` (downloads at
once). In Prefect 3.9, taking a slot of a limit that does not exist (with `strict=False`) logs "Concurrency limits
[...] do not exist - skipping acquisition." and goes on unlimited; `acquire_tracks` checks once per flow run which
limits exist and passes only those, so a server without them runs unlimited and quietly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from prefect import get_run_logger, task, unmapped
from prefect.cache_policies import TASK_SOURCE, Inputs
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound

from genreclf.acquire import Gate, TrackResult, acquire_track, is_remote
from genreclf.audio import SegmentConfig
from genreclf.catalog import CatalogRow
from genreclf.settings import Settings, get_settings
from genreclf.sources.youtube_config import YoutubeConfig
from genreclf.storage import Store
from tasks import StoreIdentity
from tasks.progress import Progress

# Cached on the track's row and configs (and store, and source); not on which limits exist.
ACQUIRE_CACHE = Inputs(exclude=["limits"]) + TASK_SOURCE + StoreIdentity()


def network_gate(rate_name: str | None, concurrency_name: str | None) -> Gate:
    """A gate that takes a slot of the rate limit, then holds one of the concurrency limit, around a request."""

    @contextlib.contextmanager
    def gate() -> Iterator[None]:
        if rate_name:
            rate_limit(rate_name, occupy=1, strict=False)
        if concurrency_name:
            with concurrency(concurrency_name, occupy=1, strict=False):
                yield
        else:
            yield

    return gate


@task(
    name="acquire-track",
    task_run_name="acquire-{row[track_id]}",
    cache_policy=ACQUIRE_CACHE,
    persist_result=True,
)
def acquire_one(
    storage_url: str, row: CatalogRow, seg: SegmentConfig, yt: YoutubeConfig, limits: tuple[str | None, str | None]
) -> TrackResult:
    """Search/download/decode one track into the store; ok with segment offsets, or quarantined with a reason."""
    store = Store.open(storage_url)
    return acquire_track(store, row, cfg=seg, yt=yt, gate=network_gate(*limits))


def ensure_limits(settings: Settings) -> tuple[str | None, str | None]:
    """Create or update the global limits the settings ask for; return the names of those that exist."""
    names: list[str | None] = []
    with get_client(sync_client=True) as client:
        wanted = [
            (settings.youtube_rate_limit, settings.youtube_requests_per_minute, True),
            (settings.youtube_concurrency_limit, settings.youtube_max_concurrent_downloads, False),
        ]
        for name, value, is_rate in wanted:
            if not name:
                names.append(None)
                continue
            if value:
                if is_rate:  # burst of about a second's worth, refilled at value / 60 per second
                    limit, decay = max(1, math.ceil(value / 60)), value / 60
                    client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second=decay)
                else:
                    client.upsert_global_concurrency_limit_by_name(name, int(value))
                names.append(name)
                continue
            try:
                found = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                found = None
            names.append(name if found is not None and found.active else None)
    return names[0], names[1]


def acquire_tracks(storage_url: str, rows: list[CatalogRow], seg: SegmentConfig) -> list[TrackResult]:
    """Acquire every row concurrently (call inside a flow); one result per row, in order.

    A track whose task failed (transient faults the library's retries did not get past) is quarantined at stage
    "download" with the error; every other failure was already quarantined by the library, with its stage.
    """
    logger = get_run_logger()
    settings = get_settings()
    yt = settings.youtube
    limits: tuple[str | None, str | None] = (None, None)
    if any(is_remote(row.get("audio_uri")) for row in rows):
        limits = ensure_limits(settings)
        logger.info("acquiring %d tracks; global limits in use: %s", len(rows), [n for n in limits if n] or "none")
    futures = acquire_one.map(storage_url, rows, unmapped(seg), unmapped(yt), unmapped(limits))
    results: list[TrackResult] = []
    progress = Progress(len(rows), "tracks acquired")
    for row, future in zip(rows, futures, strict=True):
        future.wait()
        progress.advance()
        if future.state.is_completed():
            results.append(future.result())
            continue
        err = future.state.result(raise_on_failure=False)
        reason = f"track {row['track_id']}: {err} (transient; a rerun tries again)"
        logger.warning("quarantined at download: %s", reason)
        results.append(TrackResult(row["track_id"], False, stage="download", reason=reason))
    return results
