"""Shared fixtures: an isolated Prefect home, one Prefect test server per session, seeded audio."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Isolate Prefect before anything imports it: no telemetry, no writes to the user's ~/.prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="genreclf-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(Path(_PREFECT_HOME) / "storage"))
os.environ.pop("PREFECT_API_URL", None)
# Pretrained weights are read from the user's own cache (infra/setup.sh fetches them there), found before the
# GENRECLF_ variables are cleared below; CI sets GENRECLF_TEST_REQUIRE_WEIGHTS=1 so that their tests fail, not skip.
_USER_CACHE = Path(os.environ.get("GENRECLF_CACHE_DIR") or Path.home() / ".cache" / "genreclf").expanduser()
_REQUIRE_WEIGHTS = os.environ.get("GENRECLF_TEST_REQUIRE_WEIGHTS") == "1"
for _var in [v for v in os.environ if v.startswith("GENRECLF_")]:
    os.environ.pop(_var)
# Per-user caches (file hashes, download scratch) in a temporary folder, never the user's ~/.cache.
os.environ["GENRECLF_CACHE_DIR"] = tempfile.mkdtemp(prefix="genreclf-cache-")
# Both folders go when the session ends (servers and workers the tests start are stopped before that).
for _folder in (_PREFECT_HOME, os.environ["GENRECLF_CACHE_DIR"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)

from tests.s3server import s3_server  # noqa: E402,F401  the S3 fixture, for every test module

SR = 22_050


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~14 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def musicnn_weights() -> Path:
    """The session's cache dir ($GENRECLF_CACHE_DIR) holding the user's fetched musicnn weights (copied: the tests
    never write to the user's cache). Skips where they were not fetched, fails under GENRECLF_TEST_REQUIRE_WEIGHTS=1."""
    from genreclf.models import weights

    cache = Path(os.environ["GENRECLF_CACHE_DIR"])
    for name in weights.PRETRAINED:
        if weights.available(name, cache_dir=cache):
            continue
        found = weights.status(name, cache_dir=_USER_CACHE)
        if not found["ok"]:
            why = f"pretrained weights {name}: {found['why']}"
            if _REQUIRE_WEIGHTS:
                pytest.fail(why)
            pytest.skip(why)
        shutil.copytree(found["path"], weights.weights_dir(name, cache), dirs_exist_ok=True)
    return cache


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tone() -> np.ndarray:
    """One second of a 440 Hz tone with a little seeded noise, float32 mono at 22,050 Hz."""
    t = np.arange(SR) / SR
    noise = np.random.default_rng(0).normal(0, 0.01, SR)
    return (0.5 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return str(tmp_path / "store")
