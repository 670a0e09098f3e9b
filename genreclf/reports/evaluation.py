"""Metrics per segment and per track, per genre, confusion matrices and the evaluation report."""

from __future__ import annotations

import logging
from typing import NotRequired

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12

from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import Normalizer, load_split
from genreclf.datasets.manifest import Manifest
from genreclf.models.baselines import BASELINES, class_probabilities, create_baseline, summary_features
from genreclf.models.files import META, find_model
from genreclf.models.inference import eval_window, load_model, predict_logits, resolve_device, track_scores
from genreclf.reports.plots import confusion_png
from genreclf.store.keys import confusion_key, model_file_key, report_key, run_config_key
from genreclf.store.storage import Store

log = logging.getLogger(__name__)


class GenreMetrics(TypedDict):
    precision: float
    recall: float
    f1: float
    support: int  # tracks (or segments) of the genre


class Metrics(TypedDict):
    """`classification_metrics` of one model on one split, per segment or per track."""

    n: int
    accuracy: float
    top3_accuracy: float
    per_genre: dict[str, GenreMetrics]
    confusion: list[list[int]]  # rows: true genre, columns: predicted, in label order


class Scores(TypedDict):
    segment: Metrics
    track: Metrics


class SkippedTrack(TypedDict):
    track_id: str
    reason: str


class OodScores(Scores):
    """Scores on a catalog outside the dataset, and the tracks that could not be scored."""

    skipped: list[SkippedTrack]


class Promotion(TypedDict):
    """The registry's decision (`registry.Decision`) as the report holds it."""

    promote: bool
    reason: str
    line: NotRequired[str]  # the line the run was compared in (registry.line_of its dataset)
    champion: NotRequired[str]  # that line's champion after the decision: the run, or the one it did not beat


class Report(TypedDict):
    """The evaluation of a run, stored as runs/<run_id>/report.json (`save_report`)."""

    run_id: str
    model: str  # the run's model: its entry in `models`
    model_uri: str
    dataset_id: str
    catalog_version: str
    feature_hash: str
    labels: list[str]
    split: str
    device: str
    models: dict[str, Scores]  # the run's model and the baselines
    confusion_png: str
    warnings: list[str]
    ood: NotRequired[OodScores]  # added by the evaluate flow when it is given an OOD catalog
    promotion: NotRequired[Promotion]  # added by the evaluate flow when it promotes


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, labels: list[str]) -> Metrics:
    """Top-1 and top-3 accuracy, per-genre precision/recall/F1/support and the confusion matrix."""
    n_classes = len(labels)
    pred = scores.argmax(axis=1)
    idx = list(range(n_classes))
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=idx, zero_division=0)
    top3 = np.argsort(-scores, axis=1)[:, :3]  # (n, min(3, n_classes)): 1.0 by definition with 3 classes or fewer
    return {
        "n": len(y_true),
        "accuracy": float((pred == y_true).mean()) if len(y_true) else 0.0,
        "top3_accuracy": float((top3 == y_true[:, None]).any(axis=1).mean()) if len(y_true) else 0.0,
        "per_genre": {
            g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, g in enumerate(labels)
        },
        "confusion": confusion_matrix(y_true, pred, labels=idx).tolist(),
    }


def score_report(scores: np.ndarray, y: np.ndarray, track_ids: np.ndarray, labels: list[str]) -> Scores:
    """Segment- and track-level metrics of one model's scores on one split."""
    t_scores, t_labels = track_scores(scores, y, track_ids)
    return {
        "segment": classification_metrics(y, scores, labels),
        "track": classification_metrics(t_labels, t_scores, labels),
    }


def evaluate_model(
    store: Store, model_key: str, manifest: Manifest, split: str = "test", *, device: str | None = None
) -> Scores:
    """Score a saved model on a split of the dataset, on `device` (else GENRECLF_DEVICE, else the best available)."""
    dev = resolve_device(device)
    model, bundle = load_model(store, model_key, dev)
    data = load_split(store, manifest, split)
    window = eval_window(bundle.get("train_config", {}), bundle["feature_config"])
    logits = predict_logits(model, data.mel, Normalizer.from_dict(bundle["normalizer"]), device=dev, window=window)
    return score_report(logits, data.labels, data.track_ids, manifest.labels)


def evaluate_baselines(store: Store, manifest: Manifest, *, seed: int = 0, split: str = "test") -> dict[str, Scores]:
    """Fit kNN (k=55) and the MLP on the train split's summary features; score them on `split` (scikit-learn, on
    the CPU)."""
    train, test = load_split(store, manifest, "train"), load_split(store, manifest, split)
    cfg = FeatureConfig(**manifest.feature_config)
    x_train, x_test = summary_features(train.mel, cfg=cfg), summary_features(test.mel, cfg=cfg)
    out: dict[str, Scores] = {}
    for name in BASELINES:
        model = create_baseline(name, n_train=len(train), num_classes=len(manifest.labels), seed=seed)
        model.fit(x_train, train.labels)
        proba = class_probabilities(model, x_test, len(manifest.labels))
        out[name] = score_report(proba, test.labels, test.track_ids, manifest.labels)
    return out


def evaluate_embedding_knn(
    store: Store, manifest: Manifest, net_id: str, *, split: str = "test", name: str = "knn-embedding"
) -> dict[str, Scores]:
    """kNN (k=55, capped as `knn_k`) on a pretrained network's stored segment embeddings (`genreclf.models.embeddings`),
    fitted on train and scored on `split`: the baseline beside a head on the same embeddings."""
    from genreclf.models.embeddings import live_columns, load_embeddings

    train, test = load_embeddings(store, manifest, net_id, "train"), load_embeddings(store, manifest, net_id, split)
    live = live_columns(train.x)  # standardized dead channels would be noise in every distance
    model = create_baseline("knn", n_train=len(train), num_classes=len(manifest.labels))
    model.fit(train.x[:, live], train.labels)
    proba = class_probabilities(model, test.x[:, live], len(manifest.labels))
    return {name: score_report(proba, test.labels, test.track_ids, manifest.labels)}


def report_markdown(report: Report) -> str:
    """A human-readable report: headline accuracies of every model, then per-genre figures of the main one."""
    lines = [
        f"# Evaluation of run `{report['run_id']}`",
        "",
        f"Dataset `{report['dataset_id']}` (catalog `{report['catalog_version']}`), split `{report['split']}`; "
        f"{report['model']} scored on `{report['device']}`.",
        "",
    ]
    if report.get("warnings"):
        lines += ["**Warnings:**", "", *(f"- {w}" for w in report["warnings"]), ""]
    lines += [
        "| model | segment acc | track acc | track top-3 |",
        "|---|---|---|---|",
    ]
    for name, rep in report["models"].items():
        seg, trk = rep["segment"], rep["track"]
        lines.append(f"| {name} | {seg['accuracy']:.3f} | {trk['accuracy']:.3f} | {trk['top3_accuracy']:.3f} |")
    main = report["models"][report["model"]]["track"]
    lines += [
        "",
        f"## Per genre ({report['model']}, per track)",
        "",
        "| genre | precision | recall | F1 | tracks |",
    ]
    lines.append("|---|---|---|---|---|")
    for g, m in main["per_genre"].items():
        lines.append(f"| {g} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    if report.get("ood"):
        ood_seg, ood_trk = report["ood"]["segment"], report["ood"]["track"]
        lines += [
            "",
            f"## Out of distribution ({report['model']})",
            "",
            f"Segment accuracy {ood_seg['accuracy']:.3f}, track accuracy {ood_trk['accuracy']:.3f} "
            f"on {ood_trk['n']} tracks ({len(report['ood']['skipped'])} skipped).",
        ]
    if report.get("promotion"):
        lines += ["", f"**Promotion:** {report['promotion']['reason']}"]
    if report.get("confusion_png"):
        lines += ["", f"Confusion matrix: {report['confusion_png']}"]
    return "\n".join(lines) + "\n"


def evaluate_run(
    store: Store, run_id: str, manifest: Manifest, *, baselines: bool = True, device: str | None = None
) -> Report:
    """Evaluate a trained run (and the baselines) on the test split; write the confusion matrix PNG under
    runs/<run_id>/ and return the report (`save_report` stores it once promotion and OOD figures are added).

    The model runs on `device`, else GENRECLF_DEVICE, else the best available; the report's `device` names it.
    """
    model_key = find_model(store, run_id)  # refuses a run id that is not one path component
    dev = str(resolve_device(device))
    train_config = store.read_json(run_config_key(run_id))["train"]
    name = train_config["model"]
    models = {name: evaluate_model(store, model_key, manifest, device=dev)}
    if baselines:  # with the run's seed: the run's figures and the baselines' vary together across seeds
        models.update(evaluate_baselines(store, manifest, seed=train_config.get("seed", 0)))
        meta_key = model_file_key(run_id, META)
        net_id = store.read_json(meta_key).get("embeddings") if store.exists(meta_key) else None
        if net_id:  # a head on a pretrained network: kNN on the same embeddings
            models.update(evaluate_embedding_knn(store, manifest, net_id))
    png_uri = store.write_bytes(
        confusion_key(run_id),
        confusion_png(models[name]["track"]["confusion"], manifest.labels, f"{name}, per track\nrun {run_id}"),
    )
    report: Report = {
        "run_id": run_id,
        "model": name,
        "model_uri": store.uri(model_key),
        "dataset_id": manifest.dataset_id,
        "catalog_version": manifest.catalog_version,
        "feature_hash": manifest.feature_hash,
        "labels": manifest.labels,
        "split": "test",
        "device": dev,
        "models": models,
        "confusion_png": png_uri,
        "warnings": list(manifest.warnings),
    }
    return report


def save_report(store: Store, report: Report) -> str:
    """Write runs/<run_id>/report.json and report.md; return the markdown's URI."""
    store.write_json(report_key(report["run_id"]), report)
    return store.write_text(report_key(report["run_id"], "md"), report_markdown(report))
