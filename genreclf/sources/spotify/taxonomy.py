"""The versioned map from fine-grained source genres (Spotify micro-genres) to genreclf's target genres."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from genreclf.errors import ConfigError

BUILTIN = "builtin"
_GENRE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def normalize(name: str) -> str:
    """Spotify writes micro-genres in lower case with single spaces; make user-written names match that."""
    return " ".join(name.lower().split())


@dataclass(frozen=True)
class Taxonomy:
    """Target genres, exact micro-genre names and keywords for each; see genreclf/data/taxonomy.toml."""

    version: str
    source: str
    targets: tuple[str, ...]
    exact: Mapping[str, str]
    # (compiled whole-word pattern, keyword, target), in file order.
    keywords: tuple[tuple[re.Pattern[str], str, str], ...] = field(repr=False)

    def map_genre(self, micro_genre: str) -> str | None:
        """The target genre of one micro-genre, or None when nothing matches.

        Exact names win; otherwise the keyword matching a whole word furthest to the right wins (the head word
        of a genre name comes last: "jazz rap" is hip-hop), the longer keyword when two end at the same place.
        """
        name = normalize(micro_genre)
        if name in self.exact:
            return self.exact[name]
        best: tuple[int, int] | None = None
        target: str | None = None
        for pattern, keyword, kw_target in self.keywords:
            for m in pattern.finditer(name):
                rank = (m.end(), len(keyword))
                if best is None or rank > best:
                    best, target = rank, kw_target
        return target

    def vote(self, micro_genres: Iterable[str]) -> str | None:
        """The target most of `micro_genres` map to; None when none maps or two targets tie."""
        counts = Counter(t for g in micro_genres if (t := self.map_genre(g)) is not None)
        if not counts:
            return None
        (top, n), *rest = counts.most_common()
        if rest and rest[0][1] == n:
            return None
        return top


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Read a taxonomy TOML file; `None` or "builtin" reads the one shipped in genreclf/data/taxonomy.toml."""
    if path is None or str(path) == BUILTIN:
        text = resources.files("genreclf").joinpath("data/taxonomy.toml").read_text(encoding="utf-8")
        source = "genreclf/data/taxonomy.toml"
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"taxonomy file {p} does not exist (leave `taxonomy` out to use the built-in one)")
        text = p.read_text(encoding="utf-8")
        source = str(p)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML ({e})") from e
    return parse_taxonomy(doc, source=source)


def parse_taxonomy(doc: Mapping[str, Any], *, source: str) -> Taxonomy:
    """Build a Taxonomy from the parsed TOML document; every mistake names `source` and the entry."""
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ConfigError(f'{source}: needs a `version = "..."` string (bump it whenever a mapping changes)')
    targets_doc = doc.get("targets")
    if not isinstance(targets_doc, dict) or not targets_doc:
        raise ConfigError(f"{source}: needs [targets.GENRE] tables with `genres` and/or `keywords` lists")
    exact: dict[str, str] = {}
    keywords: list[tuple[re.Pattern[str], str, str]] = []
    for target, spec in targets_doc.items():
        if not _GENRE_NAME.match(target):
            raise ConfigError(f"{source}: target genre {target!r} must be lower case letters, digits, - or _")
        if not isinstance(spec, dict) or set(spec) - {"genres", "keywords"}:
            raise ConfigError(f"{source}: [targets.{target}] may only hold `genres` and `keywords` lists")
        for name in _strings(spec.get("genres", []), f"{source}: targets.{target}.genres"):
            key = normalize(name)
            if exact.get(key, target) != target:
                raise ConfigError(f"{source}: {name!r} is listed under both {exact[key]} and {target}")
            exact[key] = target
        for kw in _strings(spec.get("keywords", []), f"{source}: targets.{target}.keywords"):
            word = normalize(kw)
            pattern = re.compile(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])")
            keywords.append((pattern, word, target))
    return Taxonomy(version=version, source=source, targets=tuple(targets_doc), exact=exact, keywords=tuple(keywords))


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of non-empty strings")
    return value
