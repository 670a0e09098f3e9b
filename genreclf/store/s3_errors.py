"""S3 failures read from pyarrow's and botocore's errors, and the StorageErrors that say what a user should check."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from genreclf.errors import StorageError

if TYPE_CHECKING:
    from genreclf.settings import Settings

# S3 error codes (pyarrow spells them ACCESS_DENIED, boto3 AccessDenied; compared upper-case without "_").
_REFUSED = {
    "ACCESSDENIED",
    "INVALIDACCESSKEYID",
    "SIGNATUREDOESNOTMATCH",
    "AUTHORIZATIONHEADERMALFORMED",
    "PERMANENTREDIRECT",
    "INVALIDTOKEN",
    "EXPIREDTOKEN",
    "INVALIDCLIENTTOKENID",
    "UNRECOGNIZEDCLIENT",
    "MISSINGAUTHENTICATIONTOKEN",
    "REQUESTTIMETOOSKEWED",
    "FORBIDDEN",
    "403",
}
_NO_BUCKET = {"NOSUCHBUCKET"}
_UNREACHABLE = {"NETWORKCONNECTION", "ENDPOINTCONNECTIONERROR", "CONNECTTIMEOUTERROR"}
_LOST_RACE = {"PRECONDITIONFAILED", "CONDITIONALREQUESTCONFLICT", "NOSUCHKEY", "412", "409"}


def error_code(e: Exception) -> tuple[str, str]:
    """`(code, operation)` of an S3 failure, from pyarrow's message or boto3's response; `("", "")` if neither."""
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:  # botocore ClientError
        code = str(response["Error"].get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return code.upper().replace("_", ""), str(getattr(e, "operation_name", ""))
    if type(e).__name__ in ("EndpointConnectionError", "ConnectTimeoutError"):  # botocore, no response
        return type(e).__name__.upper(), ""
    message = str(e)
    if "allow_bucket_creation" in message:  # pyarrow writing into a bucket that is not there
        return "NOSUCHBUCKET", "PutObject"
    found = re.search(r"AWS Error (\w+) during (\w+) operation", message)
    return (found[1].upper().replace("_", ""), found[2]) if found else ("", "")


def is_missing_key(e: Exception) -> bool:
    """A boto3 GET of a key that is not there (or of a bucket that is not: check the bucket to tell them apart)."""
    return error_code(e)[0] == "NOSUCHKEY"


def is_lost_race(e: Exception) -> bool:
    """A conditional PUT that another writer got to first (the key changed, appeared or went away)."""
    return error_code(e)[0] in _LOST_RACE


def no_bucket_error(uri: str, bucket: str, settings: Settings) -> StorageError:
    where = settings.s3_endpoint_url or "AWS"
    return StorageError(
        f"{uri}: bucket {bucket} does not exist at {where}; create it with python infra/create_bucket.py s3://{bucket}"
    )


def hinted_error(e: Exception, *, uri: str, bucket: str, settings: Settings) -> StorageError | None:
    """The StorageError naming what to check for an S3 failure a user can fix (credentials, a missing bucket, an
    endpoint that does not answer) at `uri`, in `bucket`; None for any other failure, to be raised as it is."""
    code, operation = error_code(e)
    if code in _NO_BUCKET:
        return no_bucket_error(uri, bucket, settings)
    what = f"{code} on {operation}" if operation else code
    if code in _REFUSED:
        return StorageError(
            f"{uri}: S3 refused the request ({what}); check GENRECLF_S3_ACCESS_KEY and GENRECLF_S3_SECRET_KEY, "
            f"and that they may use bucket {bucket} "
            f"(GENRECLF_S3_ENDPOINT_URL={settings.s3_endpoint_url or 'unset: AWS'}, "
            f"GENRECLF_S3_REGION={settings.s3_region})"
        )
    if code in _UNREACHABLE:
        return StorageError(
            f"{uri}: cannot reach S3 at {settings.s3_endpoint_url or 'AWS'} ({what}); check "
            "GENRECLF_S3_ENDPOINT_URL and that the server is running"
        )
    return None
