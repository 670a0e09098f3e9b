"""Save the Prefect block that keeps task results and cache records in genreclf's store, and print its slug.

    PREFECT_API_URL=... python -m infra.result_storage [--url s3://bucket/prefix | DIR]

With the store on S3 the block is an `s3-bucket` (prefect-aws) under `<prefix>/prefect-results`, reached with the
GENRECLF_S3_* settings; with a local store, a `local-file-system` block under `<store>/prefect-results`. Workers
started with PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=<slug> then share results and cache keys through the store, so a
retry on another worker reuses the tasks that finished. Idempotent: saving again overwrites the same block.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlparse

from genreclf.settings import Settings, get_settings
from genreclf.store.storage import Store

BLOCK_NAME = "genreclf-results"


def save_result_storage(storage_url: str | None = None, settings: Settings | None = None) -> str:
    """Save the block for the store at `storage_url` (default GENRECLF_STORAGE_URL); return its slug."""
    settings = settings or get_settings()
    store = Store.open(storage_url, settings)
    if store.is_local:
        from prefect.filesystems import LocalFileSystem

        LocalFileSystem(basepath=store.path("prefect-results")).save(BLOCK_NAME, overwrite=True)
        return f"local-file-system/{BLOCK_NAME}"
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    bucket, prefix = urlparse(store.url).netloc, urlparse(store.url).path.strip("/")
    credentials = AwsCredentials(
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
        region_name=settings.s3_region,
        aws_client_parameters=AwsClientParameters(endpoint_url=settings.s3_endpoint_url),
    )
    credentials.save(BLOCK_NAME, overwrite=True)
    folder = f"{prefix}/prefect-results" if prefix else "prefect-results"
    S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=credentials).save(BLOCK_NAME, overwrite=True)
    return f"s3-bucket/{BLOCK_NAME}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="the store (default GENRECLF_STORAGE_URL)")
    print(save_result_storage(p.parse_args().url))  # noqa: T201


if __name__ == "__main__":
    main()
