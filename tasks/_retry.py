"""Retry only what is transient: a 429, a 5xx or a timeout may pass; a 404 or bad input will not."""

from __future__ import annotations

from typing import Any

from genreclf.errors import TransientSourceError


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for tasks: retry on TransientSourceError, timeouts and dropped connections only."""
    try:
        state.result()
    except (TransientSourceError, TimeoutError, ConnectionError):
        return True
    except Exception:
        return False
    return False
