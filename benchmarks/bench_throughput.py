"""Model-epochs per core-second of every update rule as the report runs them, against the GEMM bound.

    python benchmarks/bench_throughput.py                 # one full epoch per rule and worker
    python benchmarks/bench_throughput.py --quick         # ~60 timed model-steps + the evaluations per rule
    python benchmarks/bench_throughput.py --rules sgd,adam --workers 2 --csv results/bench_throughput.csv
    python benchmarks/bench_throughput.py --stack 1       # one model at a time, as before stacking

What is measured is what the report's sweep does: one worker process per core (multiprocessing
'spawn'), one torch thread each, each worker training with the real trainer and evaluating
validation (5,000) and test (10,000) images after the epoch, as the trainer does after every
epoch. The sweep trains up to ``runs.sweep.STACK`` (5) runs that differ only in their seed
together, stacked (``optreport.engine.train.train_stacked``: the numbers of each run alone, bit for
bit); so does each worker here (``--stack``, default 5; ``--stack 1``: ``train``, one model at a
time). Either way: the rule's compiled step, denormals flushed, the MLP at batch 64, its
hand-written backward of ``engine.fastpath`` (``--autograd``: autograd instead, one model at a
time). With a stack every time is per model: the stack's time divided by its models, the GEMM
bound of one model, an epoch per model. All workers train the same rule at the same time (a barrier lines them
up), so each competes with the others for memory bandwidth and caches as in the sweep. Before
its timed run each worker trains a few warm-up steps of the rule (not timed: the compiled step
compiles on its first call, and the autograd/allocator caches fill), evaluated on a few images
only.

    seconds per epoch  = train_seconds / steps_timed * steps_per_epoch + eval_seconds
                         (train_seconds without the interleaved multiplies of the GEMM bound)
    model-epochs per core-second = workers / sum over workers of seconds per epoch
                                   (a worker is one thread on one core)

With ``--quick`` only ``--steps`` (default 60; stacked, 60 / stack but at least 20) steps are timed
and scaled to the epoch's 860;
the evaluation is always the full one (its time is not scaled). Without ``--quick`` the whole
epoch is timed. Per-run set-up (building the model and optimizer, compiling the step, loading
the data) is excluded: it is paid once per run or process, not per epoch.

The GEMM bound is measured in the same run, in the same workers, alongside each rule's timed
run: after every training step the worker performs that step's matrix multiplies once more
(``StepGemms``: for y = x W^T, forward x @ W^T layer by layer, then from the last layer down
grad_W = g^T @ x into the weight's gradient and grad_x = g @ W -- not for the first layer: the
input needs no gradient, autograd skips it) on the model's own weight and gradient tensors, and
times them (``InterleavedBound``, the trainer's callback; its time is taken out of the training
time, and the training's numbers are unchanged, tests/test_bench_throughput.py). After the run
it times the evaluation's forward multiplies (5,000 images a batch) on the trained weights.

    GEMM bound = (training images / 64) x seconds of a step's multiplies     (the smaller last
                 + evaluation batches x seconds of a batch's multiplies        batch in proportion)
    ratio      = the workers' seconds per epoch summed / their GEMM bounds summed

Why alongside, and why a whole step: on a shared host the speed of a core changes by tens of
percent within seconds (other tenants); a bound measured at another moment moves every ratio with
it, while one measured on the same core within milliseconds of the training it divides moves
with the training (compare the workers' ratios in the table's last column). And
a step's multiplies cycle through every weight and gradient (2.7 MB each for the report's MLP,
more than a core's 1 MB L2; two workers share an 8 MB L3): no step can run them as fast as each
multiply repeated alone on operands that stay in cache. That faster sum is still printed, as a
reference (``hot_multiplies``: ``torch.mm(a, b, out=c)`` per distinct multiply on preallocated
operands in autograd's layouts, median of blocks, timed once at the start), with each rule's
ratio to it ("hot").

The ratio is what the report loses to everything but matrix multiplies (autograd and Python
per step, the update step, bias/ReLU/loss kernels, batch gathering, allocation); it is >= 1.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import math
import multiprocessing
import os
import queue as queue_mod
import statistics
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from optimizers import OPTIMIZERS
from optreport.analysis.costs import cpu_name
from optreport.engine.data import load_fashion_mnist
from optreport.engine.models import build_model
from optreport.engine.train import EVAL_BATCH, train, train_stacked
from optreport.runs.sweep import STACK

BATCH = 64                  # the report's batch size
WARMUP_STEPS = 20           # untimed steps per rule and worker before its timed run
QUICK_WARMUP = 10           # the same with --quick
WARMUP_EVAL = 256           # images of the warm-up's evaluation (its time is thrown away)
QUICK_STEPS = 60            # steps timed per rule with --quick (one model at a time)
QUICK_STACKED_STEPS = 20    # the least stacked steps timed per rule with --quick (each trains --stack models)
BARRIER_TIMEOUT = 1800.0    # s a worker waits for the others before giving up
LAST_LINE = "max ratio to the GEMM bound: {ratio:.2f} ({rule})"
SPREAD_WARNING = 0.10       # relative spread of the workers' ratios that the table warns about


# ----------------------------------------------------------------------------- GEMM bound

@dataclasses.dataclass(frozen=True)
class GemmOp:
    """One distinct matrix multiply (m x k) @ (k x n) of an epoch and how often the epoch does it."""
    phase: str      # "train" or "eval"
    kind: str       # "fwd" (x @ W^T), "grad_x" (g @ W) or "grad_W" (g^T @ x)
    layer: int      # 1-based index of the Linear layer
    m: int
    k: int
    n: int
    count: int      # calls per epoch

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    def label(self) -> str:
        return f"{self.phase:5s} L{self.layer} {self.kind:6s} {self.m}x{self.k} @ {self.k}x{self.n}"


def batch_counts(n: int, batch: int) -> Counter:
    """{batch size: number of batches} when n examples are cut into batches of ``batch`` (the
    last one smaller, as the trainer does)."""
    full, rest = divmod(n, batch)
    out = Counter()
    if full:
        out[batch] = full
    if rest:
        out[rest] += 1
    return out


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of the model's Linear layers, in order; only Linear models."""
    if any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules()):
        raise ValueError("the GEMM bound here covers Linear layers only (convolutions are not GEMMs here)")
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def gemm_ops(layers, n_train: int, eval_sizes=(5000, 10000), batch: int = BATCH,
             eval_batch: int = EVAL_BATCH) -> list[GemmOp]:
    """Every matrix multiply of one epoch of training on ``n_train`` examples at ``batch`` plus
    the evaluation forward passes over each of ``eval_sizes`` at ``eval_batch``.

    layers: (in_features, out_features) per Linear layer. For y = x W^T (x: b x in, W: out x in):
    forward x @ W^T (b x in @ in x out); backward grad_W = g^T @ x (out x b @ b x in) and, for
    every layer but the first (its input needs no gradient), grad_x = g @ W (b x out @ out x in)."""
    ops = []
    for b, c in sorted(batch_counts(n_train, batch).items(), reverse=True):
        for i, (fin, fout) in enumerate(layers, 1):
            ops.append(GemmOp("train", "fwd", i, b, fin, fout, c))
            if i > 1:
                ops.append(GemmOp("train", "grad_x", i, b, fout, fin, c))
            ops.append(GemmOp("train", "grad_W", i, fout, b, fin, c))
    ev = Counter()
    for n in eval_sizes:
        ev.update(batch_counts(n, eval_batch))
    for b, c in sorted(ev.items(), reverse=True):
        for i, (fin, fout) in enumerate(layers, 1):
            ops.append(GemmOp("eval", "fwd", i, b, fin, fout, c))
    return ops


def _operands(op: GemmOp, gen: torch.Generator):
    """a, b, out of ``op`` in the layouts autograd uses: W^T and g^T are transposed views."""
    def r(*shape):
        return torch.randn(*shape, generator=gen)
    if op.kind == "fwd":               # x (m x k) @ W^T, W stored (n x k)
        a, b = r(op.m, op.k), r(op.n, op.k).t()
    elif op.kind == "grad_x":          # g (m x k) @ W, W stored (k x n)
        a, b = r(op.m, op.k), r(op.k, op.n)
    else:                              # g^T, g stored (k x m), @ x (k x n)
        a, b = r(op.k, op.m).t(), r(op.k, op.n)
    return a, b, torch.empty(op.m, op.n)


def _seconds_per_call(fn, reps: int, block_seconds: float) -> float:
    """Seconds per call of ``fn()``: calls in blocks of at least ``block_seconds`` (calibrated),
    median over ``reps`` blocks, after up to 3 warm-up calls (1 if a call takes a block or more)."""
    t = time.perf_counter()
    fn()
    if time.perf_counter() - t < block_seconds:
        fn()
        fn()
    calls, dt = 1, 0.0
    while True:                        # calibrate: calls per block
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = time.perf_counter() - t
        if dt >= block_seconds or calls >= 1 << 16:
            break
        calls = max(calls * 2, int(calls * block_seconds / max(dt, 1e-7) * 1.2))
    times = [dt / calls]
    for _ in range(reps - 1):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return statistics.median(times)


def time_gemm(op: GemmOp, reps: int = 7, block_seconds: float = 0.02, seed: int = 0) -> float:
    """Seconds per call of ``torch.mm(a, b, out=c)`` for ``op`` alone, repeated on the same
    operands (so they stay in cache): median of ``reps`` blocks of at least ``block_seconds``
    (the current torch thread count)."""
    a, b, c = _operands(op, torch.Generator().manual_seed(seed))
    return _seconds_per_call(lambda: torch.mm(a, b, out=c), reps, block_seconds)


class StepGemms:
    """The matrix multiplies of one training step (or one evaluation batch) of a Linear stack,
    in the order the trainer does them: forward x @ W_j^T layer by layer; backward, from the
    last layer down, grad_W = g^T @ a_j into W_j's gradient and (not for the first layer)
    g <- g @ W_j, the next layer's g. Nothing but the multiplies: no bias, ReLU, loss or update.

    ``weights``: the model's Linear layers, whose weight and ``.grad`` tensors are used (the
    gradients are overwritten: call it only where the trainer overwrites them next, as the fast
    path's backward does); None: tensors of the same sizes made here. A training step touches
    every weight and gradient (2.7 MB each for the report's MLP), more than a core's cache holds,
    so these multiplies run slower together than each one repeated alone (hot_multiplies)."""

    def __init__(self, layers, batch: int, train: bool = True, seed: int = 0, weights=None):
        gen = torch.Generator().manual_seed(seed)
        self.train = train
        if weights is not None:
            self.w = [m.weight for m in weights]
            self.wg = [m.weight.grad if m.weight.grad is not None else torch.empty_like(m.weight)
                       for m in weights] if train else []
        else:
            self.w = [torch.randn(fout, fin, generator=gen) * fin ** -0.5 for fin, fout in layers]
            self.wg = [torch.empty(fout, fin) for fin, fout in layers] if train else []
        self.x = torch.randn(batch, layers[0][0], generator=gen)
        self.z = [torch.empty(batch, fout) for _, fout in layers]
        self.gz = torch.randn(batch, layers[-1][1], generator=gen) if train else None
        self.gx = [torch.empty(batch, fin) for fin, _ in layers] if train else []

    @torch.no_grad()
    def __call__(self) -> None:
        acts, h = [self.x], self.x
        for j, w in enumerate(self.w):
            h = torch.mm(h, w.t(), out=self.z[j])
            acts.append(h)
        if not self.train:
            return
        g = self.gz
        for j in range(len(self.w) - 1, -1, -1):
            torch.mm(g.t(), acts[j], out=self.wg[j])
            if j > 0:
                g = torch.mm(g, self.w[j], out=self.gx[j])


def hot_multiplies(ops, reps: int = 7, block_seconds: float = 0.02) -> dict:
    """Each multiply of ``ops`` timed alone (time_gemm: repeated on operands kept in cache), one
    torch thread: {"seconds": sum of calls per epoch x seconds per call, "ops": [(op, seconds per
    call)]}. A reference, not the bound: a training step cycles through every weight and gradient,
    more than a core's cache holds, so its multiplies never run this fast together (StepGemms)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timed = [(op, time_gemm(op, reps, block_seconds, seed=j)) for j, op in enumerate(ops)]
    finally:
        torch.set_num_threads(old)
    return {"seconds": sum(op.count * t for op, t in timed), "ops": timed}


class InterleavedBound:
    """The trainer's ``callback``: after every training step, the step's multiplies (StepGemms
    on the model's own weights and gradients, batch ``batch``) once, timed; for a stack of models
    (engine.train.train_stacked) each model's, one model after another, as training them one at a
    time would do them. The trainer's time and the bound's are then measured on the same core,
    alternately, within milliseconds of each other: a change of the machine's speed (other tenants
    of the host) moves both alike. ``seconds``: their total; ``calls``: steps; ``models``: models
    per step."""

    def __init__(self, layers, batch: int = BATCH, seed: int = 0):
        self.layers, self.batch, self.seed = layers, batch, seed
        self.fns, self.model, self.seconds, self.calls, self.models = None, None, 0.0, 0, 0

    def __call__(self, step, model, optimizer, loss) -> None:
        if self.fns is None or (isinstance(model, list) and len(model) != self.models):
            nets = model if isinstance(model, list) else [model]
            self.model, self.models = nets[0], len(nets)
            self.fns = [StepGemms(self.layers, self.batch, seed=self.seed,
                                  weights=[m for m in net.modules() if isinstance(m, nn.Linear)]) for net in nets]
            for fn in self.fns:                     # first call: allocation, not timed
                fn()
        t = time.perf_counter()
        for fn in self.fns:
            fn()
        self.seconds += time.perf_counter() - t
        self.calls += 1



# ----------------------------------------------------------------------------- one rule

def _small_eval(data, n: int = WARMUP_EVAL):
    """``data`` with validation and test cut to ``n`` images (for the untimed warm-up)."""
    return dataclasses.replace(data, val_x=data.val_x[:n], val_y=data.val_y[:n],
                               test_x=data.test_x[:n], test_y=data.test_y[:n])


def _seeds(seed: int, stack: int) -> list[int]:
    """The seeds of a worker's stack of ``stack`` models (distinct across workers)."""
    return [seed * 1000 + i for i in range(stack)]


def _train(rule, hparams, data, seed, stack, **kw) -> list[dict]:
    """The records of one run of the trainer (``stack`` 1) or of ``stack`` models trained stacked."""
    kw = dict(epochs=1, batch_size=BATCH, threads=1, compile_step=True, flush_denormal=True, **kw)
    if stack == 1:
        return [train("mlp", rule, hparams or {}, data=data, seed=seed, **kw)]
    return train_stacked("mlp", rule, hparams or {}, data=data, seeds=_seeds(seed, stack), **kw)


def warm_up(rule: str, data, steps: int = WARMUP_STEPS, hparams: dict | None = None, seed: int = 0,
            fast_path: bool = True, stack: int = 1) -> float:
    """Untimed: ``steps`` steps of ``rule`` with the trainer (compiles the rule's step in this
    process, for ``stack`` models); returns the seconds it took."""
    t = time.perf_counter()
    _train(rule, hparams, _small_eval(data), seed, stack, max_steps=steps, fast_path=fast_path)
    return time.perf_counter() - t


def measure_rule(rule: str, data, steps: int | None = None, hparams: dict | None = None, seed: int = 0,
                 fast_path: bool = True, gemm_reps: int = 7, gemm_block: float = 0.02, stack: int = 1) -> dict:
    """One timed run of the real trainer, ``steps`` steps (None: the whole epoch) and the
    evaluation it does after the epoch, one thread, with the GEMM bound measured alongside: after
    every step the step's multiplies on the model's tensors (InterleavedBound; their time is taken
    out of the training time), after the run the evaluation's multiplies (StepGemms at EVAL_BATCH
    on the trained model's weights). Returns the record's timings, the seconds of one epoch (the
    steps' time scaled to the epoch's steps, plus the evaluation) and ``bound_seconds``, the GEMM
    bound of one epoch: full batches x seconds per step sequence (the smaller last batch counted
    in proportion to its size) plus evaluation batches x seconds per evaluation sequence.

    ``stack`` > 1: ``stack`` models trained stacked (engine.train.train_stacked, as the sweep trains
    runs that differ only in their seed); every time is then per model: the stack's training time
    over ``stack``, each model's multiplies in the bound, the models' mean evaluation."""
    layers = linear_shapes(build_model("mlp", 0))
    inter = InterleavedBound(layers, BATCH, seed=seed)
    recs = _train(rule, hparams, data, seed, stack, max_steps=steps, fast_path=fast_path, callback=inter)
    rec = recs[0]
    e = rec["epochs"][0]
    if not rec["config"].get("compiled_step", False):
        raise RuntimeError(f"{rule}: the trainer did not use a compiled step")
    if stack > 1 and (rec.get("stacked") != stack or inter.models != stack):
        raise RuntimeError(f"{rule}: the trainer did not stack the {stack} models")
    n = len(data.train_y)
    spe = math.ceil(n / BATCH)
    scale = spe / e["steps"]
    # the trainer's own time per model (a stacked record's train_seconds is its share of the stack's)
    train_s = (e["train_seconds"] * stack - inter.seconds) / stack
    seq_s = inter.seconds / max(inter.calls * stack, 1)   # one model's step multiplies
    evals = batch_counts(len(data.val_y), EVAL_BATCH) + batch_counts(len(data.test_y), EVAL_BATCH)
    with torch.no_grad():
        mods = [m for m in inter.model.modules() if isinstance(m, nn.Linear)]
        eval_seq = {b: _seconds_per_call(StepGemms(layers, b, train=False, seed=seed, weights=mods),
                                         gemm_reps, gemm_block) for b in evals}
    bound = seq_s * n / BATCH + sum(c * eval_seq[b] for b, c in evals.items())
    eval_s = statistics.fmean(r["epochs"][0]["eval_seconds"] for r in recs)
    return dict(rule=rule, stack=stack, steps_timed=e["steps"], steps_per_epoch=spe,
                train_seconds=train_s * scale, step_seconds=e["step_seconds"] * scale,
                eval_seconds=eval_s, epoch_seconds=train_s * scale + eval_s,
                bound_seconds=bound, bound_train_seconds=seq_s * n / BATCH, seq_seconds=seq_s,
                eval_seq_seconds={int(b): t for b, t in eval_seq.items()}, diverged=any(r["diverged"] for r in recs))


# ----------------------------------------------------------------------------- workers

def worker_main(wid: int, opts: dict, barrier, out) -> None:
    """One worker: load the data, time the GEMM bound, then each rule (warm-up, barrier, timed
    run), sending ("ready"|"gemm"|"rule"|"done"|"error", wid, payload) messages to ``out``."""
    try:
        # torch.compile in-process (no pool of compile subprocesses per worker): the same kernels,
        # a faster first compile (~6 s instead of ~9 s here) and nothing left running beside the timing
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        torch.set_num_threads(1)
        kw = {} if opts.get("val_size") is None else {"val_size": opts["val_size"]}
        data = load_fashion_mnist(opts.get("data_dir"), **kw)
        layers = linear_shapes(build_model("mlp", 0))
        ops = gemm_ops(layers, len(data.train_y), (len(data.val_y), len(data.test_y)))
        out.put(("ready", wid, dict(n_train=len(data.train_y), n_val=len(data.val_y), n_test=len(data.test_y),
                                    source=data.source, threads=torch.get_num_threads())))
        barrier.wait(BARRIER_TIMEOUT)
        hot = hot_multiplies(ops, opts["gemm_reps"], opts["gemm_block"])
        out.put(("gemm", wid, [(dataclasses.asdict(op), t) for op, t in hot["ops"]]))
        for rule in opts["rules"]:
            stack = opts.get("stack", 1)
            warm = warm_up(rule, data, opts["warmup"], seed=wid, fast_path=opts.get("fast_path", True), stack=stack)
            barrier.wait(BARRIER_TIMEOUT)
            res = measure_rule(rule, data, opts["steps"], seed=wid, fast_path=opts.get("fast_path", True),
                               gemm_reps=opts["gemm_reps"], gemm_block=opts["gemm_block"], stack=stack)
            res.update(worker=wid, warmup_seconds=warm)
            out.put(("rule", wid, res))
        out.put(("done", wid, None))
    except BaseException:
        out.put(("error", wid, traceback.format_exc()))
        barrier.abort()
        raise


def run_workers(opts: dict, workers: int, bar=None) -> dict:
    """Start ``workers`` spawned processes running worker_main; collect their messages.
    Raises RuntimeError if any worker fails or dies."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(w, opts, barrier, out)) for w in range(workers)]
    for p in procs:
        p.start()
    ready, gemm, rules, done = {}, {}, [], set()
    try:
        while len(done) < workers:
            try:
                kind, wid, payload = out.get(timeout=2.0)
            except queue_mod.Empty:
                dead = [w for w, p in enumerate(procs) if not p.is_alive() and w not in done]
                if dead:
                    raise RuntimeError(f"worker(s) {dead} died (exit codes "
                                       f"{[procs[w].exitcode for w in dead]}) without reporting") from None
                continue
            if kind == "error":
                raise RuntimeError(f"worker {wid} failed:\n{payload}")
            if kind == "ready":
                ready[wid] = payload
            elif kind == "gemm":
                gemm[wid] = [(GemmOp(**d), t) for d, t in payload]
            elif kind == "rule":
                rules.append(payload)
            elif kind == "done":
                done.add(wid)
            if bar is not None and kind in ("gemm", "rule"):
                bar.set_postfix_str(f"{payload['rule']} w{wid}" if kind == "rule" else f"GEMMs w{wid}")
                bar.update(1)
    finally:
        for p in procs:         # after "done" a worker has sent everything: do not wait for its exit
            p.join(timeout=2.0 if len(done) == workers else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=30)
    return dict(ready=ready, gemm=gemm, rules=rules)


# ----------------------------------------------------------------------------- report

def summarize(raw: dict) -> tuple[dict, list[dict]]:
    """(bound, rows) from run_workers' output.

    Each worker's run of a rule carries its own GEMM bound, measured on its core alongside the
    run (measure_rule). rows (per rule): s_per_epoch_per_worker, model_epochs_per_core_second,
    gemm_bound_s (mean over workers), ratio_to_gemm_bound = the workers' epoch seconds summed /
    their bounds summed, worker_ratio (each worker's own), ratio_to_hot_gemm (to the per-multiply
    reference measured once at the start). bound: seconds (mean over rules and workers), step and
    eval sequence seconds, hot_seconds and ops (the reference), per_worker (mean bound)."""
    hot_per_worker = {w: sum(op.count * t for op, t in ops) for w, ops in raw["gemm"].items()}
    first = next(iter(raw["gemm"].values()))
    ops = [(op, statistics.fmean(raw["gemm"][w][j][1] for w in raw["gemm"])) for j, (op, _) in enumerate(first)]
    hot = statistics.fmean(hot_per_worker.values())
    by_rule: dict[str, list[dict]] = {}
    for r in raw["rules"]:
        by_rule.setdefault(r["rule"], []).append(r)
    rows = []
    for rule, rs in by_rule.items():
        rs = sorted(rs, key=lambda r: r["worker"])
        total = sum(r["epoch_seconds"] for r in rs)          # core-seconds of len(rs) model-epochs
        s_epoch = total / len(rs)
        rows.append(dict(rule=rule, workers=len(rs), stack=rs[0].get("stack", 1), s_per_epoch_per_worker=s_epoch,
                         model_epochs_per_core_second=len(rs) / total,
                         ratio_to_gemm_bound=total / sum(r["bound_seconds"] for r in rs),
                         worker_ratio=[r["epoch_seconds"] / r["bound_seconds"] for r in rs],
                         ratio_to_hot_gemm=s_epoch / hot,
                         train_s=statistics.fmean(r["train_seconds"] for r in rs),
                         step_s=statistics.fmean(r["step_seconds"] for r in rs),
                         eval_s=statistics.fmean(r["eval_seconds"] for r in rs),
                         steps_timed=rs[0]["steps_timed"], steps_per_epoch=rs[0]["steps_per_epoch"],
                         worker_s=[r["epoch_seconds"] for r in rs],
                         gemm_bound_s=statistics.fmean(r["bound_seconds"] for r in rs),
                         gemm_hot_s=hot, diverged=any(r["diverged"] for r in rs)))
    runs = raw["rules"]
    per_worker: dict[int, list[float]] = {}
    for r in runs:
        per_worker.setdefault(r["worker"], []).append(r["bound_seconds"])
    mean = (lambda key: statistics.fmean(r[key] for r in runs)) if runs else (lambda key: math.nan)
    bound = dict(seconds=mean("bound_seconds"), train_seconds=mean("bound_train_seconds"),
                 seq_seconds=mean("seq_seconds"),
                 per_worker={w: statistics.fmean(v) for w, v in per_worker.items()},
                 hot_seconds=hot, hot_per_worker=hot_per_worker, ops=ops)
    return bound, rows


def bound_lines(bound: dict) -> list[str]:
    """The GEMM bound, then the per-multiply reference, as text lines."""
    lines = [f"GEMM bound: {bound['seconds']:.3f} core-seconds per epoch, mean over rules (by worker: "
             + ", ".join(f"w{w} {s:.3f}" for w, s in sorted(bound["per_worker"].items()))
             + f"); of which training {bound['train_seconds']:.3f} s ({bound['seq_seconds'] * 1e3:.2f} ms per step's "
               "multiplies, timed after every step on the model's own tensors) and evaluation "
             + f"{bound['seconds'] - bound['train_seconds']:.3f} s"]
    lines.append(f"reference: the same multiplies each timed alone, repeated on operands kept in cache (once, at the "
                 f"start): {bound['hot_seconds']:.3f} core-seconds per epoch (by worker: "
                 + ", ".join(f"w{w} {s:.3f}" for w, s in sorted(bound["hot_per_worker"].items()))
                 + f"); the bound is {bound['seconds'] / bound['hot_seconds']:.2f}x that")
    lines.append(f"  {'multiply':36s} {'calls/ep':>8s} {'us/call':>9s} {'GFLOP/s':>8s} {'s/epoch':>8s} {'share':>6s}")
    groups: Counter = Counter()
    for op, t in bound["ops"]:
        s = op.count * t
        groups[f"{op.phase} {op.kind}"] += s
        lines.append(f"  {op.label():36s} {op.count:8d} {t * 1e6:9.1f} {op.flops / t / 1e9:8.1f} {s:8.3f} "
                     f"{s / bound['hot_seconds']:6.1%}")
    lines.append("  by part: " + ", ".join(f"{k} {v:.3f} s" for k, v in groups.items()))
    return lines


def table_lines(rows: list[dict]) -> list[str]:
    """Per-rule table; the very last line is LAST_LINE for the rule of the largest ratio."""
    head = (f"{'rule':10s} {'s/epoch/worker':>14s} {'epochs/core-s':>13s} {'bound s':>8s} {'ratio':>6s} {'hot':>5s}   "
            f"{'train s':>8s} {'step s':>7s} {'eval s':>7s}  ratio per worker")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['rule']:10s} {r['s_per_epoch_per_worker']:14.3f} {r['model_epochs_per_core_second']:13.4f} "
                     f"{r['gemm_bound_s']:8.3f} {r['ratio_to_gemm_bound']:6.2f} {r['ratio_to_hot_gemm']:5.2f}   "
                     f"{r['train_s']:8.3f} {r['step_s']:7.3f} {r['eval_s']:7.3f}  "
                     + " ".join(f"{x:.2f}" for x in r["worker_ratio"])
                     + ("  (diverged)" if r["diverged"] else ""))
    lines.append("bound s: the GEMM bound measured alongside the rule's run (mean over workers); ratio: the workers' "
                 "epoch seconds / their bounds; hot: / the per-multiply reference")
    stacks = sorted({r.get("stack", 1) for r in rows})
    if stacks != [1]:
        lines.append(f"per model: {'/'.join(map(str, stacks))} models trained stacked per worker (times, bounds and "
                     "epochs/core-s per model-epoch)")
    spread = [r["rule"] for r in rows if len(r["worker_ratio"]) > 1
              and max(r["worker_ratio"]) > (1 + SPREAD_WARNING) * min(r["worker_ratio"])]
    if spread:
        lines.append(f"warning: the workers' ratios differ by more than {SPREAD_WARNING:.0%} for {', '.join(spread)}: "
                     "the machine was not quiet (load?); measure again")
    worst = max(rows, key=lambda r: r["ratio_to_gemm_bound"])
    low = [r["rule"] for r in rows if r["ratio_to_gemm_bound"] < 1]
    if low:
        lines.append(f"warning: ratio below 1 for {', '.join(low)}: the GEMM timing was disturbed (load?)")
    lines.append(LAST_LINE.format(ratio=worst["ratio_to_gemm_bound"], rule=worst["rule"]))
    return lines


CSV_FIELDS = ["rule", "measured_utc", "machine", "load_average", "workers", "stack", "s_per_epoch_per_worker",
              "model_epochs_per_core_second", "ratio_to_gemm_bound", "ratio_to_hot_gemm", "train_s", "step_s", "eval_s",
              "steps_timed", "steps_per_epoch", "gemm_bound_s", "gemm_hot_s", "diverged"]


def write_csv(path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"time --steps (default {QUICK_STEPS}) steps per rule, scaled to an epoch, and fewer "
                         "GEMM repetitions (under 2 minutes on 2 cores)")
    ap.add_argument("--rules", default=",".join(OPTIMIZERS), help="comma-separated rules (default: all 11)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes, one torch thread each (default: one per core)")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV file")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"steps timed per rule and worker (default: the whole epoch; {QUICK_STEPS} with --quick)")
    ap.add_argument("--warmup", type=int, default=None,
                    help=f"untimed warm-up steps per rule and worker (default {WARMUP_STEPS}; "
                         f"{QUICK_WARMUP} with --quick)")
    ap.add_argument("--data", default=None, help="folder of the IDX files (default: the trainer's search)")
    ap.add_argument("--autograd", action="store_true",
                    help="train with autograd instead of the trainer's hand-written MLP backward "
                         "(engine.fastpath; same numbers), to measure what the fast path saves")
    ap.add_argument("--val-size", type=int, default=None, help="validation images (default: the trainer's 5000)")
    ap.add_argument("--stack", type=int, default=STACK,
                    help=f"models per worker trained stacked, as the sweep trains the seeds of one configuration "
                         f"(default {STACK}, the sweep's most; 1: one model at a time); times are per model")
    a = ap.parse_args(argv)
    a.rules = [r.strip() for r in a.rules.split(",") if r.strip()]
    bad = [r for r in a.rules if r not in OPTIMIZERS]
    if bad or not a.rules:
        ap.error(f"unknown rule(s) {bad} (choose from {', '.join(OPTIMIZERS)})")
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    if a.steps is None and a.quick:       # about QUICK_STEPS model-steps, at least QUICK_STACKED_STEPS steps
        a.steps = QUICK_STEPS if a.stack == 1 else max(QUICK_STACKED_STEPS, -(-QUICK_STEPS // a.stack))
    if a.warmup is None:
        a.warmup = QUICK_WARMUP if a.quick else WARMUP_STEPS
    if a.stack < 1:
        ap.error("--stack must be at least 1")
    if a.stack > 1 and a.autograd:
        ap.error("--stack needs the fast path (the stacked step is engine.stacked's): drop --autograd or use --stack 1")
    if a.warmup < 1:
        ap.error("--warmup must be at least 1 (the compiled step compiles on its first call)")
    if a.steps is not None and a.steps < 1:
        ap.error("--steps must be at least 1")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    opts = dict(rules=a.rules, steps=a.steps, warmup=a.warmup, data_dir=a.data, val_size=a.val_size,
                fast_path=not a.autograd, gemm_reps=3 if a.quick else 9, gemm_block=0.005 if a.quick else 0.02,
                stack=a.stack)
    cores = os.cpu_count() or 1
    print(f"bench_throughput: torch {torch.__version__}, {cores} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} before start (other processes share this machine: ratios inflate with load)",
          flush=True)
    if a.workers > cores:
        print(f"warning: {a.workers} workers on {cores} cores: a worker is counted as one core", flush=True)
    t0 = time.perf_counter()
    load = []
    stop = threading.Event()

    def sample_load():
        while not stop.wait(5.0):
            load.append(os.getloadavg()[0])
    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    bar = tqdm(total=a.workers * (1 + len(a.rules)), desc="throughput", unit="measurement")
    try:
        raw = run_workers(opts, a.workers, bar)
    except Exception as e:
        bar.close()
        print(f"bench_throughput failed: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop.set()
    bar.close()
    bound, rows = summarize(raw)
    info = next(iter(raw["ready"].values()))
    spe = rows[0]["steps_per_epoch"]
    timed = f"{a.steps} steps" if a.steps is not None and a.steps < spe else f"the whole epoch ({spe} steps)"
    print(f"\nmeasured: {a.workers} worker process(es) (spawn) x 1 torch thread each, all training the same rule at "
          f"the same time; per rule and worker {a.warmup} warm-up steps (untimed, compiles the step), then {timed} "
          f"timed with optreport.engine.train.train (batch {BATCH}, compiled step, flush_denormal) scaled to an epoch "
          f"of {spe} steps, plus the trainer's evaluation of {info['n_val']} validation + {info['n_test']} test images "
          f"(EVAL_BATCH {EVAL_BATCH}); data {info['source']} ({info['n_train']} training images)")
    print("training: " + ("autograd (--autograd)" if a.autograd else "the trainer's fast path (engine.fastpath)")
          + (f", {a.stack} models stacked per worker (engine.train.train_stacked; times and bounds per model)"
             if a.stack > 1 else ", one model at a time"), flush=True)
    print(f"GEMM timing: torch.mm(out=) on preallocated operands, 1 thread per worker, all workers at once, median of "
          f"{opts['gemm_reps']} blocks of >= {opts['gemm_block'] * 1e3:.0f} ms per multiply")
    print(f"load average during the run: {statistics.fmean(load) if load else os.getloadavg()[0]:.2f} "
          f"(on {cores} cores; this benchmark itself adds {a.workers}); wall time {time.perf_counter() - t0:.1f} s\n")
    for line in bound_lines(bound):
        print(line)
    print()
    if a.csv:
        stamp = {"measured_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "machine": f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), {cores} CPUs, "
                            f"torch {torch.__version__}",
                 "load_average": round(statistics.fmean(load) if load else os.getloadavg()[0], 2)}
        write_csv(a.csv, [{**r, **stamp} for r in rows])
        print(f"table written to {a.csv}")
    for line in table_lines(rows):
        print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
