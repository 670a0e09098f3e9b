"""audit: rank a dataset's tracks by how much to doubt their genre labels, and find near-duplicate recordings."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from genreclf.datasets.manifest import read_manifest
from genreclf.errors import StorageError
from genreclf.flows.params import AuditParams
from genreclf.labels.audit import AuditReport, read_audit
from genreclf.store.keys import audit_report_key
from genreclf.store.storage import Store
from genreclf.tasks.audit import audit_labels

ARTIFACT_ROWS = 500  # the table artifact shows the worst tracks; the report in the store has every one
COLUMNS = ("rank", "track_id", "name", "given", "suggested", "action", "quality", "issue", "reason")


@flow(name="audit", flow_run_name="audit-{dataset_id}")
def audit(
    dataset_id: str = "latest", storage_url: str | None = None, params: AuditParams | None = None, fresh: bool = False
) -> str:
    """Audit the labels of a dataset (default: the latest); returns the audit id. `fresh` audits again even when
    the store holds an audit of the same dataset and config."""
    logger = get_run_logger()
    store = Store.open(storage_url)
    dataset_id = read_manifest(store, dataset_id).dataset_id
    audit_id, reused = audit_labels(store.url, dataset_id, (params or AuditParams()).config(), fresh)
    report = read_audit(store, audit_id)
    if report is None:  # the task wrote it, or found it: a store that lost it since is not one to report on
        raise StorageError(f"audit {audit_id} is not in {store.url}; run the audit again with fresh=True")
    publish(report, store.uri(audit_report_key(audit_id)))
    logger.info("%s audit %s of dataset %s: %s", "reused" if reused else "wrote", audit_id, dataset_id,
                ", ".join(f"{n} {k}" for k, n in report.counts.items()))  # fmt: skip
    return audit_id


def publish(report: AuditReport, uri: str) -> None:
    """The `label-audit` table artifact: the worst tracks first."""
    shown = report.rows[:ARTIFACT_ROWS]
    create_table_artifact(
        [{c: round(r[c], 3) if c == "quality" else r[c] for c in COLUMNS} for r in shown],  # type: ignore[literal-required]
        key="label-audit",
        description=f"label audit {report.audit_id} of dataset {report.dataset_id}: "
        + ", ".join(f"{n} {k}" for k, n in report.counts.items())
        + f"; out-of-fold accuracy {report.oof_accuracy:.3f}. The {len(shown)} worst tracks; every track in {uri}. "
        "Accept suggestions with `genreclf audit --accept TRACK_ID` (or --accept-suggested).",
    )
