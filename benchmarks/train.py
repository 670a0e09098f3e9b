"""Training throughput of genreclf's path against a plain PyTorch loop, interleaved and repeated, in one run;
then the `train` flow against the bare loop on the same data.

    python benchmarks/train.py [--model resnet18] [--segments 512] [--steps 30] [--batch N] [--workers 4]
                               [--repeats 3] [--no-flow]

Builds a synthetic dataset of 30 s log-mel segments (128 mels x 1292 frames, float16 shards in a temporary local
store), then trains a fixed number of steps on 3 s random crops, each run through `fit`:
  ours:  genreclf's default training settings on this device: the splits resident on the device when they fit
         (crops, gain, SpecAugment cut in batch there), and on CUDA bf16 autocast, channels-last, fused AdamW,
         torch.compile and the batch grown to what memory and the dataset allow (`auto_batch`);
  plain: a DataLoader over the shards (`StreamingSegments`, `--workers` on a GPU), fp32, NCHW, no torch.compile,
         at the batch ours chose, so the two differ in their data path and step only;
  chunked: ours with the device's budget set to half what the splits take, so they are held a quarter at a time
         (read on a thread and copied on a stream of its own while the step trains): a catalog larger than the
         device's memory, in miniature.
`--batch N` fixes both batches at N. Printed per run: segments/s. Then:
  - FLOP/s: the model's FLOPs per training segment (forward and backward, counted by torch.utils.flop_counter on
    one batch of crops) times the rate; on a known GPU its fraction of the card's dense bf16 peak (a table below;
    no peak is claimed for a CPU);
  - data share: the time to draw the same number of batches alone (no model; on the device, synchronised) over
    the run's training time: what the step waits for at most, measured apart, not inside the step;
  - peak GPU memory of the run;
  - on CUDA, where one more run of ours synchronises with the host (torch.cuda.set_sync_debug_mode, one warning a
    sync): a place inside the step would show once a step;
  - a partial path, reading the training split into memory (what the resident path does once a run, and the chunked
    one for every chunk), MB/s: its row groups by `READERS` threads into one tensor, by one thread, and the
    previous way (`load_split`: shard after shard, then concatenated), interleaved, after a warm-up.
Last, when Prefect is installed (not on a bare GPU image), the `train` flow and `fit` with the same config on the
same dataset, interleaved, after a warm-up that pays the temporary server's start: wall ratio flow / bare.
Needs only torch, torchvision, numpy and pyarrow for the first part.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genreclf.acquisition.audio import SegmentConfig
from genreclf.datasets import resident
from genreclf.datasets.features import FeatureConfig
from genreclf.datasets.loader import StreamingSegments, load_split
from genreclf.datasets.manifest import Manifest, write_manifest
from genreclf.datasets.resident import ChunkedSplit, ResidentSplit, split_bytes
from genreclf.datasets.shards import SegmentRows, write_shard
from genreclf.models import create_model, run_data
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


# Dense bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets; matched on the CUDA device's name.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_flops(device: torch.device) -> tuple[str, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next(((card, peak) for card, peak in PEAK_BF16.items() if card in name), None)


def flops_per_segment(model_name: str, shape: tuple[int, ...], device: torch.device) -> float:
    """Forward and backward FLOPs of one training crop, counted on one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(model_name, num_classes=10).to(device)
    x = torch.randn(*shape, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / shape[0]


@contextlib.contextmanager
def held_in_chunks(manifest: Manifest, label: str) -> Iterator[None]:
    """For the "chunked" run: a device budget of half what the splits take, so they are held in chunks of a quarter
    of it (a catalog larger than the device's memory, in miniature)."""
    if label != "chunked":
        yield
        return
    budget = run_data.budget_bytes
    run_data.budget_bytes = lambda device: chunked_budget(manifest)
    try:
        yield
    finally:
        run_data.budget_bytes = budget


def chunked_budget(manifest: Manifest) -> int:
    """The "chunked" run's device budget: half what its splits take (so chunks of a quarter)."""
    return (split_bytes(manifest, "train") + split_bytes(manifest, "val")) // 2


def data_seconds(store: Store, manifest: Manifest, cfg: TrainConfig, device: torch.device, path: str) -> float:
    """Seconds to draw `cfg.max_steps_per_epoch` batches of crops alone, as the run's path draws them."""
    crop = base_crop(manifest, cfg)
    steps = cfg.max_steps_per_epoch or 1
    if path in ("ours", "chunked"):
        split = (ResidentSplit.load(store, manifest, "train", device) if path == "ours"
                 else ChunkedSplit.open(store, manifest, "train", device, chunked_budget(manifest) // 2))  # fmt: skip
        gen = torch.Generator(device=device).manual_seed(0)
        batches = split.crop_batches(batch_size=cfg.batch_size, crop=crop, crops_per_segment=cfg.crops_per_segment,
                                     generator=gen, drop_last=True)  # fmt: skip
    else:
        ds = StreamingSegments(store, manifest, "train", crop_frames=crop, crops_per_segment=cfg.crops_per_segment,
                               shuffle_buffer=cfg.shuffle_buffer)  # fmt: skip
        batches = iter(DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                  pin_memory=device.type == "cuda", drop_last=True))  # fmt: skip
    t0 = time.perf_counter()
    for _, (x, _y) in zip(range(steps), batches, strict=False):
        x.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--segments", type=int, default=512)
    p.add_argument("--steps", type=int, default=30, help="training steps per measured run")
    p.add_argument("--batch", type=int, default=None, help="both paths' batch (default: ours chooses, see above)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="the plain loop's, on a GPU")
    p.add_argument("--repeats", type=int, default=3, help="interleaved measured runs of each path")
    p.add_argument("--device", default=None)
    p.add_argument("--no-flow", action="store_true", help="skip the train flow's comparison")
    args = p.parse_args()

    device = pick_device(args.device)
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} torch threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        manifest = synthetic_dataset(store, segments=args.segments)
        train = manifest.rows("train")
        base = TrainConfig(model=args.model, epochs=1, max_steps_per_epoch=args.steps, device=str(device), patience=10)
        if args.batch is not None:
            base = dataclasses.replace(base, batch_size=args.batch, auto_batch=False)
        # warm-up (cuDNN autotuning, the allocator, compiling), which also says the batch ours trains with
        batch = fit(store, manifest, dataclasses.replace(base, max_steps_per_epoch=3), run_id="warmup-ours").batch_size
        plain = dataclasses.replace(base, batch_size=batch, auto_batch=False, amp=False, channels_last=False,
                                    compile=False, resident=False,
                                    num_workers=args.workers if device.type == "cuda" else 0)  # fmt: skip
        fit(store, manifest, dataclasses.replace(plain, max_steps_per_epoch=3), run_id="warmup-plain")
        runs = {"plain": plain, "ours": base, "chunked": base}
        print(f"dataset: {train} training segments of {manifest.mel_shape}, 3 s crops, batches of {batch}")
        rates: dict[str, list[float]] = {label: [] for label in runs}
        peak_mem: dict[str, float] = {}
        for r in range(args.repeats):  # interleaved, so drift on a shared machine hits both paths alike
            for label, cfg in runs.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with held_in_chunks(manifest, label):
                    result = fit(store, manifest, cfg, run_id=f"{label}-{r}")
                if device.type == "cuda":
                    peak_mem[label] = max(peak_mem.get(label, 0.0), torch.cuda.max_memory_allocated(device) / 1e9)
                rates[label].append(result.segments_per_s)
                print(f"{label:>7} #{r + 1}: {result.segments_per_s:8.1f} segments/s ({args.steps} steps)")
        report(args, store, manifest, runs, rates, peak_mem, device, batch)
        host_syncs(store, manifest, base, device)
        read_rates(store, manifest, args.repeats)
        if not args.no_flow:
            flow_against_bare(store, manifest, base)


def report(
    args: argparse.Namespace, store: Store, manifest: Manifest, runs: dict[str, TrainConfig],
    rates: dict[str, list[float]], peak_mem: dict[str, float], device: torch.device, batch: int,
) -> None:  # fmt: skip
    median = {label: statistics.median(v) for label, v in rates.items()}
    crop = base_crop(manifest, runs["ours"])
    flops = flops_per_segment(args.model, (batch, 1, manifest.mel_shape[0], crop), device)
    peak = peak_flops(device)
    print(f"model: {flops / 1e9:.2f} GFLOP per training crop (forward + backward, torch.utils.flop_counter)")
    for label, cfg in runs.items():
        achieved = median[label] * flops
        share = f", {achieved / peak[1]:.1%} of the {peak[0]}'s dense bf16 peak" if peak else ""
        cfg = dataclasses.replace(cfg, batch_size=batch)
        wait = data_seconds(store, manifest, cfg, device, label)
        train_s = args.steps * batch / median[label]
        memory = f", peak GPU memory {peak_mem[label]:.1f} GB" if label in peak_mem else ""
        print(f"{label:>7}: median {median[label]:8.1f} segments/s over {args.repeats} runs, "
              f"{achieved / 1e12:.2f} TFLOP/s{share}; drawing its batches alone takes {wait / train_s:.1%} of its "
              f"training time{memory}")  # fmt: skip
    print(f"ours / plain: {median['ours'] / median['plain']:.2f}x; chunked / ours: "
          f"{median['chunked'] / median['ours']:.2f}x (medians)")  # fmt: skip


def host_syncs(store: Store, manifest: Manifest, cfg: TrainConfig, device: torch.device) -> None:
    """Where one run of `cfg` synchronises with the host, by source line (CUDA's sync debug mode warns at each)."""
    if device.type != "cuda":
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fit(store, manifest, cfg, run_id="host-syncs")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    places = ", ".join(f"{site} x{n}" for site, n in sites.most_common(10))
    print(f"host syncs in one run of {cfg.max_steps_per_epoch} steps and its validation: {sum(sites.values())}"
          f"{': ' + places if places else ''}")  # fmt: skip


def read_rates(store: Store, manifest: Manifest, repeats: int) -> None:
    """MB/s reading the training split into host memory three ways, interleaved, after one warm-up of each."""
    units = resident.split_units(manifest, "train")
    assert units is not None
    readers = resident.READERS

    def parallel(n: int) -> float:
        resident.READERS = n
        try:
            mel, _ = resident.read_units(store, manifest, units, pinned=False)
        finally:
            resident.READERS = readers
        return mel.numel() * mel.element_size()

    ways = {f"{readers} readers": lambda: parallel(readers), "1 reader": lambda: parallel(1),
            "load_split": lambda: float(load_split(store, manifest, "train").mel.nbytes)}  # fmt: skip
    rates: dict[str, list[float]] = {way: [] for way in ways}
    for r in range(repeats + 1):
        for way, read in ways.items():
            t0 = time.perf_counter()
            size = read()
            if r:
                rates[way].append(size / 1e6 / (time.perf_counter() - t0))
    print("reading the training split into memory (a partial path), medians of "
          f"{repeats}: " + ", ".join(f"{way} {statistics.median(v):.0f} MB/s" for way, v in rates.items()))  # fmt: skip


def base_crop(manifest: Manifest, cfg: TrainConfig) -> int:
    fc = manifest.feature_config
    return cfg.crop_frames(sample_rate=fc["sample_rate"], hop_length=fc["hop_length"])


def flow_against_bare(store: Store, manifest: Manifest, cfg: TrainConfig, repeats: int = 2) -> None:
    """The `train` flow's wall against `fit`'s, the same config on the same dataset (each a new run)."""
    try:
        from genreclf.flows.params import TrainParams
        from genreclf.flows.train import train as train_flow
    except ImportError:
        print("train flow: Prefect is not installed here; not measured")
        return
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    params = TrainParams(**dataclasses.asdict(cfg))
    train_flow(manifest.dataset_id, params, store.url, run_id="flow-warmup")  # the temporary server starts here
    walls: dict[str, list[float]] = {"flow": [], "bare": []}
    for r in range(repeats):
        for label in walls:
            t0 = time.perf_counter()
            if label == "flow":
                train_flow(manifest.dataset_id, params, store.url, run_id=f"flow-{r}")
            else:
                fit(store, manifest, cfg, run_id=f"bare-{r}")
            walls[label].append(time.perf_counter() - t0)
    flow, bare = statistics.median(walls["flow"]), statistics.median(walls["bare"])
    print(f"train flow {flow:.1f} s against the bare loop {bare:.1f} s (medians of {repeats}): {flow / bare:.2f}x")


if __name__ == "__main__":
    main()
