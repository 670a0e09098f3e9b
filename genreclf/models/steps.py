"""The training step and what it runs on: augmentation in batch on the device, the optimizer (fused AdamW on a
GPU), the schedule, `torch.compile` with an eager fallback, and an epoch that syncs with the host once, at its end.

Everything here runs on the CPU too (the default tests exercise it there); only its speed differs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genreclf.datasets.loader import Normalizer
from genreclf.errors import ModelError
from genreclf.models import is_pretrained
from genreclf.models.runs import TrainConfig

log = logging.getLogger(__name__)

LN10_OVER_10 = math.log(10) / 10  # a gain of g dB adds g * ln(10) / 10 to a natural-log power spectrogram


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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
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


def optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; on a GPU the fused kernel (one launch for every parameter, not one per tensor)."""
    fused = device.type == "cuda"
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


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
