"""A classifier on a frozen pretrained network: heads fitted on stored embeddings, the best on val kept, then saved
as one model (network + head) that evaluation and `predict` load like any other.

`fit_frozen` embeds the dataset once (`genreclf.models.embeddings`), fits every `HEADS` candidate on the train split
(standardized logistic regressions over some of the network's layers, and one-hidden-layer MLPs), scores each on
val per track, keeps the best (ties: the lower val log-loss), refits it on train + val (`TrainConfig.head_refit`),
and folds the standardization into the head's first layer so that the saved model is plain torch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from genreclf.datasets.loader import Normalizer
from genreclf.datasets.manifest import Manifest
from genreclf.errors import ModelError
from genreclf.models import weights
from genreclf.models.embeddings import Embeddings, ensure_embeddings, live_columns, load_embeddings
from genreclf.models.files import META, read_model, weights_key, write_model
from genreclf.models.inference import resolve_device, track_scores
from genreclf.models.musicnn import EMBEDDING_DIM, EMBEDDING_LAYERS, FEATURES, MusicnnClassifier
from genreclf.models.runs import TrainConfig, TrainResult
from genreclf.models.training import model_record
from genreclf.store.keys import model_file_key, run_config_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    """One head candidate: a logistic regression (`hidden` 0; `strength` is C, the inverse L2) or an MLP with one
    hidden ReLU layer (`strength` is alpha, its L2), over the named layers of the embedding."""

    layers: tuple[str, ...]
    strength: float
    hidden: int = 0

    @property
    def name(self) -> str:
        kind = f"mlp{self.hidden} alpha={self.strength:g}" if self.hidden else f"logreg C={self.strength:g}"
        return f"{kind} on {'+'.join(self.layers)}"


# The C values of the peer figure in ../shared/data/README.md (0.765 test with max_pool or penultimate), over three
# choices of layers; and MLPs on the two layers together.
_LAYER_SETS = (("max_pool",), ("penultimate",), ("max_pool", "penultimate"))
HEADS: tuple[Head, ...] = (
    *(Head(layers, c) for layers in _LAYER_SETS for c in (0.01, 0.1, 1.0, 10.0)),
    *(Head(("max_pool", "penultimate"), alpha, hidden=256) for alpha in (1e-3, 1e-1, 1.0)),
)


def _columns(layers: tuple[str, ...]) -> np.ndarray:
    """Indices of `layers` in the embedding (EMBEDDING_LAYERS' order)."""
    out, start = [], 0
    for name, width in EMBEDDING_LAYERS.items():
        if name in layers:
            out.append(np.arange(start, start + width))
        start += width
    return np.concatenate(out)


@dataclass
class FittedHead:
    head: Head
    columns: np.ndarray  # the embedding's columns it reads: those of its layers that vary (`live_columns`)
    scaler: StandardScaler
    model: LogisticRegression | MLPClassifier

    def logits(self, x: np.ndarray, num_classes: int) -> np.ndarray:
        """(n, EMBEDDING_DIM) -> (n, num_classes) float32, as the saved torch head computes them."""
        with torch.no_grad():
            return head_module(self, num_classes)(torch.from_numpy(x.astype(np.float32))).numpy()


def fit_head(head: Head, data: Embeddings, *, seed: int) -> FittedHead:
    columns = _columns(head.layers)
    columns = columns[live_columns(data.x[:, columns])]
    x = data.x[:, columns]
    scaler = StandardScaler().fit(x)
    model: LogisticRegression | MLPClassifier
    if head.hidden:
        model = MLPClassifier((head.hidden,), alpha=head.strength, max_iter=500, random_state=seed)
    else:
        model = LogisticRegression(C=head.strength, max_iter=2000)
    with warnings.catch_warnings():  # a strongly regularized fit that stops at max_iter is still a fine candidate
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(x), data.labels)
    return FittedHead(head, columns, scaler, model)


def head_module(fitted: FittedHead, num_classes: int) -> torch.nn.Sequential:
    """The fitted head as the torch layers of `MusicnnClassifier.head` (dropout included, so the state dict's keys
    match): standardization folded into the first linear layer, zero weights on the layers it does not read, and a
    bias of -1e4 for a class the training split did not have."""
    cols = torch.from_numpy(fitted.columns)
    mean = torch.from_numpy(fitted.scaler.mean_).double()
    scale = torch.from_numpy(fitted.scaler.scale_).double()
    classes = torch.from_numpy(np.asarray(fitted.model.classes_, dtype=np.int64))

    def first_layer(weight: torch.Tensor, bias: torch.Tensor, out: int) -> torch.nn.Linear:
        layer = torch.nn.Linear(EMBEDDING_DIM, out)
        w = torch.zeros(out, EMBEDDING_DIM, dtype=torch.float64)
        w[:, cols] = weight / scale  # (out, kept)
        layer.weight.data = w.float()
        layer.bias.data = (bias - (weight / scale) @ mean).float()
        return layer

    def per_class(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the classes seen -> rows of every class; one binary logit z -> (-z/2, z/2)."""
        if weight.shape[0] == 1 and len(classes) == 2:
            weight, bias = torch.cat([-weight / 2, weight / 2]), torch.cat([-bias / 2, bias / 2])
        full_w = torch.zeros(num_classes, weight.shape[1], dtype=torch.float64)
        full_b = torch.full((num_classes,), -1e4, dtype=torch.float64)
        full_w[classes], full_b[classes] = weight, bias
        return full_w, full_b

    model = fitted.model
    if isinstance(model, LogisticRegression):
        w, b = per_class(torch.from_numpy(model.coef_).double(), torch.from_numpy(model.intercept_).double())
        return torch.nn.Sequential(torch.nn.Dropout(0.0), first_layer(w, b, num_classes))
    w1, w2 = (torch.from_numpy(c.T).double() for c in model.coefs_)  # (hidden, in), (out, hidden)
    b1, b2 = (torch.from_numpy(b).double() for b in model.intercepts_)
    w2, b2 = per_class(w2, b2)
    hidden = first_layer(w1, b1, fitted.head.hidden)
    out = torch.nn.Linear(fitted.head.hidden, num_classes)
    out.weight.data, out.bias.data = w2.float(), b2.float()
    return torch.nn.Sequential(hidden, torch.nn.ReLU(), torch.nn.Dropout(0.0), out)


def _scores(logits: np.ndarray, data: Embeddings) -> dict[str, float]:
    """Track accuracy and log-loss of segment logits (a track: the mean of its segments' logits)."""
    t_logits, t_labels = track_scores(logits, data.labels, data.track_ids)
    t_logits = t_logits - t_logits.max(axis=1, keepdims=True)
    log_p = t_logits - np.log(np.exp(t_logits).sum(axis=1, keepdims=True))
    return {
        "segment_accuracy": float((logits.argmax(1) == data.labels).mean()),
        "track_accuracy": float((t_logits.argmax(1) == t_labels).mean()),
        "track_log_loss": float(-log_p[np.arange(len(t_labels)), t_labels].mean()),
    }


def select_head(
    train: Embeddings, val: Embeddings, *, num_classes: int, seed: int, heads: tuple[Head, ...] = HEADS
) -> tuple[Head, list[dict[str, Any]]]:
    """Fit every candidate on `train`, score it on `val` -> (the best: highest val track accuracy, then lowest val
    log-loss; the table of every candidate's val figures and its log-loss on train)."""
    scored: list[tuple[Head, dict[str, float]]] = []
    for head in heads:
        fitted = fit_head(head, train, seed=seed)
        on_train = _scores(fitted.logits(train.x, num_classes), train)["track_log_loss"]
        scored.append((head, {**_scores(fitted.logits(val.x, num_classes), val), "train_log_loss": on_train}))
    best, _ = min(scored, key=lambda r: (-r[1]["track_accuracy"], r[1]["track_log_loss"]))
    return best, [{"head": head.name, **scores} for head, scores in scored]


def fit_frozen(store: Store, manifest: Manifest, cfg: TrainConfig, *, run_id: str) -> TrainResult:
    """Train a head on the frozen network `cfg.model` (see the module's docstring) and save the run's model.

    A run already saved (same dataset and config: same run id) is returned as it is. Needs the dataset built with
    the network's features, and the network's weights in the cache (`genreclf weights fetch`).
    """
    if store.exists(model_file_key(run_id, META)):
        _, bundle = read_model(store, weights_key(run_id))
        log.info("run %s is trained already (%s)", run_id, bundle["head"]["name"])
        return _result(store, run_id, bundle, new_epochs=0)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    net_id = ensure_embeddings(store, manifest, cfg.model, device=device)
    embed_s = time.perf_counter() - t0
    train = load_embeddings(store, manifest, net_id, "train")
    val_split = "val" if manifest.rows("val") else "train"
    val = load_embeddings(store, manifest, net_id, val_split)
    num_classes = len(manifest.labels)
    best, table = select_head(train, val, num_classes=num_classes, seed=cfg.seed)
    chosen = next(r for r in table if r["head"] == best.name)
    log.info("head chosen on %s: %s (track accuracy %.3f, log-loss %.3f of %d candidates)", val_split, best.name,
             chosen["track_accuracy"], chosen["track_log_loss"], len(table))  # fmt: skip
    fit_on = train
    if cfg.head_refit and val_split == "val":
        fit_on = Embeddings(np.concatenate([train.x, val.x]), np.concatenate([train.labels, val.labels]),
                            np.concatenate([train.track_ids, val.track_ids]))  # fmt: skip
    head = head_module(fit_head(best, fit_on, seed=cfg.seed), num_classes)
    model = MusicnnClassifier(num_classes=num_classes, hidden=best.hidden, dropout=cfg.dropout)
    model.backbone.load_state_dict(weights.load(cfg.model)[0])
    model.head.load_state_dict(head.state_dict())
    bundle = {
        **model_record(manifest, cfg, run_id, Normalizer.identity(FEATURES.n_mels)),
        "hidden": best.hidden,
        "epoch": 1,
        "head": {
            "name": best.name,
            **dataclasses.asdict(best),
            "refit_on": "train+val" if fit_on is not train else "train",
            "chosen_on": val_split,
            "candidates": table,
        },
        "pretrained": _provenance(cfg.model),
        "embeddings": net_id,
        "history": [
            {"epoch": 1, "train_loss": chosen["train_log_loss"], "val_accuracy": chosen["segment_accuracy"], "lr": 0.0}
        ],
        "train_s": time.perf_counter() - t0,
        "embed_s": embed_s,
    }
    store.write_json(run_config_key(run_id), {"train": dataclasses.asdict(cfg), "dataset_id": manifest.dataset_id})
    write_model(store, run_id, model.state_dict(), bundle)
    return _result(store, run_id, bundle, new_epochs=1, device=str(device))


def _provenance(name: str) -> dict[str, Any]:
    """What model.json records of the pretrained weights a model started from."""
    meta = weights.status(name)["provenance"]
    keys = ("name", "source", "wheel_sha256", "checkpoint", "converter_version", "weights_sha256", "license")
    return {k: meta[k] for k in keys}


def start_finetune(
    model: torch.nn.Module, store: Store, manifest: Manifest, cfg: TrainConfig, device: torch.device, *, init: bool
) -> dict[str, Any]:
    """Where fine-tuning `model` (a `MusicnnClassifier` with a linear head) starts: the pretrained network, and for
    the head the logistic regression on its frozen embeddings that scores best on val, fitted on train (linear
    probing, then fine-tuning: the first steps do not pull the network toward a random head). `init=False` (a
    resumed or warm-started run) only checks the features. Returns what model.json records of it."""
    net_id = ensure_embeddings(store, manifest, cfg.model, device=device)
    record: dict[str, Any] = {"hidden": 0, "pretrained": _provenance(cfg.model), "embeddings": net_id}
    if not init:
        return record
    if not isinstance(model, MusicnnClassifier):
        raise ModelError(f"{cfg.model} is fine-tuned as a MusicnnClassifier, not a {type(model).__name__}")
    model.backbone.load_state_dict(weights.load(cfg.model)[0])
    train = load_embeddings(store, manifest, net_id, "train")
    val = load_embeddings(store, manifest, net_id, "val" if manifest.rows("val") else "train")
    linear = tuple(h for h in HEADS if not h.hidden)
    best, table = select_head(train, val, num_classes=len(manifest.labels), seed=cfg.seed, heads=linear)
    model.head.load_state_dict(head_module(fit_head(best, train, seed=cfg.seed), len(manifest.labels)).state_dict())
    log.info("fine-tuning %s from the head %s", cfg.model, best.name)
    return {**record, "head": {"name": best.name, "start_of": "finetune", "candidates": table}}


def _result(store: Store, run_id: str, bundle: dict[str, Any], *, new_epochs: int, device: str = "") -> TrainResult:
    chosen = next(r for r in bundle["head"]["candidates"] if r["head"] == bundle["head"]["name"])
    return TrainResult(
        run_id=run_id,
        model_uri=store.uri(weights_key(run_id)),
        epochs=1,
        best_epoch=1,
        best_val_accuracy=chosen["segment_accuracy"],
        history=bundle["history"],
        new_epochs=new_epochs,
        device=device or "cpu",
    )
