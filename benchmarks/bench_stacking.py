"""Seconds per model-step: K models stacked in one process (engine.stacked) vs one model (the trainer's fast path).

    python benchmarks/bench_stacking.py                       # every rule, K = 4, one worker per core
    python benchmarks/bench_stacking.py --rules sgd,adam --k 2,4 --quick

Each worker process (one torch thread, denormals flushed, as the report's sweep workers) builds,
per rule, one MLP with its optimizer and the fast path's step (``engine.fastpath.LinearStack``,
what the trainer runs) and K MLPs stacked (``engine.stacked.StackedLinearStack``, one optimizer
over the K models' parameters), both with the rule's compiled step, each on its own batches of
64 Fashion-MNIST images. After warm-up steps (the compiled steps compile), it times blocks of
steps alternately -- one model, then the stack -- so that a change of the machine's speed hits
both alike, and reports the median over blocks of

    speed-up = (seconds per step of one model) / (seconds per stacked step / K)

i.e. how many more model-steps per second stacking gives. Only the training step (forward,
backward, update) is timed: no evaluation and no per-epoch bookkeeping. Both give every model the
same numbers bit for bit (tests/test_stacked.py); this measures only what stacking would save.
The last line is ``min speed-up of K=<k> over rules: X (rule)``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time

import torch

from optimizers import OPTIMIZERS
from optreport.engine.data import load_fashion_mnist
from optreport.engine.fastpath import LinearStack
from optreport.engine.models import build_model
from optreport.engine.stacked import StackedLinearStack, stacked_param_groups
from optreport.engine.train import make_optimizer

BATCH = 64
LR = 0.01


def _single(rule: str, data, seed: int):
    net = build_model("mlp", seed)
    opt = make_optimizer(rule, net.parameters(), {"lr": LR})
    stack = LinearStack.of(net)
    perm = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))
    x, y, state = data.train_x, data.train_y, {"i": 0}
    steps = len(perm) // BATCH

    def step():
        i = state["i"] % steps
        stack.step(x, y, perm[i * BATCH:(i + 1) * BATCH])
        opt.step()
        state["i"] += 1
    return step


def _stacked(rule: str, data, k: int, seed: int):
    nets = [build_model("mlp", seed + j) for j in range(k)]
    stack = StackedLinearStack.of(nets)
    opt = make_optimizer(rule, stacked_param_groups(rule, nets), {"lr": LR})
    perms = [torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed + j)) for j in range(k)]
    x, y, state = data.train_x, data.train_y, {"i": 0}
    steps = len(perms[0]) // BATCH

    def step():
        i = state["i"] % steps
        stack.step(x, y, [p[i * BATCH:(i + 1) * BATCH] for p in perms])
        opt.step()
        state["i"] += 1
    return step


def _time(step, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def measure(rule: str, data, k: int, blocks: int, steps: int, warmup: int, seed: int = 0) -> dict:
    """Alternating blocks of ``steps`` steps: one model, then K stacked. Returns seconds per
    model-step of each (medians) and the median speed-up over blocks."""
    one, many = _single(rule, data, seed), _stacked(rule, data, k, seed)
    _time(one, warmup)
    _time(many, warmup)
    t_one, t_many = [], []
    for _ in range(blocks):
        t_one.append(_time(one, steps))
        t_many.append(_time(many, max(1, steps // k)) / k)
    return dict(rule=rule, k=k, one_ms=statistics.median(t_one) * 1e3, stacked_ms=statistics.median(t_many) * 1e3,
                speedup=statistics.median(a / b for a, b in zip(t_one, t_many)))


def worker(args) -> list[dict]:
    wid, opts = args
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    data = load_fashion_mnist(opts["data"])
    rows = []
    for rule in opts["rules"]:
        for k in opts["k"]:
            r = measure(rule, data, k, opts["blocks"], opts["steps"], opts["warmup"], seed=100 * wid)
            rows.append(dict(r, worker=wid))
    return rows


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=",".join(OPTIMIZERS), help="comma-separated rules (default: all 11)")
    ap.add_argument("--k", default="4", help="models per stack, comma-separated (default 4)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: one per core)")
    ap.add_argument("--quick", action="store_true", help="fewer and shorter blocks")
    ap.add_argument("--data", default=None, help="folder of the IDX files (default: the trainer's search)")
    a = ap.parse_args(argv)
    a.rules = [r.strip() for r in a.rules.split(",") if r.strip()]
    bad = [r for r in a.rules if r not in OPTIMIZERS]
    if bad or not a.rules:
        ap.error(f"unknown rule(s) {bad} (choose from {', '.join(OPTIMIZERS)})")
    try:
        a.k = [int(v) for v in a.k.split(",")]
    except ValueError:
        ap.error(f"--k must be whole numbers, got {a.k!r}")
    if any(v < 1 for v in a.k):
        ap.error("--k must be at least 1")
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    opts = dict(rules=a.rules, k=a.k, data=a.data, blocks=5 if a.quick else 9, steps=40 if a.quick else 120,
                warmup=10 if a.quick else 30)
    print(f"bench_stacking: torch {torch.__version__}, {a.workers} worker(s) x 1 thread, load average "
          f"{os.getloadavg()[0]:.2f}; per rule and K: {opts['blocks']} alternating blocks of {opts['steps']} steps "
          f"of one model and {opts['steps']}/K stacked steps, batch {BATCH}, compiled step", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(a.workers) as pool:
        per_worker = pool.map(worker, [(w, opts) for w in range(a.workers)])
    rows = [r for rs in per_worker for r in rs]
    print(f"{'rule':10s} {'K':>3s} {'one model ms/step':>18s} {'stacked ms/model-step':>22s} {'speed-up':>9s}  "
          "per worker")
    summary = []
    for rule in a.rules:
        for k in a.k:
            rs = [r for r in rows if r["rule"] == rule and r["k"] == k]
            sp = statistics.fmean(r["speedup"] for r in rs)
            summary.append((k, sp, rule))
            print(f"{rule:10s} {k:3d} {statistics.fmean(r['one_ms'] for r in rs):18.2f} "
                  f"{statistics.fmean(r['stacked_ms'] for r in rs):22.2f} {sp:9.2f}  "
                  + " ".join(f"{r['speedup']:.2f}" for r in rs))
    for k in a.k:
        worst = min((s for s in summary if s[0] == k), key=lambda s: s[1])
        print(f"min speed-up of K={k} over rules: {worst[1]:.2f} ({worst[2]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
