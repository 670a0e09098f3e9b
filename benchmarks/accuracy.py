"""Track-level test accuracy of ResNet-18, kNN and the MLP on a folder of real music, over seeds, in one run.

    python benchmarks/accuracy.py DIR [--split-file FILE] [--seeds N] [--store DIR] [--epochs N] [--small]
                                      [--model NAME] [--set FIELD=VALUE ...]

DIR is a folder catalog laid out DIR/<genre>/<file> (the GTZAN layout). The whole pipeline runs through the Prefect
flows (Prefect's ephemeral server) once per seed, in one store: the first seed decodes, cuts 30 s windows (3 s with
--small), writes log-mel shards and splits (grouped by artist, or the given split file); every seed trains and
evaluates (the seed sets the model's initialisation, its crops and the MLP's). The first seed's time is the
end-to-end figure (`genreclf run`); the others reuse the dataset. Prints each seed's table, then mean and spread,
per-genre F1 and the confusion matrix summed over seeds. `--set` overrides a training field (e.g. --set
mixup_alpha=0.2) to compare settings on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("catalog", help="folder laid out DIR/<genre>/<audio file>")
    p.add_argument("--split-file", help="predefined split (e.g. GTZAN's artist-filtered split)")
    p.add_argument("--store", help="storage root (default: a temporary directory)")
    p.add_argument("--seeds", type=int, default=1, help="train and evaluate with seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--model", help="resnet18 (default), small_cnn, musicnn-msd or musicnn-mtt (a frozen head)")
    p.add_argument("--small", action="store_true", help="3 s windows, 64 mels, a CPU-sized run")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a training field (JSON value)")
    args = p.parse_args()

    from genreclf.flows.params import DatasetParams, TrainParams
    from genreclf.flows.pipeline import pipeline

    dataset = DatasetParams.small() if args.small else DatasetParams()
    if args.split_file:
        dataset = dataset.model_copy(update={"split_file": args.split_file})
    training = TrainParams.small() if args.small else TrainParams()
    updates = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.epochs:
        updates["epochs"] = args.epochs
    if args.model:
        updates["model"] = args.model
    training = training.model_copy(update=updates)
    print(f"training: {training.config()}", flush=True)
    reports, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            out = pipeline(args.catalog, storage_url=args.store or tmp, dataset=dataset,
                           training=training.model_copy(update={"seed": seed}))  # fmt: skip
            seconds.append(time.perf_counter() - t0)
            reports.append(out["report"])
            print_seed(seed, out["report"], seconds[-1], first=seed == 0)
    if out["quarantine"]:
        print(f"{len(out['quarantine'])} files quarantined, e.g. {out['quarantine'][0]['reason']}")
    if args.seeds > 1:
        print_summary(reports)


def print_seed(seed: int, report: dict, seconds: float, *, first: bool) -> None:
    trk = report["models"][report["model"]]["track"]
    what = "the whole run (decode, features, train, evaluate)" if first else "train and evaluate (dataset reused)"
    print(f"\nseed {seed}: {len(report['labels'])} genres, {trk['n']} test tracks; {what}: {seconds:.0f} s")
    print(f"{'model':<14} {'segment acc':>12} {'track acc':>10} {'track top-3':>12}")
    for name, rep in report["models"].items():
        seg, trk = rep["segment"], rep["track"]
        print(f"{name:<14} {seg['accuracy']:>12.3f} {trk['accuracy']:>10.3f} {trk['top3_accuracy']:>12.3f}")
    print(flush=True)


def print_summary(reports: list[dict]) -> None:
    n = len(reports)
    print(f"\nover {n} seeds (track accuracy on test: mean, standard deviation, each seed)")
    for name in reports[0]["models"]:
        accs = [r["models"][name]["track"]["accuracy"] for r in reports]
        top3 = statistics.mean(r["models"][name]["track"]["top3_accuracy"] for r in reports)
        each = " ".join(f"{a:.3f}" for a in accs)
        print(f"{name:<14} {statistics.mean(accs):.3f} +- {statistics.stdev(accs):.3f}  ({each}); top-3 {top3:.3f}")
    main = reports[0]["model"]
    labels = reports[0]["labels"]
    print(f"\nper genre ({main}, per track, mean over seeds): F1, recall, test tracks")
    for g in labels:
        ms = [r["models"][main]["track"]["per_genre"][g] for r in reports]
        f1, rec = statistics.mean(m["f1"] for m in ms), statistics.mean(m["recall"] for m in ms)
        print(f"  {g:<12} {f1:.3f}  {rec:.3f}  {ms[0]['support']}")
    print(f"\nconfusion ({main}, per track, summed over {n} seeds; rows true, columns predicted)")
    short = [g[:5] for g in labels]
    print(" " * 12 + " ".join(f"{s:>5}" for s in short))
    for i, g in enumerate(labels):
        row = [sum(r["models"][main]["track"]["confusion"][i][j] for r in reports) for j in range(len(labels))]
        print(f"  {g:<10}" + " ".join(f"{v:>5}" for v in row))


if __name__ == "__main__":
    main()
