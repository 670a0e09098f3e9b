"""A Spotify Web API stand-in on loopback that speaks the real (2026) JSON, for tests and benchmarks.

It serves what genreclf uses: POST /api/token (client_credentials, refresh_token and authorization_code
grants, Basic client auth), GET /v1/playlists/{id} and GET /v1/playlists/{id}/items (paged by `limit` <= 50
and `offset`, absolute `next` URLs, the `fields` filter, entries under `item` with the older `track` beside
it), GET /v1/artists/{id}; and faults on demand: 429 with Retry-After, 5xx, slow answers, 401 for revoked
tokens, 404 for Spotify-owned editorial playlists. Every request is recorded.

    with SpotifyStandin() as api:
        api.add_playlist(StandinPlaylist(id=..., name=..., entries=[track_entry(make_track(...))]))
        api.fail("/v1/playlists/.*/items", status=429, times=2, retry_after=1)
        ... GENRECLF_SPOTIFY_API_URL=api.api_url, GENRECLF_SPOTIFY_TOKEN_URL=api.token_url ...
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

PAGE_MAX = 50


def spotify_id(prefix: str, n: int) -> str:
    """A deterministic 22-character base-62 id, e.g. spotify_id("pl", 3) == "pl00000000000000000003"."""
    return f"{prefix}{n:0>{22 - len(prefix)}}"


def make_track(
    track_id: str,
    name: str,
    artists: list[tuple[str, str]],
    *,
    isrc: str | None = None,
    duration_ms: int = 200_000,
    is_playable: bool | None = None,
) -> dict[str, Any]:
    """A full track object as the Web API returns it."""
    track: dict[str, Any] = {
        "album": {"album_type": "album", "id": spotify_id("al", 1), "name": "An Album"},
        "artists": [
            {
                "external_urls": {"spotify": f"https://open.spotify.com/artist/{aid}"},
                "href": f"https://api.spotify.com/v1/artists/{aid}",
                "id": aid,
                "name": aname,
                "type": "artist",
                "uri": f"spotify:artist:{aid}",
            }
            for aid, aname in artists
        ],
        "disc_number": 1,
        "duration_ms": duration_ms,
        "explicit": False,
        "external_ids": {"isrc": isrc} if isrc else {},
        "external_urls": {"spotify": f"https://open.spotify.com/track/{track_id}"},
        "href": f"https://api.spotify.com/v1/tracks/{track_id}",
        "id": track_id,
        "is_local": False,
        "name": name,
        "track_number": 1,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
    }
    if is_playable is not None:
        track["is_playable"] = is_playable
    return track


def track_entry(track: dict[str, Any] | None, *, added_at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """A playlist entry; `track=None` is a track removed from Spotify."""
    return {
        "added_at": added_at,
        "added_by": {"id": "owner", "type": "user", "uri": "spotify:user:owner"},
        "is_local": False,
        "item": track,
    }


def local_entry(title: str, artist: str) -> dict[str, Any]:
    """A local file the owner added from their disk: no id, no ISRC."""
    track = {
        "album": {"name": "", "id": None},
        "artists": [{"id": None, "name": artist, "type": "artist", "uri": None}],
        "duration_ms": 180_000,
        "external_ids": {},
        "id": None,
        "is_local": True,
        "name": title,
        "type": "track",
        "uri": f"spotify:local:{artist}::{title}:180",
    }
    return {**track_entry(track), "is_local": True}


def episode_entry(episode_id: str, name: str) -> dict[str, Any]:
    """A podcast episode in a playlist."""
    episode = {
        "description": "A podcast episode",
        "duration_ms": 1_800_000,
        "id": episode_id,
        "name": name,
        "type": "episode",
        "uri": f"spotify:episode:{episode_id}",
    }
    return track_entry(episode)


@dataclass
class StandinPlaylist:
    id: str
    name: str
    entries: list[dict[str, Any] | None]
    snapshot_id: str = "AAAAAQ+snapshot/1=="
    owner_id: str = "someone"
    # Spotify-owned editorial and algorithmic playlists answer 404 to development-mode apps.
    editorial: bool = False
    # Older responses carry the track under `track` only; 2026 responses under `item`, with `track` beside it.
    legacy_track_key: bool = False


@dataclass
class Fault:
    path: re.Pattern[str]
    status: int
    times: int
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class SpotifyStandin:
    """The stand-in server; start() / stop(), or use it as a context manager."""

    client_id: str = "standin-client"
    client_secret: str = "standin-secret"
    playlists: dict[str, StandinPlaylist] = field(default_factory=dict)
    artists: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=set)
    # authorization code -> redirect_uri it was issued for
    auth_codes: dict[str, str] = field(default_factory=dict)
    # Every API request is answered 401, however fresh its token (a broken app, a revoked grant).
    reject_all_tokens: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._revoked: set[str] = set()
        self._faults: list[Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> SpotifyStandin:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="spotify-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SpotifyStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running: call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1/"

    @property
    def token_url(self) -> str:
        return f"{self.url}/api/token"

    # -- content
    def add_playlist(self, playlist: StandinPlaylist) -> None:
        with self._lock:
            self.playlists[playlist.id] = playlist

    def add_artist(self, artist_id: str, name: str, genres: list[str]) -> None:
        with self._lock:
            self.artists[artist_id] = {
                "external_urls": {"spotify": f"https://open.spotify.com/artist/{artist_id}"},
                "genres": genres,
                "href": f"https://api.spotify.com/v1/artists/{artist_id}",
                "id": artist_id,
                "images": [],
                "name": name,
                "type": "artist",
                "uri": f"spotify:artist:{artist_id}",
            }

    def issue_auth_code(self, redirect_uri: str) -> str:
        """What Spotify's /authorize page hands the browser after the user agrees."""
        code = secrets.token_urlsafe(16)
        with self._lock:
            self.auth_codes[code] = redirect_uri
        return code

    # -- faults and observation
    def fail(
        self, path: str, *, status: int, times: int = 1, retry_after: float | None = None, delay_s: float = 0.0
    ) -> None:
        """Answer the next `times` requests whose path matches the regex `path` with `status` (after `delay_s`)."""
        with self._lock:
            self._faults.append(Fault(re.compile(path), status, times, retry_after, delay_s))

    def revoke_tokens(self) -> None:
        """Expire every access token issued so far: the next API request with one gets a 401."""
        with self._lock:
            self._revoked |= self._tokens
            self._tokens = set()

    def count(self, path: str, *, method: str = "GET") -> int:
        """How many requests matched the regex `path` (fully)."""
        pattern = re.compile(path)
        with self._lock:
            return sum(r.method == method and bool(pattern.fullmatch(r.path)) for r in self.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- request handling (called from server threads)
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.path.fullmatch(path):
                    fault.times -= 1
                    return fault
        return None

    def _record(self, method: str, path: str, query: dict[str, str], status: int) -> None:
        with self._lock:
            self.requests.append(Request(method, path, query, status))

    def _token(self, headers: Any, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        auth = headers.get("Authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            client_id, secret = "", ""
        if (client_id, secret) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client", "error_description": "Invalid client"}
        grant = form.get("grant_type")
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3600}
        with self._lock:
            if grant == "client_credentials":
                pass
            elif grant == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
                body["scope"] = "playlist-read-private playlist-read-collaborative"
            elif grant == "authorization_code":
                if self.auth_codes.pop(form.get("code", ""), None) != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant", "error_description": "Invalid authorization code"}
                refresh = secrets.token_urlsafe(24)
                self.refresh_tokens.add(refresh)
                body["refresh_token"] = refresh
                body["scope"] = form.get("scope", "")
            else:
                return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"}
            token = secrets.token_urlsafe(24)
            self._tokens.add(token)
        body["access_token"] = token
        return 200, body

    def _api(self, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, Any]]:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            valid, revoked = token in self._tokens, token in self._revoked
        if self.reject_all_tokens or not valid:
            message = "The access token expired" if revoked or self.reject_all_tokens else "Invalid access token"
            return 401, _error(401, message)
        if m := re.fullmatch(r"/v1/playlists/([0-9A-Za-z]{22})", path):
            playlist = self._playlist(m.group(1))
            if playlist is None:
                return 404, _error(404, "Resource not found")
            doc = self._playlist_object(playlist, query)
            return 200, _select(doc, query.get("fields"))
        if m := re.fullmatch(r"/v1/playlists/([0-9A-Za-z]{22})/items", path):
            playlist = self._playlist(m.group(1))
            if playlist is None:
                return 404, _error(404, "Resource not found")
            try:
                page = self._items_page(playlist, query)
            except ValueError as e:
                return 400, _error(400, str(e))
            return 200, _select(page, query.get("fields"))
        if m := re.fullmatch(r"/v1/artists/([0-9A-Za-z]{22})", path):
            with self._lock:
                artist = self.artists.get(m.group(1))
            return (200, artist) if artist else (404, _error(404, "Resource not found"))
        if re.fullmatch(r"/v1/(playlists|artists)/[^/]+(/items)?", path):
            return 400, _error(400, "Invalid base62 id")
        return 404, _error(404, "Service not found")

    def _playlist(self, playlist_id: str) -> StandinPlaylist | None:
        with self._lock:
            playlist = self.playlists.get(playlist_id)
        return None if playlist is None or playlist.editorial else playlist

    def _playlist_object(self, p: StandinPlaylist, query: dict[str, str]) -> dict[str, Any]:
        return {
            "collaborative": False,
            "description": "",
            "external_urls": {"spotify": f"https://open.spotify.com/playlist/{p.id}"},
            "href": f"{self.url}/v1/playlists/{p.id}",
            "id": p.id,
            "images": [],
            "name": p.name,
            "owner": {
                "display_name": p.owner_id.title(),
                "external_urls": {"spotify": f"https://open.spotify.com/user/{p.owner_id}"},
                "href": f"{self.url}/v1/users/{p.owner_id}",
                "id": p.owner_id,
                "type": "user",
                "uri": f"spotify:user:{p.owner_id}",
            },
            "public": True,
            "snapshot_id": p.snapshot_id,
            # The 2026 API renamed the playlist's `tracks` to `items`.
            "items": self._items_page(p, {**query, "limit": "100", "offset": "0"}, page_max=100),
            "type": "playlist",
            "uri": f"spotify:playlist:{p.id}",
        }

    def _items_page(self, p: StandinPlaylist, query: dict[str, str], page_max: int = PAGE_MAX) -> dict[str, Any]:
        try:
            limit, offset = int(query.get("limit", "20")), int(query.get("offset", "0"))
        except ValueError:
            raise ValueError("Invalid limit or offset") from None
        if not 1 <= limit <= page_max:
            raise ValueError("Invalid limit")
        if offset < 0:
            raise ValueError("Invalid offset")
        episodes = "episode" in query.get("additional_types", "").split(",")
        base = f"{self.url}/v1/playlists/{p.id}/items"
        keep = {k: v for k, v in query.items() if k in ("fields", "additional_types", "market")}

        def page_url(start: int) -> str:
            return f"{base}?{urlencode({'offset': start, 'limit': limit, **keep})}"

        end = offset + limit
        return {
            "href": page_url(offset),
            "items": [_entry_json(e, episodes=episodes, legacy=p.legacy_track_key) for e in p.entries[offset:end]],
            "limit": limit,
            "next": page_url(end) if end < len(p.entries) else None,
            "offset": offset,
            "previous": page_url(max(0, offset - limit)) if offset > 0 else None,
            "total": len(p.entries),
        }


def _entry_json(entry: dict[str, Any] | None, *, episodes: bool, legacy: bool) -> dict[str, Any] | None:
    if entry is None:
        return None
    obj = entry.get("item")
    if obj is not None and obj.get("type") == "episode" and not episodes:
        # A client that did not ask for episodes gets them dressed as tracks.
        obj = {**obj, "type": "track", "episode": True, "track": False}
    out = {k: v for k, v in entry.items() if k != "item"}
    if legacy:
        out["track"] = obj
    else:
        out["item"] = obj
        out["track"] = obj
    return out


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}}


# The `fields` filter: "a,b(c,d.e),f" keeps those keys; a list is filtered element by element.
def parse_fields(text: str) -> dict[str, Any]:
    pos = 0

    def parse_group() -> dict[str, Any]:
        nonlocal pos
        spec: dict[str, Any] = {}
        while pos < len(text):
            start = pos
            while pos < len(text) and text[pos] not in ",()":
                pos += 1
            name = text[start:pos].strip()
            sub: dict[str, Any] | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_group()
                pos += 1  # the closing ")"
            if name:
                *parents, leaf = name.split(".")
                node = spec
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = sub
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos < len(text) and text[pos] == ")":
                return spec
        return spec

    return parse_group()


def _apply(value: Any, spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return value
    if isinstance(value, list):
        return [_apply(v, spec) for v in value]
    if isinstance(value, dict):
        return {k: _apply(value[k], sub) for k, sub in spec.items() if k in value}
    return value


def _select(doc: dict[str, Any], fields: str | None) -> dict[str, Any]:
    return doc if not fields else _apply(doc, parse_fields(fields))


def _handler_for(api: SpotifyStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as api.spotify.com
        # Headers and body go out in two writes: without this, Nagle + delayed ACK stall each answer ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if method == "POST":
                # Record which grant a token request used (never the secrets that came with it).
                grant = parse_qs(raw.decode()).get("grant_type")
                query = {**query, "grant_type": grant[-1]} if grant else query
            fault = api._take_fault(parts.path)
            if fault is not None:
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                api._record(method, parts.path, query, fault.status)
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                message = {429: "API rate limit exceeded", 503: "Service unavailable"}.get(fault.status, "Error")
                if fault.status < 400:
                    status, body = self._route(method, parts.path, query, raw)
                    self._send(status, body)
                else:
                    self._send(fault.status, _error(fault.status, message), headers)
                return
            status, body = self._route(method, parts.path, query, raw)
            api._record(method, parts.path, query, status)
            self._send(status, body)

        def _route(self, method: str, path: str, query: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
            if method == "POST" and path == "/api/token":
                form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
                return api._token(self.headers, form)
            if method == "GET" and path.startswith("/v1/"):
                return api._api(path, query, self.headers)
            return 405, _error(405, "Method not allowed")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler
