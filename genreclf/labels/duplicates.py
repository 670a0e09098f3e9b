"""Audio near-duplicates: per-window fingerprints of a log-mel, candidate pairs by hashing, offset voting."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from genreclf.datasets.features import FeatureConfig, mel_filters, natural_log_mel, parabola_shift
from genreclf.errors import DataError

log = logging.getLogger(__name__)

# Fingerprint layout. A row describes WINDOW_STEPS steps of STEP_S seconds (~4.1 s at the default config), and a
# new row starts every step: a trimmed copy's rows then sit at most half a step (~0.13 s) off the original's, which
# the triangular smoothing below (two steps wide) absorbs (aligned cosine >= 0.8 on real music; 0.5 s steps
# gave 0.75 at worst).
STEP_S = 0.25
WINDOW_STEPS = 16
# Lossy codecs low-pass (mp3 at 64 kbit/s near 8-11 kHz, Opus at low rates lower): only bands below this count.
MAX_HZ = 8_000.0
# Mel bands are averaged into this many groups, then described by a 2-D DCT of each window with the DC terms left
# out: the time DC is the window's mean per band, so gain and any fixed EQ (a codec's colouring) drop out; the
# band DC is the broadband loudness envelope, which every song in a genre shares. Kept: band orders 1..16, time
# orders 1..8, weighted by sqrt(order product) so the fine structure that tells songs apart is not swamped by the
# slow, large-variance orders (a fixed stand-in for whitening; on GTZAN it matches a fitted per-coefficient
# whitening: aligned copies >= 0.86 cosine at the 5th percentile, unrelated windows <= 0.26 at the 99th).
N_GROUPS = 32
N_BAND_COEFS = 16
N_TIME_COEFS = 8
# A frame whose bands all lie within 20 dB of the log floor is silence (a zero-padded segment tail, a gap); a
# window touching one is left out (an all-zero row), since the jump to the floor would dominate its shape.
SILENCE_NATS = math.log(100.0)

# Candidate search: TABLES hash tables of random-hyperplane signs (cosine LSH). Bits per key grow with log2 of the
# number of windows, so the expected chance collisions per window stay about constant as the catalogue grows.
TABLES = 16
MIN_BITS = 16
MAX_BUCKET = 64  # buckets larger than this hold nothing specific (one track's loop, near-silence); skipped
MATCH_COS = 0.5  # a window pair "matches" above this cosine; unrelated music: 99.9th percentile ~0.36
MIN_VOTES = 3  # matching windows that must agree on one offset before a track pair is verified
# What counts as a near-duplicate by default. On GTZAN, copies (mp3 64k, Opus 32k, trims, +-6..10 dB) score
# >= 0.86 (0.87 when a trim falls half-way between two steps), different songs <= 0.53: 0.7 sits between.
MIN_SIMILARITY = 0.7
MIN_OVERLAP_S = 10.0
SEED = 15


@dataclass(frozen=True)
class DuplicatePair:
    """Two tracks that hold the same recording over `overlap_s` seconds (ids ordered, a < b)."""

    a: str
    b: str
    similarity: float  # in [0, 1]: median window cosine over the matching span; 1 = same recording
    offset_s: float  # where b's audio starts in a's timeline (negative when b starts earlier)
    overlap_s: float  # seconds of matching audio


def step_frames(cfg: FeatureConfig) -> int:
    """Spectrogram frames per fingerprint step (11 at the default config: 0.255 s)."""
    return max(1, round(STEP_S * cfg.sample_rate / cfg.hop_length))


def step_seconds(cfg: FeatureConfig) -> float:
    """Seconds between consecutive fingerprint rows."""
    return step_frames(cfg) * cfg.hop_length / cfg.sample_rate


def window_seconds(cfg: FeatureConfig) -> float:
    """Seconds one fingerprint row describes (4.09 s at the default config): shorter tracks have no rows."""
    return WINDOW_STEPS * step_seconds(cfg)


def _dct_basis(n: int, orders: int) -> np.ndarray:
    """Orthonormal DCT-II rows 1..orders -> (orders, n)."""
    k = np.arange(1, orders + 1)[:, None]
    return (np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * np.arange(n)[None] + 1) / (2 * n))).astype(np.float32)


@lru_cache(maxsize=8)
def _layout(cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(group edges over the kept bands, band DCT (U, groups), time DCT (V, WINDOW_STEPS), weights (U, V))."""
    peak_hz = mel_filters(cfg).argmax(axis=1) * cfg.sample_rate / cfg.n_fft
    keep = max(2, int(np.searchsorted(peak_hz, MAX_HZ)))
    groups = min(N_GROUPS, keep)
    edges = np.linspace(0, keep, groups + 1).round().astype(int)
    band = _dct_basis(groups, min(N_BAND_COEFS, groups - 1))
    time = _dct_basis(WINDOW_STEPS, N_TIME_COEFS)
    weights = np.sqrt(np.outer(np.arange(1, len(band) + 1), np.arange(1, len(time) + 1))).astype(np.float32)
    return edges, band, time, weights


def fingerprint_dim(cfg: FeatureConfig) -> int:
    """Length of a fingerprint row (128 at the default config)."""
    _, band, time, _ = _layout(cfg)
    return len(band) * len(time)


def fingerprint(log_mel: np.ndarray, *, cfg: FeatureConfig) -> np.ndarray:
    """A track's log-mel (n_mels, frames) -> (windows, dim) float32, one L2-normalised row per window.

    Row w describes the `window_seconds(cfg)` from `w * step_seconds(cfg)`; rows are 0.255 s apart and 128 long at
    the default config. Robust to gain and fixed EQ (per-band means removed), to lossy re-encoding (bands above
    8 kHz ignored, coarse bands), and to trimming (rows every step, smoothed over two). Windows that touch
    silence are all-zero rows: they never match, and keep row index = time. A track shorter than one window gives
    (0, dim). Feed the whole track (a track's segments concatenated along time) so offsets are track time.
    """
    if log_mel.ndim != 2 or log_mel.shape[0] != cfg.n_mels:
        raise DataError(
            f"fingerprint needs a (n_mels={cfg.n_mels}, frames) log-mel, got shape {log_mel.shape}; "
            "pass one track's spectrogram computed under the same FeatureConfig"
        )
    edges, band, time, weights = _layout(cfg)
    s = step_frames(cfg)
    x = natural_log_mel(log_mel[: edges[-1]], cfg=cfg)  # (kept bands, frames)
    silent = x.max(axis=0) < math.log(cfg.log_offset) + SILENCE_NATS  # (frames,)
    grouped = np.add.reduceat(x, edges[:-1], axis=0) / np.diff(edges)[:, None]  # (groups, frames)
    kernel = np.bartlett(2 * s + 1)[1:-1].astype(np.float32)
    kernel /= kernel.sum()
    smooth = np.stack([np.convolve(row, kernel, mode="same") for row in grouped])[:, ::s]  # (groups, steps)
    silent_steps = np.convolve(silent.astype(np.float32), kernel, mode="same")[::s] > 0  # (steps,)
    n = smooth.shape[1] - WINDOW_STEPS + 1
    if n <= 0:
        return np.zeros((0, fingerprint_dim(cfg)), dtype=np.float32)
    coefs = band @ smooth  # (U, steps)
    win = np.lib.stride_tricks.sliding_window_view(coefs, WINDOW_STEPS, axis=1)  # (U, n, WINDOW_STEPS)
    rows = np.einsum("unt,vt->nuv", win, time) * weights  # (n, U, V)
    rows = rows.reshape(n, -1)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = np.divide(rows, norm, out=np.zeros_like(rows), where=norm > 1e-6)
    quiet = np.lib.stride_tricks.sliding_window_view(silent_steps, WINDOW_STEPS).any(axis=1)  # (n,)
    rows[quiet] = 0.0
    return rows.astype(np.float32)


def _bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (i, j) that share a key, from buckets of 2..MAX_BUCKET rows -> two (pairs,) int64 arrays."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    sizes = np.diff(np.r_[starts, len(sk)])
    size_of = np.repeat(sizes, sizes)
    keep = (size_of >= 2) & (size_of <= MAX_BUCKET)
    order, sk = order[keep], sk[keep]
    firsts, seconds = [], []
    for d in range(1, MAX_BUCKET):
        same = sk[:-d] == sk[d:]
        if not same.any():
            break
        firsts.append(order[:-d][same])
        seconds.append(order[d:][same])
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def _hash_keys(x: np.ndarray, *, bits: int, chunk: int) -> np.ndarray:
    """Random-hyperplane sign keys of rows (n, dim) -> (n, TABLES) uint64, `bits` signs per key."""
    planes = np.random.default_rng(SEED).standard_normal((x.shape[1], TABLES * bits)).astype(np.float32)
    keys = np.zeros((len(x), TABLES, 8), np.uint8)  # eight bytes per key, viewed as uint64 below
    for k in range(0, len(x), chunk):
        signs = (x[k : k + chunk] @ planes > 0).reshape(-1, TABLES, bits)  # (chunk, TABLES, bits)
        packed = np.packbits(signs, axis=-1, bitorder="little")  # (chunk, TABLES, ceil(bits / 8))
        keys[k : k + chunk, :, : packed.shape[-1]] = packed
    return keys.view("<u8")[..., 0]


def _candidate_matches(
    x: np.ndarray, owner: np.ndarray, valid: np.ndarray, *, chunk: int = 1 << 16
) -> tuple[np.ndarray, np.ndarray]:
    """Window pairs of different tracks with cosine >= MATCH_COS, found by LSH -> (i, j) with owner[i] < owner[j]."""
    rows = np.flatnonzero(valid)
    bits = min(64, max(MIN_BITS, math.ceil(math.log2(max(2, len(rows)))) + 3))
    keys = _hash_keys(x[rows], bits=bits, chunk=chunk)  # (rows, TABLES)
    found = []
    for table in range(TABLES):
        i, j = _bucket_pairs(keys[:, table])
        i, j = rows[i], rows[j]
        other = owner[i] != owner[j]
        i, j = i[other], j[other]
        swap = owner[i] > owner[j]
        i, j = np.where(swap, j, i), np.where(swap, i, j)
        cos = np.zeros(len(i), np.float32)
        for k in range(0, len(i), chunk):
            cos[k : k + chunk] = np.einsum("nd,nd->n", x[i[k : k + chunk]], x[j[k : k + chunk]])
        hit = cos >= MATCH_COS
        found.append(i[hit] * len(x) + j[hit])
    pairs = np.unique(np.concatenate(found))
    return pairs // len(x), pairs % len(x)


def _diagonal(fa: np.ndarray, fb: np.ndarray, off: int) -> np.ndarray:
    """Cosines of a's row p + off with b's row p over their overlap, NaN where either row is silent -> (overlap,)."""
    lo, hi = max(0, -off), min(len(fb), len(fa) - off)
    if hi <= lo:
        return np.zeros(0, np.float32)
    a, b = fa[lo + off : hi + off], fb[lo:hi]
    cos = np.einsum("nd,nd->n", a, b)
    cos[(a == 0).all(axis=1) | (b == 0).all(axis=1)] = np.nan
    return cos


def _verify(fa: np.ndarray, fb: np.ndarray, off: int, step_s: float, win_s: float) -> tuple[float, float, float]:
    """Best offset near `off` (in rows) -> (similarity, offset_s, overlap_s); similarity 0 when nothing holds."""
    best: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spans: dict[int, float] = {}
    for o in (off - 1, off, off + 1):
        cos = _diagonal(fa, fb, o)
        hit = np.flatnonzero(cos >= MATCH_COS)
        if len(hit) < MIN_VOTES:
            spans[o] = 0.0
            continue
        span = cos[hit[0] : hit[-1] + 1]
        sim = float(np.nanmedian(span))
        spans[o] = float(np.nanmean(span))
        if sim > best[0]:
            best = (sim, float(o), (hit[-1] - hit[0]) * step_s + win_s)
    sim, o_best, overlap = best
    if sim <= 0:
        return best
    o = int(o_best)
    # Sub-step offset from a parabola through the mean cosines at the neighbouring offsets.
    shift = parabola_shift(spans.get(o - 1, 0.0), spans[o], spans.get(o + 1, 0.0))
    return min(1.0, sim), (o + float(shift)) * step_s, overlap


def _best_offsets(
    i: np.ndarray, j: np.ndarray, owner: np.ndarray, pos: np.ndarray, *, n_tracks: int
) -> list[tuple[int, int, int]]:
    """Matching windows (i, j) -> (track a, track b, offset in rows) per track pair whose best offset, counting its
    two neighbours (half-step jitter), has >= MIN_VOTES votes."""
    span = int(pos.max()) + 2
    off = pos[i] - pos[j]  # where b's window sits in a's rows
    key = (owner[i].astype(np.int64) * n_tracks + owner[j]) * (2 * span) + (off + span)
    keys, votes = np.unique(key, return_counts=True)
    total = votes.copy()
    for d in (-1, 1):
        at = np.clip(np.searchsorted(keys, keys + d), 0, len(keys) - 1)
        total += np.where(keys[at] == keys + d, votes[at], 0)
    pair = keys // (2 * span)
    order = np.lexsort((-total, pair))  # per pair, its best-voted offset first
    first = order[np.r_[True, pair[order][1:] != pair[order][:-1]]]
    first = first[total[first] >= MIN_VOTES]
    a, b = np.divmod(pair[first], n_tracks)
    return list(zip(a.tolist(), b.tolist(), (keys[first] % (2 * span) - span).tolist(), strict=True))


def find_near_duplicates(
    fingerprints: Mapping[str, np.ndarray],
    *,
    cfg: FeatureConfig,
    min_similarity: float = MIN_SIMILARITY,
    min_overlap_s: float = MIN_OVERLAP_S,
) -> list[DuplicatePair]:
    """Pairs of tracks that hold the same recording, most similar first.

    `fingerprints` maps track id -> `fingerprint(...)` rows (windows, dim), all under `cfg`. Every window goes into
    TABLES locality-sensitive hash tables (random-hyperplane signs); windows of two tracks that share a bucket
    and have cosine >= MATCH_COS vote for the pair at their time offset. Pairs with >= MIN_VOTES votes on one
    offset are verified along that diagonal (and the offsets either side): similarity is the median cosine over
    the span between the first and last matching windows, overlap_s that span's length. Different songs, of one
    genre or one artist, match single windows by chance but not a run of windows on one offset (GTZAN: <= 0.53);
    copies re-encoded, trimmed or at another gain keep >= 0.86, hence MIN_SIMILARITY 0.7. A pair must share
    `min_overlap_s` of audio, or half of the shorter track where that is less. One pair per track pair: audio shared
    at two offsets (a medley) reports the better one.

    Scaling, N = all windows (~117 per 30 s of audio): hashing O(N * dim * bits * TABLES), sorting
    O(TABLES * N log N); bits grow with log2 N so chance collisions, and hence candidates, stay ~linear in N;
    verification is per voted pair. No two tracks are compared unless their windows collide. Measured on 2 cores:
    8,360 tracks of 30 s (862k windows) in 8 s. Memory: a concatenated copy of the fingerprints (512 bytes per
    window: 60 kB per 30 s of audio, 6 GB for 100,000 such tracks) plus TABLES * 8 bytes of keys per window.
    """
    ids = sorted(fingerprints)
    if len(ids) < 2:
        return []
    dim = fingerprint_dim(cfg)
    for tid in ids:
        f = fingerprints[tid]
        if f.ndim != 2 or f.shape[1] != dim:
            raise DataError(f"{tid}: fingerprint shape {f.shape}, expected (windows, {dim}); recompute it under cfg")
    x = np.concatenate([np.asarray(fingerprints[t], dtype=np.float32) for t in ids])  # (N, dim)
    valid = np.concatenate([np.any(fingerprints[t] != 0, axis=1) for t in ids])  # (N,) False: silent window
    lengths = np.array([len(fingerprints[t]) for t in ids])
    starts = np.cumsum(lengths) - lengths
    owner = np.repeat(np.arange(len(ids)), lengths)  # (N,)
    pos = np.arange(len(x)) - np.repeat(starts, lengths)  # (N,) row within its track
    i, j = _candidate_matches(x, owner, valid)
    if len(i) == 0:
        return []
    candidates = _best_offsets(i, j, owner, pos, n_tracks=len(ids))
    step_s, win_s = step_seconds(cfg), window_seconds(cfg)
    found = []
    for a, b, o in candidates:
        rows_a, rows_b = x[starts[a] : starts[a] + lengths[a]], x[starts[b] : starts[b] + lengths[b]]
        sim, offset_s, overlap_s = _verify(rows_a, rows_b, o, step_s, win_s)
        # A copy of a clip shorter than twice min_overlap_s counts when it shares half of the shorter one.
        needed = min(min_overlap_s, 0.5 * ((min(lengths[a], lengths[b]) - 1) * step_s + win_s))
        if sim > 0 and sim >= min_similarity and overlap_s >= needed:  # 0: no run of matches held
            found.append(DuplicatePair(ids[a], ids[b], round(sim, 4), round(offset_s, 3), round(float(overlap_s), 2)))
    log.info("near-duplicates: %d windows, %d candidate pairs, %d found", len(x), len(candidates), len(found))
    return sorted(found, key=lambda p: (-p.similarity, -p.overlap_s, p.a, p.b))
