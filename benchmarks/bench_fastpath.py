"""What engine.fastpath saves: the trainer's seconds per step with and without it, paired.

    python benchmarks/bench_fastpath.py                  # sgd and adam, 4 pairs of full epochs each
    python benchmarks/bench_fastpath.py --rules sgd --pairs 6 --steps 300

One process, one torch thread, the real trainer (compiled step, denormals flushed, the MLP at
batch 64, evaluation cut to 10 images and not counted). For each rule it alternates a run with
the fast path and one with autograd (``train(..., fast_path=False)``), ``--pairs`` times, after
one untimed warm-up of each, and prints every pair's ms per training step (step included) and
their ratio. The two paths compute the same numbers bit for bit (tests/test_fastpath.py), so
only the time differs. On a shared machine single runs move by several percent: read the
paired ratios and the count of pairs the fast path won, not one run. Pause sweeps first.
"""
from __future__ import annotations

import argparse
import statistics

from optimizers import OPTIMIZERS
from optreport.engine.data import load_fashion_mnist
from optreport.engine.train import train


def ms_per_step(rule: str, data, steps: int | None, fast: bool, seed: int = 0) -> float:
    rec = train("mlp", rule, {}, data=data, max_steps=steps, threads=1, fast_path=fast, eval_size=10, seed=seed)
    e = rec["epochs"][0]
    return e["train_seconds"] / e["steps"] * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default="sgd,adam", help="comma-separated rules (default: sgd,adam)")
    ap.add_argument("--pairs", type=int, default=4, help="alternating pairs per rule (default 4)")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: one whole epoch, 860)")
    ap.add_argument("--data", default=None, help="folder of the IDX files (default: the trainer's search)")
    ap.add_argument("--val-size", type=int, default=None, help="validation images (default: the trainer's 5000)")
    a = ap.parse_args(argv)
    rules = [r.strip() for r in a.rules.split(",") if r.strip()]
    bad = [r for r in rules if r not in OPTIMIZERS]
    if bad or not rules:
        ap.error(f"unknown rule(s) {bad} (choose from {', '.join(OPTIMIZERS)})")
    if a.pairs < 1:
        ap.error("--pairs must be at least 1")
    if a.steps is not None and a.steps < 1:
        ap.error("--steps must be at least 1")
    data = load_fashion_mnist(a.data, **({} if a.val_size is None else {"val_size": a.val_size}))
    print("rule      pair  fast ms/step  autograd ms/step  ratio", flush=True)
    for rule in rules:
        for fast in (True, False):              # warm-up: compiles the step, fills caches
            ms_per_step(rule, data, 20, fast)
        ratios = []
        for k in range(a.pairs):
            f = ms_per_step(rule, data, a.steps, True, seed=k)
            s = ms_per_step(rule, data, a.steps, False, seed=k)
            ratios.append(f / s)
            print(f"{rule:9s} {k + 1:4d}  {f:12.3f}  {s:16.3f}  {f / s:5.3f}", flush=True)
        won = sum(r < 1 for r in ratios)
        print(f"{rule}: fast path / autograd, median ratio {statistics.median(ratios):.3f}; "
              f"the fast path was faster in {won} of {len(ratios)} pairs", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
