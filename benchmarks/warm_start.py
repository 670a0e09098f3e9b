"""Warm start against training from scratch when a catalog grows: test accuracy and training time, side by side.

    python benchmarks/warm_start.py DIR --split-file FILE [--fraction 0.7] [--epochs N] [--warm-epochs N]
                                        [--store DIR]

The nightly retrain's situation, on a folder catalog DIR/<genre>/<file>: a champion is trained on the catalog with
only `fraction` of its training tracks (a folder of links to them; val and test whole). Then the catalog grows to all
of DIR, the grown dataset is built, and a model is trained on it twice: by `nightly-retrain` with `warm_start`
(fine-tuning the champion for --warm-epochs), and from scratch (--epochs). Both land in the same store, on the same
split (the split file's), and are scored on the same test tracks. Prints accuracies, the wall time of each (train
and evaluate) and their ratio. One seed; a small test set's accuracy moves by 1/n per track.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", type=Path)
    p.add_argument("--split-file", required=True)
    p.add_argument("--fraction", type=float, default=0.7, help="share of the training tracks the champion saw")
    p.add_argument("--epochs", type=int, default=None, help="epochs from scratch (default: the training default)")
    p.add_argument("--warm-epochs", type=int, default=None, help="epochs of fine-tuning (default: a third)")
    p.add_argument("--store", help="storage root (default: a temporary directory)")
    p.add_argument("--small", action="store_true", help="3 s windows, 64 mels, a CPU-sized run")
    args = p.parse_args()

    from genreclf.flows.build_dataset import build_dataset
    from genreclf.flows.nightly import nightly_retrain
    from genreclf.flows.params import DatasetParams, TrainParams
    from genreclf.flows.pipeline import pipeline
    from genreclf.store.keys import report_key
    from genreclf.tasks.catalog import scan_folder_catalog

    dataset = DatasetParams.small() if args.small else DatasetParams()
    dataset = dataset.model_copy(update={"split_file": args.split_file})
    scratch = TrainParams.small() if args.small else TrainParams()
    if args.epochs is not None:
        scratch = scratch.model_copy(update={"epochs": args.epochs})
    warm = scratch.model_copy(update={"epochs": args.warm_epochs or max(1, scratch.epochs // 3)})
    with open(args.split_file) as f:
        train_files = [r["path"] for r in csv.DictReader(f) if r["split"] == "train"]
    dropped = {Path(f).with_suffix("").as_posix() for f in random.Random(0).sample(
        train_files, round(len(train_files) * (1 - args.fraction)))}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        store_url = args.store or str(Path(tmp) / "store")
        first = Path(tmp) / "first"
        for f in sorted(args.catalog.glob("*/*")):
            if f"{f.parent.name}/{f.stem}" not in dropped:
                (first / f.parent.name).mkdir(parents=True, exist_ok=True)
                (first / f.parent.name / f.name).symlink_to(f.resolve())
        print(f"champion: {len(train_files) - len(dropped)} of {len(train_files)} training tracks", flush=True)
        t0 = time.perf_counter()
        old = pipeline(str(first), storage_url=store_url, dataset=dataset, training=scratch)
        print(f"  track accuracy {track_acc(old['report']):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

        build_dataset(scan_folder_catalog(str(args.catalog), store_url), dataset, store_url)  # timed by neither
        t0 = time.perf_counter()
        fine = nightly_retrain(catalog_dir=str(args.catalog), storage_url=store_url, dataset=dataset, training=warm,
                               warm_start=True)  # fmt: skip
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = pipeline(str(args.catalog), storage_url=store_url, dataset=dataset, training=scratch)
        scratch_s = time.perf_counter() - t0
        from genreclf.store.storage import Store

        fine_report = Store.open(store_url).read_json(report_key(fine["run_id"]))
    print(f"grown catalog: all {len(train_files)} training tracks; same test tracks")
    print(f"{'':<28} {'track acc':>9} {'top-3':>6} {'flow time':>10}")
    for name, report, seconds in (
        (f"warm start ({warm.epochs} epochs)", fine_report, warm_s),
        (f"from scratch ({scratch.epochs} epochs)", new["report"], scratch_s),
    ):
        trk = report["models"][report["model"]]["track"]
        print(f"{name:<28} {trk['accuracy']:>9.3f} {trk['top3_accuracy']:>6.3f} {seconds:>9.0f} s")
    print(f"warm start / scratch time: {warm_s / scratch_s:.2f} (each: train and evaluate, baselines included, on "
          "the grown dataset built beforehand)")  # fmt: skip


def track_acc(report: dict) -> float:
    return float(report["models"][report["model"]]["track"]["accuracy"])


if __name__ == "__main__":
    main()
