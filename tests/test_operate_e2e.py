"""Operating genreclf end to end: a real Prefect server, process workers for the cpu and gpu pools, SeaweedFS as the
S3 store, every deployment of prefect.yaml, the Spotify stand-in and a loopback audio server. One
`prefect deployment run ingest-spotify/...` starts the chain ingest -> build-dataset -> train -> evaluate, and the
label audit beside training, through the deployment triggers; then the nightly deployment, with nothing new, trains
nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from genreclf.app.demo import make_demo_catalog
from genreclf.settings import Settings
from genreclf.store.keys import CHAMPION_KEY
from genreclf.store.storage import Store
from infra.local_stack import LocalStack
from tests.audio_server import AudioServer, SearchHit
from tests.s3server import free_ports
from tests.spotify_standin import SpotifyStandin, StandinPlaylist, make_track, spotify_id, track_entry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "e2e-client", "e2e-secret"
GENRES = ("drone", "chirp")
TRACKS_PER_GENRE = 6
# Tiny data, the same for the triggered deployments and the nightly run (so both land on the same dataset and run).
DATASET = {"window_s": 3.0, "hop_s": 1.5, "n_mels": 64, "n_fft": 1024}
TRAINING = {"model": "small_cnn", "epochs": 3, "crop_s": 2.0, "batch_size": 16, "lr": 0.003}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SpotifyStandin, AudioServer, Path]]:
    """Two genre playlists on the stand-in; each track's audio (a synthetic sound of its genre) on the audio server."""
    tmp = tmp_path_factory.mktemp("world")
    folder = make_demo_catalog(tmp / "audio", tracks_per_genre=TRACKS_PER_GENRE, seconds=6.0)
    api = SpotifyStandin(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    audio = AudioServer()
    lines = ["version = 1", "[genres]"]
    n = 0
    for g, genre in enumerate(GENRES):
        entries: list[dict[str, Any] | None] = []
        for i, src in enumerate(sorted((folder / genre).iterdir())):
            n += 1
            artist, title = f"Artist {genre} {i}", f"{genre.title()} Song {i}"
            mp3 = tmp / f"{genre}-{i}.mp3"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), str(mp3)], check=True)
            audio.add_file(f"/{mp3.name}", mp3)
            audio.add_search(
                f"{artist} - {title}", [SearchHit(f"{artist} - {title} (Official Audio)", f"/{mp3.name}", 6.0)]
            )
            track = make_track(spotify_id("tr", n), title, [(spotify_id(f"a{g}", i), artist)], duration_ms=6000)
            entries.append(track_entry(track))
        playlist = spotify_id("pl", g)
        api.add_playlist(StandinPlaylist(id=playlist, name=f"{genre} essentials", entries=entries))
        lines.append(f'{genre} = ["spotify:playlist:{playlist}"]')
    playlists = tmp / "playlists.toml"
    playlists.write_text("\n".join(lines) + "\n")
    with api, audio:
        yield api, audio, playlists


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, world: tuple[SpotifyStandin, AudioServer, Path]
) -> Iterator[LocalStack]:
    api, audio, _ = world
    state = tmp_path_factory.mktemp("stack")
    env = {
        "GENRECLF_STORAGE_URL": str(state / "store"),
        "GENRECLF_CACHE_DIR": str(state / "cache"),
        "GENRECLF_SPOTIFY_API_URL": api.api_url,
        "GENRECLF_SPOTIFY_TOKEN_URL": api.token_url,
        "GENRECLF_YOUTUBE_SEARCH": audio.search_template,
        "SPOTIPY_CLIENT_ID": CLIENT_ID,
        "SPOTIPY_CLIENT_SECRET": CLIENT_SECRET,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    prefect_port, s3_port = free_ports(2)
    stack = LocalStack(dir=state, port=prefect_port, s3_port=s3_port, worker_env=env, project=ROOT)
    try:
        stack.up(s3=True)  # the workers' store becomes s3://genreclf/genreclf on SeaweedFS
        yield stack
    finally:
        stack.down()


def test_prefect_yaml_chain_runs_end_to_end_and_nightly_retrains_nothing_new(
    stack: LocalStack, world: tuple[SpotifyStandin, AudioServer, Path], tmp_path: Path
) -> None:
    _, _, playlists = world
    t0 = time.perf_counter()
    deploy_tiny(stack, tmp_path / "prefect.yaml", playlists)
    env = stack.worker_env
    assert env["GENRECLF_STORAGE_URL"].startswith("s3://")
    store = Store.open(
        env["GENRECLF_STORAGE_URL"],
        Settings(s3_endpoint_url=env["GENRECLF_S3_ENDPOINT_URL"], s3_access_key=env["GENRECLF_S3_ACCESS_KEY"],
                 s3_secret_key=env["GENRECLF_S3_SECRET_KEY"]),
    )  # fmt: skip

    run(stack, "ingest-spotify/ingest-spotify")
    # The chain is done when each of its flows has a finished run: champion.json is written mid-way through
    # evaluate, so waiting for it raced the evaluate run's final state.
    chain = ("ingest-spotify", "build-dataset", "train", "evaluate", "audit")
    runs = wait_for(
        lambda: chain_finished(stack, chain),
        timeout_s=420,
        what="finished runs of the whole chain",
        # A run that hangs says where through its last log lines.
        seen=lambda: f"{flow_runs(stack)}; the last log lines: {run_log_messages(stack)[-25:]}",
    )
    chain_s = time.perf_counter() - t0

    assert store.exists(CHAMPION_KEY)
    for flow in chain:
        assert [r["state_type"] for r in runs if r["flow"] == flow] == ["COMPLETED"], (flow, runs)
    keys = artifact_keys(stack)
    for key in ("spotify-ingest-playlists", "dataset-stats", "training-run", "training-curves", "evaluation-report",
                "per-genre", "confusion-matrix", "confusion-png", "model", "label-audit"):  # fmt: skip
        assert key in keys, (key, keys)
    for progress in (f"progress:tracks acquired ({2 * TRACKS_PER_GENRE})", "progress:shards written (1)"):
        assert progress in keys, (progress, keys)
    messages = run_log_messages(stack)  # the library's INFO lines reach deployment runs' logs, not only warnings
    assert any(m.startswith("epoch 1: loss") for m in messages), messages[-30:]
    assert any(m.startswith("wrote shards/") for m in messages), messages[-30:]
    champ = store.read_json(CHAMPION_KEY)
    report = store.read_json(f"runs/{champ['run_id']}/report.json")
    assert report["models"]["small_cnn"]["track"]["n"] >= 2
    assert store.exists(f"runs/{champ['run_id']}/confusion.png")
    assert store.keys("prefect-results"), "task results and cache records must be in the shared store"

    checkpoint = store.path(f"runs/{champ['run_id']}/finished.json")
    before = store.fs.get_file_info(checkpoint).mtime
    run(stack, "nightly-retrain/nightly-retrain")
    time.sleep(5)  # would a trigger start anything? (it must not: nothing was built or trained)
    assert store.fs.get_file_info(checkpoint).mtime == before
    runs = flow_runs(stack)
    assert len([r for r in runs if r["flow"] == "train" and r["deployment"]]) == 1
    assert store.read_json(CHAMPION_KEY)["run_id"] == champ["run_id"]
    print(f"e2e chain (deploy, ingest, build-dataset, train, evaluate): {chain_s:.0f} s")  # noqa: T201


def deploy_tiny(stack: LocalStack, path: Path, playlists: Path) -> None:
    """The project's prefect.yaml, with its deployments' parameters set for tiny data; deployed as the README does."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for d in spec["deployments"]:
        params = d.setdefault("parameters", {})
        if d["name"] == "ingest-spotify":
            params["playlists_file"] = str(playlists)
        elif d["name"] == "build-dataset":
            params["params"] = DATASET
        elif d["name"] == "train":
            params["params"] = TRAINING
        elif d["name"] == "nightly-retrain":
            params.update(playlists_file=str(playlists), dataset=DATASET, training=TRAINING)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    stack.deploy(path)
    assert [s["active"] for name, s in stack.schedules() if name == "nightly-retrain/nightly-retrain"] == [False]


def run(stack: LocalStack, name: str) -> None:
    proc = stack.prefect("deployment", "run", name, "--watch", "--watch-interval", "1", "--watch-timeout", "400",
                         check=False, timeout=420)  # fmt: skip
    assert proc.returncode == 0 and "Completed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def wait_for(check: Any, *, timeout_s: float, what: str, seen: Any = None) -> Any:
    """`check()` once it is truthy; after `timeout_s`, an AssertionError that shows `seen()` (what there was)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(1)
    raise AssertionError(f"no {what} after {timeout_s:.0f} s" + (f"; there were {seen()}" if seen else ""))


FINISHED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def chain_finished(stack: LocalStack, flows: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """The top-level flow runs once every flow of `flows` has a run and every run is in a final state, else None."""
    runs = flow_runs(stack)
    # only the chain's own runs (the nightly one is run by hand, later)
    own = [r for r in runs if r["flow"] in flows]
    failed = [r for r in own if r["state_type"] in FINISHED - {"COMPLETED"}]
    assert not failed, f"a run of the chain did not complete (its logs are in the Prefect UI): {failed}"
    if {r["flow"] for r in own} != set(flows) or any(r["state_type"] not in FINISHED for r in own):
        return None
    return runs


def flow_runs(stack: LocalStack) -> list[dict[str, Any]]:
    """Top-level flow runs (subflows of the nightly run excluded) with their flow name and deployment id."""
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        flows = {f["id"]: f["name"] for f in client.post("/flows/filter", json={}).raise_for_status().json()}
        runs = client.post("/flow_runs/filter", json={"sort": "START_TIME_ASC"}).raise_for_status().json()
    return [
        {"flow": flows[r["flow_id"]], "state_type": r["state_type"], "deployment": r["deployment_id"]}
        for r in runs
        if r["parent_task_run_id"] is None
    ]


def run_log_messages(stack: LocalStack) -> list[str]:
    """Every log message the server holds, oldest first."""
    messages: list[str] = []
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        while page := client.post("/logs/filter", json={"sort": "TIMESTAMP_ASC", "limit": 200,
                                                       "offset": len(messages)}).raise_for_status().json():  # fmt: skip
            messages += [entry["message"] for entry in page]
    return messages


def artifact_keys(stack: LocalStack) -> set[str]:
    """Keys of the keyed artifacts, plus "progress:<description>" for each progress artifact."""
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        found = client.post("/artifacts/filter", json={}).raise_for_status().json()
    return {a["key"] for a in found if a["key"]} | {
        f"progress:{a['description']}" for a in found if a["type"] == "progress"
    }
