"""Decode + segment throughput of genreclf's acquisition beside `librosa.load`, on the same files.

    .venv/bin/python benchmarks/acquire.py [FOLDER] [--files 6] [--seconds 30] [--repeat 2]

Without FOLDER it generates `--files` mp3 and as many Ogg/Opus files (stereo, 44.1 kHz, `--seconds` long) with
ffmpeg in a temporary folder. Figures are seconds of audio per second of wall time on one core (files one after
another), then genreclf's decode + segment across all cores (threads), divided per core. genreclf decodes what
libsndfile reads (wav, flac, ogg, opus, mp3) in-process with soxr resampling, and anything else with ffmpeg.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from genreclf.acquisition import audio  # noqa: E402
from genreclf.acquisition.acquire import acquire_track  # noqa: E402
from genreclf.acquisition.audio import SegmentConfig  # noqa: E402
from genreclf.sources.local import AUDIO_EXTENSIONS  # noqa: E402
from genreclf.store.storage import Store  # noqa: E402

SEG = SegmentConfig()  # 22,050 Hz, 30 s windows


def generate(folder: Path, *, files: int, seconds: float) -> list[Path]:
    paths = []
    for i in range(files):
        for ext, codec in ((".mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]), (".opus", ["-c:a", "libopus"])):
            path = folder / f"track{i:02d}{ext}"
            # A chord with noise: something like music for the codecs, different in every file.
            src = (
                f"aevalsrc='0.3*sin({220 + 20 * i}*2*PI*t)+0.2*sin({330 + 15 * i}*2*PI*t)"
                f"+0.05*(random(0)-0.5)|0.3*sin({277 + 10 * i}*2*PI*t)':s=44100:d={seconds}"
            )
            cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src, *codec, str(path)]
            subprocess.run(cmd, check=True)
            paths.append(path)
    return paths


def seconds_of(paths: list[Path]) -> float:
    return sum(len(audio.decode(p, sr=SEG.sample_rate)) for p in paths) / SEG.sample_rate


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", nargs="?", type=Path, help="audio files to use (default: generate them)")
    parser.add_argument("--files", type=int, default=6, help="files of each format to generate")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated file")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (the best counts)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="genreclf-bench-") as tmp:
        if args.folder:
            paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
            if not paths:
                parser.error(f"{args.folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        else:
            paths = generate(Path(tmp), files=args.files, seconds=args.seconds)
        total = seconds_of(paths)
        cores = os.cpu_count() or 1
        print(f"{len(paths)} files, {total:.0f} s of audio, {cores} cores, sample rate {SEG.sample_rate} Hz")

        import librosa

        warnings.filterwarnings("ignore", module="librosa")
        librosa.load(paths[0], sr=SEG.sample_rate, mono=True)  # warm up (resampler, imports)

        def ours(p: Path) -> int:
            y = audio.decode(p, sr=SEG.sample_rate, max_seconds=SEG.max_seconds)
            return len(audio.segment(y, cfg=SEG)[1])

        def theirs(p: Path, *, cut: bool) -> int:
            y, _ = librosa.load(p, sr=SEG.sample_rate, mono=True)
            return len(audio.segment(np.asarray(y, dtype=np.float32), cfg=SEG)[1]) if cut else len(y)

        def full(store: Store) -> None:
            for i, p in enumerate(paths):
                store.delete(f"audio/b{i}.json")
                acquire_track(store, {"track_id": f"b{i}", "audio_uri": str(p)}, cfg=SEG)

        store = Store.open(str(Path(tmp) / "store"))
        rows = [
            ("genreclf decode + segment, 1 core", best_time(lambda: [ours(p) for p in paths], args.repeat)),
            ("  + FLAC + sidecar into a local store (acquire_track)", best_time(lambda: full(store), args.repeat)),
            ("librosa.load, 1 core", best_time(lambda: [theirs(p, cut=False) for p in paths], args.repeat)),
            ("librosa.load + segment, 1 core", best_time(lambda: [theirs(p, cut=True) for p in paths], args.repeat)),
        ]
        with ThreadPoolExecutor(cores) as pool:
            parallel = best_time(lambda: list(pool.map(ours, paths)), args.repeat)

        print(f"{'':56s} {'audio s / s':>12s} {'per core':>10s}")
        for name, t in rows:
            print(f"{name:56s} {total / t:12.0f} {total / t:10.0f}")
        name = f"genreclf decode + segment, {cores} threads"
        print(f"{name:56s} {total / parallel:12.0f} {total / parallel / cores:10.0f}")


if __name__ == "__main__":
    main()
