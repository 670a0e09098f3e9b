"""Models: the networks genreclf knows by name (`create_model`), the pretrained ones and their weights, training,
inference and prediction.

This module imports no torch itself, so what only names models (the `genreclf` command's help) stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genreclf.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from genreclf.datasets.features import FeatureConfig

# Trained from scratch; built by the function of the same name in genreclf.models.resnet.
MODELS = ("resnet18", "small_cnn")
# Classifiers on a pretrained network (genreclf.models.weights fetches it): the name is the network's.
PRETRAINED_MODELS = ("musicnn-msd", "musicnn-mtt")


DEFAULT_PRETRAINED = "musicnn-msd"


def default_model() -> tuple[str, str]:
    """(the model `genreclf run` trains when none is named, one line saying why): a head on the frozen musicnn-msd
    when its weights are cached, else ResNet-18 from scratch. On GTZAN's validation split the frozen head (0.733)
    beat ResNet-18 (0.367) and tied with six epochs of fine-tuning (0.750: one clip of 60) at a fraction of its
    cost, with no GPU; docs/models.md has the figures."""
    from genreclf.models import weights

    if weights.available(DEFAULT_PRETRAINED):
        return DEFAULT_PRETRAINED, (
            f"model: {DEFAULT_PRETRAINED}, a head on the pretrained musicnn network (the default; --model resnet18 "
            "trains from scratch)"
        )
    return "resnet18", (
        f"model: resnet18, from scratch (`genreclf weights fetch` gets the pretrained {DEFAULT_PRETRAINED}, the "
        "default when it is there: far more accurate on a few hundred tracks)"
    )


def is_pretrained(name: str) -> bool:
    return name in PRETRAINED_MODELS


def model_names() -> list[str]:
    return [*MODELS, *PRETRAINED_MODELS]


def input_features(name: str) -> FeatureConfig | None:
    """The features model `name` must be fed (a pretrained network's), or None when it learns from any."""
    if is_pretrained(name):
        from genreclf.models.musicnn import FEATURES

        return FEATURES
    return None


def create_model(name: str, *, num_classes: int, dropout: float = 0.3, hidden: int = 0) -> nn.Module:
    """Build a spectrogram classifier taking (batch, 1, n_mels, frames) and returning (batch, num_classes).

    A pretrained model (`PRETRAINED_MODELS`) is built with untrained weights here, to be loaded; `hidden` sizes its
    head's hidden layer (0: a linear head). The other models have no such head and take `hidden=0` only.
    """
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    if is_pretrained(name):
        from genreclf.models.musicnn import MusicnnClassifier

        return MusicnnClassifier(num_classes=num_classes, hidden=hidden, dropout=dropout)
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(model_names()))}")
    if hidden:
        raise ModelError(f"model {name!r} has no head with a hidden layer (hidden={hidden})")
    from genreclf.models import resnet

    model: nn.Module = getattr(resnet, name)(num_classes=num_classes, dropout=dropout)
    return model
