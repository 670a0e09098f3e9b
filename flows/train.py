"""train: fit a model on a dataset, checkpointing each epoch; a rerun of the same inputs resumes or reuses it."""

from __future__ import annotations

import dataclasses

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from genreclf.datasets.manifest import read_manifest
from genreclf.flows import events
from genreclf.flows.params import TrainParams
from genreclf.models.files import check_run_id
from genreclf.models.runs import run_id_for
from genreclf.reports.plots import markdown_image, training_curves_png
from genreclf.store.storage import Store
from genreclf.tasks.training import fit_model


@flow(name="train", flow_run_name="train-{dataset_id}")
def train(
    dataset_id: str = "latest",
    params: TrainParams | None = None,
    storage_url: str | None = None,
    run_id: str | None = None,
    keep_checkpoint: bool = False,
) -> str:
    """Train a model on the dataset's train split (validating on val); returns the run id.

    The run's resumable checkpoint (the optimizer's state too: most of what a run stores) is removed when the run
    finishes, unless `keep_checkpoint`; its best model and history stay."""
    logger = get_run_logger()
    params = params or TrainParams()
    store = Store.open(storage_url)
    manifest = read_manifest(store, dataset_id)
    run_id = check_run_id(run_id or run_id_for(manifest.dataset_id, params.config()))
    logger.info("training %s on dataset %s (%d segments) as run %s", params.model, manifest.dataset_id,
                manifest.rows("train"), run_id)  # fmt: skip
    state = fit_model(store.url, manifest.dataset_id, params.config(), run_id, keep_checkpoint, return_state=True)
    result = state.result()
    trained_now = state.name != "Cached" and result.new_epochs > 0
    history = "\n".join(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_accuracy']:.3f} |" for h in result.history)
    create_markdown_artifact(
        f"# Run `{run_id}`\n\nModel `{params.model}` on dataset `{manifest.dataset_id}`, trained on "
        f"`{result.device}`; best validation accuracy {result.best_val_accuracy:.3f} at epoch "
        f"{result.best_epoch}.\n\nWeights: {result.model_uri}\n\n"
        f"| epoch | train loss | val accuracy |\n|---|---|---|\n{history}\n",
        key="training-run",
        description=f"training of {run_id}",
    )
    if result.history:
        curves = training_curves_png(result.history, title=f"{params.model}, run {run_id}")
        create_markdown_artifact(
            f"# Training curves of `{run_id}`\n\n{markdown_image(curves, f'training curves of {run_id}')}\n",
            key="training-curves",
            description=f"train loss and validation accuracy per epoch of {run_id}",
        )
    logger.debug("device: %s; config: %s", result.device, dataclasses.asdict(params.config()))
    if trained_now:
        events.model_trained(run_id, dataset_id=manifest.dataset_id, storage_url=store.url)
    else:
        logger.info("run %s was already trained; nothing new to evaluate", run_id)
    return run_id
