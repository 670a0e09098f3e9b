"""Model registry: `create_model(name, num_classes=...)` builds any model genreclf knows by name."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import nn

from genreclf.errors import ModelError
from genreclf.models.resnet import resnet18, small_cnn

MODELS: MappingProxyType[str, Callable[..., nn.Module]] = MappingProxyType(
    {"resnet18": resnet18, "small_cnn": small_cnn}
)


def create_model(name: str, *, num_classes: int, dropout: float = 0.3) -> nn.Module:
    """Build a spectrogram classifier taking (batch, 1, n_mels, frames) and returning (batch, num_classes)."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    return MODELS[name](num_classes=num_classes, dropout=dropout)
