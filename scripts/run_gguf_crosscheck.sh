#!/usr/bin/env bash
# Runs a gguf-py check (scripts/gguf_crosscheck.py unless SCRIPT names
# another under scripts/) in a virtual environment under the build directory,
# with the Python package gguf (ggml's reference quantizers, reader and writer
# in NumPy) and numpy installed there on first use; a lock keeps two checks
# from creating it at once.
set -euo pipefail
build=$1 lib=$2 weights=$3 script=${4:-gguf_crosscheck.py}
venv=$build/venv-gguf
# Pinned: the reference quantizers must not change under the check.
gguf_version=0.19.0
(
  flock 9
  if [ ! -x "$venv/bin/python" ] ||
     [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null)" != "$gguf_version" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "gguf==$gguf_version" numpy
  fi
) 9>"$build/venv-gguf.lock"
exec "$venv/bin/python" "$(dirname "$0")/$script" --lib "$lib" --weights "$weights"
