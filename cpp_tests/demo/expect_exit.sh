#!/bin/sh
# Runs a command and passes when it exits with the expected status and its
# output (stdout and stderr together) matches an extended regular expression:
# the demo's error paths and device fallbacks (ctest demo_* tests).
# Usage: expect_exit.sh STATUS PATTERN COMMAND [ARG...]
expected=$1
pattern=$2
shift 2
output=$("$@" 2>&1)
status=$?
printf '%s\n' "$output" | tail -n 5
if [ "$status" -ne "$expected" ]; then
  echo "expect_exit.sh: exit status $status, expected $expected"
  exit 1
fi
if ! printf '%s\n' "$output" | grep -Eq "$pattern"; then
  echo "expect_exit.sh: no line matches: $pattern"
  exit 1
fi
