"""Whether a store's S3 server honours conditional writes (If-None-Match, If-Match): probed once, remembered.

`Store.write_if` is a compare-and-swap only where the server refuses a PUT whose condition does not hold; a server
that ignores the headers turns it into a plain write, and two promotions at once into a lost champion. Nothing in
a successful answer tells the two apart, so the server is tried on a scratch key under `.locks/`: two creates
racing, a create over an existing key, an If-Match on an ETag no object has. The answer is kept in this process
and in `store.json` (`conditional_writes`, with the endpoint it holds for), so that a store is probed once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from genreclf.errors import StorageError
from genreclf.store import s3_errors
from genreclf.store.filesystems import s3_client_for
from genreclf.store.format import FORMAT_KEY, read_format, remember
from genreclf.store.storage import LOCKS_PREFIX

if TYPE_CHECKING:
    from genreclf.store.storage import Store

log = logging.getLogger(__name__)

FACT = "conditional_writes"  # its name in store.json
_NO_SUCH_ETAG = '"' + "0" * 32 + '"'  # an If-Match on it must be refused: no object has it


class Answer(TypedDict):
    endpoint: str  # GENRECLF_S3_ENDPOINT_URL, or "aws"
    honoured: bool
    probed_at: str  # ISO time


# Answers this process has, by store URL and endpoint: store.json is read once, not at every write.
_ANSWERS: dict[tuple[str, str], Answer] = {}


def conditional_writes_honoured(store: Store) -> bool:
    """Whether `store` refuses a write whose If-None-Match / If-Match does not hold, as `Store.write_if` needs.

    A local store always does (`write_if` locks a file there). An S3 store's server is probed once, and the answer
    remembered in this process and in `store.json`; an answer remembered for another endpoint is probed again.
    """
    return store.is_local or _answer(store)["honoured"]


def require_conditional_writes(store: Store, key: str) -> None:
    """Raise a StorageError, before `key` is written, when the store's S3 server ignores conditional writes."""
    if conditional_writes_honoured(store):
        return
    answer = _answer(store)
    raise StorageError(
        f"{store.uri(key)}: not written: the S3 server at {answer['endpoint']} ignores If-None-Match and If-Match "
        f"(probed {answer['probed_at']}), so two promotions at once could overwrite each other; use a server that "
        f"honours them (AWS S3, SeaweedFS, MinIO), then remove {FACT!r} from {store.uri(FORMAT_KEY)} to probe again"
    )


def _answer(store: Store) -> Answer:
    endpoint = store._s3_settings().s3_endpoint_url or "aws"
    if (store.url, endpoint) in _ANSWERS:
        return _ANSWERS[store.url, endpoint]
    remembered = (read_format(store) or {}).get(FACT)
    if not isinstance(remembered, dict):
        remembered = {}
    if remembered.get("endpoint") == endpoint and isinstance(remembered.get("honoured"), bool):
        answer = Answer(endpoint=endpoint, honoured=remembered["honoured"], probed_at=str(remembered.get("probed_at")))
    else:
        started = time.perf_counter()
        failed = _probe(store)
        took, now = time.perf_counter() - started, datetime.now(UTC).isoformat(timespec="seconds")
        answer = Answer(endpoint=endpoint, honoured=not failed, probed_at=now)
        log.info("store %s: the S3 server at %s %s conditional writes (probed in %.3f s%s)", store.url, endpoint,
                 "honours" if not failed else "ignores", took, "; " + ", ".join(failed) if failed else "")  # fmt: skip
        remember(store, FACT, answer)
    _ANSWERS[store.url, endpoint] = answer
    return answer


def _probe(store: Store) -> list[str]:
    """Try the server's conditional PUTs on a scratch key (removed after); return what it let through that it
    should have refused (nothing, on a server that honours them)."""
    key = f"{LOCKS_PREFIX}/probe-{uuid.uuid4().hex}"
    bucket, name = store._bucket_and_name(key)
    client = s3_client_for(store._s3_settings())

    def put(**condition: Any) -> bool:
        """True when the server took the write, False when it refused it as a lost race."""
        try:
            client.put_object(Bucket=bucket, Key=name, Body=b"conditional write probe", **condition)
        except Exception as e:
            if not s3_errors.is_lost_race(e):
                raise
            return False
        return True

    together = threading.Barrier(2, timeout=60)

    def create(_: int) -> bool:
        together.wait()  # both PUTs go out together: a real race, which only the server can settle
        return put(IfNoneMatch="*")

    failed = []
    with store._s3_errors(key):
        try:
            with ThreadPoolExecutor(2, thread_name_prefix="conditional-probe") as pool:
                created = sum(pool.map(create, range(2)))
            if created != 1:
                failed.append(f"{created} of 2 racing If-None-Match creates went through")
            if put(IfNoneMatch="*"):
                failed.append("If-None-Match: * over an existing key went through")
            if put(IfMatch=_NO_SUCH_ETAG):
                failed.append("If-Match on a wrong ETag went through")
        finally:
            try:
                client.delete_object(Bucket=bucket, Key=name)
            except Exception as e:  # a scratch key left under .locks/ harms nothing: not worth hiding the answer
                log.warning("could not remove %s (%s)", store.uri(key), e)
    return failed
