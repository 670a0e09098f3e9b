"""Tasks that check and collect a store. Not cached: each run reads the store as it is now."""

from __future__ import annotations

from typing import Any

from prefect import task

from genreclf.store.storage import Store
from genreclf.upkeep.gc import collect
from genreclf.upkeep.inventory import Retention
from genreclf.upkeep.verify import verify


@task(name="verify-store", retries=1, retry_delay_seconds=10)
def verify_store(storage_url: str, deep: bool) -> dict[str, Any]:
    return verify(Store.open(storage_url), deep=deep).to_json()


@task(name="collect-store")
def collect_store(storage_url: str, keep: Retention, apply: bool) -> dict[str, Any]:
    """Not retried: a second try reads the store again anyway, and a failure half way is best looked at."""
    return collect(Store.open(storage_url), keep, apply=apply).to_json()
