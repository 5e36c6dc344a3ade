#!/usr/bin/python3
"""test_state_dict.py: ssltrain's parameter table is PyTorch's state_dict.

For several model configs, builds the PyTorch model with bench/torch_step.py's build_model and
runs `ssltrain params <key=value ...>`, which prints one line per state_dict entry:
    name<TAB>d0,d1,...<TAB>param|buffer        (a 0-dim entry has an empty shape field)
(blank lines and lines starting with '#' are ignored) and checks: the same names in the same order, identical shapes, and the same param/buffer
split as torch (named_parameters vs named_buffers).

Usage: /usr/bin/python3 tests/test_state_dict.py --ssltrain PATH
Exit: 0 all match, 1 a mismatch or ssltrain failed, 77 torch cannot be imported (ctest skip)."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

SKIP = 77
REPO = Path(__file__).resolve().parent.parent

# (label, build_model keyword arguments, ssltrain key=value overrides). Every key the model
# depends on is given explicitly except in the first config, which checks ssltrain's defaults
# (convnet, projector 2048-2048, last_bn none, biases on) against build_model's.
CONFIGS = [
    ("defaults (convnet, projector 2048-2048)",
     dict(),
     ['model.backbone=convnet']),
    ("convnet, projector 64-64 (the peer's layout)",
     dict(backbone='convnet', proj_hidden=[64], proj_out=64, last_bn='none', last_bias=True,
          hidden_bias=True, in_channels=1, image_size=28),
     ['model.backbone=convnet', 'model.in_channels=1', 'model.image_size=28',
      'model.projector.hidden=64', 'model.projector.out=64', 'model.projector.last_bn=none',
      'model.projector.last_bias=true', 'model.projector.hidden_bias=true']),
    ("convnet, last_bn noaffine, no last bias, predictor [32]",
     dict(backbone='convnet', proj_hidden=[64], proj_out=64, last_bn='noaffine',
          last_bias=False, pred_hidden=[32], pred_out=0),
     ['model.backbone=convnet', 'model.projector.hidden=64', 'model.projector.out=64',
      'model.projector.last_bn=noaffine', 'model.projector.last_bias=false',
      'model.predictor.hidden=32', 'model.predictor.out=0']),
    ("resnet18 3x32x32, projector [64,64] -> 32",
     dict(backbone='resnet18', in_channels=3, image_size=32, proj_hidden=[64, 64], proj_out=32),
     ['model.backbone=resnet18', 'model.in_channels=3', 'model.image_size=32',
      'model.projector.hidden=64,64', 'model.projector.out=32']),
    ("mlp [32,16] on 1x28x28",
     dict(backbone='mlp', mlp_hidden=[32, 16], in_channels=1, image_size=28, proj_hidden=[64],
          proj_out=64),
     ['model.backbone=mlp', 'model.mlp.hidden=32,16', 'model.in_channels=1',
      'model.image_size=28', 'model.projector.hidden=64', 'model.projector.out=64']),
    ("convnet 3 channels, empty projector hidden, last_bn affine, no hidden bias, "
     "predictor [16,16] -> 8",
     dict(backbone='convnet', in_channels=3, image_size=32, proj_hidden=[], proj_out=24,
          last_bn='affine', hidden_bias=False, pred_hidden=[16, 16], pred_out=8),
     ['model.backbone=convnet', 'model.in_channels=3', 'model.image_size=32',
      'model.projector.hidden=', 'model.projector.out=24', 'model.projector.last_bn=affine',
      'model.projector.hidden_bias=false', 'model.predictor.hidden=16,16',
      'model.predictor.out=8']),
]


def torch_entries(torch_step, kwargs):
    """[(name, shape tuple, 'param'|'buffer')] in state_dict order."""
    model = torch_step.build_model(**kwargs)
    params = {n for n, _ in model.named_parameters()}
    buffers = {n for n, _ in model.named_buffers()}
    out = []
    for name, t in model.state_dict().items():
        kind = 'param' if name in params else 'buffer' if name in buffers else '?'
        out.append((name, tuple(t.shape), kind))
    return out


def ssltrain_entries(exe, overrides):
    """Runs `ssltrain params`; returns ([(name, shape, kind)], error text or None)."""
    cmd = [exe, 'params'] + overrides
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
               OPENBLAS_NUM_THREADS='1')
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"{' '.join(cmd)}: {e}"
    if p.returncode != 0:
        return [], f"{' '.join(cmd)}: exit status {p.returncode}\n{p.stderr.rstrip()}"
    out, bad = [], []
    for line in p.stdout.splitlines():
        if not line.strip() or line.startswith('#'):  # blank lines and comments, e.g. totals
            continue
        fields = line.split('\t')
        if len(fields) != 3 or fields[2] not in ('param', 'buffer'):
            bad.append(line)
            continue
        name, dims, kind = fields
        try:
            shape = tuple(int(d) for d in dims.split(',')) if dims else ()
        except ValueError:
            bad.append(line)
            continue
        out.append((name, shape, kind))
    if bad:
        return out, (f"{' '.join(cmd)}: {len(bad)} line(s) not 'name<TAB>d0,d1,..<TAB>param|buffer':\n"
                     + '\n'.join(f"  {ln!r}" for ln in bad[:10]))
    return out, None


def fmt(shape):
    return '(' + ', '.join(str(d) for d in shape) + ')'


def compare(expected, got):
    """Returns a list of human-readable differences (empty when identical)."""
    diffs = []
    e_names = [n for n, _, _ in expected]
    g_names = [n for n, _, _ in got]
    e_set, g_set = set(e_names), set(g_names)
    if len(g_set) != len(g_names):
        dup = sorted({n for n in g_names if g_names.count(n) > 1})
        diffs.append(f"ssltrain prints names more than once: {dup}")
    e_map = {n: (s, k) for n, s, k in expected}
    for n in e_names:
        if n not in g_set:
            diffs.append(f"missing in ssltrain: {n} {fmt(e_map[n][0])}")
    for n, s, _ in got:
        if n not in e_set:
            diffs.append(f"not in the torch state_dict: {n} {fmt(s)}")
    common_e = [n for n in e_names if n in g_set]
    common_g = [n for n in g_names if n in e_set]
    if common_e != common_g:
        i = next(k for k, (a, b) in enumerate(zip(common_e, common_g)) if a != b)
        diffs.append(f"order differs at common entry {i}: torch has {common_e[i]}, "
                     f"ssltrain has {common_g[i]}")
    for n, s, k in got:
        if n not in e_map:
            continue
        es, ek = e_map[n]
        if s != es:
            diffs.append(f"shape of {n}: torch {fmt(es)}, ssltrain {fmt(s)}")
        if k != ek:
            diffs.append(f"kind of {n}: torch {ek}, ssltrain {k}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ssltrain', required=True, help="the ssltrain executable")
    ap.add_argument('-v', '--verbose', action='store_true', help="print every entry")
    a = ap.parse_args()
    try:
        import torch  # Debian's python3-torch, for /usr/bin/python3
    except ImportError as e:
        print(f"test_state_dict: SKIP: cannot import torch with {sys.executable} ({e}); "
              f"install python3-torch", file=sys.stderr)
        return SKIP
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, str(REPO / 'bench'))
    import torch_step

    failed = 0
    for label, kwargs, overrides in CONFIGS:
        expected = torch_entries(torch_step, kwargs)
        got, err = ssltrain_entries(a.ssltrain, overrides)
        diffs = ([err] if err else []) + (compare(expected, got) if got or not err else [])
        n_params = sum(1 for _, _, k in expected if k == 'param')
        status = 'FAIL' if diffs else 'ok'
        print(f"[{status}] {label}: {len(expected)} entries ({n_params} params, "
              f"{len(expected) - n_params} buffers) from `ssltrain params {' '.join(overrides)}`")
        for d in diffs:
            print(f"    {d}")
        if a.verbose:
            for n, s, k in got:
                print(f"    {n}\t{fmt(s)}\t{k}")
        failed += bool(diffs)
    print(f"test_state_dict: {len(CONFIGS) - failed}/{len(CONFIGS)} configs match the PyTorch "
          f"{torch.__version__} state_dict")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
