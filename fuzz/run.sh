#!/usr/bin/env bash
# Runs one fuzz target: every input of its committed corpus (the regression
# inputs included), then seeded fuzzing for SECONDS from there. New inputs
# and crashes go under WORK, never into the corpus.
#   run.sh TARGET CORPUS WORK SECONDS
set -euo pipefail
target=$1 corpus=$2 work=$3 seconds=$4

if [ ! -x "$target" ]; then
  echo "fuzz: $target was not built: no clang++ with libFuzzer (-fsanitize=fuzzer);" \
       "scripts/bootstrap.sh installs clang and its runtime" >&2
  if [ "${NYXQ_TEST_REQUIRE_RESOURCES:-}" = 1 ]; then exit 1; fi
  exit 77
fi
rm -rf "$work"
mkdir -p "$work/new" "$work/crashes"
# -error_exitcode=1: libFuzzer's default, 77, would read as a skip to ctest.
exec "$target" -seed=1 -max_total_time="$seconds" -timeout=60 -error_exitcode=1 -print_final_stats=1 \
  -artifact_prefix="$work/crashes/" "$work/new" "$corpus"
