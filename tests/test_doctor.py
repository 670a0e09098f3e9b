"""`genreclf doctor`: each check against the real thing (ffmpeg, yt-dlp's own solver under Deno, the Spotify
stand-in, a store, a Prefect URL), green on this machine, red with the fix when something is missing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from genreclf.app import doctor
from genreclf.app.cli import main
from genreclf.settings import Settings
from genreclf.sources import youtube, youtube_js
from genreclf.sources.youtube_config import YoutubeConfig
from tests.s3server import free_ports
from tests.spotify_standin import SpotifyStandin


def test_a_machine_set_up_by_the_readme_is_green_but_for_what_needs_credentials(
    tmp_path: Path, musicnn_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)

    assert main(["doctor", "--store", str(tmp_path / "store")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "everything genreclf needs is here"
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]  # the probe is gone

    # yt-dlp's age is dated the day after its release: whenever the suite runs, a fresh install is green.
    released = doctor.ytdlp_release_date(__import__("yt_dlp.version").version.__version__)
    assert released is not None
    checks = doctor.run_checks(store_url=str(tmp_path / "store"), today=released)
    assert {c.name: c.status for c in checks} == {"ffmpeg": "ok", "yt-dlp": "ok", "javascript": "ok",
        "spotify": "skip", "store": "ok", "prefect": "ok", "device": "ok", "weights": "ok"}, checks  # fmt: skip


def test_the_challenge_solver_runs_under_deno_as_genreclf_configures_yt_dlp() -> None:
    found = youtube_js.challenge_solver(YoutubeConfig())
    assert found.ok, found
    assert found.detail.startswith("deno 2.") and "yt-dlp-ejs 0.8" in found.detail and "solved a test" in found.detail
    assert youtube.ytdlp_options(YoutubeConfig())["js_runtimes"]["deno"]["path"].endswith("deno")


def test_a_missing_or_unknown_javascript_runtime_is_red_with_the_fix(tmp_path: Path) -> None:
    gone = youtube_js.challenge_solver(YoutubeConfig(js_runtime_path=str(tmp_path / "deno")))
    assert not gone.ok and "GENRECLF_YOUTUBE_JS_RUNTIME_PATH" in gone.detail and "no such file" in gone.detail
    other = youtube_js.challenge_solver(YoutubeConfig(js_runtime="rhino"))
    assert not other.ok and "use one of deno, node, bun, quickjs" in other.detail
    fake = tmp_path / "quickjs"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    broken = youtube_js.challenge_solver(YoutubeConfig(js_runtime="quickjs", js_runtime_path=str(fake)))
    assert not broken.ok and broken.detail.startswith("no usable quickjs") and "yt-dlp[default,deno]" in broken.fix


def test_extractor_args_take_yt_dlps_syntax_for_po_token_providers() -> None:
    parsed = youtube_js.parse_extractor_args(
        "youtubepot-bgutilhttp:base_url=http://127.0.0.1:4416 youtube:po_token=web.gvs+A,web.player+B;fetch_pot=never"
    )
    assert parsed == {"youtubepot-bgutilhttp": {"base_url": ["http://127.0.0.1:4416"]},
                      "youtube": {"po_token": ["web.gvs+A", "web.player+B"], "fetch_pot": ["never"]}}  # fmt: skip
    assert youtube.ytdlp_options(YoutubeConfig(extractor_args="youtube:fetch_pot=never"))["extractor_args"] == {
        "youtube": {"fetch_pot": ["never"]}
    }
    with pytest.raises(Exception, match="is not KEY:ARG=VALUE"):
        youtube_js.parse_extractor_args("base_url")


def test_yt_dlp_older_than_60_days_is_a_warning() -> None:
    assert doctor.ytdlp_release_date("2026.11.23") == date(2026, 11, 23)
    assert doctor.ytdlp_release_date("2026.11.23.194512") == date(2026, 11, 23)  # a nightly build
    assert doctor.ytdlp_release_date("unknown") is None
    installed = doctor.ytdlp_release_date(__import__("yt_dlp.version").version.__version__)
    assert installed is not None
    assert doctor.check_ytdlp_age(installed).status == "ok"
    late = doctor.check_ytdlp_age(date.fromordinal(installed.toordinal() + 61))
    assert late.status == "warn" and "61 days old" in late.detail and "pip install -U" in late.fix


def test_no_ffmpeg_on_path_is_red(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    found = doctor.check_ffmpeg()
    assert found.status == "fail" and "not on PATH" in found.detail and "apt-get install -y ffmpeg" in found.fix


def test_spotify_credentials_are_tried_against_the_configured_api(monkeypatch: pytest.MonkeyPatch) -> None:
    with SpotifyStandin(client_id="doc-id", client_secret="doc-secret") as api:
        settings = Settings(spotify_api_url=api.api_url, spotify_token_url=api.token_url)
        monkeypatch.setenv("SPOTIPY_CLIENT_ID", "doc-id")
        monkeypatch.setenv("SPOTIPY_CLIENT_SECRET", "doc-secret")
        good = doctor.check_spotify(settings)
        monkeypatch.setenv("SPOTIPY_CLIENT_SECRET", "wrong")
        bad = doctor.check_spotify(settings)
        token_url = api.token_url
    assert good.status == "ok" and token_url in good.detail, good
    assert bad.status == "fail" and "SPOTIPY_CLIENT_SECRET" in bad.fix, bad


def test_an_unwritable_store_and_a_silent_prefect_api_are_red_and_the_exit_code_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    (port,) = free_ports(1)
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")

    assert main(["doctor", "--store", str(blocker / "store"), "--format", "json"]) == 1

    found = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in found["checks"]}
    assert found["ok"] is False
    assert by_name["store"]["status"] == "fail" and "GENRECLF_STORAGE_URL" in by_name["store"]["fix"]
    assert by_name["prefect"]["status"] == "fail" and "does not answer /health" in by_name["prefect"]["detail"]
