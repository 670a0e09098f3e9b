"""Prefect flows: one per stage, plus `pipeline` chaining them. Each reads like a recipe of tasks."""
