#!/usr/bin/env python3
"""cargo's test programs as ctest tests (cpp_tests/CMakeLists.txt).

  cargo_tests.py build LIST CARGO ARG...   builds every test program
      (`CARGO test --no-run ARG... --message-format=json-render-diagnostics`)
      and writes LIST: one line per program, "<kind>:<name> <executable>".
  cargo_tests.py run LIST KIND:NAME [ARG...]  runs that program in the
      current directory (the crate's root, where cargo test runs it), with
      ARG... (libtest's filters and --skip) choosing its tests.

Each program is then one ctest test, so ctest runs them side by side and
reports each; running a built program directly takes no cargo lock, which
`cargo test` holds for as long as the tests run.
"""
import json
import os
import re
import subprocess
import sys


def orphan_test_files(root):
    """tests/*.rs files that are neither a [[test]] program of Cargo.toml
    (autotests is off) nor a `#[path = "file.rs"]` module of one: cargo
    would silently build none of their tests."""
    with open(os.path.join(root, "Cargo.toml")) as f:
        programs = re.findall(r'^path = "tests/(\w+\.rs)"', f.read(), re.M)
    used = set(programs)
    for program in programs:
        with open(os.path.join(root, "tests", program)) as f:
            used.update(re.findall(r'^#\[path = "(\w+\.rs)"\]', f.read(), re.M))
    files = [n for n in os.listdir(os.path.join(root, "tests")) if n.endswith(".rs")]
    return sorted(set(files) - used)


def build(listing, cargo_command):
    orphans = orphan_test_files(os.getcwd())
    if orphans:
        print(f"cargo_tests.py: tests/{', tests/'.join(orphans)}: not a [[test]] of Cargo.toml "
              "nor a #[path] module of one (tests/vulkan.rs, tests/cli.rs): its tests would never run",
              file=sys.stderr)
        return 1
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


def run(listing, wanted, args):
    with open(listing) as f:
        for line in f:
            name, executable = line.split(" ", 1)
            if name == wanted:
                executable = executable.strip()
                os.execv(executable, [executable] + args)
    print(f"{wanted}: no such test program in {listing} (re-run the build)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "build":
        sys.exit(build(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], sys.argv[3], sys.argv[4:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
