"""The training step and what it runs on: augmentation in batch on the device, the optimizer (fused AdamW on a
GPU), the schedule, `torch.compile` with an eager fallback, and an epoch that syncs with the host once, at its end.

Everything here runs on the CPU too (the default tests exercise it there); only its speed differs.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genreclf.datasets.loader import Normalizer
from genreclf.datasets.resident import free_bytes
from genreclf.errors import ModelError
from genreclf.models import is_pretrained
from genreclf.models.runs import TrainConfig

log = logging.getLogger(__name__)

LN10_OVER_10 = math.log(10) / 10  # a gain of g dB adds g * ln(10) / 10 to a natural-log power spectrogram


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """The training step's autocast: bf16 on CUDA when `cfg.amp`, else off."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def random_batch(cfg: TrainConfig, device: torch.device, batch: int, crop: tuple[int, int]) -> torch.Tensor:
    """A batch shaped and laid out as training's (batch, 1, n_mels, frames), of noise: for probing the model."""
    x = torch.randn(batch, 1, *crop, device=device)
    if cfg.channels_last and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def spec_augment(x: torch.Tensor, *, freq_mask: int, time_mask: int) -> torch.Tensor:
    """Zero one random frequency band and one random time span per example: (B, 1, M, T) -> same."""
    b, _, m, t = x.shape
    dev = x.device
    f_w = torch.randint(0, freq_mask + 1, (b, 1, 1, 1), device=dev)
    f_0 = (torch.rand((b, 1, 1, 1), device=dev) * (m - f_w).clamp(min=1)).long()
    t_w = torch.randint(0, time_mask + 1, (b, 1, 1, 1), device=dev)
    t_0 = (torch.rand((b, 1, 1, 1), device=dev) * (t - t_w).clamp(min=1)).long()
    mels = torch.arange(m, device=dev).view(1, 1, m, 1)
    frames = torch.arange(t, device=dev).view(1, 1, 1, t)
    mask = ((mels >= f_0) & (mels < f_0 + f_w)) | ((frames >= t_0) & (frames < t_0 + t_w))
    return x.masked_fill(mask, 0.0)


def augmented(x: torch.Tensor, norm: Normalizer, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """A batch of crops (B, 1, M, T), log power, on `device`: random gain, normalised, SpecAugment; all in batch."""
    x = x.to(device, non_blocking=True)
    if cfg.gain_db > 0:
        gain = (torch.rand((x.shape[0], 1, 1, 1), device=device) * 2 - 1) * cfg.gain_db
        x = x + gain * LN10_OVER_10
    x = norm.apply(x)
    if cfg.channels_last and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    if cfg.specaugment:
        x = spec_augment(x, freq_mask=cfg.freq_mask, time_mask=cfg.time_mask)
    return x


def train_epoch(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    norm: Normalizer,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[float, int]:
    """One epoch over `batches` (x (B, 1, M, T), labels (B,), on the host or already on the device) -> (mean loss,
    examples). The loss is summed on the device and read once, at the end: no host sync inside the loop."""
    total = torch.zeros((), device=device)
    seen = 0
    for step, (x, y) in enumerate(batches):
        if cfg.max_steps_per_epoch is not None and step >= cfg.max_steps_per_epoch:
            break
        x = augmented(x, norm, cfg, device)
        y = y.to(device, non_blocking=True)
        lam, perm = 1.0, None
        if cfg.mixup_alpha > 0:
            lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
            perm = torch.randperm(x.shape[0], device=device)
            x = lam * x + (1 - lam) * x[perm]
        with autocast(cfg, device):
            logits = model(x)  # (batch, num_classes)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if perm is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(
                    logits.float(), y[perm], label_smoothing=cfg.label_smoothing
                )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach() * len(y)
        seen += len(y)
    return float(total) / max(seen, 1), seen


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group at `cfg.lr`; a pretrained network's own layers in a second, at `cfg.backbone_lr_scale` of it."""
    backbone = getattr(model, "backbone", None) if is_pretrained(cfg.model) else None
    if backbone is None:
        return [{"params": list(model.parameters()), "lr": cfg.lr}]
    own = {id(p) for p in backbone.parameters()}
    return [
        {"params": list(backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_scale},
        {"params": [p for p in model.parameters() if id(p) not in own], "lr": cfg.lr},
    ]


def optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device, batch: int) -> torch.optim.Optimizer:
    """AdamW at `scaled_lr(cfg, batch)`; on a GPU the fused kernel (one launch for every parameter, not one per
    tensor)."""
    lr = scaled_lr(cfg, batch)
    groups = param_groups(model, dataclasses.replace(cfg, lr=lr))
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")


# The batch `auto_batch` may grow to: about where larger batches stop paying on a GPU for a network this size, and
# what fast ResNet trainers use (cifar10-airbench: 1,024).
MAX_BATCH = 1024
# The fewest steps an epoch may have when the batch grows, so a small catalog keeps its `batch_size` and its figures
# (gtzan-sample's 97 training clips x 8 crops: 24 steps at 32).
MIN_STEPS = 32
# Of the memory free once the model and the data are on the device, what a batch's activations may take: the rest is
# for the compiler's and cuDNN's workspaces and the allocator's slack.
ACTIVATION_FRACTION = {"cuda": 0.5, "cpu": 0.25}
# Training holds per example about this many times what autograd saves for backward: the saved tensors, then the
# gradients flowing back through them.
SAVED_TO_PEAK = 2


def scaled_lr(cfg: TrainConfig, batch: int) -> float:
    """`cfg.lr` for a batch of `batch` instead of `cfg.batch_size`: the square-root rule for Adam-type optimizers
    (Malladi et al., 2022, "On the SDEs and scaling rules for adaptive gradient algorithms")."""
    return cfg.lr * math.sqrt(batch / cfg.batch_size)


def batch_for(model: nn.Module, cfg: TrainConfig, device: torch.device, crop: tuple[int, int], examples: int) -> int:
    """The batch a run trains with: `cfg.batch_size`, or with `auto_batch` (by default on a GPU) the largest
    power-of-two multiple of it whose activations fit the device's free memory, that leaves an epoch of `examples`
    at least `MIN_STEPS` steps, and is at most `MAX_BATCH`."""
    auto = device.type == "cuda" if cfg.auto_batch is None else cfg.auto_batch
    batch = cfg.batch_size
    if not auto or examples // (batch * 2) < MIN_STEPS or batch * 2 > MAX_BATCH:
        return batch
    per_example = saved_bytes_per_example(model, cfg, device, crop) * SAVED_TO_PEAK
    budget = free_bytes(device) * ACTIVATION_FRACTION.get(device.type, ACTIVATION_FRACTION["cpu"])
    while batch * 2 <= MAX_BATCH and examples // (batch * 2) >= MIN_STEPS and per_example * batch * 2 <= budget:
        batch *= 2
    log.info("batch of %d (from %d; %.1f MB of activations an example, %.0f MB free for them), learning rate %.2g",
             batch, cfg.batch_size, per_example / 1e6, budget / 1e6, scaled_lr(cfg, batch))  # fmt: skip
    return batch


def saved_bytes_per_example(model: nn.Module, cfg: TrainConfig, device: torch.device, crop: tuple[int, int]) -> int:
    """Bytes autograd saves for backward per training example of (n_mels, frames) `crop`: measured on a copy of the
    model (its batch-norm statistics untouched), on batches of 2 and 4 under the run's autocast and memory format;
    the difference leaves out what does not grow with the batch (the weights)."""
    probe = copy.deepcopy(model).train()

    def saved(batch: int) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(cfg, device):
            probe(random_batch(cfg, device, batch, crop))
        return sum(storages.values())

    return max(1, (saved(4) - saved(2)) // 2)


def scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":  # each group peaks at its own learning rate
        max_lr = [group["lr"] for group in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(steps, 1))
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    raise ModelError(f"unknown schedule {cfg.schedule!r}; use 'onecycle' or 'cosine'")


class Compiled:
    """The model's forward through `torch.compile`, falling back to the eager model, with one warning line, when
    compiling fails (no compiler on the machine, an operator the backend lacks). Weights are the eager model's:
    checkpoints and model files never see the compiled wrapper."""

    def __init__(self, model: nn.Module, enabled: bool) -> None:
        self.model = model
        self.forward: Callable[[torch.Tensor], torch.Tensor] = model
        self.compiled = False
        if enabled:
            try:
                self.forward = torch.compile(model)
                self.compiled = True
            except Exception as e:  # torch.compile itself refuses on some platforms
                self._fall_back(e)

    def warm_up(self, cfg: TrainConfig, device: torch.device, batch: int, crop: tuple[int, int]) -> None:
        """Compile now, the forward and the backward pass, on a batch of noise like training's: a compiler that
        fails in either (the backward compiles at its first call) falls back here, not in the middle of a step, and
        the first epoch's time is training's, not compiling's. Weights, gradients and batch-norm statistics are left
        as they were."""
        if not self.compiled:
            return
        buffers = [b.clone() for b in self.model.buffers()]
        self.model.train()
        try:
            with autocast(cfg, device):
                out = self.forward(random_batch(cfg, device, batch, crop))
            out.float().sum().backward()
        except Exception as e:  # the same failures as at a first call, the backward's too
            self._fall_back(e)
        finally:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers, strict=True):
                    b.copy_(saved)
            for p in self.model.parameters():
                p.grad = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.forward(x)
        except Exception as e:  # compiling happens at the first call: its errors surface here
            if not self.compiled:
                raise
            self._fall_back(e)
            return self.forward(x)

    def _fall_back(self, e: Exception) -> None:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        log.warning("torch.compile failed (%s: %s); training the eager model", type(e).__name__, first)
        self.forward, self.compiled = self.model, False


def compile_wanted(cfg: TrainConfig, device: torch.device) -> bool:
    """`cfg.compile`, or by default on a GPU (on a CPU compiling takes longer than a small run's epochs)."""
    return device.type == "cuda" if cfg.compile is None else cfg.compile
