"""build-dataset on a Dask LocalCluster of 1 and of 2 worker processes (and on threads, for reference): wall times.

    .venv/bin/python benchmarks/dask_scaling.py [--tracks 80] [--seconds 30] [--shard-mb 2] [--repeat 2]

Synthesizes a folder catalog (genreclf.app.demo: `--tracks` tracks of `--seconds` s, 4 genres), scans it once, and
builds it with the default dataset parameters (30 s windows, 128 mels, n_fft 2048) but `--shard-mb` MB shards, so
that there are enough shards to share. The flow runs in this process against a real Prefect server
(`prefect server start` on a free loopback port, SQLite in a temporary PREFECT_HOME, stopped at the end). Each run
gets a fresh store and, for Dask, a fresh `LocalCluster(n_workers=N, threads_per_worker=1, processes=True)` on
loopback with OMP_NUM_THREADS=1 in the workers; the workers import genreclf before the clock starts (a long-lived
cluster would have), so a run's wall time is the build_dataset call alone. Configurations are interleaved: one
uncounted warm-up round of each, then `--repeat` rounds of each. Every run must produce the same dataset id.
Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scale import prefect_server  # noqa: E402  (benchmarks/scale.py, beside this script)

CONFIGS = ("dask-1", "dask-2", "threads")


def log(message: str) -> None:
    print(f"[dask_scaling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warm_worker() -> int:
    """Run on each worker before the clock starts: the imports a task run needs."""
    from genreclf.datasets.features import FeatureConfig, mel_filters

    mel_filters(FeatureConfig())  # imports librosa

    return os.getpid()


def run_once(config: str, store_url: str, scan: Any, params: Any) -> tuple[float, float, float, str]:
    """One build on a fresh store: seconds to start and warm the cluster, of the build, of the Dask tasks' compute
    summed over the workers (0 on threads), and the dataset id."""
    from distributed import Client, LocalCluster, get_task_stream

    from genreclf.flows.build_dataset import build_dataset
    from genreclf.ingest import catalog
    from genreclf.store.storage import Store

    version = catalog.write_catalog(Store.open(store_url), scan.tracks, skipped=scan.skipped)
    with contextlib.ExitStack() as stack:
        setup_s, stream = 0.0, None
        if config.startswith("dask-"):
            t0 = time.perf_counter()
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=int(config.split("-")[1]),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    env={"OMP_NUM_THREADS": "1"},
                    silence_logs=40,
                )
            )
            client = stack.enter_context(Client(cluster))
            client.run(warm_worker)
            setup_s = time.perf_counter() - t0
            stream = stack.enter_context(get_task_stream(client))
            os.environ["GENRECLF_DASK_ADDRESS"] = cluster.scheduler_address
        else:
            os.environ.pop("GENRECLF_DASK_ADDRESS", None)
        try:
            t0 = time.perf_counter()
            dataset_id = build_dataset(version, params=params, storage_url=store_url)
            build_s = time.perf_counter() - t0
        finally:
            os.environ.pop("GENRECLF_DASK_ADDRESS", None)
    busy_s = sum(
        ss["stop"] - ss["start"] for r in (stream.data if stream else []) for ss in r["startstops"]
        if ss["action"] == "compute"
    )  # fmt: skip
    return setup_s, build_s, busy_s, dataset_id


def drain_prefect() -> None:
    """Send what this process's Prefect log and event workers hold, while the server is still up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=80, help="tracks in the catalog (a multiple of 4)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each track")
    p.add_argument("--shard-mb", type=float, default=2.0, help="target shard size (default params: 128)")
    p.add_argument("--repeat", type=int, default=2, help="counted rounds of each configuration")
    p.add_argument("--no-warmup", action="store_true", help="skip the uncounted warm-up round")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="genreclf-dask-scaling-"))
    home = tmp / "prefect"
    home.mkdir()
    os.environ.update(
        PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore", GENRECLF_CACHE_DIR=str(tmp / "cache"),
    )  # fmt: skip
    try:
        with prefect_server(home) as server:
            os.environ["PREFECT_API_URL"] = server.url  # before Prefect is imported (run_once imports it)
            from genreclf.app.demo import make_demo_catalog
            from genreclf.flows.params import DatasetParams
            from genreclf.sources.local import scan_folder

            t0 = time.perf_counter()
            root = make_demo_catalog(tmp / "catalog", tracks_per_genre=args.tracks // 4, seconds=args.seconds)
            scan = scan_folder(str(root))
            log(f"synthesized and scanned {len(scan.tracks)} tracks of {args.seconds:g} s "
                f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
            params = DatasetParams(shard_mb=args.shard_mb)

            rounds = [("warm-up", c) for c in ([] if args.no_warmup else CONFIGS)]
            rounds += [(f"round {r + 1}", c) for r in range(args.repeat) for c in CONFIGS]
            walls: dict[str, list[float]] = {c: [] for c in CONFIGS}
            setups: dict[str, list[float]] = {c: [] for c in CONFIGS}
            busy: dict[str, list[float]] = {c: [] for c in CONFIGS}
            ids = set()
            loads = [os.getloadavg()[0]]
            for n, (label, config) in enumerate(rounds):
                store_url = str(tmp / f"store-{n}")
                setup_s, build_s, busy_s, dataset_id = run_once(config, store_url, scan, params)
                shutil.rmtree(store_url, ignore_errors=True)
                ids.add(dataset_id)
                loads.append(os.getloadavg()[0])
                log(f"{label}: {config}: build {build_s:.1f} s (Dask tasks computing {busy_s:.1f} s; cluster start "
                    f"+ warm {setup_s:.1f} s), dataset {dataset_id}, load {loads[-1]:.2f}")  # fmt: skip
                if label != "warm-up":
                    walls[config].append(build_s)
                    setups[config].append(setup_s)
                    busy[config].append(busy_s)
            drain_prefect()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if len(ids) != 1:
        raise SystemExit(f"the runs built different datasets: {sorted(ids)}")
    print(f"build-dataset of {len(scan.tracks)} tracks x {args.seconds:g} s (30 s windows, 128 mels, "
          f"{args.shard_mb:g} MB shards), dataset {ids.pop()} in every run")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, shared with other work (1-min load average {min(loads):.2f} to "
          f"{max(loads):.2f} during the runs); the flow, the Prefect server and the Dask scheduler run on the same "
          "cores as the workers")  # fmt: skip
    print(f"{'configuration':<42} {'runs (s)':<22} {'min (s)':>8} {'median (s)':>11} {'task compute (s)':>17}")
    names = {
        "dask-1": "Dask LocalCluster, 1 worker x 1 thread",
        "dask-2": "Dask LocalCluster, 2 workers x 1 thread",
        "threads": f"ThreadPoolTaskRunner ({os.cpu_count()} threads)",
    }
    for c in CONFIGS:
        runs = ", ".join(f"{w:.1f}" for w in walls[c])
        compute = f"{statistics.median(busy[c]):.1f}" if c.startswith("dask") else "-"
        print(f"{names[c]:<42} {runs:<22} {min(walls[c]):>8.1f} {statistics.median(walls[c]):>11.1f} {compute:>17}")
    one, two = walls["dask-1"], walls["dask-2"]
    print(f"speed-up 1 -> 2 Dask workers: {min(one) / min(two):.2f}x on the minimum, "
          f"{statistics.median(one) / statistics.median(two):.2f}x on the median")  # fmt: skip
    setup = ", ".join(f"{c} {statistics.median(setups[c]):.1f} s" for c in CONFIGS if c.startswith("dask"))
    print(f"cluster start + worker imports (median), not counted above: {setup}")
    print("task compute: the Dask tasks' compute time summed over workers (median run); the rest of a run is the")
    print("flow's own work in this process (catalog, plan, manifest, Prefect API calls) and waiting")


if __name__ == "__main__":
    main()
