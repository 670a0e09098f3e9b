"""Track-level test accuracy of ResNet-18, kNN (k=55) and the MLP on a folder of real music, in one run.

    python benchmarks/accuracy.py DIR [--split-file FILE] [--store DIR] [--epochs N] [--small]

DIR is a folder catalog laid out DIR/<genre>/<file> (the GTZAN layout). The whole pipeline runs through the Prefect
flows (Prefect's ephemeral server): decode, 30 s windows (3 s with --small), log-mel shards, splits grouped by
artist (each file is its own group in a folder catalog) or the given split file, training, evaluation.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="folder laid out DIR/<genre>/<audio file>")
    p.add_argument("--split-file", help="predefined split (e.g. GTZAN's artist-filtered split)")
    p.add_argument("--store", help="storage root (default: a temporary directory)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--small", action="store_true", help="3 s windows, 64 mels, a CPU-sized run")
    args = p.parse_args()

    from flows.params import DatasetParams, TrainParams
    from flows.pipeline import pipeline

    dataset = DatasetParams.small() if args.small else DatasetParams()
    if args.split_file:
        dataset = dataset.model_copy(update={"split_file": args.split_file})
    training = TrainParams.small() if args.small else TrainParams()
    if args.epochs:
        training = training.model_copy(update={"epochs": args.epochs})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = pipeline(args.catalog, storage_url=args.store or tmp, dataset=dataset, training=training)
        seconds = time.perf_counter() - t0
    report = out["report"]
    trk = report["models"][report["model"]]["track"]
    print(f"catalog {args.catalog}: {len(report['labels'])} genres, {trk['n']} test tracks; {seconds:.0f} s")
    print(f"{'model':<10} {'segment acc':>12} {'track acc':>10} {'track top-3':>12}")
    for name, rep in report["models"].items():
        seg, trk = rep["segment"], rep["track"]
        print(f"{name:<10} {seg['accuracy']:>12.3f} {trk['accuracy']:>10.3f} {trk['top3_accuracy']:>12.3f}")
    if out["quarantine"]:
        print(f"{len(out['quarantine'])} files quarantined, e.g. {out['quarantine'][0]['reason']}")


if __name__ == "__main__":
    main()
