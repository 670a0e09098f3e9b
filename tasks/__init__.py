"""Prefect @task wrappers: a few lines each, calling one genreclf function, returning a URI or a small value."""

from prefect.cache_policies import INPUTS, TASK_SOURCE

# A task's result is reused when its inputs and its source are the same as a finished run's.
CACHED = INPUTS + TASK_SOURCE
