"""What a store holds and what refers to what: one listing and the small records that name other objects, read
once and shared by `verify` (what is missing, corrupt or unreferenced) and `gc` (what may go).

Roots name what is kept; everything they reach is kept with them:
- a catalog version reaches the decoded audio of its rows (a stem: the audio in any format and its sidecar) and
  the failure records of its tracks;
- a dataset reaches everything under `datasets/<id>/`, its shards, the embeddings of those shards, and its
  catalog version (its rows' audio: what an incremental build of it reuses);
- a run reaches everything under `runs/<id>/` and its predictions (not its dataset: its model predicts without it);
- an audit is kept with its dataset.
Never swept: catalogs/, labels/ (accepted overrides), registry/, spotify/, store.json, STORE_ID.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow.compute as pc

from genreclf.store.keys import CATALOG_LATEST, DATASET_LATEST, sidecar_key
from genreclf.store.storage import Entry, Store

log = logging.getLogger(__name__)

SWEPT = ("audio/", "shards/", "embeddings/", "datasets/", "runs/", "audits/", "predictions/")
DAY_S = 86_400.0


@dataclass(frozen=True)
class Retention:
    """What gc keeps besides what its roots reach: the newest `catalogs` catalog versions (and the datasets built
    from them), the last `runs` runs, and anything written in the last `grace_s` seconds (a build in progress)."""

    catalogs: int = 3
    runs: int = 10
    grace_s: float = DAY_S

    @classmethod
    def everything(cls) -> Retention:
        """Every catalog and run a root: what nothing at all refers to (verify's orphans)."""
        return cls(catalogs=1_000_000_000, runs=1_000_000_000, grace_s=0.0)


@dataclass
class Inventory:
    """The store's files (one listing) and the records that name other objects."""

    store: Store
    files: dict[str, Entry]
    listed_at: float
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset id -> manifest.json
    unreadable: dict[str, str] = field(default_factory=dict)  # key -> why it could not be read
    lineages: dict[str, str] = field(default_factory=dict)  # lineage pointer key -> dataset id
    champions: dict[str, dict[str, Any]] = field(default_factory=dict)  # registry key -> entry
    run_datasets: dict[str, str] = field(default_factory=dict)  # run id -> dataset id (config.json)
    audit_datasets: dict[str, str] = field(default_factory=dict)  # audit id -> dataset id (audit.json)

    @classmethod
    def read(cls, store: Store) -> Inventory:
        listed_at = time.time()
        inv = cls(store, {e.key: e for e in store.entries("")}, listed_at)
        for key in inv.files:
            parts = key.split("/")
            if parts[0] == "datasets" and len(parts) == 3 and parts[2] == "manifest.json":
                inv._read_json(key, lambda d, k=parts[1]: inv.manifests.__setitem__(k, d))
            elif parts[0] == "datasets" and len(parts) == 3 and parts[1] == "lineages":
                inv.lineages[key] = store.read_text(key).strip()
            elif parts[0] == "registry" and key.endswith(".json"):
                inv._read_json(key, lambda d, k=key: inv.champions.__setitem__(k, d))
            elif parts[0] == "runs" and len(parts) == 3 and parts[2] == "config.json":
                inv._read_json(key, lambda d, r=parts[1]: inv.run_datasets.__setitem__(r, d.get("dataset_id", "")))
            elif parts[0] == "audits" and len(parts) == 3 and parts[2] == "audit.json":
                inv._read_json(key, lambda d, a=parts[1]: inv.audit_datasets.__setitem__(a, d.get("dataset_id", "")))
        return inv

    def _read_json(self, key: str, keep: Any) -> None:
        try:
            data = json.loads(self.store.read_bytes(key))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            self.unreadable[key] = f"not a JSON record ({e})"
            return
        keep(data)

    # --- what each kind of object is --------------------------------------------------------------------------

    def under(self, prefix: str) -> list[str]:
        """Keys under `prefix`. A folder two levels down (`runs/<id>/`, what marking asks for once per run,
        dataset and audit) comes from an index of the listing, not a scan of every key."""
        if prefix.count("/") == 2 and prefix.endswith("/"):
            return self._folders.get(prefix, [])
        return [k for k in self.files if k.startswith(prefix)]

    @cached_property
    def _folders(self) -> dict[str, list[str]]:
        folders: dict[str, list[str]] = defaultdict(list)
        for key in self.files:
            parts = key.split("/", 2)
            if len(parts) == 3:
                folders[f"{parts[0]}/{parts[1]}/"].append(key)
        return folders

    def catalogs_newest_first(self) -> list[str]:
        found = [(e.mtime, k.split("/")[1]) for k, e in self.files.items()
                 if k.startswith("catalogs/") and k.endswith("/catalog.parquet")]  # fmt: skip
        return [v for _, v in sorted(found, reverse=True)]

    def runs_newest_first(self) -> list[str]:
        newest: dict[str, float] = defaultdict(float)
        for k, e in self.files.items():
            if k.startswith("runs/") and k.count("/") >= 2:
                run = k.split("/")[1]
                newest[run] = max(newest[run], e.mtime)
        return sorted(newest, key=lambda r: (newest[r], r), reverse=True)

    def text(self, key: str) -> str | None:
        return self.store.read_text(key).strip() if key in self.files else None

    def planned_shards(self, dataset_id: str) -> list[dict[str, Any]]:
        """The shards a build in progress planned (`plan.json`, written before its shards on a Dask cluster)."""
        key = f"datasets/{dataset_id}/plan.json"
        if key not in self.files:
            return []
        return list(json.loads(self.store.read_bytes(key)).get("shards", []))

    def catalog_stems(self, version: str) -> dict[str, str]:
        """Audio stem (`audio/sha256/<hash>` or `audio/<track id>`) -> track id, of a catalog version's rows."""
        table = self.store.read_parquet(f"catalogs/{version}/catalog.parquet", columns=["track_id", "content_hash"])
        ids, hashes = table["track_id"].to_pylist(), pc.cast(table["content_hash"], "string").to_pylist()
        return {sidecar_key(t, h).removesuffix(".json"): t for t, h in zip(ids, hashes, strict=True)}


def mark(inv: Inventory, keep: Retention, *, now: float | None = None) -> set[str]:
    """Every listed key the roots reach (see the module's doc), plus what is younger than the grace period."""
    now = time.time() if now is None else now
    kept: set[str] = {k for k, e in inv.files.items() if not k.startswith(SWEPT) or now - e.mtime < keep.grace_s}

    catalogs = set(inv.catalogs_newest_first()[: keep.catalogs])
    latest_catalog = inv.text(CATALOG_LATEST)
    catalogs |= {latest_catalog} if latest_catalog else set()
    datasets = {d for d, m in inv.manifests.items() if m.get("catalog_version") in catalogs}
    datasets |= set(inv.lineages.values())
    latest_dataset = inv.text(DATASET_LATEST)
    datasets |= {latest_dataset} if latest_dataset else set()
    kept.add(DATASET_LATEST)
    datasets |= datasets_in(k for k in kept if k.startswith("datasets/"))  # a build in progress, or just done
    kept |= reach_datasets(inv, datasets)
    kept.update(k for k, d in inv.lineages.items() if d in datasets)
    kept |= reach_catalogs(inv, catalogs | catalogs_of(inv, datasets))

    runs = set(inv.runs_newest_first()[: keep.runs]) | {str(c.get("run_id")) for c in inv.champions.values()}
    for run in runs:
        kept.update(inv.under(f"runs/{run}/"))
        kept.update(inv.under(f"predictions/{run}/"))
    for audit, dataset_id in inv.audit_datasets.items():
        if dataset_id in datasets:
            kept.update(inv.under(f"audits/{audit}/"))
    return kept


def datasets_in(keys: Iterable[str]) -> set[str]:
    """The dataset ids of keys under `datasets/<id>/` (lineage pointers are not datasets)."""
    return {k.split("/")[1] for k in keys if k.count("/") == 2 and not k.startswith("datasets/lineages/")}


def catalogs_of(inv: Inventory, datasets: set[str]) -> set[str]:
    return {str(inv.manifests[d].get("catalog_version")) for d in datasets if d in inv.manifests}


def reach_datasets(inv: Inventory, datasets: set[str]) -> set[str]:
    """Everything under the datasets' folders, their shards (as their manifests, or the plans of builds still
    running, name them: listed or not) and the embeddings of those shards."""
    embeddings = defaultdict(list)
    for k in inv.under("embeddings/"):
        embeddings[k.split("/", 2)[-1]].append(k)
    reached: set[str] = set()
    for d in datasets:
        reached.update(inv.under(f"datasets/{d}/"))
        for shard in inv.manifests.get(d, {}).get("shards", []) or inv.planned_shards(d):
            reached.add(shard["key"])
            reached.update(embeddings[shard["key"].removeprefix("shards/")])
    return reached


def reach_catalogs(inv: Inventory, catalogs: set[str]) -> set[str]:
    """The decoded audio (any format) and sidecars of the catalogs' rows, and their tracks' failure records."""
    tracks: set[str] = set()
    stems: set[str] = set()
    for version in catalogs:
        if f"catalogs/{version}/catalog.parquet" in inv.files:
            found = inv.catalog_stems(version)
            stems.update(found)
            tracks.update(found.values())
    reached = {k for k in inv.under("audio/") if k.rsplit(".", 1)[0] in stems}
    return reached | set(_failures_of(inv, tracks))


def _failures_of(inv: Inventory, tracks: set[str]) -> list[str]:
    """The failure records (`audio/failed/*.json`) of these tracks: each names its track."""
    kept = []
    for key in inv.under("audio/failed/"):
        try:
            if json.loads(inv.store.read_bytes(key)).get("track_id") in tracks:
                kept.append(key)
        except ValueError:
            inv.unreadable[key] = "not a JSON record"
    return kept
