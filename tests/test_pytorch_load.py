#!/usr/bin/python3
"""docs/PYTORCH.md's snippet, run: a short `ssltrain train` at 2 ranks, its latest checkpoint
loaded into bench/torch_step.py's build_model by state_dict name (strict), and PyTorch's
eval-mode backbone features of the test images compared with `ssltrain dump`'s /h of the same
checkpoint. Exits 77 (ctest skip) with a message when torch or h5py is not installed."""
import argparse, os, shutil, subprocess, sys

try:
    import h5py, numpy as np, torch
except ImportError as e:
    print(f"test_pytorch_load: skipped: {e.name} is not installed (apt-get install python3-torch "
          "python3-h5py)", file=sys.stderr)
    sys.exit(77)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
from torch_step import build_model  # noqa: E402


def load_h5_state_dict(path, group='model'):
    """Every dataset directly under `group`, keyed by its name (docs/PYTORCH.md)."""
    with h5py.File(path, 'r') as f:
        return {name: torch.as_tensor(np.asarray(obj[()]))
                for name, obj in f[group].items() if isinstance(obj, h5py.Dataset)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssltrain", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    data = os.path.join(a.tmp, "fm.h5")
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "make_fmnist_subset.py"), data,
                    "--train", "256", "--test", "128"], check=True)
    keys = ["data.dataset=hdf5", f"data.path={data}", "data.batch=32", "model.projector.hidden=64",
            "model.projector.out=32", "model.predictor.hidden=16", "method.name=byol",
            "train.max_steps=6", "eval.every=0", "aug.normalize=custom", "aug.mean=0.5",
            "aug.std=0.25", f"run.dir={a.tmp}", "run.name=r"]
    mpi = [a.mpiexec, a.np_flag, "2", a.ssltrain]
    subprocess.run(mpi + ["train"] + keys, check=True, capture_output=True)
    ckpt = os.path.join(a.tmp, "r", "checkpoints", "latest.h5")
    emb = os.path.join(a.tmp, "emb.h5")
    subprocess.run(mpi + ["dump", ckpt, "--out", emb], check=True, capture_output=True)

    model = build_model('convnet', proj_hidden=[64], proj_out=32, pred_hidden=[16])
    model.load_state_dict(load_h5_state_dict(ckpt), strict=True)
    model.eval()
    with h5py.File(data, "r") as f:
        images = f["test/images"][()]
    x = (torch.as_tensor(images, dtype=torch.float32) / 255.0 - 0.5) / 0.25
    with torch.no_grad():
        h = model.backbone(x).numpy()
    with h5py.File(emb, "r") as f:
        order = np.argsort(f["index"][()])
        h_dump = f["h"][()][order]
    err = np.max(np.abs(h - h_dump)) / np.max(np.abs(h_dump))
    print(f"PyTorch backbone of {len(images)} test images vs ssltrain dump /h: max relative "
          f"difference {err:.2e}")
    if not err < 1e-4:
        print("FAIL: the loaded model does not reproduce ssltrain's features")
        sys.exit(1)
    print("test_pytorch_load: ok")


main()
