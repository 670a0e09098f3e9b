"""Tasks that score catalogs with a saved model (batch prediction, out-of-distribution evaluation)."""

from __future__ import annotations

from prefect import task
from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12

from genreclf.errors import GenreclfError
from genreclf.ingest.catalog import CatalogRow, rows_of
from genreclf.reports.evaluation import OodScores
from genreclf.reports.predict import Predictor, evaluate_catalog, predict_row
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store


class TrackPrediction(TypedDict):
    """A track's top genre and its probability, or why it could not be scored (a row of the predictions table)."""

    track_id: str
    genre: str | None
    probability: float | None
    error: str | None


@task(name="predict-tracks", task_run_name="predict-{index}")
def predict_tracks(
    storage_url: str, model: str | None, rows: list[CatalogRow], index: int = 0, device: str | None = None
) -> list[TrackPrediction]:
    """Top genres per track; a track whose audio is unusable gets its error instead."""
    store = Store.open(storage_url)
    predictor = Predictor(store, model, device=device)
    out: list[TrackPrediction] = []
    for row in rows:
        try:
            pred = predict_row(predictor, store, row)
        except GenreclfError as e:
            out.append({"track_id": row["track_id"], "genre": None, "probability": None, "error": str(e)})
        else:
            genre, p = pred.top(1)[0]
            out.append({"track_id": row["track_id"], "genre": genre, "probability": p, "error": None})
    return out


@task(name="evaluate-ood", task_run_name="evaluate-ood-{run_id}")
def evaluate_ood(storage_url: str, run_id: str, catalog_dir: str, device: str | None = None) -> OodScores:
    """Metrics on a folder of out-of-distribution recordings (covers, live) laid out ROOT/<genre>/<file>."""
    store = Store.open(storage_url)
    predictor = Predictor(store, run_id, device=device)
    return evaluate_catalog(predictor, store, rows_of(scan_folder(catalog_dir).tracks))
