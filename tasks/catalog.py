"""Tasks that make and read catalogs."""

from __future__ import annotations

from prefect import task

from genreclf.ingest import catalog
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store


@task(name="scan-folder", task_run_name="scan {catalog_dir}")
def scan_folder_catalog(catalog_dir: str, storage_url: str) -> str:
    """Scan ROOT/<genre>/<file> into a catalog version in the store (not cached: the folder may change; files
    whose size and modification time are unchanged are not read again to fingerprint them)."""
    scan = scan_folder(catalog_dir)
    return catalog.write_catalog(Store.open(storage_url), scan.tracks, skipped=scan.skipped)


@task(name="read-catalog")
def read_catalog_rows(storage_url: str, version: str) -> list[catalog.CatalogRow]:
    return catalog.rows_of(catalog.read_catalog(Store.open(storage_url), version))
