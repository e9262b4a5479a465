#!/usr/bin/env bash
# Checks include/nyxq.h: it compiles alone as C11 and as C++17 with
# -Wall -Wextra -Werror (-pedantic too), and so does the C++ API nyxq.hpp beside
# it as C++17; the ABI version matches the library's
# soname, and the functions it declares are exactly the symbols libnyxq.so exports.
# (That the header is what cbindgen generates is tests/header_is_current.rs.)
set -euo pipefail
header=$1 lib=$2 work=$3 cc=$4 cxx=$5 abi=$6
mkdir -p "$work"
include_dir=$(dirname "$header")
fail=0

printf '#include "nyxq.h"\nint main(void) { return nyxq_abi_version() == NYXQ_ABI_VERSION ? 0 : 1; }\n' >"$work/alone.c"
cp "$work/alone.c" "$work/alone.cpp"
for defs in "" "-DNYXQ_TEST_EXPORTS"; do
  "$cc" -std=c11 -Wall -Wextra -Werror -pedantic $defs -I"$include_dir" -c "$work/alone.c" -o "$work/alone_c.o" ||
    { echo "FAIL: nyxq.h does not compile alone as C11 ($defs)"; fail=1; }
  "$cxx" -std=c++17 -Wall -Wextra -Werror -pedantic $defs -I"$include_dir" -c "$work/alone.cpp" -o "$work/alone_cpp.o" ||
    { echo "FAIL: nyxq.h does not compile alone as C++17 ($defs)"; fail=1; }
done
printf '#include "nyxq.hpp"\nint main() { return nyxq::abi_version() == NYXQ_ABI_VERSION ? 0 : 1; }\n' >"$work/alone_hpp.cpp"
"$cxx" -std=c++17 -Wall -Wextra -Werror -pedantic -I"$include_dir" -c "$work/alone_hpp.cpp" -o "$work/alone_hpp.o" ||
  { echo "FAIL: nyxq.hpp does not compile alone as C++17"; fail=1; }

grep -q "#define NYXQ_ABI_VERSION $abi\$" "$header" ||
  { echo "FAIL: NYXQ_ABI_VERSION in the header is not $abi (Cargo.toml abi-version)"; fail=1; }
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libnyxq.so.$abi" ] || { echo "FAIL: soname is '$soname', expected libnyxq.so.$abi"; fail=1; }

# Declared functions: every "nyxq_xxx(" that starts a declaration line's name.
grep -oE '\bnyxq_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u >"$work/declared.txt"
# Exported functions: defined, global text symbols of the shared library.
nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort -u >"$work/exported.txt"
if ! diff -u "$work/declared.txt" "$work/exported.txt" >"$work/symbols.diff"; then
  echo "FAIL: functions declared in nyxq.h (-) differ from symbols exported by $(basename "$lib") (+):"
  cat "$work/symbols.diff"
  fail=1
fi
count=$(wc -l <"$work/declared.txt")
[ "$fail" -eq 0 ] && echo "header ok: compiles as C11 and C++17, nyxq.hpp as C++17; $count functions declared = exported; soname $soname"
exit "$fail"
