#!/usr/bin/python3
"""`ssltrain analyze` against an independent numpy computation of the same definitions
(LOSSES-SPEC 1a, 1c, 14) on files written by h5py, float32 and float64; bad files get exit 3
and one line naming the file. Usage: test_analyze.py --ssltrain PATH --tmp DIR"""
import argparse, json, os, subprocess, sys

try:
    import h5py, numpy as np
except ImportError as e:
    print(f"test_analyze: SKIP: {e} (install python3-h5py python3-numpy)")
    sys.exit(77)


def normalise(z):
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def reference(z, z1=None, z2=None):
    x = normalise(z)
    n, d = x.shape
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / n
    lam = np.linalg.eigvalsh(cov)
    w2 = np.sqrt(max(0.0, mu @ mu + 1 + np.trace(cov) - 2 / np.sqrt(d) * np.sqrt(np.abs(lam) + 1e-8).sum()))
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)[np.triu_indices(n, 1)]
    unif = np.log(np.exp(-2 * sq).mean())
    zc = z - z.mean(0)
    s_c = np.linalg.svd(zc, compute_uv=False)
    s = np.linalg.svd(z, compute_uv=False)
    rank = int((s_c > s_c[0] * max(n, d) * np.finfo(np.float32).eps).sum())
    p = s / s.sum()
    p = p[p > 0]
    erank = float(np.exp(-(p * np.log(p)).sum()))
    out = {"w2": w2, "uniformity": unif, "rank": rank, "effective_rank": erank,
           "stable_rank": (s_c ** 2).sum() / s_c[0] ** 2, "rank_tol0.1": int((s > 0.1).sum())}
    if z1 is not None:
        out["alignment"] = float((np.linalg.norm(normalise(z1) - normalise(z2), axis=1) ** 2).mean())
    return out


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    rng = np.random.default_rng(20261123)
    z = rng.standard_normal((300, 48))
    z[:, 24:] *= 1e-3                                          # a partly collapsed embedding
    z1, z2 = z, z + 0.1 * rng.standard_normal(z.shape)
    failures = 0
    for dtype in (np.float32, np.float64):
        path = os.path.join(a.tmp, f"emb-{np.dtype(dtype).name}.h5")
        with h5py.File(path, "w") as f:
            f["z"] = z.astype(dtype)
            f["z1"] = z1.astype(dtype)
            f["z2"] = z2.astype(dtype)
        plot = path + ".png"
        r = run([a.ssltrain, "analyze", path, "--json", "--plot", plot])
        if r.returncode != 0:
            print(f"analyze {path} failed: {r.stderr}")
            return 1
        got = json.loads(r.stdout)
        zz = z.astype(dtype).astype(np.float64)
        want = reference(zz, z1.astype(dtype).astype(np.float64), z2.astype(dtype).astype(np.float64))
        for k, v in want.items():
            tol = 1e-4 * max(1.0, abs(v))
            ok = abs(got[k] - v) <= tol
            failures += not ok
            print(f"{np.dtype(dtype).name:8s} {k:16s} ssltrain {got[k]:.8g} numpy {v:.8g} {'ok' if ok else 'FAIL'}")
        spec = np.array(got["spectrum"])
        lam = np.sort(np.linalg.eigvalsh(np.cov(zz.T, bias=True)))[::-1]
        ok = np.allclose(spec, lam[:len(spec)], rtol=1e-4, atol=1e-9 * lam[0])
        failures += not ok
        print(f"{np.dtype(dtype).name:8s} spectrum ({len(spec)} values) {'ok' if ok else 'FAIL'}")
        if not (os.path.exists(plot) and open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"):
            print("no PNG plot written")
            failures += 1
    # bad files: exit 3 and one line naming the file
    text = os.path.join(a.tmp, "text.h5")
    open(text, "w").write("not hdf5")
    cube = os.path.join(a.tmp, "cube.h5")
    with h5py.File(cube, "w") as f:
        f["z"] = np.zeros((2, 3, 4), np.float32)
    ints = os.path.join(a.tmp, "ints.h5")
    with h5py.File(ints, "w") as f:
        f["z"] = np.zeros((5, 3), np.int32)
    for path, reason in ((text, "not an HDF5 file"), (cube, "must be 2-D"), (ints, "floating-point")):
        r = run([a.ssltrain, "analyze", path])
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        ok = r.returncode == 3 and len(lines) == 1 and path in lines[0] and reason in lines[0]
        failures += not ok
        print(f"bad file {os.path.basename(path)}: exit {r.returncode} {lines} {'ok' if ok else 'FAIL'}")
    print(f"test_analyze: {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
