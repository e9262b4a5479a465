#!/usr/bin/env python3
"""Bit-for-bit cross-check of nyxq's nearest rounding against ggml's reference
quantizers as the Python package `gguf` implements them (and F16 against
numpy's float16), and of nyxq's dequantize against gguf's dequantizers.

Quantizes every tensor of a weight folder (raw little-endian float32 files)
plus seeded random data through the nyxq C ABI (ctypes on libnyxq.so), and
requires identical bytes for Q8_0, Q4_0, Q4_1, Q5_0, BF16 and F16, and, for
the block formats, identical float bits when those bytes are dequantized.
IQ4_NL has only its dequantizer in gguf 0.19.0 (its quantize raises
NotImplementedError): its layout is checked by gguf-py's dequantizer applied
to nyxq's bytes. The K-quants (Q4_K, Q5_K, Q6_K) have no reference quantizer
in gguf either: nyxq's bytes, nearest and error-minimising, must dequantize
in gguf to exactly nyxq's floats, on every tensor whose element count is
whole super-blocks of 256. Prints the SNR of each tensor and format. Exits 1
on any mismatch.
"""
import argparse
import ctypes
import math
import pathlib
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

FORMATS = {  # nyxq format value -> (name, reference quantizer, or None where gguf has none)
    1: ("F16", lambda x: x.astype(np.float16).view(np.uint8).ravel()),
    2: ("BF16", lambda x: quants.quantize(x, GGMLQuantizationType.BF16).view(np.uint8).ravel()),
    3: ("Q8_0", lambda x: quants.quantize(x, GGMLQuantizationType.Q8_0).ravel()),
    4: ("Q4_0", lambda x: quants.quantize(x, GGMLQuantizationType.Q4_0).ravel()),
    5: ("Q4_1", lambda x: quants.quantize(x, GGMLQuantizationType.Q4_1).ravel()),
    6: ("Q5_0", lambda x: quants.quantize(x, GGMLQuantizationType.Q5_0).ravel()),
    7: ("IQ4_NL", None),
}
# nyxq format value -> gguf's type, for the formats whose dequantizer is checked too.
DEQUANTIZED = {
    3: GGMLQuantizationType.Q8_0,
    4: GGMLQuantizationType.Q4_0,
    5: GGMLQuantizationType.Q4_1,
    6: GGMLQuantizationType.Q5_0,
    7: GGMLQuantizationType.IQ4_NL,
}
# The K-quants: nyxq format value -> (name, gguf's type). Their layout is
# checked through gguf's dequantizer alone.
K_QUANTS = {
    8: ("Q4_K", GGMLQuantizationType.Q4_K),
    9: ("Q5_K", GGMLQuantizationType.Q5_K),
    10: ("Q6_K", GGMLQuantizationType.Q6_K),
}
K_BLOCK = 256
ROUNDING_NEAREST, ROUNDING_ERROR_MINIMISING = 0, 1


class QuantizeOptions(ctypes.Structure):
    """NyxqQuantizeOptions of include/nyxq.h (layout asserted by test_layout)."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("rounding", ctypes.c_int32),
        ("non_finite", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("first_index", ctypes.c_uint64),
        ("importance", ctypes.c_void_p),
        ("importance_len", ctypes.c_size_t),
    ]


class Nyxq:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.nyxq_status_str.restype = ctypes.c_char_p
        self.lib.nyxq_last_error_message.restype = ctypes.c_char_p
        self.lib.nyxq_quantize.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t,
                                           ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.nyxq_dequantize.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t,
                                             ctypes.c_void_p, ctypes.c_size_t]
        self.lib.nyxq_quantized_size.argtypes = [ctypes.c_int32, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
        self.lib.nyxq_quantize_options_default.argtypes = [ctypes.c_void_p]
        self.ctx = ctypes.c_void_p()
        self.check(self.lib.nyxq_context_create(None, ctypes.byref(self.ctx)))

    def check(self, status):
        if status != 0:
            raise RuntimeError(f"{self.lib.nyxq_status_str(status).decode()}: "
                               f"{self.lib.nyxq_last_error_message().decode()}")

    def quantize(self, fmt, x, rounding=ROUNDING_NEAREST):
        x = np.ascontiguousarray(x, dtype=np.float32)
        size = ctypes.c_size_t()
        self.check(self.lib.nyxq_quantized_size(fmt, x.size, ctypes.byref(size)))
        out = np.empty(size.value, dtype=np.uint8)
        options = None
        if rounding != ROUNDING_NEAREST:
            options = QuantizeOptions()
            self.check(self.lib.nyxq_quantize_options_default(ctypes.byref(options)))
            options.rounding = rounding
            options = ctypes.byref(options)
        self.check(self.lib.nyxq_quantize(self.ctx, fmt, x.ctypes.data, x.size, options, out.ctypes.data, out.size))
        return out

    def dequantize(self, fmt, q, n):
        y = np.empty(n, dtype=np.float32)
        self.check(self.lib.nyxq_dequantize(self.ctx, fmt, q.ctypes.data, q.size, y.ctypes.data, y.size))
        return y

    def close(self):
        self.lib.nyxq_context_destroy(self.ctx)


def snr_db(x, y):
    noise = float(np.sum((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    signal = float(np.sum(x.astype(np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def random_sets():
    rng = np.random.default_rng(20261128)
    yield "random normal", rng.standard_normal(32 * 4096).astype(np.float32)
    yield "random uniform ±1000", rng.uniform(-1000, 1000, 32 * 2048).astype(np.float32)
    yield "random lognormal scales", (rng.standard_normal(32 * 2048) * np.repeat(
        np.clip(rng.lognormal(0, 3, 2048), 1e-6, 5e3), 32)).astype(np.float32)
    # Exact ties: multiples of 1/2 scaled so that x*id lands on .5 for Q8_0.
    ties = (rng.integers(-254, 255, 32 * 1024) / 2.0).astype(np.float32)
    ties[::32] = 127.0
    yield "exact ties", ties
    zeros = rng.standard_normal(32 * 512).astype(np.float32)
    zeros[: 32 * 256] = 0.0
    # Blocks of -0.0 are left out on purpose: there gguf-py's Q4_0 and Q5_0
    # (max = the first element, -0.0, so d = +0.0) depart from ggml's C
    # reference (max starts at +0.0, so d = -0.0); nyxq follows the C
    # reference, and src/quant/scalar.rs tests that case.
    yield "zero blocks", zeros
    yield "equal values", np.full(32 * 64, 0.3, dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", required=True)
    parser.add_argument("--weights", required=True)
    args = parser.parse_args()
    nyxq = Nyxq(args.lib)
    weights = pathlib.Path(args.weights)
    sets = []
    for path in sorted(weights.glob("*.f32")):
        sets.append((path.name.removeprefix("minilm-l6-v2__").removesuffix(".f32"),
                     np.fromfile(path, dtype="<f4")))
    if not sets:
        # The weights are committed: without them the check would compare
        # random data only and pass for the wrong reason.
        sys.exit(f"gguf_crosscheck: no *.f32 tensors in {weights}")
    sets.extend(random_sets())

    mismatches = 0
    checks = len(sets) * sum(1 for _, reference in FORMATS.values() if reference is not None)
    names = [FORMATS[f][0] for f in FORMATS]
    print(f"{'tensor':<48} {'n':>9} " + " ".join(f"{n:>8}" for n in names) + "   (SNR dB; * = bytes differ)")
    for label, x in sets:
        cells = []
        for fmt, (name, reference) in FORMATS.items():
            ours = nyxq.quantize(fmt, x)
            theirs = ours if reference is None else reference(x)
            same = ours.size == theirs.size and np.array_equal(ours, theirs)
            if not same:
                mismatches += 1
                diff = np.flatnonzero(ours != theirs) if ours.size == theirs.size else [0]
                print(f"MISMATCH {label} {name}: {len(diff)} bytes differ, first at byte {diff[0]}", file=sys.stderr)
            restored = nyxq.dequantize(fmt, ours, x.size)
            if fmt in DEQUANTIZED:
                checks += 1
                expected = quants.dequantize(ours, DEQUANTIZED[fmt]).astype(np.float32).ravel()
                if not np.array_equal(restored.view(np.uint32), expected.view(np.uint32)):
                    same = False
                    mismatches += 1
                    diff = np.flatnonzero(restored.view(np.uint32) != expected.view(np.uint32))
                    print(f"MISMATCH {label} {name} dequantize: {len(diff)} values differ, first at {diff[0]}",
                          file=sys.stderr)
            snr = snr_db(x, restored)
            cells.append(f"{snr:>7.2f}{' ' if same else '*'}")
        print(f"{label:<48} {x.size:>9} " + " ".join(cells))

    # The K-quants: gguf's dequantizer on nyxq's bytes, nearest and error-minimising.
    roundings = [(ROUNDING_NEAREST, ""), (ROUNDING_ERROR_MINIMISING, " em")]
    names = [name + suffix for name, _ in K_QUANTS.values() for _, suffix in roundings]
    print()
    print(f"{'tensor':<48} {'n':>9} " + " ".join(f"{n:>8}" for n in names) +
          "   (SNR dB; * = gguf dequantizes differently; tensors of whole super-blocks)")
    for label, x in sets:
        if x.size % K_BLOCK != 0:
            continue
        cells = []
        for fmt, (name, gguf_type) in K_QUANTS.items():
            for rounding, suffix in roundings:
                checks += 1
                ours = nyxq.quantize(fmt, x, rounding)
                restored = nyxq.dequantize(fmt, ours, x.size)
                expected = quants.dequantize(ours, gguf_type).astype(np.float32).ravel()
                same = np.array_equal(restored.view(np.uint32), expected.view(np.uint32))
                if not same:
                    mismatches += 1
                    diff = np.flatnonzero(restored.view(np.uint32) != expected.view(np.uint32))
                    print(f"MISMATCH {label} {name}{suffix} dequantize: {len(diff)} values differ, first at {diff[0]}",
                          file=sys.stderr)
                cells.append(f"{snr_db(x, restored):>7.2f}{' ' if same else '*'}")
        print(f"{label:<48} {x.size:>9} " + " ".join(cells))
    nyxq.close()
    print(f"{checks - mismatches} passed, {mismatches} failed")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
