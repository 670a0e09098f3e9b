"""Create the S3 bucket of an s3:// URL (default GENRECLF_STORAGE_URL) if it is missing, and say what was done.

    .venv/bin/python infra/create_bucket.py [s3://bucket[/prefix]]

Idempotent: a bucket that exists and is ours is left as it is. Endpoint, keys and region come from the
GENRECLF_S3_* settings (for SeaweedFS or MinIO on loopback: GENRECLF_S3_ENDPOINT_URL=http://127.0.0.1:8333).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import botocore.exceptions  # noqa: E402

from genreclf.settings import get_settings  # noqa: E402
from genreclf.store.storage import s3_client_for  # noqa: E402


def ensure_bucket(url: str) -> str:
    """Create the bucket of an s3:// URL when it does not exist; return what happened, in words."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        return f"{url} is not an s3:// URL: nothing to create"
    s = get_settings()
    client = s3_client_for(s)  # the endpoint, keys and region the store uses
    bucket = parsed.netloc
    try:
        client.head_bucket(Bucket=bucket)
        return f"bucket {bucket} exists at {s.s3_endpoint_url or 'AWS'}: nothing to do"
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise SystemExit(f"cannot use bucket {bucket}: {e} (check GENRECLF_S3_ACCESS_KEY / _SECRET_KEY)") from e
    kwargs = {}
    if s.s3_region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": s.s3_region}
    try:
        client.create_bucket(Bucket=bucket, **kwargs)
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return f"bucket {bucket} exists at {s.s3_endpoint_url or 'AWS'}: nothing to do"
        raise SystemExit(f"cannot create bucket {bucket}: {e}") from e
    return f"created bucket {bucket} at {s.s3_endpoint_url or 'AWS'} ({s.s3_region})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The store's "bucket does not exist" error names this command: keep the two in step.
    p.add_argument("url", nargs="?", help="s3://bucket[/prefix] (default $GENRECLF_STORAGE_URL)")
    args = p.parse_args()
    print(ensure_bucket(args.url or get_settings().storage_url))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
