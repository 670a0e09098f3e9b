"""Tasks that score catalogs with a saved model (batch prediction, out-of-distribution evaluation)."""

from __future__ import annotations

from typing import Any

from prefect import task

from genreclf.errors import GenreclfError
from genreclf.predict import Predictor, evaluate_catalog, predict_row
from genreclf.sources.local import scan_folder
from genreclf.storage import Store


@task(name="predict-tracks", task_run_name="predict-{index}")
def predict_tracks(
    storage_url: str, model: str | None, rows: list[dict[str, Any]], index: int = 0, device: str | None = None
) -> list[dict]:
    """Top genres per track; a track whose audio is unusable gets its error instead."""
    store = Store.open(storage_url)
    predictor = Predictor(store, model, device=device)
    out = []
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
def evaluate_ood(storage_url: str, run_id: str, catalog_dir: str, device: str | None = None) -> dict[str, Any]:
    """Metrics on a folder of out-of-distribution recordings (covers, live) laid out ROOT/<genre>/<file>."""
    store = Store.open(storage_url)
    predictor = Predictor(store, run_id, device=device)
    return evaluate_catalog(predictor, store, scan_folder(catalog_dir).tracks.to_dicts())
