"""The figures our flows publish render as pictures in the Prefect UI: a real server, a flow run, headless Chromium.

Needs a Chromium binary (Debian: `apt-get install -y chromium`, /usr/bin/chromium); skipped without one. Every
process it starts (server, flow run, browser and their children) carries a marker in its environment and is gone
when the test ends: the test fails if any is left.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genreclf.reports.plots import ACCURACY_COLOR, LOSS_COLOR
from infra.local_stack import LocalStack
from tests.s3server import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")) if p),
    None,
)
MARKER = "GENRECLF_UI_RENDER_TEST"
DARKEST_BLUE = "#08306b"  # the top of matplotlib's "Blues": the confusion matrix's largest cell

# A tiny flow run that publishes what flows/train.py and flows/evaluate.py publish, plus a text-only control.
PUBLISH = """
import json
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from genreclf.reports.plots import confusion_png, markdown_image, training_curves_png

HISTORY = [{"epoch": e, "train_loss": 2.3 / e, "val_accuracy": 0.1 + 0.04 * e} for e in range(1, 21)]

@flow(name="ui-render-check")
def publish() -> dict[str, str]:
    curves = training_curves_png(HISTORY, title="resnet18, run ui-check")
    confusion = confusion_png([[3, 1], [0, 4]], ["jazz", "rock"], "resnet18, per track")
    return {
        "curves": str(create_markdown_artifact(
            f"# Training curves\\n\\n{markdown_image(curves, 'training curves')}\\n", key="training-curves")),
        "confusion": str(create_markdown_artifact(
            f"# Confusion matrix\\n\\n{markdown_image(confusion, 'confusion matrix')}\\n", key="confusion-png")),
        "control": str(create_markdown_artifact("# No picture\\n\\nOnly text.\\n", key="control")),
    }

print(json.dumps(publish()))
"""


def marked_processes(token: str) -> list[int]:
    """PIDs of the processes whose environment carries this test's marker (children that left the group too)."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


def stop_marked(token: str, grace_s: float = 10.0) -> list[int]:
    """Wait for this test's processes to exit, then SIGKILL the rest by PID; return those that had to be killed."""
    deadline = time.monotonic() + grace_s
    while (left := marked_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return left


def screenshot(url: str, out: Path, env: dict[str, str]) -> Image.Image:
    """Load `url` in headless Chromium and return what it showed."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in containers; it only loads our own loopback server
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-crash-reporter",  # otherwise crashpad handlers start in sessions of their own
        "--disable-breakpad",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={out.parent / (out.stem + '-profile')}",  # fresh: no saved UI choice, the default UI
        "--window-size=1280,1200",
        "--virtual-time-budget=20000",  # virtual time waits for the page's fetches (API, lazy chunks)
        f"--screenshot={out}",
        url,
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0 and out.exists(), log.decode(errors="replace")[-3000:]
    return Image.open(io.BytesIO(out.read_bytes())).convert("RGB")


def pixels_near(image: Image.Image, hex_color: str, tol: int = 24) -> int:
    rgb = np.asarray(image, dtype=int)
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) <= tol).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium)")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds leftover processes through /proc (Linux)")
@pytest.mark.timeout(300)
def test_markdown_artifacts_show_the_figures_in_the_prefect_ui(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    stack = LocalStack(dir=tmp_path / "stack", port=free_ports(1)[0], worker_env={MARKER: token}, project=ROOT)
    (stack.dir / "logs").mkdir(parents=True)
    shots: dict[str, Image.Image] = {}
    try:
        stack.start_server()  # its env sets PREFECT_API_URL, which is also the API URL the UI is told to call
        published = subprocess.run(
            [sys.executable, "-c", PUBLISH], env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert published.returncode == 0, published.stdout[-2000:] + published.stderr[-3000:]
        ids = json.loads(published.stdout.strip().splitlines()[-1])
        base = f"http://127.0.0.1:{stack.port}"
        pages = {  # the V2 UI is the default; V1 is a click away ("Switch to V1 UI") and serves its own paths
            "v2-curves": f"{base}/v2/artifacts/artifact/{ids['curves']}",
            "v2-confusion": f"{base}/v2/artifacts/artifact/{ids['confusion']}",
            "v2-control": f"{base}/v2/artifacts/artifact/{ids['control']}",
            "v1-curves": f"{base}/artifacts/artifact/{ids['curves']}",
        }
        shots = {name: screenshot(url, tmp_path / f"{name}.png", stack.env) for name, url in pages.items()}
    finally:
        stack.down()
        left = stop_marked(token)
    assert not left, f"processes left running after the test (killed now): {left}"

    where = f"(screenshots in {tmp_path})"
    for colour in (LOSS_COLOR, ACCURACY_COLOR, DARKEST_BLUE):  # the UI itself never paints these
        assert pixels_near(shots["v2-control"], colour) == 0, (colour, where)
    for name in ("v2-curves", "v1-curves"):  # twenty epochs of 2 px lines and markers: hundreds of pixels each
        assert pixels_near(shots[name], LOSS_COLOR) > 200, (name, where)
        assert pixels_near(shots[name], ACCURACY_COLOR) > 200, (name, where)
    assert pixels_near(shots["v2-confusion"], DARKEST_BLUE) > 1000, where  # the "4" cell, ~60 px square
