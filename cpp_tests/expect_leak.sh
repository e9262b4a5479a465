#!/usr/bin/env bash
# Runs cpp_tests/leak_probe.cpp's sanitizer build, in which nyxq leaks a block
# and the test leaks a handle on purpose, and passes only when both are
# reported: LeakSanitizer fails the program with a leak whose stack lies in
# nyxq (a frame matching PATTERN, an extended regular expression naming the
# function or libnyxq), so lsan.supp never hides nyxq's own leaks; and the
# tests' main reports the handle still live.
#   expect_leak.sh PROGRAM PATTERN
set -uo pipefail
program=$1 pattern=$2
output=$("$program" 2>&1)
status=$?
printf '%s\n' "$output"
if [ "$status" -eq 0 ]; then
  echo "expect_leak: $program exited 0: the leak was not reported"; exit 1
fi
if ! grep -q 'ERROR: LeakSanitizer: detected memory leaks' <<<"$output"; then
  echo "expect_leak: $program failed ($status) without a LeakSanitizer report"; exit 1
fi
if ! grep -Eq "^ +#[0-9]+ .*($pattern)" <<<"$output"; then
  echo "expect_leak: no frame of the report matches '$pattern'"; exit 1
fi
if ! grep -q '1 handles or strings still live at exit' <<<"$output"; then
  echo "expect_leak: the leaked handle was not reported"; exit 1
fi
echo "expect_leak: LeakSanitizer reported nyxq's leak ('$pattern') and the main the live handle, as they must"
