"""Feature throughput per core: the naive path against ours, and shard read speed, on the same audio.

    .venv/bin/python benchmarks/features.py [FOLDER] [--files 12] [--seconds 60] [--window-s 30]

Without FOLDER it writes FILES mp3s of SECONDS each with ffmpeg (a tone, a sweep and pink noise). Everything runs
on one thread, so the figures are per core:
- naive: librosa.load + librosa melspectrogram per window + one .npy per window (what the seed did with images);
- ours: genreclf.audio.decode (libsndfile + soxr, ffmpeg for other formats) + windows + batched torch log-mel +
  one float16 Parquet shard;
- ours, features only: FLAC already in the store -> shard (what build-dataset does after acquisition);
- reading: `StreamingSegments` over shards (train: random 3 s crops through a shuffle buffer; eval: whole).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # per core: before numpy, torch and numba start their pools

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genreclf import audio  # noqa: E402
from genreclf.audio import SegmentConfig  # noqa: E402
from genreclf.dataset import build_shard  # noqa: E402
from genreclf.features import FeatureConfig, log_mel_batch, log_mel_librosa  # noqa: E402
from genreclf.keys import audio_key  # noqa: E402
from genreclf.loader import StreamingSegments  # noqa: E402
from genreclf.manifest import Manifest, write_manifest  # noqa: E402
from genreclf.shards import SegmentRows, write_shard  # noqa: E402
from genreclf.storage import Store  # noqa: E402

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


def naive(paths: list[Path], out: Path, *, seg: SegmentConfig, feat: FeatureConfig) -> int:
    import librosa

    win, n = round(seg.window_s * seg.sample_rate), 0
    for p in paths:
        y, _ = librosa.load(p, sr=seg.sample_rate, mono=True)
        for j, start in enumerate(audio.segment_offsets(len(y), cfg=seg)):
            w = y[start : start + win]
            w = np.pad(w, (0, win - len(w))) if len(w) < win else w
            np.save(out / f"{p.stem}-{j:04d}.npy", log_mel_librosa(w, cfg=feat))
            n += 1
    return n


def ours(paths: list[Path], store: Store, *, seg: SegmentConfig, feat: FeatureConfig) -> int:
    rows = SegmentRows()
    for p in paths:
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
    write_shard(store, "bench/ours.parquet", rows, feature_hash=feat.hash)
    return len(rows)


def timed(fn, *args, **kw) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    n = fn(*args, **kw)
    return time.perf_counter() - t0, n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", help="audio files to use (default: generate with ffmpeg)")
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--window-s", type=float, default=30.0)
    p.add_argument("--read-segments", type=int, default=1_000, help="segments in the shards read back")
    args = p.parse_args()
    torch.set_num_threads(1)
    seg = SegmentConfig(window_s=args.window_s, hop_s=args.window_s, silence_db=-120.0)
    feat = FeatureConfig()
    tmp = Path(tempfile.mkdtemp(prefix="genreclf-bench-"))
    if args.folder:
        paths = sorted(q for q in Path(args.folder).rglob("*") if q.suffix.lower() in AUDIO)[: args.files]
    else:
        paths = make_audio(tmp, args.files, args.seconds)
    if not paths:
        raise SystemExit(f"no audio files in {args.folder}")
    seconds = sum(len(audio.decode(q, sr=seg.sample_rate)) for q in paths) / seg.sample_rate
    print(f"{len(paths)} files, {seconds:.0f} s of audio; {seg.window_s:g} s windows, {feat.n_mels} mels, "
          f"n_fft {feat.n_fft}, hop {feat.hop_length}; 1 thread")  # fmt: skip

    # Warm both paths (librosa's numba compile, torch's first FFT plan) outside the timings.
    naive(paths[:1], tmp, seg=seg, feat=feat)
    store = Store.open(str(tmp / "store"))
    ours(paths[:1], store, seg=seg, feat=feat)

    (tmp / "npy").mkdir()
    t_naive, n_naive = timed(naive, paths, tmp / "npy", seg=seg, feat=feat)
    t_ours, n_ours = timed(ours, paths, store, seg=seg, feat=feat)
    tracks = []
    for q in paths:
        y = audio.decode(q, sr=seg.sample_rate)
        store.write_bytes(audio_key(q.stem), audio.encode_flac(y, sr=seg.sample_rate))
        offsets = [o / seg.sample_rate for o in audio.segment_offsets(len(y), cfg=seg)]
        tracks.append({"track_id": q.stem, "artist_id": None, "genre": "g", "split": "train", "offsets": offsets})
    t_feat, _ = timed(build_shard, store, "bench/features.parquet", tracks, labels=["g"], seg=seg, feat=feat)
    npy_mb = sum(f.stat().st_size for f in (tmp / "npy").iterdir()) / 2**20
    shard_mb = store.fs.get_file_info(store.path("bench/ours.parquet")).size / 2**20

    print(f"naive  librosa.load + melspectrogram + .npy : {seconds / t_naive:7.0f} s of audio / s / core "
          f"({n_naive} segments, {npy_mb:.1f} MB of float32 .npy)")  # fmt: skip
    print(f"ours   decode + torch log-mel batch + shard : {seconds / t_ours:7.0f} s of audio / s / core "
          f"({n_ours} segments, {shard_mb:.1f} MB of float16 Parquet)  {t_naive / t_ours:.1f}x naive "
          f"(goal >= 2x and >= 300x real time)")  # fmt: skip
    print(
        f"ours   features only (FLAC in store -> shard): {seconds / t_feat:6.0f} s of audio / s / core  "
        f"{t_naive / t_feat:.1f}x naive (build-dataset's feature stage: audio was decoded once, at acquisition)"
    )

    # Reading: real spectrograms, repeated to `--read-segments`, in shards of ~128 MB.
    source = store.read_parquet("bench/ours.parquet")
    rows = SegmentRows()
    from genreclf.shards import mel_numpy

    mels = mel_numpy(source)
    for i in range(args.read_segments):
        rows.segment_id.append(f"s{i}")
        rows.track_id.append(f"t{i // 10}")
        rows.artist_id.append(None)
        rows.genre.append("g")
        rows.label.append(0)
        rows.split.append("train")
        rows.offset_s.append(0.0)
        rows.mel.append(mels[i % len(mels)])
    per_shard = max(1, (128 << 20) // mels[0].nbytes)
    entries = []
    for k in range(0, len(rows), per_shard):
        part = SegmentRows(*(getattr(rows, f)[k : k + per_shard] for f in SegmentRows.__dataclass_fields__))
        entries.append(write_shard(store, f"datasets/read/shards/part-{k:05d}.parquet", part, feature_hash=feat.hash))
    manifest = Manifest("read", "bench", feat.__dict__.copy(), feat.hash, seg.__dict__.copy(), ["g"], 0, entries)
    write_manifest(store, manifest, make_latest=False)
    crop = feat.frames(round(3.0 * seg.sample_rate))
    for label, ds in [
        (f"train, random {crop}-frame crops, shuffle buffer 256",
         StreamingSegments(store, manifest, "train", crop_frames=crop, shuffle_buffer=256)),
        ("eval, whole segments", StreamingSegments(store, manifest, "train", train=False)),
    ]:  # fmt: skip
        t0 = time.perf_counter()
        n = sum(1 for _ in ds)
        rate = n / (time.perf_counter() - t0)
        print(f"read   StreamingSegments {label}: {rate:6.0f} segments / s / core "
              f"(x16 cores = {16 * rate:,.0f}/s; goal 2,000/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
