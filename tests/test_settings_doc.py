"""docs/settings.md's table is generated from the declarations in genreclf/settings.py, and kept current."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from genreclf.settings import TABLE_BEGIN, TABLE_END, Settings, get_settings, settings_table
from genreclf.sources.youtube_config import YoutubeConfig

DOC = Path(__file__).parents[1] / "docs" / "settings.md"


def test_the_documented_table_is_the_one_the_declarations_make() -> None:
    text = DOC.read_text()
    documented = text[text.index(TABLE_BEGIN) + len(TABLE_BEGIN) : text.index(TABLE_END)].strip()
    assert documented == settings_table(), "docs/settings.md is stale: run `python -m genreclf.settings`"


def test_every_setting_says_what_it_does() -> None:
    assert all(spec.description for spec in Settings.model_fields.values())
    assert all(f.metadata.get("doc") for f in dataclasses.fields(YoutubeConfig))


def test_each_variable_in_the_table_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    names = re.findall(r"^\| `(GENRECLF_\w+)` \|", settings_table(), flags=re.M)
    assert len(names) == len(Settings.model_fields) - 1 + len(dataclasses.fields(YoutubeConfig))
    monkeypatch.setenv("GENRECLF_YOUTUBE_CANDIDATES", "7")
    monkeypatch.setenv("GENRECLF_YOUTUBE_RATE_LIMIT", "other-limit")
    monkeypatch.setenv("GENRECLF_AUDIO_FORMAT", "wav")
    settings = get_settings()
    assert (settings.youtube.candidates, settings.youtube_rate_limit, settings.audio_format) == (
        7,
        "other-limit",
        "wav",
    )
