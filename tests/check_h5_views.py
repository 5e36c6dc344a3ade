#!/usr/bin/python3
"""Checks what `ssltrain convert` and `ssltrain augment` wrote, with independent tools:
the HDF5 file opens in h5py with self-describing attributes and the shapes of Fashion-MNIST;
the PNG has the grid's dimensions. Usage: check_h5_views.py FILE.h5 GRID.png ROWS COLS CELL ZOOM"""
import struct, sys, zlib


def check_h5(path):
    try:
        import h5py
    except ImportError:
        print("check_h5_views: SKIP: no h5py (install python3-h5py)")
        sys.exit(77)
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (60000, 1, 28, 28), f["images"].shape
        assert f["images"].dtype == "uint8"
        assert f["labels"].shape == (60000,) and f["labels"].dtype.kind == "i"
        assert f["test/images"].shape == (10000, 1, 28, 28)
        assert int(f.attrs["n_classes"]) == 10
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        assert fmt == "ssltrain-images", fmt
        labels = f["labels"][:]
        assert labels.min() == 0 and labels.max() == 9
        assert sorted(set(int(x) for x in (labels == 3).nonzero()[0][:1])) is not None


def check_png(path, rows, cols, cell, zoom):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    gap = 2 * zoom
    want = (cols * (cell * zoom + gap) + gap, rows * (cell * zoom + gap) + gap)
    assert (width, height) == want, ((width, height), want)
    # the pixels decompress (the IDAT stream is complete)
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width), len(raw)


if __name__ == "__main__":
    h5, png, rows, cols, cell, zoom = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
    check_h5(h5)
    check_png(png, rows, cols, cell, zoom)
    print("check_h5_views: HDF5 attributes/shapes and PNG grid OK")
