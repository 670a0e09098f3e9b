"""Model files: safetensors written and read without the safetensors package, references that stay in runs/, and
old torch pickles that are read with weights_only or refused without running them."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genreclf.errors import ModelError
from genreclf.models import create_model
from genreclf.models.files import load_safetensors, read_model, save_safetensors, write_model
from genreclf.models.inference import load_model
from genreclf.reports.predict import Predictor, resolve_model_key
from genreclf.store.keys import CHAMPION_KEY
from genreclf.store.storage import Store
from tests.planted import plant_pickle
from tests.tiny import FEAT, SEG

LABELS = ["genre0", "genre1", "genre2"]


def _meta(run_id: str) -> dict[str, Any]:
    return {
        "model": "small_cnn", "num_classes": 3, "dropout": 0.3, "labels": LABELS,
        "normalizer": {"mean": [0.0] * FEAT.n_mels, "std": [1.0] * FEAT.n_mels},
        "feature_config": dataclasses.asdict(FEAT), "segment_config": dataclasses.asdict(SEG),
        "run_id": run_id, "epoch": 1,
    }  # fmt: skip


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=3).state_dict()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store with one run, `r1`, saved as safetensors + JSON."""
    store = Store.open(str(tmp_path / "store"))
    write_model(store, "r1", _weights(), _meta("r1"))
    return store


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(sorted(a)) == list(sorted(b))
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


# --- safetensors ----------------------------------------------------------------------------------------------


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "transposed": torch.randn(4, 5, generator=g).t(),  # not contiguous
        "channels_last": torch.randn(2, 3, 4, 5, generator=g).contiguous(memory_format=torch.channels_last),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64_scalar": torch.tensor(42),  # BatchNorm's num_batches_tracked
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }


def test_our_files_load_with_safetensors_and_its_files_load_with_ours(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors = _tensors()
    ours = tmp_path / "ours.safetensors"
    ours.write_bytes(save_safetensors(tensors, {"format": "pt"}))
    _assert_same(load_file(ours), tensors)
    with safe_open(ours, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}

    theirs = tmp_path / "theirs.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, theirs, metadata={"run": "r1", "epoch": "3"})
    loaded, metadata = load_safetensors(theirs.read_bytes())
    _assert_same(loaded, tensors)
    assert metadata == {"run": "r1", "epoch": "3"}
    assert load_safetensors(save_safetensors(tensors))[1] == {}


def _file(header: dict[str, Any] | bytes, body: bytes = b"") -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def _entry(dtype: Any, shape: list[Any], begin: Any, end: Any) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


MALFORMED = {
    "shorter than its header length": b"\x08\x00",
    "header past the end": struct.pack("<Q", 1_000) + b"{}",
    "header of 2^64-1 bytes": struct.pack("<Q", 2**64 - 1) + b"{}",
    "header not JSON": _file(b"not json"),
    "header not UTF-8": _file(b'{"\xff": 1}'),
    "header a list": _file(b"[]"),
    "unknown dtype": _file({"x": _entry("C64", [1], 0, 8)}, bytes(8)),
    "dtype not a string": _file({"x": _entry(["F32"], [1], 0, 4)}, bytes(4)),
    "size does not match shape": _file({"x": _entry("F32", [2], 0, 4)}, bytes(4)),
    "negative size": _file({"x": _entry("F32", [-1], 0, 0)}),
    "shape of booleans": _file({"x": _entry("F32", [True], 0, 4)}, bytes(4)),
    "offsets past the data": _file({"x": _entry("F32", [2], 0, 8)}, bytes(4)),
    "negative offsets": _file({"x": _entry("F32", [1], -4, 0)}, bytes(4)),
    "float offsets": _file({"x": _entry("F32", [1], 0.0, 4.0)}, bytes(4)),
    "overlapping tensors": _file({"a": _entry("F32", [1], 0, 4), "b": _entry("F32", [1], 0, 4)}, bytes(4)),
    "a hole before a tensor": _file({"x": _entry("F32", [1], 4, 8)}, bytes(8)),
    "bytes after the last tensor": _file({"x": _entry("F32", [1], 0, 4)}, bytes(8)),
    "an extra field": _file({"x": {**_entry("F32", [1], 0, 4), "code": "run me"}}, bytes(4)),
    "a name twice": _file(b'{"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "x": 1}', bytes(1)),
    "metadata not strings": _file({"__metadata__": {"epoch": 3}}),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_the_reader_refuses_malformed_files(data: bytes) -> None:
    with pytest.raises(ModelError, match=r"f\.safetensors: not a valid safetensors file \("):
        load_safetensors(data, name="f.safetensors")


# --- a run's model --------------------------------------------------------------------------------------------


def test_a_model_is_weights_then_json_and_a_mismatched_pair_is_refused(store: Store) -> None:
    assert store.keys("runs/r1") == ["runs/r1/model.json", "runs/r1/model.safetensors"]
    state, meta = read_model(store, "runs/r1/model.safetensors")
    _assert_same(state, _weights())
    assert meta["labels"] == LABELS and meta["run_id"] == "r1" and meta["weights"] == "model.safetensors"

    # New weights beside the old JSON (a reader between the two writes, or a writer killed between them).
    store.write_bytes("runs/r1/model.safetensors", save_safetensors(_weights(seed=1), {"format": "pt"}))
    with pytest.raises(ModelError, match=r"model\.safetensors does not match .*model\.json \(sha256"):
        read_model(store, "runs/r1/model.safetensors")


def test_weights_that_do_not_fit_the_model_are_a_model_error(store: Store) -> None:
    write_model(store, "r2", {"conv.weight": torch.zeros(2, 2)}, _meta("r2"))
    with pytest.raises(ModelError, match="the weights do not fit model 'small_cnn'"):
        load_model(store, "runs/r2/model.safetensors", torch.device("cpu"))


# --- model references -----------------------------------------------------------------------------------------


def test_a_run_id_key_or_uri_in_the_store_resolves_to_its_weights(store: Store) -> None:
    for ref in ["r1", "runs/r1", "runs/r1/", "runs/r1/model.safetensors", store.uri("runs/r1"),
                store.uri("runs/r1/model.safetensors")]:  # fmt: skip
        assert resolve_model_key(store, ref) == "runs/r1/model.safetensors", ref
    with pytest.raises(ModelError, match="no model 'nope' in"):
        resolve_model_key(store, "nope")


@pytest.mark.parametrize(
    "ref",
    [
        "../evil.pt", "/abs/path/model.pt", "runs/../x", "runs/a/b/c", "runs/r1/../../evil.pt", "runs/r1/model.json",
        "runs/r1/checkpoint.pt", "runs/./model.safetensors", "runs/", "", ".", "..", "r1/model.safetensors",
        "runs\\r1", "file:///elsewhere/runs/r1", "s3://bucket/runs/r1", "{store}2/runs/r1", "{store}/evil.pt",
        "{store}/runs/../evil.pt", "{store}/r1",
    ],
)  # fmt: skip
def test_a_reference_outside_the_runs_of_the_store_is_refused(store: Store, ref: str) -> None:
    with pytest.raises(ModelError, match=r"must be a run id or a run in the store .*folders under .*runs/"):
        resolve_model_key(store, ref.format(store=store.url))


def test_the_champion_must_name_a_run_and_nothing_outside_runs_is_loaded(store: Store, tmp_path: Path) -> None:
    store.write_json(CHAMPION_KEY, {"run_id": "r1", "model_key": "runs/r1/model.safetensors"})
    assert resolve_model_key(store, None) == "runs/r1/model.safetensors"

    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "evil.pt", marker)
    store.write_json(CHAMPION_KEY, {"run_id": "r1", "model_key": "../evil.pt"})
    with pytest.raises(ModelError, match=r"champion in .*champion\.json names model_key '\.\./evil\.pt'"):
        Predictor(store)
    with pytest.raises(ModelError, match="models are loaded from runs/ only"):  # what registry scoring calls
        load_model(store, "../evil.pt", torch.device("cpu"))
    assert not marker.exists()


# --- models of older genreclf ---------------------------------------------------------------------------------


def test_an_old_model_pt_of_plain_tensors_loads_with_weights_only(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    buf = io.BytesIO()
    torch.save({**_meta("old"), "state_dict": _weights(), "dataset_id": "tiny", "train_config": {"lr": 0.001}}, buf)
    store.write_bytes("runs/old/model.pt", buf.getvalue())

    assert resolve_model_key(store, "old") == "runs/old/model.pt"
    predictor = Predictor(store, "old", device="cpu")
    _assert_same(predictor.model.state_dict(), _weights())
    assert predictor.labels == LABELS and predictor.run_id == "old"
    pred = predictor.predict_audio(np.random.default_rng(0).normal(0, 0.1, SEG.sample_rate).astype(np.float32))
    assert pred.probabilities.shape == (3,) and np.isclose(pred.probabilities.sum(), 1.0)


def test_a_planted_pickle_in_runs_is_refused_without_running_it(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "store"))
    marker = tmp_path / "marker"
    plant_pickle(Path(store.path("runs/evil/model.pt")), marker)
    for ref in ["evil", "runs/evil/model.pt", None]:
        store.write_json(CHAMPION_KEY, {"run_id": "evil", "model_key": "runs/evil/model.pt"})
        with pytest.raises(ModelError, match=r"older genreclf in a format that can run code.*genreclf run --catalog"):
            Predictor(store, ref, device="cpu")
    assert not marker.exists()
