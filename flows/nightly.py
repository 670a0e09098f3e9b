"""nightly-retrain: ingest -> build-dataset -> train -> evaluate -> promote, redoing only what changed."""

from __future__ import annotations

from prefect import flow, get_run_logger
from typing_extensions import TypedDict  # typing's is refused by pydantic before 3.12

from genreclf.datasets.manifest import read_manifest
from genreclf.errors import ConfigError
from genreclf.flows.build_dataset import build_dataset
from genreclf.flows.evaluate import evaluate
from genreclf.flows.params import DatasetParams, TrainParams
from genreclf.flows.train import train
from genreclf.reports.evaluation import Promotion
from genreclf.reports.registry import champion_of_line, line_of
from genreclf.store.keys import run_config_key
from genreclf.store.storage import Store
from genreclf.tasks.catalog import scan_folder_catalog


class NightlyResult(TypedDict):
    catalog_version: str
    dataset_id: str
    run_id: str
    promotion: Promotion


@flow(name="nightly-retrain")
def nightly_retrain(
    playlists_file: str | None = None,
    catalog_dir: str | None = None,
    storage_url: str | None = None,
    dataset: DatasetParams | None = None,
    training: TrainParams | None = None,
    warm_start: bool = False,
) -> NightlyResult:
    """Refresh the catalog (Spotify playlists, or a folder), rebuild and retrain only if it changed, evaluate,
    and promote the model only if it beats the champion on the same test split.

    Unchanged inputs give the same catalog version, dataset id and run id, so every stage is reused.
    `warm_start`: fine-tune the champion on the grown dataset (with `training`'s settings; fewer epochs usually do)
    instead of training from random weights; a champion of another model, or none, trains from scratch.
    """
    logger = get_run_logger()
    if bool(playlists_file) == bool(catalog_dir):
        raise ConfigError("give exactly one source: playlists_file (Spotify) or catalog_dir (a folder)")
    store = Store.open(storage_url)
    if playlists_file:
        from genreclf.flows.ingest_spotify import ingest_spotify

        version = ingest_spotify(playlists_file=playlists_file, storage_url=store.url)
    else:
        version = scan_folder_catalog(str(catalog_dir), store.url)
    training = training or TrainParams()
    # A pretrained network is fed its own features, from the same decoded audio.
    dataset_id = build_dataset(version, (dataset or DatasetParams()).for_model(training.model), store.url)
    champion = champion_of_line(store, line_of(read_manifest(store, dataset_id))) if warm_start else None
    if champion is not None and champion["dataset_id"] == dataset_id:
        reason = f"the champion {champion['run_id']} was trained on dataset {dataset_id} already; nothing to fine-tune"
        logger.info(reason)
        return {"catalog_version": version, "dataset_id": dataset_id, "run_id": champion["run_id"],
                "promotion": {"promote": False, "reason": reason}}  # fmt: skip
    if champion is not None and store.read_json(run_config_key(champion["run_id"]))["train"]["model"] == training.model:
        logger.info("warm start: fine-tuning the champion %s on dataset %s", champion["run_id"], dataset_id)
        training = training.model_copy(update={"init_from": champion["run_id"]})
    run_id = train(dataset_id, training, store.url)
    report = evaluate(run_id, dataset_id, store.url, device=training.device)
    logger.info("catalog %s -> dataset %s -> run %s: %s", version, dataset_id, run_id, report["promotion"]["reason"])
    return {"catalog_version": version, "dataset_id": dataset_id, "run_id": run_id, "promotion": report["promotion"]}
