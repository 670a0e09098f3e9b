"""Tasks that bring each catalog track's audio into the store, in batches, under global YouTube limits.

Acquisition runs as a few task runs of many tracks each (`batches`), not one per track: Prefect's cost per task run
(states, events, a result) would otherwise outgrow the work at catalog scale. Inside a batch every track is
acquired on its own: a track that fails transiently after the library's retries (genreclf.retry) is quarantined at
stage "download" and the batch goes on. Reuse is per track and by content, from the store: a track whose decoded
audio and segment offsets are stored is not fetched or decoded again (genreclf.acquisition.acquire.acquire_track), so
the tasks keep no cache records. A batch that fails for another reason (the store unreachable) is retried once; the
tracks it had finished are reused.

Limits are Prefect global concurrency limits named by `GENRECLF_YOUTUBE_RATE_LIMIT` (a rate limit: one slot per
search or download, decaying at requests-per-minute / 60) and `GENRECLF_YOUTUBE_CONCURRENCY_LIMIT` (downloads at
once). In Prefect 3.9, taking a slot of a limit that does not exist (with `strict=False`) logs "Concurrency limits
[...] do not exist - skipping acquisition." and goes on unlimited; `acquire_tracks` checks once per flow run which
limits exist and passes only those, so a server without them runs unlimited and quietly.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from genreclf.acquisition.acquire import Gate, TrackResult, acquire_rows, acquire_track, is_remote
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import process_handoff
from genreclf.datasets.build import batches
from genreclf.ingest.catalog import CatalogRow
from genreclf.settings import Settings, get_settings
from genreclf.sources.youtube_config import YoutubeConfig
from genreclf.store.storage import Store
from genreclf.tasks import wait_for
from genreclf.tasks.progress import Progress


def as_is(value: Any) -> Any:
    """A per-track list as a task parameter that Prefect does not walk, where the flow's tasks run on threads.

    Prefect looks for futures in every element of a task's parameters, once when submitting and once when running:
    ~0.1 s of CPU per thousand catalog rows each time, growing with the catalog. `quote` skips that; on Dask it is
    left out, as Dask's client rebuilds the annotation (a tuple) and the task would get it instead of the value.
    """
    ctx = FlowRunContext.get()
    return quote(value) if ctx is not None and isinstance(ctx.task_runner, ThreadPoolTaskRunner) else value


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
    name="acquire-batch",
    task_run_name="acquire-batch-{index}",
    retries=1,
    retry_delay_seconds=10,
    cache_policy=NO_CACHE,  # reuse is per track, from the store
)
def acquire_batch(
    storage_url: str,
    rows: list[CatalogRow],
    seg: SegmentConfig,
    yt: YoutubeConfig,
    limits: tuple[str | None, str | None],
    index: int = 0,
    audio_format: str = "flac",
) -> list[TrackResult]:
    """Search/download/decode each track of a batch into the store: one result per row, in order."""
    store = Store.open(storage_url)
    # The decoded samples stay in this process for the shard that computes them (tasks/dataset.py), if it runs
    # here: it then skips reading the FLAC back.
    acquire = functools.partial(acquire_track, store, cfg=seg, yt=yt, gate=network_gate(*limits),
                                handoff=process_handoff(), audio_format=audio_format)  # fmt: skip
    return acquire_rows(rows, acquire)


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


def acquire_tracks(
    storage_url: str, rows: list[CatalogRow], seg: SegmentConfig, *, workers: int | None = None
) -> list[TrackResult]:
    """Acquire every row, in batches on the flow's task runner (call inside a flow); one result per row, in order.
    `workers`: how many tasks the runner runs at once (default: this machine's cores).

    A batch that still fails after its retry has its tracks quarantined at stage "download" with the error.
    """
    logger = get_run_logger()
    settings = get_settings()
    yt = settings.youtube
    limits: tuple[str | None, str | None] = (None, None)
    if any(is_remote(row.get("audio_uri")) for row in rows):
        limits = ensure_limits(settings)
        logger.info("acquiring %d tracks; global limits in use: %s", len(rows), [n for n in limits if n] or "none")
    parts = batches(len(rows), workers=workers or os.cpu_count() or 2)
    fmt = settings.audio_format
    futures = [
        acquire_batch.submit(storage_url, as_is(rows[p.start : p.stop]), seg, yt, limits, index=i, audio_format=fmt)
        for i, p in enumerate(parts)
    ]
    results: list[TrackResult] = []
    progress = Progress(len(rows), "tracks acquired")
    for i, (part, future) in enumerate(zip(parts, futures, strict=True)):
        wait_for(future)
        progress.advance(len(part))
        if future.state.is_completed():
            results.extend(future.result())
            continue
        err = future.state.result(raise_on_failure=False)
        for row in rows[part.start : part.stop]:
            reason = f"track {row['track_id']}: {err} (its batch failed; a rerun tries again)"
            results.append(TrackResult(row["track_id"], False, stage="download", reason=reason))
        logger.warning("quarantined %d tracks at download: batch %d failed: %s", len(part), i, err)
    return results
