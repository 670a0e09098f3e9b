"""verify-store and gc: check a store on a schedule, and collect what nothing in it keeps."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from genreclf.errors import StorageError
from genreclf.store.storage import Store
from genreclf.tasks.upkeep import collect_store, verify_store
from genreclf.upkeep.inventory import DAY_S, Retention

ARTIFACT_ROWS = 500  # findings shown in the table; the flow's result and `genreclf verify --format json` have all


@flow(name="verify-store", flow_run_name="verify-store")
def verify_store_flow(storage_url: str | None = None, deep: bool = False) -> dict:
    """Check the store (`genreclf verify`); the run fails when anything is missing or corrupt, so that a schedule's
    failed run is the alert. The `store-verification` table artifact lists the findings."""
    store = Store.open(storage_url)
    result = verify_store(store.url, deep)
    problems = [f for f in result["findings"] if f["kind"] != "orphan"]
    orphans = len(result["findings"]) - len(problems)
    rows = (problems + [f for f in result["findings"] if f["kind"] == "orphan"])[:ARTIFACT_ROWS]
    checked = ", ".join(f"{n:,} {what}" for what, n in result["checked"].items())
    create_table_artifact(
        rows or [{"kind": "ok", "key": "", "what": "nothing missing, corrupt or unreferenced", "fix": ""}],
        key="store-verification",
        description=f"{store.url}{' (deep)' if deep else ''}: checked {checked} in {result['seconds']:.1f} s; "
        f"{len(problems)} missing or corrupt, {orphans} orphans (`genreclf gc` collects them).",
    )
    get_run_logger().info("verified %s: %s; %d missing or corrupt, %d orphans", store.url, checked, len(problems),
                          orphans)  # fmt: skip
    if problems:
        first = problems[0]
        raise StorageError(f"{len(problems)} objects missing or corrupt in {store.url}, the first {first['key']}: "
                           f"{first['what']}; see the store-verification artifact")  # fmt: skip
    return result


@flow(name="gc", flow_run_name="gc")
def gc_flow(
    storage_url: str | None = None, apply: bool = False, keep_catalogs: int = 3, keep_runs: int = 10,
    grace_hours: float = 24.0,
) -> dict:  # fmt: skip
    """Collect what nothing keeps (`genreclf gc`): a dry run unless `apply`. The `store-gc` table artifact says
    what was (or would be) freed per prefix."""
    store = Store.open(storage_url)
    keep = Retention(catalogs=keep_catalogs, runs=keep_runs, grace_s=grace_hours * 3600.0)
    result = collect_store(store.url, keep, apply)
    verb = "deleted" if apply else "would delete (a dry run)"
    create_table_artifact(
        [{"prefix": p, "objects": n, "MB": round(result["bytes"][p] / 1e6, 1)} for p, n in result["objects"].items()],
        key="store-gc",
        description=f"{store.url}: {verb} {result['total_objects']:,} objects, {result['total_bytes'] / 1e6:,.1f} MB; "
        f"kept {result['kept_objects']:,} (newest {keep_catalogs} catalogs, {keep_runs} runs, "
        f"{grace_hours / (DAY_S / 3600):g} days' grace).",
    )
    get_run_logger().info("gc %s: %s %d objects, %d bytes", store.url, verb, result["total_objects"],
                          result["total_bytes"])  # fmt: skip
    return result
