#!/usr/bin/python3
"""torch_step.py: ssltrain's own PyTorch version of one SSL training step, and the PyTorch
model whose state_dict names and shapes ssltrain's parameter table reproduces.

One step = two views of the same batch through backbone + projector, a loss on the two
projections, backward, SGD (lr 0.01, momentum 0.9, weight decay 1e-4). The inputs are random
normal images drawn once (seed 0); BatchNorm is in training mode. This computes what
/work/shared/bench/torch_peer.py computes for the convnet and resnet18 models and the vicreg
and simclr losses, and ssltrain's `bench` command implements exactly these two losses.

Usage:
  /usr/bin/python3 bench/torch_step.py --model convnet|resnet18 --loss vicreg|simclr \\
      --batch 256 --threads 2 --steps 5 --proj 2048 [--warmup 1]
Prints one line (images_per_s = batch / step_s: pairs of views per second):
  model=convnet loss=vicreg batch=256 threads=2 step_s=0.1234 images_per_s=2074.6

--threads sets torch's intra-op threads AND OpenBLAS's threads (OPENBLAS_NUM_THREADS, set
before torch loads OpenBLAS): Debian's torch does its Linear GEMMs in OpenBLAS, which
torch.set_num_threads does not limit.

Losses on projections z1, z2 of shape (n, d), all sums and means over real indices:

  vicreg(z1, z2) = 25 * inv + 25 * (v(z1) + v(z2)) + 1 * (c(z1) + c(z2))
    inv  = (1 / (n d)) * sum_{i,k} (z1[i,k] - z2[i,k])^2                  (F.mse_loss)
    for one view z:  zc = z - mean_i z[i]                                  (per feature)
    std_k = sqrt( sum_i zc[i,k]^2 / (n - 1) + 1e-4 )                      (unbiased variance)
    v(z)  = (1 / (2 d)) * sum_k max(0, 1 - std_k)
    C     = zc^T zc / (n - 1)                                             (d, d)
    c(z)  = (1 / d) * sum_{k != l} C[k,l]^2

  simclr(z1, z2), temperature t = 0.2 (NT-Xent, the two directions AVERAGED):
    u = rows of cat(z1, z2) each divided by max(||row||_2, 1e-12)         (2n, d)
    S = u u^T / t,  then S[i,i] = -1e9 (self-similarity masked)           (2n, 2n)
    pos(i) = i + n for i < n,  i - n for i >= n
    L = (1 / (2n)) * sum_{i < 2n} ( logsumexp_j S[i,j] - S[i,pos(i)] )

build_model() builds the full model for any ssltrain model config (backbone mlp, convnet or
resnet18; projector and optional predictor); see docs/PYTORCH.md for the name mapping.
"""
import argparse
import math
import os
import sys
import time

if __name__ == '__main__':
    # Pin BLAS and OpenMP threads before torch (and with it OpenBLAS) is loaded.
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument('--threads', type=int, default=2)
    _threads = _pre.parse_known_args()[0].threads
    if _threads >= 1:
        os.environ['OPENBLAS_NUM_THREADS'] = str(_threads)
        os.environ['OMP_NUM_THREADS'] = str(_threads)

import torch
import torch.nn as nn
import torch.nn.functional as F

LAST_BN_CHOICES = ('none', 'affine', 'noaffine')


# ---------------------------------------------------------------- backbones

class ConvNet(nn.Module):
    """Backbone for 28x28 images: conv3x3-BN-ReLU three times (32, 64, 128 channels at
    strides 1, 2, 2, no conv bias), then global average pooling: 128 features."""

    n_features = 128

    def __init__(self, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)

    def forward(self, x):
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class BasicBlock(nn.Module):
    """ResNet basic block with torchvision's names: conv1, bn1, conv2, bn2, and a projection
    shortcut downsample.0 (conv1x1, stride s) / downsample.1 (BN) when the shape changes."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))
        else:
            self.downsample = None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class ResNet18(nn.Module):
    """CIFAR ResNet-18 with torchvision's parameter names (conv1, bn1, layer1..layer4 of two
    BasicBlocks each), a 3x3 stride-1 stem, no max-pool, no fc: 512 features."""

    n_features = 512

    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in = 64
        for i, (c_out, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            self.add_module(f'layer{i}', nn.Sequential(BasicBlock(c_in, c_out, stride),
                                                       BasicBlock(c_out, c_out, 1)))
            c_in = c_out

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def mlp_backbone(in_features, hidden):
    """Flatten, then (Linear, BatchNorm1d, ReLU) per hidden width: names 1.weight, 1.bias,
    2.weight, 2.running_mean, ..., 4.weight, ...  Returns (module, n_features)."""
    layers = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers), width


# ---------------------------------------------------------------- heads and the full model

def mlp_head(in_features, hidden, out, hidden_bias=True, last_bias=True, last_bn='none'):
    """(Linear(bias=hidden_bias), BatchNorm1d, ReLU) per hidden width, then Linear(bias=
    last_bias) to out, then BatchNorm1d(out, affine=(last_bn == 'affine')) unless last_bn is
    'none'. Hidden block k holds entries 3k.* (Linear) and 3k+1.* (BN); the last Linear is
    3K for K hidden widths, its BN 3K+1."""
    if last_bn not in LAST_BN_CHOICES:
        raise ValueError(f"last_bn must be one of {LAST_BN_CHOICES}, not {last_bn!r}")
    layers = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h, bias=hidden_bias), nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out, bias=last_bias))
    if last_bn != 'none':
        layers.append(nn.BatchNorm1d(out, affine=(last_bn == 'affine')))
    return nn.Sequential(*layers)


class SSLModel(nn.Module):
    """backbone -> projector (forward returns the projection z); `predictor`, when present,
    is applied by the loss to the online branch (BYOL, SimSiam), not by forward."""

    def __init__(self, backbone, projector, predictor=None):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        if predictor is not None:
            self.predictor = predictor

    def forward(self, x):
        return self.projector(self.backbone(x))


def build_model(backbone='convnet', proj_hidden=(2048,), proj_out=2048, last_bn='none',
                last_bias=True, hidden_bias=True, pred_hidden=(), pred_out=0,
                mlp_hidden=(512, 512), in_channels=1, image_size=28, bn_eps=1e-5, bn_momentum=0.1):
    """The model of an ssltrain config, with ssltrain's state_dict names:
      backbone   model.backbone (mlp|convnet|resnet18), model.in_channels, model.image_size,
                 model.mlp.hidden (mlp only; image_size matters only for mlp)
      projector  model.projector.{hidden, out, last_bn, last_bias, hidden_bias}
      predictor  model.predictor.{hidden, out}: present iff pred_hidden is non-empty;
                 (Linear, BN, ReLU)* then Linear to pred_out (0 = proj_out), all with bias,
                 no last BN.
      bn_eps, bn_momentum: model.bn.eps, model.bn.momentum for every BatchNorm (they do not
                 change the state_dict).
    The defaults are ssltrain's config defaults; the projector defaults are torch_peer.py's
    SSLNet, which is the case proj_hidden=[proj], proj_out=proj."""
    if in_channels < 1 or image_size < 1:
        raise ValueError("in_channels and image_size must be >= 1")
    if backbone == 'convnet':
        enc, n_feat = ConvNet(in_channels), ConvNet.n_features
    elif backbone == 'resnet18':
        enc, n_feat = ResNet18(in_channels), ResNet18.n_features
    elif backbone == 'mlp':
        enc, n_feat = mlp_backbone(in_channels * image_size * image_size, list(mlp_hidden))
    else:
        raise ValueError(f"unknown backbone {backbone!r} (mlp, convnet, resnet18)")
    projector = mlp_head(n_feat, list(proj_hidden), proj_out, hidden_bias=hidden_bias,
                         last_bias=last_bias, last_bn=last_bn)
    predictor = None
    if len(pred_hidden) > 0:
        predictor = mlp_head(proj_out, list(pred_hidden), pred_out if pred_out > 0 else proj_out)
    model = SSLModel(enc, projector, predictor)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = bn_eps, bn_momentum
    return model


# ---------------------------------------------------------------- losses (see the docstring)

def vicreg_loss(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance_and_covariance(z):
        zc = z - z.mean(dim=0)
        std = torch.sqrt(zc.var(dim=0) + 1e-4)          # var: unbiased, (n - 1)
        cov = zc.T @ zc / (n - 1)
        off_diag = cov - torch.diag(torch.diagonal(cov))
        return F.relu(1.0 - std).mean() / 2, off_diag.pow(2).sum() / d

    v1, c1 = variance_and_covariance(z1)
    v2, c2 = variance_and_covariance(z2)
    return sim_coeff * invariance + std_coeff * (v1 + v2) + cov_coeff * (c1 + c2)


def simclr_loss(z1, z2, temperature=0.2):
    n = z1.shape[0]
    u = F.normalize(torch.cat((z1, z2), dim=0), dim=1)  # eps 1e-12
    sim = u @ u.T / temperature
    sim.fill_diagonal_(-1e9)
    positive = torch.cat((torch.arange(n, 2 * n), torch.arange(0, n)))
    return F.cross_entropy(sim, positive)                # mean over the 2n rows


LOSSES = {'vicreg': vicreg_loss, 'simclr': simclr_loss}

# model name -> (backbone, in_channels, image_size), as torch_peer.py
BENCH_MODELS = {'convnet': ('convnet', 1, 28), 'resnet18': ('resnet18', 3, 32)}


# ---------------------------------------------------------------- the benchmark

def main(argv=None):
    ap = argparse.ArgumentParser(description="Throughput of one SSL training step in PyTorch (CPU).")
    ap.add_argument('--model', choices=sorted(BENCH_MODELS), default='convnet')
    ap.add_argument('--loss', choices=sorted(LOSSES), default='vicreg')
    ap.add_argument('--batch', type=int, default=256, help="samples per view")
    ap.add_argument('--threads', type=int, default=2, help="torch and OpenBLAS threads")
    ap.add_argument('--steps', type=int, default=5, help="timed steps")
    ap.add_argument('--warmup', type=int, default=1, help="untimed steps first")
    ap.add_argument('--proj', type=int, default=2048, help="projector hidden and output width")
    a = ap.parse_args(argv)
    if a.batch < 2 or a.threads < 1 or a.steps < 1 or a.warmup < 0 or a.proj < 1:
        ap.error("need --batch >= 2, --threads >= 1, --steps >= 1, --warmup >= 0, --proj >= 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backbone, channels, size = BENCH_MODELS[a.model]
    net = build_model(backbone, proj_hidden=[a.proj], proj_out=a.proj,
                      in_channels=channels, image_size=size)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = LOSSES[a.loss]
    x1 = torch.randn(a.batch, channels, size, size)
    x2 = torch.randn(a.batch, channels, size, size)

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x1), net(x2))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    step_s = (time.perf_counter() - t0) / a.steps
    if not math.isfinite(loss):
        print(f"torch_step: non-finite loss {loss}", file=sys.stderr)
        return 4
    print(f"model={a.model} loss={a.loss} batch={a.batch} threads={a.threads} "
          f"step_s={step_s:.4f} images_per_s={a.batch / step_s:.1f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
