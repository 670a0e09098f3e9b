"""Bring up, on one machine, what genreclf's deployments need; stop only what this script started.

    python -m infra.local_stack up [--port 4200] [--s3] [--no-gpu-worker]   # idempotent
    python -m infra.local_stack deploy
    python -m infra.local_stack status
    python -m infra.local_stack down

`up` starts a Prefect server (SQLite, 127.0.0.1), creates the `cpu` and `gpu` process work pools, the global
concurrency limits for Spotify and YouTube calls and the block that keeps task results in the store, starts one
worker per pool and, with --s3, a SeaweedFS S3 server on loopback with the bucket. It prints what it did and the
next commands. State (PIDs, logs, Prefect's database) lives in --dir (default ./.genreclf-local). Anything
already running is left alone and reused.

`deploy` is `prefect deploy --all`, then it pauses every schedule it created (nightly-retrain's cron): a laptop
stack left running must not retrain unasked. It prints the command that resumes a schedule; `status` and `up` say,
loudly, when one is active (as a plain `prefect deploy --all` leaves it) and how to pause it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genreclf.app import processes
from infra.seaweedfs import PORT_FLAGS, free_ports, remove_sockets, weed_mini_command

POOLS = ("cpu", "gpu")
# name -> (slots, slots freed per second). With decay 0 it bounds calls at once; with decay d it is a rate limit
# of d calls a second. The names are the defaults of tasks/spotify.py and GENRECLF_YOUTUBE_*_LIMIT.
CONCURRENCY_LIMITS = {
    "spotify-api": (2, 0.0),  # Spotify crawls at once, across every worker (one app's rate limit)
    "youtube-requests": (1, 0.5),  # 30 searches or downloads a minute
    "youtube-downloads": (4, 0.0),  # downloads at once
}
S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET = "genreclf", "genreclf-secret", "genreclf"


def next_steps(api_url: str, *, s3_env: dict[str, str], playlists: bool) -> list[str]:
    """What `up` tells the user to type next: the README's "Operating genreclf" steps, and only those."""
    lines = ["Use it from this shell:", f"  export PREFECT_API_URL={api_url}"]
    lines += [f"  export {k}={v}" for k, v in s3_env.items()]
    if not playlists:
        lines.append("  cp configs/playlists.example.toml configs/playlists.toml   # and edit it")
    return [*lines, "  python -m infra.local_stack deploy", "  prefect deployment run ingest-spotify/ingest-spotify"]


def schedule_line(deployment: str, schedule: dict[str, Any]) -> str:
    """One deployment schedule (as the REST API returns it): paused and how to resume it, or loudly active."""
    spec = schedule["schedule"]
    if "cron" in spec:
        when = f'cron "{spec["cron"]}" {spec.get("timezone") or "UTC"}'
    elif "interval" in spec:
        when = f"every {spec['interval']} s"
    else:
        when = f'rrule "{spec.get("rrule")}"'
    if schedule["active"]:
        return (
            f"{deployment}: schedule {when} is ACTIVE, its runs start by themselves; to pause it: "
            f"prefect deployment schedule pause {deployment} {schedule['id']}"
        )
    return (
        f"{deployment}: schedule {when} is paused; to run it on schedule: "
        f"prefect deployment schedule resume {deployment} {schedule['id']}"
    )


def _bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


@dataclass
class LocalStack:
    dir: Path = Path(".genreclf-local")
    port: int = 4200
    s3_port: int = 8333
    worker_env: dict[str, str] = field(default_factory=dict)
    project: Path = field(default_factory=Path.cwd)  # the checkout holding prefect.yaml

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def env(self) -> dict[str, str]:
        """The environment every command and worker of this stack runs with."""
        return {
            **os.environ,
            "PWD": str(self.project),  # prefect.yaml's pull step is set_working_directory "{{ $PWD }}"
            "PREFECT_HOME": str(self.dir.resolve() / "prefect"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "genreclf",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            **self.worker_env,
        }

    # ---- state --------------------------------------------------------------------------------------------
    def _pids_path(self) -> Path:
        return self.dir / "pids.json"

    def _pids(self) -> dict[str, int]:
        path = self._pids_path()
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_pid(self, name: str, pid: int) -> None:
        pids = self._pids()
        pids[name] = pid
        self._pids_path().write_text(json.dumps(pids, indent=2))

    def _alive(self, name: str) -> bool:
        """Whether the process recorded as `name` is still the one this stack started (a PID since reused by another
        program is not, and is never signalled)."""
        pid = self._pids().get(name)
        return pid is not None and processes.is_ours(pid, b"weed" if name == "seaweedfs" else b"prefect")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> str:
        if self._alive(name):
            return f"{name}: already running (pid {self._pids()[name]})"
        log = (self.dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.project,
        )
        self._save_pid(name, proc.pid)
        return f"{name}: started (pid {proc.pid}, log {self.dir / 'logs' / f'{name}.log'})"

    def prefect(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a `prefect` CLI command against this stack's server, in the project directory."""
        return subprocess.run(
            [_bin("prefect"), "--no-prompt", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd=self.project,
        )

    # ---- pieces -------------------------------------------------------------------------------------------
    def api(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to this stack's REST API; the answer's JSON."""
        request = urllib.request.Request(
            f"{self.api_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def schedules(self) -> list[tuple[str, dict[str, Any]]]:
        """(flow/deployment, schedule) for every deployment schedule on this stack's server."""
        flows = {f["id"]: f["name"] for f in self.api("/flows/filter", {})}
        deployments = self.api("/deployments/filter", {})
        return [(f"{flows[d['flow_id']]}/{d['name']}", s) for d in deployments for s in d["schedules"]]

    def schedule_lines(self) -> list[str]:
        return [schedule_line(name, schedule) for name, schedule in self.schedules()]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start_server(self, timeout_s: float = 90.0) -> str:
        if self.healthy():
            return f"prefect server: already answering at {self.api_url}"
        cmd = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        said = self._spawn("server", cmd)
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline or not self._alive("server"):
                log = (self.dir / "logs" / "server.log").read_text()[-2000:]
                raise RuntimeError(f"the Prefect server did not become healthy:\n{log}")
            time.sleep(0.5)
        return f"{said}; UI at http://127.0.0.1:{self.port}"

    def ensure_pools(self) -> list[str]:
        out = []
        for pool in POOLS:
            if self.prefect("work-pool", "inspect", pool, check=False).returncode == 0:
                out.append(f"work pool {pool}: exists")
            else:
                self.prefect("work-pool", "create", pool, "--type", "process")
                out.append(f"work pool {pool}: created (process)")
        return out

    def ensure_limits(self) -> list[str]:
        out = []
        for name, (limit, decay) in CONCURRENCY_LIMITS.items():
            if self.prefect("gcl", "inspect", name, check=False).returncode == 0:
                out.append(f"concurrency limit {name}: exists")
            else:
                self.prefect("gcl", "create", name, "--limit", str(limit), "--slot-decay-per-second", str(decay))
                out.append(f"concurrency limit {name}: created ({limit} slots, {decay}/s decay)")
        return out

    def start_workers(self, pools: tuple[str, ...] = POOLS) -> list[str]:
        return [
            self._spawn(
                f"worker-{pool}", [_bin("prefect"), "worker", "start", "--pool", pool, "--name", f"genreclf-{pool}"]
            )
            for pool in pools
        ]

    def start_s3(self, timeout_s: float = 30.0) -> str:
        import boto3
        import botocore.exceptions

        data = self.dir / "seaweedfs"
        data.mkdir(parents=True, exist_ok=True)
        ports_file = data / "ports.json"
        if not self._alive("seaweedfs") or not ports_file.exists():
            # S3 where asked; every other listener on a free port, so nothing else on the machine clashes.
            ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True)) | {"s3.port": self.s3_port}
            ports_file.write_text(json.dumps(ports))
        ports = json.loads(ports_file.read_text())
        cmd = weed_mini_command(data, ports)
        env = {**self.env, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
        said = self._spawn("seaweedfs", cmd, env)
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.create_bucket(Bucket=S3_BUCKET)
                return f"{said}; bucket {S3_BUCKET} created"
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return f"{said}; bucket {S3_BUCKET} exists"
            except botocore.exceptions.BotoCoreError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not answer on port {self.s3_port} in {timeout_s:.0f} s")
            time.sleep(0.2)

    # ---- whole stack --------------------------------------------------------------------------------------
    def up(self, *, s3: bool = False, gpu_worker: bool = True) -> list[str]:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        said = []
        if s3:
            said.append(self.start_s3())
            self.worker_env.update(self.s3_env())
        said.append(self.start_server())
        said += self.ensure_pools()
        said += self.ensure_limits()
        said.append(self.ensure_result_storage())
        said += self.start_workers(POOLS if gpu_worker else ("cpu",))
        return said + self.schedule_lines()  # deployed earlier: is anything going to run by itself?

    def deploy(self, prefect_file: Path | None = None) -> list[str]:
        """`prefect deploy --all` on this stack, the schedules it created then paused: here they run only when asked."""
        if not self.healthy():
            raise RuntimeError(f"no Prefect server answers at {self.api_url}: run `python -m infra.local_stack up`")
        before = {schedule["id"] for _, schedule in self.schedules()}  # a deploy replaces its deployments' schedules
        chosen = ["--prefect-file", str(prefect_file)] if prefect_file else []
        done = self.prefect("deploy", "--all", *chosen, check=False, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"prefect deploy --all failed:\n{(done.stdout + done.stderr)[-3000:]}")
        for name, schedule in self.schedules():
            if schedule["active"] and schedule["id"] not in before:
                self.prefect("deployment", "schedule", "pause", name, schedule["id"])
        said = f"deployments: {prefect_file or 'prefect.yaml'} deployed (prefect deploy --all)"
        return [said, *self.schedule_lines()]

    def ensure_result_storage(self) -> str:
        """Task results and cache records in the store (infra/result_storage.py), shared by every worker."""
        done = subprocess.run(
            [sys.executable, "-m", "infra.result_storage"], env=self.env, capture_output=True, text=True,
            check=False, timeout=120, cwd=self.project,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"could not save the result storage block:\n{done.stderr[-2000:]}")
        slug = done.stdout.strip().splitlines()[-1]
        self.worker_env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = slug
        return f"result storage: block {slug} (task results and cache keys in the store)"

    def s3_env(self) -> dict[str, str]:
        return {
            "GENRECLF_STORAGE_URL": f"s3://{S3_BUCKET}/genreclf",
            "GENRECLF_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "GENRECLF_S3_ACCESS_KEY": S3_ACCESS_KEY,
            "GENRECLF_S3_SECRET_KEY": S3_SECRET_KEY,
        }

    def down(self) -> list[str]:
        """Stop what `up` started, workers first (SIGINT lets them finish cleanly), by PID."""
        said = []
        pids = self._pids()
        for name in sorted(pids, key=lambda n: (not n.startswith("worker"), n)):
            if not self._alive(name):
                said.append(f"{name}: not running")
                continue
            pid = pids[name]
            first = signal.SIGINT if name.startswith("worker") else signal.SIGTERM
            processes.terminate(pid, 15.0, first=first, what=name)
            said.append(f"{name}: stopped (pid {pid})")
            if name == "seaweedfs" and (self.dir / "seaweedfs" / "ports.json").exists():
                remove_sockets(json.loads((self.dir / "seaweedfs" / "ports.json").read_text()))
        self._pids_path().unlink(missing_ok=True)
        return said

    def status(self) -> list[str]:
        said = [f"prefect server {self.api_url}: {'healthy' if self.healthy() else 'not answering'}"]
        said += [f"{n}: {'running' if self._alive(n) else 'stopped'} (pid {p})" for n, p in self._pids().items()]
        return said + (self.schedule_lines() if self.healthy() else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m infra.local_stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=("up", "deploy", "down", "status"))
    p.add_argument("--dir", type=Path, default=Path(".genreclf-local"), help="state: PIDs, logs, Prefect database")
    p.add_argument("--port", type=int, default=4200, help="Prefect server port")
    p.add_argument("--s3", action="store_true", help="also run SeaweedFS (S3 on loopback) and use it as the store")
    p.add_argument("--s3-port", type=int, default=8333)
    p.add_argument("--no-gpu-worker", action="store_true", help="do not start a worker for the gpu pool here")
    args = p.parse_args(argv)
    stack = LocalStack(dir=args.dir, port=args.port, s3_port=args.s3_port)
    if args.command == "up":
        lines = stack.up(s3=args.s3, gpu_worker=not args.no_gpu_worker)
        playlists = (stack.project / "configs" / "playlists.toml").exists()
        lines += ["", *next_steps(stack.api_url, s3_env=stack.s3_env() if args.s3 else {}, playlists=playlists)]
    elif args.command == "deploy":
        lines = stack.deploy()
    elif args.command == "down":
        lines = stack.down()
    else:
        lines = stack.status()
    for line in lines:
        print(line)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
