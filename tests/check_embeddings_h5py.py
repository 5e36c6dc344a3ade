#!/usr/bin/python3
"""h5py opens an embedding dump written by tests/test_embeddings_mpi.c (`write`, 2 ranks) and
checks it without ssltrain code: exactly the datasets h, z, labels, index; their shapes, dtypes,
chunking (whole rows, ~1 MiB, at most N rows), no compression; every value (the test's formula,
recomputed in numpy); each dataset's description and the root attributes, strings as str and
integers as int64; a row slice. Exit 77 (skipped) without h5py/numpy.
Usage: check_embeddings_h5py.py FILE N"""
import sys

try:
    import h5py, numpy as np
except ImportError as e:
    print(f"check_embeddings_h5py: SKIP: {e} (install python3-h5py python3-numpy)")
    sys.exit(77)

DH, DZ, CHUNK_BYTES = 1000, 7, 1 << 20
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def expected(n):
    g = np.arange(n, dtype=np.int64)[:, None]
    c = np.arange(DH, dtype=np.int64)[None, :]
    h = ((g * 31 + c * 17) % 1009).astype(np.float32) / np.float32(64) - np.float32(7)
    c = np.arange(DZ, dtype=np.int64)[None, :]
    z = ((g * (2 * c + 3) + 5 * c) % 97 - 48).astype(np.float32) / np.float32(8)
    g = g[:, 0]
    return {"h": h, "z": z, "labels": g % 10, "index": (1 << 40) + (g * 7919) % 100003}


def check_dataset(f, name, want):
    d = f[name]
    check(d.dtype == want.dtype, f"{name}: dtype {d.dtype}, want {want.dtype}")
    check(d.shape == want.shape, f"{name}: shape {d.shape}, want {want.shape}")
    row_bytes = d.dtype.itemsize * (d.shape[1] if d.ndim == 2 else 1)
    rows = min(max(1, CHUNK_BYTES // row_bytes), d.shape[0])
    check(d.chunks == (rows,) + d.shape[1:], f"{name}: chunks {d.chunks}, want {(rows,) + d.shape[1:]}")
    check(d.compression is None and not d.shuffle, f"{name}: compressed ({d.compression})")
    check(np.array_equal(d[()], want), f"{name}: values differ from the formula")
    check(np.array_equal(d[100:300], want[100:300]), f"{name}: slice 100:300 differs")
    desc = d.attrs.get("description")
    check(isinstance(desc, str) and len(desc) > 10, f"{name}: description {desc!r}")


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    want_attrs = {"format": "ssltrain-embeddings", "format_version": 1, "method": "vicreg", "step": 1234,
                  "epoch": -3, "split": "test", "config": "model:\n  name: r\u00e9snet18\nloss: {name: vicreg}\n",
                  "git_revision": "0123abc-dirty", "dataset": "fashion-mnist", "note": "", "big": -(1 << 40) - 5}
    with h5py.File(path, "r") as f:
        check(sorted(f.keys()) == ["h", "index", "labels", "z"], f"datasets {sorted(f.keys())}")
        for name, want in expected(n).items():
            check_dataset(f, name, want)
        check(sorted(f.attrs.keys()) == sorted(want_attrs), f"root attributes {sorted(f.attrs.keys())}")
        for k, v in want_attrs.items():
            got = f.attrs.get(k)
            if isinstance(v, str):
                check(isinstance(got, str) and got == v, f"attribute {k}: {got!r} ({type(got).__name__}), want {v!r}")
            else:
                check(isinstance(got, np.int64) and got == v, f"attribute {k}: {got!r} ({type(got).__name__}), want int64 {v}")
    print(f"check_embeddings_h5py {path}: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
