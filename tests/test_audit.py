"""The label audit: planted label flips and a re-encoded, trimmed copy in a synthesized catalog are found, through
the library, the audit flow and `genreclf audit`; accepted verdicts reach the next build as label overrides."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from genreclf.app.cli import main
from genreclf.app.demo import make_demo_catalog
from genreclf.datasets import dataset
from genreclf.datasets.build import build_dataset
from genreclf.datasets.manifest import Manifest, read_manifest
from genreclf.errors import DataError
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog, overrides
from genreclf.labels.audit import DROP, DUPLICATE, MISLABELLED, RELABEL, AuditConfig, audit_dataset, audit_id_for
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store

# Planted into the demo catalog: two tracks in another genre's folder, and a copy of a third, re-encoded to mp3,
# its first second cut and 6 dB quieter, in its own genre.
FLIPS = {"chirp/drone-03.wav": "drone", "noise/pulse-05.ogg": "pulse"}
COPY, ORIGINAL = "chirp/chirp-02-copy.mp3", "chirp/chirp-02.ogg"
# 4 genres of 12: enough that every fold assignment finds both flips (with 8, one seed in four missed one)
PER_GENRE = 12
TRACKS = 4 * PER_GENRE + 1  # and the copy


def build(root: Path, store_url: str, model: str = "resnet18") -> Manifest:
    """build-dataset's steps for a folder catalog, without Prefect (small windows: 3 s, hop 1.5 s, 64 mels, or the
    features `model` is fed)."""
    store = Store.open(store_url)
    scan = scan_folder(root, hash_cache=False)
    version = catalog.write_catalog(store, scan.tracks, skipped=scan.skipped)
    params = DatasetParams.small().for_model(model)
    return build_dataset(store, version, params.segment_config(), params.feature_config()).manifest  # overrides too


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(catalog folder, a store holding its dataset): built once; tests work on copies of the store."""
    base = tmp_path_factory.mktemp("audit")
    root = make_demo_catalog(base / "catalog", tracks_per_genre=PER_GENRE, seconds=8.0)
    for name, genre in FLIPS.items():
        (root / genre / Path(name).name).rename(root / name)
    ffmpeg = ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", "1", "-i", str(root / ORIGINAL)]
    subprocess.run([*ffmpeg, "-af", "volume=-6dB", "-c:a", "libmp3lame", "-b:a", "64k", str(root / COPY)], check=True)
    build(root, str(base / "store"))
    return root, base / "store"


@pytest.fixture
def store(planted: tuple[Path, Path], tmp_path: Path) -> Iterator[Store]:
    shutil.copytree(planted[1], tmp_path / "store")
    yield Store.open(str(tmp_path / "store"))


def rows_by_name(report_rows: list) -> dict[str, dict]:
    return {r["name"]: r for r in report_rows}


def test_audit_finds_the_planted_flips_and_copy(store: Store) -> None:
    report, reused = audit_dataset(store, read_manifest(store))

    assert not reused
    by_name = rows_by_name(report.rows)
    for name, genre in FLIPS.items():
        row = by_name[name]
        assert (row["issue"], row["action"], row["suggested"]) == (MISLABELLED, RELABEL, genre), row
        assert "likely mislabelled" in row["reason"]
    copy, original = by_name[COPY], by_name[ORIGINAL]
    assert copy["issue"] == original["issue"] == DUPLICATE
    assert {copy["duplicate_of"], original["duplicate_of"]} == {copy["track_id"], original["track_id"]}
    # The copy with less audio (the trimmed one) goes, ranked first; the original stays.
    assert (copy["action"], original["action"]) == (DROP, "keep")
    assert copy["reason"].startswith(f"near-duplicate of {ORIGINAL}") and copy["quality"] == 1 - copy["similarity"]
    assert report.rows[0]["name"] == COPY
    # Nothing else is called a copy, and the planted faults are the worst-ranked tracks.
    assert [p["a"] for p in report.pairs] == [min(copy["track_id"], original["track_id"])]
    assert {r["name"] for r in report.rows[:3]} == {*FLIPS, COPY}
    assert [r["rank"] for r in report.rows] == list(range(1, len(report.rows) + 1))
    assert report.counts == {"tracks": TRACKS, "mislabelled": 2, "near-duplicate": 2, "outlier": 0}


@pytest.mark.slow
def test_an_audit_of_a_pretrained_networks_dataset_reads_its_embeddings(
    planted: tuple[Path, Path], musicnn_weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from genreclf.labels.audit import audit_network

    store = Store.open(str(tmp_path / "store"))
    manifest = build(planted[0], store.url, model="musicnn-msd")
    caplog.set_level("INFO", logger="genreclf")
    report, _ = audit_dataset(store, manifest)
    assert "auditing with the embeddings of musicnn-msd-" in caplog.text
    assert report.audit_id == audit_id_for(manifest.dataset_id, AuditConfig(), audit_network(manifest)[1])
    assert report.audit_id != audit_id_for(manifest.dataset_id, AuditConfig())
    by_name = rows_by_name(report.rows)
    for name, genre in FLIPS.items():
        assert (by_name[name]["issue"], by_name[name]["suggested"]) == (MISLABELLED, genre), by_name[name]
    assert by_name[COPY]["issue"] == DUPLICATE  # the fingerprints read the same spectrograms, at 16 kHz
    assert report.oof_accuracy >= 0.9


def test_an_audit_is_reused_only_for_the_same_dataset_and_config(store: Store) -> None:
    manifest = read_manifest(store)
    first, _ = audit_dataset(store, manifest)
    again, reused = audit_dataset(store, manifest)
    assert reused and again.rows == first.rows and again.audit_id == first.audit_id
    fresh, reused = audit_dataset(store, manifest, reuse=False)
    assert not reused and fresh.audit_id == first.audit_id
    other = AuditConfig(folds=3)
    assert audit_id_for(manifest.dataset_id, other) != first.audit_id
    assert not audit_dataset(store, manifest, other)[1]


def test_accepted_verdicts_reach_the_next_build_and_can_be_taken_back(planted: tuple[Path, Path], store: Store) -> None:
    root = planted[0]
    report, _ = audit_dataset(store, read_manifest(store))
    base = catalog.resolve_version(store)
    by_name = rows_by_name(report.rows)
    drop = by_name[COPY]
    flip = by_name["chirp/drone-03.wav"]
    hashes = dict(catalog.read_catalog(store).select("track_id", "content_hash").iter_rows())

    def accepted(row: dict, genre: str | None) -> overrides.Override:
        return {"track_id": row["track_id"], "content_hash": hashes[row["track_id"]], "genre": genre,
                "previous": row["given"], "reason": row["reason"], "audit_id": report.audit_id,
                "accepted_at": overrides.now()}  # fmt: skip

    labels_version = overrides.accept(store, [accepted(flip, "drone"), accepted(drop, None)])
    derived = overrides.apply_overrides(store, base)
    df = catalog.read_catalog(store, derived)
    row = df.filter(pl.col("track_id") == flip["track_id"]).row(0, named=True)
    assert (row["genre"], row["label_source"]) == ("drone", overrides.AUDIT_SOURCE)
    assert drop["track_id"] not in df["track_id"].to_list() and df.height == TRACKS - 1
    assert catalog.base_version(store, derived) == base
    assert [s["stage"] for s in catalog.read_skipped(store, derived)] == ["audit"]
    # Applying again, to the source or to what it made, gives the same version; the next build reads it.
    assert overrides.apply_overrides(store, derived) == derived == overrides.apply_overrides(store, base)
    rebuilt = build(root, str(store.url))
    assert rebuilt.catalog_version == derived
    splits = dataset.read_splits(store, rebuilt.dataset_id)
    assert splits is not None and drop["track_id"] not in splits["track_id"].to_list()
    assert splits.filter(pl.col("track_id") == flip["track_id"])["genre"].item() == "drone"
    # Versions are kept; forgetting every override brings the source catalog back.
    assert store.exists(f"labels/{labels_version}/overrides.json")
    overrides.accept(store, [], forget=[flip["track_id"], drop["track_id"]])
    assert overrides.apply_overrides(store, derived) == base
    with pytest.raises(DataError, match="no label override"):
        overrides.accept(store, [], forget=[flip["track_id"]])


def test_an_override_of_audio_that_changed_since_is_not_applied(store: Store) -> None:
    base = catalog.resolve_version(store)
    tid = catalog.read_catalog(store)["track_id"][0]
    overrides.accept(store, [{"track_id": tid, "content_hash": "0" * 64, "genre": None, "previous": "x",
                              "reason": "r", "audit_id": "a", "accepted_at": overrides.now()}])  # fmt: skip
    assert overrides.apply_overrides(store, base) == base


@pytest.mark.slow  # 11 s: the audit flow through the CLI (the library's audit is tested above, by default)
@pytest.mark.usefixtures("prefect_server")
def test_genreclf_audit_runs_the_flow_then_reuses_it_and_accepts(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    assert main(["audit", "--store", store.url, "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "2 likely mislabelled, 2 near-duplicates" in out
    listed = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(listed) == 5 and all(any(n in line for n in (*FLIPS, COPY)) for line in listed[:3])
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["label-audit"])))
    assert arts and "2 mislabelled" in (arts[0].description or "")
    table = json.loads(arts[0].data) if isinstance(arts[0].data, str) else arts[0].data
    assert [r["rank"] for r in table][:3] == [1, 2, 3] and {r["name"] for r in table[:3]} == {*FLIPS, COPY}

    # Stored now: printed again without the flow; as CSV for scripts.
    assert main(["audit", "--store", store.url, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "is stored" in captured.err
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == TRACKS

    assert main(["audit", "--store", store.url, "--accept", "noise/noise-01.flac"]) == 2
    assert "suggests no change" in capsys.readouterr().err
    assert main(["audit", "--store", store.url, "--accept", "noise/noise-01.flac=jazz"]) == 2
    assert "not a genre" in capsys.readouterr().err
    assert main(["audit", "--store", store.url, "--accept-suggested"]) == 0
    out = capsys.readouterr().out
    assert "chirp -> drone" in out and "noise -> pulse" in out and "left out" in out
    assert len(overrides.read_overrides(store)) == 3


@pytest.mark.usefixtures("prefect_server")
def test_the_build_dataset_flow_applies_accepted_overrides(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    from genreclf.flows.build_dataset import build_dataset

    base = catalog.resolve_version(store)
    audit_dataset(store, read_manifest(store))
    assert main(["audit", "--store", store.url, "--accept", "noise/pulse-05.ogg", "--accept", f"{COPY}=drop"]) == 0
    capsys.readouterr()

    dataset_id = build_dataset(base, params=DatasetParams.small(), storage_url=store.url)

    manifest = read_manifest(store, dataset_id)
    assert manifest.catalog_version != base and catalog.base_version(store, manifest.catalog_version) == base
    splits = dataset.read_splits(store, dataset_id)
    assert splits is not None and splits.height == TRACKS - 1
    genre_of = dict(zip(splits["track_id"], splits["genre"], strict=True))
    by_name = rows_by_name(audit_dataset(store, read_manifest(store, dataset_id))[0].rows)
    assert by_name["noise/pulse-05.ogg"]["given"] == "pulse" and COPY not in by_name
    assert genre_of[by_name["noise/pulse-05.ogg"]["track_id"]] == "pulse"


def test_status_names_the_accepted_overrides(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    tid = catalog.read_catalog(store)["track_id"][0]
    overrides.accept(store, [{"track_id": tid, "content_hash": None, "genre": "drone", "previous": "chirp",
                              "reason": "r", "audit_id": "a", "accepted_at": overrides.now()}])  # fmt: skip
    assert main(["status", "--store", store.url]) == 0
    assert "1 label overrides accepted from audits" in capsys.readouterr().out


def test_an_audit_needs_two_artist_groups_and_a_sane_config() -> None:
    import numpy as np

    from genreclf.labels.out_of_fold import out_of_fold_probabilities

    with pytest.raises(DataError, match="at least 2 artists"):
        out_of_fold_probabilities(np.zeros((4, 3)), np.arange(4), np.array([0, 0, 1, 1]), np.zeros(4, int),
                                  num_classes=2, cfg=AuditConfig())  # fmt: skip
    with pytest.raises(DataError, match="folds >= 2"):
        AuditConfig(folds=1)


def test_confident_learning_forks_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """cleanlab forks a multiprocessing pool by default; forked from a Prefect worker's flow run, which runs threads,
    the pool can deadlock (it hung an audit run in CI), so the audit asks for none."""
    import multiprocessing

    import numpy as np

    from genreclf.labels.out_of_fold import label_issues

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("the audit forked a multiprocessing pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_fork)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    probs = rng.dirichlet(np.ones(4), size=len(labels)) + np.eye(4)[labels]
    probs /= probs.sum(axis=1, keepdims=True)
    probs[:3] = np.eye(4)[[1, 2, 3]]  # three tracks the model is sure belong elsewhere
    flagged, quality = label_issues(labels, probs)
    assert flagged[:3].all() and quality.shape == (len(labels),)
