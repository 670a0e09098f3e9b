"""From a catalog row to decoded mono FLAC in the store, with provenance and segment offsets, or a quarantine reason.

Where the audio comes from depends on the row's `audio_uri`: a local path, `file://` or `s3://` URI is decoded
as it is; an `http(s)://` URL is downloaded with yt-dlp (its generic extractor for a direct file, YouTube's for a
watch URL); none (a Spotify track) is searched for with yt-dlp, the candidates ranked against the track's title,
artists and duration (genreclf.sources.youtube), and the best one downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from genreclf import interrupts
from genreclf.acquisition import audio
from genreclf.acquisition.audio import SegmentConfig
from genreclf.acquisition.handoff import DecodedAudio
from genreclf.errors import AudioError, BotCheckError, SourceError, TransientSourceError
from genreclf.store.filesystems import filesystem_for
from genreclf.store.keys import audio_key, content_id, failure_key, sidecar_key
from genreclf.store.storage import Store

if TYPE_CHECKING:
    from genreclf.ingest.catalog import CatalogRow
    from genreclf.sources.youtube import Download
    from genreclf.sources.youtube_config import YoutubeConfig

log = logging.getLogger(__name__)

# A context manager entered around every network request (search, download): the Prefect layer passes one that
# takes a slot of a global rate limit and a concurrency limit. The library itself never waits on anything.
Gate = Callable[[], AbstractContextManager[object]]

# Part of every remembered failure's key: raise it when a fix may turn failures into tracks, so reruns try again.
FAILURE_RECORD_VERSION = 1


@dataclass
class TrackResult:
    """What acquiring one track gave: segment offsets (seconds) when it worked, a stage and reason when not."""

    track_id: str
    ok: bool
    offsets: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    stage: str = ""
    reason: str = ""
    audio_key: str = ""  # where the decoded audio is in the store
    audio_hash: str = ""  # sha256 of the decoded samples: the same recording gives the same hash

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class _Failed(Exception):
    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return Path(urlparse(uri).path)
    return Path(uri) if scheme == "" or len(scheme) == 1 else None


def content_hash_of(row: CatalogRow) -> str | None:
    """The sha256 of the row's audio file: the catalog's, else read from a local file, else None (the audio is
    found or fetched at acquisition and stored under the track id)."""
    if row.get("content_hash"):
        return str(row["content_hash"])
    path = _local_path(row.get("audio_uri"))
    if path is not None and path.is_file():
        from genreclf.sources.local import file_sha256

        return file_sha256(path)
    return None


def is_remote(uri: str | None) -> bool:
    """True when the audio has to be found or downloaded (no URI, or an http(s) URL)."""
    return not uri or urlparse(uri).scheme in ("http", "https")


@contextlib.contextmanager
def _stage(stage: str, name: str) -> Iterator[None]:
    """Name the stage of a permanent failure; transient ones pass through for a retry."""
    try:
        yield
    except TransientSourceError:
        raise
    except (AudioError, SourceError) as e:
        reason = str(e) if str(e).startswith(name) else f"{name}: {e}"
        raise _Failed(stage, reason) from e


def fetch_audio(uri: str, name: str, sr: int, max_seconds: float) -> np.ndarray:
    """Decode the audio at a local path, file:// or s3:// URI."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        path = urlparse(uri).path if scheme == "file" else uri
        return audio.decode(path, sr=sr, max_seconds=max_seconds, name=name)
    if scheme == "s3":
        fs, path = filesystem_for(uri)
        try:
            with fs.open_input_stream(path) as f:
                data = bytes(f.read())
        except FileNotFoundError as e:
            raise SourceError(f"{name}: {uri} does not exist") from e
        return audio.decode(data, sr=sr, max_seconds=max_seconds, name=name)
    raise SourceError(f"{name}: cannot read audio from {uri!r}; give a local path, file://, s3:// or http(s) URL")


def _youtube_config() -> YoutubeConfig:
    from genreclf.settings import get_settings

    return get_settings().youtube


def _audio_format() -> str:
    from genreclf.settings import get_settings

    return get_settings().audio_format


def _scratch_root() -> Path:
    from genreclf.settings import get_settings

    return get_settings().cache_dir / "downloads"


def _provenance(dl: Download, **extra: Any) -> dict[str, Any]:
    from genreclf.sources.youtube import YT_DLP_VERSION

    return {
        "source_url": dl.source_url,
        "video_id": dl.video_id,
        "title": dl.title,
        "duration_s": dl.duration_s,
        "extractor": dl.extractor,
        "yt_dlp_version": YT_DLP_VERSION,
        **extra,
    }


def _download_url(url: str, name: str, *, yt: YoutubeConfig, scratch: Path, gate: Gate) -> tuple[Path, dict[str, Any]]:
    from genreclf.sources import youtube

    with _stage("download", name), gate():
        dl = youtube.download(url, scratch, cfg=yt)
    return dl.path, _provenance(dl, match_score=None)


def _search_and_download(
    row: CatalogRow, name: str, *, yt: YoutubeConfig, scratch: Path, gate: Gate
) -> tuple[Path, dict[str, Any], float | None]:
    """Search for the track, rank the results and download the best one that downloads.

    Returns the file, its provenance, and the duration still to check after decoding (when the chosen result
    did not say how long it is).
    """
    from genreclf.sources import youtube

    title = (row.get("title") or "").strip()
    artists = [a for a in row.get("artists") or [] if a]
    if not title:
        raise _Failed("search", f"{name}: no title to search for; give the row an audio_uri or a title")
    expected = row.get("duration_s")
    query = youtube.search_query(title=title, artists=artists)
    with _stage("search", name), gate():
        candidates = youtube.search(query, cfg=yt)
    matches = youtube.rank_candidates(candidates, title=title, artists=artists, duration_s=expected, cfg=yt)
    accepted = [m for m in matches if m.accepted]
    if not accepted:
        raise _Failed("match", f"{name}: {youtube.describe_rejections(matches, query=query)}")
    failures = []
    for m in accepted:
        try:
            with _stage("download", name), gate():
                dl = youtube.download(m.candidate.url, scratch, cfg=yt)
        except _Failed as e:  # unavailable, blocked: the next candidate may do
            log.info("%s: candidate %s failed (%s); trying the next", name, m.candidate.video_id, e.reason)
            failures.append(f"{m.candidate.video_id}: {e.reason.removeprefix(name + ': ')}")
            continue
        prov = _provenance(
            dl,
            title=m.candidate.title,
            duration_s=m.candidate.duration_s if m.candidate.duration_s is not None else dl.duration_s,
            match_score=round(m.score, 4),
            query=query,
            candidates=[x.to_dict() for x in matches],
        )
        prov["video_id"] = m.candidate.video_id or dl.video_id
        check = expected if m.candidate.duration_s is None and dl.duration_s is None else None
        return dl.path, prov, check
    raise _Failed("download", f"{name}: every acceptable candidate failed to download ({'; '.join(failures)})")


def _acquire_audio(
    row: CatalogRow, name: str, *, cfg: SegmentConfig, yt: YoutubeConfig | None, scratch: Path, gate: Gate
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decoded audio and the sidecar's provenance for a row that is not in the store yet."""
    uri = row.get("audio_uri")
    check: float | None = None
    if uri and not is_remote(uri):
        path = _local_path(uri)
        if row.get("content_hash") and path is not None and path.is_file():
            from genreclf.sources.local import file_sha256

            if file_sha256(path) != row["content_hash"]:
                raise _Failed("decode", f"{name}: {path} changed since the catalog was made; scan the folder again")
        with _stage("decode", name):
            y = fetch_audio(uri, name, cfg.sample_rate, cfg.max_seconds)
        return y, {"source_uri": uri, "content_hash": row.get("content_hash")}
    yt = yt or _youtube_config()
    if uri:
        path, prov = _download_url(uri, name, yt=yt, scratch=scratch, gate=gate)
    else:
        path, prov, check = _search_and_download(row, name, yt=yt, scratch=scratch, gate=gate)
    with _stage("decode", name):
        y = audio.decode(path, sr=cfg.sample_rate, max_seconds=cfg.max_seconds, name=name)
    seconds = len(y) / cfg.sample_rate
    if check and seconds < cfg.max_seconds - 1:
        tol = yt.tolerance(check)
        if abs(seconds - check) > tol:
            raise _Failed(
                "match",
                f"{name}: downloaded {prov['video_id']} is {seconds:.0f} s, the track {check:.0f} s "
                f"(tolerance {tol:.0f} s); not the same recording",
            )
    prov["source_uri"] = prov["source_url"]
    return y, prov


def acquire_track(
    store: Store,
    row: CatalogRow,
    *,
    cfg: SegmentConfig,
    yt: YoutubeConfig | None = None,
    scratch_dir: Path | None = None,
    gate: Gate | None = None,
    handoff: DecodedAudio | None = None,
    audio_format: str | None = None,
) -> TrackResult:
    """Bring a track's audio into `audio/<track_id>.flac` (once) and find its usable windows.

    The audio is stored as `audio_format` (default: the `audio_format` setting): FLAC, or WAV (`.wav`), the same
    samples. Audio already stored in the other format is reused as it is.

    Idempotent and resumable: a track whose FLAC and sidecar exist is neither fetched nor decoded again (only
    segmented, for a new SegmentConfig). Downloads go to `scratch_dir/<track_id>/` (default
    `$GENRECLF_CACHE_DIR/downloads`) as yt-dlp `.part` files renamed when complete; the FLAC is written
    atomically, the sidecar after it, so a run killed anywhere leaves nothing a rerun takes as done.

    Audio longer than `cfg.max_seconds` is cut there (the sidecar says `truncated_at_s`). A track that cannot be
    had (no search result within tolerance, unavailable, blocked, 404, not media) or is unusable (corrupt, empty,
    no audio stream, too short, silent) gives a quarantined result with its stage and reason. Transient faults
    (HTTP 429/5xx, timeouts, dropped connections) are retried with backoff, then raise TransientSourceError.

    The samples of a usable track decoded here go to `handoff`, for the shard that computes its features next.
    """
    interrupts.check()  # a batch takes minutes: a Ctrl-C must not wait for it
    tid = row["track_id"]
    name = f"track {tid} ({row.get('source_ref') or row.get('title') or row.get('audio_uri') or 'untitled'})"
    scratch = (scratch_dir or _scratch_root()) / tid
    fkey = failure_key(_inputs_fingerprint(row, cfg, yt))
    if store.exists(fkey):  # failed before with these very inputs (a 404, no match, a corrupt file)
        failed = store.read_json(fkey)
        return TrackResult(tid, False, stage=failed["stage"], reason=failed["reason"])
    try:
        content = content_hash_of(row)
        side_key = sidecar_key(tid, content)
        side = _stored_sidecar(store, tid, content, cfg)
        fmt = _stored_format(side) if side is not None else (audio_format or _audio_format())
        akey = audio_key(tid, content, fmt)
        y: np.ndarray | None = None
        if side is not None:
            if "audio_sha256" not in side:  # stored by an older genreclf: fingerprint it once
                y, _ = audio.read_stored(store.read_bytes(akey))
                side["audio_sha256"] = audio.pcm_sha256(y)
                store.write_json(side_key, side)
            if cfg.hash in side["segments"]:
                return _result(tid, side, akey, side["segments"][cfg.hash])
            if cfg.hash in side.get("unusable", {}):
                stage, reason = side["unusable"][cfg.hash]
                return TrackResult(tid, False, stage=stage, reason=reason)
            if y is None:
                y, _ = audio.read_stored(store.read_bytes(akey))
        else:
            y, prov = _acquire_audio(row, name, cfg=cfg, yt=yt, scratch=scratch, gate=gate or contextlib.nullcontext)
            y, side = _store_audio(store, akey, tid, name, y, prov, cfg=cfg, fmt=fmt)
            shutil.rmtree(scratch, ignore_errors=True)
        try:
            with _stage("segment", name):
                offsets = [start / cfg.sample_rate for start in audio.usable_starts(y, cfg=cfg)]
        except _Failed as e:
            # The audio is stored: remember why it is unusable under this config, so a rerun fetches nothing.
            side.setdefault("unusable", {})[cfg.hash] = [e.stage, e.reason]
            store.write_json(side_key, side)
            raise
    except _Failed as e:
        shutil.rmtree(scratch, ignore_errors=True)
        log.warning("quarantined at %s: %s", e.stage, e.reason)
        store.write_json(fkey, {"track_id": tid, "stage": e.stage, "reason": e.reason,
                                "failed_at": datetime.now(UTC).isoformat()})  # fmt: skip
        return TrackResult(tid, False, stage=e.stage, reason=e.reason)
    side["segments"][cfg.hash] = offsets
    store.write_json(side_key, side)
    if handoff is not None and y is not None:
        handoff.put(side["audio_sha256"], cfg.sample_rate, y)
    return _result(tid, side, akey, offsets)


def _store_audio(
    store: Store, akey: str, tid: str, name: str, y: np.ndarray, prov: dict[str, Any], *, cfg: SegmentConfig, fmt: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode fetched samples as `fmt` into `akey`; (the samples as stored, the new sidecar, not yet written)."""
    with _stage("decode", name):
        # y becomes what later stages read from the FLAC (16-bit), so its fingerprint is what they see
        encoded, y = audio.encode_with_samples(y, sr=cfg.sample_rate, fmt=fmt)
    store.write_bytes(akey, encoded)
    side = {
        "track_id": tid,
        **prov,
        "audio_format": fmt,
        "sample_rate": cfg.sample_rate,
        "duration_s": len(y) / cfg.sample_rate,
        "audio_sha256": audio.pcm_sha256(y),
        "decoded_at": datetime.now(UTC).isoformat(),
        "segments": {},
        "unusable": {},
    }
    if len(y) >= round(cfg.max_seconds * cfg.sample_rate):
        side["truncated_at_s"] = cfg.max_seconds
    return y, side


def acquire_rows(rows: Sequence[CatalogRow], acquire: Callable[[CatalogRow], TrackResult]) -> list[TrackResult]:
    """`acquire` (e.g. `acquire_track` with its store and configs) each row: one result per row, in order.

    A transient failure (the network, after its retries) quarantines the track for this run only. YouTube's bot
    check stops the rest: each further request makes a block likelier, and none of these tracks is at fault, so
    they are quarantined as not tried, for a rerun (with cookies, a PO token, or later).
    """
    results: list[TrackResult] = []
    for i, row in enumerate(rows):
        try:
            results.append(acquire(row))
        except BotCheckError as e:
            log.warning("%s", e)
            results.append(TrackResult(row["track_id"], False, stage="download", reason=f"{e} (a rerun tries again)"))
            for later in rows[i + 1 :]:
                reason = (
                    f"track {later['track_id']}: not tried, YouTube's bot check stopped its batch; a rerun tries it"
                )
                results.append(TrackResult(later["track_id"], False, stage="download", reason=reason))
            break
        except TransientSourceError as e:
            reason = f"track {row['track_id']}: {e} (transient; a rerun tries again)"
            log.warning("quarantined at download: %s", reason)
            results.append(TrackResult(row["track_id"], False, stage="download", reason=reason))
    return results


def _inputs_fingerprint(row: CatalogRow, cfg: SegmentConfig, yt: YoutubeConfig | None) -> str:
    """A hash of everything acquiring `row` reads besides the network and the store."""
    inputs = {"version": FAILURE_RECORD_VERSION, "row": row, "seg": dataclasses.asdict(cfg),
              "yt": dataclasses.asdict(yt) if yt is not None else None}  # fmt: skip
    return content_id(inputs, length=32)


def _result(tid: str, side: dict[str, Any], akey: str, offsets: list[float]) -> TrackResult:
    return TrackResult(tid, True, offsets, side["duration_s"], audio_key=akey, audio_hash=side["audio_sha256"])


def _stored_format(side: dict[str, Any]) -> str:
    """How a sidecar's audio is stored (one written before the format was recorded: FLAC)."""
    return str(side.get("audio_format", "flac"))


def _stored_sidecar(store: Store, tid: str, content: str | None, cfg: SegmentConfig) -> dict[str, Any] | None:
    """The sidecar of audio already in the store at this sample rate, or None (fetch it)."""
    side_key = sidecar_key(tid, content)
    if not store.exists(side_key):
        return None  # never fetched, or killed between the audio and its sidecar
    side: dict[str, Any] = store.read_json(side_key)
    if not store.exists(audio_key(tid, content, _stored_format(side))):
        return None  # its audio is gone
    if side.get("sample_rate") != cfg.sample_rate:
        return None  # decoded at another rate: decode again
    cut_at = side.get("truncated_at_s")
    if (cut_at is None and side["duration_s"] > cfg.max_seconds) or (cut_at is not None and cut_at != cfg.max_seconds):
        return None  # stored whole but longer than now allowed, or cut at another length: decode again
    return side
