"""Deployments on a real Prefect server and process worker (started by infra/local_stack.py), as a user runs them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreclf.ingest.catalog import read_catalog
from genreclf.store.storage import Store
from infra.local_stack import LocalStack
from tests.s3server import free_ports
from tests.spotify_standin import SpotifyStandin
from tests.spotify_world import CLIENT_ID, CLIENT_SECRET, EDITORIAL, ROCK_1, populate, write_playlists_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def standin() -> Iterator[SpotifyStandin]:
    api = SpotifyStandin(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    populate(api)
    with api:
        yield api


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, standin: SpotifyStandin) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("stack")
    worker_env = {
        "GENRECLF_STORAGE_URL": str(state / "store"),
        "GENRECLF_CACHE_DIR": str(state / "cache"),
        "GENRECLF_SPOTIFY_API_URL": standin.api_url,
        "GENRECLF_SPOTIFY_TOKEN_URL": standin.token_url,
        "SPOTIPY_CLIENT_ID": CLIENT_ID,
        "SPOTIPY_CLIENT_SECRET": CLIENT_SECRET,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    stack = LocalStack(dir=state, port=free_ports(1)[0], worker_env=worker_env, project=ROOT)
    try:
        stack.up(gpu_worker=False)
        yield stack
    finally:
        stack.down()


def run_deployment(stack: LocalStack, name: str, *params: str) -> str:
    args = [arg for p in params for arg in ("--param", p)]
    proc = stack.prefect("deployment", "run", name, *args, "--watch", "--watch-interval", "1",
                         "--watch-timeout", "300", check=False, timeout=330)  # fmt: skip
    assert proc.returncode == 0 and "Completed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_ingest_spotify_deployment_crawls_then_skips_unchanged_playlists(
    stack: LocalStack, standin: SpotifyStandin, tmp_path: Path
) -> None:
    deployed = stack.prefect("deploy", "--name", "ingest-spotify", check=False, timeout=180)
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    playlists = write_playlists_file(tmp_path, [ROCK_1, EDITORIAL])
    store = Store.open(stack.worker_env["GENRECLF_STORAGE_URL"])

    t0 = time.perf_counter()
    run_deployment(stack, "ingest-spotify/ingest-spotify", f"playlists_file={playlists}")
    first_s = time.perf_counter() - t0
    catalog = read_catalog(store)
    assert dict(catalog.group_by("genre").len().iter_rows()) == {"jazz": 116, "rock": 6}
    assert standin.count(r"/v1/playlists/.*/items") > 0

    standin.clear_requests()
    run_deployment(stack, "ingest-spotify/ingest-spotify", f"playlists_file={playlists}")
    assert standin.count(r"/v1/playlists/.*/items") == 0  # unchanged snapshots are not crawled again
    assert read_catalog(store).height == catalog.height
    print(f"ingest-spotify deployment run: {first_s:.1f} s end to end (server, worker, crawl)")  # noqa: T201


def test_deploy_creates_the_nightly_schedule_paused_and_prints_how_to_resume_and_pause_it(stack: LocalStack) -> None:
    nightly = "nightly-retrain/nightly-retrain"
    said = stack.deploy()
    assert [s["active"] for name, s in stack.schedules() if name == nightly] == [False]
    time.sleep(8)  # an active schedule of a just-deployed deployment has its runs within seconds (a plain deploy does)
    assert scheduled_runs(stack) == 0, "a paused schedule must leave no runs waiting for 03:00"

    resume = next(line for line in said if line.startswith(f"{nightly}: ")).split("to run it on schedule: ")[1]
    stack.prefect(*resume.split()[1:])  # as printed, less `prefect`
    status = next(line for line in stack.status() if line.startswith(f"{nightly}: "))
    assert "is ACTIVE" in status, status

    stack.prefect(*status.split("to pause it: ")[1].split()[1:])
    assert [s["active"] for name, s in stack.schedules() if name == nightly] == [False]
    assert scheduled_runs(stack) == 0


def scheduled_runs(stack: LocalStack) -> int:
    only = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    return len(stack.api("/flow_runs/filter", only))


def test_a_deployment_run_cancelled_as_from_the_ui_ends_cancelled_not_crashed(
    stack: LocalStack, tmp_path: Path
) -> None:
    """The UI's Cancel sets the run's state to Cancelling; the worker stops its process, and the run, with the
    subflow it was in, must end Cancelled (a Crashed run reads as a failure to whoever watches the UI)."""
    import json
    import re

    from genreclf.app.demo import make_demo_catalog

    if not any(d["name"] == "pipeline" for d in stack.api("/deployments/filter", {})):
        stack.deploy()
    catalog = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=6.0)
    training = {"model": "small_cnn", "epochs": 500, "crop_s": 2.0, "batch_size": 8, "device": "cpu"}
    dataset = {"window_s": 3.0, "hop_s": 1.5, "n_mels": 64, "n_fft": 1024, "hop_length": 512}
    started = stack.prefect("deployment", "run", "pipeline/pipeline", "--param", f"catalog_dir={catalog}",
                            "--param", f"dataset={json.dumps(dataset)}", "--param", f"training={json.dumps(training)}",
                            "--param", f"storage_url={tmp_path / 'store'}")  # fmt: skip
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)
    assert run_id, started.stdout
    parent = run_id.group(1)

    def runs() -> dict[str, dict]:
        return {r["id"]: r for r in stack.api("/flow_runs/filter", {})}

    deadline = time.monotonic() + 300
    while not any(r["name"].startswith("train-") and r["state_type"] == "RUNNING" for r in runs().values()):
        assert time.monotonic() < deadline, f"no train subflow running after 300 s: {runs().get(parent)}"
        assert runs()[parent]["state_type"] in ("SCHEDULED", "PENDING", "RUNNING"), runs()[parent]
        time.sleep(1)
    time.sleep(3)  # inside an epoch

    stack.api(f"/flow_runs/{parent}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
    deadline = time.monotonic() + 120
    while (state := runs()[parent]["state_type"]) not in ("CANCELLED", "CRASHED", "FAILED", "COMPLETED"):
        assert time.monotonic() < deadline, f"the run is still {state} 120 s after it was cancelled"
        time.sleep(1)

    finished = runs()
    children = [r for r in finished.values() if r.get("parent_task_run_id") and r["id"] != parent
                and r["name"].startswith(("train-", "build-dataset-"))]  # fmt: skip
    assert finished[parent]["state_type"] == "CANCELLED", finished[parent]["state_name"]
    assert [r["state_type"] for r in children if r["name"].startswith("train-")] == ["CANCELLED"], children
