"""build-dataset as the catalog grows: the Prefect flow beside the same library calls, on the same tracks.

    .venv/bin/python benchmarks/scale.py [--sizes 20,320,1280] [--large] [--repeat 1] [--seconds 6]

For each size N it synthesizes a folder catalog of N tracks (4 genres, `--seconds` each, genreclf.app.demo), scans it
into a catalog version, and builds the dataset (DatasetParams.small) two ways, each in a fresh process on a fresh
store, one after the other:

  flow      genreclf.flows.build_dataset.build_dataset(version, params=DatasetParams.small(), storage_url=STORE)
            against a real Prefect server (`prefect server start` on a free loopback port, SQLite in a temporary
            PREFECT_HOME), started once for the whole benchmark and stopped at the end;
  library   genreclf.datasets.build.build_dataset, the same stages with no Prefect: acquisition in batches, the
            plan, the shards, the manifest, on thread pools of os.cpu_count() workers as the flow's task runners, the
            decoded samples handed from acquisition to the shards as the flow's tasks do (DecodedAudio).

Per size it prints the wall time of each process (interpreter start to exit), the flow's wall over the library's,
the extra CPU time of the flow process over the library process, the server's CPU time from the flow's start until
the server has recorded everything the run sent, and what the run left in the server: task runs, events and the
growth of its database (used pages, read-only). Both ways must produce the same dataset id. One warm-up run of
each way on a 12-track catalog comes first and is not counted (`--no-warmup` skips it). Progress goes to
stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = (20, 320, 1280)
LARGE = 10_000
GENRES = 4  # genreclf.app.demo's
WARMUP = 3 * GENRES  # tracks of the uncounted warm-up run of each way
SERVER_START_TIMEOUT_S = 120.0
SETTLE_QUIET_S = 7.0  # longer than the server's event persister flush interval (5 s by default)
SETTLE_TIMEOUT_S = 180.0
# What the flow leaves in the server's database, counted before and after each run.
TABLES = ("flow_run", "task_run", "events", "log", "artifact", "flow_run_state", "task_run_state")


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- the two ways, each run in a child process --------------------------------------------------------------------
def build_with_flow(store_url: str, version: str) -> str:
    from genreclf.flows.build_dataset import build_dataset
    from genreclf.flows.params import DatasetParams

    return build_dataset(version, params=DatasetParams.small(), storage_url=store_url)


def build_with_library(store_url: str, version: str) -> str:
    """What flows/build_dataset.build_dataset does for a catalog version without a split file, without Prefect."""
    from genreclf.datasets.build import build_dataset
    from genreclf.flows.params import DatasetParams  # pydantic only: `flows` itself never imports Prefect
    from genreclf.store.storage import Store

    params = DatasetParams.small()
    built = build_dataset(Store.open(store_url), version, params.segment_config(), params.feature_config(),
                          split_seed=params.split_seed, shard_mb=params.shard_mb)  # fmt: skip
    built.manifest.counts()  # for the flow's artifact
    return built.dataset_id


def child(way: str, store_url: str, version: str, result_path: Path) -> None:
    # Imported before the clock starts, so `call` is the build alone; the process's wall and CPU include them.
    import genreclf.flows.params  # both: DatasetParams, genreclf.models.training and the models

    if way == "flow":
        import genreclf.flows.build_dataset
    else:
        import genreclf.acquisition.acquire
        import genreclf.datasets.dataset  # noqa: F401
    from genreclf.datasets.manifest import read_manifest
    from genreclf.store.storage import Store

    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    start = time.perf_counter()
    build = build_with_flow if way == "flow" else build_with_library
    dataset_id = build(store_url, version)
    result = {
        "dataset_id": dataset_id,
        "call_s": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "imports_mb": imports_mb,
        "shards": len(read_manifest(Store.open(store_url), dataset_id).shards),
    }
    result_path.write_text(json.dumps(result))


# ---- the Prefect server and what it recorded ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path
    log_path: Path

    @property
    def db(self) -> Path:
        return self.home / "prefect.db"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[Server]:
    """`prefect server start` on a free loopback port with PREFECT_HOME `home`; stopped (by its PID) on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=home)  # fmt: skip
    server = Server(proc, url, home, log_path)
    try:
        start = time.monotonic()
        log(f"starting the Prefect server (pid {proc.pid}) at {url}")
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() - start > SERVER_START_TIMEOUT_S:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Prefect server did not answer {url}/health:\n{tail}")
            time.sleep(0.5)
        log(f"the Prefect server answered after {time.monotonic() - start:.0f} s")
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log(f"stopped the Prefect server (pid {proc.pid})")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` and of its direct children (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p: str) -> list[str] | None:
        try:
            text = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on; the name may hold spaces

    total = 0.0
    own = stat(str(pid))
    if own is not None:
        total += (int(own[11]) + int(own[12])) / tick  # utime, stime
    for p in os.listdir("/proc"):
        if p.isdigit() and p != str(pid) and (f := stat(p)) is not None and f[1] == str(pid):
            total += (int(f[11]) + int(f[12])) / tick
    return total


def db_snapshot(db: Path) -> dict[str, int]:
    """Row counts of TABLES and the bytes of the database's used pages (WAL included), read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        snap = {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
        pages = int(con.execute("PRAGMA page_count").fetchone()[0])
        free = int(con.execute("PRAGMA freelist_count").fetchone()[0])
        snap["bytes"] = (pages - free) * int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()
    return snap


def settled_snapshot(db: Path) -> dict[str, int]:
    """A snapshot once the counts stop changing for SETTLE_QUIET_S: the server records task runs, events and logs
    from events the client sends, in batches, after the flow's process has exited."""
    start = time.monotonic()
    last, since = db_snapshot(db), time.monotonic()
    while time.monotonic() - since < SETTLE_QUIET_S:
        if time.monotonic() - start > SETTLE_TIMEOUT_S:
            log(f"the server's database still changes after {SETTLE_TIMEOUT_S:.0f} s; counting what is there")
            break
        time.sleep(1.0)
        now = db_snapshot(db)
        if {k: v for k, v in now.items() if k != "bytes"} != {k: v for k, v in last.items() if k != "bytes"}:
            last, since = now, time.monotonic()
        else:
            last = now
    return last


# ---- one measured run ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    wall_s: float
    cpu_s: float
    call_s: float
    dataset_id: str
    server_cpu_s: float = 0.0
    grew: dict[str, int] | None = None  # what the server's database gained
    peak_mb: float = float("nan")  # the child process's peak resident memory
    imports_mb: float = float("nan")  # its peak before the build call: the interpreter and the imports
    shards: int = 0  # in the dataset built
    error: str | None = None  # the process failed: its last error line


def error_line(log_text: str) -> str:
    """The last line of a failed child's output that names an error, cut short (Prefect logs whole parameters)."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error" in ln or "Exception" in ln] or lines or ["(no output)"]
    line = named[-1]
    if msg := re.search(r"'msg': '([^']*)'", line):  # a 422 from the server: its message, not the whole input
        line = f"{line[:120]} ... {msg.group(1)}"
    return line if len(line) <= 400 else line[:400] + " ..."


def run_child(
    way: str, version: str, store: Path, env: dict[str, str], scratch: Path
) -> tuple[float, float, dict[str, Any]]:
    result_path, log_path = scratch / f"{way}.json", scratch / f"{way}.log"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", way, "--store", str(store),
           "--version", version, "--result", str(result_path)]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log_path.open("wb") as out:
        code = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0 or not result_path.exists():
        text = log_path.read_text(errors="replace")
        kept = scratch / f"failed-{way}-{time.strftime('%H%M%S')}.log"
        log(f"the {way} run exited with {code}; its output: {kept} (removed at the end)")
        log("\n".join(ln[:400] for ln in text.splitlines()[-40:]))
        log_path.replace(kept)
        return wall, cpu, {"dataset_id": "", "call_s": float("nan"), "error": f"exit {code}: {error_line(text)}"}
    return wall, cpu, json.loads(result_path.read_text())


def measure(way: str, n: int, catalog_dir: Path, server: Server, env: dict[str, str], scratch: Path) -> Run:
    from genreclf.ingest import catalog
    from genreclf.sources.local import scan_folder
    from genreclf.store.storage import Store

    store_dir = scratch / f"store-{way}-{n}"
    shutil.rmtree(store_dir, ignore_errors=True)
    # What tasks/catalog.py's scan_folder_catalog does, into a fresh store (no hash cache: nothing outside tmp).
    scan = scan_folder(catalog_dir, hash_cache=None)
    version = catalog.write_catalog(Store.open(str(store_dir)), scan.tracks, skipped=scan.skipped)
    before: dict[str, int] = {}
    server_cpu = 0.0
    try:
        if way == "flow":
            before = settled_snapshot(server.db)
            server_cpu = process_cpu_s(server.proc.pid)
        wall, cpu, result = run_child(way, version, store_dir, env, scratch)
        run = Run(wall, cpu, result["call_s"], result["dataset_id"], error=result.get("error"),
                  peak_mb=result.get("peak_mb", float("nan")), imports_mb=result.get("imports_mb", float("nan")),
                  shards=result.get("shards", 0))  # fmt: skip
        if way == "flow":
            after = settled_snapshot(server.db)
            run.server_cpu_s = process_cpu_s(server.proc.pid) - server_cpu
            run.grew = {k: after[k] - before[k] for k in after}
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    return run


# ---- the benchmark ------------------------------------------------------------------------------------------------
def make_catalogs(root: Path, sizes: list[int], seconds: float) -> dict[int, Path]:
    """One synthesized catalog of the largest size; each size a folder of hard links to its first N / 4 per genre."""
    from genreclf.app.demo import make_demo_catalog

    audio = make_demo_catalog(root / "audio", tracks_per_genre=max(sizes) // GENRES, seconds=seconds)
    out = {}
    for n in sizes:
        folder = root / f"catalog-{n}"
        for genre_dir in sorted(p for p in audio.iterdir() if p.is_dir()):
            (folder / genre_dir.name).mkdir(parents=True)
            for f in sorted(genre_dir.iterdir())[: n // GENRES]:
                os.link(f, folder / genre_dir.name / f.name)
        out[n] = folder
    return out


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def print_table(results: dict[int, dict[str, list[Run]]], *, cores: int, repeat: int, seconds: float) -> None:
    print(f"build-dataset (DatasetParams.small), {seconds:g}-second synthetic tracks, 4 genres; {cores} cores "
          f"(os.cpu_count()), machine shared with other work")  # fmt: skip
    print(
        "flow: genreclf.flows.build_dataset.build_dataset in a fresh process against a local Prefect server (SQLite);"
    )
    print("library: the same library calls in a fresh process, thread pools of os.cpu_count() workers.")
    print("wall and CPU: the whole child process (interpreter start to exit); call: the build call inside it.")
    print("extra CPU = flow process CPU - library process CPU; server CPU: the server's, until it recorded the run.")
    print("task runs, events, DB growth: what the flow run left in the server's database (used pages).")
    what = "one measured run per size" if repeat == 1 else f"the median of {repeat} measured runs per size"
    print(f"Each figure is {what} (failed runs left out); no extrapolation.")
    print()
    head = (
        f"{'tracks':>7} | {'flow wall':>9} | {'lib wall':>9} | {'flow/lib':>8} | {'flow call':>9} | {'lib call':>9} | "
        f"{'extra CPU':>9} | {'server CPU':>10} | {'task runs':>9} | {'events':>7} | {'DB growth':>9}"
    )
    print(head)
    print("-" * len(head))

    def med(values: list[float], fmt: str, width: int, unit: str = "") -> str:
        text = format(statistics.median(values), fmt) + unit if values else "failed"
        return text.rjust(width)

    failures: list[str] = []
    partial = False
    for n, by_way in results.items():
        flow = [r for r in by_way["flow"] if not r.error]
        lib = [r for r in by_way["library"] if not r.error]
        failures += [
            f"  {n:>6,} tracks, {way}, after {r.wall_s:.1f} s: {r.error}"
            for way, runs in by_way.items()
            for r in runs
            if r.error
        ]
        # What a failed flow run left in the server up to its failure, marked *, when no run of this size succeeded.
        counted = flow or by_way["flow"]
        mark = "" if flow else "*"
        partial = partial or not flow
        grew = [r.grew or {} for r in counted]
        both = bool(flow and lib)
        fw = statistics.median(r.wall_s for r in flow) if flow else 0.0
        lw = statistics.median(r.wall_s for r in lib) if lib else 0.0
        extra = statistics.median(r.cpu_s for r in flow) - statistics.median(r.cpu_s for r in lib) if both else 0.0
        print(
            f"{n:>7,} | {med([r.wall_s for r in flow], '.1f', 9, ' s')}"
            f" | {med([r.wall_s for r in lib], '.1f', 9, ' s')}"
            + (f" | {fw / lw:>7.2f}x" if both else f" | {'-':>8}")
            + f" | {med([r.call_s for r in flow], '.1f', 9, ' s')} | {med([r.call_s for r in lib], '.1f', 9, ' s')}"
            + (f" | {extra:>7.1f} s" if both else f" | {'-':>9}")
            + f" | {med([r.server_cpu_s for r in counted], '.1f', 10, ' s' + mark)}"
            f" | {med([g.get('task_run', 0) for g in grew], ',.0f', 9, mark)}"
            f" | {med([g.get('events', 0) for g in grew], ',.0f', 7, mark)}"
            f" | {(fmt_bytes(statistics.median(g.get('bytes', 0) for g in grew)) + mark) if grew else 'failed':>9}"
        )
    if partial:
        print("* the flow run failed: what it cost and left in the server up to its failure")
    print()
    print("per size, flow process CPU / library process CPU, peak memory (RSS) of each process (in brackets: above "
          "its peak after the imports, before the build), the shards built (at most os.cpu_count() are built at "
          "once), and what else the flow run left in the server:")  # fmt: skip
    for n, by_way in results.items():
        flow = [r for r in by_way["flow"] if not r.error]
        lib = [r for r in by_way["library"] if not r.error]
        counted = flow or by_way["flow"]
        mark = "" if flow else "*"
        grew = [r.grew or {} for r in counted]
        print(
            f"  {n:>6,} tracks: CPU {med([r.cpu_s for r in counted], '.1f', 0, ' s' + mark)} / "
            f"{med([r.cpu_s for r in lib], '.1f', 0, ' s')}; "
            f"peak {med([r.peak_mb for r in flow], '.0f', 0, ' MB')} "
            f"({med([r.peak_mb - r.imports_mb for r in flow], '+.0f', 0, ' MB')}) / "
            f"{med([r.peak_mb for r in lib], '.0f', 0, ' MB')} "
            f"({med([r.peak_mb - r.imports_mb for r in lib], '+.0f', 0, ' MB')}); "
            f"shards {med([r.shards for r in flow or lib], '.0f', 0)}; "
            f"flow runs {med([g.get('flow_run', 0) for g in grew], '.0f', 0, mark)}, "
            f"log rows {med([g.get('log', 0) for g in grew], ',.0f', 0, mark)}, "
            f"artifacts {med([g.get('artifact', 0) for g in grew], '.0f', 0, mark)}"
        )
    if failures:
        print()
        print("failed runs:")
        print("\n".join(failures))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes as numbers, e.g. 20,320") from e
    bad = [n for n in sizes if n < 3 * GENRES or n % GENRES]
    if not sizes or bad:
        raise argparse.ArgumentTypeError(f"sizes must be multiples of {GENRES}, at least {3 * GENRES}: {bad or text}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=list(SIZES), help="numbers of tracks (default 20,320,1280)"
    )
    parser.add_argument("--large", action="store_true", help=f"add {LARGE:,} tracks")
    parser.add_argument("--repeat", type=int, default=1, help="measured runs of each way per size (median shown)")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each synthesized track")
    parser.add_argument("--no-warmup", action="store_true", help="skip the uncounted warm-up run of each way")
    parser.add_argument("--child", choices=("flow", "library"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.store, args.version, args.result)
        return
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    sizes = sorted(set(args.sizes + ([LARGE] if args.large else [])))
    cores = os.cpu_count() or 1
    results: dict[int, dict[str, list[Run]]] = {n: {"flow": [], "library": []} for n in sizes}
    with tempfile.TemporaryDirectory(prefix="genreclf-scale-") as tmp_name:
        tmp = Path(tmp_name)
        log(f"synthesizing {max(sizes):,} tracks of {args.seconds:g} s in {tmp}")
        catalogs = make_catalogs(tmp, sorted({*sizes, WARMUP}), args.seconds)
        with prefect_server(tmp / "prefect") as server:
            env = {
                **os.environ,
                "PREFECT_HOME": str(server.home),
                "PREFECT_API_URL": server.url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "GENRECLF_CACHE_DIR": str(tmp / "cache"),  # downloads scratch and hash cache stay in tmp
            }
            plan: list[tuple[int, str, bool]] = []
            if not args.no_warmup:
                plan += [(WARMUP, "flow", False), (WARMUP, "library", False)]
            for rep in range(args.repeat):
                for n in sizes:  # interleaved, and the order flipped every repeat
                    ways = ("flow", "library") if rep % 2 == 0 else ("library", "flow")
                    plan += [(n, way, True) for way in ways]
            for i, (n, way, counted) in enumerate(plan, 1):
                log(f"[{i}/{len(plan)}] {way}, {n:,} tracks{'' if counted else ' (warm-up, not counted)'} ...")
                run = measure(way, n, catalogs[n], server, env, tmp)
                grew = run.grew or {}
                if run.error:
                    log(f"[{i}/{len(plan)}] {way}, {n:,} tracks FAILED after {run.wall_s:.1f} s: {run.error}")
                log(
                    f"[{i}/{len(plan)}] {way}, {n:,} tracks: wall {run.wall_s:.1f} s (call {run.call_s:.1f} s), "
                    f"CPU {run.cpu_s:.1f} s"
                    + (f", server CPU {run.server_cpu_s:.1f} s, task runs {grew.get('task_run', 0):,}, events "
                       f"{grew.get('events', 0):,}, DB +{fmt_bytes(grew.get('bytes', 0))}" if way == "flow" else "")
                )  # fmt: skip
                if counted:
                    results[n][way].append(run)
            for n, by_way in results.items():
                ids = {r.dataset_id for runs in by_way.values() for r in runs if not r.error}
                if len(ids) != 1:
                    log(f"WARNING: {n} tracks: the two ways built different datasets: {sorted(ids)}")
    print_table(results, cores=cores, repeat=args.repeat, seconds=args.seconds)


if __name__ == "__main__":
    main()
