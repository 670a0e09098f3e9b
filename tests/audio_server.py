"""A loopback HTTP server that serves real encoded audio (made with ffmpeg at test time) for yt-dlp's generic extractor.

It serves files (with Range requests, so yt-dlp can resume a `.part`), a search endpoint that answers with an RSS
feed of candidates (yt-dlp's generic extractor reads RSS as a playlist: title, itunes:duration, enclosure URL,
guid as id), and faults on demand: a status (404, 429 with Retry-After, 503) a number of times, a response
truncated to half its bytes then dropped, a response that stalls after half its bytes until released, a slow
response. Every request is counted.

    with AudioServer() as srv:
        srv.add_file("/a.mp3", make_audio(tmp_path / "a.mp3", seconds=3))
        srv.add_search("Artist Song", [SearchHit("Artist - Song (Official Audio)", "/a.mp3", 3.0)])
        srv.fail("/a.mp3", status=503, times=1)
        ... GENRECLF_YOUTUBE_SEARCH=srv.search_template ...
        srv.count("/a.mp3")
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

Mode = Literal["status", "truncate", "stall", "slow"]
CONTENT_TYPES = {".mp3": "audio/mpeg", ".webm": "audio/webm", ".m4a": "audio/mp4", ".opus": "audio/ogg"}


def make_audio(
    path: Path,
    *,
    seconds: float = 3.0,
    freq: float = 440.0,
    sr: int = 44_100,
    channels: int = 2,
    source: str | None = None,
    codec_args: tuple[str, ...] = (),
) -> Path:
    """Encode a tone (or any lavfi `source`) with ffmpeg; the container and codec follow the file's extension."""
    src = source or f"sine=frequency={freq}:sample_rate={sr}:duration={seconds}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-ac", str(channels)]
    if path.suffix == ".webm":
        cmd += ["-c:a", "libopus"]
    cmd += [*codec_args, str(path)]
    subprocess.run(cmd, check=True)
    return path


@dataclass
class SearchHit:
    """One candidate the search endpoint lists: a title, the path of its audio, its duration (None: not given)."""

    title: str
    path: str
    duration_s: float | None
    video_id: str = ""


@dataclass
class Fault:
    mode: Mode
    times: int
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    after: int = 0  # let this many requests through first (yt-dlp's generic extractor GETs a file, then downloads)


@dataclass
class AudioServer:
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    searches: dict[str, list[SearchHit]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    bytes_sent: Counter[str] = field(default_factory=Counter)
    range_starts: list[tuple[str, int]] = field(default_factory=list)  # (path, first byte) of Range requests
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def start(self) -> AudioServer:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="audio-server")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> AudioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def search_template(self) -> str:
        """The search setting that points genreclf at this server (`{n}` candidates for `{query}`)."""
        return f"{self.base}/search?n={{n}}&q={{query}}"

    def url(self, path: str) -> str:
        return self.base + path

    def add_file(self, path: str, data: bytes | Path, content_type: str | None = None) -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        ctype = content_type or CONTENT_TYPES.get(Path(path).suffix, "application/octet-stream")
        self.files[path] = (body, ctype)
        return self.url(path)

    def add_search(self, query: str, hits: list[SearchHit]) -> None:
        """Answer searches whose query contains `query` (case-insensitive) with these hits, in this order."""
        self.searches[query.lower()] = hits

    def fail(
        self, path: str, *, mode: Mode = "status", times: int = 1, status: int = 500, after: int = 0, **kw: float
    ) -> None:
        with self._lock:
            self._faults.setdefault(path, []).append(Fault(mode, times, status, after=after, **kw))

    def count(self, path: str) -> int:
        return self.requests[path]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults.get(path, []):
                if f.times > 0 and f.after > 0:
                    f.after -= 1
                    return None
                if f.times > 0:
                    f.times -= 1
                    return f
        return None

    def rss(self, query: str, n: int) -> bytes:
        hits: list[SearchHit] = []
        for key, found in self.searches.items():
            if key in query.lower():
                hits = found
                break
        items = []
        for i, h in enumerate(hits[:n]):
            vid = h.video_id or f"vid{i}-{re.sub(r'[^a-z0-9]+', '', h.path.lower())}"
            dur = f"<itunes:duration>{h.duration_s:.0f}</itunes:duration>" if h.duration_s is not None else ""
            ctype = CONTENT_TYPES.get(Path(h.path).suffix, "audio/mpeg")
            items.append(
                f"<item><title>{escape(h.title)}</title><guid>{escape(vid)}</guid>"
                f'<enclosure url="{escape(self.url(h.path))}" type="{ctype}" length="0"/>{dur}</item>'
            )
        date = format_datetime(datetime(2026, 1, 1, tzinfo=UTC))
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
            f"<title>results for {escape(query)}</title><link>{self.base}</link><pubDate>{date}</pubDate>"
            + "".join(items)
            + "</channel></rss>"
        ).encode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients (yt-dlp's probe, a killed download) hang up mid-response: expected here


def _handler(srv: AudioServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, *, head: bool) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            if not head:
                with srv._lock:
                    srv.requests[path] += 1
            fault = srv._take_fault(path) if not head else None
            if fault and fault.mode == "status":
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                self._send(fault.status, b"fault", "text/plain", headers)
                return
            if fault and fault.mode == "slow":
                time.sleep(fault.delay_s)
            if path == "/search":
                q = parse_qs(parts.query)
                body = srv.rss(q.get("q", [""])[0], int(q.get("n", ["5"])[0]))
                self._send(200, body, "application/rss+xml")
                return
            if path == "/page.html":
                body = b"<html><head><title>A page</title></head><body><p>No media here.</p></body></html>"
                self._send(200, body, "text/html")
                return
            if path not in srv.files:
                self._send(404, b"not found", "text/plain")
                return
            body, ctype = srv.files[path]
            start = 0
            m = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m and int(m.group(1)) < len(body):
                start = int(m.group(1))
                with srv._lock:
                    srv.range_starts.append((path, start))
            chunk = body[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", ctype)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if head:
                return
            if fault and fault.mode in ("truncate", "stall"):
                half = chunk[: len(chunk) // 2]
                self.wfile.write(half)
                self.wfile.flush()
                with srv._lock:
                    srv.bytes_sent[path] += len(half)
                if fault.mode == "stall":
                    srv.stalled.set()
                    srv.release.wait(30)
                self.close_connection = True
                return
            self.wfile.write(chunk)
            with srv._lock:
                srv.bytes_sent[path] += len(chunk)

    return Handler
