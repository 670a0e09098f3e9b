"""`genreclf doctor`: what genreclf needs on this machine, one check per requirement, each ok or not with the fix.

Each check looks at the real thing: ffmpeg's own decoder list, yt-dlp's own view of its JavaScript runtime and
challenge solver, a token from the configured Spotify endpoint, a probe written to and read back from the store, the
Prefect API's /health, torch's device. Nothing here changes anything but the store's probe key, deleted after.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Literal

from genreclf.errors import GenreclfError
from genreclf.settings import Settings, get_settings

Status = Literal["ok", "warn", "fail", "skip"]
# Decoders the catalogs people have need: ffmpeg builds without one of them fail on those files only.
NEEDED_DECODERS = {"mp3": ("mp3float", "mp3"), "aac": ("aac",), "opus": ("opus", "libopus"),
                   "vorbis": ("vorbis", "libvorbis"), "flac": ("flac",)}  # fmt: skip
YTDLP_MAX_AGE_DAYS = 60  # YouTube changes under yt-dlp every few weeks; an older one breaks first


@dataclass(frozen=True)
class Check:
    name: str
    status: Status  # ok; warn: works, with a caveat; fail: needed and missing; skip: not set up, needed for some uses
    detail: str  # what was found
    fix: str = ""  # what to do, when not ok

    def line(self, width: int = 12) -> str:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "--  "}[self.status]
        fix = f"\n      {'':<{width}} fix: {self.fix}" if self.fix else ""
        return f"{mark}  {self.name:<{width}} {self.detail}{fix}"


def run_checks(
    settings: Settings | None = None, *, store_url: str | None = None, today: date | None = None
) -> list[Check]:
    """Every check, in the order of the data's path; a check that raises is reported as failed, not fatal.
    `today` dates yt-dlp's age (default: today)."""
    settings = settings or get_settings()
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("ffmpeg", check_ffmpeg),
        ("yt-dlp", lambda: check_ytdlp_age(today or date.today())),
        ("javascript", lambda: check_js_runtime(settings)),
        ("spotify", lambda: check_spotify(settings)),
        ("store", lambda: check_store(settings, store_url)),
        ("prefect", check_prefect),
        ("device", lambda: check_device(settings)),
        ("weights", check_weights),
    ]
    found = []
    for name, check in checks:
        try:
            found.append(check())
        except Exception as e:  # a check's own failure is a finding, and the others still run
            found.append(Check(name, "fail", f"the check itself failed: {type(e).__name__}: {e}"))
    return found


def to_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not failed(checks), "checks": [asdict(c) for c in checks]}, indent=2)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


# ---- the checks ----------------------------------------------------------------------------------------------
def check_ffmpeg() -> Check:
    exe = shutil.which("ffmpeg")
    fix = "install ffmpeg (Debian/Ubuntu: apt-get install -y ffmpeg; macOS: brew install ffmpeg)"
    if exe is None:
        return Check("ffmpeg", "fail", "not on PATH: audio other than WAV, FLAC and Ogg cannot be decoded", fix)
    version = _run([exe, "-hide_banner", "-version"]).split("\n", 1)[0]
    listed = _run([exe, "-hide_banner", "-decoders"])
    decoders = {m.group(1) for m in re.finditer(r"^ A\S* (\S+)", listed, re.MULTILINE)}
    missing = [codec for codec, names in NEEDED_DECODERS.items() if not decoders.intersection(names)]
    found = version.removeprefix("ffmpeg version ").split(" ", 1)[0]
    if missing:
        return Check("ffmpeg", "fail", f"{found} at {exe} cannot decode {', '.join(missing)}",
                     f"install an ffmpeg built with those decoders; {fix}")  # fmt: skip
    return Check("ffmpeg", "ok", f"{found} at {exe}; decodes {', '.join(NEEDED_DECODERS)}")


def check_ytdlp_age(today: date) -> Check:
    from yt_dlp.version import __version__

    released = ytdlp_release_date(__version__)
    fix = "pip install -U 'yt-dlp[default]' (YouTube changes often; new yt-dlp releases follow it)"
    if released is None:
        return Check("yt-dlp", "warn", f"{__version__}: not a dated release, its age is unknown", fix)
    age = (today - released).days
    if age > YTDLP_MAX_AGE_DAYS:
        return Check("yt-dlp", "warn", f"{__version__} is {age} days old; YouTube may have changed since", fix)
    return Check("yt-dlp", "ok", f"{__version__} ({age} days old)")


def ytdlp_release_date(version: str) -> date | None:
    """yt-dlp's versions are release dates: 2026.11.23, or 2026.11.23.123456 for nightly builds."""
    m = re.match(r"(\d{4})\.(\d{1,2})\.(\d{1,2})", version)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def check_js_runtime(settings: Settings) -> Check:
    from genreclf.sources import youtube_js

    found = youtube_js.challenge_solver(settings.youtube)
    if found.ok:
        return Check("javascript", "ok", found.detail)
    return Check("javascript", "fail", found.detail, found.fix)


def check_spotify(settings: Settings) -> Check:
    import os

    if not (os.environ.get("SPOTIPY_CLIENT_ID") and os.environ.get("SPOTIPY_CLIENT_SECRET")):
        missing = "no app credentials (SPOTIPY_CLIENT_ID, SPOTIPY_CLIENT_SECRET): needed only to ingest playlists"
        return Check("spotify", "skip", missing, "create an app at developer.spotify.com and export both")
    from genreclf.sources.spotify.auth import connect

    try:
        client = connect(settings=settings, timeout_s=10.0)
        client.artist("0TnOYISbd1XYRBk9myaseg")  # any artist: the API answers an authorized request
    except GenreclfError as e:
        fix = "check SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (the app's settings page shows both)"
        return Check("spotify", "fail", f"{settings.spotify_token_url}: {e}", fix)
    return Check("spotify", "ok", f"token from {settings.spotify_token_url}; {settings.spotify_api_url} answers")


def check_store(settings: Settings, store_url: str | None) -> Check:
    from genreclf.store.storage import Store

    url = store_url or settings.storage_url
    try:
        store = Store.open(url, settings, record_format=False)
        key = f".doctor/{uuid.uuid4().hex}"
        body = datetime.now(UTC).isoformat().encode()
        store.write_bytes(key, body)
        try:
            if store.read_bytes(key) != body:
                return Check("store", "fail", f"{store.url}: a probe read back other bytes than were written",
                             "check the storage server")  # fmt: skip
        finally:
            store.delete(key)
    except (GenreclfError, OSError) as e:
        return Check("store", "fail", f"{url}: cannot write and read back a probe: {e}",
                     "set GENRECLF_STORAGE_URL (or --store) to a writable folder or bucket")  # fmt: skip
    return Check("store", "ok", f"{store.url}: writable")


def check_prefect() -> Check:
    import os

    from genreclf.app import prefect_setup

    url = os.environ.get("PREFECT_API_URL")
    if url:
        if prefect_setup._healthy(url, timeout_s=5.0):
            return Check("prefect", "ok", f"PREFECT_API_URL {url} answers")
        fix = "start that server, or unset PREFECT_API_URL (each command then starts a temporary one)"
        return Check("prefect", "fail", f"PREFECT_API_URL {url} does not answer /health", fix)
    running = prefect_setup.running_server_url()
    if running:
        return Check("prefect", "ok", f"the server `genreclf server start` left at {running} answers")
    return Check("prefect", "ok", "no server running: each command starts a temporary one (15-25 s); "
                 "`genreclf server start` keeps one for later commands")  # fmt: skip


def check_device(settings: Settings) -> Check:
    import torch

    from genreclf.models.inference import resolve_device

    try:
        device = resolve_device()
    except GenreclfError as e:
        return Check("device", "fail", str(e), "set GENRECLF_DEVICE to a device this machine has, or unset it")
    if device.type != "cuda":
        where = "GENRECLF_DEVICE" if settings.device else "no CUDA device"
        return Check("device", "ok", f"{device.type} ({where}); training runs there, slower than on a GPU")
    name = torch.cuda.get_device_name(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    bf16 = torch.cuda.is_bf16_supported()
    found = f"{device} {name}; CUDA {torch.version.cuda}, cuDNN {cudnn or 'missing'}, bf16 {'yes' if bf16 else 'no'}"
    return Check("device", "ok" if cudnn else "warn", found, "" if cudnn else "install a torch build with cuDNN")


def check_weights() -> Check:
    from genreclf.models import weights

    found = weights.status("musicnn-msd")
    if found["ok"]:
        return Check("weights", "ok", f"musicnn-msd at {found['path']}")
    return Check("weights", "warn", f"musicnn-msd {found['why']}: runs train ResNet-18 from scratch (less accurate)",
                 "genreclf weights fetch")  # fmt: skip


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout
