"""The folder source: a directory laid out ROOT/<genre>/<file> (the GTZAN layout) becomes a catalog."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import polars as pl

from genreclf.catalog import CATALOG_COLUMNS
from genreclf.errors import SourceError

log = logging.getLogger(__name__)

# What ffmpeg reads that people keep music in; anything else in a genre folder is ignored (and logged).
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".mp3",
        ".ogg",
        ".opus",
        ".m4a",
        ".aac",
        ".wma",
        ".aiff",
        ".aif",
        ".au",
        ".webm",
        ".mka",
    }
)


def track_id_for(relative_path: str) -> str:
    """A stable id from the path inside the catalog folder: moving the folder keeps the ids."""
    return "f" + hashlib.sha1(relative_path.encode()).hexdigest()[:15]


def scan_folder(root: str | Path) -> pl.DataFrame:
    """Return the catalog of a folder `ROOT/<genre>/<file>`: one row per audio file, labelled by its folder.

    Files have no artist, so `artist_id` is null and each file is its own group when splitting.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SourceError(f"{root}: catalog folder does not exist; give a folder laid out ROOT/<genre>/<file>")
    genre_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not genre_dirs:
        raise SourceError(
            f"{root}: no genre folders; lay the catalog out as ROOT/<genre>/<file> (e.g. {root}/jazz/track.mp3)"
        )
    rows: list[dict[str, Any]] = []
    for genre_dir in genre_dirs:
        files = sorted(p for p in genre_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise SourceError(
                f"{genre_dir}: genre folder has no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}); "
                "add some or remove the folder"
            )
        for path in files:
            rel = path.relative_to(root).as_posix()
            rows.append(
                {
                    "track_id": track_id_for(rel),
                    "title": path.stem,
                    "artists": [],
                    "artist_id": None,
                    "duration_s": None,
                    "isrc": None,
                    "genre": genre_dir.name,
                    "label_source": "folder",
                    "source": "folder",
                    "source_ref": rel,
                    "snapshot_id": None,
                    "artist_genre_vote": None,
                    "audio_uri": str(path.resolve()),
                }
            )
    log.info("found %d tracks in %d genres under %s", len(rows), len(genre_dirs), root)
    schema: dict[str, Any] = {
        "track_id": pl.String, "title": pl.String, "artists": pl.List(pl.String), "artist_id": pl.String,
        "duration_s": pl.Float64, "isrc": pl.String, "genre": pl.String, "label_source": pl.String,
        "source": pl.String, "source_ref": pl.String, "snapshot_id": pl.String, "artist_genre_vote": pl.String,
        "audio_uri": pl.String,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema).select(CATALOG_COLUMNS)
