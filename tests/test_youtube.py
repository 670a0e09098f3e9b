"""Candidate ranking (pure), and yt-dlp search and download against the loopback audio server (no mocks)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreclf.errors import SourceError, TransientSourceError
from genreclf.retry import RetryableError
from genreclf.sources import youtube
from genreclf.sources.youtube import Candidate, YoutubeConfig
from tests.audio_server import AudioServer, SearchHit, make_audio

CFG = YoutubeConfig(duration_tolerance_s=10.0, duration_tolerance_frac=0.05, min_title_similarity=0.5)


def cand(title: str, duration: float | None, channel: str = "", vid: str = "") -> Candidate:
    return Candidate(url=f"https://example.invalid/{vid or title}", video_id=vid or title, title=title,
                     duration_s=duration, channel=channel)  # fmt: skip


def rank(cands: list[Candidate], *, title: str = "Blue Monday", artists: tuple[str, ...] = ("New Order",),
         duration: float | None = 448.0) -> list[youtube.Match]:  # fmt: skip
    return youtube.rank_candidates(cands, title=title, artists=list(artists), duration_s=duration, cfg=CFG)


def test_official_audio_within_tolerance_ranks_first() -> None:
    ranked = rank(
        [
            cand("New Order - Blue Monday (Live at Glastonbury)", 450),
            cand("New Order - Blue Monday '88 (Official Music Video)", 449),
            cand("New Order - Blue Monday (Official Audio)", 447),
            cand("Blue Monday", 448, channel="New Order - Topic", vid="topic"),
        ]
    )
    best = ranked[0]
    assert best.accepted and best.official
    assert {m.candidate.video_id for m in ranked[:2]} == {"topic", "New Order - Blue Monday (Official Audio)"}
    assert ranked[-1].candidate.title.endswith("(Live at Glastonbury)")  # "live" is penalised
    assert all(0 <= m.title_similarity <= 1 for m in ranked)


def test_far_off_duration_and_other_songs_are_rejected_with_reasons() -> None:
    ranked = rank(
        [
            cand("New Order - Blue Monday (10 hour loop)", 36_000),
            cand("Fats Domino - Blue Monday", 140),
            cand("Some Artist - Completely Different Song", 448),
        ]
    )
    assert not any(m.accepted for m in ranked)
    reasons = {m.candidate.title: m.reason for m in ranked}
    assert "off by 35552 s" in reasons["New Order - Blue Monday (10 hour loop)"]
    assert "tolerance 22 s" in reasons["New Order - Blue Monday (10 hour loop)"]  # 5 % of 448 s > 10 s
    assert "duration 140 s vs 448 s" in reasons["Fats Domino - Blue Monday"]
    assert "title similarity 0.00" in reasons["Some Artist - Completely Different Song"]
    message = youtube.describe_rejections(ranked, query="New Order - Blue Monday")
    assert message.startswith("no candidate within tolerance for 'New Order - Blue Monday' (3 results:")
    assert youtube.describe_rejections([], query="q") == "no search results for 'q'"


def test_duration_tolerance_is_configurable_and_unknown_durations_are_kept() -> None:
    c = cand("New Order - Blue Monday", 475)
    assert not rank([c])[0].accepted
    loose = YoutubeConfig(duration_tolerance_s=30.0)
    assert youtube.score_candidate(c, title="Blue Monday", artists=["New Order"], duration_s=448, cfg=loose).accepted
    unknown = rank([cand("New Order - Blue Monday", None)])[0]
    assert unknown.accepted and unknown.duration_diff_s is None
    assert rank([cand("New Order - Blue Monday", 448)])[0].score > unknown.score


def test_title_similarity_folds_case_accents_and_scripts() -> None:
    sim = youtube.title_similarity
    assert sim(title="Café Del Mar", artists=["Energy 52"], candidate_title="ENERGY 52 - CAFE DEL MAR") == 1.0
    assert sim(title="紅蓮華", artists=["LiSA"], candidate_title="LiSA 『紅蓮華』 Official Audio") == 1.0
    assert youtube.title_similarity(title="Song", artists=[], candidate_title="Other") == 0.0
    assert youtube.search_query(title="Song", artists=["A", "B", "C"]) == "A B - Song"
    assert youtube.search_query(title="Song", artists=[]) == "Song"


def test_a_live_track_is_not_penalised_for_being_live() -> None:
    live = youtube.score_candidate(cand("Nirvana - Lake of Fire (Live)", 174), title="Lake of Fire (Live)",
                                   artists=["Nirvana"], duration_s=174, cfg=CFG)  # fmt: skip
    assert live.accepted and live.score >= 0.89  # 0.9 is the most a non-official upload gets


# ----------------------------------------------------------------------------------------------------------
# yt-dlp against the loopback server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AudioServer]:
    tmp = tmp_path_factory.mktemp("yt")
    with AudioServer() as srv:
        srv.add_file("/tone.mp3", make_audio(tmp / "tone.mp3", seconds=3))
        srv.add_file("/tone.webm", make_audio(tmp / "tone.webm", seconds=3))
        srv.add_file("/tone.m4a", make_audio(tmp / "tone.m4a", seconds=3))
        srv.add_search(
            "artist - song",
            [SearchHit("Artist - Song (Live)", "/tone.mp3", 3.0, "live1"),
             SearchHit("Artist - Song (Official Audio)", "/tone.webm", 3.0, "off1"),
             SearchHit("Song extended mix", "/tone.m4a", None, "ext1")],
        )  # fmt: skip
        yield srv


@pytest.fixture
def cfg(server: AudioServer) -> YoutubeConfig:
    return YoutubeConfig(search=server.search_template, retries=1, backoff_s=0.01, socket_timeout_s=1.0)


def test_search_lists_candidates_with_ids_titles_and_durations(server: AudioServer, cfg: YoutubeConfig) -> None:
    found = youtube.search("Artist - Song", cfg=cfg)
    assert [(c.video_id, c.title, c.duration_s) for c in found] == [
        ("live1", "Artist - Song (Live)", 3.0),
        ("off1", "Artist - Song (Official Audio)", 3.0),
        ("ext1", "Song extended mix", None),
    ]
    assert youtube.search("nothing like it", cfg=cfg) == []
    best = youtube.rank_candidates(found, title="Song", artists=["Artist"], duration_s=3.0, cfg=cfg)[0]
    assert best.candidate.video_id == "off1"


@pytest.mark.parametrize("path", ["/tone.mp3", "/tone.webm", "/tone.m4a"])
def test_download_keeps_the_container_and_names_it_by_id(
    server: AudioServer, cfg: YoutubeConfig, tmp_path: Path, path: str
) -> None:
    dl = youtube.download(server.url(path), tmp_path, cfg=cfg)
    assert dl.path.parent == tmp_path and dl.path.suffix == Path(path).suffix and dl.path.stat().st_size > 1000
    assert dl.video_id == "tone" and dl.extractor == "Generic" and dl.source_url == server.url(path)
    assert not list(tmp_path.glob("*.part"))


def test_404_and_a_page_without_media_fail_at_once(server: AudioServer, cfg: YoutubeConfig, tmp_path: Path) -> None:
    before = server.count("/gone.mp3")
    with pytest.raises(SourceError, match="HTTP 404") as e:
        youtube.download(server.url("/gone.mp3"), tmp_path, cfg=cfg)
    assert not isinstance(e.value, RetryableError) and server.count("/gone.mp3") == before + 1
    with pytest.raises(SourceError, match="no audio or video found"):
        youtube.download(server.url("/page.html"), tmp_path, cfg=cfg)


def test_5xx_and_429_are_retried_honouring_retry_after(server: AudioServer, cfg: YoutubeConfig, tmp_path: Path) -> None:
    server.fail("/tone.mp3", status=503, times=1)
    server.fail("/tone.mp3", status=429, times=1, retry_after=0.3)
    before = server.count("/tone.mp3")
    start = time.monotonic()
    dl = youtube.download(server.url("/tone.mp3"), tmp_path, cfg=YoutubeConfig(retries=2, backoff_s=0.01))
    assert dl.path.is_file() and time.monotonic() - start >= 0.3
    assert server.count("/tone.mp3") == before + 4  # 503, 429, then the extractor's probe and the download


def test_a_source_that_keeps_failing_gives_a_transient_error(
    server: AudioServer, cfg: YoutubeConfig, tmp_path: Path
) -> None:
    server.fail("/tone.m4a", status=502, times=2)
    with pytest.raises(RetryableError, match=r"HTTP 502.*gave up after 2 attempts"):
        youtube.download(server.url("/tone.m4a"), tmp_path, cfg=cfg)


def test_a_slow_server_times_out_as_transient(server: AudioServer, tmp_path: Path) -> None:
    server.fail("/tone.webm", mode="slow", times=1, delay_s=1.5)
    cfg = YoutubeConfig(retries=0, socket_timeout_s=0.5)
    with pytest.raises(RetryableError, match="network fault"):
        youtube.download(server.url("/tone.webm"), tmp_path, cfg=cfg)


def test_a_dropped_connection_mid_download_is_resumed(server: AudioServer, cfg: YoutubeConfig, tmp_path: Path) -> None:
    server.fail("/tone.mp3", mode="truncate", times=1, after=1)
    dl = youtube.download(server.url("/tone.mp3"), tmp_path, cfg=cfg)
    assert dl.path.read_bytes() == server.files["/tone.mp3"][0]


def test_cookies_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="GENRECLF_YOUTUBE_COOKIES_FILE"):
        youtube.ytdlp_options(YoutubeConfig(cookies_file=str(tmp_path / "nope.txt")))
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    opts = youtube.ytdlp_options(YoutubeConfig(cookies_file=str(cookies), sleep_interval_s=2, max_sleep_interval_s=5))
    assert opts["cookiefile"] == str(cookies) and (opts["sleep_interval"], opts["max_sleep_interval"]) == (2, 5)


# YouTube's refusals as yt-dlp raises them: its extractor raises ExtractorError (GeoRestrictedError for regions)
# with YouTube's own reason plus its advice (yt_dlp/extractor/youtube/_video.py, raise_no_formats and
# raise_geo_restricted), and YoutubeDL wraps that in a DownloadError "ERROR: [youtube] ID: ...".
_COOKIES_ADVICE = (
    ". Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/"
    "FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass cookies"
)
REFUSALS = [
    ("Sign in to confirm you\u2019re not a bot" + _COOKIES_ADVICE, "bot", "YouTube's bot check",
     "GENRECLF_YOUTUBE_COOKIES_FILE"),
    ("Sign in to confirm your age. This video may be inappropriate for some users." + _COOKIES_ADVICE, "age",
     "age-restricted", "signed-in adult"),
    ("The uploader has not made this video available in your country", "geo", "region-blocked (available in DE, FR)",
     "another upload"),
    ("Private video. Sign in if you've been granted access to this video" + _COOKIES_ADVICE, "private",
     "a private video", "another upload"),
    ("Video unavailable. This video has been removed by the uploader", "removed", "removed or unavailable",
     "another upload"),
    ("Join this channel to get access to members-only content like this video, and other exclusive perks.",
     "members", "members-only", "a member of the channel"),
    ("Requested format is not available. Use --list-formats for a list of available formats", "formats",
     "no audio format offered", "genreclf doctor"),
    ("HTTP Error 429: Too Many Requests", "429", "rate limited", ""),
]  # fmt: skip


def _as_ytdlp_raises(reason: str, kind: str) -> Exception:
    from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

    cause = (GeoRestrictedError(reason, countries=["DE", "FR"]) if kind == "geo"
             else ExtractorError(reason, expected=True, video_id="abc123", ie="youtube"))  # fmt: skip
    return DownloadError(f"ERROR: {cause.msg}", exc_info=(type(cause), cause, None))


@pytest.mark.parametrize(("reason", "kind", "says", "what_to_do"), REFUSALS, ids=[r[1] for r in REFUSALS])
def test_youtube_refusals_are_named_with_what_to_do(reason: str, kind: str, says: str, what_to_do: str) -> None:
    from genreclf.errors import BotCheckError

    err = youtube.classify(_as_ytdlp_raises(reason, kind), what="download abc123")

    assert f"download abc123: {says}" in str(err) and what_to_do in str(err), str(err)
    assert "--cookies-from-browser" not in str(err)  # yt-dlp's advice about its own options, not ours
    assert isinstance(err, BotCheckError) == (kind == "bot")  # not the video's fault: not remembered
    assert isinstance(err, RetryableError) == (kind == "429")


def test_a_bot_check_stops_its_batch_and_blames_no_track() -> None:
    from genreclf.acquisition.acquire import TrackResult, acquire_rows
    from genreclf.errors import BotCheckError

    asked: list[str] = []

    def acquire(row: dict) -> TrackResult:
        asked.append(row["track_id"])
        if row["track_id"] == "t2":
            raise youtube.classify(_as_ytdlp_raises(REFUSALS[0][0], "bot"), what="download abc123")
        return TrackResult(row["track_id"], True)

    rows = [{"track_id": f"t{i}"} for i in range(1, 6)]
    results = acquire_rows(rows, acquire)  # type: ignore[arg-type]

    assert asked == ["t1", "t2"]  # t3..t5 are not asked for: each request makes a block likelier
    assert [r.track_id for r in results] == ["t1", "t2", "t3", "t4", "t5"]
    assert results[0].ok and not any(r.ok for r in results[1:])
    assert "YouTube's bot check" in results[1].reason and "a rerun tries again" in results[1].reason
    assert all("not tried, YouTube's bot check stopped its batch" in r.reason for r in results[2:])
    assert issubclass(BotCheckError, TransientSourceError)  # not written as the track's failure (acquire_track)


# ----------------------------------------------------------------------------------------------------------
# Settings: every GENRECLF_YOUTUBE_<FIELD> reaches YoutubeConfig


def _other_value(value: object, name: str) -> object:
    if value is None:
        return f"/tmp/{name}.txt"  # cookies_file
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value + 1.25
    return f"{value}-{name}"


def test_every_youtube_variable_reaches_youtube_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import os
    import re

    from genreclf.settings import Settings, get_settings

    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for var in [v for v in os.environ if v.startswith("GENRECLF_YOUTUBE_")]:
        monkeypatch.delenv(var)
    assert get_settings().youtube == YoutubeConfig()  # the defaults are YoutubeConfig's, declared once

    want = {f.name: _other_value(f.default, f.name) for f in dataclasses.fields(YoutubeConfig)}
    for name, value in want.items():
        monkeypatch.setenv(f"GENRECLF_YOUTUBE_{name.upper()}", str(value))
    monkeypatch.setenv("GENRECLF_YOUTUBE_RATE_LIMIT", "yt-rate")  # a Settings field of its own, not YoutubeConfig's
    settings = get_settings()
    assert dataclasses.asdict(settings.youtube) == want
    assert settings.youtube_rate_limit == "yt-rate"

    (tmp_path / ".env").write_text("GENRECLF_YOUTUBE_CANDIDATES=9\n")
    monkeypatch.delenv("GENRECLF_YOUTUBE_CANDIDATES")
    assert get_settings().youtube.candidates == 9  # a .env file works as it does for every setting

    # Every GENRECLF_YOUTUBE_* name the README and docs/ document is read.
    root = Path(__file__).parents[1]
    docs = "".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    documented = set(re.findall(r"GENRECLF_YOUTUBE_([A-Z_]+[A-Z])", docs))
    known = {n.upper() for n in want} | {n.removeprefix("youtube_").upper() for n in Settings.model_fields}
    assert documented and documented <= known, documented - known


def test_a_download_in_a_task_thread_stops_once_the_command_is_interrupted(
    server: AudioServer, cfg: YoutubeConfig, tmp_path: Path
) -> None:
    # The signal interrupts the main thread only; a download in a task thread stops at its next chunk, so the
    # Ctrl-C does not wait for it (Prefect's task runner waits for running tasks as the flow unwinds).
    import os
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from genreclf import interrupts

    with interrupts.handled():
        with pytest.raises(interrupts.Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        with ThreadPoolExecutor(1) as pool, pytest.raises(interrupts.Interrupted):
            pool.submit(youtube.download, server.url("/tone.mp3"), tmp_path, cfg=cfg).result()
    assert not list(tmp_path.glob("*.mp3"))  # nothing that looks finished; a .part resumes on the rerun
    assert youtube.download(server.url("/tone.mp3"), tmp_path, cfg=cfg).path.is_file()  # once handled() is over
