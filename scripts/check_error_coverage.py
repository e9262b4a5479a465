#!/usr/bin/env python3
"""Every documented error of the C ABI is provoked by a test.

Reads each exported function's `Errors:` list in include/nyxq.h and looks, in
the C++ tests (cpp_tests/test_*.cpp), for a statement that checks that status
against a call of that function: `EXPECT_STATUS(NYXQ_ERROR_X, nyxq_f(...))`,
the same through a lambda of the test that calls nyxq_f, or a status variable
assigned from nyxq_f and compared with NYXQ_ERROR_X.

The entries no test provokes yet are listed, one `function STATUS` a line, in
cpp_tests/error_coverage_gaps.txt. The check fails when an entry is neither
provoked nor listed (a new error without a test), and when a listed entry is
provoked or no longer documented (the list must shrink as tests are written).

    check_error_coverage.py --root DIR            check (ctest error_coverage)
    check_error_coverage.py --root DIR --table    print function | status | tests
"""

import argparse
import pathlib
import re
import sys

STATUS = re.compile(r"NYXQ_ERROR_[A-Z_]+")
CALL = re.compile(r"\b(nyxq_\w+)\s*\(")


def documented_errors(header: str) -> dict[str, set[str]]:
    """function -> the statuses its doc comment's `Errors:` part names."""
    docs = {}
    decl = re.compile(r"/\*\*(.*?)\*/\s*(?:#if[^\n]*\n\s*)?NyxqStatus\s+(nyxq_\w+)\(", re.S)
    for m in decl.finditer(header):
        doc, name = m.group(1), m.group(2)
        at = doc.find("Errors:")
        if at >= 0:
            docs[name] = doc[at + len("Errors:"):]
    errors = {}
    for name, text in docs.items():
        found = set(STATUS.findall(text))
        # "Errors: as nyxq_config_load, without NYXQ_ERROR_IO." and
        # "Errors: as nyxq_tensor_create and nyxq_tensor_upload."
        alias = re.match(r"\s*\*?\s*as (nyxq_\w+[^.]*)", text)
        if alias:
            inherited = set()
            for other in re.findall(r"nyxq_\w+", alias.group(1)):
                inherited |= set(STATUS.findall(docs.get(other, "")))
            without = set()
            w = text.find("without")
            if w >= 0:
                without = set(STATUS.findall(text[w:]))
                found -= without
            found |= inherited - without
        errors[name] = found
    return errors


def test_bodies(source: str):
    """(test name, line, body) for each TEST(Suite, Name) of a C++ file."""
    starts = [m for m in re.finditer(r"^TEST\((\w+),\s*(\w+)\)", source, re.M)]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(source)
        yield f"{m.group(1)}.{m.group(2)}", source.count("\n", 0, m.start()) + 1, source[m.start():end]


def braced(text: str, start: int) -> str:
    """The text from the first '{' at or after `start` to its matching '}'."""
    open_at = text.find("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at:i + 1]
    return text[open_at:]


def provoked(tests_dir: pathlib.Path) -> dict[tuple[str, str], list[str]]:
    """(function, status) -> the tests with a statement that checks it."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(tests_dir.glob("test_*.cpp")):
        for test, line, body in test_bodies(path.read_text(encoding="utf-8")):
            where = f"{test} ({path.name}:{line})"
            # Lambdas and status variables of the test stand for the nyxq calls in them.
            stands_for: dict[str, set[str]] = {}
            for lam in re.finditer(r"auto\s+(\w+)\s*=\s*\[[^\]]*\]", body):
                stands_for[lam.group(1)] = set(CALL.findall(braced(body, lam.end())))
            for statement in body.split(";"):
                for var in re.finditer(r"(?:NyxqStatus\s+)?\b(\w+)\s*=\s*(nyxq_\w+)\s*\(", statement):
                    stands_for[var.group(1)] = {var.group(2)}
                statuses = set(STATUS.findall(statement))
                if not statuses:
                    continue
                called = set(CALL.findall(statement))
                for name, calls in stands_for.items():
                    if re.search(rf"\b{name}\b", statement):
                        called |= calls
                for function in called:
                    for status in statuses:
                        tests = found.setdefault((function, status), [])
                        if where not in tests:
                            tests.append(where)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=pathlib.Path)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    errors = documented_errors((args.root / "include/nyxq.h").read_text(encoding="utf-8"))
    tests = provoked(args.root / "cpp_tests")
    entries = sorted((f, s) for f, statuses in errors.items() for s in statuses)
    covered = [e for e in entries if e in tests]

    if args.table:
        print("| function | status | provoked by |")
        print("|---|---|---|")
        for f, s in entries:
            print(f"| `{f}` | `{s}` | {', '.join(tests.get((f, s), [])) or '(none yet)'} |")
        return 0

    gaps_file = args.root / "cpp_tests/error_coverage_gaps.txt"
    listed = set()
    for line in gaps_file.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            function, status = line.split()
            listed.add((function, status))
    problems = []
    for entry in entries:
        if entry not in tests and entry not in listed:
            problems.append(f"{entry[0]} documents {entry[1]}, but no test provokes it "
                            f"(write one, or list it in {gaps_file.name})")
    for entry in sorted(listed):
        if entry in tests:
            problems.append(f"{entry[0]} {entry[1]} is provoked by {tests[entry][0]}: "
                            f"remove it from {gaps_file.name}")
        elif entry not in entries:
            problems.append(f"{entry[0]} {entry[1]} is listed in {gaps_file.name} but not documented")
    print(f"{len(covered)} of {len(entries)} documented errors of {len(errors)} functions "
          f"are provoked by a test; {len(listed)} listed as not yet")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
