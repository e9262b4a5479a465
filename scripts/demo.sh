#!/usr/bin/env bash
# What `make demo` runs after the build: the format table over the committed
# real weights, the demo trainer (on a GPU through Vulkan where one works, else
# on the CPU, saying why; extra arguments go to it), and the plans the planner
# makes for the demo's model and the Nyx shapes on the two small GPUs.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
nyxq=$build/cargo/release/nyxq
"$nyxq" formats "$root/data/weights"
echo
"$build/nyxq_demo" --device auto --out "$build/demo" "${@:2}"
echo
echo "Precision plans for training (nyxq plan --training; full tables: see docs/planning.md):"
for model in nyxq-demo char-model hrm-full; do
  for hardware in intel-iris-xe-7gb amd-rx580-8gb; do
    echo
    "$nyxq" plan --hardware "$hardware" --model "$root/config/models/$model.json" \
      --config "$root/config/hrm_config.txt" --training | grep -E '^(plan for|device budget|totals|formats)'
  done
done
