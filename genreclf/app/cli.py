"""The `genreclf` command: demo, run, predict, status, server, the label audit, and Spotify's ingest and login."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from genreclf import interrupts
from genreclf.app.cli_predict import genres
from genreclf.errors import ConfigError, GenreclfError, ModelError

if TYPE_CHECKING:
    from genreclf.flows.pipeline import PipelineResult


def _print_summary(out: PipelineResult, seconds: float) -> None:
    report = out["report"]
    print(f"\nDone in {seconds:.0f} s.")
    print(f"  store:     {out['store']}")
    print(f"  catalog:   {out['catalog_version']}")
    print(f"  shards:    {len(out['shards'])} (manifest {out['manifest_uri']})")
    print(f"  model:     {out['model_uri']}")
    print(f"  report:    {out['report_uri']}")
    print(f"  confusion: {out['confusion_png']}")
    if promotion := report.get("promotion"):  # why is in the log above; here, which model predicts now
        now = "this run" if promotion["promote"] else f"run {promotion.get('champion')}, still"
        print(f"  champion:  {now}, of line {promotion.get('line')} ({genres(report['labels'])})")
    if out["quarantine"]:
        print(f"  left out {len(out['quarantine'])} catalog entr{'y' if len(out['quarantine']) == 1 else 'ies'}:")
        for q in out["quarantine"]:
            print(f"    [{q['stage']}] {q['reason']}")
    for warning in report.get("warnings", []):
        print(f"  warning:   {warning}")
    print("\nTest accuracy (segment / track):")
    for name, rep in report["models"].items():
        print(f"  {name:<14} {rep['segment']['accuracy']:.3f} / {rep['track']['accuracy']:.3f}")
    per_genre = report["models"][report["model"]]["track"]["per_genre"]
    print(f"\nPer genre ({report['model']}, per track):")
    print(f"  {'genre':<16} {'recall':>7} {'precision':>10} {'tracks':>7}")
    for genre, m in per_genre.items():
        print(f"  {genre:<16} {m['recall']:>7.3f} {m['precision']:>10.3f} {m['support']:>7}")


def _run_pipeline(catalog_dir: Path, args: argparse.Namespace) -> int:
    from genreclf.app.console import live_stages
    from genreclf.app.prefect_setup import prefect_api
    from genreclf.models import default_model, is_pretrained
    from genreclf.models.inference import resolve_device

    resolve_device(args.device)  # a device this machine lacks fails at once, before any flow starts
    if not args.model:
        args.model, why = default_model()
        print(why)
    _check_weights(args.model)
    if args.finetune and not is_pretrained(args.model):
        raise ConfigError(f"--finetune fine-tunes a pretrained network; {args.model} is trained from scratch anyway")
    from genreclf.flows.params import DatasetParams, TrainParams
    from genreclf.flows.pipeline import pipeline

    dataset = DatasetParams.small() if args.small else DatasetParams()
    if getattr(args, "split_file", None):
        dataset = dataset.model_copy(update={"split_file": args.split_file})
    training = TrainParams.small() if args.small else TrainParams()
    options = {"epochs": args.epochs, "model": args.model, "device": args.device, "seed": args.seed,
               "finetune": args.finetune or None}  # fmt: skip
    updates = {k: v for k, v in options.items() if v is not None}
    training = training.model_copy(update=updates)
    t0 = time.perf_counter()
    with prefect_api(), live_stages(verbose=args.verbose) as display, interrupts.describing(display.running):
        out = pipeline(str(catalog_dir), storage_url=args.store, dataset=dataset, training=training,
                       keep_checkpoint=args.keep_checkpoint)  # fmt: skip
    _print_summary(out, time.perf_counter() - t0)
    return 0


def _check_weights(model: str | None) -> None:
    """A pretrained model whose weights are not cached fails at once, saying what to run, before any flow starts."""
    from genreclf.models import is_pretrained

    if model and is_pretrained(model):
        from genreclf.models import weights

        if not (found := weights.status(model))["ok"]:
            raise ModelError(f"--model {model}: pretrained weights {found['why']}")


def _demo_store(args: argparse.Namespace) -> tuple[str, bool]:
    """The store the demo writes to, and whether it is the default one `status` and `predict` read.

    The default store, unless it already holds a champion of another catalog: the demo's would be the most
    recently promoted, the one `predict` uses by default, and tell drones from chirps.
    """
    from genreclf.app import demo
    from genreclf.reports import registry
    from genreclf.settings import get_settings
    from genreclf.store.storage import Store

    configured = get_settings().storage_url
    default = Store.open(configured)
    if args.store:
        return args.store, Store.open(args.store).url == default.url
    others = [c for c in registry.champions(default) if sorted(c.get("labels", [])) != sorted(demo.GENRES)]
    if not others:
        return configured, True
    own = str(Path(args.dir) / "store")
    print(f"{default.url} holds a champion of another catalog; the demo keeps its own store in {own}")
    return own, False


def cmd_demo(args: argparse.Namespace) -> int:
    from genreclf.app.demo import make_demo_catalog

    root = make_demo_catalog(Path(args.dir) / "catalog", tracks_per_genre=args.tracks)
    print(f"Synthesized a demo catalog in {root}")
    args.store, is_default = _demo_store(args)
    args.small = True
    code = _run_pipeline(root, args)
    example = sorted((root / "chirp").iterdir())[0]
    store_opt = "" if is_default else f" --store {args.store}"
    print("\nNext:")
    print(f"  genreclf status{store_opt}")
    print(f"  genreclf predict {example}{store_opt}")
    print("  genreclf run --catalog YOUR_FOLDER   (laid out YOUR_FOLDER/<genre>/<audio files>)")
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from genreclf.sources import local

    # Fail in a second, before any server starts, if the folder is not a catalog: its layout only, quietly, as the
    # flow's own scan reads and fingerprints the files and says what it found.
    scan_log = logging.getLogger(local.__name__)
    level = scan_log.level
    scan_log.setLevel(logging.WARNING)
    try:
        local.scan_folder(args.catalog, fingerprint=False)
    finally:
        scan_log.setLevel(level)
    return _run_pipeline(Path(args.catalog), args)


def cmd_status(args: argparse.Namespace) -> int:
    from genreclf.datasets import manifest, shards
    from genreclf.ingest import catalog, overrides
    from genreclf.reports import registry
    from genreclf.store.storage import Store

    store = Store.open(args.store)
    print(f"store:    {store.url}")
    try:
        df = catalog.read_catalog(store)
        print(f"catalog:  {catalog.resolve_version(store)} ({df.height} tracks, {df['genre'].n_unique()} genres)")
    except GenreclfError as e:
        print(f"catalog:  none ({e})")
    try:
        m = manifest.read_manifest(store)
        print(f"dataset:  {m.dataset_id} ({m.rows()} segments: " + ", ".join(
            f"{s} {m.rows(s)}" for s in shards.SPLITS) + f"; {len(m.labels)} genres)")  # fmt: skip
    except GenreclfError as e:
        print(f"dataset:  none ({e})")
    held = overrides.read_overrides(store)
    if held:
        print(f"labels:   {len(held)} label overrides accepted from audits (version {overrides.latest_version(store)}; "
              "the next build applies them)")  # fmt: skip
    lines = registry.champions(store)
    if not lines:
        print("champion: none")
    for i, champ in enumerate(lines):
        default = " (the default for predict)" if i == 0 and len(lines) > 1 else ""
        print(f"champion: line {champ['line']}{default}: run {champ['run_id']}, track accuracy "
              f"{champ['track_accuracy']:.3f}, {genres(champ.get('labels', []))}; {champ['model_uri']}")  # fmt: skip
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    from genreclf.app import prefect_setup

    if args.action == "start":
        server = prefect_setup.server_start(port=args.port, timeout_s=args.timeout)
        print(f"Prefect server at {server.url} (pid {server.pid}, log {server.log}); "
              f"UI {server.url.removesuffix('/api')}")  # fmt: skip
        print("genreclf commands and flows run from Python use it while it runs; `genreclf server stop` stops it")
        return 0
    if args.action == "stop":
        stopped = prefect_setup.server_stop()
        print(f"stopped the Prefect server at {stopped.url} (pid {stopped.pid})" if stopped
              else "no server recorded (none started with `genreclf server start`)")  # fmt: skip
        return 0
    status = prefect_setup.server_status()
    if status is None:
        print("no server recorded; `genreclf server start` starts one")
        return 1
    state = ("healthy" if status.healthy else "running but not answering" if status.running
             else "not running (a stale record; `genreclf server start` replaces it)")  # fmt: skip
    print(f"{status.server.url} (pid {status.server.pid}): {state}; log {status.server.log}")
    return 0 if status.healthy else 1


DEVICE_HELP = "cpu, cuda, cuda:1 or mps (default $GENRECLF_DEVICE, else CUDA when there is one)"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="storage root: a directory or s3://bucket/prefix (default $GENRECLF_STORAGE_URL "
                   "or ./genreclf-data)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
    p.add_argument("--model", help="musicnn-msd or musicnn-mtt: a head on that pretrained network (`genreclf "
                   "weights fetch` gets them; musicnn-msd is the default when it is there); resnet18 or small_cnn: "
                   "from scratch (resnet18 is the default without the weights)")  # fmt: skip
    p.add_argument("--finetune", action="store_true", help="with a pretrained --model: fine-tune the whole network "
                   "(minutes an epoch on a CPU; use a GPU) instead of a head on its frozen embeddings")  # fmt: skip
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, help="seed of the model's initialisation, its crops and the baselines "
                   "(default 0; the split does not depend on it)")  # fmt: skip
    p.add_argument("--keep-checkpoint", action="store_true", help="keep the finished run's resumable checkpoint "
                   "(its optimizer state; removed by default: the best model and its history stay)")  # fmt: skip


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has a real one (not None or False, which the help text words itself)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse that, on an error, suggests the option or command closest to what was mistyped (difflib): a
    mistyped option whose command then lacks a required one is named, not only the missing option."""

    _given: list[str]  # what it was last asked to parse (set in parse_known_args)

    def parse_known_args(  # type: ignore[override]  # argparse's overloads, one signature here
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        super().error(message + self.suggestion())

    def _subcommands(self) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
        return next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)

    def commands(self) -> dict[str, argparse.ArgumentParser]:
        """The subcommands' parsers, by name (none for a parser without subcommands)."""
        found = self._subcommands()
        return dict(found.choices) if found else {}

    def innermost(self, args: argparse.Namespace) -> _Parser:
        """The parser of the (sub)command `args` were parsed for: `weights fetch`'s, not `genreclf`'s."""
        found = self._subcommands()
        chosen = found.choices.get(getattr(args, found.dest, None) or "") if found else None
        return chosen.innermost(args) if isinstance(chosen, _Parser) else self

    def unrecognized(self, extra: list[str]) -> NoReturn:
        self._given = extra
        self.error(f"unrecognized arguments: {' '.join(extra)}")

    def suggestion(self) -> str:
        options = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for token in getattr(self, "_given", []):
            word = token.split("=", 1)[0]
            if word.startswith("--") and not any(o.startswith(word) for o in options):
                close = difflib.get_close_matches(word, options, n=1)
                hints += [f"{word}: did you mean {close[0]}?"] if close else []
            elif self.commands() and not word.startswith("-") and word not in self.commands():
                close = difflib.get_close_matches(word, list(self.commands()), n=1)
                hints += [f"{word}: did you mean {close[0]}?"] if close else []
                break  # only the first positional is a command
        return "".join(f"\n  {h}" for h in hints)


def build_parser() -> argparse.ArgumentParser:
    from genreclf import __version__

    parser = _Parser(
        prog="genreclf",
        description="Music-genre classifiers from music catalogs. Start with `genreclf demo`.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and Prefect's engine lines")
    parser.add_argument("--version", action="version", version=f"genreclf {__version__}")
    # Subcommands are _Parsers too (argparse makes them of the parent's class); typed as plain ones for the modules
    # that add theirs.
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", metavar="COMMAND")
    )

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              formatter_class=_HelpFormatter)  # fmt: skip

    p = command("demo", "synthesize a small folder catalog and run the whole pipeline on it")
    p.add_argument("--dir", default="genreclf-demo", help="where the demo catalog goes (and its store, when the "
                   "default store already holds a champion of another catalog)")  # fmt: skip
    p.add_argument("--tracks", type=int, default=10, help="tracks per genre")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = command("run", "run the whole pipeline on a folder catalog ROOT/<genre>/<file>")
    p.add_argument("--catalog", required=True, help="folder laid out ROOT/<genre>/<audio file>")
    p.add_argument("--small", action="store_true", help="3 s windows, 64 mels, 8 epochs: a CPU-sized run")
    p.add_argument("--split-file", help="a predefined split, PATH,SPLIT per line (e.g. GTZAN's artist-filtered "
                   "split; .wav names match .au or re-encoded files); default: 60/20/20 grouped by artist")  # fmt: skip
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    from genreclf.app.cli_predict import add_parser as add_predict_parser

    add_predict_parser(command, device_help=DEVICE_HELP)

    p = command("status", "print the latest catalog and dataset, and the champion of each line")
    p.add_argument("--store", help="storage root (default $GENRECLF_STORAGE_URL or ./genreclf-data)")
    p.set_defaults(func=cmd_status)

    p = command("server", "start, stop or check a local Prefect server that later runs reuse (no start-up per run)")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, default=4200, help="port on 127.0.0.1 (start)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for it to answer (start)")
    p.set_defaults(func=cmd_server)

    from genreclf.app.cli_audit import add_parser as add_audit_parser
    from genreclf.app.cli_doctor import add_parser as add_doctor_parser
    from genreclf.app.cli_spotify import add_parsers as add_spotify_parsers
    from genreclf.app.cli_store import add_parsers as add_store_parsers
    from genreclf.app.cli_weights import add_parser as add_weights_parser

    add_audit_parser(sub)
    add_store_parsers(sub)
    add_spotify_parsers(sub)
    add_weights_parser(sub)
    add_doctor_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args: argparse.Namespace | None = None
    # First of all, so that a Ctrl-C a moment after Enter gets the same one line.
    with interrupts.handled(line=lambda stopped: _interrupted_line(stopped, argv)):
        try:
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            if extra and isinstance(parser, _Parser):  # said by the command's own parser, with its usage
                parser.innermost(args).unrecognized(extra)
            elif extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            if args.command is None:
                parser.print_help()
                return 0
            _set_up_logging(verbose=args.verbose)
            return _run_command(args)
        except BaseException:
            if (stopped := interrupts.received()) is None:
                raise
            verbose = bool(getattr(args, "verbose", False))
            interrupts.stop(stopped, _interrupted_line(stopped, argv), quiet=not verbose, cleanup=_drain_logs)


def _drain_logs() -> None:
    """On a running server, the run's last logs reach it (a temporary server is gone by then)."""
    if os.environ.get("PREFECT_API_URL"):
        from genreclf.app.prefect_setup import drain_prefect

        drain_prefect(timeout_s=2.0)


def _set_up_logging(*, verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("genreclf").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:  # flows' own debug lines (a run's whole config) too; read when Prefect sets up its logging
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG")


def _interrupted_line(stopped: interrupts.Interrupted, argv: list[str]) -> str:
    """What the user reads after a Ctrl-C or SIGTERM: what stopped, that the work is kept, how to go on."""
    import shlex

    by = "Ctrl-C" if stopped.signum == signal.SIGINT else signal.Signals(stopped.signum).name
    during = f" {stopped.during}" if stopped.during else ""
    return (f"genreclf: stopped by {by}{during}; what was done is kept, and the same "
            f"command resumes from there: {shlex.join(['genreclf', *argv])}")  # fmt: skip


def _run_command(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except GenreclfError as e:
        if interrupts.received():  # a library that wrapped the interrupt: it is still one
            raise
        print(f"genreclf: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `genreclf predict DIR | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except Exception as e:  # Prefect's temporary server did not start in time: one line, not 40 of traceback
        from genreclf.app.prefect_setup import explain_startup_failure

        if (line := explain_startup_failure(e)) is None:
            raise
        print(f"genreclf: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
