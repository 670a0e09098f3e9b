"""Prefect @task wrappers: a few lines each, calling one genreclf function, returning a URI or a small value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from genreclf.storage import Store


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
