"""Datasets: artist-grouped splits, log-mel features, Parquet shards and the manifest that names them; the loader that
streams them; `build.build_dataset`, the whole chain without Prefect.
"""
