#!/usr/bin/python3
"""A small real-data training set for the trainer tests: the first N training and M test images
of Fashion-MNIST (the Debian package's IDX gz files) in ssltrain's HDF5 image format
(/images uint8 (N, 1, 28, 28), /labels int64, /test/images, /test/labels, n_classes = 10).
Usage: make_fmnist_subset.py OUT.h5 [--train N] [--test M]; exits 77 (ctest skip) without h5py."""
import argparse, gzip, os, struct, sys

try:
    import h5py, numpy as np
except ImportError:
    print("make_fmnist_subset: h5py/numpy missing (apt-get install python3-h5py)", file=sys.stderr)
    sys.exit(77)

ROOT = "/usr/share/datasets/fashion-mnist"


def idx(path, count, image):
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        shape = struct.unpack(">II", f.read(8)) if image else ()
        size = shape[0] * shape[1] if image else 1
        data = np.frombuffer(f.read(count * size), dtype=np.uint8)
    return data.reshape((count, 1) + shape) if image else data.astype(np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--test", type=int, default=512)
    a = ap.parse_args()
    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f["images"] = idx(os.path.join(ROOT, "train-images-idx3-ubyte.gz"), a.train, True)
        f["labels"] = idx(os.path.join(ROOT, "train-labels-idx1-ubyte.gz"), a.train, False)
        f["test/images"] = idx(os.path.join(ROOT, "t10k-images-idx3-ubyte.gz"), a.test, True)
        f["test/labels"] = idx(os.path.join(ROOT, "t10k-labels-idx1-ubyte.gz"), a.test, False)
        f.attrs["n_classes"] = np.int64(10)
        f.attrs["source"] = "Fashion-MNIST subset (tests/make_fmnist_subset.py)"
    os.replace(tmp, a.out)


main()
