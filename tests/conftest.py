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
for _var in [v for v in os.environ if v.startswith("GENRECLF_")]:
    os.environ.pop(_var)
# Per-user caches (file hashes, download scratch) in a temporary folder, never the user's ~/.cache.
os.environ["GENRECLF_CACHE_DIR"] = tempfile.mkdtemp(prefix="genreclf-cache-")
# Both folders go when the session ends (servers and workers the tests start are stopped before that).
for _folder in (_PREFECT_HOME, os.environ["GENRECLF_CACHE_DIR"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)

SR = 22_050


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the whole session (it takes ~14 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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
