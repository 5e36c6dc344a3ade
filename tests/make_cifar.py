#!/usr/bin/python3
"""Writes a small CIFAR-10 binary directory of synthetic but recognisable colour images (a red
disc on a blue-to-yellow gradient, a green bar whose angle depends on the label), so the
colour ops of an augmentation grid can be judged by eye. Usage: make_cifar.py DIR [PER_FILE]"""
import math, os, struct, sys


def image(label, k):
    px = bytearray(3 * 32 * 32)
    cx, cy = 10 + (k * 7) % 12, 12 + (k * 5) % 10
    angle = label * math.pi / 10
    for y in range(32):
        for x in range(32):
            r, g, b = 40 + 6 * x, 40 + 6 * x, 200 - 5 * x          # blue -> yellow gradient
            if (x - cx) ** 2 + (y - cy) ** 2 < 36:
                r, g, b = 230, 30, 30                              # red disc
            d = abs((x - 16) * math.sin(angle) - (y - 16) * math.cos(angle))
            if d < 1.5:
                r, g, b = 20, 220, 40                              # green bar
            for c, v in enumerate((r, g, b)):
                px[c * 1024 + y * 32 + x] = max(0, min(255, v))
    return px


def write(path, n, offset):
    with open(path, "wb") as f:
        for k in range(n):
            label = (offset + k) % 10
            f.write(struct.pack("B", label) + image(label, offset + k))


if __name__ == "__main__":
    out, per = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20
    os.makedirs(out, exist_ok=True)
    for i in range(1, 6):
        write(os.path.join(out, f"data_batch_{i}.bin"), per, i * per)
    write(os.path.join(out, "test_batch.bin"), per, 0)
