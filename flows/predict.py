"""predict: score every track of a catalog with the champion (or a given model) and store the predictions."""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact

from genreclf.ingest import catalog
from genreclf.reports.predict import resolve_model_key
from genreclf.store.keys import predictions_key
from genreclf.store.storage import Store
from genreclf.tasks import wait_for
from genreclf.tasks.catalog import read_catalog_rows
from genreclf.tasks.predict import predict_tracks


@flow(name="predict", flow_run_name="predict-{catalog_version}")
def predict(
    catalog_version: str = "latest",
    model: str | None = None,
    storage_url: str | None = None,
    tracks_per_task: int = 64,
    device: str | None = None,
) -> str:
    """Predict the genre of every track of a catalog version; returns the URI of the predictions Parquet file.

    The model runs on `device` (cpu, cuda, cuda:1; empty: GENRECLF_DEVICE, else the best available)."""
    logger = get_run_logger()
    store = Store.open(storage_url)
    version = catalog.resolve_version(store, catalog_version)
    model_key = resolve_model_key(store, model)
    rows = read_catalog_rows(store.url, version)
    batches = [rows[i : i + tracks_per_task] for i in range(0, len(rows), tracks_per_task)]
    futures = predict_tracks.map(
        store.url, unmapped(model_key), batches, index=range(len(batches)), device=unmapped(device)
    )
    for f in futures:
        wait_for(f)
    results = pl.DataFrame([r for f in futures for r in f.result()])
    labelled = pl.DataFrame(rows).select("track_id", "title", pl.col("genre").alias("catalog_genre"))
    table = labelled.join(results, on="track_id", how="left")
    run = model_key.split("/")[1]
    key = predictions_key(run, version)
    uri = store.write_parquet(key, table.to_arrow())
    errors = table["error"].drop_nulls().len()
    create_table_artifact(
        table.head(200).to_dicts(), key="predictions",
        description=f"{table.height} tracks of catalog {version} by {model_key} ({errors} errors); all in {uri}",
    )  # fmt: skip
    logger.info("predicted %d tracks (%d errors) into %s", table.height, errors, uri)
    return uri
