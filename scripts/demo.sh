#!/usr/bin/env bash
# What `make demo` runs after the build: the demo trainer when it is built,
# else the format table over the committed weights.
set -euo pipefail
build=${1:-build}
if [ -x "$build/cpp_tests/demo/nyxq_demo" ]; then
  exec "$build/cpp_tests/demo/nyxq_demo" --out "$build/demo"
fi
exec "$build/cargo/release/nyxq" formats "$(dirname "$0")/../data/weights"
