#!/usr/bin/env bash
# Installs the build tree into a fresh prefix, then builds and runs the consumer
# program against it twice: through find_package(nyxq CONFIG) and through
# pkg-config; and a third time with nyxq added to the consumer's own build by
# add_subdirectory(). That build drives cargo as any parent project would, but
# over this build's cargo directory and features, so cargo finds the crate
# already built instead of compiling it a second time.
set -euo pipefail
build=$1 work=$2 src=$3 nyxq_src=$4 cargo_dir=$5
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

echo "== add_subdirectory(nyxq)"
mkdir -p "$work/parent"
cat >"$work/parent/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.21)
project(trainer CXX)
add_subdirectory("$nyxq_src" nyxq)
add_executable(consumer "$src/main.cpp")
target_link_libraries(consumer PRIVATE nyxq::nyxq)
CMAKE
cmake -S "$work/parent" -B "$work/parent/build" -DCMAKE_BUILD_TYPE=Release \
  -DNYXQ_CARGO_TARGET_DIR="$cargo_dir" -DNYXQ_TEST_EXPORTS=ON >/dev/null
cmake --build "$work/parent/build" --target consumer >/dev/null
"$work/parent/build/consumer"
test ! -e "$work/parent/build/nyxq/cpp_tests" || { echo "add_subdirectory built nyxq's tests"; exit 1; }
