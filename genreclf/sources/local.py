"""The folder source: a directory laid out ROOT/<genre>/<file> (the GTZAN layout) becomes a catalog."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from genreclf.errors import SourceError
from genreclf.ingest.catalog import CATALOG_COLUMNS, CATALOG_SCHEMA

log = logging.getLogger(__name__)

# What ffmpeg reads that people keep music in: audio files, and audio or video containers (a concert film, a music
# video, an audiobook) whose first audio stream is decoded. A container without an audio stream is refused when it is
# decoded (AudioError: quarantined by build-dataset). Anything else in a genre folder is ignored and named once per
# scan (`FolderScan.ignored`).
AUDIO_EXTENSIONS = frozenset(
    {
        # audio
        ".wav",
        ".wave",
        ".w64",
        ".flac",
        ".mp3",
        ".mp2",
        ".ogg",
        ".oga",
        ".opus",
        ".spx",
        ".m4a",
        ".m4b",
        ".aac",
        ".ac3",
        ".eac3",
        ".dts",
        ".wma",
        ".aiff",
        ".aif",
        ".aifc",
        ".au",
        ".caf",
        ".ape",
        ".wv",
        ".tta",
        ".mpc",
        ".amr",
        ".mka",
        ".weba",
        # video containers with a sound track
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".asf",
        ".flv",
        ".3gp",
        ".3g2",
        ".mpg",
        ".mpeg",
        ".vob",
        ".ogv",
        ".mts",
        ".m2ts",
    }
)
# Files named in the one "ignored" log line; the rest are counted.
IGNORED_SHOWN = 5


def track_id_for(relative_path: str) -> str:
    """A stable id from the path inside the catalog folder: moving the folder keeps the ids, and a file edited in
    place keeps its id (and so its split); what it holds is told by the row's `content_hash`."""
    return "f" + hashlib.sha1(relative_path.encode()).hexdigest()[:15]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """sha256 of files, remembered by (path, size, mtime, inode): an unchanged file is not read again.

    Kept in a SQLite file (`$GENRECLF_CACHE_DIR/file-hashes.sqlite`); any change of size or modification time
    (an edit, a copy over it) makes the file be hashed again. Without a path, nothing is remembered.
    """

    def __init__(self, path: Path | None) -> None:
        self.db: sqlite3.Connection | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=30)
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INT, mtime_ns INT, ino INT, "
                    "sha256 TEXT)"
                )
            except sqlite3.Error as e:  # a read-only or broken cache only costs time
                log.warning("file hash cache %s unusable (%s); hashing every file", path, e)
                self.db = None
        self.hashed = 0  # files read in full by this cache

    def sha256(self, path: Path) -> str:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self.db is not None:
            row = self.db.execute(
                "SELECT size, mtime_ns, ino, sha256 FROM hashes WHERE path = ?", (str(path),)
            ).fetchone()
            if row is not None and tuple(row[:3]) == stamp:
                return str(row[3])
        digest = file_sha256(path)
        self.hashed += 1
        if self.db is not None:
            self.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", (str(path), *stamp, digest))
        return digest

    def close(self) -> None:
        if self.db is not None:
            self.db.commit()
            self.db.close()


def default_hash_cache() -> Path:
    from genreclf.settings import get_settings

    return get_settings().cache_dir / "file-hashes.sqlite"


@dataclass
class FolderScan:
    """A folder's catalog, the entries left out of it with why (dangling or looping links, links back into the
    catalog), and the files that are not audio.

    `skipped` goes to the store beside the catalog and into build-dataset's quarantine table, one entry each;
    `ignored` (covers, notes, cue sheets, files outside any genre folder; paths relative to the root) is only
    counted and named, in one line: `ignored_summary`.
    """

    tracks: pl.DataFrame
    skipped: list[dict[str, str]] = field(default_factory=list)
    hashed: int = 0  # files read to fingerprint them (the others matched the hash cache)
    ignored: list[str] = field(default_factory=list)

    @property
    def ignored_summary(self) -> str | None:
        """One line naming the files left out that are not audio (the first few), or None when there are none."""
        return summarize_ignored(self.ignored)


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"


def _names(paths: list[str], shown: int) -> str:
    """The first `shown` paths, then how many more by extension: `a.jpg, b.txt and 7 more (5 .jpg, 4 .txt in all)`."""
    names = ", ".join(paths[:shown])
    if len(paths) <= shown:
        return names
    by_ext = Counter(PurePosixPath(p).suffix.lower() or "without extension" for p in paths)
    kinds = ", ".join(f"{c} {ext}" for ext, c in by_ext.most_common())
    return f"{names} and {len(paths) - shown} more ({kinds} in all)"


def summarize_ignored(paths: list[str], *, shown: int = IGNORED_SHOWN) -> str | None:
    """One line for the files a scan left out (paths relative to the root), or None when there are none:
    `ignored 3 files that are not audio: jazz/cover.jpg, jazz/notes.txt, rock/live.cue`, then those beside the
    genre folders, which have no genre. Past `shown` names, the rest are counted by extension."""
    not_audio = [p for p in paths if "/" in p]
    outside = [p for p in paths if "/" not in p]
    parts = []
    if not_audio:
        verb = "are" if len(not_audio) != 1 else "is"
        parts.append(f"{_files(len(not_audio))} that {verb} not audio: {_names(not_audio, shown)}")
    if outside:
        parts.append(f"{_files(len(outside))} outside the genre folders: {_names(outside, shown)}")
    return f"ignored {'; and '.join(parts)}" if parts else None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Walker:
    """Lists audio files under a genre folder, resolving symlinks: a link to something inside the catalog is not
    a second copy (skipped), a link outside is followed, a dangling or looping link is skipped with a reason."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.skipped: list[dict[str, str]] = []
        self.ignored: list[str] = []  # files that are not audio, relative to the root

    def ignore(self, path: Path) -> None:
        self.ignored.append(path.relative_to(self.root).as_posix())

    def skip(self, path: Path, reason: str, *, warn: bool) -> None:
        rel = path.relative_to(self.root).as_posix()
        self.skipped.append({"path": rel, "reason": f"{rel}: {reason}"})
        (log.warning if warn else log.info)("%s: %s", path, reason)

    def resolve_link(self, path: Path) -> Path | None:
        """The target of a link, or None (and a skip record) when it dangles, loops or points into the catalog."""
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            self.skip(path, f"dangling symlink to {os.readlink(path)}; fix or remove the link", warn=True)
            return None
        except (RuntimeError, OSError) as e:  # a loop: RuntimeError on 3.11/3.12, OSError(ELOOP) later
            self.skip(path, f"symlink loop ({e}); remove the link", warn=True)
            return None
        if _inside(target, self.real_root):
            rel = target.relative_to(self.real_root).as_posix()
            self.skip(path, f"symlink to {rel or '.'} inside the catalog; counted once, at its target", warn=False)
            return None
        return target

    def files(self, directory: Path, seen: frozenset[Path] = frozenset()) -> list[tuple[Path, Path]]:
        """(path in the catalog, real file) of every audio file under `directory`, sorted."""
        real_dir = directory.resolve()
        if real_dir in seen:
            self.skip(directory, "symlink loop (a folder that contains itself); remove the link", warn=True)
            return []
        seen = seen | {real_dir}
        out: list[tuple[Path, Path]] = []
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            self.skip(directory, f"cannot list folder ({e})", warn=True)
            return []
        for entry in entries:
            path = directory / entry.name
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                target = self.resolve_link(path)
                if target is None:
                    continue
                if target.is_dir():
                    out += self.files(path, seen)
                elif target.suffix.lower() in AUDIO_EXTENSIONS or path.suffix.lower() in AUDIO_EXTENSIONS:
                    out.append((path, target))
                elif target.is_file():
                    self.ignore(path)
            elif entry.is_dir():
                out += self.files(path, seen)
            elif entry.is_file():
                if path.suffix.lower() in AUDIO_EXTENSIONS:
                    out.append((path, path))
                else:
                    self.ignore(path)
        return out


def scan_folder(root: str | Path, *, hash_cache: Path | bool | None = True, fingerprint: bool = True) -> FolderScan:
    """Return the catalog of a folder `ROOT/<genre>/<file>`: one row per audio file, labelled by its folder.

    Each row carries `content_hash`, the sha256 of the file's bytes, so a catalog's version changes when any
    audio changes. `hash_cache` is where unchanged files' hashes are remembered (True: the default under
    `$GENRECLF_CACHE_DIR`, None or False: nowhere). Without `fingerprint` no file is read (content_hash is null):
    only the layout is checked, as the CLI does before it starts a flow. Files have no artist, so `artist_id` is
    null and each file is its own group when splitting.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SourceError(f"{root}: catalog folder does not exist; give a folder laid out ROOT/<genre>/<file>")
    walker = _Walker(root)
    genre_dirs: list[Path] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_symlink():
            target = walker.resolve_link(p)
            if target is None or not target.is_dir():
                continue
        if p.is_dir():
            genre_dirs.append(p)
        elif p.is_file():
            walker.ignore(p)  # a file beside the genre folders has no genre
    if not genre_dirs:
        raise SourceError(
            f"{root}: no genre folders; lay the catalog out as ROOT/<genre>/<file> (e.g. {root}/jazz/track.mp3)"
        )
    remembered = default_hash_cache() if hash_cache is True else hash_cache or None
    cache = HashCache(remembered if fingerprint else None)
    rows: list[dict[str, Any]] = []
    try:
        for genre_dir in genre_dirs:
            files = walker.files(genre_dir, frozenset({walker.real_root}))
            if not files and not any(s["path"].startswith(genre_dir.name + "/") for s in walker.skipped):
                others = [p for p in walker.ignored if p.startswith(genre_dir.name + "/")]
                held = f"; it holds only files that are not audio: {_names(others, IGNORED_SHOWN)}" if others else ""
                raise SourceError(
                    f"{genre_dir}: genre folder has no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}){held}; "
                    "add some or remove the folder"
                )
            for path, real in files:
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
                        "audio_uri": str(real.resolve()),
                        "content_hash": cache.sha256(real) if fingerprint else None,
                    }
                )
    finally:
        cache.close()
    log.info("found %d tracks in %d genres under %s (%d files read and hashed, %d unchanged since they were)",
             len(rows), len(genre_dirs), root, cache.hashed, len(rows) - cache.hashed)  # fmt: skip
    schema = pl.Schema(pl.from_arrow(CATALOG_SCHEMA.empty_table()).schema)  # type: ignore[union-attr]
    tracks = pl.DataFrame(rows, schema=schema).select(CATALOG_COLUMNS)
    scan = FolderScan(tracks, walker.skipped, cache.hashed, walker.ignored)
    if scan.ignored_summary:
        log.info("%s: %s", root, scan.ignored_summary)
    return scan
