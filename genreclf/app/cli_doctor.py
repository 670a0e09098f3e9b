"""The `genreclf doctor` command: one line per requirement, ok or not with the fix; exit 1 if one needed fails."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check what genreclf needs on this machine (ffmpeg, yt-dlp and its JavaScript runtime, Spotify, the "
        "store, Prefect, the device, the pretrained weights)",
        description="Check what genreclf needs, one line each, with the fix for what is missing. Exit code 1 when "
        "something needed fails; Spotify is needed only to ingest playlists (skipped without credentials).",
    )
    p.add_argument("--store", help="the store to check (default $GENRECLF_STORAGE_URL or ./genreclf-data)")
    p.add_argument("--format", choices=["json"], help="one JSON object on stdout instead of the lines")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from genreclf.app import doctor

    checks = doctor.run_checks(store_url=args.store)
    if args.format == "json":
        print(doctor.to_json(checks))
    else:
        for check in checks:
            print(check.line())
        failed = doctor.failed(checks)
        print(f"\n{len(failed)} of {len(checks)} checks failed" if failed else "\neverything genreclf needs is here")
    return 1 if doctor.failed(checks) else 0
