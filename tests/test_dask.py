"""build-dataset on a real Dask cluster of two worker processes: the same dataset as on threads, the batch tasks on
the workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from genreclf.app.demo import make_demo_catalog
from genreclf.datasets.manifest import Manifest, read_manifest
from genreclf.flows.build_dataset import build_dataset
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.e2e, pytest.mark.slow]

# 3 s tracks in 1 s windows of 32 mels; shards of ~3 tracks, so there are several shards and acquire batches.
PARAMS = DatasetParams(window_s=1.0, hop_s=1.0, n_mels=32, n_fft=512, hop_length=256, shard_mb=0.05)
# Task -> (prefix of its Dask keys, prefix of its Prefect task run names). A Dask key is "<function name>-<token>":
# prefect-dask submits each task run as a wrapper named after the task's function.
PREFIXES = {"acquire-batch": ("acquire_batch-", "acquire-batch-"), "log-mel-shard": ("build_shard-", "shard-")}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes of one thread each, on loopback. They reach the Prefect server without being told: the
    task runner ships the flow's Prefect settings (API URL included) with every task run (prefect.context
    .serialize_context), and they inherit this process's environment (GENRECLF_CACHE_DIR, PREFECT_HOME)."""
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.close()


def build(root: Path, store_url: str) -> tuple[Manifest, UUID]:
    """Scan `root` into a catalog version (as the scan-folder task does), build it; the manifest and flow run id."""
    scan = scan_folder(str(root))
    version = catalog.write_catalog(Store.open(store_url), scan.tracks, skipped=scan.skipped)
    state = build_dataset(version, params=PARAMS, storage_url=store_url, return_state=True)
    dataset_id = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return read_manifest(Store.open(store_url), dataset_id), flow_run_id


def task_runs_of_subflows(flow_run_id: UUID) -> dict[str, list[str]]:
    """Task name -> the states of its task runs, in the subflows of a flow run."""
    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[f.id for f in subflows]))
        )
    out: dict[str, list[str]] = {}
    for run in runs:
        name = next((n for n, (_, prefix) in PREFIXES.items() if run.name.startswith(prefix)), run.name)
        out.setdefault(name, []).append(run.state.type.value if run.state else "NONE")
    return out


def test_build_dataset_on_two_dask_worker_processes(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=3.0)
    monkeypatch.delenv("GENRECLF_DASK_ADDRESS", raising=False)
    on_threads, _ = build(root, str(tmp_path / "threads"))

    monkeypatch.setenv("GENRECLF_DASK_ADDRESS", cluster.scheduler_address)
    with Client(cluster.scheduler_address) as client:
        worker_pids = client.run(os.getpid)
        with get_task_stream(client) as stream:
            on_dask, flow_run_id = build(root, str(tmp_path / "dask"))

    # (a) Content identity does not depend on the runner: same dataset id, same shards, same bytes counted.
    assert on_dask.dataset_id == on_threads.dataset_id
    assert [s["key"] for s in on_dask.shards] == [s["key"] for s in on_threads.shards]
    assert on_dask.shards == on_threads.shards and len(on_dask.shards) >= 3
    assert on_dask.rows() == on_threads.rows() == 12 * 3

    # (b) Every acquire-batch and log-mel-shard task run ran as a Dask task on the cluster's two worker processes
    # (not in this process), and the Prefect server recorded each of them as completed.
    assert len(set(worker_pids.values())) == 2 and os.getpid() not in worker_pids.values()
    ran = {name: [r for r in stream.data if r["key"].startswith(p)] for name, (p, _) in PREFIXES.items()}
    prefect_runs = task_runs_of_subflows(flow_run_id)
    for name, records in ran.items():
        assert records and all(r["status"] == "OK" for r in records), (name, records)
        assert {r["worker"] for r in records} <= set(worker_pids), (name, records)
        assert prefect_runs.get(name) == ["COMPLETED"] * len(records), (name, prefect_runs)
    assert len(ran["log-mel-shard"]) == len(on_dask.shards)
    all_records = [r for records in ran.values() for r in records]
    assert {r["worker"] for r in all_records} == set(worker_pids)  # both workers took a share
