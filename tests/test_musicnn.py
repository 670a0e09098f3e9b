"""musicnn: the checkpoint reader, the conversion, the network against the original's outputs, its features."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genreclf.datasets.features import FeatureConfig, compress, log_mel_batch
from genreclf.errors import ModelError
from genreclf.models import create_model, weights
from genreclf.models.musicnn import EMBEDDING_DIM, FEATURES, PATCH_FRAMES, Musicnn, MusicnnClassifier
from genreclf.models.tf_bundle import BundleError, read_bundle, read_index

FIXTURE = Path(__file__).parent / "data" / "musicnn_reference.npz"
OUTPUTS = ("logits", "penultimate", "max_pool", "mean_pool")


# --- a tensor bundle written from the spec, to read back ---------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)  # one restart point at 0, and the count


def write_bundle(tensors: dict[str, np.ndarray], *, big_endian: bool = False) -> tuple[bytes, bytes]:
    """(index, data) of a one-shard bundle, uncompressed blocks, as TensorFlow writes checkpoints."""
    dtypes = {np.dtype(np.float32): 1, np.dtype(np.int64): 9}
    data, entries = b"", [(b"", _field(1, 1) + _field(2, 1 if big_endian else 0))]
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], order="C")
        shape = b"".join(_field(2, _field(1, d)) for d in arr.shape)
        entry = _field(1, dtypes[arr.dtype]) + _field(2, shape) + _field(4, len(data)) + _field(5, arr.nbytes)
        entries.append((name.encode(), entry))
        data += arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    block = _block(entries)
    table = block + b"\0\0\0\0\0"  # trailer: no compression, a CRC that is not checked
    handle = _varint(0) + _varint(len(block))
    index_block = _block([(entries[-1][0], handle)])
    index_handle = _varint(len(table)) + _varint(len(index_block))
    table += index_block + b"\0\0\0\0\0"
    footer = (_varint(0) + _varint(0) + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    return table + footer, data


def test_a_bundle_reads_back_as_written() -> None:
    tensors = {"a/kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "global_step": np.array(7, np.int64)}
    index, data = write_bundle(tensors)
    assert sorted(read_index(index)) == ["a/kernel", "global_step"]
    got = read_bundle(index, data)
    np.testing.assert_array_equal(got["a/kernel"], tensors["a/kernel"])
    assert got["global_step"].shape == () and int(got["global_step"]) == 7


def test_a_bad_bundle_is_one_clear_error() -> None:
    index, data = write_bundle({"w": np.ones((4, 4), np.float32)})
    with pytest.raises(BundleError, match="no tensor missing/kernel"):
        read_bundle(index, data, ["w", "missing/kernel"])
    with pytest.raises(BundleError, match="past the data file"):
        read_bundle(index, data[:-8])
    with pytest.raises(BundleError, match="truncated"):
        read_index(index[:-3])
    with pytest.raises(BundleError, match="big-endian"):
        read_index(write_bundle({"w": np.ones(2, np.float32)}, big_endian=True)[0])


# --- the network ------------------------------------------------------------------------------------------------


def test_musicnn_shapes_gradients_and_no_nan() -> None:
    torch.manual_seed(0)
    model = create_model("musicnn-msd", num_classes=4, hidden=8)
    assert isinstance(model, MusicnnClassifier)
    x = torch.randn(2, 1, 96, 400)  # two segments of 400 frames: 3 patches each (the last one overlapping)
    logits = model(x)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    logits.sum().backward()
    # Every parameter but the network's own tag layer (its 50 tags are not the genres) learns.
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert {n for n, g in grads.items() if g is None} == {"backbone.tags.weight", "backbone.tags.bias"}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    out = Musicnn()(torch.randn(3, 1, 96, PATCH_FRAMES))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "logits": (3, 50), "penultimate": (3, 200), "max_pool": (3, 753), "mean_pool": (3, 753)
    }  # fmt: skip
    assert Musicnn().eval().embed(torch.randn(1, 1, 96, PATCH_FRAMES)).shape == (1, EMBEDDING_DIM)


def test_fine_tuning_keeps_the_networks_batch_norm_statistics() -> None:
    """A training step changes the weights, not the pretrained statistics the head's features depend on."""
    torch.manual_seed(0)
    model = create_model("musicnn-msd", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 96, PATCH_FRAMES)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(after["backbone.timbral.0.bn.weight"], torch.ones(204))  # the BN's scale does learn


def test_other_models_refuse_a_hidden_head() -> None:
    with pytest.raises(ModelError, match="no head with a hidden layer"):
        create_model("small_cnn", num_classes=3, hidden=16)


def _synthetic_inputs() -> np.ndarray:
    """The four synthesized signals of the reference (the shared data folder's musicnn-reference notes), as
    musicnn's package makes its input: librosa's mel at 16 kHz, then log10(1 + 10000 mel) in float32 ->
    (4, 187, 96)."""
    import librosa

    t = np.arange(int(16000 * 3.2)) / 16000
    rng = np.random.default_rng(0)
    signals = [
        0.5 * np.sin(2 * np.pi * (100 * t + 400 * t**2)),
        sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)),
        0.3 * rng.standard_normal(t.size),
        np.where((4 * t) % 1 < 0.01, 0.9, 0) + 0.01 * rng.standard_normal(t.size),
    ]
    mels = [
        librosa.feature.melspectrogram(y=np.asarray(y, np.float32), sr=16000, n_fft=512, hop_length=256, n_mels=96)
        for y in signals
    ]
    return np.stack([np.log10(10000 * m.T[:PATCH_FRAMES] + 1) for m in mels]).astype(np.float32)


@pytest.mark.parametrize("network", ["MSD_musicnn", "MTT_musicnn"])
def test_the_converted_network_reproduces_the_originals_outputs(musicnn_weights, network) -> None:
    """Six patches (four synthesized, one of loud metal) through our network with the converted weights give the
    TensorFlow original's outputs within 1e-4 of each output's largest value (seen: under 7e-6)."""
    ref = np.load(FIXTURE)
    assert list(ref["synthetic_names"]) == ["chirp", "chord", "noise", "clicks"]
    state, provenance = weights.load(f"musicnn-{network[:3].lower()}", cache_dir=musicnn_weights)
    assert provenance["wheel_sha256"] == weights.WHEEL_SHA256 and provenance["converter_version"] == 1
    net = Musicnn()
    net.load_state_dict(state)
    net.eval()
    real = np.log10(10000 * ref["real_mel16"].astype(np.float32) + 1)  # float32, as the reference was computed
    for kind, patches in (("synthetic", _synthetic_inputs()), ("real", real)):
        with torch.no_grad():
            out = net(torch.from_numpy(patches).transpose(1, 2)[:, None])  # (n, 1, 96, 187)
        for name in OUTPUTS:
            want = ref[f"{kind}/{network}/{name}"]
            err = np.abs(out[name].numpy() - want).max() / np.abs(want).max()
            assert err < 1e-4, f"{kind} {name}: {err:.2e}"


def test_musicnn_features_are_finite_on_loud_music_and_match_its_input() -> None:
    """The package's float16 log compression overflows to inf on loud music; ours, in float32, does not."""
    ref = np.load(FIXTURE)
    mel16 = ref["real_mel16"]  # metal.00002: the loudest bins are above 6.55, where 10000 * mel overflows float16
    with np.errstate(over="ignore"):
        assert np.isinf(np.log10(np.float16(10000) * mel16 + np.float16(1))).any()
    ours = compress(torch.from_numpy(mel16.astype(np.float32)), cfg=FEATURES).numpy()
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, np.log10(10000 * mel16.astype(np.float32) + 1), rtol=0, atol=2e-6)
    # From the waveform: our torch spectrogram is librosa's, which the network was trained on.
    t = np.arange(int(16000 * 3.2)) / 16000
    chirp = (0.5 * np.sin(2 * np.pi * (100 * t + 400 * t**2))).astype(np.float32)
    ours = log_mel_batch(chirp, cfg=FEATURES)[0].T[:PATCH_FRAMES]
    np.testing.assert_allclose(ours, _synthetic_inputs()[0], rtol=0, atol=5e-5)


def test_old_feature_configs_keep_their_hash() -> None:
    """Shards are keyed by the feature hash: adding `compression` must not orphan a store's shards (the values are
    what FeatureConfig.hash gave before the field existed)."""
    assert FeatureConfig().hash == "e123ade0e1b6"
    assert FeatureConfig(n_mels=64, n_fft=1024).hash == "6c6a46057c38"
    assert FEATURES.hash != dataclasses.replace(FEATURES, compression="log").hash


# --- fetching ---------------------------------------------------------------------------------------------------


def _fake_wheel(path: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("musicnn/MSD_musicnn/.index", b"not an index")
    path.write_bytes(buf.getvalue())
    return path


def test_a_wrong_or_truncated_wheel_is_one_line_and_leaves_the_cache_as_it_was(musicnn_weights, tmp_path) -> None:
    folder = weights.weights_dir("musicnn-msd", musicnn_weights)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ModelError, match=r"sha256 .* is not musicnn==0.1.0's .*truncated\); fetch it again"):
        weights.fetch("musicnn-msd", source=_fake_wheel(tmp_path / weights.WHEEL_FILE), cache_dir=musicnn_weights,
                      force=True)  # fmt: skip
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert weights.available("musicnn-msd", cache_dir=musicnn_weights)


def test_a_checkpoint_folder_with_other_files_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "musicnn" / "MSD_musicnn"
    ckpt.mkdir(parents=True)
    index, data = write_bundle({"w": np.ones(2, np.float32)})
    (ckpt / weights.INDEX).write_bytes(index)
    (ckpt / weights.DATA).write_bytes(data)
    with pytest.raises(ModelError, match=r"MSD_musicnn/.index .* not the pinned"):
        weights.fetch("musicnn-msd", source=tmp_path, cache_dir=tmp_path / "cache")
    assert not weights.available("musicnn-msd", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "weights" / "musicnn-msd" / weights.WEIGHTS).exists()


def test_weights_that_do_not_match_their_provenance_are_not_used(musicnn_weights, tmp_path) -> None:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(weights.weights_dir("musicnn-msd", musicnn_weights), weights.weights_dir("musicnn-msd", cache))
    path = weights.weights_dir("musicnn-msd", cache) / weights.WEIGHTS
    path.write_bytes(path.read_bytes()[:-10])  # cut short
    with pytest.raises(ModelError, match="does not match its provenance; run `genreclf weights fetch musicnn-msd`"):
        weights.load("musicnn-msd", cache_dir=cache)


@pytest.mark.slow
def test_fetch_downloads_the_pinned_wheel_from_the_package_index(tmp_path) -> None:
    """The whole path a new machine takes: pip download, sha256, conversion, provenance (29 MB from the index)."""
    folder = weights.fetch("musicnn-mtt", cache_dir=tmp_path)
    meta = json.loads((folder / weights.PROVENANCE).read_text())
    assert meta["fetched_from"] == "package index" and meta["wheel_sha256"] == weights.WHEEL_SHA256
    state, _ = weights.load("musicnn-mtt", cache_dir=tmp_path)
    Musicnn().load_state_dict(state)
