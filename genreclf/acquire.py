"""From a catalog row to decoded mono FLAC in the store, with its segment offsets, or a quarantine reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import numpy as np

from genreclf import audio
from genreclf.audio import SegmentConfig
from genreclf.errors import AudioError, SourceError
from genreclf.storage import Store, audio_key, filesystem_for

log = logging.getLogger(__name__)


@dataclass
class TrackResult:
    """What acquiring one track gave: segment offsets (seconds) when it worked, a reason when it did not."""

    track_id: str
    ok: bool
    offsets: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    stage: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def sidecar_key(track_id: str) -> str:
    return audio_key(track_id).removesuffix(".flac") + ".json"


def _fetch(uri: str, name: str, sr: int, max_seconds: float) -> np.ndarray:
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
    raise SourceError(f"{name}: cannot read audio from {uri!r}; give a local path, file:// or s3:// URI")


def acquire_track(store: Store, row: dict[str, Any], *, cfg: SegmentConfig) -> TrackResult:
    """Decode a track's audio into `audio/<track_id>.flac` (once) and find its usable windows.

    Idempotent: a track whose FLAC and sidecar exist is not decoded again; the sidecar is written after the
    FLAC, so a run killed in between decodes that track again. Unusable audio (corrupt, empty, no audio
    stream, too short, silent) gives a quarantined result; transient faults raise.
    """
    tid = row["track_id"]
    name = f"track {tid} ({row.get('source_ref') or row.get('title') or row.get('audio_uri')})"
    side_key = sidecar_key(tid)
    try:
        if store.exists(side_key) and store.exists(audio_key(tid)):
            side = store.read_json(side_key)
            if cfg.hash in side["segments"]:
                return TrackResult(tid, True, side["segments"][cfg.hash], side["duration_s"])
            y, _ = audio.read_flac(store.read_bytes(audio_key(tid)))
        else:
            if not row.get("audio_uri"):
                raise SourceError(f"{name}: no audio URI; the track needs an audio source resolved first")
            y = _fetch(row["audio_uri"], name, cfg.sample_rate, cfg.max_seconds)
            store.write_bytes(audio_key(tid), audio.encode_flac(y, sr=cfg.sample_rate))
            side = {
                "track_id": tid,
                "source_uri": row["audio_uri"],
                "sample_rate": cfg.sample_rate,
                "duration_s": len(y) / cfg.sample_rate,
                "decoded_at": datetime.now(UTC).isoformat(),
                "segments": {},
            }
        _, offsets = audio.segment(y, cfg=cfg)
    except (AudioError, SourceError) as e:
        reason = str(e) if str(e).startswith(name) else f"{name}: {e}"
        log.warning("quarantined %s", reason)
        return TrackResult(tid, False, stage="acquire", reason=reason)
    side["segments"][cfg.hash] = offsets.tolist()
    store.write_json(side_key, side)
    return TrackResult(tid, True, offsets.tolist(), side["duration_s"])
