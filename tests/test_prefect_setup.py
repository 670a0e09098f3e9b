"""genreclf.app.prefect_setup: Prefect's settings for our flows, the local server round trip, the start-up explanation.

Anything that imports Prefect runs in a fresh subprocess: configure_prefect rebuilds Prefect's global settings,
which must not leak into the rest of the test session.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreclf.app.prefect_setup import (
    STARTUP_TIMEOUT_VAR,
    ServerError,
    configure_prefect,
    explain_startup_failure,
    server_start,
    server_status,
    server_stop,
)
from genreclf.errors import GenreclfError

REPO = Path(__file__).resolve().parents[1]
OURS = ("PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_EXTRA_LOGGERS", STARTUP_TIMEOUT_VAR, "PREFECT_API_URL")


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("genreclf")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PREFECT_HOME of this test's own, with none of the variables configure_prefect sets."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    for name in OURS:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _python(script: str, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who set none of our variables (telemetry still off on the client side)."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    return {**env, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- settings ----------------------------------------------------------------------------------------------------
def test_defaults_fill_only_what_the_user_left_unset(tmp_path: Path, library_logger: logging.Logger) -> None:
    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_ANALYTICS_ENABLED": "true", STARTUP_TIMEOUT_VAR: "7"}
    added = configure_prefect(env)
    assert added == {"PREFECT_LOGGING_EXTRA_LOGGERS": "genreclf", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert env[STARTUP_TIMEOUT_VAR] == "7"
    assert "PREFECT_API_URL" not in env  # no server recorded in this home

    env = {"PREFECT_HOME": str(tmp_path), "PREFECT_LOGGING_EXTRA_LOGGERS": "genreclf,urllib3",
           "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "warn"}  # fmt: skip
    assert configure_prefect(env) == {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", STARTUP_TIMEOUT_VAR: "120"}
    assert env["PREFECT_LOGGING_EXTRA_LOGGERS"] == "genreclf,urllib3"
    assert configure_prefect(env) == {}  # idempotent


def test_library_logger_gets_info_only_when_unset(tmp_path: Path, library_logger: logging.Logger) -> None:
    library_logger.setLevel(logging.NOTSET)
    configure_prefect({"PREFECT_HOME": str(tmp_path)})
    assert library_logger.level == logging.INFO

    library_logger.setLevel(logging.DEBUG)  # `genreclf -v` set it first
    configure_prefect({"PREFECT_HOME": str(tmp_path)})
    assert library_logger.level == logging.DEBUG


@pytest.mark.parametrize("order", ["flows-first", "prefect-first"])
def test_prefect_sees_the_defaults_in_either_import_order(tmp_path: Path, order: str) -> None:
    script = """
        import json, logging, sys
        if sys.argv[1] == "prefect-first":
            import prefect.main  # reads the settings and sets up logging before flows configures anything
        import flows
        from prefect import flow  # what every flow module imports: Prefect sets up logging here
        from prefect.settings import get_current_settings

        s = get_current_settings()
        library = logging.getLogger("genreclf")
        print(json.dumps({
            "timeout": s.server.ephemeral.startup_timeout_seconds,
            "analytics": s.server.analytics_enabled,
            "extra_loggers": str(s.logging.extra_loggers),
            "api_handler": any(type(h).__name__ == "APILogHandler" for h in library.handlers),
            "level": library.level,
        }))
    """
    done = _python(script, _fresh_env(tmp_path), order)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["timeout"] == 120
    assert seen["analytics"] is False
    assert "genreclf" in seen["extra_loggers"]
    assert seen["api_handler"]  # library records go to the run logs
    assert seen["level"] == logging.INFO


# ---- the start-up failure ----------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.slow  # a Prefect server starting in a subprocess, about 4 s: CI runs it
def test_ephemeral_timeout_is_explained_in_one_line(tmp_path: Path) -> None:
    """A flow run from Python with a zero wait: Prefect's start loop never polls, so the timeout is certain."""
    script = """
        import flows
        from prefect import flow
        from genreclf.app.prefect_setup import explain_startup_failure

        @flow
        def ping() -> int:
            return 1

        try:
            ping()
        except RuntimeError as e:
            print("EXPLAINED:", explain_startup_failure(e))
        else:
            print("no error")
    """
    done = _python(script, _fresh_env(tmp_path, **{STARTUP_TIMEOUT_VAR: "0"}))
    assert done.returncode == 0, done.stderr
    line = done.stdout.splitlines()[-1]
    assert line.startswith("EXPLAINED: Prefect's temporary API server did not start within 0 s."), done.stdout
    assert "genreclf server start" in line
    assert f"export {STARTUP_TIMEOUT_VAR}=300" in line


def test_explanation_follows_the_cause_chain_and_ignores_other_errors() -> None:
    # Prefect's message, as raised by SubprocessASGIServer.start in prefect/server/api/server.py.
    timeout = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")
    try:
        raise GenreclfError("the pipeline could not start") from timeout
    except GenreclfError as e:
        wrapped = e
    explained = explain_startup_failure(timeout)
    assert explained is not None
    assert explain_startup_failure(wrapped) == explained
    crashed = RuntimeError(
        "Timed out while attempting to connect to ephemeral Prefect API server. "
        "Ephemeral server process exited with code 1."
    )
    assert "exited while starting" in (explain_startup_failure(crashed) or "")
    assert explain_startup_failure(RuntimeError("Timed out reading a file")) is None
    assert explain_startup_failure(ValueError("Timed out while attempting to connect to ephemeral")) is None


# ---- the local server --------------------------------------------------------------------------------------------
def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow  # ~15 s on 2 shared cores: a real server start, three Python processes and a flow run
@pytest.mark.e2e
def test_server_start_status_stop_round_trip(home: Path) -> None:
    port = _free_port()
    pid = None
    try:
        server = server_start(port=port)
        pid = server.pid
        assert server.url == f"http://127.0.0.1:{port}/api"
        assert json.loads((home / "genreclf-server.json").read_text())["pid"] == pid
        status = server_status()
        assert status is not None and status.running and status.healthy
        assert server_start(port=port) == server  # a running server is reused, not started twice

        with urllib.request.urlopen(f"{server.url}/admin/settings", timeout=5) as r:
            assert json.load(r)["server"]["analytics_enabled"] is False

        # A fresh process (the CLI, Python use) finds it and skips the temporary server.
        script = """
            import os
            from genreclf.app.prefect_setup import configure_prefect
            configure_prefect()
            print(os.environ.get("PREFECT_API_URL"))
        """
        done = _python(script, _fresh_env(home))
        assert done.stdout.strip() == server.url, done.stderr
        done = _python(script, _fresh_env(home, PREFECT_API_URL="http://127.0.0.1:9/api"))
        assert done.stdout.strip() == "http://127.0.0.1:9/api"  # the user's URL wins

        flow_script = """
            import flows
            from prefect import flow

            @flow(name="ping")
            def ping() -> int:
                return 1

            print(ping())
        """
        done = _python(flow_script, _fresh_env(home))
        assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
        assert "Starting temporary server" not in done.stderr
        ask = urllib.request.Request(f"{server.url}/flow_runs/filter", data=b"{}", method="POST")
        ask.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(ask, timeout=10) as r:
            assert [run["state_type"] for run in json.load(r)] == ["COMPLETED"]

        assert server_stop() == server
        assert _gone(pid)
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # nothing it forked is left either
        assert server_status() is None
        assert not (home / "genreclf-server.json").exists()
        assert _python(script, _fresh_env(home)).stdout.strip() == "None"
    finally:
        if pid is not None and not _gone(pid):
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.e2e
@pytest.mark.slow  # a Prefect server starting in a subprocess, about 4 s: CI runs it
def test_a_server_that_exits_while_starting_is_reported(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home}/no/such/dir/prefect.db")
    with pytest.raises(ServerError, match=r"exited while starting; its log .* ends with:\n(.|\n)*unable to open"):
        server_start(port=_free_port(), timeout_s=120)
    assert server_status() is None


def test_a_stale_record_is_reported_and_forgotten_without_signals(home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    url = f"http://127.0.0.1:{_free_port()}/api"
    state = {"url": url, "pid": dead.pid, "log": str(home / "genreclf-server.log")}
    (home / "genreclf-server.json").write_text(json.dumps(state))

    status = server_status()
    assert status is not None and not status.running and not status.healthy
    env: dict[str, str] = {"PREFECT_HOME": str(home)}
    configure_prefect(env)
    assert "PREFECT_API_URL" not in env  # falls back to the temporary server
    stopped = server_stop()
    assert stopped is not None and stopped.pid == dead.pid
    assert server_status() is None


def test_a_busy_port_fails_with_what_to_do(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=rf"127.0.0.1:{port} is in use .*PREFECT_API_URL=.*--port"):
            server_start(port=port)
    assert server_status() is None


def test_an_unreadable_record_says_what_to_do_but_does_not_break_configure(home: Path) -> None:
    (home / "genreclf-server.json").write_text("{not json")
    with pytest.raises(ServerError, match="delete it"):
        server_status()
    env: dict[str, str] = {"PREFECT_HOME": str(home)}
    configure_prefect(env)
    assert "PREFECT_API_URL" not in env


def test_a_process_of_our_own_is_ours_and_a_stranger_is_not(tmp_path: Path) -> None:
    import subprocess
    import sys

    from genreclf.app import processes

    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # prefect"], start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # not leading its group
    try:
        assert processes.is_ours(ours.pid, b"prefect")
        assert not processes.is_ours(ours.pid, b"weed")  # another program's command line
        assert not processes.is_ours(stranger.pid, b"python")
        processes.terminate(ours.pid, 5.0)
        assert not processes.alive(ours.pid) and not processes.is_ours(ours.pid, b"prefect")
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()
