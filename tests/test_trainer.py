#!/usr/bin/python3
"""End-to-end tests of `ssltrain train`, `eval` and `dump` on a small real Fashion-MNIST subset
(tests/make_fmnist_subset.py). Each subcommand is one ctest:

  methods NP      every method trains a few dozen steps at NP ranks and its loss decreases
  resume          SIGUSR1 mid-epoch, exit 85 + REQUEUE, resume: bitwise the uninterrupted run;
                  resuming at another rank count: equal up to float rounding
  fallback        a corrupted newest checkpoint: warning, resume from the previous, same result
  errors          misspelled key, a changed config on resume, a locked run directory, nonfinite
  outputs         metrics.jsonl fields, eval --json, dump readable in h5py with the documented
                  names, `ssltrain analyze` on the dump

Exits 77 (ctest skip) when h5py/numpy are missing."""
import argparse, json, os, shutil, signal, subprocess, sys, time

try:
    import h5py, numpy as np
except ImportError:
    print("test_trainer: h5py/numpy missing (apt-get install python3-h5py)", file=sys.stderr)
    sys.exit(77)

A = None  # the parsed arguments
SMALL = ["data.dataset=hdf5", "data.batch=64", "model.projector.hidden=128",
         "model.projector.out=64", "train.log_every=2", "eval.train_samples=0",
         "eval.test_samples=0", "eval.metrics_batch=256", "eval.linear_epochs=5"]

# method -> its extra keys (the model and views each needs)
METHODS = {
    "simclr": [],
    "moco": ["loss.moco.queue=128", "ema.base=0.9", "optim.lr=0.6"],
    "byol": ["model.predictor.hidden=128", "optim.lr=0.2"],
    "simsiam": ["model.predictor.hidden=32", "model.projector.last_bn=affine"],
    # multi-crop: 2 large crops and 2 small ones through the second net
    "swav": ["loss.swav.prototypes=30", "aug.views=4", "aug.size=28,28,16,16",
             "aug.crop.scale_min=0.14,0.14,0.05,0.05", "aug.crop.scale_max=1,1,0.14,0.14"],
    "barlow": ["model.projector.last_bias=false", "loss.barlow.lambda=0.02"],
    "vicreg": [],
    "zero_cl": [],
    "wmse": ["aug.views=4", "model.projector.out=32", "loss.whitening.w_size=64",
             "optim.name=adamw", "optim.lr=0.003", "optim.lr_scaling=none", "optim.weight_decay=1e-6"],
    # with an evaluation whose subsets do not fill the last eval chunk: the whitening layer
    # uses batch statistics even in eval mode, so the padding rows must be distinct
    "sdbn": ["model.projector.whiten_groups=4", "eval.every=3", "eval.train_samples=1000",
             "eval.test_samples=300"],
    # CW-RGP's loss falls slowly at this size: twice the steps
    "cwrgp": ["model.projector.out=64", "loss.whitening.w_size=16", "optim.name=adamw",
              "optim.lr=0.003", "optim.lr_scaling=none", "optim.weight_decay=1e-6",
              "train.epochs=6"],
    "rdm": ["model.predictor.hidden=32"],
}


# logged steps before the comparison starts: MoCo's loss rises while real keys replace the random
# initial queue (harder negatives), which is not a failure to learn
WARMUP = {"moco": 4}


def mpi(np_, args, **kw):
    cmd = [A.mpiexec, A.np_flag, str(np_)] + A.preflags + [A.ssltrain] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.get("timeout", 300))


def fail(msg, r=None):
    print("FAIL:", msg)
    if r is not None:
        print("--- stdout\n" + r.stdout[-3000:] + "\n--- stderr\n" + r.stderr[-3000:])
    sys.exit(1)


def check(r, code, what):
    if r.returncode != code:
        fail(f"{what}: exit {r.returncode}, expected {code}", r)


def train(np_, name, extra, code=0, **kw):
    r = mpi(np_, ["train", f"data.path={A.data}", f"run.dir={A.tmp}", f"run.name={name}"] + SMALL + extra, **kw)
    check(r, code, f"train {name} at np {np_}")
    return r


def metrics(name):
    with open(os.path.join(A.tmp, name, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def ckpt(name):
    return h5py.File(os.path.join(A.tmp, name, "checkpoints", "latest.h5"), "r")


def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def fresh(name):
    shutil.rmtree(os.path.join(A.tmp, name), ignore_errors=True)


# ---- methods -----------------------------------------------------------------------------------

def t_methods():
    np_ = A.np
    only = A.only.split(",") if A.only else list(METHODS)
    for m, extra in METHODS.items():
        if m not in only:
            continue
        name = f"m-{m}-np{np_}"
        fresh(name)
        keys = [f"method.name={m}", "train.epochs=3", "eval.every=0", "ckpt.every=0"] + extra
        # (later keys win: a method's own eval.every=... turns the evaluation back on)
        t0 = time.time()
        train(np_, name, keys)
        losses = [row["loss"] for row in metrics(name) if "loss" in row][WARMUP.get(m, 0):]
        k = max(2, len(losses) // 4)
        first, last = np.mean(losses[:k]), np.mean(losses[-k:])
        print(f"{m:8s} np={np_}: {len(losses)} logged steps, loss {first:.5g} -> {last:.5g} "
              f"({time.time() - t0:.1f} s)")
        if not all(np.isfinite(losses)):
            fail(f"{m}: non-finite loss logged")
        if not last < first:
            fail(f"{m} at np {np_}: the loss did not decrease ({first} -> {last})")


# ---- resume ------------------------------------------------------------------------------------

RUN = ["method.name=vicreg", "train.epochs=2", "ckpt.every=5", "eval.linear_epochs=2"]


def interrupted(name, np_first, np_second, extra=()):
    """Start, SIGUSR1 after the first logged step, expect 85 + REQUEUE, then resume (with extra
    keys, which must be ones that do not change the run). Returns the step it stopped at."""
    fresh(name)
    cmd = [A.mpiexec, A.np_flag, str(np_first)] + A.preflags + [A.ssltrain, "train",
           f"data.path={A.data}", f"run.dir={A.tmp}", f"run.name={name}"] + SMALL + RUN
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(A.tmp, name, "metrics.jsonl")
    t0 = time.time()
    while not (os.path.exists(log) and os.path.getsize(log) > 0):
        if p.poll() is not None or time.time() - t0 > 120:
            out, err = p.communicate()
            fail(f"{name}: the run ended before the signal could be sent:\n{out}\n{err}")
        time.sleep(0.05)
    p.send_signal(signal.SIGUSR1)
    out, err = p.communicate(timeout=120)
    marker = os.path.join(A.tmp, name, "REQUEUE")
    if p.returncode != 85 or not os.path.exists(marker):
        fail(f"{name}: SIGUSR1 gave exit {p.returncode}, marker {os.path.exists(marker)}\n{out}\n{err}")
    step = int(open(marker).read().split()[-1])
    n_ckpt = len([f for f in os.listdir(os.path.join(A.tmp, name, "checkpoints")) if f.endswith(".h5")])
    print(f"{name}: stopped by SIGUSR1 at step {step} (exit 85, REQUEUE), {n_ckpt} checkpoint files")
    r = train(np_second, name, RUN + list(extra(step) if callable(extra) else extra))
    if os.path.exists(marker):
        fail(f"{name}: REQUEUE marker left after the resumed run finished")
    if "resumed from" not in r.stdout + r.stderr:
        fail(f"{name}: no 'resumed from' line", r)
    return step


def compare(a, b, exact):
    da, db = datasets(a), datasets(b)
    if sorted(da) != sorted(db):
        fail(f"different datasets: {sorted(set(da) ^ set(db))}")
    worst, where = 0.0, ""
    for k in da:
        x, y = np.asarray(da[k], dtype=np.float64), np.asarray(db[k], dtype=np.float64)
        if exact and not np.array_equal(da[k], db[k]):
            fail(f"{k} differs (max |diff| {np.max(np.abs(x - y)):.3g})")
        scale = max(np.max(np.abs(x)) if x.size else 0.0, 1e-12)
        e = float(np.max(np.abs(x - y)) / scale) if x.size else 0.0
        if e > worst:
            worst, where = e, k
    return worst, where


def t_resume():
    fresh("whole")
    train(2, "whole", RUN)
    step = interrupted("cut", 2, 2)
    worst, _ = compare(ckpt("whole"), ckpt("cut"), exact=True)
    print(f"np 2 -> np 2 (stopped at step {step}): every dataset bitwise equal")
    ma, mb = metrics("whole"), metrics("cut")
    ea = [r for r in ma if "knn_top1" in r]
    eb = [r for r in mb if "knn_top1" in r]
    if ea[-1] != eb[-1]:
        fail(f"final evaluation differs: {ea[-1]} vs {eb[-1]}")
    # At another rank count the sums run in another order: each step agrees to float rounding,
    # but over dozens of steps training amplifies rounding (1 vs 2 BLAS threads at one rank
    # drift apart just as fast), so the comparison is two steps after the resume.
    step = interrupted("cut-np1", 2, 1, lambda s: [f"train.max_steps={s + 2}"])
    fresh("whole-short")
    train(2, "whole-short", RUN + [f"train.max_steps={step + 2}"])
    worst, where = compare(ckpt("whole-short"), ckpt("cut-np1"), exact=False)
    la = [r["loss"] for r in metrics("whole-short") if "loss" in r]
    lb = [r["loss"] for r in metrics("cut-np1") if "loss" in r]
    print(f"np 2 -> np 1 (stopped at step {step}, 2 steps at np 1): worst relative difference "
          f"{worst:.2e} ({where}); last logged loss {la[-1]:.9g} vs {lb[-1]:.9g}")
    if not worst < 1e-3 or abs(la[-1] - lb[-1]) > 1e-4 * abs(la[-1]):
        fail(f"resuming at 1 rank is not the same run: {worst} in {where}")


def t_fallback():
    fresh("fb")
    train(2, "fb", RUN + ["train.max_steps=12", "ckpt.keep=5"])
    d = os.path.join(A.tmp, "fb", "checkpoints")
    newest = os.path.realpath(os.path.join(d, "latest.h5"))
    with open(newest, "r+b") as f:  # flip bytes in the middle: data, not the superblock
        f.seek(os.path.getsize(newest) // 2)
        chunk = bytearray(f.read(4096))
        f.seek(os.path.getsize(newest) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    r = train(2, "fb", RUN)
    text = r.stdout + r.stderr
    if os.path.basename(newest) not in text or "skipped" not in text:
        fail("no warning naming the corrupt checkpoint", r)
    if "resumed from" not in text or "step-00000010" not in text:
        fail("did not resume from the previous checkpoint (step 10)", r)
    fresh("fb-whole")
    train(2, "fb-whole", RUN)
    compare(ckpt("fb-whole"), ckpt("fb"), exact=True)
    print("corrupt step-00000012.h5 skipped with a warning; resumed from step 10; final state bitwise equal")


# ---- errors ------------------------------------------------------------------------------------

def t_errors():
    r = mpi(2, ["train", f"data.path={A.data}", f"run.dir={A.tmp}", "run.name=typo", "optim.lrr=0.1"] + SMALL)
    check(r, 2, "misspelled key")
    if "optim.lrr" not in r.stderr or os.path.exists(os.path.join(A.tmp, "typo")):
        fail("the misspelled key is not named, or training started", r)
    fresh("chg")
    train(1, "chg", RUN + ["train.max_steps=4"])
    r = mpi(1, ["train", f"data.path={A.data}", f"run.dir={A.tmp}", "run.name=chg"] + SMALL + RUN + ["optim.lr=0.3"])
    check(r, 2, "changed config on resume")
    if "optim.lr" not in r.stderr:
        fail("the differing key is not listed", r)
    # a second run on a locked directory
    fresh("lock")
    cmd = [A.mpiexec, A.np_flag, "1"] + A.preflags + [A.ssltrain, "train", f"data.path={A.data}",
           f"run.dir={A.tmp}", "run.name=lock"] + SMALL + RUN
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(A.tmp, "lock", "metrics.jsonl")
    while not os.path.exists(log) and p.poll() is None:
        time.sleep(0.05)
    r = mpi(1, ["train", f"data.path={A.data}", f"run.dir={A.tmp}", "run.name=lock"] + SMALL + RUN)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    check(r, 2, "second run on a locked directory")
    if "in use by another run" not in r.stderr:
        fail("no message about the lock", r)
    fresh("nan")
    r = mpi(1, ["train", f"data.path={A.data}", f"run.dir={A.tmp}", "run.name=nan"] + SMALL +
            ["method.name=vicreg", "ckpt.every=1", "optim.lr=100", "optim.lr_scaling=none",
             "train.epochs=3", "eval.every=0"])
    check(r, 4, "non-finite loss")
    if "not finite" not in r.stderr or "step" not in r.stderr:
        fail("the non-finite message does not name the step and term", r)
    if not os.path.exists(os.path.join(A.tmp, "nan", "checkpoints", "latest.h5")):
        fail("no good checkpoint kept after the non-finite stop")
    print("misspelled key: exit 2 naming it; changed optim.lr on resume: exit 2 listing it; "
          "locked directory: exit 2; non-finite: exit 4 naming the step, checkpoint kept")


# ---- outputs -----------------------------------------------------------------------------------

def t_outputs():
    fresh("out")
    train(2, "out", RUN + ["dump.every=2"])
    rows = metrics("out")
    step_keys = {"step", "epoch", "loss", "terms", "lr", "grad_norm", "images_per_s"}
    epoch_keys = {"epoch", "knn_top1", "linear_top1", "w2", "uniformity", "alignment",
                  "effective_rank", "z_std"}
    steps = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "knn_top1" in r]
    if not steps or not step_keys <= set(steps[0]):
        fail(f"step lines lack fields: {step_keys - set(steps[0]) if steps else 'none'}")
    if len(evals) != 2 or not epoch_keys <= set(evals[0]):
        fail(f"epoch lines: {evals}")
    if not evals[-1]["knn_top1"] > 30:
        fail(f"kNN accuracy {evals[-1]['knn_top1']} is not above chance")
    dump = os.path.join(A.tmp, "out", "embeddings-epoch0001.h5")
    with h5py.File(dump, "r") as f:
        for k, shape in (("h", (512, 128)), ("z", (512, 64)), ("labels", (512,)), ("index", (512,))):
            if f[k].shape != shape:
                fail(f"dump /{k} has shape {f[k].shape}, expected {shape}")
        for a in ("method", "step", "epoch", "config", "git_revision"):
            if a not in f.attrs:
                fail(f"dump lacks attribute {a}")
        if not np.array_equal(np.sort(f["index"][()]), np.arange(512)):
            fail("dump /index is not every test row once")
    latest = os.path.join(A.tmp, "out", "checkpoints", "latest.h5")
    r = mpi(2, ["eval", latest, f"data.path={A.data}", "--json", "eval.linear_epochs=5"])
    check(r, 0, "eval")
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    if not rep["knn_top1"] > 30 or not rep["linear_top1"] > 30:
        fail(f"eval accuracies {rep}")
    out2 = os.path.join(A.tmp, "dump2.h5")
    r = mpi(2, ["dump", latest, "--out", out2, "--split", "train", f"data.path={A.data}"])
    check(r, 0, "dump --split train")
    with h5py.File(out2, "r") as f:
        if f["z"].shape != (1024, 64) or f.attrs["split"] != "train":
            fail("dump --split train shape or attribute")
    r = mpi(1, ["analyze", out2, "--json"])
    check(r, 0, "analyze of a dump")
    print(f"metrics.jsonl fields ok; epoch-1 kNN {evals[-1]['knn_top1']:.1f}%; eval --json {rep}; "
          "dumps open in h5py with /h /z /labels /index and their attributes")


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["methods", "resume", "fallback", "errors", "outputs"])
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--only", default="", help="methods: a comma-separated subset")
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--preflags", default="")
    ap.add_argument("--tmp", required=True)
    A = ap.parse_args()
    A.preflags = A.preflags.split()
    os.makedirs(A.tmp, exist_ok=True)
    A.data = os.path.join(A.tmp, "fmnist-small.h5")
    if not os.path.exists(A.data):
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "make_fmnist_subset.py"), A.data,
                        "--train", "1024", "--test", "512"], check=True)
    {"methods": t_methods, "resume": t_resume, "fallback": t_fallback, "errors": t_errors,
     "outputs": t_outputs}[A.what]()
    print(f"test_trainer {A.what}: ok")


main()
