"""Convolutional classifiers over log-mel spectrograms: ResNet-18 with a one-channel stem, and a small CNN."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def resnet18(*, num_classes: int, dropout: float = 0.3) -> nn.Module:
    """torchvision's ResNet-18, trained from scratch, with a 1-channel stem and dropout before the classifier."""
    # Imported here: torchvision's package imports all its models and ops, and through them torch._dynamo (~1.4 s on
    # two CPU cores), so code that only reads or writes model files, or builds a small_cnn, does not pay for it.
    # `torchvision.models.resnet` is no cheaper: importing it runs the package's __init__ all the same.
    from torchvision.models import resnet18 as torchvision_resnet18

    model = torchvision_resnet18(weights=None)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    return model


class SmallCNN(nn.Module):
    """Four conv blocks and global pooling: a quick model for tests and CPU smoke runs."""

    def __init__(self, *, num_classes: int, dropout: float = 0.3, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [1, width, width * 2, width * 4, width * 4]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (batch, C, mels / 16, frames / 16)
        x = x.mean(dim=(2, 3))  # (batch, C)
        return self.head(x)  # (batch, num_classes)


def small_cnn(*, num_classes: int, dropout: float = 0.3) -> nn.Module:
    return SmallCNN(num_classes=num_classes, dropout=dropout)
