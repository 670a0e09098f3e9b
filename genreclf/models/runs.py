"""What a training run is: how it trains (`TrainConfig`), its id (the same dataset and config give the same one, so a
rerun resumes), and what it gives back (`TrainResult`). Imports no torch: flows and their parameters read these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from genreclf.models import is_pretrained
from genreclf.store.keys import content_id


def crop_frames(crop_s: float, *, sample_rate: int, hop_length: int) -> int:
    """Spectrogram frames of a crop of `crop_s` seconds."""
    return max(1, round(crop_s * sample_rate / hop_length))


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; saved beside every checkpoint."""

    model: str = "resnet18"  # or a pretrained network's classifier: musicnn-msd, musicnn-mtt
    # Pretrained models only: False trains a head on the frozen network's embeddings (seconds on a CPU); True
    # fine-tunes the whole network.
    finetune: bool = False
    # Frozen heads only: once chosen on val, the head is fitted again on train + val (more of a small catalog's
    # labels; the validation figure reported is the one it was chosen on, from train alone).
    head_refit: bool = True
    # Pretrained models fine-tuned: the network's learning rate as a fraction of `lr` (its head's).
    backbone_lr_scale: float = 0.1
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"  # or "cosine"
    crop_s: float = 3.0
    # Random crops of each training segment an epoch sees: a 30 s segment holds ten 3 s crops, and one an epoch
    # left a small catalog's model under-trained (GTZAN val, benchmarks/accuracy.py).
    crops_per_segment: int = 8
    # Score a segment as the mean logits of crop-long windows, as the model saw in training;
    # False: the whole segment at once.
    eval_crops: bool = True
    label_smoothing: float = 0.1
    dropout: float = 0.3
    specaugment: bool = True
    freq_mask: int = 16  # widest frequency mask, in mel bands
    time_mask: int = 24  # widest time mask, in frames
    mixup_alpha: float = 0.0  # 0 turns mixup off
    gain_db: float = 0.0  # random gain of each training crop, uniform in +-gain_db (0 turns it off)
    # Epochs without a better validation accuracy before stopping; None: every epoch. On a small validation split
    # the accuracy jumps, and stopping early kept an epoch-3 model trained at the schedule's peak (GTZAN val).
    patience: int | None = None
    seed: int = 0
    # A finished run whose model starts this one (fine-tuning on a grown dataset), instead of random weights.
    init_from: str | None = None
    num_workers: int = 0
    device: str | None = None  # None: GENRECLF_DEVICE if set, else CUDA when there is one, else the CPU
    max_steps_per_epoch: int | None = None  # cap for smoke runs
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # NHWC memory format on CUDA
    # Segments each loader worker holds to shuffle across row groups (30 s float16 segments: ~85 MB per worker).
    shuffle_buffer: int = 256
    # The training and validation splits read once into the device's memory, crops cut there in batch
    # (`genreclf.datasets.resident`): None when they fit its budget (else streamed), True always, False never.
    resident: bool | None = None
    # torch.compile the model (an eager fallback where it fails): None on a GPU only.
    compile: bool | None = None
    # Grow the batch from `batch_size` in powers of two while it fits the device's memory, an epoch keeps at least
    # 32 steps and it stays within 1,024, with `lr` scaled by the square root of the growth (`models.steps.
    # batch_for`): None on a GPU only. A small catalog keeps `batch_size` either way.
    auto_batch: bool | None = None

    @property
    def frozen_head(self) -> bool:
        """A head fitted on a frozen pretrained network's embeddings: one fit, no epochs."""
        return is_pretrained(self.model) and not self.finetune

    def crop_frames(self, *, sample_rate: int, hop_length: int) -> int:
        return crop_frames(self.crop_s, sample_rate=sample_rate, hop_length=hop_length)


# Bumped when how a frozen head is chosen and fitted (genreclf.models.transfer) changes: a frozen head's run id names
# it, so a stored head made the old way is not taken for the new one. (ResNet runs resume from checkpoints instead.)
FROZEN_HEAD_VERSION = 1


# Fields added after run ids were first pinned, and their defaults: a field at its default is left out of a run's
# identity, so that adding it neither renames existing runs nor refuses their checkpoints.
ADDED_LATER: dict[str, Any] = {"resident": None, "compile": None, "auto_batch": None}


def config_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig as a dict (`dataclasses.asdict`, or as a checkpoint recorded it), as a run's identity sees it."""
    return {k: v for k, v in config.items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}


def run_id_for(dataset_id: str, cfg: TrainConfig) -> str:
    """Same dataset and config -> same run id, so a rerun resumes the run instead of starting another."""
    inputs: list[Any] = [dataset_id, config_identity(dataclasses.asdict(cfg))]
    if cfg.frozen_head:
        inputs.append({"frozen_head_version": FROZEN_HEAD_VERSION})
    return f"{cfg.model}-{content_id(inputs, length=12)}"


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    epochs: int
    best_epoch: int
    best_val_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    segments_per_s: float = 0.0  # training throughput of this call (loader + steps, not validation)
    new_epochs: int = 0  # epochs trained by this call (0 when the run had already finished)
    device: str = ""  # the device this call trained on ("cpu", "cuda", "cuda:1")
    batch_size: int = 0  # the batch the run trains with (`TrainConfig.auto_batch` may have grown it)
