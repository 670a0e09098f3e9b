"""The PNG figures and their markdown form: real PNGs, small enough for the Prefect database, one epoch included."""

from __future__ import annotations

import base64
import io
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genreclf.errors import DataError
from genreclf.reports.plots import (
    ACCURACY_COLOR,
    LOSS_COLOR,
    PNG_SIGNATURE,
    confusion_png,
    markdown_image,
    training_curves_png,
)

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
MAX_BYTES = 40_000  # artifacts live in the Prefect database, base64 (x4/3) inside markdown


def history(epochs: int) -> list[dict[str, float]]:
    return [
        {"epoch": e, "train_loss": 2.3 / e, "val_accuracy": min(0.95, 0.1 + 0.03 * e), "lr": 1e-3}
        for e in range(1, epochs + 1)
    ]


def pixels_near(png: bytes, hex_color: str, tol: int = 24) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) <= tol).sum())


@pytest.mark.parametrize("epochs", [1, 3, 60])
def test_training_curves_png_is_a_small_png_with_both_curves(epochs: int) -> None:
    png = training_curves_png(history(epochs), title="resnet18, run resnet18-0123456789ab")
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < MAX_BYTES
    assert Image.open(io.BytesIO(png)).size == (560, 224)
    assert pixels_near(png, LOSS_COLOR) > 15  # one epoch is still a visible marker (~5 px wide)
    assert pixels_near(png, ACCURACY_COLOR) > 15


def test_training_curves_png_draws_a_diverged_run() -> None:
    h = history(4)
    h[2]["train_loss"] = math.nan
    assert training_curves_png(h).startswith(PNG_SIGNATURE)


def test_training_curves_png_refuses_what_it_cannot_plot() -> None:
    with pytest.raises(DataError, match="nothing to plot"):
        training_curves_png([])
    with pytest.raises(DataError, match="val_accuracy"):
        training_curves_png([{"epoch": 1, "train_loss": 1.0}])


def test_confusion_png_of_ten_genres_is_small() -> None:
    cm = np.random.default_rng(0).integers(0, 30, (10, 10)).tolist()
    png = confusion_png(cm, GENRES, "resnet18, per track\nrun resnet18-0123456789ab")
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < MAX_BYTES
    assert Image.open(io.BytesIO(png)).size == (600, 600)


def test_markdown_image_inlines_the_bytes() -> None:
    png = training_curves_png(history(2))
    md = markdown_image(png, "curves [of] run\\x\nsecond line")
    m = re.fullmatch(r"!\[(.*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", md)
    assert m is not None
    assert m[1] == r"curves \[of\] run\\x second line"
    assert base64.b64decode(m[2]) == png


def test_markdown_image_refuses_bytes_that_are_not_png() -> None:
    with pytest.raises(DataError, match="not PNG"):
        markdown_image(b"GIF89a...", "x")


def test_importing_plots_does_not_import_matplotlib() -> None:
    """evaluation imports plots: matplotlib (~0.5 s) is loaded only when a figure is drawn."""
    code = "import sys, genreclf.reports.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
