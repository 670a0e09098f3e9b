"""What `genreclf run` prints, as a user sees it in a terminal: each fact once, where things are kept, nothing raw."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genreclf.app.demo import make_demo_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
EXE = Path(sys.executable).with_name("genreclf")


def run(root: Path, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "GENRECLF_CACHE_DIR": str(tmp_path / "cache")}
    for test_setting in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL"):  # conftest's: a user has neither
        env.pop(test_setting, None)
    command = [str(EXE), *extra, "run", "--catalog", str(root), "--store", str(tmp_path / "store"), "--small",
               "--model", "small_cnn", "--epochs", "2", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_run_says_each_thing_once_and_where_it_is_kept(tmp_path: Path) -> None:
    root = make_demo_catalog(tmp_path / "catalog", tracks_per_genre=3, seconds=6.0)
    (root / "pulse" / "notes.mp3").write_text("hello, these are my notes\n")

    out = run(root, tmp_path)

    lines = out.splitlines()
    assert "(13 files read and hashed, 0 unchanged since they were)" in out  # it said 0 on a first scan
    # The text file named .mp3: its one line while running and its entry in the summary, no decoder noise.
    assert len([line for line in lines if "notes.mp3" in line]) == 2, [ln for ln in lines if "notes.mp3" in ln]
    assert not any(line.startswith(("Note:", "[src/libmpg123")) for line in lines)
    dataset_id = re.search(r"datasets/([0-9a-f]+)/manifest\.json", out)
    assert dataset_id, out
    # Where the quarantine is kept: the store, which outlives the temporary server that held the artifact.
    assert f"datasets/{dataset_id.group(1)}/quarantine.json with the dataset" in out
    assert "see the quarantine artifact" not in out
    assert "config:" not in out  # the run's config dict only with -v
    promoted = [line for line in lines if "the first champion of its line" in line]
    assert len(promoted) == 1, promoted  # the decision, once; the summary says which model is champion now
    assert re.search(r"^  champion:  this run, of line [0-9a-f]{12} \(4 genres: chirp, drone, noise, pulse\)$", out,
                     re.MULTILINE)  # fmt: skip

    again = run(root, tmp_path, "-v")

    assert "config: {" in again  # -v shows it
    assert "is already built from the same audio; reusing it" in again
    assert "was already trained" in again and "trains on cpu" not in again  # a finished run is not trained again
