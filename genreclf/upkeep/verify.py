"""Check a store: what its records point at is there and intact, and what nothing points at.

Without `deep` it reads one listing and the small records: every dataset's shards are there at the size its
manifest recorded, with its splits and quarantine files; every stored audio has its sidecar and the reverse; every
champion's model files are there and the weights match the sha256 in `model.json`; label overrides parse.
With `deep` it also reads the bytes: every shard against the sha256 recorded for it and its rows against the
schema, and every stored audio against its sidecar's fingerprint. Nothing is repaired: each finding names the
key and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from genreclf.acquisition import audio
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.shards import shard_schema
from genreclf.errors import GenreclfError
from genreclf.ingest import overrides
from genreclf.store.storage import Store
from genreclf.upkeep.inventory import SWEPT, Inventory, Retention, mark

log = logging.getLogger(__name__)

Kind = Literal["missing", "corrupt", "orphan"]
REBUILD = "rerun the build that made it (`genreclf run` or the build-dataset flow): a missing shard is computed again"


@dataclass(frozen=True)
class Finding:
    kind: Kind
    key: str
    what: str
    fix: str


@dataclass
class Verification:
    store: str
    deep: bool
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # what was checked -> how many
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind != "orphan"]

    @property
    def orphans(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "orphan"]

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store, "deep": self.deep, "ok": not self.problems, "checked": self.checked,
            "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3),
            "findings": [f.__dict__ for f in self.findings],
        }  # fmt: skip


class _Checker:
    def __init__(self, inv: Inventory, deep: bool) -> None:
        self.inv, self.deep = inv, deep
        self.result = Verification(inv.store.url, deep)

    def found(self, kind: Kind, key: str, what: str, fix: str) -> None:
        self.result.findings.append(Finding(kind, key, what, fix))

    def count(self, what: str, n: int = 1) -> None:
        self.result.checked[what] = self.result.checked.get(what, 0) + n

    def read(self, key: str) -> bytes:
        data = self.inv.store.read_bytes(key)
        self.result.bytes_read += len(data)
        return data

    def is_there(self, key: str, size: int | None, *, whose: str, fix: str) -> bool:
        entry = self.inv.files.get(key)
        if entry is None:
            self.found("missing", key, f"{whose} lists it; it is not in the store", fix)
            return False
        if size is not None and entry.size != size:
            self.found("corrupt", key, f"{entry.size} bytes; {whose} recorded {size}", fix)
            return False
        return True


def verify(store: Store, *, deep: bool = False, on_progress: Callable[[str], None] | None = None) -> Verification:
    """Check the store (see the module's doc); `on_progress` hears each stage as it starts."""
    started = time.perf_counter()
    say = on_progress or (lambda stage: None)
    say("listing")
    inv = Inventory.read(store)
    check = _Checker(inv, deep)
    for key, why in inv.unreadable.items():
        check.found("corrupt", key, why, "restore it from a backup, or delete it if what it describes is not needed")
    say("datasets")
    _check_datasets(check)
    say("audio")
    _check_audio(check)
    say("models")
    _check_champions(check)
    _check_overrides(check)
    say("orphans")
    kept = mark(inv, Retention.everything())
    for key in sorted(k for k in inv.files if k.startswith(SWEPT) and k not in kept):
        check.found("orphan", key, "nothing in the store refers to it", "`genreclf gc` lists it; `--apply` deletes it")
    check.result.seconds = time.perf_counter() - started
    return check.result


def _check_datasets(check: _Checker) -> None:
    inv = check.inv
    recorded = {s["key"]: s["sha256"] for m in inv.manifests.values() for s in m.get("shards", []) if "sha256" in s}
    deep_done: set[str] = set()
    for dataset_id, m in sorted(inv.manifests.items()):
        check.count("datasets")
        whose = f"dataset {dataset_id}'s manifest"
        for name in ("splits.parquet", "quarantine.json"):
            check.is_there(f"datasets/{dataset_id}/{name}", None, whose=whose, fix=REBUILD)
        for shard in m.get("shards", []):
            there = check.is_there(shard["key"], shard.get("bytes"), whose=whose, fix=REBUILD)
            if there and check.deep and shard["key"] not in deep_done:
                deep_done.add(shard["key"])
                _read_shard(check, shard, recorded.get(shard["key"]), m)
    check.count("shards", len({s["key"] for m in inv.manifests.values() for s in m.get("shards", [])}))


def _read_shard(check: _Checker, shard: dict[str, Any], sha256: str | None, manifest: dict[str, Any]) -> None:
    key = shard["key"]
    fix = f"delete it and {REBUILD}"
    data = check.read(key)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        check.found("corrupt", key, "its bytes do not match the sha256 its manifest recorded", fix)
        return
    feat = FeatureConfig(**manifest["feature_config"])
    n_mels, frames = _mel_shape(manifest, feat)
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as e:
        check.found("corrupt", key, f"not readable as Parquet ({e})", fix)
        return
    expected = shard_schema(n_mels, frames, manifest["feature_hash"])
    if not table.schema.remove_metadata().equals(expected.remove_metadata()) or table.num_rows != shard["rows"]:
        check.found("corrupt", key, f"{table.num_rows} rows of schema {table.schema.names}; the manifest expects "
                                    f"{shard['rows']} rows of {expected.names}", fix)  # fmt: skip


def _mel_shape(manifest: dict[str, Any], feat: FeatureConfig) -> tuple[int, int]:
    samples = round(manifest["segment_config"]["window_s"] * feat.sample_rate)
    return feat.n_mels, feat.frames(samples)


def _check_audio(check: _Checker) -> None:
    """Each stored audio and its sidecar come as a pair (`<stem>.json` and `<stem>.<format>`)."""
    inv = check.inv
    by_stem: dict[str, set[str]] = {}
    for key in inv.under("audio/"):
        if not key.startswith("audio/failed/"):
            stem, ext = key.rsplit(".", 1)
            by_stem.setdefault(stem, set()).add(ext)
    fix = "run the build again: acquisition decodes (or fetches) the track again"
    for stem, exts in sorted(by_stem.items()):
        check.count("audio")
        if "json" not in exts:
            check.found("missing", f"{stem}.json", f"{stem}.{min(exts)} has no sidecar", f"delete it and {fix}")
        elif exts == {"json"}:
            check.found("missing", f"{stem}.flac", f"its sidecar {stem}.json is there, the audio is not",
                        f"delete the sidecar and {fix}")  # fmt: skip
        elif check.deep:
            _read_audio(check, stem, fix)


def _read_audio(check: _Checker, stem: str, fix: str) -> None:
    side = json.loads(check.read(f"{stem}.json"))
    key = f"{stem}.{side.get('audio_format', 'flac')}"
    if key not in check.inv.files:
        check.found("missing", key, f"its sidecar {stem}.json names it", f"delete the sidecar and {fix}")
        return
    try:
        y, _ = audio.read_stored(check.read(key))
    except Exception as e:  # soundfile raises its own errors for a damaged file
        check.found("corrupt", key, f"cannot be decoded ({e})", f"delete it and its sidecar, and {fix}")
        return
    if "audio_sha256" in side and audio.pcm_sha256(y) != side["audio_sha256"]:
        check.found("corrupt", key, "its samples do not match the fingerprint in its sidecar",
                    f"delete it and its sidecar, and {fix}")  # fmt: skip


def _check_champions(check: _Checker) -> None:
    inv = check.inv
    seen: set[str] = set()
    for registry_key, entry in sorted(inv.champions.items()):
        run = str(entry.get("run_id"))
        if run in seen:
            continue
        seen.add(run)
        check.count("champions")
        fix = (f"restore runs/{run}/ from a backup, or promote another run: `genreclf run` trains and evaluates "
               f"one, and a run with no champion to beat is promoted")  # fmt: skip
        meta_key, whose = f"runs/{run}/model.json", f"{registry_key} (champion {run})"
        if str(entry.get("model_key", "")).endswith(".pt"):  # an earlier genreclf's torch pickle: no sha256 to check
            check.is_there(str(entry["model_key"]), None, whose=whose, fix=fix)
            continue
        if not check.is_there(meta_key, None, whose=whose, fix=fix):
            continue
        try:
            meta = json.loads(check.read(meta_key))
        except ValueError as e:
            check.found("corrupt", meta_key, f"not JSON ({e})", fix)
            continue
        weights = f"runs/{run}/{meta.get('weights', 'model.safetensors')}"
        there = check.is_there(weights, None, whose=meta_key, fix=fix)
        if there and hashlib.sha256(check.read(weights)).hexdigest() != meta.get("weights_sha256"):
            check.found("corrupt", weights, f"does not match the sha256 in {meta_key}", fix)


def _check_overrides(check: _Checker) -> None:
    for key in check.inv.under("labels/"):
        if key.endswith("/overrides.json"):
            check.count("label overrides")
            try:
                overrides.read_overrides(check.inv.store, key.split("/")[1])
            except (GenreclfError, ValueError, KeyError, TypeError) as e:
                check.found("corrupt", key, f"does not parse as label overrides ({e})",
                            "restore it from a backup; label overrides are never deleted by genreclf")  # fmt: skip
