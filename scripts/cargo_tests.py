#!/usr/bin/env python3
"""cargo's test programs as ctest tests (cpp_tests/CMakeLists.txt).

  cargo_tests.py build LIST CARGO ARG...   builds every test program
      (`CARGO test --no-run ARG... --message-format=json-render-diagnostics`)
      and writes LIST: one line per program, "<kind>:<name> <executable>".
  cargo_tests.py run LIST KIND:NAME        runs that program in the current
      directory (the crate's root, where cargo test runs it).

Each program is then one ctest test, so ctest runs them side by side and
reports each; running a built program directly takes no cargo lock, which
`cargo test` holds for as long as the tests run.
"""
import json
import os
import subprocess
import sys


def build(listing, cargo_command):
    command = cargo_command[:1] + ["test", "--no-run"] + cargo_command[1:]
    command += ["--message-format=json-render-diagnostics"]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        return result.returncode
    programs = []
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact":
            continue
        if not message["profile"]["test"] or not message.get("executable"):
            continue
        target = message["target"]
        # The library's kinds are its crate types (cdylib, staticlib, rlib).
        kind = target["kind"][0]
        kind = kind if kind in ("bin", "test", "example", "bench") else "lib"
        programs.append(f"{kind}:{target['name']} {message['executable']}\n")
    text = "".join(sorted(programs))
    old = open(listing).read() if os.path.exists(listing) else None
    if text != old:
        with open(listing + ".tmp", "w") as f:
            f.write(text)
        os.replace(listing + ".tmp", listing)
    return 0


def run(listing, wanted):
    with open(listing) as f:
        for line in f:
            name, executable = line.split(" ", 1)
            if name == wanted:
                executable = executable.strip()
                os.execv(executable, [executable])
    print(f"{wanted}: no such test program in {listing} (re-run the build)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "build":
        sys.exit(build(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], sys.argv[3]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
