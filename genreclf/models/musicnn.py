"""musicnn (Pons & Serra 2019) in PyTorch, its TensorFlow weights' conversion, and a genre classifier on top.

The network is the `musicnn` 0.1.0 package's `build_musicnn` (MSD_musicnn and MTT_musicnn: same graph, different
weights), reproduced layer by layer and tested against the original's outputs (tests/test_musicnn.py):
- front-end over a (time, mel) patch: timbral convs [7, 38] and [7, 67] (204 filters, time padded 3 + 3, valid in
  mel) and temporal convs [128, 1], [64, 1], [32, 1] (51 filters, 'same' in time, TensorFlow's odd pad after), each
  conv -> ReLU -> BN (eps 1e-3) -> max over mel; 561 channels in all;
- mid-end: three convs of 64 filters over time, kernel 7, on every channel (the 2nd and 3rd with residual adds);
- back-end: the 753 channels pooled over time, max and mean interleaved per channel (1,506), BN, dense 200 + ReLU
  + BN (the "penultimate" features), dense to the 50 tags.
Its input is `log10(1 + 10000 * mel)` at 16 kHz, n_fft 512, hop 256, 96 Slaney mels (`MUSICNN_FEATURES`), in
3 s patches of 187 frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import window_starts
from genreclf.errors import ModelError

PATCH_FRAMES = 187  # 3 s at 16 kHz, hop 256: the patch length the networks were trained on
N_MELS = 96
N_TAGS = 50
_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's epsilon
# The input the networks were trained on: librosa's defaults (Slaney mels, 0 Hz to Nyquist) at these settings.
FEATURES = FeatureConfig(sample_rate=16_000, n_fft=512, hop_length=256, n_mels=N_MELS, compression="log10")

# What a clip embedding holds, in this order: the 753 channels' max and mean over time, then the penultimate layer.
EMBEDDING_LAYERS: dict[str, int] = {"max_pool": 753, "mean_pool": 753, "penultimate": 200}
EMBEDDING_DIM = sum(EMBEDDING_LAYERS.values())


class _ConvBNMax(nn.Module):
    """conv -> ReLU -> BN -> max over mel: (batch, 1, time, mel) -> (batch, filters, time)."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]) -> None:
        super().__init__()
        self.time_pad = time_pad
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = nn.BatchNorm2d(filters, eps=_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, (0, 0, *self.time_pad)))  # (batch, filters, time, mel')
        mean, var = self.bn.running_mean, self.bn.running_var
        if self.bn.training or mean is None or var is None:  # batch statistics over every (time, mel) position
            return self.bn(F.relu(x)).amax(dim=3)
        # With fixed statistics, BN is a per-channel a * v + b and ReLU is monotone, so the max over mel of
        # BN(ReLU(v)) is BN(ReLU(max v)) where a >= 0 and BN(ReLU(min v)) where a < 0: the same values from two
        # reductions of the conv's output instead of three passes over it (a third of the time of a patch).
        scale = self.bn.weight / torch.sqrt(var + self.bn.eps)  # (filters,)
        peak = torch.where(scale[:, None] >= 0, x.amax(dim=3), x.amin(dim=3))  # (batch, filters, time)
        return F.batch_norm(F.relu(peak), mean, var, self.bn.weight, self.bn.bias, False, 0.0, self.bn.eps)


class _MidConv(nn.Module):
    """conv over time (kernel 7, 'same') on every channel -> ReLU -> BN: (batch, C, time) -> (batch, 64, time)."""

    def __init__(self, channels: int, filters: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, filters, 7, padding=3)
        self.bn = nn.BatchNorm1d(filters, eps=_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


def _same(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of a stride-1 kernel: the odd extra row goes after."""
    return (kernel - 1) // 2, kernel // 2


class Musicnn(nn.Module):
    """The musicnn network: (batch, 1, n_mels=96, frames) log-compressed mels -> dict of its layers.

    Returns `logits` (batch, 50), `penultimate` (batch, 200), `max_pool` and `mean_pool` (batch, 753), as the
    original's `extractor` names them. Any number of frames works; the networks were trained on 187.
    """

    def __init__(self, *, num_tags: int = N_TAGS) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1, eps=_EPS)
        self.timbral = nn.ModuleList([_ConvBNMax(204, (7, k), (3, 3)) for k in (38, 67)])
        self.temporal = nn.ModuleList([_ConvBNMax(51, (k, 1), _same(k)) for k in (128, 64, 32)])
        self.mid = nn.ModuleList([_MidConv(561), _MidConv(64), _MidConv(64)])
        self.pool_bn = nn.BatchNorm1d(2 * 753, eps=_EPS)
        self.dense = nn.Linear(2 * 753, 200)
        self.dense_bn = nn.BatchNorm1d(200, eps=_EPS)
        self.tags = nn.Linear(200, num_tags)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_bn(x.transpose(2, 3))  # (batch, 1, frames, mels): time first, as the original
        front = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], 1)  # (batch, 561, frames)
        m1 = self.mid[0](front)  # (batch, 64, frames)
        m2 = self.mid[1](m1) + m1
        m3 = self.mid[2](m2) + m2
        features = torch.cat([front, m1, m2, m3], 1)  # (batch, 753, frames)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)  # (batch, 753) each
        pooled = torch.stack([max_pool, mean_pool], 2).flatten(1)  # (batch, 1506): max, mean of each channel
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))  # (batch, 200)
        return {
            "logits": self.tags(penultimate),  # (batch, num_tags)
            "penultimate": penultimate,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
        }

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, 96, frames) -> (batch, EMBEDDING_DIM): max_pool, mean_pool and penultimate side by side."""
        out = self.forward(x)
        return torch.cat([out[name] for name in EMBEDDING_LAYERS], 1)


def segment_embeddings(net: Musicnn, mel: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
    """Embeddings of whole segments: each the mean over its 3 s patches (`window_starts`, back to back, the last one
    ending at the segment's end): (batch, 1, 96, frames) -> (batch, EMBEDDING_DIM).

    In inference, patches go through the network `chunk` at a time: by default 2 on a CPU, where a patch's front-end
    maps (~9 MB) then stay in cache (measured here, 66 patches of a 3-minute song: 1.7 s in chunks of 2 against
    2.6-2.8 s in chunks of 8-16), and 256 on a GPU. In training, all at once.
    """
    frames = mel.shape[-1]
    starts = window_starts(frames, PATCH_FRAMES)
    patches = torch.stack([mel[..., s : s + PATCH_FRAMES] for s in starts], 1).flatten(0, 1)  # (batch * n, 1, 96, T)
    if torch.is_grad_enabled() and net.training:  # training: one pass, one graph
        chunk = len(patches)
    elif chunk is None:
        chunk = 2 if mel.device.type == "cpu" else 256
    out = torch.cat([net.embed(part) for part in torch.split(patches, max(1, chunk))])  # (batch * n, EMBEDDING_DIM)
    return out.view(mel.shape[0], len(starts), -1).mean(1)


class MusicnnClassifier(nn.Module):
    """A genre classifier on musicnn: the backbone's segment embedding (`segment_embeddings`) -> a head.

    The head is a linear layer (a logistic regression) or, with `hidden`, one hidden ReLU layer; either takes the
    whole EMBEDDING_DIM vector (a head fitted on some layers only has zero weights on the others). Input:
    (batch, 1, 96, frames) of whole segments; output (batch, num_classes) logits.

    In training (fine-tuning), the backbone's batch norms keep the statistics it was pretrained with (their scale
    and shift still learn): batch statistics of a few dozen crops would move every feature the head was fitted on
    at the first step (seen on GTZAN: the loss went from ~2 to 700,000 in the first epoch).
    """

    def __init__(self, *, num_classes: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = Musicnn()
        if hidden:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(EMBEDDING_DIM, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
            )
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(EMBEDDING_DIM, num_classes))

    def train(self, mode: bool = True) -> MusicnnClassifier:
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(segment_embeddings(self.backbone, x))  # (batch, num_classes)


# --- TensorFlow checkpoint -> state dict --------------------------------------------------------------------------


def _bn(tf_name: str) -> dict[str, str]:
    return {
        "weight": f"{tf_name}/gamma",
        "bias": f"{tf_name}/beta",
        "running_mean": f"{tf_name}/moving_mean",
        "running_var": f"{tf_name}/moving_variance",
    }


def tf_names() -> dict[str, str]:
    """Musicnn state-dict key -> TensorFlow variable name, in the order `build_musicnn` creates its layers
    (conv2d, conv2d_1, ... and batch_normalization, batch_normalization_1, ...: tf.compat.v1.layers' naming)."""
    names: dict[str, str] = {}

    def add(prefix: str, mapping: Mapping[str, str]) -> None:
        names.update({f"{prefix}.{k}": v for k, v in mapping.items()})

    def conv(i: int) -> dict[str, str]:
        suffix = f"_{i}" if i else ""
        return {"weight": f"conv2d{suffix}/kernel", "bias": f"conv2d{suffix}/bias"}

    add("input_bn", _bn("batch_normalization"))
    blocks = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)] + [f"mid.{i}" for i in range(3)]
    for i, block in enumerate(blocks):
        add(f"{block}.conv", conv(i))
        add(f"{block}.bn", _bn(f"batch_normalization_{i + 1}"))
    add("pool_bn", _bn("batch_normalization_9"))
    add("dense", {"weight": "dense/kernel", "bias": "dense/bias"})
    add("dense_bn", _bn("batch_normalization_10"))
    add("tags", {"weight": "dense_1/kernel", "bias": "dense_1/bias"})
    return names


def convert_tf(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TensorFlow variables (`tf_names()` values) -> a Musicnn state dict, float32, layouts transposed:
    conv2d kernels (h, w, in, out) -> (out, in, h, w); the mid-end's (7, C, 1, out) -> Conv1d (out, C, 7);
    dense kernels (in, out) -> (out, in). Raises ModelError naming a missing variable or a shape that does not fit."""
    net = Musicnn()
    expected = net.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, tf_name in tf_names().items():
        if tf_name not in tensors:
            raise ModelError(f"the checkpoint has no variable {tf_name} (for {key})")
        t = torch.from_numpy(np.array(tensors[tf_name], dtype=np.float32))
        if t.ndim == 4 and key.startswith("mid."):
            t = t[:, :, 0, :].permute(2, 1, 0)  # (7, C, 1, out) -> (out, C, 7)
        elif t.ndim == 4:
            t = t.permute(3, 2, 0, 1)  # (h, w, in, out) -> (out, in, h, w)
        elif t.ndim == 2:
            t = t.T
        if t.shape != expected[key].shape:
            raise ModelError(f"variable {tf_name} has shape {list(t.shape)}; {key} needs {list(expected[key].shape)}")
        state[key] = t.contiguous()
    for key, value in expected.items():  # BN's step counters, which TensorFlow does not keep
        state.setdefault(key, value)
    return state
