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
# torch and torchvision come as a pair (torch>=2.13, torchvision>=0.28 in pyproject.toml). From PyPI on Linux that is
# the CUDA build: about 7 GB in .venv, 3.2 GB of it NVIDIA libraries, even on a machine without a GPU. An index of
# CPU-only wheels (GENRECLF_TORCH_INDEX=https://download.pytorch.org/whl/cpu, where you can reach it) leaves out
# those libraries and triton (0.9 GB).
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    if [ -n "${GENRECLF_TORCH_INDEX:-}" ]; then
        echo "setup: installing torch and torchvision from $GENRECLF_TORCH_INDEX"
        .venv/bin/python -m pip install -q torch torchvision --index-url "$GENRECLF_TORCH_INDEX"
    else
        echo "setup: installing torch and torchvision from PyPI: the CUDA build, ~5 GB, a few minutes"
        echo "       (GENRECLF_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash infra/setup.sh: CPU-only wheels)"
    fi
fi
echo "setup: installing genreclf and its dependencies into .venv"
.venv/bin/python -m pip install -q -e ".[dev]"
# Pretrained networks (musicnn, ISC license) from the same package index, checked and converted into the cache.
# Without them genreclf trains ResNet-18 from scratch; a machine without an index can run
# `genreclf weights fetch --from musicnn-0.1.0-py3-none-any.whl` later.
echo "setup: fetching pretrained weights (genreclf weights fetch)"
.venv/bin/genreclf weights fetch || echo "setup: WARNING: pretrained weights not fetched; see the line above"
echo "setup: done, .venv holds $(du -sh .venv | cut -f1). Activate with 'source .venv/bin/activate', then try 'genreclf demo'."
