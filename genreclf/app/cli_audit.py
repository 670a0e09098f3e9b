"""The `genreclf audit` command: which tracks' labels to doubt, and accepting the audit's suggestions."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING

from genreclf.errors import DataError

if TYPE_CHECKING:
    from genreclf.datasets.manifest import Manifest
    from genreclf.ingest.overrides import Override
    from genreclf.labels.audit import AuditReport, AuditRow
    from genreclf.store.storage import Store

STORE_HELP = "storage root: a directory or s3://bucket/prefix (default $GENRECLF_STORAGE_URL or ./genreclf-data)"
DROP_WORD = "drop"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="rank a dataset's tracks by how much to doubt their genre labels; find near-duplicate recordings",
        description="Audit the labels of a dataset (default: the latest): out-of-fold predictions with confident "
        "learning flag likely mislabelled tracks, a fingerprint search finds the same recording twice, and "
        "outliers are named. Prints the worst tracks; every track's verdict is stored. An audit of the same "
        'dataset is reused. --accept writes label overrides (versioned, provenance "audit") that the next '
        "dataset build applies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--store", help=STORE_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--dataset", default="latest", help="dataset id")
    which.add_argument("--catalog-version", help="audit the newest dataset built from this catalog version")
    p.add_argument("--top", type=int, default=10, help="tracks to print, worst first")
    p.add_argument("--all", action="store_true", help="print every track")
    p.add_argument("--format", choices=["csv", "json"], help="write every track's row to stdout, for scripts")
    p.add_argument("--fresh", action="store_true", help="audit again even if this dataset's audit is stored")
    p.add_argument("--accept", action="append", default=[], metavar="TRACK[=GENRE]",
                   help="accept the audit's suggestion for a track (its id or its name as listed), or set its genre "
                   f"(TRACK=GENRE), or leave it out (TRACK={DROP_WORD}); repeatable")  # fmt: skip
    p.add_argument("--accept-suggested", action="store_true",
                   help="accept every relabel and drop the audit suggests")  # fmt: skip
    p.add_argument("--forget", action="append", default=[], metavar="TRACK",
                   help="take back an accepted override (the track's label goes back to its source's)")  # fmt: skip
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from genreclf.store.storage import Store

    store = Store.open(args.store)
    manifest = _dataset(store, args)
    if args.accept or args.accept_suggested or args.forget:
        return _accept(store, manifest, args)
    report = _audit(store, manifest, fresh=args.fresh)
    if args.format:
        _write_rows(report.rows, args.format)
        return 0
    _print_report(store, report, len(report.rows) if args.all else args.top)
    return 0


def _dataset(store: Store, args: argparse.Namespace) -> Manifest:
    from genreclf.datasets import manifest

    if args.catalog_version:
        found = manifest.datasets_of_catalog(store, args.catalog_version)
        if not found:
            raise DataError(f"no dataset of catalog {args.catalog_version} in {store.url}: build one first "
                            "(`genreclf run --catalog DIR`, or the build-dataset deployment)")  # fmt: skip
        return found[0]
    return manifest.read_manifest(store, args.dataset)


def _audit(store: Store, manifest: Manifest, *, fresh: bool) -> AuditReport:
    """The stored audit of this dataset (no Prefect needed), or a new one from the audit flow."""
    from genreclf.labels.audit import read_audit, stored_audit

    if not fresh and (stored := stored_audit(store, manifest)) is not None:
        print(f"audit {stored.audit_id} of dataset {manifest.dataset_id} is stored (made {stored.created_at[:19]}); "
              "--fresh audits again", file=sys.stderr)  # fmt: skip
        return stored
    from genreclf.app.console import live_stages
    from genreclf.app.prefect_setup import prefect_api
    from genreclf.flows.audit import audit

    with prefect_api(), live_stages(verbose=False):
        audit_id = audit(manifest.dataset_id, storage_url=store.url, fresh=fresh)
    report = read_audit(store, audit_id)
    if report is None:
        raise DataError(f"the audit flow finished but audit {audit_id} is not in {store.url}")
    return report


def _print_report(store: Store, report: AuditReport, top: int) -> None:
    from genreclf.store.keys import audit_report_key

    counts = report.counts
    print(f"audit {report.audit_id} of dataset {report.dataset_id} ({counts['tracks']} tracks): "
          f"{counts['mislabelled']} likely mislabelled, {counts['near-duplicate']} near-duplicates, "
          f"{counts['outlier']} outliers; out-of-fold accuracy {report.oof_accuracy:.3f} "
          f"({report.seconds.get('total', 0):.0f} s)")  # fmt: skip
    rows = report.rows[:top]
    width = min(48, max((len(r["name"]) for r in rows), default=5))
    print(f"{'rank':>5}  {'quality':>7}  {'track':<{width}}  {'given':<10} {'suggested':<10} {'action':<8} reason")
    for r in rows:
        name = r["name"] if len(r["name"]) <= width else "..." + r["name"][-width + 3 :]
        print(f"{r['rank']:>5}  {r['quality']:>7.3f}  {name:<{width}}  {r['given']:<10} {r['suggested']:<10} "
              f"{r['action'] if r['issue'] else '':<8} {r['reason']}")  # fmt: skip
    if len(report.rows) > top:
        print(f"  ... {len(report.rows) - top} more (--all, or --format csv)")
    print(f"every track: {store.uri(audit_report_key(report.audit_id))}")
    if any(r["action"] in ("relabel", "drop") for r in report.rows):
        print("accept: genreclf audit --accept TRACK[=GENRE] ... (or --accept-suggested); the next build applies it")


def _write_rows(rows: list[AuditRow], fmt: str) -> None:
    if fmt == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["rank"])
    writer.writeheader()
    writer.writerows(rows)


def _accept(store: Store, manifest: Manifest, args: argparse.Namespace) -> int:
    from genreclf.ingest import catalog, overrides
    from genreclf.labels.audit import DROP, RELABEL, stored_audit

    report = stored_audit(store, manifest)
    if report is None and (args.accept or args.accept_suggested):
        raise DataError(f"dataset {manifest.dataset_id} has no audit yet: run `genreclf audit` first")
    rows = report.rows if report else []
    by_key = {r["track_id"]: r for r in rows} | {r["name"]: r for r in rows}
    rows_of_catalog = catalog.rows_of(catalog.read_catalog(store, manifest.catalog_version))
    hashes = {r["track_id"]: r["content_hash"] for r in rows_of_catalog}

    def override(row: AuditRow, genre: str | None, reason: str) -> Override:
        return {"track_id": row["track_id"], "content_hash": hashes.get(row["track_id"]), "genre": genre,
                "previous": row["given"], "reason": reason, "audit_id": report.audit_id if report else "",
                "accepted_at": overrides.now()}  # fmt: skip

    new: list[Override] = []
    if args.accept_suggested:
        new += [override(r, r["suggested"] if r["action"] == RELABEL else None, r["reason"])
                for r in rows if r["action"] in (RELABEL, DROP)]  # fmt: skip
    for item in args.accept:
        key, _, genre = item.partition("=")
        row = by_key.get(key)
        if row is None:
            raise DataError(f"{key}: no such track in audit {report.audit_id if report else ''} (give its track id "
                            "or its name as `genreclf audit` lists it)")  # fmt: skip
        if genre == DROP_WORD:
            new.append(override(row, None, f"left out by hand: {row['reason'] or 'no audit issue'}"))
        elif genre:
            if genre not in manifest.labels:
                raise DataError(f"{genre}: not a genre of dataset {manifest.dataset_id} ({', '.join(manifest.labels)})")
            new.append(override(row, genre, f"set to {genre} by hand: {row['reason'] or 'no audit issue'}"))
        elif row["action"] in (RELABEL, DROP):
            new.append(override(row, row["suggested"] if row["action"] == RELABEL else None, row["reason"]))
        else:
            raise DataError(f"{key}: the audit suggests no change ({row['reason'] or 'no issue found'}); "
                            f"set a genre with --accept {key}=GENRE, or --accept {key}={DROP_WORD}")  # fmt: skip
    forget = [by_key[t]["track_id"] if t in by_key else t for t in args.forget]
    version = overrides.accept(store, new, forget=forget)
    for o in new:
        what = f"{o['previous']} -> {o['genre']}" if o["genre"] else f"{o['previous']}, left out"
        print(f"accepted {o['track_id']} ({what})")
    for t in forget:
        print(f"forgot the override of {t}")
    held = len(overrides.read_overrides(store, version))
    print(f"label overrides {version}: {held} tracks in all. The next dataset build applies them "
          "(`genreclf run --catalog DIR`, or the build-dataset deployment).")  # fmt: skip
    return 0
