"""Ctrl-C and SIGTERM, real signals to a real `genreclf run`: at acquisition, shards and training, with Prefect's
temporary server and with a running one, each stops in seconds with one line and exit 130/143, leaves no process,
and the rerun resumes what was done."""

from __future__ import annotations

import signal
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from tests.interrupting import STAGES, Workspace, finish, interrupt, make_catalog, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("interrupts") / "catalog")


@pytest.mark.parametrize(
    ("setup", "signum"), [("temporary server", signal.SIGINT), ("running server", signal.SIGTERM)],
    ids=["temporary-server-SIGINT", "running-server-SIGTERM"],
)  # fmt: skip
def test_interrupted_at_each_stage_it_stops_at_once_and_the_rerun_resumes(
    setup: str, signum: int, catalog: Path, tmp_path: Path
) -> None:
    server: AbstractContextManager[str | None] = (
        nullcontext() if setup == "temporary server" else running_server(tmp_path / "server")
    )
    with server as api_url:
        _interrupt_each_stage_then_resume(Workspace(tmp_path, catalog, api_url), signum)


def _interrupt_each_stage_then_resume(workspace: Workspace, signum: int) -> None:
    outcomes = [interrupt(workspace, at=stage, signum=signum) for stage in STAGES]

    for outcome in outcomes:
        assert outcome.ok, outcome
    assert [o.stage for o in outcomes] == list(STAGES)
    by = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert outcomes[0].after[-1].startswith(f"genreclf: stopped by {by} during tracks acquired (")
    assert outcomes[-1].after[-1].startswith(f"genreclf: stopped by {by} during epochs of run small_cnn-")
    assert outcomes[-1].after[-1].endswith(" ".join(workspace.command(2)[1:]))  # the command that resumes
    rerun = finish(workspace)
    assert "resuming run small_cnn-" in rerun and "already built from the same audio; reusing it" in rerun
    assert "left out" not in rerun  # no track was taken for broken because its decoder was killed
