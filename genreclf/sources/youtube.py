"""YouTube (and any URL yt-dlp reads) as an audio source: search, rank candidates against a track, download audio."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import (
    ContentTooShortError,
    DownloadError,
    GeoRestrictedError,
    UnsupportedError,
    unsmuggle_url,
)

from genreclf import interrupts
from genreclf.errors import BotCheckError, SourceError
from genreclf.retry import RetryableError, call_with_retries, retry_after_from
from genreclf.sources.youtube_config import YoutubeConfig
from genreclf.sources.youtube_js import js_runtimes, parse_extractor_args

__all__ = [
    "YT_DLP_VERSION",
    "Candidate",
    "Download",
    "Match",
    "RetryableError",
    "YoutubeConfig",
    "classify",
    "describe_rejections",
    "download",
    "is_official",
    "rank_candidates",
    "score_candidate",
    "search",
    "search_query",
    "title_similarity",
    "ytdlp_options",
]

log = logging.getLogger(__name__)

YT_DLP_VERSION: str = yt_dlp.version.__version__


@dataclass(frozen=True)
class Candidate:
    """One search result: where to download it and what the search said about it."""

    url: str
    video_id: str
    title: str
    duration_s: float | None = None
    channel: str = ""


@dataclass(frozen=True)
class Match:
    """A candidate scored against a track; `reason` is set when it is rejected."""

    candidate: Candidate
    score: float
    title_similarity: float
    duration_diff_s: float | None
    official: bool
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return not self.reason

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "video_id": c.video_id, "title": c.title, "channel": c.channel, "duration_s": c.duration_s,
            "score": round(self.score, 4), "title_similarity": round(self.title_similarity, 4),
            "duration_diff_s": self.duration_diff_s, "official": self.official, "reason": self.reason,
        }  # fmt: skip


@dataclass(frozen=True)
class Download:
    """A finished download: the local file and the provenance yt-dlp gave."""

    path: Path
    source_url: str
    video_id: str
    title: str
    duration_s: float | None
    extractor: str
    info: dict[str, Any] = field(default_factory=dict, repr=False)


# ----------------------------------------------------------------------------------------------------------
# Matching: pure functions

# Words in a result title that say what kind of upload it is; they say nothing about which song it is.
_DECORATION = frozenset({
    "official", "audio", "video", "music", "lyric", "lyrics", "visualizer", "visualiser", "hd", "hq", "4k",
    "remastered", "remaster", "topic", "vevo", "provided", "to", "youtube", "by", "full", "version", "feat", "ft",
    "featuring", "mv", "clip", "explicit",
})  # fmt: skip
# Words that mean "not the studio recording" unless the track's own title has them.
_UNWANTED = frozenset({
    "live", "cover", "karaoke", "remix", "instrumental", "sped", "slowed", "nightcore", "8d", "reverb", "acoustic",
    "reaction", "tutorial", "lesson", "boosted", "piano",
})  # fmt: skip


def _words(text: str) -> list[str]:
    """Case- and accent-folded words (any script: a Japanese or Cyrillic title keeps its words)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.findall(r"\w+", unicodedata.normalize("NFKC", stripped))


def _coverage(wanted: Sequence[str], have: set[str]) -> float:
    return sum(w in have for w in wanted) / len(wanted) if wanted else 0.0


def title_similarity(*, title: str, artists: Sequence[str], candidate_title: str, channel: str = "") -> float:
    """How well a result's title (and channel) names `artists - title`, 0..1.

    The share of the track title's words found in the result (70 %) and of the best-covered artist's words
    (30 %; the channel counts, for "Artist - Topic" uploads). Decoration ("official audio", "HD") is ignored.
    """
    have = set(_words(candidate_title)) | set(_words(channel))
    wanted = [w for w in _words(title) if w not in _DECORATION] or _words(title)
    title_cov = _coverage(wanted, have)
    artist_covs = [_coverage(_words(a), have) for a in artists if _words(a)]
    if not artist_covs:
        return title_cov
    return 0.7 * title_cov + 0.3 * max(artist_covs)


def is_official(candidate: Candidate) -> bool:
    """An upload from the label or the artist's auto-generated channel ("Official Audio", "Artist - Topic")."""
    t, ch = candidate.title.casefold(), candidate.channel.casefold()
    return "official audio" in t or ch.endswith(" - topic") or "provided to youtube" in t


def score_candidate(
    candidate: Candidate, *, title: str, artists: Sequence[str], duration_s: float | None, cfg: YoutubeConfig
) -> Match:
    """Score a result against a track: 0.6 title similarity + 0.3 duration closeness + 0.1 official audio, less
    0.25 per "live", "cover", "remix"... word the track's title does not have. Rejected (with the reason) when the
    duration is off by more than the tolerance or the title similarity is below `cfg.min_title_similarity`.
    A result without a duration scores 0.5 on duration and is checked once decoded.
    """
    sim = title_similarity(title=title, artists=artists, candidate_title=candidate.title, channel=candidate.channel)
    official = is_official(candidate)
    diff: float | None = None
    duration_score = 0.5
    reasons = []
    if duration_s and candidate.duration_s is not None:
        diff = round(abs(candidate.duration_s - duration_s), 3)
        tol = cfg.tolerance(duration_s)
        duration_score = max(0.0, 1.0 - diff / tol)
        if diff > tol:
            reasons.append(
                f"duration {candidate.duration_s:.0f} s vs {duration_s:.0f} s on Spotify "
                f"(off by {diff:.0f} s, tolerance {tol:.0f} s)"
            )
    if sim < cfg.min_title_similarity:
        reasons.append(f"title similarity {sim:.2f} < {cfg.min_title_similarity:.2f}")
    own = set(_words(title))
    unwanted = sorted({w for w in _words(candidate.title) if w in _UNWANTED and w not in own})
    score = 0.6 * sim + 0.3 * duration_score + (0.1 if official else 0.0) - 0.25 * len(unwanted)
    return Match(candidate, score, sim, diff, official, reason="; ".join(reasons))


def rank_candidates(
    candidates: Sequence[Candidate],
    *,
    title: str,
    artists: Sequence[str],
    duration_s: float | None,
    cfg: YoutubeConfig,
) -> list[Match]:
    """Every candidate scored, accepted ones first, best first (ties keep the search order)."""
    matches = [score_candidate(c, title=title, artists=artists, duration_s=duration_s, cfg=cfg) for c in candidates]
    return sorted(matches, key=lambda m: (not m.accepted, -m.score))


def describe_rejections(matches: Sequence[Match], *, query: str) -> str:
    if not matches:
        return f"no search results for {query!r}"
    detail = "; ".join(f"{m.candidate.title!r}: {m.reason}" for m in matches if m.reason)
    return f"no candidate within tolerance for {query!r} ({len(matches)} results: {detail})"


def search_query(*, title: str, artists: Sequence[str]) -> str:
    """What to search for: `Artist1 Artist2 - Title` (at most two artists; more rarely help)."""
    names = " ".join(a for a in artists[:2] if a)
    return f"{names} - {title}" if names else title


# ----------------------------------------------------------------------------------------------------------
# yt-dlp: search and download


class _YtdlpLogger:
    """yt-dlp's messages into our log at debug level: errors reach us as exceptions, with their reason."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", msg)


def ytdlp_options(cfg: YoutubeConfig, **extra: Any) -> dict[str, Any]:
    """The yt-dlp options genreclf uses (quiet, cookies, JavaScript runtime, sleeps, timeouts, retries), plus
    `extra`."""
    opts: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtdlpLogger(),
        "socket_timeout": cfg.socket_timeout_s,
        # No retries inside yt-dlp: call_with_retries is the one layer (genreclf.retry), and a download it tries
        # again resumes the .part file. A fragment that fails fails the download rather than being skipped.
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "skip_unavailable_fragments": False,
        "noplaylist": True,
        "js_runtimes": js_runtimes(cfg),
    }
    if cfg.extractor_args:
        opts["extractor_args"] = parse_extractor_args(cfg.extractor_args)
    if cfg.cookies_file:
        if not Path(cfg.cookies_file).is_file():
            raise SourceError(
                f"GENRECLF_YOUTUBE_COOKIES_FILE={cfg.cookies_file}: no such file; export a Netscape cookies.txt "
                "from a browser signed in to YouTube, or unset it"
            )
        opts["cookiefile"] = cfg.cookies_file
    if cfg.sleep_interval_s or cfg.max_sleep_interval_s:
        opts["sleep_interval"] = cfg.sleep_interval_s
        opts["max_sleep_interval"] = max(cfg.max_sleep_interval_s, cfg.sleep_interval_s)
    if cfg.sleep_requests_s:
        opts["sleep_interval_requests"] = cfg.sleep_requests_s
    return opts | extra


# How yt-dlp's downloader words a fault it retries itself (a 5xx, a reset, a file cut short) once its retries are
# spent; with "retries": 0 that is the first one.
_DOWNLOADER_GAVE_UP = "[download] Got error:"


def classify(err: DownloadError, *, what: str) -> SourceError:
    """Turn a yt-dlp failure into RetryableError (429, 5xx, timeouts, dropped connections) or a SourceError
    that says why the track cannot be had (unavailable, geo-blocked, sign-in, 404, not media)."""
    cause = err.exc_info[1] if err.exc_info else None
    msg = re.sub(r"^ERROR:\s*", "", str(err)).strip()
    low = msg.casefold()
    if isinstance(cause, HTTPError):
        status = cause.status
        if status == 429 or status >= 500:
            retry_after = retry_after_from(cause.response.headers if cause.response is not None else None)
            return RetryableError(f"{what}: HTTP {status} ({cause.reason})", retry_after=retry_after)
        return SourceError(f"{what}: HTTP {status} {cause.reason}; the URL is wrong or the file is gone")
    if isinstance(cause, (TransportError, ContentTooShortError, TimeoutError, ConnectionError)):
        return RetryableError(f"{what}: network fault ({msg})")
    if cause is None and msg.startswith(_DOWNLOADER_GAVE_UP):
        # yt-dlp's downloader reports a fault it would have retried (5xx, reset, cut short) without the cause.
        return RetryableError(f"{what}: network fault ({msg.removeprefix(_DOWNLOADER_GAVE_UP).strip()})")
    # YouTube's refusals: yt-dlp passes on YouTube's own reason (its playabilityStatus), so they are told apart by
    # its words. Each says what to do; only the bot check is about us, not the video, and is not remembered.
    first = _first_sentence(msg)
    if "not a bot" in low:  # "Sign in to confirm you\u2019re not a bot": matched without its apostrophe
        return BotCheckError(
            f"{what}: YouTube's bot check ('{first}'): give it a signed-in browser's cookies "
            "(GENRECLF_YOUTUBE_COOKIES_FILE) or a PO-token provider (GENRECLF_YOUTUBE_EXTRACTOR_ARGS), and slow down "
            "(GENRECLF_YOUTUBE_SLEEP_INTERVAL_S); the rest of this batch waits for a rerun"
        )
    if isinstance(cause, GeoRestrictedError) or "your country" in low or "geo-restrict" in low or "geo restrict" in low:
        countries = getattr(cause, "countries", None)
        where = f" (available in {', '.join(countries)})" if countries else ""
        return SourceError(f"{what}: region-blocked{where} ('{first}'); another upload of the track may play here")
    if "confirm your age" in low or "age-restricted" in low or "inappropriate for some users" in low:
        return SourceError(
            f"{what}: age-restricted ('{first}'): YouTube plays it only to a signed-in adult; set "
            "GENRECLF_YOUTUBE_COOKIES_FILE to such an account's cookies.txt"
        )
    if "members-only" in low or "join this channel" in low or "members only" in low:
        return SourceError(
            f"{what}: members-only ('{first}'): it needs the cookies of a member of the channel "
            "(GENRECLF_YOUTUBE_COOKIES_FILE), or another upload"
        )
    if "private video" in low:
        return SourceError(f"{what}: a private video ('{first}'); another upload of the track may be public")
    if "sign in" in low or "login required" in low:
        return SourceError(
            f"{what}: YouTube asks to sign in ('{first}'); set GENRECLF_YOUTUBE_COOKIES_FILE to a cookies.txt of "
            "a signed-in browser"
        )
    if "http error 429" in low or "too many requests" in low:
        return RetryableError(f"{what}: rate limited ({msg})")
    if "did not get any data blocks" in low:
        return SourceError(f"{what}: the server sent an empty file (0 bytes)")
    if isinstance(cause, UnsupportedError):
        return SourceError(f"{what}: no audio or video found at that URL (a web page without media?)")
    if "unavailable" in low or "has been removed" in low or "terminated" in low:
        return SourceError(f"{what}: removed or unavailable ('{first}'); another upload of the track may be there")
    if "requested format is not available" in low:
        return SourceError(
            f"{what}: no audio format offered ('{first}'); without a JavaScript runtime YouTube hides them: "
            "run `genreclf doctor`"
        )
    return SourceError(f"{what}: {msg}")


def _first_sentence(msg: str) -> str:
    """YouTube's reason without yt-dlp's "[youtube] ID: " prefix and its advice about yt-dlp's own options."""
    text = re.sub(r"^\[[^\]]+\]\s*[^:\s]+:\s*", "", msg)
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")


def _entry_candidate(entry: dict[str, Any]) -> Candidate | None:
    url = entry.get("webpage_url") or entry.get("url")
    if not url:
        return None
    _, smuggled = unsmuggle_url(url, {})
    vid = entry.get("id") or (smuggled or {}).get("force_videoid") or url
    duration = entry.get("duration")
    return Candidate(
        url=url,
        video_id=str(vid),
        title=entry.get("title") or "",
        duration_s=float(duration) if duration is not None else None,
        channel=entry.get("channel") or entry.get("uploader") or "",
    )


def search(query: str, *, cfg: YoutubeConfig) -> list[Candidate]:
    """Up to `cfg.candidates` results for `query` from the configured search (no download).

    Transient faults are retried under `cfg.retry_policy()`, then raise RetryableError (genreclf.retry)."""
    if "{query}" not in cfg.search:
        raise SourceError(f"GENRECLF_YOUTUBE_SEARCH={cfg.search!r} has no {{query}}; e.g. ytsearch{{n}}:{{query}}")
    is_url = cfg.search.startswith(("http://", "https://"))
    url = cfg.search.format(n=cfg.candidates, query=quote_plus(query) if is_url else query)
    opts = ytdlp_options(cfg, extract_flat="in_playlist", skip_download=True, noplaylist=False)

    def run() -> dict[str, Any]:
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                return ydl.extract_info(url, download=False) or {}
        except DownloadError as e:
            raise classify(e, what=f"search {query!r}") from e

    info = call_with_retries(run, policy=cfg.retry_policy())
    entries = info.get("entries") or []
    return [c for c in (_entry_candidate(e) for e in entries if e) if c][: cfg.candidates]


def download(url: str, dest_dir: Path, *, cfg: YoutubeConfig) -> Download:
    """Download the best audio of `url` into `dest_dir` as `<video id>.<ext>`.

    yt-dlp writes `<name>.part` and renames it when complete, so a killed download never looks finished; run
    again with the same `dest_dir`, it resumes the part (HTTP Range) or starts over. No post-processing: the
    caller decodes whatever container came (webm/opus, m4a, mp3). Transient faults (HTTP 429/5xx, timeouts, a
    connection dropped mid-file) are retried under `cfg.retry_policy()`, each retry resuming the part.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    opts = ytdlp_options(
        cfg,
        format=cfg.format,
        outtmpl={"default": str(dest_dir / "%(id).80B.%(ext)s")},
        continuedl=True,
        overwrites=False,
        # Called for every chunk: a Ctrl-C stops the download mid-file (its .part resumes on the rerun).
        progress_hooks=[lambda _: interrupts.check()],
    )
    what = f"download {url}"

    def run() -> dict[str, Any]:
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                return ydl.extract_info(url, download=True) or {}
        except DownloadError as e:
            raise classify(e, what=what) from e

    info = call_with_retries(run, policy=cfg.retry_policy())
    if info.get("_type") == "playlist" or info.get("entries") is not None:
        raise SourceError(f"{what}: the URL is a playlist or a page of several media; give one track's URL")
    downloads = info.get("requested_downloads") or []
    path = Path(downloads[0]["filepath"]) if downloads and downloads[0].get("filepath") else None
    if path is None or not path.is_file():
        raise SourceError(f"{what}: yt-dlp finished without an audio file (formats: {info.get('format')})")
    duration = info.get("duration")
    return Download(
        path=path,
        source_url=unsmuggle_url(info.get("webpage_url") or url, {})[0],
        video_id=str(info.get("id") or ""),
        title=info.get("title") or "",
        duration_s=float(duration) if duration is not None else None,
        extractor=info.get("extractor_key") or info.get("extractor") or "",
        info={k: info.get(k) for k in ("id", "title", "channel", "uploader", "duration", "ext", "format_id")},
    )
