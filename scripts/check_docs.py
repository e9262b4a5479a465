#!/usr/bin/env python3
"""Checks the documentation: README.md and docs/*.md.

  check_docs.py examples --root DIR --lib LIBNYXQ --cc CC --cxx CXX --work DIR
      Every ```c and ```cpp fenced block is written to a file, compiled against
      include/nyxq.h and the built library (-Wall -Wextra -Werror, rpath to the
      library's directory) and run from the repository root; it must exit 0.
      The fence's info string may add:
        fragment   not a program: compiled as a translation unit of its own
                   (nyxq.h and the standard headers included before it) with
                   -fsyntax-only, and not run;
        file=PATH  the block must equal that repository file byte for byte
                   (the file is what the rest of the build compiles).
      A failure names the doc file and the line of the block's opening fence.

  check_docs.py links --root DIR
      Every relative link ([text](path), ![alt](path), with an optional
      #anchor) outside code must name an existing file or directory, and an
      anchor must name a heading of the target markdown file (GitHub's slugs).

  check_docs.py claims --root DIR
      Every test named in a "(test: `NAME`)" or "(tests: `A`, `B`)" reference,
      or a "; test: `NAME`)" ending a parenthesis (outside fenced code; it may
      span lines), must exist:
        Suite.Case  a TEST(Suite, Case) or TEST_F(...) in cpp_tests/*.cpp;
        name        an add_test(NAME name ...) in CMakeLists.txt or
                    cpp_tests/CMakeLists.txt;
        a::b::c     a `fn c` in tests/a.rs (a test file), else in the source
                    file of module a::b (src/a/b.rs, src/a/b/mod.rs, or the
                    nearest enclosing file such as src/a.rs for an inline
                    `mod b`), with #[test] in the lines just above it.
      A paragraph that says "tested" or "is checked by" must hold such a
      reference; one without is a failure too.

  check_docs.py unsafe --root DIR
      The table between "<!-- unsafe-inventory -->" and "<!-- /unsafe-inventory -->"
      in docs/security.md must equal the count of `unsafe` blocks, `unsafe fn`s
      and `unsafe impl`s in each folder of src/ (a file directly in src/ counts as
      its own row), so the inventory cannot drift from the code.

Standard library only: it runs inside the build, which has python3 and nothing
more.
"""

import argparse
import functools
import os
import re
import subprocess
import sys
import unicodedata

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^`]*)$")
LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp", "cxx": "cpp"}
PRELUDE = {
    "c": "#include <stdio.h>\n#include <stdlib.h>\n#include \"nyxq.h\"\n",
    "cpp": "#include <cstdio>\n#include <cstdlib>\n#include <vector>\n#include \"nyxq.h\"\n",
}


def doc_files(root):
    files = [os.path.join(root, "README.md")]
    docs = os.path.join(root, "docs")
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    return [f for f in files if os.path.isfile(f)]


def fenced_blocks(path):
    """Yields (line of the opening fence, info words, text) for every fenced block."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).split(), i
        body = []
        i += 1
        while i < len(lines) and not (lines[i].startswith(fence[0] * len(fence)) and lines[i].strip(fence[0]) == ""):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise SystemExit(f"{path}:{start + 1}: code fence never closed")
        yield start + 1, info, "\n".join(body) + "\n"
        i += 1


def check_examples(args):
    lib = os.path.abspath(args.lib)
    libdir = os.path.dirname(lib)
    include = os.path.join(args.root, "include")
    os.makedirs(args.work, exist_ok=True)
    failures, count = [], 0
    for doc in doc_files(args.root):
        rel = os.path.relpath(doc, args.root)
        for line, info, text in fenced_blocks(doc):
            if not info or info[0].lower() not in LANGS:
                continue
            lang = LANGS[info[0].lower()]
            flags = set(w for w in info[1:] if "=" not in w)
            attrs = dict(w.split("=", 1) for w in info[1:] if "=" in w)
            unknown = (flags - {"fragment"}) | (set(attrs) - {"file"})
            where = f"{rel}:{line}"
            count += 1
            if unknown:
                failures.append(f"{where}: unknown fence words {sorted(unknown)}")
                continue
            if "file" in attrs:
                with open(os.path.join(args.root, attrs["file"]), encoding="utf-8") as f:
                    if f.read() != text:
                        failures.append(f"{where}: block differs from {attrs['file']}")
                        continue
            name = re.sub(r"[^A-Za-z0-9]+", "_", rel) + f"_{line}"
            source = os.path.join(args.work, name + (".c" if lang == "c" else ".cpp"))
            exe = os.path.join(args.work, name)
            fragment = "fragment" in flags
            with open(source, "w", encoding="utf-8") as f:
                if fragment:
                    f.write(PRELUDE[lang])
                f.write(f'#line {line + 1} "{rel}"\n' + text)
            compiler = args.cc if lang == "c" else args.cxx
            std = "-std=c11" if lang == "c" else "-std=c++17"
            cmd = [compiler, std, "-Wall", "-Wextra", "-Werror", "-I", include, source]
            if fragment:
                cmd += ["-fsyntax-only"]
            else:
                cmd += ["-o", exe, lib, f"-Wl,-rpath,{libdir}"]
                if lang == "c":
                    cmd += ["-lm"]
            built = subprocess.run(cmd, capture_output=True, text=True)
            if built.returncode != 0:
                failures.append(f"{where}: does not compile:\n{built.stdout}{built.stderr}")
                continue
            if fragment:
                print(f"ok   {where} (fragment, compiled)")
                continue
            try:
                ran = subprocess.run([exe], cwd=args.root, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                failures.append(f"{where}: did not finish in {args.timeout} s")
                continue
            if ran.returncode != 0:
                failures.append(f"{where}: exited with {ran.returncode}:\n{ran.stdout}{ran.stderr}")
                continue
            print(f"ok   {where} (compiled and run)")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{count} C/C++ blocks, {len(failures)} failed")
    if count == 0:
        print("FAIL no C/C++ blocks found: wrong --root?", file=sys.stderr)
        return 1
    return 1 if failures else 0


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[|\]\([^)]*\)", "", heading.strip()).strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or ch == " " or cat[0] in "LN" or cat == "Mn":
            kept.append("-" if ch == " " else ch)
    return "".join(kept)


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for line in strip_code(path, keep_inline=True):
            m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if m:
                base = slug(m.group(2))
                n = seen.get(base, 0)
                found.add(base if n == 0 else f"{base}-{n}")
                seen[base] = n + 1
        cache[path] = found
    return cache[path]


def strip_code(path, keep_inline=False):
    """The file's lines with fenced blocks blanked and (unless keep_inline) inline code removed."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, fence = [], None
    for line in lines:
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if line.startswith(fence[0] * len(fence)) and line.strip(fence[0]) == "":
                fence = None
            out.append("")
        else:
            out.append(line if keep_inline else re.sub(r"`[^`]*`", "", line))
    return out


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def check_links(args):
    failures, count = [], 0
    for doc in doc_files(args.root):
        rel = os.path.relpath(doc, args.root)
        for number, line in enumerate(strip_code(doc), start=1):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # http:, https:, mailto:
                count += 1
                path, _, anchor = target.partition("#")
                resolved = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
                if not os.path.exists(resolved):
                    failures.append(f"{rel}:{number}: {target}: no such file {os.path.relpath(resolved, args.root)}")
                    continue
                if anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                    failures.append(f"{rel}:{number}: {target}: no heading with anchor #{anchor}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{count} relative links, {len(failures)} broken")
    return 1 if failures else 0


TEST_REF = re.compile(r"(?:\(|;\s)\s*tests?:\s*((?:`[^`]+`\s*(?:,|and)?\s*)+)\)")
CLAIM_WORDS = re.compile(r"\btested\b|\bis checked by\b", re.IGNORECASE)


def known_tests(root):
    """The C++ Suite.Case names and the ctest names the build declares."""
    cpp, ctest = set(), set()
    cpp_dir = os.path.join(root, "cpp_tests")
    for name in sorted(os.listdir(cpp_dir)):
        if name.endswith(".cpp"):
            with open(os.path.join(cpp_dir, name), encoding="utf-8") as f:
                for m in re.finditer(r"^\s*TEST(?:_F)?\(\s*(\w+)\s*,\s*(\w+)\s*\)", f.read(), re.M):
                    cpp.add(f"{m.group(1)}.{m.group(2)}")
    for cmake in ("CMakeLists.txt", os.path.join("cpp_tests", "CMakeLists.txt")):
        path = os.path.join(root, cmake)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                ctest.update(re.findall(r"add_test\(\s*NAME\s+([A-Za-z0-9_.-]+)", f.read()))
    # cpp_tests/CMakeLists.txt makes one ctest test of each cargo test program.
    ctest.add("cargo_lib_nyxq")
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as f:
        for name in re.findall(r'^\[\[test\]\]\s+name = "(\w+)"', f.read(), re.M):
            ctest.add("cargo_test_" + name)
    return cpp, ctest


def rust_test_exists(root, name):
    """Whether a::b::c names a fn c in tests/a.rs, or a #[test] fn c in module a::b's source."""
    parts = name.split("::")
    fn = re.compile(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?fn\s+{re.escape(parts[-1])}\s*[(<]")
    candidates = [(os.path.join(root, "tests", parts[0] + ".rs"), False)]
    modules = parts[:-1]
    for k in range(len(modules), 0, -1):  # the module's own file, then the files of inline `mod`s
        base = os.path.join(root, "src", *modules[:k])
        candidates += [(base + ".rs", True), (os.path.join(base, "mod.rs"), True)]
    for path, needs_attribute in candidates:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if fn.match(line) and (not needs_attribute or "#[test]" in "".join(lines[max(0, i - 4):i])):
                return True
        if needs_attribute and parts[-1] in macro_tests(root, text):
            return True
    return False


@functools.lru_cache(maxsize=None)
def test_macros(root):
    """The `macro_rules!` of src/ that define #[test] fns: name -> the text of
    each definition's body."""
    macros = {}
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for name in files:
            if name.endswith(".rs"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    text = f.read()
                for m in re.finditer(r"macro_rules!\s+(\w+)\s*\{", text):
                    body = text[m.end():]
                    depth, end = 1, 0
                    for end, ch in enumerate(body):
                        depth += {"{": 1, "}": -1}.get(ch, 0)
                        if depth == 0:
                            break
                    if "#[test]" in body[:end]:
                        macros[m.group(1)] = body[:end]
    return macros


def macro_tests(root, text):
    """The names of the #[test] fns that the test macros invoked in `text`
    define: a literal `fn name(`, or `fn $param(` where the macro's matcher
    binds `key: $param:ident` and the invocation passes `key: name`."""
    names = set()
    for macro, body in test_macros(root).items():
        for m in re.finditer(rf"\b{macro}!\s*\{{", text):
            args = text[m.end():text.find("}", m.end())]
            for f in re.finditer(r"#\[test\][^{]*?fn\s+(\$?)(\w+)\s*\(", body):
                if not f.group(1):
                    names.add(f.group(2))
                else:
                    key = re.search(rf"(\w+)\s*:\s*\${f.group(2)}:ident", body)
                    bound = key and re.search(rf"\b{key.group(1)}\s*:\s*(\w+)", args)
                    if bound:
                        names.add(bound.group(1))
    return names


def paragraphs(lines):
    """Yields (text, line of each character) for each paragraph: lines up to a
    blank line or a heading; each table row stands alone."""
    text, where = "", []
    for number, line in enumerate(lines + [""], start=1):
        row = line.lstrip().startswith("|")
        if line.strip() == "" or line.lstrip().startswith("#") or row:
            if text:
                yield text, where
            text, where = "", []
            if row:
                yield line, [number] * len(line)
            continue
        text += line.strip() + " "
        where += [number] * (len(line.strip()) + 1)


def check_claims(args):
    cpp, ctest = known_tests(args.root)
    failures, count = [], 0
    for doc in doc_files(args.root):
        rel = os.path.relpath(doc, args.root)
        for text, where in paragraphs(strip_code(doc, keep_inline=True)):
            refs = list(TEST_REF.finditer(text))
            for ref in refs:
                for m in re.finditer(r"`([^`]+)`", ref.group(1)):
                    name, line = m.group(1), where[ref.start(1) + m.start()]
                    count += 1
                    if "::" in name:
                        ok, kind = rust_test_exists(args.root, name), "Rust #[test] fn"
                    elif re.fullmatch(r"[A-Z]\w*\.\w+", name):
                        ok, kind = name in cpp, "C++ TEST(Suite, Case)"
                    else:
                        ok, kind = name in ctest, "ctest add_test(NAME ...)"
                    if not ok:
                        failures.append(f"{rel}:{line}: `{name}`: no such {kind}")
            claim = CLAIM_WORDS.search(re.sub(r"`[^`]*`", lambda c: " " * len(c.group(0)), text))
            if claim and not refs:
                failures.append(f"{rel}:{where[claim.start()]}: says \"{claim.group(0)}\" but names no test "
                                "in its paragraph (write \"(test: `NAME`)\")")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"{count} named tests, {len(failures)} failed")
    if count == 0:
        print("FAIL no (test: ...) references found: wrong --root?", file=sys.stderr)
        return 1
    return 1 if failures else 0


UNSAFE_PATTERNS = {
    "blocks": re.compile(r"\bunsafe\s*\{"),
    "functions": re.compile(r"\bunsafe\s+(?:extern\s+\"C\"\s+)?fn\b"),
    "impls": re.compile(r"\bunsafe\s+impl\b"),
}


def unsafe_counts(root):
    """{row: (blocks, functions, impls)} over src/, comments left out."""
    counts = {}
    src = os.path.join(root, "src")
    for folder, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            parts = rel.split(os.sep)
            row = "/".join(parts[:2]) if len(parts) > 2 else rel
            text = "\n".join(line.split("//")[0] for line in open(path, encoding="utf-8"))
            found = [len(pattern.findall(text)) for pattern in UNSAFE_PATTERNS.values()]
            if any(found):
                old = counts.get(row, (0, 0, 0))
                counts[row] = tuple(a + b for a, b in zip(old, found))
    return counts


def check_unsafe(args):
    doc = os.path.join(args.root, "docs", "security.md")
    text = open(doc, encoding="utf-8").read()
    match = re.search(r"<!-- unsafe-inventory -->(.*?)<!-- /unsafe-inventory -->", text, re.S)
    if not match:
        print("FAIL docs/security.md has no <!-- unsafe-inventory --> table", file=sys.stderr)
        return 1
    documented = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`src"):
            documented[cells[0].strip("`")] = tuple(int(c) for c in cells[1:])
    actual = unsafe_counts(args.root)
    failures = []
    for row in sorted(set(documented) | set(actual)):
        if documented.get(row) != actual.get(row):
            failures.append(f"{row}: the table says {documented.get(row)}, the code has "
                            f"{actual.get(row)} (blocks, functions, impls)")
    for failure in failures:
        print(f"FAIL docs/security.md unsafe inventory: {failure}", file=sys.stderr)
    print(f"{len(actual)} rows of unsafe code, {len(failures)} differ from the table")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("examples")
    ex.add_argument("--root", required=True)
    ex.add_argument("--lib", required=True)
    ex.add_argument("--cc", required=True)
    ex.add_argument("--cxx", required=True)
    ex.add_argument("--work", required=True)
    ex.add_argument("--timeout", type=int, default=120)
    ln = sub.add_parser("links")
    ln.add_argument("--root", required=True)
    cl = sub.add_parser("claims")
    cl.add_argument("--root", required=True)
    un = sub.add_parser("unsafe")
    un.add_argument("--root", required=True)
    args = parser.parse_args()
    args.root = os.path.abspath(args.root)
    return {"examples": check_examples, "links": check_links, "claims": check_claims,
            "unsafe": check_unsafe}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
