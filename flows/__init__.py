"""Prefect flows: one per stage, plus `pipeline` chaining them. Each reads like a recipe of tasks."""

from genreclf.app.prefect_setup import configure_prefect

# Before any flow module imports Prefect, which reads its settings then: the CLI, flows called from Python and
# a deployment worker's flow process all get genreclf's (see genreclf/app/prefect_setup.py).
configure_prefect()
