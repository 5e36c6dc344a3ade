#!/usr/bin/python3
"""`ssltrain loss` (through the main binary, so the exec of ssltrain-loss is tested) on files
written by h5py, float32 and float64: every expected group with value and gradients of the
right shapes; values against independent numpy computations of the official formulas
(SimCLR NT-Xent with the tool's default: official SUM of the two directions, T 0.1; VICReg;
W2 of LOSSES-SPEC 1b with cov_eps 0; L_U; alignment; BYOL; SimSiam); one VICReg gradient by
central differences through the numpy formula; skipped-with-note, asked-for-but-absent (2),
unknown loss (2), bad files (3). Usage: test_loss_tool.py --ssltrain PATH --tmp DIR"""
import argparse, json, os, subprocess, sys

try:
    import h5py, numpy as np
except ImportError as e:
    print(f"test_loss_tool: SKIP: {e} (install python3-h5py python3-numpy)")
    sys.exit(77)

SEED = 20261124
ALL = ["simclr", "moco", "byol", "simsiam", "swav", "barlow", "vicreg", "zero_fcl", "zero_icl",
       "wmse", "sdbn", "cwrgp", "rdm", "w2", "uniformity", "alignment"]
GRADS = {"moco": ["z1", "z2"], "byol": ["p1", "p2"], "simsiam": ["p1", "p2"], "rdm": ["p1", "p2"],
         "swav": ["z1", "z2", "prototypes"]}


def normalise(z, eps=1e-12):
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)


def logsumexp(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def simclr(a, b, t=0.1):
    """google-research/simclr add_contrastive_loss: SUM of the two directions' means."""
    h1, h2 = normalise(a, 1e-6), normalise(b, 1e-6)
    n = len(a)
    total = 0.0
    for x, y in ((h1, h2), (h2, h1)):
        for i in range(n):
            own = np.delete(x @ x[i], i)
            logits = np.concatenate([y @ x[i], own]) / t
            total += (logsumexp(logits) - logits[i]) / n
    return total


def vicreg(a, b, sim=25.0, std=25.0, cov=1.0):
    """facebookresearch/vicreg main_vicreg.py VICReg.forward."""
    n, d = a.shape
    inv = ((a - b) ** 2).mean()
    x, y = a - a.mean(0), b - b.mean(0)
    sx, sy = np.sqrt(x.var(0, ddof=1) + 1e-4), np.sqrt(y.var(0, ddof=1) + 1e-4)
    std_loss = np.maximum(0, 1 - sx).mean() / 2 + np.maximum(0, 1 - sy).mean() / 2
    cx, cy = x.T @ x / (n - 1), y.T @ y / (n - 1)
    off = lambda c: (c ** 2).sum() - (np.diag(c) ** 2).sum()
    return sim * inv + std * std_loss + cov * (off(cx) / d + off(cy) / d)


def w2(a, b):
    x = np.concatenate([normalise(a), normalise(b)])
    d = x.shape[1]
    mu = x.mean(0)
    sig = (x - mu).T @ (x - mu) / len(x)
    lam = np.linalg.eigvalsh(sig)
    return np.sqrt(max(0.0, mu @ mu + 1 + np.trace(sig) - 2 / np.sqrt(d) * np.sqrt(np.abs(lam)).sum()))


def uniformity(a, b, t=2.0):
    def u(z):
        x = normalise(z)
        sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)[np.triu_indices(len(x), 1)]
        return np.log(np.exp(-t * sq).mean())
    return (u(a) + u(b)) / 2


def alignment(a, b):
    return (np.linalg.norm(normalise(a) - normalise(b), axis=1) ** 2).mean()


def byol(p1, p2, t1, t2):
    l2n = lambda x: x / np.sqrt(np.maximum((x ** 2).sum(1, keepdims=True), 1e-12))
    reg = lambda x, y: ((l2n(x) - l2n(y)) ** 2).sum(1)
    return (reg(p1, t2) + reg(p2, t1)).mean()


def simsiam(p1, p2, t1, t2):
    def cos(x, y):
        nx = np.maximum(np.linalg.norm(x, axis=1), 1e-8)
        ny = np.maximum(np.linalg.norm(y, axis=1), 1e-8)
        return (x * y).sum(1) / (nx * ny)
    return -(cos(p1, t2).mean() + cos(p2, t1).mean()) * 0.5


failures = 0


def check(ok, what):
    global failures
    if not ok:
        failures += 1
    print(("ok   " if ok else "FAIL ") + what)


def run(ssltrain, *args):
    return subprocess.run([ssltrain, "loss", *args], capture_output=True, text=True)


def close(got, want, rel=1e-9):
    return abs(got - want) <= rel * max(abs(want), 1e-300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    n, d = 16, 8
    data = {k: rng.standard_normal((n, d)) for k in ("z1", "z2", "p1", "p2", "t1", "t2")}
    data["z2"] = data["z1"] + 0.5 * data["z2"]
    q = rng.standard_normal((32, d))
    data["queue"] = normalise(q)
    data["prototypes"] = normalise(rng.standard_normal((10, d)))

    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        inp, out = os.path.join(a.tmp, f"in-{name}.h5"), os.path.join(a.tmp, f"out-{name}.h5")
        with h5py.File(inp, "w") as f:
            for k, v in data.items():
                f[k] = v.astype(dtype)
        r = run(a.ssltrain, inp, "--out", out)
        check(r.returncode == 0, f"{name}: exit 0 (got {r.returncode}: {r.stderr.strip()})")
        if r.returncode != 0:
            continue
        summary = json.loads(r.stdout)
        check(summary["n"] == n and summary["d"] == d and summary["file"] == inp, f"{name}: summary n, d, file")
        check(sorted(summary["losses"]) == sorted(ALL) and summary["skipped"] == {},
              f"{name}: every loss computed, none skipped")
        check(not os.path.exists(out + ".tmp"), f"{name}: no {out}.tmp left")
        x = {k: v.astype(dtype).astype(np.float64) for k, v in data.items()}  # the values the tool read
        with h5py.File(out, "r") as f:
            check(f.attrs["format"] == "ssltrain-loss" and int(f.attrs["format_version"]) == 1
                  and f.attrs["source"] == inp, f"{name}: root attributes")
            for loss in ALL:
                grads = GRADS.get(loss, ["z1", "z2"])
                g = f.get(loss)
                ok = g is not None and g["value"].shape == () and g["value"].dtype == np.float64
                ok = ok and all(g[f"grad_{i}"].shape == data[i].shape and g[f"grad_{i}"].dtype == np.float64
                                for i in grads)
                ok = ok and sorted(g) == sorted(["value"] + [f"grad_{i}" for i in grads])
                ok = ok and summary["losses"][loss]["grads"] == grads
                ok = ok and close(float(g["value"][()]), summary["losses"][loss]["value"], 1e-15)
                ok = ok and all(np.isfinite(g[f"grad_{i}"][()]).all() for i in grads)
                check(ok, f"{name}: /{loss} has value and grad_{{{','.join(grads)}}} of the right shapes")
            refs = {
                "simclr": simclr(x["z1"], x["z2"]),
                "vicreg": vicreg(x["z1"], x["z2"]),
                "w2": w2(x["z1"], x["z2"]),
                "uniformity": uniformity(x["z1"], x["z2"]),
                "alignment": alignment(x["z1"], x["z2"]),
                "byol": byol(x["p1"], x["p2"], x["t1"], x["t2"]),
                "simsiam": simsiam(x["p1"], x["p2"], x["t1"], x["t2"]),
            }
            for loss, want in refs.items():
                got = float(f[loss]["value"][()])
                check(close(got, want), f"{name}: {loss} = {got!r}, numpy {want!r}")
            # central difference of the numpy VICReg in z1[0, 0]
            h = 1e-6
            zp, zm = x["z1"].copy(), x["z1"].copy()
            zp[0, 0] += h
            zm[0, 0] -= h
            fd = (vicreg(zp, x["z2"]) - vicreg(zm, x["z2"])) / (2 * h)
            got = float(f["vicreg"]["grad_z1"][0, 0])
            check(abs(got - fd) <= 1e-6 * max(1.0, abs(fd)), f"{name}: vicreg grad_z1[0,0] = {got!r}, fd {fd!r}")

    # overrides reach the loss: simclr at T 0.5
    inp = os.path.join(a.tmp, "in-float64.h5")
    r = run(a.ssltrain, inp, "--out", os.path.join(a.tmp, "t05.h5"), "--losses", "simclr",
            "loss.simclr.temperature=0.5")
    ok = r.returncode == 0 and list(json.loads(r.stdout)["losses"]) == ["simclr"]
    check(ok and close(json.loads(r.stdout)["losses"]["simclr"]["value"], simclr(data["z1"], data["z2"], 0.5)),
          "loss.simclr.temperature=0.5 and --losses simclr")

    # only z1, z2: the others are skipped with a note
    zz = os.path.join(a.tmp, "zz.h5")
    with h5py.File(zz, "w") as f:
        f["z1"], f["z2"] = data["z1"], data["z2"]
    r = run(a.ssltrain, zz, "--out", os.path.join(a.tmp, "zz-out.h5"))
    ok = r.returncode == 0
    if ok:
        s = json.loads(r.stdout)
        ok = sorted(s["skipped"]) == sorted(["moco", "byol", "simsiam", "swav", "rdm"])
        ok = ok and s["skipped"]["moco"] == "no /t1, /t2, /queue" and s["skipped"]["swav"] == "no /prototypes"
        ok = ok and sorted(s["losses"]) == sorted(set(ALL) - set(s["skipped"]))
        with h5py.File(os.path.join(a.tmp, "zz-out.h5"), "r") as f:
            ok = ok and "moco" not in f and "simclr" in f
    check(ok, f"only /z1, /z2: absent-input losses skipped with a note ({r.stderr.strip()})")

    def expect(code, args, match, what):
        r = run(a.ssltrain, *args)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == code and len(lines) == 1 and match in lines[0],
              f"{what}: exit {code}, one line with '{match}' (got {r.returncode}: {r.stderr.strip()})")

    never = os.path.join(a.tmp, "never.h5")
    expect(2, [zz, "--out", never, "--losses", "simclr,moco"], "moco needs inputs", "asked-for moco without /queue")
    expect(2, [zz, "--out", never, "--losses", "simclr,nope"], "unknown loss 'nope'", "unknown loss name")
    expect(2, [zz, "--out", never, "loss.nope=1"], "loss.nope", "unknown key")
    expect(2, [zz], "--out", "missing --out")
    bad = os.path.join(a.tmp, "bad.h5")
    with open(bad, "w") as fh:
        fh.write("not hdf5\n")
    expect(3, [bad, "--out", never], "not an HDF5 file", "a text file")
    expect(3, [os.path.join(a.tmp, "missing.h5"), "--out", never], "missing.h5", "a missing file")
    mism = os.path.join(a.tmp, "mismatch.h5")
    with h5py.File(mism, "w") as f:
        f["z1"], f["z2"] = data["z1"], data["z2"][:, :4]
    expect(3, [mism, "--out", never], "/z2", "z1, z2 shape mismatch")
    nanf = os.path.join(a.tmp, "nan.h5")
    z = data["z1"].copy()
    z[3, 2] = np.nan
    with h5py.File(nanf, "w") as f:
        f["z1"], f["z2"] = z, data["z2"]
    expect(3, [nanf, "--out", never], "/z1[3, 2] is not finite", "non-finite input")
    rank3 = os.path.join(a.tmp, "rank3.h5")
    with h5py.File(rank3, "w") as f:
        f["z1"], f["z2"] = data["z1"][None], data["z2"]
    expect(3, [rank3, "--out", never], "must be 2-D", "a rank-3 /z1")
    check(not os.path.exists(never), "no output file after an error")

    print(f"test_loss_tool: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
