#!/usr/bin/env python3
"""nyxq's CPU quantize/dequantize beside ggml's, on the same core, one table.

  compare_ggml_quant.py GGML_BUILD_DIR [--nyxq BIN] [--mib N] [--cpu N]
                        [--iterations N] [--ref-iterations N] [--formats LIST]
                        [--best-of N]

Runs `nyxq bench-quant --mib N` and then ggml's `test-quantize-perf` (from
GGML_BUILD_DIR/bin, a ggml build made outside this repository, for
comparison only) on the same input size, both pinned to core N with taskset
when taskset exists, and prints nyxq's own report followed by one table:
format, operation, nyxq GB/s, ggml's fastest and ggml's reference GB/s, and
the ratios. GB/s are 10^9 bytes of f32 per second for both (ggml prints
2^30-byte GB; they are converted). nyxq's figure is the median of 7 runs;
ggml's the mean of its iterations after 5 warm-up calls (its own method).
With --best-of N both benchmarks run N times, alternating, and each figure is
the best of its N (for a machine shared with other work).

ggml's "fastest" is its CPU backend's from_float (`quantize_row_q`, the AVX2
code where the build has it) and its only CPU dequantizer (`to_float`); its
"reference" is `quantize_row_q_reference`. nyxq's quantize includes the range
check (nothing is written on NaN/Inf); the "nyxq kernel (est.)" column takes
the range check's own time, measured in the same nyxq run, out of it.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

# nyxq's name -> ggml's type name, for every format both have.
GGML_TYPES = {
    "F16": "f16",
    "BF16": "bf16",
    "Q8_0": "q8_0",
    "Q4_0": "q4_0",
    "Q4_1": "q4_1",
    "Q5_0": "q5_0",
    "IQ4_NL": "iq4_nl",
    "Q4_K": "q4_K",
    "Q5_K": "q5_K",
    "Q6_K": "q6_K",
}
GIB_PER_GB = 1.073741824


def pinned(command, cpu):
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + command
    return command


def run(command):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def ggml_gbs(binary, cpu, ggml_type, op, values, iterations):
    """ggml's f32 throughput of one operation, in 10^9 bytes per second."""
    out = run(pinned([binary, "--type", ggml_type, "--op", op, "--size", str(values),
                      "-i", str(iterations)], cpu))
    match = re.search(r"float32 throughput\s*:\s*([0-9.]+) GB/s", out)
    if not match:
        sys.exit(f"no throughput in test-quantize-perf's output for {ggml_type} {op}:\n{out}")
    return float(match.group(1)) * GIB_PER_GB


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 1.0 else f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ggml_build_dir")
    parser.add_argument("--nyxq", default="target/release/nyxq")
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=0, help="the core both run on (taskset)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--ref-iterations", type=int, default=3,
                        help="iterations of ggml's reference quantizers (the K-quants' are slow)")
    parser.add_argument("--formats", default=",".join(GGML_TYPES),
                        help="comma-separated nyxq format names")
    parser.add_argument("--best-of", type=int, default=1,
                        help="run both N times and keep each figure's best")
    args = parser.parse_args()

    binary = os.path.join(args.ggml_build_dir, "bin", "test-quantize-perf")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not there: build ggml's test-quantize-perf first (docs/tools.md)")
    formats = [f for f in args.formats.split(",") if f]
    unknown = [f for f in formats if f not in GGML_TYPES]
    if unknown:
        sys.exit(f"unknown formats {unknown}; known: {', '.join(GGML_TYPES)}")
    values = args.mib * 1024 * 1024 // 4 // 256 * 256
    pin = f"core {args.cpu} (taskset)" if shutil.which("taskset") else "unpinned (no taskset)"

    best = {}

    def keep(key, value):
        if value is not None and (best.get(key) is None or value > best[key]):
            best[key] = value

    for attempt in range(args.best_of):
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "nyxq.json")
            nyxq_out = run(pinned([args.nyxq, "bench-quant", "--mib", str(args.mib),
                                   "--json", report], args.cpu))
            with open(report) as f:
                nyxq = json.load(f)
        print(nyxq_out)
        for r in nyxq["results"]:
            keep(("nyxq", r["format"], r["op"]), r["one_thread_gbs"])
        keep(("nyxq", "range check"), nyxq.get("range_check_gbs"))
        for name in formats:
            t = GGML_TYPES[name]
            print(f"ggml {t} ({attempt + 1} of {args.best_of}) ...", file=sys.stderr)
            for op, iterations in (("quantize_row_q", args.iterations),
                                   ("quantize_row_q_reference", args.ref_iterations),
                                   ("dequantize_row_q", args.iterations)):
                keep(("ggml", name, op), ggml_gbs(binary, args.cpu, t, op, values, iterations))

    check = best.get(("nyxq", "range check"))
    rows = []
    for name in formats:
        q = best.get(("nyxq", name, "quantize"))
        kernel = None
        if q is not None and check and check > q:
            kernel = 1.0 / (1.0 / q - 1.0 / check)
        rows.append((name, "quantize", q, kernel, best[("ggml", name, "quantize_row_q")],
                     best[("ggml", name, "quantize_row_q_reference")]))
        rows.append((name, "dequantize", best.get(("nyxq", name, "dequantize")), None,
                     best[("ggml", name, "dequantize_row_q")], None))

    runs = f", best of {args.best_of} runs" if args.best_of > 1 else ""
    print(f"nyxq against ggml's test-quantize-perf: {args.mib} MiB of f32, one thread, {pin}, "
          f"{cpu_model()}{runs}; GB/s = 10^9 bytes of f32 per second")
    print()
    print("| format | op | nyxq GB/s | nyxq kernel (est.) | ggml fastest GB/s | ggml reference GB/s "
          "| nyxq / ggml fastest | nyxq / ggml reference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, op, ours, kernel, fastest, reference in rows:
        print(f"| {name} | {op} | {fmt(ours)} | {fmt(kernel)} | {fmt(fastest)} | {fmt(reference)} "
              f"| {ratio(ours, fastest)} | {ratio(ours, reference)} |")


if __name__ == "__main__":
    main()
