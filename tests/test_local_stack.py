"""What infra/local_stack.py prints: only commands and variables the README documents; schedules paused or loud."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.local_stack import LocalStack, next_steps, schedule_line

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
# The README's part about running the stack: from "## Operating genreclf" to the next section.
OPERATING = README.split("\n## Operating genreclf\n")[1].split("\n## ")[0]
NIGHTLY = "nightly-retrain/nightly-retrain"
SCHEDULE_ID = "1b3b47bb-843f-49c2-b401-242ca15280e3"


def nightly(*, active: bool) -> dict[str, object]:
    """A schedule as the REST API returns it (`/deployments/filter`), prefect.yaml's nightly cron."""
    return {"id": SCHEDULE_ID, "active": active, "schedule": {"cron": "0 3 * * *", "timezone": "UTC", "day_or": True}}


@pytest.mark.parametrize("s3", [False, True])
@pytest.mark.parametrize("playlists", [False, True])
def test_up_prints_only_commands_and_variables_the_readme_documents(s3: bool, playlists: bool) -> None:
    stack = LocalStack()
    header, *commands = next_steps(stack.api_url, s3_env=stack.s3_env() if s3 else {}, playlists=playlists)
    assert header == "Use it from this shell:"
    assert commands[0] == "  export PREFECT_API_URL=http://127.0.0.1:4200/api"
    wildcards = [w.removesuffix("*") for w in re.findall(r"[A-Z0-9_]+_\*", OPERATING)]  # GENRECLF_S3_*
    for line in commands:
        command = line.split("#")[0].strip()
        if command.startswith("export "):
            variable = command.removeprefix("export ").split("=")[0]
            assert variable in OPERATING or variable.startswith(tuple(wildcards)), f"`up` prints {line!r}"
        else:
            assert command in OPERATING, f"`up` prints {command!r}, which the README does not mention"
    assert ("  cp configs/playlists.example.toml configs/playlists.toml   # and edit it" in commands) is not playlists
    assert commands[-2:] == [
        "  python -m infra.local_stack deploy",
        "  prefect deployment run ingest-spotify/ingest-spotify",
    ]


def test_a_paused_schedule_says_how_to_resume_it() -> None:
    line = schedule_line(NIGHTLY, nightly(active=False))
    assert line == (
        f'{NIGHTLY}: schedule cron "0 3 * * *" UTC is paused; to run it on schedule: '
        f"prefect deployment schedule resume {NIGHTLY} {SCHEDULE_ID}"
    )
    assert f"prefect deployment schedule resume {NIGHTLY} SCHEDULE_ID" in OPERATING


def test_an_active_schedule_is_said_loudly_with_how_to_pause_it() -> None:
    line = schedule_line(NIGHTLY, nightly(active=True))
    assert "is ACTIVE" in line
    assert line.endswith(f"to pause it: prefect deployment schedule pause {NIGHTLY} {SCHEDULE_ID}")
    assert f"prefect deployment schedule pause {NIGHTLY} SCHEDULE_ID" in OPERATING


def test_interval_and_rrule_schedules_are_described_too() -> None:
    every = schedule_line("f/d", {"id": "x", "active": False, "schedule": {"interval": 3600.0}})
    assert every.startswith("f/d: schedule every 3600.0 s is paused")
    rrule = schedule_line("f/d", {"id": "x", "active": True, "schedule": {"rrule": "FREQ=DAILY"}})
    assert rrule.startswith('f/d: schedule rrule "FREQ=DAILY" is ACTIVE')
