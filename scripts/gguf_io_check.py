#!/usr/bin/env python3
"""GGUF files both ways between nyxq and gguf-py (the Python package `gguf`,
ggml's own reader and writer).

1. nyxq writes: a tensor of every nyxq format (values from the weight folder,
   quantized by nyxq) and two string keys go through nyxq_gguf_write; gguf's
   GGUFReader must find each tensor's name, shape, ggml type and exact bytes,
   and the keys' text.
2. gguf-py writes: GGUFWriter stores the same bytes under every ggml type
   nyxq has, with string, integer and array keys; nyxq_gguf_read must give
   back each tensor's name, shape, format and exact bytes, and the keys'
   values as text.

Exits 1 on any mismatch.
"""
import argparse
import ctypes
import pathlib
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

# nyxq format value -> (name, gguf's type), for every nyxq format.
FORMATS = {
    0: ("F32", GGMLQuantizationType.F32),
    1: ("F16", GGMLQuantizationType.F16),
    2: ("BF16", GGMLQuantizationType.BF16),
    3: ("Q8_0", GGMLQuantizationType.Q8_0),
    4: ("Q4_0", GGMLQuantizationType.Q4_0),
    5: ("Q4_1", GGMLQuantizationType.Q4_1),
    6: ("Q5_0", GGMLQuantizationType.Q5_0),
    7: ("IQ4_NL", GGMLQuantizationType.IQ4_NL),
    8: ("Q4_K", GGMLQuantizationType.Q4_K),
    9: ("Q5_K", GGMLQuantizationType.Q5_K),
    10: ("Q6_K", GGMLQuantizationType.Q6_K),
}
ROWS, COLS = 6, 512  # whole super-blocks of 256 in every row
PLAN, CONFIG = '{"tensors": []}', "[precision]\ndefault = INT4\n"


class TensorInfo(ctypes.Structure):
    """NyxqTensorInfo of include/nyxq.h (layout asserted by test_layout)."""
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("format", ctypes.c_int32),
        ("rank", ctypes.c_uint32),
        ("shape", ctypes.c_uint64 * 8),
        ("numel", ctypes.c_uint64),
        ("byte_len", ctypes.c_uint64),
    ]


class Nyxq:
    def __init__(self, path):
        lib = self.lib = ctypes.CDLL(path)
        lib.nyxq_status_str.restype = ctypes.c_char_p
        lib.nyxq_last_error_message.restype = ctypes.c_char_p
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.nyxq_tensor_create.argtypes = [vp, ctypes.c_char_p, vp, sz, ctypes.c_int32, vp]
        lib.nyxq_tensor_upload.argtypes = [vp, vp, sz, vp]
        lib.nyxq_tensor_data.argtypes = [vp, vp, vp]
        lib.nyxq_tensor_info.argtypes = [vp, ctypes.POINTER(TensorInfo)]
        lib.nyxq_tensor_destroy.argtypes = [vp]
        lib.nyxq_gguf_write.argtypes = [ctypes.c_char_p, vp, sz, vp, vp, sz]
        lib.nyxq_gguf_read.argtypes = [vp, ctypes.c_char_p, vp]
        lib.nyxq_gguf_tensor_count.argtypes = [vp, vp]
        lib.nyxq_gguf_tensor.argtypes = [vp, sz, vp]
        lib.nyxq_gguf_metadata.argtypes = [vp, ctypes.c_char_p, vp]
        lib.nyxq_gguf_destroy.argtypes = [vp]
        lib.nyxq_string_destroy.argtypes = [vp]
        self.ctx = ctypes.c_void_p()
        self.check(lib.nyxq_context_create(None, ctypes.byref(self.ctx)))

    def check(self, status):
        if status != 0:
            raise RuntimeError(f"{self.lib.nyxq_status_str(status).decode()}: "
                               f"{self.lib.nyxq_last_error_message().decode()}")

    def tensor(self, name, fmt, values):
        shape = (ctypes.c_uint64 * 2)(*values.shape)
        t = ctypes.c_void_p()
        self.check(self.lib.nyxq_tensor_create(self.ctx, name.encode(), shape, 2, fmt, ctypes.byref(t)))
        flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
        self.check(self.lib.nyxq_tensor_upload(t, flat.ctypes.data, flat.size, None))
        return t

    def data(self, t):
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        self.check(self.lib.nyxq_tensor_data(t, ctypes.byref(p), ctypes.byref(n)))
        return bytes(ctypes.string_at(p, n.value))

    def info(self, t):
        info = TensorInfo()
        self.check(self.lib.nyxq_tensor_info(t, ctypes.byref(info)))
        return info.name.decode(), info.format, tuple(info.shape[:info.rank])

    def metadata(self, gguf, key):
        text = ctypes.c_void_p()
        self.check(self.lib.nyxq_gguf_metadata(gguf, key.encode(), ctypes.byref(text)))
        if not text.value:
            return None
        value = ctypes.string_at(text).decode()
        self.check(self.lib.nyxq_string_destroy(text))
        return value


def weight_values(weights):
    """ROWS x COLS values from the first weight file with enough of them."""
    for path in sorted(pathlib.Path(weights).glob("*.f32")):
        v = np.fromfile(path, dtype="<f4")
        if v.size >= ROWS * COLS:
            return v[:ROWS * COLS].reshape(ROWS, COLS)
    return np.random.default_rng(1).normal(0, 0.05, (ROWS, COLS)).astype(np.float32)


def field_text(field):
    """A string key's text as gguf-py's reader holds it."""
    return bytes(field.parts[field.data[0]]).decode()


def nyxq_writes(nyxq, values, directory):
    failures = []
    path = str(directory / "nyxq_written.gguf")
    tensors, expected = [], {}
    for fmt, (name, _) in FORMATS.items():
        t = nyxq.tensor(f"w.{name.lower()}", fmt, values)
        tensors.append(t)
        expected[f"w.{name.lower()}"] = (fmt, nyxq.data(t))
    handles = (ctypes.c_void_p * len(tensors))(*[t.value for t in tensors])
    keys = (ctypes.c_char_p * 2)(b"nyxq.plan", b"nyxq.config")
    texts = (ctypes.c_char_p * 2)(PLAN.encode(), CONFIG.encode())
    nyxq.check(nyxq.lib.nyxq_gguf_write(path.encode(), handles, len(tensors), keys, texts, 2))
    for t in tensors:
        nyxq.check(nyxq.lib.nyxq_tensor_destroy(t))

    reader = GGUFReader(path)
    for key, text in (("nyxq.plan", PLAN), ("nyxq.config", CONFIG)):
        got = field_text(reader.fields[key]) if key in reader.fields else None
        if got != text:
            failures.append(f"gguf-py reads key {key} as {got!r}, nyxq wrote {text!r}")
    seen = set()
    for tensor in reader.tensors:
        fmt, data = expected.get(tensor.name, (None, None))
        if fmt is None:
            failures.append(f"gguf-py finds a tensor nyxq did not write: {tensor.name}")
            continue
        seen.add(tensor.name)
        name, gtype = FORMATS[fmt]
        shape = tuple(int(d) for d in reversed(tensor.shape))
        if tensor.tensor_type != gtype:
            failures.append(f"{tensor.name}: gguf-py reads type {tensor.tensor_type.name}, nyxq wrote {name}")
        if shape != (ROWS, COLS):
            failures.append(f"{tensor.name}: gguf-py reads shape {shape}, nyxq wrote {(ROWS, COLS)}")
        if np.asarray(tensor.data).tobytes() != data:
            failures.append(f"{tensor.name}: gguf-py reads other bytes than nyxq wrote")
        print(f"nyxq -> gguf-py  {name:7} {tensor.name:12} {shape} {len(data)} bytes",
              "ok" if not failures else "")
    for missing in set(expected) - seen:
        failures.append(f"gguf-py does not find tensor {missing}")
    return failures, expected


def gguf_writes(nyxq, expected, directory):
    failures = []
    path = str(directory / "gguf_py_written.gguf")
    writer = GGUFWriter(path, "nyxq-test")
    writer.add_string("nyxq.plan", PLAN)
    writer.add_uint32("test.count", 7)
    writer.add_array("test.list", ["a", "b"])
    for name, (fmt, data) in expected.items():
        _, gtype = FORMATS[fmt]
        raw = np.frombuffer(data, dtype=np.uint8).reshape(ROWS, -1)
        writer.add_tensor(name, raw, raw_dtype=gtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    gguf = ctypes.c_void_p()
    nyxq.check(nyxq.lib.nyxq_gguf_read(nyxq.ctx, path.encode(), ctypes.byref(gguf)))
    for key, want in (("nyxq.plan", PLAN), ("test.count", "7"), ("test.list", '["a", "b"]'),
                      ("general.architecture", "nyxq-test"), ("absent.key", None)):
        got = nyxq.metadata(gguf, key)
        if got != want:
            failures.append(f"nyxq reads key {key} as {got!r}, gguf-py wrote {want!r}")
    count = ctypes.c_size_t()
    nyxq.check(nyxq.lib.nyxq_gguf_tensor_count(gguf, ctypes.byref(count)))
    if count.value != len(expected):
        failures.append(f"nyxq reads {count.value} tensors, gguf-py wrote {len(expected)}")
    for i in range(count.value):
        t = ctypes.c_void_p()
        nyxq.check(nyxq.lib.nyxq_gguf_tensor(gguf, i, ctypes.byref(t)))
        name, fmt, shape = nyxq.info(t)
        want_fmt, want_data = expected[name]
        if fmt != want_fmt:
            failures.append(f"{name}: nyxq reads format {fmt}, gguf-py wrote {FORMATS[want_fmt][0]}")
        if shape != (ROWS, COLS):
            failures.append(f"{name}: nyxq reads shape {shape}, gguf-py wrote {(ROWS, COLS)}")
        if nyxq.data(t) != want_data:
            failures.append(f"{name}: nyxq reads other bytes than gguf-py wrote")
        print(f"gguf-py -> nyxq  {FORMATS[want_fmt][0]:7} {name:12} {shape}")
        nyxq.check(nyxq.lib.nyxq_tensor_destroy(t))
    nyxq.check(nyxq.lib.nyxq_gguf_destroy(gguf))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True, help="libnyxq.so")
    parser.add_argument("--weights", required=True, help="a folder of raw f32 weight files")
    args = parser.parse_args()
    nyxq = Nyxq(args.lib)
    values = weight_values(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        failures, expected = nyxq_writes(nyxq, values, directory)
        failures += gguf_writes(nyxq, expected, directory)
    for f in failures:
        print("MISMATCH:", f)
    print(f"{len(FORMATS)} formats both ways: {'ok' if not failures else f'{len(failures)} mismatches'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
