#!/usr/bin/env bash
# Runs a sanitizer-built program that leaks one nyxq handle on purpose and
# passes only when LeakSanitizer fails it and names the nyxq function that
# allocated the leaked block: lsan.supp must never hide nyxq's own leaks.
#   expect_leak.sh PROGRAM FUNCTION
set -uo pipefail
program=$1 function=$2
output=$("$program" 2>&1)
status=$?
printf '%s\n' "$output"
if [ "$status" -eq 0 ]; then
  echo "expect_leak: $program exited 0: the leak was not reported"; exit 1
fi
if ! grep -q 'ERROR: LeakSanitizer: detected memory leaks' <<<"$output"; then
  echo "expect_leak: $program failed ($status) without a LeakSanitizer report"; exit 1
fi
if ! grep -q "in $function" <<<"$output"; then
  echo "expect_leak: the report does not name $function"; exit 1
fi
echo "expect_leak: LeakSanitizer reported the leak in $function, as it must"
