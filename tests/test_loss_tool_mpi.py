#!/usr/bin/python3
"""`mpiexec -n P ssltrain loss` (through the main binary: every process execs ssltrain-loss,
which starts MPI itself) writes what one process writes, for P = 1..4.

Input: h5py-written float64 /z1, /z2, /p1, /p2, /t1, /t2 (N = 24 rows, divisible by 1..4),
/queue and /prototypes (replicated on every rank). Checked:
  - every P: the same losses, the same datasets in each group, every value and gradient
    dataset within 1e-5 of the max |value| of the P = 1 dataset (the rows of a gradient were
    written by different ranks; SwAV's grad_prototypes is summed over the ranks), the summary
    JSON's values equal the file's, root attribute ranks = P, no OUT.tmp left;
  - linalg.scalapack_threshold=1 at P = 3 (every global eigenproblem through ScaLAPACK): the
    same values;
  - loss.per_rank=true: at P = 1 identical to global; at P = 2 wmse and zero_icl differ from
    global (the mode is wired), and the whitening losses (no communication in that mode) equal
    the mean of two one-process runs on the row halves, their gradients half of those runs';
  - errors print one "ssltrain loss:" line (rank 0) and every rank exits with the same code:
    N = 25 at P = 2 is a usage error (2) naming 25 and 2; a non-finite value in rank 2's rows
    at P = 4 is bad data (3) naming "[rank 2/4]" and the global row; no output file is left.
Usage: test_loss_tool_mpi.py --ssltrain PATH --mpiexec PATH --np-flag FLAG --tmp DIR"""
import argparse, json, os, subprocess, sys

try:
    import h5py, numpy as np
except ImportError as e:
    print(f"test_loss_tool_mpi: SKIP: {e} (install python3-h5py python3-numpy)")
    sys.exit(77)

SEED = 20261125
N, D, K_QUEUE, K_PROTO = 24, 8, 32, 10
REL = 1e-5
WHITENING = ["wmse", "sdbn", "cwrgp"]

failures = 0


def check(ok, what):
    global failures
    if not ok:
        failures += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)


def normalise(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def write_input(path, rows, rng, nan_at=None):
    data = {k: rng.standard_normal((rows, D)) for k in ("z1", "z2", "p1", "p2", "t1", "t2")}
    data["z2"] = data["z1"] + 0.5 * data["z2"]
    data["queue"] = normalise(rng.standard_normal((K_QUEUE, D)))
    data["prototypes"] = normalise(rng.standard_normal((K_PROTO, D)))
    if nan_at is not None:
        data["z1"][nan_at] = np.nan
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f[k] = v
    return data


class Runner:
    def __init__(self, a):
        self.a = a

    def run(self, np_, inp, out, *extra):
        cmd = [self.a.mpiexec, self.a.np_flag, str(np_), self.a.ssltrain, "loss", inp, "--out", out, *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def read_out(path):
    """{loss: {dataset: array}} and the root attributes."""
    with h5py.File(path, "r") as f:
        return {g: {k: f[g][k][()] for k in f[g]} for g in f}, dict(f.attrs)


def worst_diff(got, want):
    """max over datasets of max|got - want| / max|want|, and the dataset."""
    worst, where = 0.0, ""
    for g in want:
        for k in want[g]:
            w, x = np.asarray(want[g][k]), np.asarray(got[g][k])
            e = float(np.max(np.abs(x - w))) / max(float(np.max(np.abs(w))), 1e-300)
            if not np.isfinite(e) or e > worst:
                worst, where = (e if np.isfinite(e) else float("inf")), f"{g}/{k}"
    return worst, where


def same_layout(got, want):
    return sorted(got) == sorted(want) and all(sorted(got[g]) == sorted(want[g]) for g in want) and all(
        np.shape(got[g][k]) == np.shape(want[g][k]) for g in want for k in want[g])


def run_ok(r, what):
    check(r.returncode == 0, f"{what}: exit 0 (got {r.returncode}: {r.stderr.strip()[-400:]})")
    return r.returncode == 0


def check_ranks(run, tmp, inp):
    outs = {}
    for p in (1, 2, 3, 4):
        out = os.path.join(tmp, f"out_{p}.h5")
        r = run.run(p, inp, out)
        if not run_ok(r, f"np={p}"):
            continue
        summary = json.loads(r.stdout)
        got, attrs = read_out(out)
        outs[p] = got
        check(int(attrs["ranks"]) == p and attrs["format"] == "ssltrain-loss" and summary["ranks"] == p
              and summary["n"] == N, f"np={p}: root attribute ranks = {p}, summary n = {N}")
        # cJSON prints 15 digits when they read back within its own tolerance: not bitwise
        check(all(abs(got[g]["value"] - summary["losses"][g]["value"]) <= 1e-14 * abs(got[g]["value"])
                  for g in got) and
              sorted(summary["losses"]) == sorted(got), f"np={p}: summary values are the file's")
        check(not os.path.exists(out + ".tmp"), f"np={p}: no {out}.tmp left")
    if 1 not in outs:
        return None
    for p in (2, 3, 4):
        if p not in outs:
            continue
        check(same_layout(outs[p], outs[1]), f"np={p}: the same losses and datasets as np=1 ({len(outs[1])} losses)")
        if same_layout(outs[p], outs[1]):
            e, where = worst_diff(outs[p], outs[1])
            check(e <= REL, f"np={p}: every value and gradient within {REL:g} of np=1 (worst {e:.2e}, {where})")
    return outs[1]


def check_scalapack(run, tmp, inp, ref):
    out = os.path.join(tmp, "out_scalapack_3.h5")
    r = run.run(3, inp, out, "linalg.scalapack_threshold=1")
    if run_ok(r, "np=3 linalg.scalapack_threshold=1"):
        got, _ = read_out(out)
        e, where = worst_diff(got, ref) if same_layout(got, ref) else (float("inf"), "layout")
        check(e <= REL, f"np=3 via ScaLAPACK: within {REL:g} of np=1 (worst {e:.2e}, {where})")


def check_per_rank(run, tmp, inp, data, ref):
    out1, out2 = os.path.join(tmp, "per_rank_1.h5"), os.path.join(tmp, "per_rank_2.h5")
    if run_ok(run.run(1, inp, out1, "loss.per_rank=true"), "np=1 loss.per_rank=true"):
        got, _ = read_out(out1)
        e, where = worst_diff(got, ref)
        check(e == 0.0, f"np=1: loss.per_rank=true identical to global (worst {e:.2e}, {where})")
    if not run_ok(run.run(2, inp, out2, "loss.per_rank=true"), "np=2 loss.per_rank=true"):
        return
    got, _ = read_out(out2)
    for loss in ("wmse", "zero_icl"):
        v, g = float(got[loss]["value"]), float(ref[loss]["value"])
        check(abs(v - g) > 1e-6 * abs(g), f"np=2: per-rank {loss} {v!r} differs from global {g!r}")
    # the whitening losses' per-rank mode does not communicate: rank r's value is the
    # one-process value on its rows, and the tool reports the mean and the mean's gradient
    halves = []
    for h in range(2):
        part = os.path.join(tmp, f"half_{h}.h5")
        with h5py.File(part, "w") as f:
            for k in ("z1", "z2"):
                f[k] = data[k][h * N // 2:(h + 1) * N // 2]
        hout = os.path.join(tmp, f"half_{h}_out.h5")
        if not run_ok(run.run(1, part, hout, "--losses", ",".join(WHITENING)), f"np=1 on rows half {h}"):
            return
        halves.append(read_out(hout)[0])
    for loss in WHITENING:
        want_v = (float(halves[0][loss]["value"]) + float(halves[1][loss]["value"])) / 2
        ok = abs(float(got[loss]["value"]) - want_v) <= REL * abs(want_v)
        for k in ("grad_z1", "grad_z2"):
            want_g = np.concatenate([halves[0][loss][k], halves[1][loss][k]]) / 2
            ok = ok and np.max(np.abs(got[loss][k] - want_g)) <= REL * np.max(np.abs(want_g))
        check(ok, f"np=2 per-rank {loss}: the mean of the halves' values, gradients / 2")


def expect_error(run, np_, inp, out, code, needles, what):
    r = run.run(np_, inp, out)
    lines = [l for l in r.stderr.splitlines() if l.startswith("ssltrain loss:")]
    ok = r.returncode == code and len(lines) == 1 and all(s in lines[0] for s in needles)
    check(ok and not os.path.exists(out) and not os.path.exists(out + ".tmp"),
          f"{what}: exit {code}, one line with {needles}, no output (got {r.returncode}: {lines})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    print(f"seed {SEED}, N = {N}, D = {D}")
    rng = np.random.default_rng(SEED)
    run = Runner(a)
    inp = os.path.join(a.tmp, "in.h5")
    data = write_input(inp, N, rng)
    ref = check_ranks(run, a.tmp, inp)
    if ref is not None:
        check_scalapack(run, a.tmp, inp, ref)
        check_per_rank(run, a.tmp, inp, data, ref)
    n25 = os.path.join(a.tmp, "n25.h5")
    write_input(n25, 25, rng)
    expect_error(run, 2, n25, os.path.join(a.tmp, "never.h5"), 2, ["25", "P = 2"], "N = 25 at np=2")
    nan = os.path.join(a.tmp, "nan.h5")
    write_input(nan, N, rng, nan_at=(13, 5))  # rows 12..17 are rank 2's at np=4
    expect_error(run, 4, nan, os.path.join(a.tmp, "never.h5"), 3, ["[rank 2/4]", "/z1[13, 5] is not finite"],
                 "NaN in rank 2's rows at np=4")
    print(f"test_loss_tool_mpi: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
