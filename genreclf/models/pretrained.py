"""What genreclf can fetch pretrained: the musicnn wheel and the networks in it, pinned by sha256.

Its own module, importing nothing heavy, so the `genreclf` command can name them in its help without importing
torch (`genreclf.models.weights` fetches, checks and converts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

WHEEL = "musicnn==0.1.0"
WHEEL_FILE = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
WHEEL_BYTES = 29_292_476
LICENSE = "ISC (musicnn 0.1.0, Music Technology Group, Universitat Pompeu Fabra)"


@dataclass(frozen=True)
class Pretrained:
    """A pretrained network genreclf can fetch: its checkpoint in the wheel, pinned by the sha256 of its files."""

    name: str
    checkpoint: str  # folder inside the wheel
    index_sha256: str
    data_sha256: str
    trained_on: str


PRETRAINED: MappingProxyType[str, Pretrained] = MappingProxyType(
    {
        "musicnn-msd": Pretrained(
            "musicnn-msd",
            "musicnn/MSD_musicnn",
            index_sha256="87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
            data_sha256="8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
            trained_on="Million Song Dataset, 50 Last.fm tags",
        ),
        "musicnn-mtt": Pretrained(
            "musicnn-mtt",
            "musicnn/MTT_musicnn",
            index_sha256="da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
            data_sha256="041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
            trained_on="MagnaTagATune, 50 tags",
        ),
    }
)
