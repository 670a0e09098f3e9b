"""Prefect @task wrappers: a few lines each, calling one genreclf function, returning a URI or a small value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.futures import PrefectFuture

from genreclf import interrupts
from genreclf.store.storage import Store


@dataclass
class StoreIdentity(CachePolicy):
    """Keys the cache on the identity of the task's store (its `storage_url` input): outputs live in the store,
    so a cached result must not outlive a store that was wiped and made again."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        url = (inputs or {}).get("storage_url")
        return Store.open(url).identity() if url else None


# A task's result is reused when its inputs, its source and its store are the same as a finished run's.
CACHED = INPUTS + TASK_SOURCE + StoreIdentity()


# How often a flow waiting for its tasks wakes: a Ctrl-C is delivered to whichever thread the kernel picks, and Python
# runs its handler only when the main thread runs again; a plain wait slept through it until the task ended (4.7 s
# into a batch of tracks here; a whole shard on a big catalog).
WAKE_S = 0.2


def wait_for(future: PrefectFuture[Any]) -> None:
    """Wait until the task behind `future` has finished, waking every WAKE_S (see above). An interrupt raised
    while waiting (a Ctrl-C, Prefect's TerminationSignal for a SIGTERM) tells the task threads to stop before it
    goes on up (genreclf.interrupts.note)."""
    try:
        while not _finished(future):
            future.wait(timeout=WAKE_S)
    except BaseException as e:
        interrupts.note(e)
        raise
    future.wait()  # done: returns at once, and keeps the task's final state on the future (`future.state`)


def _finished(future: PrefectFuture[Any]) -> bool:
    wrapped = getattr(future, "wrapped_future", None)  # the thread pool's or Dask's own future
    return bool(wrapped.done()) if wrapped is not None else future.state.is_final()
