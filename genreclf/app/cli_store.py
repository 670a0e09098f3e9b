"""`genreclf verify` and `genreclf gc`: check a store, and collect what nothing in it keeps."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING

from genreclf.app.cli_audit import STORE_HELP
from genreclf.errors import ConfigError

if TYPE_CHECKING:
    from genreclf.upkeep.gc import Collection
    from genreclf.upkeep.verify import Verification

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="check that what the store's records point at is there and intact; list what nothing refers to",
        description="Check the store: every dataset's shards (size; with --deep, sha256 and rows), splits and "
        "quarantine files, every stored audio with its sidecar (with --deep, decoded against its fingerprint), "
        "every champion's model files against the sha256 in model.json, and the label overrides. Lists what is "
        "missing or corrupt with the key and what to do, and what nothing refers to (orphans: `genreclf gc` "
        "collects them). Repairs nothing. Exit code 1 when anything is missing or corrupt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--deep", action="store_true", help="also read every shard and stored audio")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--orphans", type=int, default=10, help="orphans to print (text), all with --format json")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "gc",
        help="list (or with --apply, delete) the audio, shards, datasets, runs and audits nothing keeps",
        description="Mark from roots (the newest catalog versions and the datasets built from them, the newest "
        "dataset of every lineage, every line's champion, the last runs, audits of kept datasets) and sweep "
        "the rest of audio/, shards/, embeddings/, datasets/, runs/, audits/ and predictions/. Catalogs, label "
        "overrides, the registry and Spotify crawls are never deleted, nor anything younger than --grace. A "
        "dry run unless --apply.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--apply", action="store_true", help="delete what it lists")
    p.add_argument("--keep-catalogs", type=int, default=3, help="newest catalog versions kept, with their datasets")
    p.add_argument("--keep-runs", type=int, default=10, help="newest runs kept (champions are always kept)")
    p.add_argument("--grace", default="1d", help="nothing younger is deleted (a build in progress): 30m, 12h, 1d")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_gc)


def grace_seconds(text: str) -> float:
    m = _DURATION.match(text.strip())
    if m is None:
        raise ConfigError(f"--grace {text!r}: give a number and a unit, e.g. 30m, 12h or 1d")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def cmd_verify(args: argparse.Namespace) -> int:
    import sys

    from genreclf.store.storage import Store
    from genreclf.upkeep.verify import verify

    store = Store.open(args.store)
    stages = (lambda stage: print(f"verify: {stage}", file=sys.stderr)) if sys.stderr.isatty() else None
    result = verify(store, deep=args.deep, on_progress=stages)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_verification(result, orphans=args.orphans)
    return 1 if result.problems else 0


def print_verification(result: Verification, *, orphans: int) -> None:
    checked = ", ".join(f"{n:,} {what}" for what, n in result.checked.items()) or "nothing"
    read = f", read {result.bytes_read / 1e6:,.1f} MB" if result.deep else ""
    print(f"{result.store}: checked {checked} in {result.seconds:.1f} s{read}")
    for f in result.problems:
        print(f"  {f.kind:8} {f.key}: {f.what}\n           {f.fix}")
    if result.orphans:
        print(f"  {len(result.orphans):,} orphans (nothing refers to them; `genreclf gc` lists what it would delete):")
        for f in result.orphans[:orphans]:
            print(f"    {f.key}")
        if len(result.orphans) > orphans:
            print(f"    ... {len(result.orphans) - orphans:,} more (--orphans N, or --format json)")
    missing = sum(f.kind == "missing" for f in result.problems)
    corrupt = len(result.problems) - missing
    print("ok: nothing missing or corrupt" if not result.problems else f"{missing} missing, {corrupt} corrupt")


def cmd_gc(args: argparse.Namespace) -> int:
    from genreclf.store.storage import Store
    from genreclf.upkeep.gc import collect
    from genreclf.upkeep.inventory import Retention

    if args.keep_catalogs < 1 or args.keep_runs < 0:
        raise ConfigError("--keep-catalogs must be 1 or more and --keep-runs 0 or more")
    keep = Retention(catalogs=args.keep_catalogs, runs=args.keep_runs, grace_s=grace_seconds(args.grace))
    result = collect(Store.open(args.store), keep, apply=args.apply)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_collection(result)
    return 0


def print_collection(result: Collection) -> None:
    verb = "deleted" if result.applied else "would delete"
    print(f"{result.store}: {verb} {len(result.keys):,} objects, {result.total_bytes / 1e6:,.1f} MB; "
          f"kept {result.kept_objects:,}")  # fmt: skip
    for prefix in sorted(result.objects):
        print(f"  {prefix:13} {result.objects[prefix]:>8,} objects {result.bytes[prefix] / 1e6:>10,.1f} MB")
    if result.spared:
        print(f"  spared {result.spared:,} that a build started during gc reaches")
    if not result.applied and result.keys:
        print("a dry run: nothing was deleted; --apply deletes these")
