#!/usr/bin/env bash
# Set up genreclf on a fresh Debian/Ubuntu machine: ffmpeg from the distribution, then a virtual environment
# in .venv with the package and its dev extras. Idempotent: rerunning it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ffmpeg (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq ffmpeg >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq ffmpeg >/dev/null; }
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || { echo "setup: creating .venv with $($PYTHON --version)"; "$PYTHON" -m venv .venv; }
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision come as a pair from the registry (torch>=2.13, torchvision>=0.28 in pyproject.toml).
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup: done. Activate with 'source .venv/bin/activate', then try 'genreclf demo'."
