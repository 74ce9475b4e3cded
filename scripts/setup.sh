#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine: system packages, a virtualenv, PyTorch (CPU
# build, pinned, installed first so no CUDA build is pulled in), then dlslab and its tests' needs.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# espeak-ng: the speech corpus; dataset-fashion-mnist: Fashion-MNIST offline;
# chromium + chromium-driver: the report's browser test.
APT_PACKAGES="${APT_PACKAGES:-espeak-ng dataset-fashion-mnist chromium chromium-driver}"

missing=()
for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
    if [ "$SUDO" = none ]; then
        echo "setup: please install these Debian packages: ${missing[*]} (apt-get install ...)" >&2
    else
        echo "setup: installing Debian packages: ${missing[*]}" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q -e ".[test,ray,pretrained]"
touch "$VENV/.installed"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
