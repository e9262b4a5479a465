#!/usr/bin/env python3
"""PyTorch's matrix-vector products on CUDA, for comparison with
`nyxq bench-vk-matvec` on the same GPU.

Times y = W @ x and the backward product y = W.t() @ x for W of shape (rows,
cols) in FP32 and FP16 (x and y in the same dtype) on the shapes of the nyxq
benchmark, batch 1 (torch.mv) and batch 8 (torch.matmul with X of 8 columns). Each case runs `--warmup` times, then is
timed `--iterations` times with CUDA events around each call (after
torch.cuda.synchronize); the median is reported. Also times a device-to-device
copy of 256 MiB (read + write) as the bandwidth yardstick, as nyxq's table
does. Prints JSON on stdout (and writes it to --json FILE when given).

    python3 scripts/torch_mv_bench.py [--quick] [--iterations N] [--json FILE]
"""
import argparse
import json
import statistics
import sys

import torch

SHAPES = [(4096, 4096), (8192, 8192), (16384, 16384), (11008, 4096)]
QUICK_SHAPES = [(256, 256), (512, 1024)]
BATCHES = [1, 8]
DTYPES = {"F32": torch.float32, "F16": torch.float16}


def median_ms(fn, warmup, iterations):
    """Median of `iterations` CUDA-event timings of fn(), in milliseconds."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_gbps(warmup, iterations):
    n = (256 << 20) // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), warmup, iterations)
    return 2 * 4 * n / (ms * 1e-3) / 1e9


def product(rows, cols, batch, dtype, transposed, warmup, iterations):
    """Times W @ x, or W.t() @ x (the backward product) with `transposed`."""
    gen = torch.Generator(device="cuda").manual_seed(rows * 31 + cols)
    w = (torch.rand(rows, cols, device="cuda", generator=gen) * 2 - 1).to(dtype)
    m = w.t() if transposed else w
    n = m.shape[1]
    if batch == 1:
        x = torch.rand(n, device="cuda", generator=gen).to(dtype)
        fn = lambda: torch.mv(m, x)
    else:
        x = torch.rand(n, batch, device="cuda", generator=gen).to(dtype)
        fn = lambda: torch.matmul(m, x)
    ms = median_ms(fn, warmup, iterations)
    weight_bytes = w.numel() * w.element_size()
    del w, m, x
    return ms, weight_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the JSON to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_mv_bench: CUDA is not available", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    copy = copy_gbps(args.warmup, args.iterations)
    results = []
    for rows, cols in QUICK_SHAPES if args.quick else SHAPES:
        for name, dtype in DTYPES.items():
            for transposed, batch in [(t, b) for t in (False, True) for b in BATCHES]:
                ms, weight_bytes = product(
                    rows, cols, batch, dtype, transposed, args.warmup, args.iterations)
                gbps = weight_bytes / (ms * 1e-3) / 1e9
                results.append({
                    "product": "xT·W" if transposed else "W·x",
                    "format": name,
                    "rows": rows,
                    "cols": cols,
                    "batch": batch,
                    "seconds": ms * 1e-3,
                    "weight_bytes": weight_bytes,
                    "weights_gbps": gbps,
                    "ratio_to_copy": gbps / copy,
                    "op": ("torch.mv" if batch == 1 else "torch.matmul (n x 8)")
                    + (" of W.t()" if transposed else ""),
                })
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "copy_gbps": copy,
        "timing": "CUDA events, median of %d after %d warm-ups" % (args.iterations, args.warmup),
        "results": results,
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
