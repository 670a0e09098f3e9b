"""yt-dlp's JavaScript side: which runtime solves YouTube's challenges, extra extractor arguments (PO tokens), and
whether the runtime and the challenge solver (yt-dlp-ejs) work here, as `genreclf doctor` asks."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import yt_dlp

from genreclf.errors import ConfigError
from genreclf.sources.youtube_config import YoutubeConfig

JS_RUNTIMES = ("deno", "node", "bun", "quickjs")  # what yt-dlp can run YouTube's challenge solver with


def js_runtimes(cfg: YoutubeConfig) -> dict[str, dict[str, str]]:
    """yt-dlp's `js_runtimes` option: the configured runtime and where it is.

    Deno is the one installed with genreclf (the `deno` package); yt-dlp finds it beside its own executable only
    when the virtualenv's bin is on its search path, so it is always given by path. Another runtime without a path
    is looked for on PATH by yt-dlp.
    """
    name = cfg.js_runtime.strip().lower()
    if name not in JS_RUNTIMES:
        raise ConfigError(f"GENRECLF_YOUTUBE_JS_RUNTIME={cfg.js_runtime!r}: use one of {', '.join(JS_RUNTIMES)}")
    path = cfg.js_runtime_path
    if path is None and name == "deno":
        import deno

        with contextlib.suppress(FileNotFoundError):  # a broken install: yt-dlp then looks on PATH
            path = deno.find_deno_bin()
    if path is not None and not Path(path).exists():
        raise ConfigError(f"GENRECLF_YOUTUBE_JS_RUNTIME_PATH={path}: no such file; give the {name} executable")
    return {name: {"path": str(path)} if path else {}}


def parse_extractor_args(text: str) -> dict[str, dict[str, list[str]]]:
    """yt-dlp's `extractor_args` from --extractor-args' syntax, several separated by spaces:
    "youtubepot-bgutilhttp:base_url=http://127.0.0.1:4416 youtube:po_token=web.gvs+A,web.player+B"."""
    found: dict[str, dict[str, list[str]]] = {}
    for item in text.split():
        key, colon, args = item.partition(":")
        pairs = [pair.partition("=") for pair in args.split(";") if pair]
        if not key or not colon or not pairs or any(not eq or not k for k, eq, _ in pairs):
            raise ConfigError(
                f"GENRECLF_YOUTUBE_EXTRACTOR_ARGS: {item!r} is not KEY:ARG=VALUE[;ARG=VALUE] (yt-dlp's "
                "--extractor-args), e.g. youtubepot-bgutilhttp:base_url=http://127.0.0.1:4416"
            )
        for k, _, v in pairs:
            found.setdefault(key.lower(), {})[k] = v.split(",")
    return found


@dataclass(frozen=True)
class SolverStatus:
    ok: bool
    detail: str
    fix: str = ""


# A player as small as yt-dlp's challenge solver (yt-dlp-ejs) accepts: a function that marks a URL "alr=yes" and a
# URL object whose extra method transforms its n and s parameters (here: reversed). Real players are megabytes of
# obfuscated code; this one only proves that the runtime, the solver and yt-dlp's wiring work together, offline.
_TEST_PLAYER = r"""
(function(g){
var Url = function(u){ this.p = {}; };
Url.prototype.set = function(k, v){ this.p[k] = v; };
Url.prototype.get = function(k){ return this.p[k]; };
Url.prototype.clone = function(){ return this; };
Url.prototype.tx = function(){
  if (this.p.n) this.p.n = this.p.n.split("").reverse().join("") + "_n";
  if (this.p.s) this.p.s = encodeURIComponent(decodeURIComponent(this.p.s).split("").reverse().join(""));
};
var mk = function(base, sp, sig){ var u = new Url(base); u.set("alr", "yes"); if (sig) u.set(sp, sig); return u; };
}).call(this);
"""
_TEST_PLAYER_URL = "https://www.youtube.com/s/player/00000000/player_ias.vflset/en_US/base.js"
_SOLVER_FIX = "pip install -U 'yt-dlp[default,deno]' (bash infra/setup.sh does), or point GENRECLF_YOUTUBE_JS_RUNTIME"


def challenge_solver(cfg: YoutubeConfig) -> SolverStatus:
    """Whether yt-dlp, as genreclf configures it, has its JavaScript runtime and the EJS challenge solver, and
    whether they solve a test n and signature challenge (a synthetic player, offline). This reads yt-dlp's own
    internals (its runtime table and challenge director, as its --verbose output does): a yt-dlp that changed
    them is reported as such, not as broken."""
    from yt_dlp.dependencies import yt_dlp_ejs

    from genreclf.sources.youtube import ytdlp_options

    try:
        ydl = yt_dlp.YoutubeDL(ytdlp_options(cfg, cachedir=False))
    except ConfigError as e:
        return SolverStatus(False, str(e), "fix the setting, or unset it")
    name = next(iter(ydl.params["js_runtimes"]))
    runtime = (ydl._js_runtimes or {}).get(name)
    info = getattr(runtime, "info", None)
    if info is None or not info.supported:
        where = ydl.params["js_runtimes"][name].get("path") or "PATH"
        why = "too old" if info is not None else "not found"
        return SolverStatus(False, f"no usable {name} ({why}, looked in {where}): YouTube downloads fail with "
                            "'Requested format is not available'", _SOLVER_FIX)  # fmt: skip
    runtime_line = f"{name} {info.version} at {info.path}"
    if yt_dlp_ejs is None:
        return SolverStatus(False, f"{runtime_line}, but not yt-dlp-ejs (the challenge solver)", _SOLVER_FIX)
    try:
        from yt_dlp.extractor.youtube.jsc._director import initialize_jsc_director
        from yt_dlp.extractor.youtube.jsc.provider import (
            JsChallengeRequest,
            JsChallengeType,
            NChallengeInput,
            SigChallengeInput,
        )

        extractor = ydl.get_info_extractor("Youtube")
        extractor._code_cache[extractor._player_js_cache_key(_TEST_PLAYER_URL)] = _TEST_PLAYER  # no download
        director = initialize_jsc_director(extractor)
        requests = [
            JsChallengeRequest(JsChallengeType.N, NChallengeInput(_TEST_PLAYER_URL, ["abcdef"]), "genreclf"),
            JsChallengeRequest(JsChallengeType.SIG, SigChallengeInput(_TEST_PLAYER_URL, ["0123456789"]), "genreclf"),
        ]
        t0 = time.perf_counter()
        solved = {req.type.value: resp.output.results for req, resp in director.bulk_solve(requests)}
        seconds = time.perf_counter() - t0
    except (ImportError, AttributeError, TypeError) as e:
        return SolverStatus(False, f"{runtime_line}, yt-dlp-ejs {yt_dlp_ejs.version}: this yt-dlp's challenge "
                            f"solver cannot be asked ({type(e).__name__}: {e})", _SOLVER_FIX)  # fmt: skip
    except Exception as e:  # what the solver raises when it fails is its own
        return SolverStatus(False, f"{runtime_line}, yt-dlp-ejs {yt_dlp_ejs.version}: the test challenge failed "
                            f"({type(e).__name__}: {e})", _SOLVER_FIX)  # fmt: skip
    if solved != {"n": {"abcdef": "fedcba_n"}, "sig": {"0123456789": "9876543210"}}:
        return SolverStatus(False, f"{runtime_line}: the test challenge was solved wrong ({solved})", _SOLVER_FIX)
    return SolverStatus(True, f"{runtime_line}; yt-dlp-ejs {yt_dlp_ejs.version} solved a test n and signature "
                        f"challenge in {seconds * 1000:.0f} ms")  # fmt: skip
