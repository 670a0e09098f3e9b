"""pipeline: the whole job on a folder catalog: catalog -> dataset -> train -> evaluate -> report."""

from __future__ import annotations

from typing import Any

from prefect import flow
from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12

from genreclf.datasets.manifest import read_manifest
from genreclf.flows.build_dataset import build_dataset
from genreclf.flows.evaluate import evaluate
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.flows.train import train
from genreclf.reports.evaluation import Report
from genreclf.store.keys import manifest_key, quarantine_key, report_key
from genreclf.store.storage import Store
from genreclf.tasks.catalog import scan_folder_catalog


class PipelineResult(TypedDict):
    """Where the pipeline put everything (URIs in the store), what it left out, and the evaluation report."""

    catalog_version: str
    dataset_id: str
    run_id: str
    store: str
    manifest_uri: str
    shards: list[str]
    model_uri: str
    report_uri: str
    confusion_png: str
    quarantine: list[dict[str, Any]]  # the dataset's quarantine table: {track_id or path, stage, reason, ...}
    report: Report


@flow(name="pipeline", flow_run_name="pipeline-{catalog_dir}")
def pipeline(
    catalog_dir: str,
    storage_url: str | None = None,
    dataset: DatasetParams | None = None,
    training: TrainParams | None = None,
    baselines: bool = True,
    keep_checkpoint: bool = False,
) -> PipelineResult:
    """Run every stage on a folder laid out ROOT/<genre>/<file>; returns where everything is, and the figures.
    `keep_checkpoint`: keep the finished run's resumable checkpoint (the train flow's parameter)."""
    store = Store.open(storage_url)
    if training is not None:  # a pretrained network is fed its own features, from the same decoded audio
        dataset = (dataset or DatasetParams()).for_model(training.model)
    version = scan_folder_catalog(catalog_dir, store.url)
    dataset_id = build_dataset(version, dataset, store.url)
    run_id = train(dataset_id, training, store.url, keep_checkpoint=keep_checkpoint)
    report = evaluate(run_id, dataset_id, store.url, baselines, device=training.device if training else None)
    manifest = read_manifest(store, dataset_id)
    return {
        "catalog_version": version,
        "dataset_id": dataset_id,
        "run_id": run_id,
        "store": store.url,
        "manifest_uri": store.uri(manifest_key(dataset_id)),
        "shards": [store.uri(s["key"]) for s in manifest.shards],
        "model_uri": report["model_uri"],
        "report_uri": store.uri(report_key(run_id, "md")),
        "confusion_png": report["confusion_png"],
        "quarantine": store.read_json(quarantine_key(dataset_id)),
        "report": report,
    }
