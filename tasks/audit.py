"""Tasks of the label audit."""

from __future__ import annotations

from prefect import task

from genreclf.datasets.manifest import read_manifest
from genreclf.labels.audit import AuditConfig, audit_dataset
from genreclf.store.storage import Store


@task(name="audit-labels", task_run_name="audit-labels-{dataset_id}", retries=1, retry_delay_seconds=10)
def audit_labels(storage_url: str, dataset_id: str, cfg: AuditConfig, fresh: bool = False) -> tuple[str, bool]:
    """Audit a dataset's labels -> (audit id, whether a stored audit was reused). Not cached by Prefect: the
    library reuses a stored audit of the same dataset and config, which the store holds, not Prefect."""
    store = Store.open(storage_url)
    report, reused = audit_dataset(store, read_manifest(store, dataset_id), cfg, reuse=not fresh)
    return report.audit_id, reused
