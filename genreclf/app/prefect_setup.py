"""How genreclf runs Prefect: its settings for our flows, and the local server `genreclf server` keeps running.

`flows/__init__.py` calls `configure_prefect()` before any flow module imports Prefect. This module reads and sets
only Prefect's own PREFECT_* variables (GENRECLF_* ones live in settings.py) and never imports Prefect, so the
library stays importable without it.

The local server's record (PID, URL) is `$PREFECT_HOME/genreclf-server.json` and its log
`$PREFECT_HOME/genreclf-server.log` (PREFECT_HOME defaults to ~/.prefect, where the server keeps its SQLite
database): a different PREFECT_HOME, as in the tests, never finds another home's server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

from genreclf.app import processes
from genreclf.errors import GenreclfError

log = logging.getLogger(__name__)

# Prefect's own setting (prefect/settings/models/server/ephemeral.py, default 20 s). A cold start on a busy 2-core
# laptop took ~25 s, so the default failed the first `genreclf demo`; a user's value wins over ours.
STARTUP_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 120
PREFECT_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry leaves the machine unless the user asks
        "PREFECT_LOGGING_EXTRA_LOGGERS": "genreclf",  # library logs (epochs, shards) reach the run logs
        # ...and, logged outside any flow run (the library called from Python), stay local without a warning each
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        STARTUP_TIMEOUT_VAR: str(DEFAULT_STARTUP_TIMEOUT_S),
    }
)
DEFAULT_PORT = 4200
_HEALTH_TIMEOUT_S = 2.0  # only asked of a recorded server whose process is running
DRAIN_TIMEOUT_S = 3.0  # Prefect's queued logs and events, to a server on this machine
# The start of the RuntimeError SubprocessASGIServer.start raises (prefect/server/api/server.py).
_EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


class ServerError(GenreclfError):
    """The local Prefect server cannot be started, reached or stopped."""


@dataclass(frozen=True)
class LocalServer:
    """A Prefect server started by `genreclf server start`, as recorded in its state file."""

    url: str  # the API URL, what PREFECT_API_URL takes; the UI is the same address without /api
    pid: int
    log: Path


@dataclass(frozen=True)
class ServerStatus:
    server: LocalServer
    running: bool  # the recorded process is still there
    healthy: bool  # it answers GET {url}/health


# ---- settings ----------------------------------------------------------------------------------------------------
def configure_prefect(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set Prefect's settings for genreclf where the user has not set them, and return those it set.

    No telemetry, `genreclf` logs in Prefect's run logs (its logger at INFO when unset), a 120 s wait for the
    temporary server, and PREFECT_API_URL at the server `genreclf server start` left running, when it answers.
    `environ` defaults to os.environ; with os.environ and Prefect already imported, Prefect's settings (built once,
    at import) are rebuilt so the new values still apply.
    """
    env = os.environ if environ is None else environ
    added = {name: value for name, value in PREFECT_DEFAULTS.items() if name not in env}
    if "PREFECT_API_URL" not in env and (url := running_server_url(env)):
        added["PREFECT_API_URL"] = url
    env.update(added)
    library = logging.getLogger("genreclf")
    if library.level == logging.NOTSET:
        # In a worker's flow process nothing sets it: it would inherit root's WARNING and drop every INFO log.
        library.setLevel(logging.INFO)
    if env is os.environ and added:
        _update_imported_prefect(added)
    return added


def _update_imported_prefect(added: Mapping[str, str]) -> None:
    """Make variables set after `import prefect` count: Prefect reads its settings and sets up logging at import."""
    context = sys.modules.get("prefect.context")
    if context is not None and hasattr(context, "GLOBAL_SETTINGS_CONTEXT"):
        context.refresh_global_settings_context()
    logging_config = sys.modules.get("prefect.logging.configuration")
    if "PREFECT_LOGGING_EXTRA_LOGGERS" in added and getattr(logging_config, "PROCESS_LOGGING_CONFIG", None):
        # What setup_logging gives each extra logger, had the variable been set in time: the API handler.
        library = logging.getLogger("genreclf")
        for handler in logging.getLogger("prefect.extra").handlers:
            if handler not in library.handlers:
                library.addHandler(handler)


def running_server_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The API URL of the server `genreclf server start` recorded, if it answers; None otherwise."""
    env = os.environ if environ is None else environ
    try:
        server = _read_state(_home(env))
    except ServerError as e:  # `import flows` must not fail on it: `genreclf server status` says what to do
        log.debug("%s; Prefect starts a temporary server", e)
        return None
    if server is None:
        return None
    # The process check costs no network; a live server gets a few seconds, as a busy laptop can be slow to answer.
    if processes.is_ours(server.pid, b"prefect") and _healthy(server.url, timeout_s=_HEALTH_TIMEOUT_S):
        return server.url
    log.debug("the Prefect server recorded at %s does not answer; Prefect starts a temporary one", server.url)
    return None


def explain_startup_failure(exc: BaseException) -> str | None:
    """One line telling the user what to do when `exc` (or what caused it) is Prefect's temporary server failing
    to start; None for any other error."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        message = str(e)
        if isinstance(e, RuntimeError) and message.startswith(_EPHEMERAL_TIMEOUT):
            if "exited with code" in message:  # it crashed: waiting longer will not help, a server's log will
                return (
                    "Prefect's temporary API server exited while starting. Run `genreclf server start` (it shows "
                    "the server's log if it fails too) and keep it running; later runs use it."
                )
            waited = os.environ.get(STARTUP_TIMEOUT_VAR, "20")
            return (
                f"Prefect's temporary API server did not start within {waited} s. Run `genreclf server start` once "
                f"and keep it running (later runs use it, and skip the start-up), or wait longer: "
                f"export {STARTUP_TIMEOUT_VAR}=300"
            )
        e = e.__cause__ or e.__context__
    return None


# ---- a temporary server for one command ----------------------------------------------------------------------------
@contextlib.contextmanager
def prefect_api() -> Iterator[str | None]:
    """The Prefect API a `genreclf` command's flows talk to, for the duration: the one configured (PREFECT_API_URL,
    or the server `genreclf server start` left running), else a temporary server of our own, stopped on the way
    out. Yields the temporary server's API URL, or None when another was configured.

    Ours, not Prefect's own temporary server: Prefect starts that one in the terminal's process group, so the Ctrl-C
    meant for genreclf killed it first and the run could not record that it stopped, then hung draining its logs
    into it. Ours is in its own session, out of the terminal's reach, and runs what Prefect's runs (uvicorn serving
    `prefect.server.api.server:create_app`, without the UI, as in SubprocessASGIServer._run_uvicorn_command).
    """
    configure_prefect()
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    server = _start_temporary()
    os.environ["PREFECT_API_URL"] = server.url
    _update_imported_prefect({"PREFECT_API_URL": server.url})
    interrupted = False
    try:
        yield server.url
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM (genreclf.interrupts): the run's logs go with the server
        interrupted = True
        raise
    finally:
        if not interrupted:
            # Prefect's last logs and events go now, while the server is there to take them: at exit it would
            # retry a stopped server for over a minute before giving up.
            drain_prefect(timeout_s=DRAIN_TIMEOUT_S)
        os.environ.pop("PREFECT_API_URL", None)
        _update_imported_prefect({"PREFECT_API_URL": ""})
        with contextlib.suppress(processes.StillThere):
            processes.terminate(server.pid, 1.0 if interrupted else 5.0, what="the Prefect server")
        with contextlib.suppress(OSError):
            server.log.unlink()


def drain_prefect(timeout_s: float) -> None:
    """Give Prefect's log and event queues up to `timeout_s` to reach the API (nothing to do before Prefect runs)."""
    services = sys.modules.get("prefect._internal.concurrency.services")
    if services is None:
        return
    try:
        services.QueueService.drain_all(timeout=timeout_s)
    except Exception as e:  # a clean-up: what did not reach the server is only logs
        log.debug("draining Prefect's log and event queues: %s", e)


def _start_temporary() -> LocalServer:
    home = _home(os.environ)
    home.mkdir(parents=True, exist_ok=True)
    timeout_s = float(os.environ.get(STARTUP_TIMEOUT_VAR) or DEFAULT_STARTUP_TIMEOUT_S)
    log_path = home / f"genreclf-temporary-server-{os.getpid()}.log"
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    import prefect  # its package's parent is uvicorn's app dir, as Prefect passes it

    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
               "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]  # fmt: skip
    pid = processes.spawn(command, env, log_path)
    server = LocalServer(url=f"http://127.0.0.1:{port}/api", pid=pid, log=log_path)
    log.debug("temporary Prefect server at %s (pid %d)", server.url, server.pid)
    try:
        _wait_healthy(server, timeout_s, what="Prefect's temporary API server")
    except BaseException:  # Ctrl-C included: it is in its own session and would outlive us
        with contextlib.suppress(processes.StillThere):
            processes.terminate(server.pid, 5.0, what="the Prefect server")
        raise
    return server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the local server --------------------------------------------------------------------------------------------
def server_start(*, port: int = DEFAULT_PORT, timeout_s: float = 180.0) -> LocalServer:
    """Start `prefect server start` on 127.0.0.1:`port` in the background (own session, log in PREFECT_HOME),
    wait until it answers, and record it; a recorded server that is still running is returned as it is."""
    home = _home(os.environ)
    current = _read_state(home)
    if current is not None:
        if processes.is_ours(current.pid, b"prefect"):
            _wait_healthy(current, timeout_s)
            return current
        _state_path(home).unlink(missing_ok=True)  # its process is gone: a stale record
    _check_port_free(port)
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": url}  # the UI it serves talks to this server, not the user's default
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log_path = home / "genreclf-server.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    pid = processes.spawn(command, env, log_path)
    server = LocalServer(url=url, pid=pid, log=log_path)
    _write_state(home, server)
    try:
        _wait_healthy(server, timeout_s)
    except BaseException:  # Ctrl-C included: the server is in its own session and would outlive us
        processes.terminate(server.pid, what="the Prefect server")
        _state_path(home).unlink(missing_ok=True)
        raise
    return server


def server_stop(*, timeout_s: float = 15.0) -> LocalServer | None:
    """Stop the recorded server (SIGTERM, then SIGKILL after `timeout_s`) and forget it; None when none is recorded.
    A recorded process that is gone, or whose PID now belongs to another program, is only forgotten."""
    home = _home(os.environ)
    server = _read_state(home)
    if server is None:
        return None
    if processes.is_ours(server.pid, b"prefect"):
        processes.terminate(server.pid, timeout_s, what="the Prefect server")
    _state_path(home).unlink(missing_ok=True)
    return server


def server_status() -> ServerStatus | None:
    """The recorded server, whether its process runs and whether it answers; None when none is recorded."""
    server = _read_state(_home(os.environ))
    if server is None:
        return None
    running = processes.is_ours(server.pid, b"prefect")
    return ServerStatus(server=server, running=running, healthy=running and _healthy(server.url, _HEALTH_TIMEOUT_S))


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("PREFECT_HOME") or "~/.prefect").expanduser()


def _state_path(home: Path) -> Path:
    return home / "genreclf-server.json"


def _read_state(home: Path) -> LocalServer | None:
    path = _state_path(home)
    try:
        raw = json.loads(path.read_text())
        return LocalServer(url=str(raw["url"]), pid=int(raw["pid"]), log=Path(raw["log"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ServerError(f"{path}: unreadable ({e}); delete it and run `genreclf server start` again") from None


def _write_state(home: Path, server: LocalServer) -> None:
    path = _state_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**asdict(server), "log": str(server.log)}, indent=2))
    tmp.replace(path)


def _healthy(api_url: str, timeout_s: float) -> bool:
    # Imported here, not at the top: `import flows` pays for http.client only when a server is recorded.
    import http.client
    import urllib.request

    # No proxies: an http_proxy in the environment must not take a request for 127.0.0.1 elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{api_url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, ValueError, http.client.HTTPException):
        return False


def _wait_healthy(server: LocalServer, timeout_s: float, what: str = "the Prefect server") -> None:
    deadline = time.monotonic() + timeout_s
    while not _healthy(server.url, timeout_s=2.0):
        if not processes.alive(server.pid):
            log_end = processes.tail(server.log)
            raise ServerError(f"{what} exited while starting; its log ({server.log}) ends with:\n{log_end}")
        if time.monotonic() > deadline:
            raise ServerError(
                f"{what} (pid {server.pid}) did not answer at {server.url} within {timeout_s:.0f} s (see "
                f"{server.log}). Run `genreclf server start --timeout 600` once and keep it running (later runs use "
                f"it, and skip the start-up), or wait longer: export {STARTUP_TIMEOUT_VAR}=300"
            )
        time.sleep(0.2)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Prefect and uvicorn bind it
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise ServerError(
                f"127.0.0.1:{port} is in use ({e.strerror}). If a Prefect server runs there, use it: "
                f"export PREFECT_API_URL=http://127.0.0.1:{port}/api; otherwise pick another port (--port)"
            ) from None
