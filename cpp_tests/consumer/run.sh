#!/usr/bin/env bash
# Installs the build tree into a fresh prefix, then builds and runs the consumer
# program against it twice: through find_package(nyxq CONFIG) and through pkg-config.
set -euo pipefail
build=$1 work=$2 src=$3
rm -rf "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work.install.log" 2>&1 || { cat "$work.install.log"; exit 1; }
mkdir -p "$work"

echo "== find_package(nyxq CONFIG)"
cmake -S "$src" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/consumer"

echo "== pkg-config"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror "$src/main.cpp" $(pkg-config --cflags --libs nyxq) \
    -Wl,-rpath,"$(pkg-config --variable=libdir nyxq)" -o "$work/consumer_pc"
"$work/consumer_pc"
# The installed library is found through its soname, not the build tree.
loaded=$(ldd "$work/consumer_pc" | awk '/libnyxq/ { print $3 }')
[ "$(realpath "$loaded")" = "$(realpath "$prefix/lib/libnyxq.so.1")" ] ||
  { echo "consumer loaded '$loaded', not the installed library"; exit 1; }
