"""prefect.yaml: every deployment's entrypoint imports and names the flow the deployment says."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
REQUIRED = {"ingest-spotify", "build-dataset", "train", "evaluate", "nightly-retrain"}


def test_the_required_deployments_are_declared() -> None:
    assert {d["name"] for d in DEPLOYMENTS} >= REQUIRED


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_imports_and_parameters_fit(deployment: dict) -> None:
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert flow.name == deployment["name"]
    unknown = set(deployment.get("parameters", {})) - set(flow.parameters.properties)
    assert not unknown, f"{deployment['name']}: parameters {unknown} are not parameters of {flow.name}"


def test_nightly_runs_on_a_cron_with_a_timezone() -> None:
    nightly = next(d for d in DEPLOYMENTS if d["name"] == "nightly-retrain")
    assert nightly["schedules"][0]["cron"] and nightly["schedules"][0]["timezone"]
