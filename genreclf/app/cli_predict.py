"""The `genreclf predict` command: the top genres of files, folders and URLs, with a champion or a named run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from genreclf.errors import ConfigError, GenreclfError

if TYPE_CHECKING:
    from genreclf.reports.predict import Predictor


def add_parser(command: Callable[[str, str], argparse.ArgumentParser], *, device_help: str) -> None:
    """Add `predict` with `command(name, help)`, which makes a subcommand's parser."""
    p = command("predict", "print the top genres of audio files with the champion (or --model)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE_DIR_OR_URL",
        help="audio files (any format ffmpeg reads), folders (the audio files under them) or http(s) URLs (direct "
        "files, YouTube videos)",
    )
    p.add_argument("--model", help="a run id or model URI in the store (default: a champion, see --line)")
    p.add_argument("--line", help="the champion of this line (an id `genreclf status` lists, or its start; a line "
                   "is the models predicting the same genres from the same features); default: the champion "
                   "promoted most recently")  # fmt: skip
    p.add_argument("--store", help="storage root (default $GENRECLF_STORAGE_URL or ./genreclf-data)")
    p.add_argument("--top", type=int, default=3, help="genres to show per file")
    p.add_argument("--timeline", action="store_true", help="also print the top genre of every window")
    p.add_argument("--format", choices=["csv", "json"], help="write a row per input to stdout (path, top genre, its "
                   "probability, every genre's, error) for scripts, instead of the text lines")  # fmt: skip
    p.add_argument("--device", help=device_help)
    p.set_defaults(func=cmd_predict)


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _expand_inputs(inputs: list[str]) -> list[str]:
    """Files and URLs as given; a folder becomes the audio files under it."""
    from genreclf.reports.predict import audio_files_under

    out: list[str] = []
    for source in inputs:
        is_dir = "://" not in source and Path(source).expanduser().is_dir()
        out += [str(p) for p in audio_files_under(source)] if is_dir else [source]
    return out


def genres(labels: list[str], shown: int = 4) -> str:
    """ "4 genres: a, b, c, d", the first `shown` named."""
    more = f", ... ({len(labels)} in all)" if len(labels) > shown else ""
    return f"{len(labels)} genres: {', '.join(labels[:shown])}{more}"


def _which_model(predictor: Predictor, args: argparse.Namespace) -> str:
    """Which model predicts: a run named by --model, or the champion of a line, and which line."""
    from genreclf.reports import registry
    from genreclf.store.storage import Store

    if args.model:
        return f"{predictor.key} ({genres(predictor.labels)})"
    store = Store.open(args.store)
    lines = registry.champions(store)
    champion = registry.read_champion(store, args.line)
    if champion is None:  # gone since the predictor loaded it
        return predictor.key
    which = ("the champion of line " + champion["line"] if args.line or len(lines) == 1
             else f"the most recently promoted champion, of line {champion['line']} ({len(lines)} lines have one: "
                  "--line picks another, `genreclf status` lists them)")  # fmt: skip
    return f"{which}: run {champion['run_id']} ({genres(predictor.labels)})"


def cmd_predict(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from genreclf.reports.predict import open_predictor, predict_rows, write_predictions

    if args.model and args.line:
        raise ConfigError("--model names a run and --line a champion: give one of them")
    inputs = _expand_inputs(args.inputs)
    predictor = open_predictor(args.store, args.model, args.device, line=args.line)
    note = f"model: {_which_model(predictor, args)} on {predictor.device}"
    if args.format:  # machine-readable rows on stdout; everything else on stderr
        print(note, file=sys.stderr)
        failed = write_predictions(predict_rows(predictor, inputs), args.format, sys.stdout, labels=predictor.labels)
        if failed:
            print(f"{failed} of {len(inputs)} inputs failed", file=sys.stderr)
        return 1 if failed else 0
    print(note)
    failed = 0
    with Progress(transient=True, disable=len(inputs) < 2, console=Console(stderr=True)) as progress:
        bar = progress.add_task("predicting", total=len(inputs))
        for source in inputs:
            try:
                pred = predictor.predict_input(source)
            except GenreclfError as e:
                progress.console.print(
                    f"{source}: error: {e}", style="red", markup=False, highlight=False, soft_wrap=True
                )
                failed += 1
            else:
                top = ", ".join(f"{g} {p:.2f}" for g, p in pred.top(args.top))
                print(f"{source}: {top}", flush=True)
                if args.timeline:
                    win = predictor.seg.window_s
                    for off, p in zip(pred.offsets_s, pred.window_probabilities, strict=True):
                        i = int(p.argmax())
                        print(f"  {_clock(off)}-{_clock(off + win)}  {pred.labels[i]} {p[i]:.2f}", flush=True)
            progress.advance(bar)
    if failed:
        print(f"{failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
