"""Tasks of train and evaluate: fit a model (resumable), evaluate it, promote it."""

from __future__ import annotations

from prefect import task

from genreclf.datasets.manifest import read_manifest
from genreclf.models import runs, training
from genreclf.reports import evaluation, registry
from genreclf.store.storage import Store
from genreclf.tasks import CACHED
from genreclf.tasks.progress import Progress


@task(name="fit", task_run_name="fit-{run_id}", cache_policy=CACHED, persist_result=True, retries=1,
      retry_delay_seconds=10)  # fmt: skip
def fit_model(
    storage_url: str, dataset_id: str, cfg: runs.TrainConfig, run_id: str, keep_checkpoint: bool = False
) -> runs.TrainResult:
    """Train (or resume) a run; a retry continues from the last epoch's checkpoint."""
    store = Store.open(storage_url)
    manifest = read_manifest(store, dataset_id)
    total = 1 if cfg.frozen_head else cfg.epochs
    progress = Progress(total, f"{'head' if cfg.frozen_head else 'epochs'} of run {run_id}", step_pct=0.0)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        progress.advance(detail=f"loss {metrics['train_loss']:.3f}, val accuracy {metrics['val_accuracy']:.3f}")

    result = training.fit(store, manifest, cfg, run_id=run_id, on_epoch=on_epoch, keep_checkpoint=keep_checkpoint)
    progress.advance(total)  # done: early stopping or a resumed run ends before the last epoch's update
    return result


@task(name="evaluate-run", task_run_name="evaluate-{run_id}", cache_policy=CACHED, persist_result=True)
def evaluate_run(
    storage_url: str, run_id: str, dataset_id: str, baselines: bool, device: str | None = None
) -> evaluation.Report:
    store = Store.open(storage_url)
    manifest = read_manifest(store, dataset_id)
    return evaluation.evaluate_run(store, run_id, manifest, baselines=baselines, device=device)


@task(name="promote-if-better")
def promote_if_better(storage_url: str, report: evaluation.Report) -> registry.Decision:
    store = Store.open(storage_url)
    return registry.challenge(store, report, read_manifest(store, report["dataset_id"]))
