"""Training throughput (segments/s) of the real training path, against the naive path, in one run.

    python benchmarks/train.py [--model resnet18] [--segments 512] [--steps 30] [--batch 32] [--workers 4] [--repeats 3]

Builds a synthetic dataset of 30 s log-mel segments (128 mels x 1292 frames, float16 shards in a temporary local
store), then trains for a fixed number of steps on 3 s random crops streamed from the shards, as `fit` does:
  naive: fp32, NCHW, no loader workers, no pinned memory
  ours:  genreclf's defaults on this device (bf16 autocast and channels-last on CUDA, loader workers, pinned memory)
On a CPU both are the same configuration (those settings are CUDA-only), and the script says so instead of
printing a speed-up.
Needs only torch, torchvision, numpy and pyarrow (runs on a bare GPU image).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import StreamingSegments
from genreclf.datasets.manifest import Manifest, write_manifest
from genreclf.datasets.shards import SegmentRows, write_shard
from genreclf.models.inference import pick_device
from genreclf.models.runs import TrainConfig
from genreclf.models.training import fit
from genreclf.store.storage import Store


def synthetic_dataset(store: Store, *, segments: int, classes: int = 10, seed: int = 0) -> Manifest:
    feat, seg = FeatureConfig(), SegmentConfig()
    frames = feat.frames(round(seg.window_s * seg.sample_rate))
    rng = np.random.default_rng(seed)
    entries = []
    per_shard = 256
    for s, start in enumerate(range(0, segments, per_shard)):
        rows = SegmentRows()
        for i in range(start, min(start + per_shard, segments)):
            c = i % classes
            mel = rng.normal(0, 1, (feat.n_mels, frames)).astype(np.float16)
            mel[c * 12 : c * 12 + 12] += 2
            split = "val" if i % 10 == 0 else "train"
            rows.segment_id.append(f"s{i}")
            rows.track_id.append(f"t{i // 4}")
            rows.artist_id.append(None)
            rows.genre.append(f"g{c}")
            rows.label.append(c)
            rows.split.append(split)
            rows.offset_s.append(0.0)
            rows.mel.append(mel)
        key = f"datasets/bench/shards/part-{s:05d}.parquet"
        entries.append(write_shard(store, key, rows, feature_hash=feat.hash))
    manifest = Manifest(
        dataset_id="bench", catalog_version="synthetic", feature_config=dataclasses.asdict(feat),
        feature_hash=feat.hash, segment_config=dataclasses.asdict(seg), labels=[f"g{c}" for c in range(classes)],
        split_seed=0, shards=entries,
    )  # fmt: skip
    write_manifest(store, manifest)
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--segments", type=int, default=512)
    p.add_argument("--steps", type=int, default=30, help="training steps per measured run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--repeats", type=int, default=3, help="interleaved measured runs of each path")
    p.add_argument("--device", default=None)
    args = p.parse_args()

    device = pick_device(args.device)
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} torch threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        manifest = synthetic_dataset(store, segments=args.segments)
        groups = len(StreamingSegments(store, manifest, "train").units)  # loader workers beyond this idle
        train = manifest.rows("train")
        print(f"dataset: {train} training segments of {manifest.mel_shape} in {groups} row groups, 3 s crops")
        base = TrainConfig(
            model=args.model, epochs=1, batch_size=args.batch, max_steps_per_epoch=args.steps, device=str(device),
            patience=10,
        )  # fmt: skip
        runs = {
            "naive": dataclasses.replace(base, amp=False, channels_last=False, num_workers=0),
            "ours": dataclasses.replace(base, num_workers=args.workers if device.type == "cuda" else 0),
        }
        # Warm-up (cuDNN autotuning, allocator) so neither measured run pays it.
        fit(store, manifest, dataclasses.replace(base, max_steps_per_epoch=3), run_id="warmup")
        rates: dict[str, list[float]] = {label: [] for label in runs}
        for r in range(args.repeats):  # interleaved, so drift on a shared machine hits both paths alike
            for label, cfg in runs.items():
                result = fit(store, manifest, cfg, run_id=f"{label}-{r}")
                rates[label].append(result.segments_per_s)
                rate = result.segments_per_s
                print(f"{label:>6} #{r + 1}: {rate:8.1f} segments/s ({args.steps} steps of {args.batch})")
    best = {label: max(v) for label, v in rates.items()}
    median = {label: statistics.median(v) for label, v in rates.items()}
    for label in runs:
        print(f"{label:>6}: best {best[label]:8.1f}, median {median[label]:8.1f} segments/s over {args.repeats} runs")
    if device.type == "cuda":
        print(
            f"speed-up ours/naive: best {best['ours'] / best['naive']:.2f}x, "
            f"median {median['ours'] / median['naive']:.2f}x"
        )
    else:  # AMP, channels-last and loader workers apply on CUDA only: on a CPU the two runs train identically
        print(
            f"on {device.type} the two paths are the same (genreclf's GPU settings do not apply); their ratio, "
            f"{median['ours'] / median['naive']:.2f}x (median), is run-to-run noise, not a speed-up"
        )


if __name__ == "__main__":
    main()
