"""Features end to end, ours against the naive path on the same mp3s; then labelled partial paths, then reading.

    .venv/bin/python benchmarks/features.py [FOLDER] [--files 12] [--seconds 60] [--window-s 30] [--repeat 3]
        [--read-segments 1000]

Without FOLDER it writes FILES mp3s of SECONDS each with ffmpeg (a tone, a sweep and pink noise; stereo, 44.1 kHz).

End to end is mp3 in, log-mel segments on disk out:
- naive: `librosa.load(sr=22050)` + librosa melspectrogram per window + one .npy per window, on one thread;
- ours: what build-dataset does, without Prefect: `acquire_track` per file (content hash of the file, decode and
  resample, 16-bit FLAC and sidecar into a fresh store, fingerprint, window offsets), then `build_shard` (windows,
  batched torch log-mel, one float16 Parquet shard), the samples handed from one to the other in memory
  (`DecodedAudio`, as the flow's tasks do within a process, up to HANDOFF_BYTES of audio: these files fit);
- ours, audio stored as WAV: the same with GENRECLF_AUDIO_FORMAT=wav (the same samples, no FLAC encoding, about
  twice the bytes);
- ours, FLAC read back: the same, with each track's samples read back from its stored FLAC, as build-dataset does
  for a track acquired in another process (a Dask worker), by an earlier run, or beyond HANDOFF_BYTES;
- ours, single pass: decode, windows, torch log-mel, one shard, nothing else stored (build-dataset stores the
  audio first, so this is the feature path without the store, not what a dataset build costs).
Ours runs on one thread (per core) and on two (tracks acquired two at a time, then two shards built at once, as
the flow's thread task runner does), always against the one-thread naive path.
Then partial paths, each labelled and against the naive path's matching part: decode only, log-mel only, features
from stored audio, getting the audio ready. Then reading shards back with `StreamingSegments`.

Every comparison is interleaved: each round runs every variant once, in an order that rotates, after one warm-up
round that is not counted. Figures are seconds of audio (reading: segments) per wall-second, best and median over
`--repeat` rounds, with the ratio of the medians (of the best in brackets); and per CPU-second of this process
(median), which other work on the machine disturbs less. numpy, torch and numba are held to one thread each; only
the two-thread variants use a second core. Nothing printed is extrapolated: every figure is a measured run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # per core: before numpy, torch and numba start their pools

import argparse  # noqa: E402
import hashlib  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genreclf.acquisition import audio  # noqa: E402
from genreclf.acquisition.acquire import acquire_track  # noqa: E402
from genreclf.acquisition.audio import SegmentConfig  # noqa: E402
from genreclf.acquisition.handoff import HANDOFF_BYTES, DecodedAudio  # noqa: E402
from genreclf.datasets.dataset import build_shard  # noqa: E402
from genreclf.datasets.features import FeatureConfig, log_mel_batch, log_mel_librosa  # noqa: E402
from genreclf.datasets.loader import StreamingSegments  # noqa: E402
from genreclf.datasets.manifest import Manifest, write_manifest  # noqa: E402
from genreclf.datasets.shards import SegmentRows, mel_numpy, write_shard  # noqa: E402
from genreclf.store.storage import Store  # noqa: E402

AUDIO = (".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".au")


def make_audio(folder: Path, n: int, seconds: float) -> list[Path]:
    sources = [
        "sine=frequency={f}:sample_rate=44100:duration={d}",
        "aevalsrc=0.3*sin(2*PI*(100+{f}*t)*t):s=44100:d={d}",
        "anoisesrc=color=pink:amplitude=0.2:sample_rate=44100:duration={d}",
    ]
    paths = []
    for i in range(n):
        path = folder / f"track-{i:03d}.mp3"
        src = sources[i % 3].format(f=110 + 37 * i, d=seconds)
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-ac", "2", "-b:a", "192k", str(path)]
        subprocess.run(cmd, check=True)
        paths.append(path)
    return paths


# --- the paths measured -------------------------------------------------------------------------------------


def naive(paths: list[Path], out: Path, *, seg: SegmentConfig, feat: FeatureConfig) -> int:
    """mp3 -> librosa.load -> librosa melspectrogram per window -> one .npy per window."""
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    win, n = round(seg.window_s * seg.sample_rate), 0
    for p in paths:
        y, _ = librosa.load(p, sr=seg.sample_rate, mono=True)
        for j, start in enumerate(audio.segment_offsets(len(y), cfg=seg)):
            w = y[start : start + win]
            w = np.pad(w, (0, win - len(w))) if len(w) < win else w
            np.save(out / f"{p.stem}-{j:04d}.npy", log_mel_librosa(w, cfg=feat))
            n += 1
    return n


def catalog_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Rows as a folder catalog gives them (its scan hashes each file; acquisition hashes it again to check)."""
    rows = []
    for p in paths:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        rows.append({"track_id": p.stem, "audio_uri": str(p), "content_hash": digest, "genre": "g"})
    return rows


def acquire(
    rows: list[dict[str, Any]],
    store: Store,
    scratch: Path,
    *,
    seg: SegmentConfig,
    workers: int,
    handoff: DecodedAudio | None = None,
    audio_format: str = "flac",
) -> list[Any]:
    """`acquire_track` of every row, `workers` at a time -> the planned tracks for `build_shard`."""

    def one(row: dict[str, Any]) -> dict[str, Any]:
        r = acquire_track(store, row, cfg=seg, scratch_dir=scratch, handoff=handoff, audio_format=audio_format)  # type: ignore[arg-type]
        if not r.ok:
            raise SystemExit(f"{row['audio_uri']}: {r.reason}")
        return {"track_id": r.track_id, "artist_id": None, "isrc": None, "genre": "g", "split": "train",
                "offsets": r.offsets, "audio_key": r.audio_key, "audio_hash": r.audio_hash}  # fmt: skip

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, rows))


def shards(
    tracks: list[Any],
    store: Store,
    *,
    seg: SegmentConfig,
    feat: FeatureConfig,
    workers: int,
    handoff: DecodedAudio | None = None,
) -> int:
    """`build_shard` over the tracks, as `workers` shards built at once -> segments written."""
    groups = [tracks[i::workers] for i in range(workers)]

    def one(i: int) -> int:
        key = f"bench/part-{i}.parquet"
        return build_shard(store, key, groups[i], labels=["g"], seg=seg, feat=feat, handoff=handoff)["rows"]

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, range(workers)))


def ours(
    rows: list[dict[str, Any]],
    root: Path,
    *,
    seg: SegmentConfig,
    feat: FeatureConfig,
    workers: int,
    handoff: bool,
    audio_format: str = "flac",
) -> int:
    """mp3 -> `acquire_track` (FLAC + sidecar in a fresh store) -> `build_shard` (log-mel Parquet shards), the
    samples handed over in memory (`handoff`) or read back from the stored FLAC."""
    store = Store.open(str(root / "store"))
    decoded = DecodedAudio() if handoff else None
    tracks = acquire(
        rows, store, root / "scratch", seg=seg, workers=workers, handoff=decoded, audio_format=audio_format
    )
    return shards(tracks, store, seg=seg, feat=feat, workers=workers, handoff=decoded)


def single_pass(paths: list[Path], root: Path, *, seg: SegmentConfig, feat: FeatureConfig, workers: int) -> int:
    """mp3 -> `audio.decode` -> windows -> torch log-mel -> shards, `workers` shards at once; no FLAC, sidecar or
    fingerprint (build-dataset does not run this way: it stores the audio first, see `ours`)."""
    store = Store.open(str(root / "store"))

    def one(i: int) -> int:
        rows = SegmentRows()
        for p in paths[i::workers]:
            windows, offsets = audio.segment(audio.decode(p, sr=seg.sample_rate), cfg=seg)
            mel = log_mel_batch(windows, cfg=feat).astype(np.float16)  # (n, n_mels, frames)
            for j, (off, m) in enumerate(zip(offsets, mel, strict=True)):
                rows.segment_id.append(f"{p.stem}-{j:04d}")
                rows.track_id.append(p.stem)
                rows.artist_id.append(None)
                rows.genre.append("g")
                rows.label.append(0)
                rows.split.append("train")
                rows.offset_s.append(float(off))
                rows.mel.append(m)
        return write_shard(store, f"bench/single-pass-{i}.parquet", rows, feature_hash=feat.hash)["rows"]

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, range(workers)))


# --- timing -------------------------------------------------------------------------------------------------

Variant = Callable[[Path], object]


@dataclass
class Runs:
    """Wall and CPU seconds (all threads of this process) of each timed run of one variant."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def interleaved(variants: dict[str, Variant], *, repeat: int, scratch: Path) -> dict[str, Runs]:
    """Time each variant: one warm-up round (not kept), then `repeat` rounds, each variant once per round in an
    order that rotates, each run in a fresh folder (removed after, outside the timing)."""
    names = list(variants)
    runs = {n: Runs() for n in names}
    for r in range(repeat + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            folder = Path(tempfile.mkdtemp(dir=scratch))
            t0, c0 = time.perf_counter(), time.process_time()
            variants[name](folder)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            shutil.rmtree(folder)
            if r:
                runs[name].wall.append(wall)
                runs[name].cpu.append(cpu)
    return runs


def report(title: str, unit: str, amount: float, runs: dict[str, Runs], base: str) -> None:
    """Per variant: `amount` per wall-second (min, median), the ratio to `base` of the median and of the best
    wall times, and `amount` per CPU-second (median) with its ratio: the work, whatever else the machine ran."""
    n = len(runs[base].wall)
    print(f"\n{title}\n  [{unit} per wall-second, best and median of {n} interleaved runs; per CPU-second, median]")
    width = max(len(name) for name in runs)
    b = runs[base]
    for name, r in runs.items():
        wall = f"wall best {amount / min(r.wall):6.0f}  median {amount / statistics.median(r.wall):6.0f}"
        cpu = f"cpu {amount / statistics.median(r.cpu):7.0f}"
        if name == base:
            print(f"  {name:{width}s}  {wall}  {' ' * 20}  {cpu}")
            continue
        vs = f"{statistics.median(b.wall) / statistics.median(r.wall):4.2f}x ({min(b.wall) / min(r.wall):4.2f}x best)"
        cpu_vs = f"{statistics.median(b.cpu) / statistics.median(r.cpu):4.2f}x"
        print(f"  {name:{width}s}  {wall}  {vs}  {cpu} {cpu_vs}")


# --- main ---------------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", help="audio files to use (default: generate mp3s with ffmpeg)")
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--window-s", type=float, default=30.0)
    p.add_argument("--repeat", type=int, default=3, help="timed rounds after the warm-up round")
    p.add_argument("--read-segments", type=int, default=1_000, help="segments in the shards read back")
    args = p.parse_args()
    torch.set_num_threads(1)
    seg = SegmentConfig(window_s=args.window_s, hop_s=args.window_s, silence_db=-120.0)
    feat = FeatureConfig()
    with tempfile.TemporaryDirectory(prefix="genreclf-bench-") as tmp:
        run(args, Path(tmp), seg=seg, feat=feat)
    return 0


def run(args: argparse.Namespace, tmp: Path, *, seg: SegmentConfig, feat: FeatureConfig) -> None:
    import librosa

    if args.folder:
        paths = sorted(q for q in Path(args.folder).rglob("*") if q.suffix.lower() in AUDIO)[: args.files]
    else:
        paths = make_audio(tmp, args.files, args.seconds)
    if not paths:
        raise SystemExit(f"no audio files in {args.folder}")
    decoded = [audio.decode(q, sr=seg.sample_rate) for q in paths]
    seconds = sum(len(y) for y in decoded) / seg.sample_rate
    rows = catalog_rows(paths)
    n_seg = sum(len(audio.segment_offsets(len(y), cfg=seg)) for y in decoded)
    print(f"{len(paths)} files, {seconds:.0f} s of audio, {n_seg} segments; {seg.window_s:g} s windows, "
          f"{feat.n_mels} mels, n_fft {feat.n_fft}, hop {feat.hop_length}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    held = sum(y.nbytes for y in decoded)
    print(f"decoded, these files are {held / 2**20:.0f} MB: the handoff (HANDOFF_BYTES, {HANDOFF_BYTES >> 20} MB) "
          f"{'holds them all' if held <= HANDOFF_BYTES else 'holds only part of them'}")  # fmt: skip
    scratch = tmp / "runs"
    scratch.mkdir()
    rep = args.repeat

    naive_e2e = "naive: librosa.load + melspectrogram + .npy, 1 thread"
    pipeline, direct = "ours: acquire_track + build_shard", "ours, single pass: decode + log-mel + shard, no FLAC"
    read_back = "ours, FLAC read back: acquire_track + build_shard"
    as_wav = "ours, audio stored as WAV: acquire_track + build_shard"
    runs = interleaved(
        {
            naive_e2e: lambda d: naive(paths, d, seg=seg, feat=feat),
            f"{pipeline}, 1 thread": lambda d: ours(rows, d, seg=seg, feat=feat, workers=1, handoff=True),
            f"{pipeline}, 2 threads": lambda d: ours(rows, d, seg=seg, feat=feat, workers=2, handoff=True),
            f"{as_wav}, 1 thread": lambda d: ours(
                rows, d, seg=seg, feat=feat, workers=1, handoff=True, audio_format="wav"
            ),
            f"{as_wav}, 2 threads": lambda d: ours(
                rows, d, seg=seg, feat=feat, workers=2, handoff=True, audio_format="wav"
            ),
            f"{read_back}, 1 thread": lambda d: ours(rows, d, seg=seg, feat=feat, workers=1, handoff=False),
            f"{read_back}, 2 threads": lambda d: ours(rows, d, seg=seg, feat=feat, workers=2, handoff=False),
            f"{direct}, 1 thread": lambda d: single_pass(paths, d, seg=seg, feat=feat, workers=1),
            f"{direct}, 2 threads": lambda d: single_pass(paths, d, seg=seg, feat=feat, workers=2),
        },
        repeat=rep,
        scratch=scratch,
    )
    report("END TO END  mp3 -> decode -> segment -> log-mel -> segments on disk", "s of audio", seconds, runs,
           naive_e2e)  # fmt: skip

    # --- partial paths: each a part of the above, against the naive path's same part -------------------------
    win = round(seg.window_s * seg.sample_rate)
    windows = [w for y in decoded for w in audio.segment(y, cfg=seg)[0]]
    store = Store.open(str(tmp / "store"))
    tracks = acquire(rows, store, tmp / "scratch", seg=seg, workers=1)
    naive_dec = "naive: librosa.load"
    runs = interleaved(
        {
            naive_dec: lambda d: [librosa.load(q, sr=seg.sample_rate) for q in paths],
            "ours: audio.decode (libsndfile + soxr)": lambda d: [audio.decode(q, sr=seg.sample_rate) for q in paths],
        },
        repeat=rep,
        scratch=scratch,
    )
    report("partial: decode + resample only (mp3 -> mono float32 at 22,050 Hz)", "s of audio", seconds, runs,
           naive_dec)  # fmt: skip
    naive_mel = "naive: librosa melspectrogram per window"
    runs = interleaved(
        {
            naive_mel: lambda d: [log_mel_librosa(w, cfg=feat) for w in windows],
            "ours: torch log_mel_batch": lambda d: log_mel_batch(np.stack(windows), cfg=feat),
        },
        repeat=rep,
        scratch=scratch,
    )
    report("partial: log-mel only (windows in memory)", "s of audio", len(windows) * win / seg.sample_rate, runs,
           naive_mel)  # fmt: skip
    naive_feat = "naive: melspectrogram + .npy per window"
    # What acquisition hands over: the samples its FLACs hold (putting them back costs microseconds).
    stored = {t["audio_hash"]: audio.read_stored(store.read_bytes(t["audio_key"]))[0] for t in tracks}

    def handed_over() -> DecodedAudio:
        decoded = DecodedAudio()
        for h, y in stored.items():
            decoded.put(h, seg.sample_rate, y)
        return decoded

    runs = interleaved(
        {
            naive_feat: lambda d: [
                np.save(d / f"{i}.npy", log_mel_librosa(w, cfg=feat)) for i, w in enumerate(windows)
            ],
            "ours: build_shard, samples handed over -> shard": lambda d: build_shard(
                store, f"bench/{d.name}.parquet", tracks, labels=["g"], seg=seg, feat=feat, handoff=handed_over()
            ),
            "ours: build_shard, FLAC in the store -> shard": lambda d: build_shard(
                store, f"bench/{d.name}.parquet", tracks, labels=["g"], seg=seg, feat=feat
            ),
        },
        repeat=rep,
        scratch=scratch,
    )
    report("partial: features only (naive from decoded audio in memory; ours from the handoff or the stored FLAC)",
           "s of audio", seconds, runs, naive_feat)  # fmt: skip
    runs = interleaved(
        {
            naive_dec: lambda d: [librosa.load(q, sr=seg.sample_rate) for q in paths],
            "ours: acquire_track (decode, 16-bit FLAC + sidecar stored, fingerprint, offsets)": lambda d: acquire(
                rows, Store.open(str(d / "store")), d / "scratch", seg=seg, workers=1
            ),
        },
        repeat=rep,
        scratch=scratch,
    )
    report("partial: getting the audio ready (naive: librosa.load; ours: acquisition into the store)",
           "s of audio", seconds, runs, naive_dec)  # fmt: skip

    # --- reading: real spectrograms, repeated to `--read-segments`, in shards of ~128 MB ---------------------
    build_shard(store, "bench/read-source.parquet", tracks, labels=["g"], seg=seg, feat=feat)
    mels = mel_numpy(store.read_parquet("bench/read-source.parquet"))
    read_rows = SegmentRows()
    for i in range(args.read_segments):
        read_rows.segment_id.append(f"s{i}")
        read_rows.track_id.append(f"t{i // 10}")
        read_rows.artist_id.append(None)
        read_rows.genre.append("g")
        read_rows.label.append(0)
        read_rows.split.append("train")
        read_rows.offset_s.append(0.0)
        read_rows.mel.append(mels[i % len(mels)])
    per_shard = max(1, (128 << 20) // mels[0].nbytes)
    entries = []
    for k in range(0, len(read_rows), per_shard):
        part = SegmentRows(*(getattr(read_rows, f)[k : k + per_shard] for f in SegmentRows.__dataclass_fields__))
        entries.append(write_shard(store, f"datasets/read/shards/part-{k:05d}.parquet", part, feature_hash=feat.hash))
    manifest = Manifest("read", "bench", feat.__dict__.copy(), feat.hash, seg.__dict__.copy(), ["g"], 0, entries)
    write_manifest(store, manifest, make_latest=False)
    crop = feat.frames(round(3.0 * seg.sample_rate))
    train = f"train: random {crop}-frame crops, shuffle buffer 256"
    runs = interleaved(
        {
            train: lambda d: sum(
                1 for _ in StreamingSegments(store, manifest, "train", crop_frames=crop, shuffle_buffer=256)
            ),
            "eval: whole segments": lambda d: sum(1 for _ in StreamingSegments(store, manifest, "train", train=False)),
        },
        repeat=rep,
        scratch=scratch,
    )
    report(f"reading: StreamingSegments over {len(entries)} shard(s), one process", "segments",
           args.read_segments, runs, train)  # fmt: skip
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other work on this machine slows both sides alike)")


if __name__ == "__main__":
    raise SystemExit(main())
