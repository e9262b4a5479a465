#!/usr/bin/env bash
# Installs the build tree into a fresh prefix, then builds and runs the consumer
# program against it twice: through find_package(nyxq CONFIG) and through
# pkg-config; and a third time with nyxq added to the consumer's own build by
# add_subdirectory(). That build drives cargo as any parent project would, but
# over this build's cargo directory, profile and features, so cargo finds the crate
# already built instead of compiling it a second time.
set -euo pipefail
build=$1 work=$2 src=$3 nyxq_src=$4 cargo_dir=$5 cargo_profile=$6
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

echo "== the installed nyxq tool: validate and debug, run outside the source tree"
tools=$work/tools
mkdir -p "$tools"
# A .safetensors file (F32) made from one committed tensor: an 8-byte header
# length, the JSON header, then the data.
python3 - "$nyxq_src/data/weights" "$tools/layer0.safetensors" <<'PY'
import json, pathlib, struct, sys
weights, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
data = (weights / "minilm-l6-v2__encoder.layer.0.attention.self.query.weight.f32").read_bytes()
header = json.dumps({"q.weight": {"dtype": "F32", "shape": [384, 384], "data_offsets": [0, len(data)]}}).encode()
header += b" " * (-len(header) % 8)
out.write_bytes(struct.pack("<Q", len(header)) + header + data)
PY
(
  cd "$tools"
  "$prefix/bin/nyxq" validate "$nyxq_src/data/weights" --format Q8_0,Q4_0 --json >validate_dir.json
  "$prefix/bin/nyxq" validate layer0.safetensors
  "$prefix/bin/nyxq" debug --json >debug.json
  python3 - <<'PY'
import json
report = json.load(open("validate_dir.json"))
assert len(report["tensors"]) == 5 and report["summary"]["failed"] == 0, report["summary"]
debug = json.load(open("debug.json"))
assert debug["build"]["version"] and "cpu" in debug and "vulkan" in debug, debug.keys()
PY
)

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
  -DNYXQ_CARGO_TARGET_DIR="$cargo_dir" -DNYXQ_CARGO_PROFILE="$cargo_profile" -DNYXQ_TEST_EXPORTS=ON >/dev/null
cmake --build "$work/parent/build" --target consumer >/dev/null
"$work/parent/build/consumer"
test ! -e "$work/parent/build/nyxq/cpp_tests" || { echo "add_subdirectory built nyxq's tests"; exit 1; }
