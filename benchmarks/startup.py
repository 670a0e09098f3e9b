"""Start-up and end-to-end wall and CPU time of the `genreclf` command, as a user runs it (each a fresh process).

    .venv/bin/python benchmarks/startup.py [--store STORE] [--audio FILE] [--repeat 5]

Times `genreclf predict FILE --store STORE` first, then `--help`, `--version` (skipped with a note when it exits 2,
argparse's answer to an unknown option) and `status --store STORE`: one warm-up round, then REPEAT rounds with the
commands interleaved, so a noisy machine slows all of them alike; min and median of each, of the wall time and of
the CPU time (user + system, which others' load moves less). Then the split of predict into imports, model loading
and inference, measured inside one fresh interpreter per round.

Without --store it writes a store holding one champion: a randomly initialised ResNet-18 with the configs of
`genreclf demo` (DatasetParams.small, TrainParams.small), so inference costs what it costs on a demo-trained model;
it has no catalog or dataset, so `status` reads only the registry. Without --audio it writes a 3-minute mp3 with
ffmpeg (a tone and pink noise).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Runs in a fresh interpreter: the same imports and calls as `genreclf predict`, each timed.
SPLIT = """
import json, sys, time
t0 = time.perf_counter()
import genreclf.app.cli
from genreclf.reports.predict import open_predictor
t1 = time.perf_counter()
predictor = open_predictor(sys.argv[1], None, "cpu")
t2 = time.perf_counter()
predictor.predict_input(sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load model": t2 - t1, "inference": t3 - t2}))
"""


def make_store(path: Path) -> str:
    """A store whose champion is an untrained ResNet-18 with the demo's feature, segment and training configs."""
    import numpy as np
    import torch

    from genreclf.datasets.loader import Normalizer
    from genreclf.flows.params import DatasetParams, TrainParams
    from genreclf.models import create_model
    from genreclf.models.files import write_model
    from genreclf.reports.registry import champion_entry, promote_if_better
    from genreclf.store.storage import Store

    store = Store.open(str(path))
    dataset, train = DatasetParams.small(), TrainParams.small().config()
    feat, seg = dataset.feature_config(), dataset.segment_config()
    labels = ["chirp", "drone", "noise", "pulse"]
    torch.manual_seed(0)
    model = create_model(train.model, num_classes=len(labels), dropout=train.dropout)
    norm = Normalizer(np.zeros(feat.n_mels, np.float32), np.ones(feat.n_mels, np.float32))
    run_id = "resnet18-startupbench"
    meta = {
        "model": train.model,
        "num_classes": len(labels),
        "dropout": train.dropout,
        "labels": labels,
        "normalizer": norm.to_dict(),
        "feature_config": dataclasses.asdict(feat),
        "segment_config": dataclasses.asdict(seg),
        "dataset_id": "startup-bench",
        "catalog_version": "startup-bench",
        "train_config": dataclasses.asdict(train),
        "run_id": run_id,
        "epoch": 1,
    }
    key = store.key_of(write_model(store, run_id, model.state_dict(), meta))
    entry = champion_entry(
        store, run_id=run_id, model_key=key, dataset_id="startup-bench", line="startup-bench", labels=labels, score=0.0
    )
    promote_if_better(store, entry, lambda champion: None)
    return store.url


def make_audio(path: Path, *, seconds: float = 180.0) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
           "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.2:duration={seconds}",
           "-filter_complex", "amix=inputs=2", "-ac", "2", "-ar", "44100", "-b:a", "192k", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def wall(cmd: list[str]) -> tuple[float, float, int]:
    """Wall and CPU (user + system, of the command and its children) seconds of a command, and its exit code.
    On a shared machine the CPU time moves less than the wall time when others load the cores."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, _children_cpu() - cpu0, rc


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rounds(jobs: dict[str, Callable[[], dict[str, float]]], repeat: int) -> dict[str, dict[str, list[float]]]:
    """One warm-up round, then `repeat` rounds with the jobs interleaved -> {job: {figure: [seconds per round]}}."""
    for job in jobs.values():
        job()
    out: dict[str, dict[str, list[float]]] = {name: {} for name in jobs}
    for _ in range(repeat):
        for name, job in jobs.items():
            for figure, seconds in job().items():
                out[name].setdefault(figure, []).append(seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store with a champion (default: write one)")
    parser.add_argument("--audio", help="the audio to predict (default: write a 3-minute mp3)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    exe = [str(bin_dir / "genreclf")] if (bin_dir / "genreclf").exists() else [sys.executable, "-m", "genreclf.app.cli"]
    with tempfile.TemporaryDirectory(prefix="genreclf-startup-") as tmp:
        store = args.store or make_store(Path(tmp) / "store")
        song = args.audio or str(make_audio(Path(tmp) / "song.mp3"))
        commands = {
            "predict FILE --store S": [*exe, "predict", song, "--store", store],
            "--help": [*exe, "--help"],
            "--version": [*exe, "--version"],
            "status --store S": [*exe, "status", "--store", store],
        }
        notes = []
        for name, cmd in list(commands.items()):
            *_, rc = wall(cmd)
            if rc == 2 and name == "--version":
                notes.append(f"{name}: skipped, exits 2 (not an option of this genreclf)")
                del commands[name]
            elif rc != 0:
                raise SystemExit(f"`{' '.join(cmd)}` exits {rc}; run it by hand to see why")

        def timed(cmd: list[str]) -> Callable[[], dict[str, float]]:
            return lambda: dict(zip(("wall", "cpu"), wall(cmd)[:2], strict=True))

        def split() -> dict[str, float]:
            cmd = [sys.executable, "-c", SPLIT, store, song]
            got = subprocess.run(cmd, capture_output=True, text=True, check=True)
            return dict(json.loads(got.stdout.splitlines()[-1]))

        got = rounds({**{name: timed(cmd) for name, cmd in commands.items()}, "split": split}, args.repeat)

    print(f"genreclf start-up, seconds, {args.repeat} interleaved rounds after a warm-up (min / median)")
    made = " (written for this run, now removed)"
    print(f"  store {store}{'' if args.store else made}\n  audio {song}{'' if args.audio else made}")
    print(f"  {'':<35}{'wall':>15}   {'cpu (user+sys)':>15}")
    for name in commands:
        figures = [f"{min(t):6.2f} / {statistics.median(t):6.2f}" for t in got[name].values()]
        print(f"  {'genreclf ' + name:<34} {'   '.join(figures)}")
    for note in notes:
        print(f"  {note}")
    print("predict in one interpreter (min / median):")
    for figure, times in got["split"].items():
        print(f"  {figure:<34} {min(times):6.2f} / {statistics.median(times):6.2f}")


if __name__ == "__main__":
    main()
