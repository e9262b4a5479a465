#!/usr/bin/env bash
# What `make demo` runs after the build: the format table over the committed
# real weights, then the demo trainer (extra arguments go to it).
set -euo pipefail
build=${1:-build}
"$build/cargo/release/nyxq" formats "$(dirname "$0")/../data/weights"
echo
exec "$build/nyxq_demo" --out "$build/demo" "${@:2}"
