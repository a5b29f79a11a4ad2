"""Seconds per epoch: our trainer vs the PyTorch quickstart loop, and the FLOP-bound limit.

    python benchmarks/bench_trainer.py            # full epochs, 2 repetitions, interleaved
    python benchmarks/bench_trainer.py --quick    # 200 steps per measurement, scaled to an epoch
    python benchmarks/bench_trainer.py --tricks   # what each speed trick of the loop buys
    python benchmarks/bench_trainer.py --workers  # runs/hour: 1 process x 2 threads vs 2 x 1

The quickstart loop is the one of PyTorch's "Quickstart" tutorial: torchvision FashionMNIST with
ToTensor, DataLoader(batch_size=64, shuffle=True), the same MLP, ``loss.backward();
optimizer.step(); optimizer.zero_grad()`` and ``loss.item()`` every 100 batches. It trains on all
60,000 images (938 steps per epoch); ours trains on 55,000 (860 steps, 5,000 held out for
validation), so both seconds per epoch and per step are printed. Every number is the median of
the repetitions; the two loops alternate so that load from other processes hits both alike.
Timings are wall clock on whatever machine this runs on: on a shared machine they move a lot.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

from optimizers import OPTIMIZERS
from optreport.engine import data as data_mod
from optreport.engine import models
from optreport.engine.train import train
from optreport.runs import sweep

RULES = {"sgd": {"lr": 1e-3}, "momentum": {"lr": 1e-3}, "adam": {"lr": 1e-3},
         "gravity": {"lr": 1e-3}, "cosine": {"lr": 1e-3}}   # quickstart's lr; speed only


def torchvision_root(files: dict) -> Path:
    """A temp folder in torchvision's layout (it wants the raw, un-gzipped files)."""
    root = Path(tempfile.mkdtemp(prefix="fmnist-tv-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for p in files.values():
        name = p.name[:-3] if p.name.endswith(".gz") else p.name
        if p.name.endswith(".gz"):
            with gzip.open(p, "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(p, raw / name)
    return root


def quickstart_epoch(root, rule, hparams, max_steps=None):
    """The quickstart tutorial's train() for one epoch; returns (seconds, steps)."""
    training_data = datasets.FashionMNIST(root=str(root), train=True, download=False, transform=ToTensor())
    dataloader = DataLoader(training_data, batch_size=64, shuffle=True)
    model = models.build_model("mlp", 0)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = OPTIMIZERS[rule](model.parameters(), **hparams)
    model.train()
    t = time.perf_counter()
    steps = 0
    for batch, (X, y) in enumerate(dataloader):
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 100 == 0:
            loss.item()                  # the tutorial prints it here
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    return time.perf_counter() - t, steps


def ours_epoch(data, rule, hparams, max_steps=None):
    rec = train("mlp", rule, hparams, data=data, epochs=1, max_steps=max_steps)
    e = rec["epochs"][0]
    return e["train_seconds"], e["steps"]


def matmul_peak(threads):
    """GFLOP/s of a large sgemm and of the MLP's own matmul shapes (batch 64)."""
    torch.set_num_threads(threads)
    out = {}
    shapes = {"sgemm 2048^3": (2048, 2048, 2048), "fwd 64x784x512": (64, 784, 512),
              "fwd 64x512x512": (64, 512, 512), "wgrad 784x64x512": (784, 64, 512)}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        reps = max(5, int(3e9 / (2 * m * k * n)))
        best = 0.0
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        out[name] = best
    return out


def flop_bound(n_train, threads):
    model = models.build_model("mlp", 0)
    fwd = models.flops_per_example(model)
    per_epoch = 3 * fwd * n_train                   # forward + backward ~ 3x forward
    # exact: layer 1 needs no input gradient, so its backward is 1 matmul, not 2
    first = 2 * 784 * 512
    exact = (3 * fwd - first) * n_train
    peaks = matmul_peak(threads)
    print(f"\nFLOP-bound limit ({threads} threads): model forward {fwd / 1e6:.3f} MFLOP/example; "
          f"per epoch of {n_train} examples 3x forward = {per_epoch / 1e9:.1f} GFLOP "
          f"(exact, no input-grad for layer 1: {exact / 1e9:.1f} GFLOP)")
    for name, g in peaks.items():
        print(f"  {name:18s} {g:7.1f} GFLOP/s -> >= {per_epoch / g / 1e9:.2f} s/epoch "
              f"(exact {exact / g / 1e9:.2f})")
    return peaks


def bench(args, data, files):
    root = torchvision_root(files)
    steps = 200 if args.quick else None
    try:
        # a rule's compiled step (Adam, Gravity, Cosine, ...) compiles on its first call: a one-off
        # cost per process, paid here so that the epochs below measure the steady state
        for rule in args.rules:
            t = time.perf_counter()
            ours_epoch(data, rule, RULES.get(rule, {"lr": 1e-3}), 3)
            print(f"  warm-up {rule:9s} 3 steps incl. compiling the step: {time.perf_counter() - t:6.2f} s",
                  flush=True)
        rows = {r: {"q": [], "o": []} for r in args.rules}
        for rep in range(args.reps):
            for rule in args.rules:
                hp = RULES.get(rule, {"lr": 1e-3})
                tq, nq = quickstart_epoch(root, rule, hp, steps)
                to, no = ours_epoch(data, rule, hp, steps)
                rows[rule]["q"].append((tq, nq))
                rows[rule]["o"].append((to, no))
                print(f"  rep {rep} {rule:9s} quickstart {tq:6.2f} s / {nq} steps   ours {to:6.2f} s / {no} steps",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_q, n_o = 938, -(-len(data.train_y) // 64)
    print(f"\n{'rule':10s} {'ours s/ep':>10s} {'quick s/ep':>10s} {'ratio':>7s} {'ours ms/st':>10s} "
          f"{'quick ms/st':>11s} {'ratio/step':>10s}")
    for rule, r in rows.items():
        q = statistics.median(t / n for t, n in r["q"])     # s per step
        o = statistics.median(t / n for t, n in r["o"])
        print(f"{rule:10s} {o * n_o:10.2f} {q * n_q:10.2f} {o * n_o / (q * n_q):7.2f} {o * 1e3:10.2f} "
              f"{q * 1e3:11.2f} {o / q:10.2f}")


def tricks(args, data):
    """What each change of the training loop buys (SGD, the MLP, 300 steps each, median of reps)."""
    x, y = data.train_x, data.train_y
    n_steps = 300

    def loop(sync_every_step=True, set_to_none=False, flat=False, compiled=False, threads=2):
        torch.set_num_threads(threads)
        model = models.build_model("mlp", 0)
        fwd = torch.compile(model) if compiled else model
        opt = OPTIMIZERS["sgd"](model.parameters(), lr=1e-3)
        xs = x.reshape(len(x), -1) if flat else x
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        losses = torch.empty(n_steps)
        for warm in (True, False):
            t = time.perf_counter()
            for i in range(20 if warm else n_steps):
                idx = perm[i * 64:(i + 1) * 64]
                loss = F.cross_entropy(fwd(xs[idx]), y[idx])
                opt.zero_grad(set_to_none=set_to_none)
                loss.backward()
                opt.step()
                if sync_every_step:
                    loss.item()
                else:
                    losses[i] = loss.detach()
        return (time.perf_counter() - t) / n_steps * 1e3

    variants = {
        "preloaded, .item() each step, zero_grad(set_to_none=False)": dict(),
        "+ no per-step sync (loss into a tensor)": dict(sync_every_step=False),
        "+ zero_grad(set_to_none=True)  [= trainer]": dict(sync_every_step=False, set_to_none=True),
        "+ input flattened once": dict(sync_every_step=False, set_to_none=True, flat=True),
        "trainer loop, 1 thread": dict(sync_every_step=False, set_to_none=True, threads=1),
    }
    if not args.quick:
        variants["trainer loop + torch.compile(model)"] = dict(sync_every_step=False, set_to_none=True, compiled=True)
    res = {k: [] for k in variants}
    for _ in range(args.reps):
        for k, kw in variants.items():
            try:
                res[k].append(loop(**kw))
            except Exception as e:           # e.g. compile unavailable
                print(f"  {k}: failed ({type(e).__name__}: {e})")
    torch.set_num_threads(args.threads)
    print("\nms per step (SGD, MLP, batch 64), median of", args.reps)
    for k, v in res.items():
        if v:
            print(f"  {k:62s} {statistics.median(v):6.3f}   runs: {', '.join(f'{t:.2f}' for t in v)}")


def workers(args):
    """Runs per hour: one process with 2 threads vs two processes with 1 thread each."""
    # short runs measure mostly worker start-up (import torch, load data: a few s per process)
    n_runs, steps, epochs = (4, 100, 1) if args.quick else (4, None, 2)
    for rep in range(args.reps):
        for w, t in ((1, 2), (2, 1)):
            tmp = tempfile.mkdtemp(prefix="bench-store-")
            try:
                cs = sweep.grid(["sgd", "adam"], [1e-3, 1e-2, 1e-1][:n_runs // 2], [rep], epochs=epochs,
                                max_steps=steps)
                t0 = time.perf_counter()
                sweep.run_grid(cs, store=f"sqlite:///{tmp}/s.sqlite", workers=w, threads=t, progress=False)
                dt = time.perf_counter() - t0
                print(f"  rep {rep}: {w} process(es) x {t} thread(s): {len(cs)} runs ({epochs} epoch(s), "
                      f"max_steps={steps}) in {dt:6.1f} s -> {len(cs) / dt * 3600:7.0f} runs/hour", flush=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 steps per measurement instead of an epoch")
    ap.add_argument("--reps", type=int, default=2, help="repetitions (median reported)")
    ap.add_argument("--rules", default="sgd,momentum,adam,gravity,cosine")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    ap.add_argument("--tricks", action="store_true", help="measure each speed trick instead")
    ap.add_argument("--workers", action="store_true", help="measure processes vs threads instead")
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP-bound measurement")
    args = ap.parse_args()
    args.rules = args.rules.split(",")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share this machine)")
    if args.workers:
        return workers(args)
    data = data_mod.load_fashion_mnist()
    if args.tricks:
        return tricks(args, data)
    bench(args, data, data_mod.locate())
    if not args.no_flops:
        flop_bound(len(data.train_y), args.threads)


if __name__ == "__main__":
    main()
