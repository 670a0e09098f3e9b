"""Predict genres of audio files with a saved model: decode, segment, log-mel, score, average per file."""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import numpy as np
import torch
from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12

from genreclf.acquisition import audio
from genreclf.acquisition.acquire import fetch_audio
from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.features import FeatureConfig, features_batch
from genreclf.datasets.loader import Normalizer
from genreclf.errors import AudioError, ConfigError, GenreclfError, ModelError, SourceError, StorageError
from genreclf.models.files import find_model, is_run_id, parse_run_key
from genreclf.models.inference import eval_window, load_model, predict_logits, resolve_device
from genreclf.reports.registry import read_champion
from genreclf.store.keys import CHAMPION_KEY, audio_key
from genreclf.store.storage import Store

if TYPE_CHECKING:  # not imported to predict: polars and scikit-learn take seconds to import
    from genreclf.ingest.catalog import CatalogRow
    from genreclf.reports.evaluation import OodScores, SkippedTrack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """Genre probabilities of one input: for the whole file (mean of window logits) and per window."""

    source: str
    labels: list[str]
    probabilities: np.ndarray  # (num_classes,)
    window_probabilities: np.ndarray  # (windows, num_classes)
    offsets_s: np.ndarray  # (windows,)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities)[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, k: int = 3) -> dict[str, Any]:
        return {"source": self.source, "genre": self.top(1)[0][0], "top": self.top(k)}


def resolve_model_key(store: Store, model: str | None, *, line: str | None = None) -> str:
    """A model reference -> the key of its model file in the store's `runs/`.

    `model` is None (the champion of `line`, else the most recently promoted champion: registry.read_champion), a
    run id, a key `runs/<id>` or `runs/<id>/model.safetensors`, or the URI of one of those in this store. Anything
    else, and a champion whose `model_key` is anything else, is refused with a ModelError: no model is loaded from
    outside `runs/`.
    """
    if model is None:
        champion = read_champion(store, line)
        if champion is None:
            raise ModelError(f"no champion in {store.url}: train one (genreclf run ...) or pass --model")
        ref = str(champion.get("model_key"))
        parsed = parse_run_key(ref)
        if parsed is None:
            raise ModelError(
                f"the champion in {store.uri(CHAMPION_KEY)} names model_key {ref!r}, which is not a run in the store; "
                f"it is not loaded: pass --model with a run id (the folders under {store.uri('runs')}/)"
            )
        return find_model(store, *parsed, shown=ref)
    if is_run_id(model):
        parsed = (model, None)
    else:
        parsed = parse_run_key(store.key_of(model) if model.startswith(f"{store.url}/") else model)
    if parsed is None:
        raise ModelError(
            f"model {model!r} must be a run id or a run in the store {store.url} (runs/<id> or "
            f"{store.uri('runs/<id>')}); the runs are the folders under {store.uri('runs')}/ and "
            "`genreclf status` shows the champion"
        )
    return find_model(store, *parsed, shown=model)


class Predictor:
    """A loaded model with the feature and segment configs it was trained with, on `device` (else GENRECLF_DEVICE,
    else the best available)."""

    def __init__(
        self, store: Store, model: str | None = None, *, device: str | None = None, line: str | None = None
    ) -> None:
        self.device = resolve_device(device)  # first: a device this machine lacks fails before any model is read
        self.key = resolve_model_key(store, model, line=line)
        self.model, bundle = load_model(store, self.key, self.device)
        self.labels: list[str] = bundle["labels"]
        self.norm = Normalizer.from_dict(bundle["normalizer"])
        self.feat = FeatureConfig(**bundle["feature_config"])
        self.seg = SegmentConfig(**bundle["segment_config"])
        self.run_id: str = bundle.get("run_id", "")
        self.window = eval_window(bundle.get("train_config", {}), bundle["feature_config"])

    def predict_audio(self, y: np.ndarray, *, source: str = "<audio>") -> Prediction:
        """Score mono audio at the model's sample rate (samples,)."""
        try:
            windows, offsets = audio.segment(y, cfg=self.seg)
        except AudioError as e:
            raise AudioError(f"{source}: {e}") from None
        mel = features_batch(windows, sample_rate=self.seg.sample_rate, cfg=self.feat)  # (windows, n_mels, frames)
        logits = predict_logits(self.model, mel, self.norm, device=self.device, window=self.window)  # (windows, C)
        window_p = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        file_p = torch.softmax(torch.from_numpy(logits.mean(axis=0)), dim=0).numpy()
        return Prediction(source, self.labels, file_p, window_p, offsets)

    def predict_file(self, path: str | Path) -> Prediction:
        """Decode any file ffmpeg reads and score it; AudioError names the file when it is not usable audio."""
        y = audio.decode(str(path), sr=self.seg.sample_rate, max_seconds=self.seg.max_seconds)
        return self.predict_audio(y, source=str(path))

    def predict_input(self, source: str) -> Prediction:
        """A file, or an http(s) URL (a direct audio file or a page yt-dlp knows, e.g. a YouTube video)."""
        if not source.startswith(("http://", "https://")):
            return self.predict_file(source)
        from genreclf.settings import get_settings
        from genreclf.sources.youtube import download

        with tempfile.TemporaryDirectory(prefix="genreclf-predict-") as tmp:
            got = download(source, Path(tmp), cfg=get_settings().youtube)
            y = audio.decode(got.path, sr=self.seg.sample_rate, max_seconds=self.seg.max_seconds, name=source)
        return self.predict_audio(y, source=source)


def open_predictor(
    storage_url: str | None, model: str | None, device: str | None = None, *, line: str | None = None
) -> Predictor:
    try:
        return Predictor(Store.open(storage_url), model, device=device, line=line)
    except StorageError as e:
        raise ModelError(f"cannot load the model: {e}") from e


def audio_files_under(path: str | Path) -> list[Path]:
    """The audio files under a folder, recursively, sorted by path: what the folder catalog counts as audio
    (`sources.local.AUDIO_EXTENSIONS`), leaving out hidden files and folders. Symlinked folders are not followed.

    A SourceError when `path` is not a folder or holds no audio file.
    """
    from genreclf.sources.local import AUDIO_EXTENSIONS  # imported here: sources.local imports polars (~0.4 s)

    root = Path(path).expanduser()
    if not root.is_dir():
        raise SourceError(f"{root}: not a folder; give a folder of audio files, or the files themselves")
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        names = [f for f in files if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_EXTENSIONS]
        found += [Path(folder) / f for f in names]
    if not found:
        raise SourceError(f"{root}: no audio files in this folder or below ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return sorted(found, key=lambda p: p.relative_to(root).parts)


class PredictionRow(TypedDict):
    """One input of a batch: its top genre and every genre's probability (label order), or why it failed.

    The names follow the predict flow's table (`genre`, `probability`, `error`); `path` is the input as given.
    """

    path: str
    genre: str | None
    probability: float | None
    probabilities: dict[str, float]  # empty when `error` is set
    error: str | None


def prediction_row(pred: Prediction) -> PredictionRow:
    genre, p = pred.top(1)[0]
    probs = {g: round(float(q), 6) for g, q in zip(pred.labels, pred.probabilities, strict=True)}
    return {"path": pred.source, "genre": genre, "probability": round(p, 6), "probabilities": probs, "error": None}


def error_row(source: str, error: str) -> PredictionRow:
    return {"path": source, "genre": None, "probability": None, "probabilities": {}, "error": error}


def predict_rows(predictor: Predictor, sources: Iterable[str]) -> Iterator[PredictionRow]:
    """A row per input, in order; an input that fails (a GenreclfError) is an error row and the batch goes on."""
    for source in sources:
        try:
            yield prediction_row(predictor.predict_input(source))
        except GenreclfError as e:
            yield error_row(source, str(e))


def write_predictions(
    rows: Iterable[PredictionRow], fmt: Literal["csv", "json"], out: TextIO, *, labels: Sequence[str]
) -> int:
    """Write rows as they come to `out`; returns how many were errors.

    csv: a header `path,genre,probability,p_<label>...,error` (the model's labels in order), then a line per row, its
    empty cells what an error row lacks. json: an array of the rows, one object a line, `probabilities` an object
    in label order.
    """
    if fmt not in ("csv", "json"):
        raise ConfigError(f"format {fmt!r} is not one genreclf writes; use csv or json")
    errors = 0
    if fmt == "csv":
        columns = ["path", "genre", "probability", *(f"p_{g}" for g in labels), "error"]
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
    else:
        out.write("[")
    for i, row in enumerate(rows):
        errors += row["error"] is not None
        if fmt == "csv":
            flat = {k: v for k, v in row.items() if k != "probabilities"}
            writer.writerow(flat | {f"p_{g}": p for g, p in row["probabilities"].items()})
        else:
            out.write(("," if i else "") + "\n" + json.dumps(row))
        out.flush()  # a long batch shows its rows as they come, and a crash keeps those written
    if fmt == "json":
        out.write("\n]\n")
    return errors


def predict_row(predictor: Predictor, store: Store, row: CatalogRow) -> Prediction:
    """Score a catalog row: its decoded audio in the store when acquired, else its audio URI."""
    name = f"track {row['track_id']} ({row.get('source_ref') or row.get('title')})"
    keys = (audio_key(row["track_id"], row.get("content_hash"), fmt) for fmt in audio.STORED_FORMATS)
    if key := next((k for k in keys if store.exists(k)), None):
        y = audio.decode(store.read_bytes(key), sr=predictor.seg.sample_rate, name=name)
    elif uri := row.get("audio_uri"):
        y = fetch_audio(uri, name, predictor.seg.sample_rate, predictor.seg.max_seconds)
    else:
        raise AudioError(f"{name}: no audio in the store and no audio URI; run build-dataset first")
    return predictor.predict_audio(y, source=name)


def evaluate_catalog(predictor: Predictor, store: Store, rows: list[CatalogRow]) -> OodScores:
    """Metrics of the model on labelled catalog rows outside the dataset (e.g. covers and live recordings).

    Rows whose genre the model does not know, or whose audio is unusable, are listed under `skipped`.
    """
    from genreclf.reports.evaluation import score_report

    label_of = {g: i for i, g in enumerate(predictor.labels)}
    scores, labels, tracks = [], [], []
    skipped: list[SkippedTrack] = []
    for row in rows:
        if row["genre"] not in label_of:
            skipped.append(
                {"track_id": row["track_id"], "reason": f"genre {row['genre']!r} is not one the model knows"}
            )
            continue
        try:
            pred = predict_row(predictor, store, row)
        except GenreclfError as e:
            skipped.append({"track_id": row["track_id"], "reason": str(e)})
            continue
        scores.append(np.log(np.clip(pred.window_probabilities, 1e-12, None)))
        labels += [label_of[row["genre"]]] * len(pred.offsets_s)
        tracks += [row["track_id"]] * len(pred.offsets_s)
    if not scores:
        raise AudioError("no out-of-distribution track could be scored: " + "; ".join(s["reason"] for s in skipped[:3]))
    report = score_report(np.concatenate(scores), np.asarray(labels), np.asarray(tracks), predictor.labels)
    return {**report, "skipped": skipped}
