"""Pickles that run code when loaded: what a store writer or a stray file could plant where a model is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class Planted:
    """A pickle that writes `marker` when it is unpickled: what a store writer or a stray file could plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.write_text, (self.marker, "code ran")


def plant_pickle(path: Path, marker: Path) -> None:
    """A torch file shaped like an old model bundle whose state dict runs code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Planted(marker), "labels": ["genre0", "genre1", "genre2"]}, path)
