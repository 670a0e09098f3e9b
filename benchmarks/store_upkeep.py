"""Store upkeep at scale: what `gc` frees after catalog churn, and how long `verify` takes.

    .venv/bin/python benchmarks/store_upkeep.py [--tracks 1000] [--versions 5] [--verify-tracks 10000] [--work DIR]

What the issue asks, measured here:

  "A store after 5 catalog versions of 1,000 generated tracks with one file in ten changed each time: gc frees at
   least the four superseded generations' audio and shards, and afterwards verify --deep finds nothing missing,
   the champion predicts, and a rerun of the latest catalog rebuilds nothing."
  "verify on a store of 10,000 tracks: under 30 s without --deep on 2 cores; --deep rate in MB/s."

Part 1 (churn): a folder catalog of `--tracks` synthesized tracks (genreclf.app.demo, 4 genres, 4 s each) is
written as a catalog version and built (genreclf.datasets.build.build_dataset, DatasetParams.small, 1 MB shards so
that a catalog holds several); then, `--versions` - 1 times, one file in ten (drawn at random) gets new audio in its
genre's style and the new catalog version is built. A small CNN (1 epoch, CPU) trained on the last dataset becomes
the champion. The superseded generations' audio (the stems of the bytes each replaced file held) and shards (those
not in the latest manifest) are computed from what was changed, not from gc, and checked against gc's list.
The default retention (3 catalogs, grace 0) is applied to a copy; `Retention(catalogs=1, runs=10, grace_s=0)` to
the store, which is then verified (--deep), asked for a prediction, and built again from its latest catalog.

Part 2 (verify): the same store grown to `--verify-tracks` tracks (3.5 s each, the new ones built incrementally)
and verified: three runs without --deep (each and the median), one with (bytes read / seconds).
`--verify-tracks 0` skips it. Progress goes to stderr, figures to stdout; nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from scale import fmt_bytes  # noqa: E402  (benchmarks/scale.py)

if TYPE_CHECKING:
    from genreclf.datasets.build import Built
    from genreclf.datasets.manifest import Manifest
    from genreclf.store.storage import Store
    from genreclf.upkeep.gc import Collection
    from genreclf.upkeep.verify import Verification

GENRES = 4  # genreclf.app.demo's
CHURN_SECONDS = 4.0
VERIFY_SECONDS = 3.5  # the small windows are 3 s: a shorter track has none
SHARD_MB = 1.0  # about 60 tracks a shard: several shards per catalog, as a large store has
CHANGED = 0.1  # of the files, each new version


def log(message: str) -> None:
    print(f"[upkeep {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def usage(store: Store) -> dict[str, tuple[int, int]]:
    """Objects and bytes per top-level prefix."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in store.entries(""):
        prefix = e.key.split("/", 1)[0] + ("/" if "/" in e.key else "")
        found[prefix][0] += 1
        found[prefix][1] += e.size
    return {p: (n, b) for p, (n, b) in sorted(found.items())}


def listed_by_prefix(c: Collection) -> dict[str, tuple[int, int]]:
    return {p: (c.objects[p], c.bytes[p]) for p in c.objects}


def total(col: dict[str, tuple[int, int]]) -> tuple[int, int]:
    return sum(n for n, _ in col.values()), sum(b for _, b in col.values())


def print_usage(columns: dict[str, dict[str, tuple[int, int]]]) -> None:
    """Objects and bytes per prefix, a column per listing."""
    print(f"  {'prefix':<12}" + "".join(f" | {name:>16}" for name in columns))
    for p in sorted({p for col in columns.values() for p in col}):
        print(f"  {p:<12}" + "".join(f" | {col.get(p, (0, 0))[0]:>6,} {fmt_bytes(col.get(p, (0, 0))[1]):>9}"
                                     for col in columns.values()))  # fmt: skip
    print(f"  {'total':<12}" + "".join(f" | {total(c)[0]:>6,} {fmt_bytes(total(c)[1]):>9}" for c in columns.values()))


def deep_line(v: Verification) -> str:
    """A verification's figures, and its first findings on lines of their own."""
    shown = "".join(f"\n  {f.kind}: {f.key}: {f.what}" for f in v.findings[:10])
    return (f"{len(v.problems)} problems, {len(v.orphans)} orphans, checked {v.checked}, read "
            f"{fmt_bytes(v.bytes_read)} in {v.seconds:.1f} s{shown}")  # fmt: skip


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rerender(path: Path, rng: np.random.Generator) -> None:
    """New audio for a catalog file in its genre's style (genreclf.app.demo's synthesizers), same name and format."""
    from genreclf.app import demo

    t = np.arange(round(CHURN_SECONDS * demo.SR)) / demo.SR
    y = demo.GENRES[path.parent.name](rng, t)
    y = (0.3 * y / np.max(np.abs(y)) + rng.normal(0, 0.003, len(t))).astype(np.float32)
    sf.write(path, y, demo.SR)


def build(store: Store, folder: Path) -> tuple[str, Built, float]:
    """Scan the folder into a catalog version and build its dataset; (version, Built, seconds)."""
    from genreclf.datasets.build import build_dataset
    from genreclf.flows.params import DatasetParams
    from genreclf.ingest.catalog import write_catalog
    from genreclf.sources.local import scan_folder

    started = time.perf_counter()
    scan = scan_folder(folder, hash_cache=False)
    version = write_catalog(store, scan.tracks, skipped=scan.skipped)
    params = DatasetParams.small()
    built = build_dataset(store, version, params.segment_config(), params.feature_config(), shard_mb=SHARD_MB)
    return version, built, time.perf_counter() - started


def train_champion(store: Store, manifest: Manifest) -> None:
    from genreclf.flows.params import TrainParams
    from genreclf.models.runs import run_id_for
    from genreclf.models.training import fit
    from genreclf.reports import registry
    from genreclf.reports.evaluation import evaluate_run

    cfg = TrainParams.small().model_copy(update={"model": "small_cnn", "epochs": 1, "device": "cpu"}).config()
    run_id = fit(store, manifest, cfg, run_id=run_id_for(manifest.dataset_id, cfg)).run_id
    report = evaluate_run(store, run_id, manifest, baselines=False, device="cpu")
    decision = registry.challenge(store, report, manifest)
    accuracy = report["models"]["small_cnn"]["track"]["accuracy"]
    print(f"champion: run {run_id}, test accuracy per track {accuracy:.2f}, promoted: {decision.promote}")


def churn(work: Path, n_tracks: int, versions: int) -> tuple[Store, Path]:
    """Part 1: the catalog versions, the champion, gc and what follows it. Returns (store, catalog folder)."""
    from genreclf.app.demo import make_demo_catalog
    from genreclf.datasets.build import build_dataset
    from genreclf.flows.params import DatasetParams
    from genreclf.reports.predict import Predictor
    from genreclf.store.storage import Store
    from genreclf.upkeep.gc import collect
    from genreclf.upkeep.inventory import Retention
    from genreclf.upkeep.verify import verify

    print(f"== part 1: {versions} catalog versions of {n_tracks:,} tracks ({CHURN_SECONDS:g} s), "
          f"{CHANGED:.0%} of the files changed each time ==")  # fmt: skip
    log(f"synthesizing {n_tracks:,} tracks in {work}")
    folder = make_demo_catalog(work / "catalog", tracks_per_genre=n_tracks // GENRES, seconds=CHURN_SECONDS)
    files = sorted(folder.glob("*/*"))
    store = Store.open(str(work / "store"))
    pick, rng = random.Random(0), np.random.default_rng(1)
    replaced: set[str] = set()  # sha256 of every file's bytes before it was changed
    shards_before: set[str] = set()
    for v in range(1, versions + 1):
        if v > 1:
            for path in pick.sample(files, round(len(files) * CHANGED)):
                replaced.add(sha256_of(path))
                rerender(path, rng)
        version, built, seconds = build(store, folder)
        m = built.manifest
        shards = {s["key"] for s in m.shards}
        print(f"  v{v}: catalog {version}, dataset {built.dataset_id}: {len(shards)} shards, "
              f"{len(shards - shards_before)} new; built in {seconds:.1f} s")  # fmt: skip
        shards_before = shards
    train_champion(store, m)

    # What the superseded generations hold, from what was changed: the replaced bytes' audio stems, and the shards
    # the latest manifest does not name.
    latest_hashes = {sha256_of(p) for p in files}
    gone_stems = {f"audio/sha256/{h}" for h in replaced - latest_hashes}
    listing = {e.key: e.size for e in store.entries("")}
    live_shards = {s["key"] for s in m.shards}
    old_audio = {k for k in listing if k.startswith("audio/") and k.rsplit(".", 1)[0] in gone_stems}
    old_shards = {k for k in listing if k.startswith("shards/") and k not in live_shards}
    live_audio = {k for k in listing if k.startswith("audio/sha256/") and k.split("/")[2].split(".")[0]
                  in latest_hashes}  # fmt: skip
    print(f"superseded, from the changes: {len(replaced)} replaced files, {len(gone_stems)} audio stems -> "
          f"{len(old_audio)} objects, {fmt_bytes(sum(listing[k] for k in old_audio))}; {len(old_shards)} shards, "
          f"{fmt_bytes(sum(listing[k] for k in old_shards))}")  # fmt: skip

    before = usage(store)
    copy = Store.open(str(shutil.copytree(work / "store", work / "store-copy")))
    defaults = collect(copy, Retention(grace_s=0.0), apply=True)
    print("default retention (catalogs=3, runs=10) with grace 0, applied to a copy: "
          f"{len(defaults.keys):,} objects, {fmt_bytes(defaults.total_bytes)} in {defaults.seconds:.2f} s")  # fmt: skip
    print_usage({"before": before, "defaults free": listed_by_prefix(defaults), "copy after": usage(copy)})
    shutil.rmtree(work / "store-copy")

    keep = Retention(catalogs=1, runs=10, grace_s=0.0)
    dry = collect(store, keep, apply=False)
    listed = set(dry.keys)
    print(f"gc dry run, {keep}: {len(listed):,} objects, {fmt_bytes(dry.total_bytes)} in {dry.seconds:.2f} s")
    print(f"  covers all superseded audio: {'yes' if old_audio <= listed else 'no'} "
          f"({len(old_audio & listed)}/{len(old_audio)}); shards: {'yes' if old_shards <= listed else 'no'} "
          f"({len(old_shards & listed)}/{len(old_shards)})")  # fmt: skip
    live = (live_shards | live_audio | {k for k in listing if k.startswith(f"datasets/{m.dataset_id}/")}) & listed
    print(f"  lists live objects (latest shards, audio, dataset): {len(live)} {sorted(live)[:3]}")
    others = Counter(k.split("/", 1)[0] + "/" for k in listed - old_audio - old_shards)
    print(f"  lists besides them: {dict(sorted(others.items()))}")
    applied = collect(store, keep, apply=True)
    print(f"gc applied: {len(applied.keys):,} objects, {fmt_bytes(applied.total_bytes)} in {applied.seconds:.2f} s "
          f"(spared {applied.spared}); same list as the dry run: {set(applied.keys) == listed}")  # fmt: skip
    print_usage({"before": before, "gc frees": listed_by_prefix(dry), "after": usage(store)})

    print(f"verify --deep after gc: {deep_line(verify(store, deep=True))}")
    probe = files[0]
    genre, p = Predictor(store, device="cpu").predict_file(probe).top(1)[0]
    print(f"champion predicts {probe.relative_to(folder)}: {genre} ({p:.2f})")

    stamps = {e.key: e.mtime for e in store.entries("")}
    params = DatasetParams.small()
    started = time.perf_counter()
    again = build_dataset(store, "latest", params.segment_config(), params.feature_config(), shard_mb=SHARD_MB)
    seconds = time.perf_counter() - started
    written = sorted(e.key for e in store.entries("") if stamps.get(e.key) != e.mtime)
    print(f"rebuild of the latest catalog: {seconds:.1f} s, new dataset: {again.new}, same id: "
          f"{again.dataset_id == m.dataset_id}, shards computed {len(again.plan.shards) - again.shards_reused} / "
          f"reused {len(again.manifest.shards) if not again.new else again.shards_reused}; objects written: "
          f"{len(written)} {written[:5]}")  # fmt: skip
    return store, folder


def grow_and_verify(work: Path, store: Store, folder: Path, target: int) -> None:
    """Part 2: the store grown to `target` tracks, verified."""
    from genreclf.app.demo import make_demo_catalog
    from genreclf.upkeep.verify import verify

    have = len(list(folder.glob("*/*")))
    extra = max(0, target - have) // GENRES * GENRES
    print(f"\n== part 2: verify on a store of {have + extra:,} tracks ==")
    if extra:
        log(f"synthesizing {extra:,} more tracks ({VERIFY_SECONDS:g} s)")
        started = time.perf_counter()
        more = make_demo_catalog(work / "more", tracks_per_genre=extra // GENRES, seconds=VERIFY_SECONDS, seed=2)
        for p in sorted(more.glob("*/*")):
            p.rename(folder / p.parent.name / f"more-{p.name}")
        synth_s = time.perf_counter() - started
        log(f"building the catalog of {have + extra:,} tracks")
        version, built, seconds = build(store, folder)
        print(f"grown: {extra:,} tracks synthesized in {synth_s:.0f} s; catalog {version} built in {seconds:.0f} s: "
              f"dataset of {len(built.plan.tracks):,} tracks, {built.manifest.rows():,} segments, "
              f"{len(built.manifest.shards)} shards ({built.shards_reused} reused)")  # fmt: skip
    objects, size = total(usage(store))
    print(f"store: {objects:,} objects, {fmt_bytes(size)}")
    runs = [verify(store) for _ in range(3)]
    for i, r in enumerate(runs, 1):
        print(f"  verify #{i}: {r.seconds:.2f} s, {len(r.problems)} problems, {len(r.orphans)} orphans, "
              f"checked {r.checked}")  # fmt: skip
    print(f"verify (no --deep), median of 3: {statistics.median(r.seconds for r in runs):.2f} s")
    deep = verify(store, deep=True)
    print(f"verify --deep: {deep_line(deep)}, {deep.bytes_read / 2**20 / deep.seconds:.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tracks", type=int, default=1000, help="tracks of the churned catalog (default 1000)")
    parser.add_argument("--versions", type=int, default=5, help="catalog versions (default 5)")
    parser.add_argument("--verify-tracks", type=int, default=10_000, help="tracks of the verified store; 0: skip")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    if args.tracks < 3 * GENRES or args.versions < 2:
        parser.error(f"--tracks must be at least {3 * GENRES} and --versions at least 2")

    work = args.work or Path(tempfile.mkdtemp(prefix="genreclf-upkeep-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        parser.error(f"{work} is not empty: give an empty or new folder")
    os.environ["GENRECLF_CACHE_DIR"] = str(work / "cache")  # scratch stays in the work folder
    started = time.perf_counter()
    print(f"load average at start: {loadavg()} ({os.cpu_count()} cores, shared with other work)")
    try:
        store, folder = churn(work, args.tracks, args.versions)
        if args.verify_tracks:
            grow_and_verify(work, store, folder, args.verify_tracks)
    finally:
        print(f"\nload average at end: {loadavg()}; total wall {time.perf_counter() - started:.0f} s")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
