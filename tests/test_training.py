import dataclasses
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genreclf.datasets import loader, resident, shards
from genreclf.datasets.loader import StreamingSegments
from genreclf.datasets.manifest import Manifest, write_manifest
from genreclf.datasets.resident import ChunkedSplit, ResidentSplit
from genreclf.datasets.shards import SegmentRows, write_shard
from genreclf.errors import ConfigError, DataError, ModelError
from genreclf.models import inference, run_data, steps, training
from genreclf.models.inference import load_model
from genreclf.models.runs import TrainConfig, run_id_for
from genreclf.models.steps import spec_augment
from genreclf.models.training import fit
from genreclf.store.storage import Store
from tests.planted import plant_pickle
from tests.tiny import FEAT, SEG, make_tiny_dataset

CFG = TrainConfig(
    model="small_cnn", epochs=4, batch_size=8, lr=3e-3, crop_s=0.3, crops_per_segment=1, patience=10, seed=3
)


def test_fit_learns_a_separable_tiny_dataset(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    result = fit(store, manifest, CFG, run_id="r1", keep_checkpoint=True)
    assert result.epochs == 4
    assert result.best_val_accuracy >= 0.8
    assert store.keys("runs/r1") == [f"runs/r1/{k}" for k in ("checkpoint.pt", "config.json", "finished.json",
                                                              "model.json", "model.safetensors")]  # fmt: skip
    saved = store.read_json("runs/r1/config.json")
    assert saved["train"] == dataclasses.asdict(CFG) and saved["dataset_id"] == "tiny"
    model, bundle = load_model(store, "runs/r1/model.safetensors", torch.device("cpu"))
    assert bundle == store.read_json("runs/r1/model.json")
    assert bundle["labels"] == manifest.labels and bundle["epoch"] == result.best_epoch and bundle["run_id"] == "r1"
    assert result.model_uri == store.uri("runs/r1/model.safetensors")
    reference = load_file(store.path("runs/r1/model.safetensors"))  # the weights in the standard format
    assert reference.keys() == model.state_dict().keys()
    assert all(torch.equal(reference[k], v) for k, v in model.state_dict().items())
    ckpt = torch.load(store.path("runs/r1/checkpoint.pt"), weights_only=True)  # resuming needs nothing more
    assert ckpt.keys() == {"model", "optimizer", "scheduler", "normalizer", "config", "dataset_id", "state"}
    assert len(bundle["normalizer"]["mean"]) == 16
    in_memory = loader.load_split(store, manifest, "train").mel.astype(np.float64)  # what the streamed pass replaces
    np.testing.assert_allclose(bundle["normalizer"]["mean"], in_memory.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(bundle["normalizer"]["std"], in_memory.std(axis=(0, 2)), rtol=1e-6)


@pytest.mark.parametrize("resident", [False, True, None], ids=["streamed", "resident", "chunked"])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, monkeypatch, resident: bool | None) -> None:
    if resident is None:  # a budget of about 5 segments: chunks of a row group or two
        monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4 * 3_000)
        monkeypatch.setattr(run_data, "budget_bytes", lambda device: 2 * 5 * 16 * 87 * 2)
    cfg = dataclasses.replace(CFG, resident=resident)
    whole = Store.open(str(tmp_path / "whole"))
    make_tiny_dataset(whole)
    uninterrupted = fit(whole, make_tiny_dataset(whole), cfg, run_id="r")

    parts = Store.open(str(tmp_path / "parts"))
    manifest = make_tiny_dataset(parts)
    first = fit(parts, manifest, cfg, run_id="r", stop_after=2)  # "killed" after epoch 2
    assert first.epochs == 2
    resumed = fit(parts, manifest, cfg, run_id="r")
    assert resumed.epochs == 4
    assert resumed.history == uninterrupted.history
    a, _ = load_model(whole, "runs/r/model.safetensors")
    b, _ = load_model(parts, "runs/r/model.safetensors")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_fit_streams_both_splits_and_never_loads_one(tmp_path, monkeypatch) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("fit read a whole split into memory")

    monkeypatch.setattr(loader, "load_split", no_loading)
    monkeypatch.setattr(loader, "iter_shard_tables", no_loading)
    reads: list[tuple[str, str, int, tuple[int, ...]]] = []  # (split, kind, segments, item shape) per pass

    class Counting(StreamingSegments):
        def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
            n, shape = 0, ()
            for x, y in super().__iter__():
                n, shape = n + 1, tuple(x.shape)
                yield x, y
            reads.append((self.split, "crops" if self.train else "whole", n, shape))

    monkeypatch.setattr(run_data, "StreamingSegments", Counting)
    fit(store, manifest, dataclasses.replace(CFG, resident=False), run_id="r")
    n_mels, frames = manifest.mel_shape
    crop = CFG.crop_frames(sample_rate=FEAT.sample_rate, hop_length=FEAT.hop_length)
    train, val = manifest.rows("train"), manifest.rows("val")
    whole, crops = ("train", "whole", train, (1, n_mels, frames)), ("train", "crops", train, (1, n_mels, crop))
    per_epoch = [crops, ("val", "whole", val, (1, n_mels, frames))]
    assert reads == [whole, *per_epoch * CFG.epochs]  # normalisation pass, then every segment once per epoch


def test_streaming_with_two_workers_is_deterministic_and_resumable(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4 * 3_000)  # ~4 segments a row group: work for both workers
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    assert len(StreamingSegments(store, manifest, "train").units) >= 4
    cfg = dataclasses.replace(CFG, epochs=3, num_workers=2, shuffle_buffer=6, resident=False)
    once = fit(store, manifest, cfg, run_id="once")
    assert fit(store, manifest, cfg, run_id="twice", stop_after=1).epochs == 1
    twice = fit(store, manifest, cfg, run_id="twice")
    assert twice.history == once.history and len(once.history) == 3
    a, _ = load_model(store, "runs/once/model.safetensors")
    b, _ = load_model(store, "runs/twice/model.safetensors")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_a_dataset_smaller_than_a_batch_without_val_split_trains(tmp_path, caplog) -> None:
    store = Store.open(str(tmp_path / "store"))
    frames = FEAT.frames(round(SEG.window_s * SEG.sample_rate))
    rows = SegmentRows()
    for i in range(6):  # 6 training segments, a batch of 8, no val rows
        rows.segment_id.append(f"s{i}")
        rows.track_id.append(f"t{i}")
        rows.artist_id.append(None)
        rows.genre.append(f"g{i % 2}")
        rows.label.append(i % 2)
        rows.split.append("train")
        rows.offset_s.append(0.0)
        rows.mel.append(np.random.default_rng(i).normal(0, 1, (FEAT.n_mels, frames)).astype(np.float32))
    entry = write_shard(store, "datasets/small/shards/part-00000.parquet", rows, feature_hash=FEAT.hash)
    manifest = Manifest(
        dataset_id="small", catalog_version="c", feature_config=dataclasses.asdict(FEAT), feature_hash=FEAT.hash,
        segment_config=dataclasses.asdict(SEG), labels=["g0", "g1"], split_seed=0, shards=[entry],
    )  # fmt: skip
    write_manifest(store, manifest)
    with caplog.at_level(logging.WARNING, logger="genreclf.models.training"):
        result = fit(store, manifest, dataclasses.replace(CFG, epochs=2), run_id="r")
    assert "no validation split" in caplog.text
    assert result.epochs == 2 and all(0 <= h["val_accuracy"] <= 1 for h in result.history)
    assert result.segments_per_s > 0


def test_a_finished_run_is_not_trained_again(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    killed = fit(store, manifest, CFG, run_id="r", stop_after=2)
    assert killed.new_epochs == 2 and store.exists("runs/r/checkpoint.pt") and not store.exists("runs/r/finished.json")
    first = fit(store, manifest, CFG, run_id="r")
    assert first.new_epochs == 2 and first.epochs == 4
    # Finished: the resumable checkpoint (the optimizer's state, most of a run's bytes) goes; the model stays.
    assert store.keys("runs/r") == [f"runs/r/{k}" for k in ("config.json", "finished.json", "model.json",
                                                            "model.safetensors")]  # fmt: skip
    written = {k: store.read_bytes(k) for k in store.keys("runs/r")}
    again = fit(store, manifest, CFG, run_id="r")
    assert again.new_epochs == 0 and again.segments_per_s == 0.0
    assert (again.epochs, again.best_epoch, again.history) == (4, first.best_epoch, first.history)
    assert {k: store.read_bytes(k) for k in store.keys("runs/r")} == written  # nothing trained, nothing rewritten
    with pytest.raises(ModelError, match=r"finished\.json was written with another config"):
        fit(store, manifest, dataclasses.replace(CFG, lr=0.5), run_id="r")


def test_training_runs_on_genreclf_device_unless_the_config_names_one(tmp_path, monkeypatch) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    one_epoch = dataclasses.replace(CFG, epochs=1)
    monkeypatch.setenv("GENRECLF_DEVICE", "cpu")
    assert fit(store, manifest, one_epoch, run_id="env").device == "cpu"
    monkeypatch.setenv("GENRECLF_DEVICE", "tpu")  # read only when the config names no device
    assert fit(store, manifest, dataclasses.replace(one_epoch, device="cpu"), run_id="explicit").device == "cpu"


@pytest.mark.parametrize(
    ("env", "device", "says"),
    [
        ("tpu", None, r"^GENRECLF_DEVICE='tpu' is not a device; use cpu, cuda, cuda:N or mps$"),
        ("cuda:7", None, r"^GENRECLF_DEVICE='cuda:7': this machine has (no CUDA device|\d CUDA device)"),
        ("cpu", "cuda:7", r"^device='cuda:7': this machine has (no CUDA device|\d CUDA device)"),
        ("cpu", "xla", r"^device='xla': genreclf runs on cpu, cuda, cuda:N or mps, not xla$"),
    ],
    ids=["env-unknown", "env-missing-cuda", "config-missing-cuda", "config-unsupported"],
)
def test_a_device_this_machine_lacks_fails_in_one_line_before_anything_is_written(
    tmp_path, monkeypatch, env: str, device: str | None, says: str
) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    monkeypatch.setenv("GENRECLF_DEVICE", env)
    with pytest.raises(ConfigError, match=says) as e:
        fit(store, manifest, dataclasses.replace(CFG, device=device), run_id="r")
    assert "\n" not in str(e.value)
    assert store.keys("runs") == []


def test_resuming_with_another_config_is_refused(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    fit(store, manifest, CFG, run_id="r", stop_after=1)
    with pytest.raises(ModelError, match="new run id"):
        fit(store, manifest, dataclasses.replace(CFG, lr=1e-2), run_id="r")


def test_a_run_id_that_leaves_runs_is_refused_before_anything_is_written(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    for run_id in ["../r", "a/b", "..", ""]:
        with pytest.raises(ModelError, match="is not a run id"):
            fit(store, manifest, CFG, run_id=run_id)
    assert store.keys("runs") == [] and not (tmp_path / "r").exists()


def test_a_checkpoint_that_is_more_than_plain_values_is_not_loaded(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    marker = tmp_path / "marker"
    plant_pickle(Path(store.path("runs/r/checkpoint.pt")), marker)
    with pytest.raises(ModelError, match="not loaded; train under a new run id"):
        fit(store, manifest, CFG, run_id="r")
    assert not marker.exists()


def test_spec_augment_masks_a_band_and_a_span() -> None:
    torch.manual_seed(0)
    x = torch.ones(16, 1, 32, 50)
    y = spec_augment(x, freq_mask=8, time_mask=10)
    assert y.shape == x.shape
    zeros = (y == 0).float()
    assert 0 < zeros.mean() < 0.5
    # each masked example is masked on whole rows (mel bands) and/or whole columns (frames)
    ex = zeros[0, 0].numpy()
    rows, cols = ex.all(axis=1), ex.all(axis=0)
    assert np.array_equal(ex.astype(bool), rows[:, None] | cols[None, :])


def test_training_imports_without_prefect_polars_librosa_or_pydantic() -> None:
    """The GPU image has torch, numpy and pyarrow only: benchmarks/train.py must run there as it is."""
    import subprocess
    import sys

    # what the GPU image lacks: it has torch, torchvision, numpy, pandas and pyarrow
    blocked = ["prefect", "polars", "librosa", "pydantic", "pydantic_settings", "sklearn", "matplotlib", "safetensors",
               "soundfile", "soxr", "boto3"]  # fmt: skip
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
        + "import genreclf.models.training, genreclf.models.inference, genreclf.models.files\n"
        + "import genreclf.datasets.loader, genreclf.datasets.manifest, genreclf.datasets.shards\n"
        # an explicit device needs no settings; without one, GENRECLF_DEVICE cannot be read there: the best available
        + "assert str(genreclf.models.inference.resolve_device('cpu')) == 'cpu'\n"
        + "assert genreclf.models.inference.resolve_device() == genreclf.models.inference.pick_device()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_run_id_follows_the_dataset_and_every_config_field() -> None:
    cfg = TrainConfig(model="small_cnn", epochs=3)

    same = run_id_for("ds1", TrainConfig(model="small_cnn", epochs=3))

    assert run_id_for("ds1", cfg) == same and same.startswith("small_cnn-")
    assert run_id_for("ds2", cfg) != same
    for change in ({"epochs": 4}, {"dropout": 0.5}, {"seed": 1}, {"shuffle_buffer": 64}):
        assert run_id_for("ds1", dataclasses.replace(cfg, **change)) != same, change


def test_each_training_segment_gives_crops_per_segment_crops_an_epoch_spread_over_batches(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    crop = CFG.crop_frames(sample_rate=FEAT.sample_rate, hop_length=FEAT.hop_length)
    ds = StreamingSegments(store, manifest, "train", crop_frames=crop, crops_per_segment=3, shuffle_buffer=8, seed=1)
    whole = loader.load_split(store, manifest, "train").mel.astype(np.float32)
    origins = []  # which whole segment each crop was cut from
    for x, _ in ds:
        found = [i for i, seg in enumerate(whole) for s in range(seg.shape[1] - crop + 1)
                 if np.array_equal(seg[:, s : s + crop], x[0].numpy())]  # fmt: skip
        origins.append(found[0])
    assert len(ds) == len(origins) == 3 * len(whole)
    assert sorted(set(origins)) == list(range(len(whole))) and all(origins.count(i) == 3 for i in set(origins))
    runs_of_one_segment = sum(a == b for a, b in itertools.pairwise(origins))
    assert runs_of_one_segment < len(origins) // 4  # shuffled, not three in a row
    cfg = dataclasses.replace(CFG, epochs=1, crops_per_segment=3)
    result = fit(store, manifest, cfg, run_id="crops", keep_checkpoint=True)
    steps = 3 * len(whole) // CFG.batch_size
    assert result.segments_per_s > 0 and result.history[0]["epoch"] == 1
    assert store.read_json("runs/crops/config.json")["train"]["crops_per_segment"] == 3
    ckpt = torch.load(store.path("runs/crops/checkpoint.pt"), weights_only=True)
    assert ckpt["scheduler"]["_step_count"] == steps + 1  # the schedule spans every crop's step


def test_a_warm_started_run_starts_from_the_old_weights_and_keeps_classifier_rows_by_genre(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    old = make_tiny_dataset(store)
    fit(store, old, CFG, run_id="old")
    old_model, old_bundle = load_model(store, "runs/old/model.safetensors")
    # the grown dataset: the genres in another order plus a new one
    grown = dataclasses.replace(old, dataset_id="grown", labels=["genre2", "genre0", "genre1", "genre9"])
    cfg = dataclasses.replace(CFG, init_from="old")
    new_model = training._seeded_model(cfg, 4)
    training._warm_start(new_model, store, cfg, grown.labels)
    a, b = old_model.state_dict(), new_model.state_dict()
    head = training._head_prefix(new_model)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith(head))
    for k in (f"{head}weight", f"{head}bias"):
        assert torch.equal(b[k][0], a[k][2]) and torch.equal(b[k][1], a[k][0]) and torch.equal(b[k][2], a[k][1])
        assert not torch.equal(b[k][3], torch.zeros_like(b[k][3]))  # the new genre keeps its random row
    with pytest.raises(ConfigError, match="init_from='old' is a small_cnn model; this run trains resnet18"):
        resnet = dataclasses.replace(cfg, model="resnet18")
        training._warm_start(training._seeded_model(resnet, 4), store, resnet, grown.labels)
    # fit with init_from (at a learning rate too small to move it): it scores what the old model scored
    cold = fit(store, old, dataclasses.replace(CFG, epochs=1, lr=1e-9), run_id="cold")
    warm = fit(store, old, dataclasses.replace(CFG, init_from="old", epochs=1, lr=1e-9), run_id="warm")
    best = store.read_json("runs/old/model.json")["epoch"]
    old_val = fit(store, old, CFG, run_id="old").history[best - 1]["val_accuracy"]
    assert warm.history[0]["val_accuracy"] == old_val > cold.history[0]["val_accuracy"]
    assert run_id_for("tiny", cfg) != run_id_for("tiny", CFG)
    assert old_bundle["labels"] == old.labels


def test_random_gain_shifts_every_band_of_a_crop_alike(tmp_path, monkeypatch) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(training.Normalizer, "apply", lambda self, x: seen.append(x.clone()) or x.float())
    cfg = dataclasses.replace(CFG, epochs=1, specaugment=False, gain_db=6.0, max_steps_per_epoch=1, resident=False)
    fit(store, manifest, cfg, run_id="gain")
    x = seen[-2]  # the last training batch, before the validation batch
    crop = cfg.crop_frames(sample_rate=FEAT.sample_rate, hop_length=FEAT.hop_length)
    ds = StreamingSegments(store, manifest, "train", crop_frames=crop, shuffle_buffer=cfg.shuffle_buffer, seed=3)
    ds.set_epoch(1)
    plain = torch.stack([item for item, _ in itertools.islice(iter(ds), len(x))])
    shift = x - plain  # (batch, 1, mels, frames): one constant per crop, within +-6 dB in natural-log power
    per_crop = shift.flatten(1)
    assert torch.allclose(per_crop, per_crop[:, :1].expand_as(per_crop), atol=1e-4)
    assert per_crop[:, 0].abs().max() <= 6.0 * np.log(10) / 10 + 1e-5 and per_crop[:, 0].abs().max() > 0.05


def test_a_segment_scored_in_windows_is_the_mean_of_its_windows_logits(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    fit(store, manifest, dataclasses.replace(CFG, epochs=1), run_id="w")
    model, bundle = load_model(store, "runs/w/model.safetensors", torch.device("cpu"))
    norm = loader.Normalizer.from_dict(bundle["normalizer"])
    window = inference.eval_window(bundle["train_config"], bundle["feature_config"])
    assert window == CFG.crop_frames(sample_rate=FEAT.sample_rate, hop_length=FEAT.hop_length) == 52
    mel = loader.load_split(store, manifest, "val").mel  # (6, 16, 87): windows at 0, then 35 (ending at the end)
    assert loader.window_starts(87, 52) == [0, 35] and loader.window_starts(40, 52) == [0]
    assert loader.window_starts(104, 52) == [0, 52]
    assert loader.window_starts(87, 52, cover_end=False) == [0] and loader.window_starts(40, 52, cover_end=False) == [0]
    got = inference.predict_logits(model, mel, norm, device=torch.device("cpu"), window=window, batch_size=5)
    by_hand = np.stack([
        inference.predict_logits(model, np.ascontiguousarray(mel[:, :, s : s + 52]), norm, device=torch.device("cpu"))
        for s in (0, 35)
    ]).mean(0)  # fmt: skip
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)
    whole = inference.predict_logits(model, mel, norm, device=torch.device("cpu"))
    assert not np.allclose(got, whole)
    assert inference.eval_window({"crop_s": 0.3}, bundle["feature_config"]) is None  # a model saved before windows


# --- the splits resident on the device ----------------------------------------------------------------------


def test_resident_crops_are_windows_of_every_segment_drawn_from_the_seed(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    split = ResidentSplit.load(store, manifest, "train", torch.device("cpu"))
    arrays = loader.load_split(store, manifest, "train")
    assert split.mel.dtype == torch.float16 and torch.equal(split.mel, torch.from_numpy(arrays.mel))

    def epoch(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        return list(split.crop_batches(batch_size=5, crop=7, crops_per_segment=3, generator=gen, drop_last=False))

    batches = epoch(1)
    x = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert x.shape == (3 * len(split), 1, split.mel.shape[1], 7) and [len(b[1]) for b in batches][-1] == 3 * 24 % 5
    # Each crop is a window of one segment with that segment's label, and each segment gives 3 crops.
    mel = split.mel.float()
    found = []
    for crop, label in zip(x[:, 0], labels, strict=True):
        hits = [
            (i, s)
            for i in range(len(split))
            for s in range(mel.shape[2] - 6)
            if torch.equal(mel[i, :, s : s + 7], crop)
        ]
        assert hits and int(split.labels[hits[0][0]]) == int(label)
        found.append(hits[0][0])
    assert sorted(np.bincount(found, minlength=len(split)).tolist()) == [3] * len(split)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, epoch(1), strict=True))
    assert not torch.equal(x, torch.cat([b[0] for b in epoch(2)]))
    dropped = split.crop_batches(batch_size=5, crop=7, crops_per_segment=3, generator=torch.Generator(), drop_last=True)
    assert [len(y) for _, y in dropped] == [5] * (3 * len(split) // 5)


def test_auto_keeps_the_splits_resident_when_they_fit_and_chunks_them_when_not(tmp_path, monkeypatch, caplog) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    caplog.set_level(logging.INFO, logger="genreclf")
    cfg = dataclasses.replace(CFG, epochs=1)
    fit(store, manifest, cfg, run_id="fits")
    assert "read 24 training and 6 validation segments onto cpu" in caplog.text
    monkeypatch.setattr(run_data, "budget_bytes", lambda device: 1_000)
    caplog.clear()
    fit(store, manifest, cfg, run_id="chunks")
    assert "training data held a chunk at a time: its 0 MB exceed cpu's budget of 0 MB" in caplog.text
    assert "onto cpu" not in caplog.text


def test_the_resident_path_learns_what_the_streamed_one_does(tmp_path) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    streamed = fit(store, manifest, dataclasses.replace(CFG, resident=False), run_id="streamed")
    resident = fit(store, manifest, dataclasses.replace(CFG, resident=True), run_id="resident")
    assert resident.best_val_accuracy >= 0.8 and streamed.best_val_accuracy >= 0.8
    # Validation scores whole segments in windows on either path: the same model gets the same accuracy.
    model, bundle = load_model(store, "runs/resident/model.safetensors", torch.device("cpu"))
    val = loader.load_split(store, manifest, "val")
    window = inference.eval_window(bundle["train_config"], bundle["feature_config"])
    logits = inference.predict_logits(model, val.mel, loader.Normalizer.from_dict(bundle["normalizer"]),
                                      device=torch.device("cpu"), window=window)  # fmt: skip
    assert float((logits.argmax(1) == val.labels).mean()) == resident.best_val_accuracy


class _BackwardFails(torch.autograd.Function):
    """What a compiled model whose backward graph fails to compile does: its forward runs, its backward raises."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("inductor: no C++ compiler found\nmore detail")


@pytest.mark.parametrize("fails_in", ["forward", "backward"])
def test_a_model_that_does_not_compile_trains_eagerly_after_one_warning(
    tmp_path, monkeypatch, caplog, fails_in: str
) -> None:
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    eager = fit(store, manifest, CFG, run_id="eager")

    def broken(model: torch.nn.Module) -> object:
        def forward(x: torch.Tensor) -> torch.Tensor:
            if fails_in == "forward":
                raise RuntimeError("inductor: no C++ compiler found\nmore detail")
            return _BackwardFails.apply(model(x))  # the model's batch-norm statistics move, as a real forward's

        return forward

    monkeypatch.setattr(torch, "compile", broken)
    compiled = fit(store, manifest, dataclasses.replace(CFG, compile=True), run_id="compiled")
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert warnings == [
        "torch.compile failed (RuntimeError: inductor: no C++ compiler found); training the eager model"
    ]
    assert compiled.history == eager.history  # the same steps, eagerly, from the same weights and statistics
    a, _ = load_model(store, "runs/eager/model.safetensors")
    b, _ = load_model(store, "runs/compiled/model.safetensors")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())  # running statistics too


def test_new_training_fields_at_their_defaults_keep_run_ids_and_checkpoints() -> None:
    from genreclf.models.runs import config_identity

    defaults = dataclasses.replace(CFG, resident=None, compile=None, auto_batch=None)
    assert run_id_for("tiny", defaults) == run_id_for("tiny", CFG)
    assert run_id_for("tiny", dataclasses.replace(CFG, resident=False)) != run_id_for("tiny", CFG)
    assert run_id_for("tiny", dataclasses.replace(CFG, auto_batch=True)) != run_id_for("tiny", CFG)
    before = {k: v for k, v in dataclasses.asdict(CFG).items() if k not in ("resident", "compile", "auto_batch")}
    assert config_identity(before) == config_identity(dataclasses.asdict(CFG))


def test_chunks_give_every_segment_its_crops_in_full_batches_reading_the_next_chunk_ahead(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4 * 3_000)  # ~4 segments a row group
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    chunked = ChunkedSplit.open(store, manifest, "train", torch.device("cpu"), chunk_bytes=9 * 16 * 87 * 2)
    assert len(chunked) == 24 and len(chunked.units) >= 6
    loads: list[int] = []
    load = chunked._load
    monkeypatch.setattr(chunked, "_load", lambda units: loads.append(len(units)) or load(units))

    def epoch(seed: int, drop_last: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        return list(chunked.crop_batches(batch_size=5, crop=7, crops_per_segment=2, generator=gen, drop_last=drop_last))

    batches = epoch(1)
    assert [len(y) for _, y in batches] == [5] * 9 + [3] and len(loads) >= 3 and max(loads) <= 2
    assert [len(y) for _, y in epoch(1, drop_last=True)] == [5] * 9
    whole = ResidentSplit.load(store, manifest, "train", torch.device("cpu")).mel.float()
    hits = []
    for crop in torch.cat([x for x, _ in batches])[:, 0]:
        hits += [i for i in range(24) for s in range(87 - 6) if torch.equal(whole[i, :, s : s + 7], crop)][:1]
    assert sorted(np.bincount(hits, minlength=24).tolist()) == [2] * 24  # every segment, twice
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, epoch(1), strict=True))
    assert sum(len(y) for _, y in chunked.segment_batches(4)) == 24


def test_auto_batch_grows_in_powers_of_two_within_memory_steps_and_its_cap(monkeypatch) -> None:
    cpu = torch.device("cpu")
    model = training._seeded_model(CFG, 3)
    crop = (16, 20)
    per_example = steps.saved_bytes_per_example(model, CFG, cpu, crop)
    wider = steps.saved_bytes_per_example(model, CFG, cpu, (16, 40))
    assert 1.8 < wider / per_example < 2.2  # activations grow with the crop; the weights are left out
    auto = dataclasses.replace(CFG, auto_batch=True)  # batch_size 8
    plenty = steps.MAX_BATCH * steps.MIN_STEPS * 4
    assert steps.batch_for(model, CFG, cpu, crop, plenty) == 8  # off on a CPU by default
    assert steps.batch_for(model, auto, cpu, crop, plenty) == steps.MAX_BATCH
    assert steps.batch_for(model, auto, cpu, crop, 64 * steps.MIN_STEPS + 5) == 64  # an epoch keeps its steps
    assert steps.batch_for(model, auto, cpu, crop, 15 * steps.MIN_STEPS) == 8  # never below batch_size
    memory = 100 * per_example * steps.SAVED_TO_PEAK / steps.ACTIVATION_FRACTION["cpu"]  # room for 100 examples
    monkeypatch.setattr(steps, "free_bytes", lambda device: memory)
    assert steps.batch_for(model, auto, cpu, crop, plenty) == 64
    assert steps.scaled_lr(auto, 32) == pytest.approx(2 * CFG.lr)  # 4x the batch, 2x the rate
    before = [t.clone() for t in model.buffers()]
    steps.batch_for(model, auto, cpu, crop, plenty)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))  # the probe ran on a copy


def test_a_grown_batch_is_kept_when_its_run_resumes_and_scales_the_learning_rate(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(steps, "MIN_STEPS", 1)  # the tiny dataset's 24 crops an epoch: a batch of 16 keeps a step
    cfg = dataclasses.replace(CFG, auto_batch=True)
    whole = Store.open(str(tmp_path / "whole"))
    uninterrupted = fit(whole, make_tiny_dataset(whole), cfg, run_id="r")
    assert uninterrupted.batch_size == 16 and fit(whole, make_tiny_dataset(whole), CFG, run_id="plain").batch_size == 8

    parts = Store.open(str(tmp_path / "parts"))
    manifest = make_tiny_dataset(parts)
    fit(parts, manifest, cfg, run_id="r", stop_after=1, keep_checkpoint=True)
    ckpt = torch.load(parts.path("runs/r/checkpoint.pt"), weights_only=True)
    assert ckpt["state"]["batch_size"] == 16
    assert ckpt["optimizer"]["param_groups"][0]["max_lr"] == pytest.approx(CFG.lr * 2**0.5)
    monkeypatch.setattr(steps, "MIN_STEPS", 100)  # were it chosen again, the batch would stay at 8
    resumed = fit(parts, manifest, cfg, run_id="r")
    assert resumed.batch_size == 16 and resumed.history == uninterrupted.history


def test_a_split_read_by_parallel_readers_is_the_split_in_shard_order_and_a_changed_shard_is_named(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 4 * 3_000)  # ~4 segments a row group: many for 3 readers
    monkeypatch.setattr(resident, "READERS", 3)
    store = Store.open(str(tmp_path / "store"))
    manifest = make_tiny_dataset(store)
    units = resident.split_units(manifest, "train")
    assert units is not None and len(units) >= 6
    split = ResidentSplit.load(store, manifest, "train", torch.device("cpu"))
    arrays = loader.load_split(store, manifest, "train")
    assert torch.equal(split.mel, torch.from_numpy(arrays.mel)) and torch.equal(
        split.labels, torch.from_numpy(arrays.labels)
    )

    key, group, n = units[2]
    changed = dataclasses.replace(manifest, shards=[{**manifest.shards[0], "row_groups": [
        [s, rows + 1 if i == group else rows] for i, (s, rows) in enumerate(manifest.shards[0]["row_groups"])
    ]}])  # fmt: skip
    with pytest.raises(DataError, match=f"{key}: row group {group} holds {n} rows, the manifest says {n + 1}"):
        ResidentSplit.load(store, changed, "train", torch.device("cpu"))
    other = dataclasses.replace(manifest, feature_hash="0" * 16)
    with pytest.raises(DataError, match="do not match the manifest's 0000000000000000; rebuild the dataset"):
        ResidentSplit.load(store, other, "train", torch.device("cpu"))
