"""A real S3 server for tests: SeaweedFS `weed mini` on loopback, every port its own, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from infra.seaweedfs import PORT_FLAGS, free_ports, remove_sockets, weed_mini_command

ACCESS_KEY = "genreclf-test"
SECRET_KEY = "genreclf-test-secret"
BUCKET = "genreclf-test"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str

    def client(self, secret_key: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
        )


@contextlib.contextmanager
def seaweedfs(directory: Path, *, timeout_s: float = 30.0) -> Iterator[S3Server]:
    """Run `weed mini` with its data in `directory`; yield once a bucket is created, stop it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    cmd = weed_mini_command(directory, ports)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log_path = directory / "weed.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", ACCESS_KEY, SECRET_KEY, BUCKET)
    try:
        _create_bucket_when_ready(server, proc, log_path, timeout_s)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        remove_sockets(ports)


def _create_bucket_when_ready(
    server: S3Server, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
            pass
        except botocore.exceptions.ClientError as e:
            # Up, but the filer may still be joining the master for a moment.
            if e.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"weed mini not ready after {timeout_s:.0f} s:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the session (ready in ~1 s); tests share its bucket under their own prefixes."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
