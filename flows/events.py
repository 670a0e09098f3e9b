"""Events the flows emit so deployments can chain on them (see the triggers in prefect.yaml).

genreclf.dataset.built   resource genreclf.dataset.<id>, label genreclf.new = "true" when it was just built
genreclf.model.trained   resource genreclf.run.<run_id>
"""

from __future__ import annotations

from prefect.events import emit_event


def dataset_built(dataset_id: str, *, new: bool, storage_url: str) -> None:
    emit_event(
        event="genreclf.dataset.built",
        resource={
            "prefect.resource.id": f"genreclf.dataset.{dataset_id}",
            "prefect.resource.name": dataset_id,
            "genreclf.new": "true" if new else "false",
        },
        payload={"dataset_id": dataset_id, "storage_url": storage_url, "new": new},
    )


def model_trained(run_id: str, *, dataset_id: str, storage_url: str) -> None:
    emit_event(
        event="genreclf.model.trained",
        resource={"prefect.resource.id": f"genreclf.run.{run_id}", "prefect.resource.name": run_id},
        payload={"run_id": run_id, "dataset_id": dataset_id, "storage_url": storage_url},
    )
