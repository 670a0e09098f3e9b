"""Small PNG figures (confusion matrix, training curves) and their markdown form, for reports and the Prefect UI."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from genreclf.errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Distinct from the Prefect UI's own palette, so a screenshot test can tell the plot rendered.
LOSS_COLOR = "#c2185b"
ACCURACY_COLOR = "#00897b"
# Figures are stored in the Prefect database as base64 markdown: keep them to a few tens of KB.
DPI = 80


def _png(fig: Figure) -> bytes:
    """`fig` as a 256-colour PNG: a third of the bytes of matplotlib's RGBA one, and no visible loss on flat plots."""
    from PIL import Image

    rgba = io.BytesIO()
    fig.savefig(rgba, format="png", dpi=DPI)
    image = Image.open(rgba).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def confusion_png(confusion: list[list[int]], labels: list[str], title: str) -> bytes:
    """The confusion matrix as a PNG (rows: true genre, columns: predicted)."""
    # A Figure without pyplot: no global backend or state, safe in the threads Prefect runs tasks in;
    # matplotlib is imported here so importing this module (and evaluation) stays cheap.
    from matplotlib.figure import Figure

    cm = np.asarray(confusion)
    size = 1.5 + 0.6 * len(labels)
    fig = Figure(figsize=(size, size), layout="tight")
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    return _png(fig)


def training_curves_png(history: Sequence[Mapping[str, float]], *, title: str = "") -> bytes:
    """Train loss and validation accuracy per epoch, side by side, as a PNG.

    `history` is `TrainResult.history`: one mapping per epoch with `epoch`, `train_loss` and `val_accuracy`.
    """
    if not history:
        raise DataError("no epochs in the training history: nothing to plot (has the run trained an epoch?)")
    missing = {"epoch", "train_loss", "val_accuracy"} - set(history[0])
    if missing:
        raise DataError(f"training history lacks {sorted(missing)}; expected TrainResult.history entries")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [int(h["epoch"]) for h in history]
    fig = Figure(figsize=(7.0, 2.8), layout="tight")
    loss_ax, acc_ax = fig.subplots(1, 2)
    # Markers as well as lines: a run of one epoch is one point.
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", color=LOSS_COLOR, lw=2, ms=5)
    loss_ax.set_title("train loss", fontsize=10)
    acc_ax.plot(epochs, [h["val_accuracy"] for h in history], "o-", color=ACCURACY_COLOR, lw=2, ms=5)
    acc_ax.set_title("validation accuracy", fontsize=10)
    acc_ax.set_ylim(0.0, 1.02)  # room for a marker at 1.0
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:  # matplotlib would pad one point by +-5% and tick 0.945, 0.96...
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """`png` as a markdown image with the bytes inline (a data URI), for places that cannot fetch a URL.

    The Prefect UI (v2, the default) renders `data:image/...` sources in markdown artifacts.
    """
    if not png.startswith(PNG_SIGNATURE):
        raise DataError(f"{alt!r}: not PNG bytes (they start {png[:8]!r}); pass what a *_png function returned")
    # Brackets and backslashes would end or escape the alt text; newlines would end the paragraph.
    safe_alt = " ".join(alt.split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
