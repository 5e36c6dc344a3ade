#!/usr/bin/python3
"""`ssltrain study` checks.
--collapse: DIR/collapse.csv (N = 3000, m = 200, --quick) against LOSSES-SPEC 1c: W2 increases
with eta and is within 0.03 of the table, L_U within 0.01, the PNG exists.
--ssltrain PATH: every study runs with --quick into DIR and writes its .csv, .md and .png.
Usage: check_study.py --dir DIR (--collapse | --ssltrain PATH)"""
import argparse, os, subprocess, sys

try:
    import numpy as np
except ImportError as e:
    print(f"check_study: SKIP: {e} (install python3-numpy)")
    sys.exit(77)

STUDIES = ["distribution", "collapse", "dimension", "feature-cloning", "feature-baby",
           "instance-cloning", "large-mean"]
ETA = [0.0, 0.25, 0.5, 0.75, 0.9]
W2_TABLE = [0.130, 0.528, 0.768, 1.000, 1.175]
LU_TABLE = [-3.960, -3.947, -3.920, -3.841, -3.588]


def read_csv(path):
    a = np.genfromtxt(path, delimiter=",", names=True)
    return np.atleast_1d(a)


def check_collapse(d):
    t = read_csv(os.path.join(d, "collapse.csv"))
    assert list(t["m"]) == [200] * 5, t["m"]
    assert np.allclose(t["eta"], ETA), t["eta"]
    assert list(t["k"]) == [200, 150, 100, 50, 19] and list(t["d"]) == [200] * 4 + [199], (t["k"], t["d"])
    w2, lu = t["w2"], t["lu"]
    assert np.all(np.diff(w2) > 0), f"W2 does not increase with eta: {w2}"
    assert np.all(np.abs(w2 - W2_TABLE) < 0.03), f"W2 {w2} vs {W2_TABLE}"
    assert np.all(np.abs(lu - LU_TABLE) < 0.01), f"L_U {lu} vs {LU_TABLE}"
    assert np.allclose(t["w2_pop"], np.sqrt(2 - 2 * np.sqrt(1 - np.array(ETA)))), t["w2_pop"]
    # W2 tracks the population value; L_U moves far less than W2 up to eta = 0.75
    assert np.all(np.abs(w2[1:] - t["w2_pop"][1:]) < 0.02), (w2, t["w2_pop"])
    assert (lu[3] - lu[0]) < 0.2 * (w2[3] - w2[0]), (lu, w2)
    png = os.path.join(d, "collapse.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", png
    print("collapse: W2", np.round(w2, 4), "L_U", np.round(lu, 4))


def run_all(ssltrain, d):
    for s in STUDIES:
        r = subprocess.run([ssltrain, "study", s, "--quick", "--out", d], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"{s}: exit {r.returncode}: {r.stderr}"
        assert f"### ssltrain study {s}" in r.stdout, r.stdout
        for ext in ("csv", "md", "png"):
            p = os.path.join(d, f"{s}.{ext}")
            assert os.path.getsize(p) > 0, p
        t = read_csv(os.path.join(d, f"{s}.csv"))
        assert len(t) >= 5 and np.all(np.isfinite(t["w2"])) and np.all(np.isfinite(t["lu"])), s
        print(f"{s}: {len(t)} rows")
    ic = read_csv(os.path.join(d, "instance-cloning.csv"))
    assert np.ptp(ic["w2"]) < 1e-4, f"W2 not invariant to instance cloning: {ic['w2']}"
    assert np.ptp(ic["lu"]) > 0.05, f"L_U unexpectedly invariant to instance cloning: {ic['lu']}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--collapse", action="store_true")
    p.add_argument("--ssltrain")
    a = p.parse_args()
    if a.collapse:
        check_collapse(a.dir)
    if a.ssltrain:
        run_all(a.ssltrain, a.dir)
        check_collapse(a.dir)
    print("check_study: OK")


main()
