#!/usr/bin/env bash
# Installs the system packages nyxq's build, tests and demo need, where they are
# missing. On Debian/Ubuntu it uses apt-get non-interactively (as root, or through
# sudo); elsewhere it prints exactly what to install and fails.
set -euo pipefail

# command-or-file to probe, then the Debian package that provides it
needs=(
  "cmake:cmake"
  "g++:g++"
  "make:make"
  "pkg-config:pkg-config"
  "valgrind:valgrind"
  "glslc:glslc"
  "python3:python3"
  "file:/usr/include/gtest/gtest.h:libgtest-dev"
  "file:/usr/lib/x86_64-linux-gnu/libvulkan.so.1:libvulkan1"
  "file:/usr/include/vulkan/vulkan_core.h:libvulkan-dev"
  "file:/usr/share/vulkan/icd.d/lvp_icd.x86_64.json:mesa-vulkan-drivers"
  "file:/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json:vulkan-validationlayers"
  "venv:python3-venv"
  "clang++:clang"
)

missing=()
for entry in "${needs[@]}"; do
  IFS=: read -r kind a b <<<"$entry"
  case "$kind" in
    file) [ -e "$a" ] || missing+=("$b") ;;
    venv) python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("$a") ;;
    *) command -v "$kind" >/dev/null 2>&1 || missing+=("$a") ;;
  esac
done

# make test runs rustfmt and clippy (ctest cargo_fmt, cargo_clippy); rustup's minimal
# profile leaves them out.
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
    if command -v rustup >/dev/null 2>&1 && rustup component add "$component" >/dev/null 2>&1; then
      echo "bootstrap: added the Rust component $component"
    else
      echo "bootstrap: cargo $tool is missing; install the Rust component $component" >&2
      exit 1
    fi
  fi
done

# Installs Debian packages through apt-get, as root or through sudo.
install_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: this is not a Debian/Ubuntu system. Install these (or your" >&2
    echo "distribution's equivalents) and run again: $*" >&2
    exit 1
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "bootstrap: run as root or install sudo; packages needed: $*" >&2
      exit 1
    fi
  fi
  echo "bootstrap: installing $*"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Whether clang++ links a libFuzzer program with ASan and UBSan (the fuzz targets).
fuzzer_links() {
  local dir
  dir=$(mktemp -d)
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t *, size_t) { return 0; }' >"$dir/probe.cpp"
  local linked=1
  if clang++ -fsanitize=fuzzer,address,undefined "$dir/probe.cpp" -o "$dir/probe" >/dev/null 2>&1; then linked=0; fi
  rm -rf "$dir"
  return $linked
}

if [ ${#missing[@]} -gt 0 ]; then
  install_packages "${missing[@]}"
fi

# libFuzzer ships with clang on Ubuntu 22.04 (libclang-common-14-dev) and in
# libclang-rt-<major>-dev on Debian 12 and Ubuntu 24.04.
if ! fuzzer_links; then
  major=$(clang++ --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
  install_packages "libclang-rt-${major}-dev"
  if ! fuzzer_links; then
    echo "bootstrap: clang++ still cannot link -fsanitize=fuzzer programs" >&2
    exit 1
  fi
fi
