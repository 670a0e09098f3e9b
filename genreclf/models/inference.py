"""Where a model runs and how it scores whole segments: the device (`resolve_device`), a stored model loaded for
inference (`load_model`), and logits of segments, each the mean over the windows it was trained on (`eval_window`).

Training validates with these, and evaluation and `genreclf predict` score with them, so the three agree. Imports
torch, numpy and the loader's normaliser only: nothing a bare GPU image or `genreclf predict` lacks or pays for.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from genreclf.datasets.loader import Normalizer, window_starts
from genreclf.datasets.resident import WINDOWS_PER_PASS
from genreclf.errors import ConfigError, ModelError
from genreclf.models import create_model, is_pretrained
from genreclf.models.files import read_model
from genreclf.models.runs import crop_frames
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None, *, source: str = "device") -> torch.device:
    """`requested` if given, checked against this machine (a one-line ConfigError naming `source` when this machine
    lacks it); else CUDA when there is one, else the CPU."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where, fallback = f"{source}={requested!r}", "use cpu, or leave it unset for the best available"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"{where} is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{where}: this machine has no CUDA device; {fallback}")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{where}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: this machine has no MPS (Apple GPU) device; {fallback}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{where}: genreclf runs on cpu, cuda, cuda:N or mps, not {device.type}")
    return device


def resolve_device(requested: str | None = None) -> torch.device:
    """The device to run on: `requested` (a `--device` option, a config's `device`) if given, else the setting
    `GENRECLF_DEVICE` if set, else the best available (`pick_device`). A device this machine lacks is a ConfigError
    naming where it came from."""
    if requested:
        return pick_device(requested)
    return pick_device(_configured_device(), source="GENRECLF_DEVICE")


def _configured_device() -> str | None:
    # Read here, only when no device was given: a bare GPU image has torch but no pydantic-settings.
    try:
        from genreclf.settings import get_settings
    except ImportError:
        log.warning("pydantic-settings is not installed, so GENRECLF_DEVICE is not read; pass a device instead")
        return None
    return get_settings().device


def eval_window(train_config: dict[str, Any], feature_config: dict[str, Any]) -> int | None:
    """Frames of the windows a model's segments are scored in (its training crop), or None for whole segments."""
    if is_pretrained(train_config.get("model", "")):  # a pretrained network's classifier cuts its own 3 s patches
        return None
    if not train_config.get("eval_crops", False):  # models saved before windows were scored whole
        return None
    fc = feature_config
    return crop_frames(train_config["crop_s"], sample_rate=fc["sample_rate"], hop_length=fc["hop_length"])


def eval_logits(
    model: nn.Module, x: torch.Tensor, norm: Normalizer, device: torch.device, window: int | None = None
) -> torch.Tensor:
    """Logits of one batch of whole segments (model in eval mode, under inference_mode): (B, 1, M, T) -> (B, C).
    With `window`, each segment's logits are the mean over its windows (`window_starts`)."""
    x = norm.apply(x.to(device, non_blocking=True))
    starts = [0]
    if window:
        starts = window_starts(x.shape[-1], window)
        x = torch.stack([x[..., s : s + window] for s in starts], 1).flatten(0, 1)  # (B * windows, 1, M, window)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(x).float()  # (B * windows, num_classes)
    return logits.view(-1, len(starts), logits.shape[-1]).mean(1)  # (B, num_classes)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    mel: np.ndarray,
    norm: Normalizer,
    *,
    device: torch.device,
    window: int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Logits of whole segments, each the mean over its windows when `window` is given:
    (n, n_mels, frames) -> (n, num_classes) float32. About `batch_size` windows a forward pass (default: as many
    as a pass on the device takes, `WINDOWS_PER_PASS`)."""
    model.eval()
    batch_size = batch_size or WINDOWS_PER_PASS.get(device.type, WINDOWS_PER_PASS["cpu"])
    if window:  # about batch_size windows a forward pass
        batch_size = max(1, batch_size // len(window_starts(mel.shape[-1], window)))
    out = []
    for i in range(0, len(mel), batch_size):
        x = torch.from_numpy(np.asarray(mel[i : i + batch_size], dtype=np.float32))[:, None]  # (batch, 1, M, T)
        out.append(eval_logits(model, x, norm, device, window).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def track_scores(scores: np.ndarray, labels: np.ndarray, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the segment scores of each track -> (track scores (t, C), track labels (t,)), tracks sorted by id."""
    uniq, inverse = np.unique(track_ids, return_inverse=True)
    sums = np.zeros((len(uniq), scores.shape[1]))
    np.add.at(sums, inverse, scores)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    track_labels = np.zeros(len(uniq), dtype=np.int64)
    track_labels[inverse] = labels
    return sums / counts, track_labels


@torch.inference_mode()
def stream_accuracy(
    model: nn.Module,
    loader: DataLoader[tuple[torch.Tensor, int]],
    norm: Normalizer,
    *,
    device: torch.device,
    window: int | None = None,
) -> float:
    """Accuracy per segment over a loader of whole segments ((B, 1, n_mels, frames), labels (B,))."""
    model.eval()
    correct, seen = 0, 0
    for x, y in loader:
        correct += int((eval_logits(model, x, norm, device, window).argmax(1).cpu() == y).sum())
        seen += len(y)
    return correct / seen if seen else 0.0


def load_model(store: Store, key: str, device: torch.device | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load the model at `key` (`runs/<id>/model.safetensors`) -> (model in eval mode on `device` (default:
    `resolve_device()`), everything else: labels, normaliser, configs). Keys outside `runs/` are refused."""
    device = device or resolve_device()
    state, bundle = read_model(store, key)
    model = create_model(
        bundle["model"], num_classes=bundle["num_classes"], dropout=bundle["dropout"], hidden=bundle.get("hidden", 0)
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelError(f"{store.uri(key)}: the weights do not fit model {bundle['model']!r} ({first})") from e
    return model.to(device).eval(), bundle
