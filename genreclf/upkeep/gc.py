"""Collect what no root reaches (`genreclf.upkeep.inventory`): a dry run lists it, `apply` deletes it.

Safe beside a running build: nothing written within the grace period goes, and just before deleting, gc reads
the datasets and catalogs written since its listing and spares what they reach. What a build written in those last
milliseconds reuses could still go; the build's manifest then names a missing shard, which `genreclf verify`
reports and a rerun of the build writes again.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from genreclf.store.storage import Store
from genreclf.upkeep.inventory import (
    SWEPT,
    Inventory,
    Retention,
    catalogs_of,
    datasets_in,
    mark,
    reach_catalogs,
    reach_datasets,
)

log = logging.getLogger(__name__)


@dataclass
class Collection:
    """What gc found to delete (and, applied, deleted), per prefix: objects and bytes."""

    store: str
    applied: bool
    retention: Retention
    keys: list[str] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    kept_objects: int = 0
    spared: int = 0  # reached by what was written while gc ran
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store, "applied": self.applied, "retention": self.retention.__dict__,
            "objects": self.objects, "bytes": self.bytes, "total_objects": len(self.keys),
            "total_bytes": self.total_bytes, "kept_objects": self.kept_objects, "spared": self.spared,
            "seconds": round(self.seconds, 3), "keys": self.keys,
        }  # fmt: skip


def collect(store: Store, keep: Retention | None = None, *, apply: bool = False) -> Collection:
    """Find (and with `apply`, delete) every object under the swept prefixes that no root reaches."""
    started = time.perf_counter()
    keep = keep or Retention()
    inv = Inventory.read(store)
    kept = mark(inv, keep, now=inv.listed_at)
    doomed = sorted(k for k in inv.files if k.startswith(SWEPT) and k not in kept)
    result = Collection(store.url, apply, keep)
    if apply and doomed:
        spared = _reached_by_newcomers(store, inv)
        result.spared = len(set(doomed) & spared)
        doomed = [k for k in doomed if k not in spared]
    result.kept_objects = len(inv.files) - len(doomed)
    objects: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = defaultdict(int)
    for key in doomed:
        prefix = key.split("/", 1)[0] + "/"
        objects[prefix] += 1
        sizes[prefix] += inv.files[key].size
    if apply:
        store.delete_many(doomed)
    result.keys, result.objects, result.bytes = doomed, dict(objects), dict(sizes)
    result.seconds = time.perf_counter() - started
    if apply:
        log.info("gc deleted %d objects (%d bytes) from %s", len(doomed), result.total_bytes, store.url)
    return result


def _reached_by_newcomers(store: Store, before: Inventory) -> set[str]:
    """What the datasets (manifests, or plans of builds still running) and catalogs written since `before` was
    listed reach: a build that started while gc was marking may reuse what gc found unreached."""
    now = Inventory.read(store)
    new = [k for k, e in now.files.items() if k not in before.files or e.mtime != before.files[k].mtime]
    datasets = datasets_in(k for k in new if k.startswith("datasets/"))
    catalogs = {k.split("/")[1] for k in new if k.startswith("catalogs/") and k.endswith("/catalog.parquet")}
    return reach_datasets(now, datasets) | reach_catalogs(now, catalogs | catalogs_of(now, datasets))
