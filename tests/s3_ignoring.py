"""An S3 stand-in on loopback that ignores If-None-Match and If-Match, as some S3-compatible servers do.

It speaks, path-style and without checking signatures, what boto3 and pyarrow's S3FileSystem send for a genreclf
store: HEAD of the bucket, ListObjectsV2 (prefix, delimiter), ListMultipartUploads (none), PUT (and CopyObject),
GET (and Range), HEAD and DELETE of an object, and multipart uploads (pyarrow's every write, its body in HTTP
chunks of aws-chunked data). Objects live in a dict; every request is recorded as `(method, key)`.

    with IgnoringS3() as s3:
        store = Store.open(f"s3://{s3.bucket}/p", settings=Settings(s3_endpoint_url=s3.endpoint_url, ...))
"""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape


@dataclass
class _Object:
    data: bytes
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def etag(self) -> str:
        return f'"{hashlib.md5(self.data).hexdigest()}"'  # the ETag of an object put whole, as S3 gives it


def _xml(tag: str, inner: str) -> bytes:
    namespace = "http://s3.amazonaws.com/doc/2006-03-01/"
    return f'<?xml version="1.0" encoding="UTF-8"?><{tag} xmlns="{namespace}">{inner}</{tag}>'.encode()


@dataclass
class IgnoringS3:
    bucket: str = "ignoring"
    objects: dict[str, _Object] = field(default_factory=dict)
    uploads: dict[str, dict[int, bytes]] = field(default_factory=dict)  # upload id: its parts by number
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="s3-ignoring")
        self._thread.daemon = True

    def __enter__(self) -> IgnoringS3:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def list_objects(self, prefix: str, delimiter: str) -> bytes:
        """ListObjectsV2's answer: all of it in one page."""
        with self.lock:
            found = sorted((k, o) for k, o in self.objects.items() if k.startswith(prefix))
        contents, prefixes = "", set()
        for key, obj in found:
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                prefixes.add(key[: cut + len(delimiter)])
                continue
            contents += (
                f"<Contents><Key>{escape(key)}</Key><LastModified>{obj.modified.isoformat()}</LastModified>"
                f"<ETag>{escape(obj.etag)}</ETag><Size>{len(obj.data)}</Size></Contents>"
            )
        common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in sorted(prefixes))
        return _xml(
            "ListBucketResult",
            f"<Name>{self.bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(found)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}{common}",
        )


def _dechunk(stream: BinaryIO) -> bytes:
    """The data of `<hex size>[;extension]\\r\\n<bytes>\\r\\n` chunks, up to the `0` one and its trailers."""
    data = b""
    while size := int(stream.readline().split(b";")[0], 16):
        data += stream.read(size)
        stream.readline()
    while stream.readline().strip():
        pass
    return data


def _handler(s3: IgnoringS3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _target(self) -> tuple[str, str, dict[str, str]]:
            url = urlsplit(self.path)
            bucket, _, key = unquote(url.path).lstrip("/").partition("/")
            s3.requests.append((self.command, key))
            return bucket, key, {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": "application/xml", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str) -> None:
            self._send(status, f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode())

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = _dechunk(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            return _dechunk(io.BytesIO(body)) if self.headers.get("Content-Encoding") == "aws-chunked" else body

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            bucket, key, query = self._target()
            if bucket != s3.bucket:
                return self._error(404, "NoSuchBucket")
            if not key and "uploads" in query:
                return self._send(200, _xml("ListMultipartUploadsResult", "<IsTruncated>false</IsTruncated>"))
            if not key:
                return self._send(200, s3.list_objects(query.get("prefix", ""), query.get("delimiter", "")))
            with s3.lock:
                obj = s3.objects.get(key)
            if obj is None:
                return self._error(404, "NoSuchKey")
            data, status = obj.data, 200
            headers = {"ETag": obj.etag, "Last-Modified": format_datetime(obj.modified, usegmt=True),
                       "Content-Type": "application/octet-stream"}  # fmt: skip
            if ranged := self.headers.get("Range"):  # `bytes=first-last`
                first, _, last = ranged.removeprefix("bytes=").partition("-")
                end = min(int(last) + 1 if last else len(data), len(data))
                headers["Content-Range"] = f"bytes {first}-{end - 1}/{len(data)}"
                data, status = data[int(first) : end], 206
            self._send(status, data, headers)

        def do_PUT(self) -> None:
            bucket, key, query = self._target()
            body = self._body()  # read whatever the answer: the connection is kept
            if bucket != s3.bucket:
                return self._error(404, "NoSuchBucket")
            # If-None-Match and If-Match go unread: what this stand-in is for.
            source = self.headers.get("x-amz-copy-source")
            with s3.lock:
                if "uploadId" in query:  # UploadPart
                    s3.uploads[query["uploadId"]][int(query["partNumber"])] = body
                    return self._send(200, headers={"ETag": _Object(body).etag})
                if source:  # CopyObject
                    copied = s3.objects.get(unquote(source).lstrip("/").partition("/")[2])
                    if copied is None:
                        return self._error(404, "NoSuchKey")
                    body = copied.data
                obj = s3.objects[key] = _Object(body)
            if source:
                done = f"<ETag>{escape(obj.etag)}</ETag><LastModified>{obj.modified.isoformat()}</LastModified>"
                return self._send(200, _xml("CopyObjectResult", done))
            self._send(200, headers={"ETag": obj.etag})

        def do_POST(self) -> None:
            _, key, query = self._target()
            self._body()  # CompleteMultipartUpload's list of parts: all of them, as pyarrow sends it
            with s3.lock:
                if "uploads" in query:  # CreateMultipartUpload
                    upload_id = uuid.uuid4().hex
                    s3.uploads[upload_id] = {}
                    return self._send(200, _xml("InitiateMultipartUploadResult", f"<UploadId>{upload_id}</UploadId>"))
                parts = s3.uploads.pop(query["uploadId"])
                obj = s3.objects[key] = _Object(b"".join(data for _, data in sorted(parts.items())))
            self._send(200, _xml("CompleteMultipartUploadResult", f"<ETag>{escape(obj.etag)}</ETag>"))

        def do_DELETE(self) -> None:
            _, key, query = self._target()
            with s3.lock:
                if "uploadId" in query:  # AbortMultipartUpload
                    s3.uploads.pop(query["uploadId"], None)
                else:
                    s3.objects.pop(key, None)
            self._send(204)

    return Handler
