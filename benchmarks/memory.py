"""Peak memory of a dataset build as the catalog grows, phase by phase: where the memory goes, and what grows.

    .venv/bin/python benchmarks/memory.py [--sizes 1280,6000,10000] [--seconds 6]

For each size N it synthesizes a folder catalog of N tracks (4 genres, `--seconds` each, as benchmarks/scale.py),
scans it into a catalog version and builds the dataset (DatasetParams.small) with the library calls build-dataset
makes (scale.py's `build_with_library`: thread pools of os.cpu_count() workers, decoded samples handed from
acquisition to the shards), in a fresh process on a fresh store. In that process a thread samples the resident
memory (RSS) every 20 ms and keeps the peak of each phase:

  imports   the interpreter, torch, pyarrow and genreclf, before the build;
  acquire   decoding every track into the store (the handoff of decoded samples fills up to HANDOFF_BYTES);
  plan      splits and shard plan;
  shards    log-mels and Parquet shards, at most os.cpu_count() shards at once;
  finish    the manifest.

Figures are measured, one run per size; nothing is extrapolated. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import scale  # noqa: E402  (benchmarks/scale.py: the catalogs and the library build)

PHASES = ("imports", "acquire", "plan", "shards", "finish")
SAMPLE_S = 0.02


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PhasePeaks:
    """The peak RSS of each phase, sampled by a daemon thread; `enter` starts the next phase."""

    def __init__(self) -> None:
        self.phase = "imports"
        self.peaks: dict[str, float] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.note()
            time.sleep(SAMPLE_S)

    def note(self) -> None:
        now = rss_mb()
        with self.lock:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), now)

    def enter(self, phase: str) -> None:
        self.note()
        with self.lock:
            if PHASES.index(phase) > PHASES.index(self.phase):
                self.phase = phase
        self.note()


def child(store_url: str, version: str, result_path: Path) -> None:
    """Build the dataset with the library calls, marking each phase as the build reaches it."""
    peaks = PhasePeaks()
    import genreclf.flows.params  # noqa: F401  (as scale.py's child: imported before the build)
    from genreclf.datasets import dataset
    from genreclf.datasets.manifest import read_manifest
    from genreclf.store.storage import Store

    def marking(phase: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            peaks.enter(phase)
            return fn(*args, **kwargs)

        return wrapped

    dataset.plan_dataset = marking("plan", dataset.plan_dataset)
    dataset.build_shard = marking("shards", dataset.build_shard)
    dataset.finish_dataset = marking("finish", dataset.finish_dataset)
    peaks.enter("acquire")
    dataset_id = scale.build_with_library(store_url, version)
    peaks.note()
    shards = len(read_manifest(Store.open(store_url), dataset_id).shards)
    result_path.write_text(json.dumps({"peaks": peaks.peaks, "shards": shards, "dataset_id": dataset_id}))


def measure(n: int, folder: Path, tmp: Path) -> dict[str, Any]:
    from genreclf.ingest import catalog
    from genreclf.sources.local import scan_folder
    from genreclf.store.storage import Store

    store_dir, result = tmp / f"store-{n}", tmp / f"result-{n}.json"
    scan = scan_folder(folder, hash_cache=None)
    version = catalog.write_catalog(Store.open(str(store_dir)), scan.tracks, skipped=scan.skipped)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--store", str(store_dir), "--version", version,
           "--result", str(result)]  # fmt: skip
    env = {**os.environ, "GENRECLF_CACHE_DIR": str(tmp / "cache")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    shutil.rmtree(store_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{n} tracks: the build failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(result.read_text()), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=scale.parse_sizes, default=[1280, 6000, 10_000], help="numbers of tracks")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each synthesized track")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.store, args.version, args.result)
        return
    sizes = sorted(set(args.sizes))
    rows = []
    with tempfile.TemporaryDirectory(prefix="genreclf-memory-") as tmp_name:
        tmp = Path(tmp_name)
        scale.log(f"synthesizing {max(sizes):,} tracks of {args.seconds:g} s in {tmp}")
        catalogs = scale.make_catalogs(tmp, sizes, args.seconds)
        for n in sizes:
            scale.log(f"{n:,} tracks ...")
            rows.append((n, measure(n, catalogs[n], tmp)))
            scale.log(f"{n:,} tracks: {rows[-1][1]['wall_s']:.1f} s")
    cores = os.cpu_count() or 1
    print(f"build-dataset's library calls (DatasetParams.small), {args.seconds:g}-second synthetic tracks; {cores} "
          f"cores, so at most {cores} shards at once. Peak RSS per phase, one run per size, MB:")  # fmt: skip
    head = f"{'tracks':>7} | {'shards':>6} | " + " | ".join(f"{p:>7}" for p in PHASES) + " | peak above imports"
    print(head)
    print("-" * len(head))
    for n, r in rows:
        peaks = r["peaks"]
        top = max(peaks.values())
        cells = " | ".join(f"{peaks.get(p, float('nan')):7.0f}" for p in PHASES)
        print(f"{n:>7,} | {r['shards']:>6} | {cells} | {top - peaks['imports']:+.0f}")


if __name__ == "__main__":
    main()
