#!/usr/bin/env bash
# Runs scripts/gguf_crosscheck.py in a virtual environment under the build
# directory, with the Python package gguf (ggml's reference quantizers in NumPy)
# and numpy installed there on first use.
set -euo pipefail
build=$1 lib=$2 weights=$3
venv=$build/venv-gguf
# Pinned: the reference quantizers must not change under the check.
gguf_version=0.19.0
if [ ! -x "$venv/bin/python" ] ||
   [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null)" != "$gguf_version" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "gguf==$gguf_version" numpy
fi
exec "$venv/bin/python" "$(dirname "$0")/gguf_crosscheck.py" --lib "$lib" --weights "$weights"
