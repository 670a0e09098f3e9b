"""evaluate: score a run and the baselines on the test split, report it, and promote it if it beats the champion."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from genreclf.models.files import check_run_id
from genreclf.reports.evaluation import Report, report_markdown, save_report
from genreclf.reports.plots import markdown_image
from genreclf.store.keys import confusion_key, run_config_key
from genreclf.store.storage import Store
from genreclf.tasks.predict import evaluate_ood
from genreclf.tasks.training import evaluate_run, promote_if_better


@flow(name="evaluate", flow_run_name="evaluate-{run_id}")
def evaluate(
    run_id: str, dataset_id: str | None = None, storage_url: str | None = None, baselines: bool = True,
    promote: bool = True, ood_catalog_dir: str | None = None, device: str | None = None,
) -> Report:  # fmt: skip
    """Evaluate `run_id` on the test split of its dataset (or `dataset_id`); returns the report.

    With `ood_catalog_dir` (a folder ROOT/<genre>/<file> of covers, live recordings...), the model is also scored
    on it, separately, under the report's `ood` key. The model runs on `device` (cpu, cuda, cuda:1; empty:
    GENRECLF_DEVICE, else the best available), named in the report.
    """
    logger = get_run_logger()
    store = Store.open(storage_url)
    run_id = check_run_id(run_id)  # a parameter from anywhere: never a path out of runs/
    dataset_id = dataset_id or store.read_json(run_config_key(run_id))["dataset_id"]
    report = evaluate_run(store.url, run_id, dataset_id, baselines, device)
    logger.info("scored %s on %s", report["model"], report["device"])
    if ood_catalog_dir:
        report["ood"] = evaluate_ood(store.url, run_id, ood_catalog_dir, device)
    if promote:
        decision = promote_if_better(store.url, report)
        report["promotion"] = {"promote": decision.promote, "reason": decision.reason, "line": decision.line,
                               "champion": decision.champion}  # fmt: skip
        logger.info(report["promotion"]["reason"])
    create_markdown_artifact(report_markdown(report), key="evaluation-report", description=f"evaluation of {run_id}")
    main = report["models"][report["model"]]["track"]
    create_table_artifact(
        [{"genre": g, **m} for g, m in main["per_genre"].items()],
        key="per-genre",
        description=f"{report['model']} per track on the test split",
    )
    create_table_artifact(
        [{"true \\ predicted": g, **dict(zip(report["labels"], row, strict=True))}
         for g, row in zip(report["labels"], main["confusion"], strict=True)],
        key="confusion-matrix",
        description="rows: true genre, columns: predicted genre (per track)",
    )  # fmt: skip
    create_markdown_artifact(  # inline: the UI cannot open the store's file:// or s3:// URI
        f"# Confusion matrix of `{run_id}`\n\n"
        f"{markdown_image(store.read_bytes(confusion_key(run_id)), f'confusion matrix of {run_id}')}\n\n"
        f"Rows: true genre, columns: predicted, per track on the test split. PNG: {report['confusion_png']}\n",
        key="confusion-png",
        description=f"{report['model']} confusion matrix (per track)",
    )
    create_link_artifact(report["model_uri"], link_text="model weights", key="model")
    save_report(store, report)
    return report
