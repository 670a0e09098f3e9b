"""The playlists file: playlist references (ID, URI or URL) and the genre each playlist labels."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genreclf.errors import ConfigError
from genreclf.sources.spotify.taxonomy import BUILTIN, Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

_ID = r"[0-9A-Za-z]{22}"
_BARE_ID = re.compile(rf"^{_ID}$")
_URI = re.compile(rf"^spotify:(?:user:[^:\s]+:)?playlist:(?P<id>{_ID})$")
_URL = re.compile(
    rf"^(?:https?://)?open\.spotify\.com/(?:intl-[A-Za-z-]+/)?(?:embed/)?(?:user/[^/\s]+/)?"
    rf"playlist/(?P<id>{_ID})/?(?:\?[^#\s]*)?(?:#\S*)?$"
)
_OTHER_KIND = re.compile(
    r"(?:open\.spotify\.com/(?:intl-[A-Za-z-]+/)?|spotify:)(?P<kind>album|track|artist|show|episode)"
)
_GENRE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def parse_playlist_ref(ref: str) -> str:
    """The playlist ID in a bare ID, a `spotify:playlist:` URI or an open.spotify.com URL (`?si=` or not).

    Raises ValueError saying what is wrong with `ref`.
    """
    text = ref.strip()
    for pattern in (_BARE_ID, _URI, _URL):
        m = pattern.match(text)
        if m:
            return m.group("id") if "id" in pattern.groupindex else text
    other = _OTHER_KIND.search(text)
    if other:
        raise ValueError(f"is a Spotify {other.group('kind')}, not a playlist")
    if re.fullmatch(r"[0-9A-Za-z]+", text):
        raise ValueError(f"a playlist ID has 22 letters and digits, this one has {len(text)}")
    raise ValueError(
        "is not a Spotify playlist: use its ID, spotify:playlist:ID or https://open.spotify.com/playlist/ID"
    )


@dataclass(frozen=True)
class PlaylistRef:
    """One declared playlist: the genre it labels, its ID, and the string it was written as."""

    genre: str
    playlist_id: str
    ref: str


@dataclass(frozen=True)
class PlaylistsConfig:
    """The genres to learn, the playlists that label them, and the taxonomy that maps artist genres."""

    source: str
    genres: tuple[str, ...]
    playlists: tuple[PlaylistRef, ...]
    taxonomy: Taxonomy


def load_playlists_config(
    path: str | Path | None, *, override: Mapping[str, Sequence[str]] | None = None
) -> PlaylistsConfig:
    """Read and check a playlists file (TOML or YAML) before any request is made.

    `override` (a flow parameter: genre -> playlists) replaces the file's `[genres]`; the file is then only
    read for its `taxonomy`, and may be absent. Every mistake raises ConfigError naming the file and the string.
    """
    doc: dict[str, Any] = {}
    source = str(path) if path else "flow parameter `playlists`"
    file = Path(path).expanduser() if path else None
    if file is not None and file.is_file():
        doc = _read_config_file(file)
    elif override is None:
        raise ConfigError(
            f"playlists file {path} does not exist: copy configs/playlists.example.toml to {path} "
            "and list your playlists, or pass the `playlists` parameter"
        )
    unknown = set(doc) - {"version", "taxonomy", "genres"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}; expected version, taxonomy and [genres]")
    if doc.get("version", 1) != 1:
        raise ConfigError(f"{source}: version {doc['version']!r} is not supported (this genreclf reads version 1)")
    taxonomy_ref = doc.get("taxonomy", BUILTIN)
    if not isinstance(taxonomy_ref, str):
        raise ConfigError(f'{source}: `taxonomy` must be a path or "builtin"')
    if taxonomy_ref != BUILTIN and file is not None and not Path(taxonomy_ref).is_absolute():
        taxonomy_ref = str(file.parent / taxonomy_ref)
    taxonomy = load_taxonomy(taxonomy_ref)

    if override is not None:
        genres_doc: Any = dict(override)
        source = "flow parameter `playlists`"
    else:
        genres_doc = doc.get("genres")
    if not isinstance(genres_doc, Mapping) or not genres_doc:
        raise ConfigError(f'{source}: needs a [genres] table mapping each genre to playlists, e.g. jazz = ["..."]')

    refs: list[PlaylistRef] = []
    seen: dict[str, str] = {}
    for genre, playlists in genres_doc.items():
        if not isinstance(genre, str) or not _GENRE_NAME.match(genre):
            raise ConfigError(f"{source}: genre {genre!r} must be lower case letters, digits, - or _ (e.g. hiphop)")
        if isinstance(playlists, str) or not isinstance(playlists, Sequence) or not playlists:
            raise ConfigError(f"{source}: genre {genre!r} needs a non-empty list of playlists")
        for ref in playlists:
            if not isinstance(ref, str):
                raise ConfigError(f"{source}: genre {genre!r}: {ref!r} is not a string")
            try:
                playlist_id = parse_playlist_ref(ref)
            except ValueError as e:
                raise ConfigError(f"{source}: genre {genre!r}: {ref!r} {e}") from None
            if playlist_id in seen:
                if seen[playlist_id] != genre:
                    raise ConfigError(
                        f"{source}: playlist {ref!r} is listed under both {seen[playlist_id]!r} and "
                        f"{genre!r}; a playlist labels exactly one genre"
                    )
                log.info("%s: playlist %s is listed twice under %s; reading it once", source, ref, genre)
                continue
            seen[playlist_id] = genre
            refs.append(PlaylistRef(genre=genre, playlist_id=playlist_id, ref=ref))
    genres = tuple(genres_doc)
    unknown_to_taxonomy = [g for g in genres if g not in taxonomy.targets]
    if unknown_to_taxonomy:
        log.warning(
            "%s: genres %s are not targets of taxonomy %s (%s); artist genres can never agree with them",
            source,
            unknown_to_taxonomy,
            taxonomy.version,
            taxonomy.source,
        )
    return PlaylistsConfig(source=source, genres=genres, playlists=tuple(refs), taxonomy=taxonomy)


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".toml":
            doc = tomllib.loads(text)
        else:
            raise ConfigError(f"{path}: a playlists file is .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot parse ({e})") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a table/mapping at the top level")
    return doc
