"""How well the label audit finds what is wrong in real music: GTZAN's known faults, and faults planted on purpose.

    .venv/bin/python benchmarks/audit.py [--data ../shared/data] [--work DIR] [--flips 10] [--copies 5] [--seed 0]
                                         [--model musicnn-msd]

1. Known faults. ../shared/data/gtzan-sample holds 209 GTZAN clips; the 18 that its fault-filtered split CSV does
   not list are ones the published filter drops (repeated, mislabelled or distorted clips). The sample is built
   into a dataset (default settings: 30 s windows, 128 mels; musicnn's 96 mels at 16 kHz with --model musicnn-msd,
   when the out-of-fold model reads the network's embeddings) and audited; printed: how many of the 18 the audit
   ranks in its top 10 % and top 20 %, what a random ranking gets on average (and the chance that it does at
   least as well), and the five top-ranked clips with their reasons.
2. Planted faults. A copy of the sample (links to the clips, under --work) gets FLIPS clips moved to another
   genre's folder and COPIES clips added again, re-encoded (mp3, 96 kbit/s), trimmed (2-6 s at the start) and at
   another loudness (+-4 dB), in their own genre. Printed: recall of the flips and of the copies in the top 10 %.
   Flips and copies are drawn from clips the fault filter keeps, so planted and known faults do not mix.
Each audit runs afresh (no stored audit is reused) and prints its time per stage. Nothing here trains a model.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genreclf.datasets.build import build_dataset
from genreclf.datasets.manifest import Manifest
from genreclf.flows.params import DatasetParams
from genreclf.ingest import catalog
from genreclf.labels.audit import AuditReport, audit_dataset
from genreclf.sources.local import scan_folder
from genreclf.store.storage import Store


def build(root: Path, store_url: str, model: str) -> Manifest:
    """What build-dataset does for a folder catalog with the default settings (the features `model` is fed),
    without Prefect."""
    store = Store.open(store_url)
    scan = scan_folder(root, hash_cache=False)
    version = catalog.write_catalog(store, scan.tracks, skipped=scan.skipped)
    params = DatasetParams().for_model(model)
    return build_dataset(store, version, params.segment_config(), params.feature_config(),
                         shard_mb=params.shard_mb).manifest  # fmt: skip


def audit(root: Path, store_url: str, label: str, model: str) -> AuditReport:
    t0 = time.perf_counter()
    manifest = build(root, store_url, model)
    built = time.perf_counter() - t0
    report, _ = audit_dataset(Store.open(store_url), manifest, reuse=False)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(f"{label}: {report.counts['tracks']} tracks; dataset build {built:.0f} s (not part of the audit); "
          f"audit {stages}")  # fmt: skip
    print(
        f"  found: {report.counts['mislabelled']} likely mislabelled, {report.counts['near-duplicate']} "
        f"near-duplicates, {report.counts['outlier']} outliers; out-of-fold accuracy {report.oof_accuracy:.3f}"
    )
    return report


def rel(name: str) -> str:
    """genre/genre.00012 from a folder catalog's relative path, whatever the extension."""
    return name.rsplit(".", 1)[0]


def chance_at_least(hits: int, *, population: int, marked: int, drawn: int) -> float:
    """P(a random ranking puts >= hits of the `marked` items in its first `drawn`): the hypergeometric tail."""
    ways = sum(math.comb(marked, k) * math.comb(population - marked, drawn - k) for k in range(hits, marked + 1))
    return ways / math.comb(population, drawn)


def known_faults(data: Path, work: Path, model: str) -> tuple[set[str], set[str]]:
    report = audit(data / "gtzan-sample", str(work / "store-sample"), "gtzan-sample", model)
    with open(data / "gtzan-sample-split.csv") as f:
        kept = {rel(r["path"]) for r in csv.DictReader(f)}
    ranked = [rel(r["name"]) for r in report.rows]
    faults = {n for n in ranked if n not in kept}
    n = len(ranked)
    print(f"\nknown faults: {len(faults)} of {n} clips are ones the fault filter drops")
    print(f"  {'top':>5} {'clips':>6} {'faults found':>13} {'random (mean)':>14} {'P(random >= found)':>19}")
    for share in (0.10, 0.20):
        k = round(share * n)
        hits = sum(name in faults for name in ranked[:k])
        p = chance_at_least(hits, population=n, marked=len(faults), drawn=k)
        print(f"  {share:>5.0%} {k:>6} {hits:>13} {len(faults) * k / n:>14.1f} {p:>19.3f}")
    name_of = {r["track_id"]: rel(r["name"]) for r in report.rows}
    dropped = {rel(r["name"]) for r in report.rows if r["action"] == "drop"}
    for pair in report.pairs:
        a, b = name_of[pair["a"]], name_of[pair["b"]]
        print(f"  near-duplicates {a} + {b} (similarity {pair['similarity']:.2f}): the filter drops "
              f"{' and '.join(n for n in (a, b) if n in faults) or 'neither'}, the audit drops "
              f"{' and '.join(n for n in (a, b) if n in dropped)}")  # fmt: skip
    print("  the five top-ranked clips:")
    for r in report.rows[:5]:
        tag = "fault" if rel(r["name"]) in faults else "kept "
        print(f"    {r['rank']:>2}. [{tag}] {r['name']:<28} given {r['given']:<9} quality {r['quality']:.3f}  "
              f"{r['reason']}")  # fmt: skip
    return faults, kept


def ffmpeg_copy(src: Path, dst: Path, *, trim_s: float, gain_db: float) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{trim_s}", "-i", str(src),
         "-af", f"volume={gain_db}dB", "-c:a", "libmp3lame", "-b:a", "96k", str(dst)],
        check=True,
    )  # fmt: skip


def planted(data: Path, work: Path, kept: set[str], *, flips: int, copies: int, seed: int, model: str) -> None:
    src = data / "gtzan-sample"
    root = work / "planted"
    shutil.rmtree(root, ignore_errors=True)
    clips = sorted(p for p in src.glob("*/*") if p.is_file())
    for p in clips:
        (root / p.parent.name).mkdir(parents=True, exist_ok=True)
        (root / p.parent.name / p.name).symlink_to(p.resolve())
    rng = np.random.default_rng(seed)
    genres = sorted(d.name for d in src.iterdir() if d.is_dir())
    candidates = [p for p in clips if f"{p.parent.name}/{p.stem}" in kept]
    chosen = rng.choice(len(candidates), flips + copies, replace=False)
    flipped: dict[str, str] = {}
    for i in chosen[:flips]:
        p = candidates[i]
        to = rng.choice([g for g in genres if g != p.parent.name])
        (root / p.parent.name / p.name).rename(root / to / p.name)
        flipped[f"{to}/{p.name}"] = p.parent.name
    copied: dict[str, str] = {}
    for i in chosen[flips:]:
        p = candidates[i]
        name = f"{p.parent.name}/{p.stem}-copy.mp3"
        ffmpeg_copy(p, root / name, trim_s=float(rng.uniform(2, 6)), gain_db=float(rng.choice([-4.0, 4.0])))
        copied[name] = f"{p.parent.name}/{p.name}"
    print(f"\nplanted: {flips} label flips and {copies} re-encoded, trimmed, louder or quieter copies (seed {seed})")
    report = audit(root, str(work / "store-planted"), "planted sample", model)
    k = round(0.10 * len(report.rows))
    top = {r["name"]: r for r in report.rows[:k]}
    found_flips = [n for n in flipped if n in top]
    name_of = {r["track_id"]: r["name"] for r in report.rows}

    def caught(copy: str, original: str) -> bool:
        """The copy, or its original, in the top 10 %, named as a near-duplicate of the other."""
        pair = {copy, original}
        return any(top[n]["issue"] == "near-duplicate" and name_of.get(top[n]["duplicate_of"] or "") in pair
                   for n in pair if n in top)  # fmt: skip

    found_copies = [c for c, orig in copied.items() if caught(c, orig)]
    print(f"  top 10 % = {k} of {len(report.rows)} tracks")
    print(
        f"  flips found:  {len(found_flips)}/{flips} (recall {len(found_flips) / max(flips, 1):.2f}); of those, "
        f"suggested back to the true genre: {sum(top[n]['suggested'] == flipped[n] for n in found_flips)}"
    )
    print(f"  copies found: {len(found_copies)}/{copies} (recall {len(found_copies) / max(copies, 1):.2f})")
    for n in sorted(set(flipped) - set(found_flips)):
        r = next(r for r in report.rows if r["name"] == n)
        print(f"    missed flip {n} (really {flipped[n]}): rank {r['rank']}, p(given) {r['p_given']:.2f}, "
              f"suggested {r['suggested']}")  # fmt: skip
    for c in sorted(set(copied) - set(found_copies)):
        r = next(r for r in report.rows if r["name"] == c)
        print(f"    missed copy {c}: rank {r['rank']}, issue {r['issue'] or '-'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--work", type=Path, help="where stores and the planted copy go (default: a temporary folder)")
    p.add_argument("--flips", type=int, default=10)
    p.add_argument("--copies", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="resnet18", help="build the features this model is fed: with musicnn-msd (its "
                   "weights fetched) the out-of-fold model reads its embeddings, else summary features")  # fmt: skip
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        _, kept = known_faults(args.data, work, args.model)
        planted(args.data, work, kept, flips=args.flips, copies=args.copies, seed=args.seed, model=args.model)


if __name__ == "__main__":
    main()
