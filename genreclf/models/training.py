"""fit(): evaluate, step, log, checkpoint to storage each epoch, and resume from the last checkpoint."""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genreclf.datasets.loader import Normalizer
from genreclf.datasets.manifest import Manifest
from genreclf.errors import ConfigError, DataError, ModelError
from genreclf.models import create_model, is_pretrained
from genreclf.models.files import check_run_id, read_model, weights_key, write_model
from genreclf.models.inference import eval_window, resolve_device
from genreclf.models.run_data import RunData
from genreclf.models.runs import TrainConfig, TrainResult, config_identity
from genreclf.models.steps import Compiled, batch_for, compile_wanted, optimizer, scheduler, train_epoch
from genreclf.store.keys import checkpoint_key, finished_key, run_config_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


def _save_checkpoint(store: Store, key: str, obj: dict[str, Any]) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return store.write_bytes(key, buf.getvalue())


def _load_checkpoint(store: Store, key: str, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint holds tensors, numbers, strings and containers only: `weights_only` refuses anything else."""
    try:
        obj: dict[str, Any] = torch.load(
            io.BytesIO(store.read_bytes(key)), map_location=map_location, weights_only=True
        )
    except pickle.UnpicklingError as e:
        raise ModelError(
            f"{store.uri(key)} holds more than tensors and plain values (an older genreclf's, or not a checkpoint) "
            "and is not loaded; train under a new run id"
        ) from e
    return obj


def fit(
    store: Store,
    manifest: Manifest,
    cfg: TrainConfig,
    *,
    run_id: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
    keep_checkpoint: bool = False,
) -> TrainResult:
    """Train on the manifest's train split, pick the epoch with the best validation accuracy, save it.

    Both splits are read onto the device when they fit its budget, else a chunk at a time, or, with
    `resident=False`, streamed from the shards (`RunData`): training reads random crops, reseeded per epoch;
    validation scores whole segments, as evaluation does.
    Writes `runs/<run_id>/checkpoint.pt` after every epoch (model, optimizer, scheduler, normaliser, config,
    epoch; read back with `weights_only=True`; no RNG state, as every epoch reseeds from (seed, epoch)) and, at every
    better epoch, the model: its weights in `runs/<run_id>/model.safetensors`, then everything needed to predict in
    `model.json` (see `genreclf.models.files`).
    If a checkpoint of the same run exists, training resumes after its epoch. `stop_after` ends the call after that
    many epochs of this call (to simulate a kill in tests) without finishing the run.
    A run that finishes writes `runs/<run_id>/finished.json` (its history) and removes its checkpoint, most of what
    a run stores, unless `keep_checkpoint`; a rerun of a finished run returns its result without training.
    The device is `cfg.device`, else GENRECLF_DEVICE, else the best available (`resolve_device`); the result names it.
    """
    if cfg.frozen_head:
        from genreclf.models.transfer import fit_frozen  # scikit-learn and the embeddings: only frozen heads need them

        result = fit_frozen(store, manifest, cfg, run_id=check_run_id(run_id))
        if on_epoch is not None and result.new_epochs:
            on_epoch(1, result.history[-1])
        return result
    check_run_id(run_id)
    if manifest.rows("train") == 0:
        raise DataError(f"dataset {manifest.dataset_id} has no training segments")
    if (done := _finished(store, run_id, cfg, manifest)) is not None:
        return done
    run = _Run.start(store, manifest, cfg, run_id)
    log.info("run %s trains on %s", run_id, run.device)
    store.write_json(run_config_key(run_id), {"train": dataclasses.asdict(cfg), "dataset_id": manifest.dataset_id})
    new_epochs, seen, train_s = run.epochs(on_epoch=on_epoch, stop_after=stop_after)
    state = run.state
    result = TrainResult(
        run_id=run_id,
        model_uri=store.uri(weights_key(run_id)),
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_val_accuracy=state["best_acc"],
        history=state["history"],
        segments_per_s=seen / train_s if train_s > 0 else 0.0,
        new_epochs=new_epochs,
        device=str(run.device),
        batch_size=run.batch,
    )
    if run.done:
        _finish(store, run_id, cfg, manifest, result, keep_checkpoint=keep_checkpoint)
    return result


@dataclass
class _Run:
    """A training run in progress: its data, model, optimizer and schedule, and where its epochs are (`state`)."""

    store: Store
    manifest: Manifest
    run_id: str
    device: torch.device
    data: RunData
    val_window: int | None
    norm: Normalizer
    model: nn.Module
    forward: Compiled
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    drop_last: bool
    cfg: TrainConfig
    record: dict[str, Any]  # what model.json holds besides the epoch
    state: dict[str, Any]

    @classmethod
    def start(cls, store: Store, manifest: Manifest, cfg: TrainConfig, run_id: str) -> _Run:
        """Everything an epoch needs, from the run's checkpoint when it has one (a resumed run), else afresh."""
        pretrained = is_pretrained(cfg.model)
        device = resolve_device(cfg.device)
        n_train = manifest.rows("train") * cfg.crops_per_segment  # training examples an epoch
        val_split = "val" if manifest.rows("val") else "train"
        if val_split == "train":  # a tiny dataset may have no validation groups; say so in the log
            log.warning("dataset %s has no validation split; validating on the training split", manifest.dataset_id)
        fc = manifest.feature_config
        crop = min(cfg.crop_frames(sample_rate=fc["sample_rate"], hop_length=fc["hop_length"]), manifest.mel_shape[1])
        if pretrained:  # crops of the patch the network was trained on
            from genreclf.models.musicnn import PATCH_FRAMES

            crop = min(PATCH_FRAMES, manifest.mel_shape[1])
        data = RunData.open(store, manifest, cfg, device, crop=crop, val_split=val_split)
        ckpt_key = checkpoint_key(run_id)
        ckpt = _load_checkpoint(store, ckpt_key, device) if store.exists(ckpt_key) else None
        if ckpt is not None and (
            config_identity(ckpt["config"]) != config_identity(dataclasses.asdict(cfg))
            or ckpt["dataset_id"] != manifest.dataset_id
        ):
            raise ModelError(
                f"{store.uri(ckpt_key)} was written with another config or dataset; use a new run id to start over"
            )
        if ckpt is not None:  # a resumed run need not read the split again
            norm = Normalizer.from_dict(ckpt["normalizer"])
        elif pretrained:  # the network normalizes its input itself (its first layer is a batch norm)
            norm = Normalizer.identity(manifest.mel_shape[0])
        else:
            norm = data.normalizer(store, manifest, cfg, device)

        model = _seeded_model(cfg, len(manifest.labels))
        started: dict[str, Any] = {}
        if pretrained:
            from genreclf.models.transfer import start_finetune

            init = ckpt is None and cfg.init_from is None
            started = start_finetune(model, store, manifest, cfg, device, init=init)
        if ckpt is None:  # a resumed run has its own weights
            _warm_start(model, store, cfg, manifest.labels)
        model = model.to(device)
        if cfg.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if ckpt is not None:  # the batch the run started with (runs from before `auto_batch` trained at batch_size)
            batch = int(ckpt["state"].get("batch_size", cfg.batch_size))
        else:
            batch = batch_for(model, cfg, device, (manifest.mel_shape[0], crop), n_train)
        opt = optimizer(model, cfg, device, batch)
        drop_last = n_train > batch
        steps = data.steps(cfg, n_train, batch, drop_last=drop_last)
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        sched = scheduler(opt, cfg, steps * cfg.epochs)
        state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
                                 "batch_size": batch}  # fmt: skip
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            state = {**ckpt["state"], "batch_size": batch}
            log.info("resuming run %s after epoch %d", run_id, state["epoch"])
        val_window = eval_window(dataclasses.asdict(cfg), fc)  # as evaluation and predicting will score it
        record = {**model_record(manifest, cfg, run_id, norm), **started}
        forward = Compiled(model, compile_wanted(cfg, device))
        forward.warm_up(cfg, device, batch, (manifest.mel_shape[0], crop))
        return cls(store, manifest, run_id, device, data, val_window, norm, model, forward, opt, sched, drop_last,
                   cfg, record, state)  # fmt: skip

    @property
    def batch(self) -> int:
        """`cfg.batch_size`, or what `auto_batch` grew it to when the run started (its checkpoint keeps it)."""
        return int(self.state["batch_size"])

    @property
    def done(self) -> bool:
        """Whether the run has trained its last epoch, or stopped early (`patience` epochs without a better one)."""
        cfg, state = self.cfg, self.state
        return state["epoch"] >= cfg.epochs or (cfg.patience is not None and state["bad_epochs"] >= cfg.patience)

    def epochs(
        self, *, on_epoch: Callable[[int, dict[str, float]], None] | None, stop_after: int | None
    ) -> tuple[int, int, float]:
        """Train epochs until the last, early stopping, or `stop_after` of this call; checkpoint after each, save
        the model at each better one. Returns (epochs trained, segments seen, seconds training)."""
        cfg, state = self.cfg, self.state
        n_train = self.manifest.rows("train") * cfg.crops_per_segment
        new_epochs, seen_all, train_s = 0, 0, 0.0
        while not self.done:
            epoch = state["epoch"] + 1
            batches = self.data.train_batches(cfg, self.device, epoch, self.batch, drop_last=self.drop_last)
            t0 = time.perf_counter()
            self.model.train()
            loss, seen = train_epoch(self.forward, batches, self.opt, self.sched, self.norm, cfg, self.device)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            train_s += time.perf_counter() - t0
            if seen == 0:
                raise DataError(
                    f"epoch {epoch} had no full batch of {self.batch}: each of the {cfg.num_workers} loader "
                    f"workers read fewer of the {n_train} training segments; lower batch_size or num_workers"
                )
            seen_all += seen
            metrics = self._validated(epoch, loss)
            log.info("epoch %d: loss %.4f, val accuracy %.3f%s", epoch, loss, metrics["val_accuracy"],
                     " (best)" if state["best_epoch"] == epoch else "")  # fmt: skip
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            new_epochs += 1
            if stop_after is not None and new_epochs >= stop_after:
                break
        return new_epochs, seen_all, train_s

    def _validated(self, epoch: int, loss: float) -> dict[str, float]:
        """Score the epoch on the validation split, record it, save the model if it is the best yet, checkpoint."""
        state = self.state
        val_acc = self.data.val_accuracy(self.model, self.norm, self.device, self.val_window)
        improved = val_acc > state["best_acc"]
        lr = float(self.sched.get_last_lr()[0])
        metrics = {"epoch": epoch, "train_loss": loss, "val_accuracy": val_acc, "lr": lr}
        state["history"].append(metrics)
        state["epoch"] = epoch
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        if improved:
            state["best_acc"], state["best_epoch"] = val_acc, epoch
            write_model(self.store, self.run_id, self.model.state_dict(), {**self.record, "epoch": epoch})
        checkpoint = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                      "scheduler": self.sched.state_dict(), "normalizer": self.norm.to_dict(),
                      "config": dataclasses.asdict(self.cfg), "dataset_id": self.manifest.dataset_id,
                      "state": state}  # fmt: skip
        _save_checkpoint(self.store, checkpoint_key(self.run_id), checkpoint)
        return metrics


def _finish(
    store: Store, run_id: str, cfg: TrainConfig, manifest: Manifest, result: TrainResult, *, keep_checkpoint: bool
) -> None:
    """Record the finished run (first: a crash before the checkpoint goes leaves both, and the record wins), then
    remove the checkpoint: the best model is in model.safetensors, and the optimizer's state only resumes."""
    record = {"config": dataclasses.asdict(cfg), "dataset_id": manifest.dataset_id}
    store.write_json(finished_key(run_id), {**record, "result": dataclasses.asdict(result)})
    if not keep_checkpoint:
        store.delete(checkpoint_key(run_id))


def _finished(store: Store, run_id: str, cfg: TrainConfig, manifest: Manifest) -> TrainResult | None:
    """The result of run `run_id` if it finished already with this config on this dataset; None if it did not."""
    key = finished_key(run_id)
    if not store.exists(key):
        return None
    record = store.read_json(key)
    same = config_identity(record["config"]) == config_identity(dataclasses.asdict(cfg))
    if not same or record["dataset_id"] != manifest.dataset_id:
        raise ModelError(f"{store.uri(key)} was written with another config or dataset; use a new run id to start over")
    result = TrainResult(**{**record["result"], "new_epochs": 0, "segments_per_s": 0.0})
    log.info("run %s finished already (epoch %d, the best %d); nothing to train", run_id, result.epochs,
             result.best_epoch)  # fmt: skip
    return result


def model_record(manifest: Manifest, cfg: TrainConfig, run_id: str, norm: Normalizer) -> dict[str, Any]:
    """What model.json holds of every run besides its weights and epoch: enough to predict (see models.files)."""
    return {
        "model": cfg.model,
        "num_classes": len(manifest.labels),
        "dropout": cfg.dropout,
        "labels": manifest.labels,
        "normalizer": norm.to_dict(),
        "feature_config": manifest.feature_config,
        "segment_config": manifest.segment_config,
        "dataset_id": manifest.dataset_id,
        "catalog_version": manifest.catalog_version,
        "train_config": dataclasses.asdict(cfg),
        "run_id": run_id,
    }


def _seeded_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, num_classes=num_classes, dropout=cfg.dropout)


def _warm_start(model: nn.Module, store: Store, cfg: TrainConfig, labels: list[str]) -> None:
    """Start `model` from the weights of run `cfg.init_from`. The classifier's rows follow the genres by name: a genre
    the old model knew keeps its row, a new genre keeps its fresh random one."""
    run_id = cfg.init_from
    if run_id is None:
        return
    state, bundle = read_model(store, weights_key(run_id))
    if bundle["model"] != cfg.model:
        raise ConfigError(f"init_from={run_id!r} is a {bundle['model']} model; this run trains {cfg.model}")
    old_labels: list[str] = bundle["labels"]
    head = _head_prefix(model)
    with torch.no_grad():
        for k, v in model.state_dict().items():  # the tensors of the model itself
            if k.startswith(head):
                for i, genre in enumerate(labels):
                    if genre in old_labels:
                        v[i] = state[k][old_labels.index(genre)]
            elif k in state and state[k].shape == v.shape:
                v.copy_(state[k])
            else:
                raise ModelError(f"run {run_id}'s weights do not fit this {cfg.model} ({k})")
    kept = sum(g in old_labels for g in labels)
    log.info("warm start from run %s: %d of %d genres keep their classifier rows", run_id, kept, len(labels))


def _head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the classifier (the last Linear layer)."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return f"{name}."
