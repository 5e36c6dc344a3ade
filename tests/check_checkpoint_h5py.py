#!/usr/bin/python3
"""h5py opens a checkpoint written by tests/test_checkpoint_mpi.c (`write DIR`) and checks it
without ssltrain code: latest.h5 is a relative symlink to step-00000030.h5, dataset names
(with dots, inside groups), dtypes, shapes, values (the test's formula, recomputed in numpy),
each dataset's crc32 attribute (zlib over the little-endian bytes), root attributes and the
group description; h5dump prints the header. Exit 77 (skipped) without h5py/numpy.
Usage: check_checkpoint_h5py.py DIR"""
import os, shutil, subprocess, sys, zlib

try:
    import h5py, numpy as np
except ImportError as e:
    print(f"check_checkpoint_h5py: SKIP: {e} (install python3-h5py python3-numpy)")
    sys.exit(77)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def values(e, dtype, shape):
    k = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    if dtype == np.float32:
        v = k.astype(np.float32) * np.float32(0.125) - np.float32(e)
    elif dtype == np.float64:
        v = k.astype(np.float64) / 7.0 - e
    elif dtype == np.int64:
        v = np.int64(-1099511627776) - k - e
    elif dtype == np.uint64:
        v = np.uint64(2**64 - 1) - (k * 977 + e).astype(np.uint64)
    elif dtype == np.int32:
        v = (-7 - (k + e)).astype(np.int32)
    else:
        v = ((k * 29 + e) % 256).astype(np.uint8)
    return v.astype(dtype).reshape(shape)


EXPECTED = [  # name, dtype, shape (tests/test_checkpoint_mpi.c g_shape)
    ("model/backbone.conv1.weight", np.float32, (4, 3, 3, 3)),
    ("model/backbone.bn1.running_mean", np.float64, (4,)),
    ("model/backbone.bn1.num_batches_tracked", np.int64, ()),
    ("state/rng.counters", np.uint64, (3, 2)),
    ("state/sampler.epoch", np.int32, (1,)),
    ("state/queue", np.uint8, (5, 2, 7)),
    ("optim/momentum", np.float32, (1000, 33)),
]


def main():
    d = sys.argv[1]
    latest = os.path.join(d, "latest.h5")
    check(os.path.islink(latest) and os.readlink(latest) == "step-00000030.h5",
          "latest.h5 -> step-00000030.h5 (relative)")
    with h5py.File(latest, "r") as f:
        a = f.attrs
        check(a["format"] == "ssltrain-checkpoint", f"format {a.get('format')!r}")
        check(int(a["format_version"]) == 1, "format_version 1")
        check(int(a["step"]) == 30 and int(a["epoch"]) == 3, "step 30, epoch 3")
        check(a["config"] == "method: simclr\ndata:\n  batch: 512\n", "config text")
        check(a["method"] == "simclr", "method")
        check(int(a["n_datasets"]) == len(EXPECTED), "n_datasets")
        check("crc32" in a["checksum"], "checksum description")
        check(isinstance(f["model"], h5py.Group), "model is a group")
        check(f["model"].attrs["description"] == "the online network (torch state_dict names)",
              "model description")
        check("backbone.conv1.weight" in f["model"], "a name with dots inside the group")
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        check(sorted(names) == sorted(n for n, _, _ in EXPECTED), f"dataset names {sorted(names)}")
        for i, (name, dtype, shape) in enumerate(EXPECTED):
            if name not in f:
                continue
            ds = f[name]
            check(ds.dtype == np.dtype(dtype).newbyteorder("<"), f"{name} dtype {ds.dtype}")
            check(ds.shape == shape, f"{name} shape {ds.shape}")
            got = ds[()]
            check(np.array_equal(np.asarray(got), values(i, dtype, shape)), f"{name} values")
            crc = zlib.crc32(np.ascontiguousarray(got, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())
            check(int(ds.attrs["crc32"]) == crc, f"{name} crc32 {int(ds.attrs['crc32']):#x} vs {crc:#x}")
    if shutil.which("h5dump"):
        out = subprocess.run(["h5dump", "-H", latest], capture_output=True, text=True)
        check(out.returncode == 0 and 'DATASET "backbone.conv1.weight"' in out.stdout, "h5dump -H")
    print(f"check_checkpoint_h5py: {'FAILED' if failures else 'passed'} ({len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
