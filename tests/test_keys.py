"""The Spotify source's store keys: stores written by earlier runs are found again only while these stay put."""

from __future__ import annotations

import hashlib

from genreclf.store.keys import ARTIST_CACHE_KEY, ingest_report_key, model_file_key, playlist_crawl_key


def test_spotify_keys_keep_their_layout() -> None:
    snapshot = "AAAAAQ+snapshot/1=="  # real snapshot ids hold '/' and '+'
    digest = hashlib.sha256(snapshot.encode()).hexdigest()[:16]
    assert playlist_crawl_key("37i9dQZF1DX", snapshot) == f"spotify/playlists/37i9dQZF1DX/{digest}.parquet"
    assert playlist_crawl_key("p", snapshot) != playlist_crawl_key("p", "AAAAAg+snapshot/1==")
    assert ARTIST_CACHE_KEY == "spotify/artists.parquet"
    assert ingest_report_key("20261101T000000Z") == "spotify/reports/20261101T000000Z.json"


def test_model_files_sit_in_their_run() -> None:
    assert model_file_key("r1", "model.safetensors") == "runs/r1/model.safetensors"
