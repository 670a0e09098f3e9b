"""The store's key layout: every key the pipeline reads or writes, relative to the store's root, made here."""

from __future__ import annotations

import hashlib
import json

# --- content ids --------------------------------------------------------------------------------------------


def content_id(obj: object, *, length: int) -> str:
    """The first `length` hex digits of the sha256 of `obj` as JSON (keys sorted, anything JSON cannot hold as
    its `str`): the id of what `obj` describes (a config, a dataset's inputs, a run's).

    These ids key objects in every store, so they are part of the store's format: whatever changes the JSON of
    `obj` (a new config field, a renamed one, another serialisation) gives new ids, and a store's existing objects
    are no longer found. Keep what goes in stable (leave a new field's default out, as `FeatureConfig.hash` does),
    or bump the store format version and migrate; tests/test_golden_ids.py pins the ids.
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# --- catalogs -----------------------------------------------------------------------------------------------
CATALOG_LATEST = "catalogs/LATEST"


def catalog_key(version: str) -> str:
    return f"catalogs/{version}/catalog.parquet"


def skipped_key(version: str) -> str:
    """What the source left out of a catalog version, with why (dangling or looping links)."""
    return f"catalogs/{version}/skipped.json"


# --- decoded audio ------------------------------------------------------------------------------------------


def _audio_stem(track_id: str, content_hash: str | None) -> str:
    return f"audio/sha256/{content_hash}" if content_hash else f"audio/{track_id}"


def audio_key(track_id: str, content_hash: str | None = None, fmt: str = "flac") -> str:
    """Decoded audio of a track, as `fmt` (genreclf.acquisition.audio.STORED_FORMATS; its sidecar says which). A file
    known by its bytes' hash is stored under that hash (the same bytes in two folders are decoded once, changed bytes
    are decoded again); audio found by search under the track id."""
    return f"{_audio_stem(track_id, content_hash)}.{fmt}"


def sidecar_key(track_id: str, content_hash: str | None = None) -> str:
    """The decoded audio's format, provenance, fingerprint and segment offsets, beside it."""
    return f"{_audio_stem(track_id, content_hash)}.json"


def failure_key(fingerprint: str) -> str:
    """Why a track could not be had, keyed on everything its acquisition read (the row and the configs): a rerun
    with the same inputs does not fetch it again; changed inputs try again."""
    return f"audio/failed/{fingerprint}.json"


# --- datasets and shards ------------------------------------------------------------------------------------
DATASET_LATEST = "datasets/LATEST"


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def manifest_key(dataset_id: str) -> str:
    """What a dataset is; written last, and all a reader trusts."""
    return f"{dataset_prefix(dataset_id)}/manifest.json"


def plan_key(dataset_id: str) -> str:
    """What build-dataset planned (tracks, splits, shards): read by the shard computation, not by trainers."""
    return f"{dataset_prefix(dataset_id)}/plan.json"


def splits_key(dataset_id: str) -> str:
    """Every track of a dataset with its split and shard."""
    return f"{dataset_prefix(dataset_id)}/splits.parquet"


def quarantine_key(dataset_id: str) -> str:
    """The catalog entries a dataset left out, with stage and reason."""
    return f"{dataset_prefix(dataset_id)}/quarantine.json"


def lineage_key(lineage: str) -> str:
    """Points at the newest dataset of a lineage (same split seed and split source): incremental builds keep
    its split assignment."""
    return f"datasets/lineages/{lineage}"


def shard_content_key(feature_hash: str, content_hash: str) -> str:
    """Shards are shared between datasets: the key is a hash of everything in them, so an unchanged group of
    tracks is found again instead of recomputed."""
    return f"shards/{feature_hash}/{content_hash}.parquet"


def embedding_key(network: str, shard_key: str) -> str:
    """A pretrained network's embeddings of a shard's segments: `network` names the weights and the extraction
    (`genreclf.models.embeddings.network_id`), the shard key names its content, so nothing else decides the values."""
    return f"embeddings/{network}/{shard_key.removeprefix('shards/')}"


# --- runs and the registry ----------------------------------------------------------------------------------
CHAMPION_KEY = "registry/champion.json"  # the most recently promoted champion, of whichever line


def champion_line_key(line: str) -> str:
    """The champion of one line: the models that predict the same genres from the same features."""
    return f"registry/lines/{line}.json"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


def run_config_key(run_id: str) -> str:
    """The config a run trained with, and its dataset."""
    return f"{run_prefix(run_id)}/config.json"


def checkpoint_key(run_id: str) -> str:
    """Everything to resume a run (the optimizer's state too), until it finishes."""
    return f"{run_prefix(run_id)}/checkpoint.pt"


def finished_key(run_id: str) -> str:
    """A finished run's history and config: a rerun returns it instead of training again."""
    return f"{run_prefix(run_id)}/finished.json"


def report_key(run_id: str, ext: str = "json") -> str:
    """A run's evaluation report: `json` (for tools) or `md` (for people)."""
    return f"{run_prefix(run_id)}/report.{ext}"


def model_file_key(run_id: str, name: str) -> str:
    """A file of a run's model: `model.safetensors` (weights), `model.json` (the rest) or a legacy `model.pt`."""
    return f"{run_prefix(run_id)}/{name}"


def confusion_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/confusion.png"


def predictions_key(run_id: str, catalog_version: str) -> str:
    return f"predictions/{run_id}/{catalog_version}.parquet"


# --- label audits and the overrides users accept from them -------------------------------------------------


def audit_prefix(audit_id: str) -> str:
    """An audit of a dataset's labels; its id is a hash of the dataset id and the audit's config."""
    return f"audits/{audit_id}"


def audit_report_key(audit_id: str) -> str:
    """Every track's audit row (given and suggested label, quality, issue, reason), worst first."""
    return f"{audit_prefix(audit_id)}/report.parquet"


def audit_summary_key(audit_id: str) -> str:
    """What an audit read and found (dataset, config, counts, timings): written last, and all a reader trusts."""
    return f"{audit_prefix(audit_id)}/audit.json"


LABEL_OVERRIDES_LATEST = "labels/LATEST"


def label_overrides_key(version: str) -> str:
    """One version of the label overrides: every correction accepted so far (versions are never overwritten)."""
    return f"labels/{version}/overrides.json"


# --- the Spotify source ------------------------------------------------------------------------------------
# Artist id -> name, genres and when fetched, kept across runs so that each artist is asked for once.
ARTIST_CACHE_KEY = "spotify/artists.parquet"


def playlist_crawl_key(playlist_id: str, snapshot_id: str) -> str:
    """One snapshot of a playlist's tracks (snapshot ids hold '/' and '+': the key hashes it)."""
    digest = hashlib.sha256(snapshot_id.encode()).hexdigest()[:16]
    return f"spotify/playlists/{playlist_id}/{digest}.parquet"


def ingest_report_key(version: str) -> str:
    """The report of the Spotify ingest that wrote catalog `version`: per genre, per playlist, conflicts."""
    return f"spotify/reports/{version}.json"


# --- the store's own bookkeeping ----------------------------------------------------------------------------
IDENTITY_KEY = "STORE_ID"
