"""What each update rule costs: optimizer-state memory and time per step.

    costs.state_bytes(optimizer)                  # bytes held in optimizer.state
    costs.state_bytes_per_param("adam")           # 8.0 (+ the step counters): two fp32 buffers
    costs.step_time_us("adam", repeats=7)         # µs per optimizer step and per forward+backward

Memory is counted, not estimated: every tensor reachable from ``optimizer.state`` (buffers such as
``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``square_avg``, ``acc_delta``, the ``step``
counters that ``torch.optim`` keeps as 0-d tensors, Cosine's per-row ``cos`` ...) contributes
``numel * element_size``. Hyper-parameters in ``param_groups`` and plain Python numbers are not
tensors and cost nothing here.

Time is measured side by side: each repeat times ``zero_grad + forward + loss + backward`` and
then ``optimizer.step()`` on the same model and batch, so the two numbers share the machine's
state (threads, caches, frequency) and their ratio -- the optimizer's share of a training step --
is meaningful even on a busy machine. The reported value is the median over repeats.

The module also holds the helpers notebook 04 needs to read the sweep store: seconds per epoch,
time-to-target-accuracy with bootstrap intervals (runs that never reach the target are counted,
not dropped) and accuracy against cumulative wall-clock time.

Every interval respects its range (:func:`range_ci`): accuracies stay in [0, 1], losses, seconds and
time ratios at or above 0 (``optreport.analysis.compare.mean_ci_in_range``, t intervals clipped to
the range); bootstrap intervals are scipy's (``compare.bootstrap_ci``), refused below
``compare.MIN_BOOT_SEEDS`` runs. A run that did not train (``optreport.analysis.outcomes``: diverged,
blew up, failed to learn) is counted as an outcome, never averaged into an accuracy.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from optreport.analysis import compare
from optreport.analysis.outcomes import OUTCOMES, TRAINED, classify, run_outcomes
from optreport.engine import train as trainer
from optreport.engine.models import build_model
from optreport.runs.results import last_epoch

__all__ = ["state_bytes", "state_bytes_per_param", "make_optimizer", "step_time_us",
           "step_time_table", "step_modes_table", "step_bytes_per_param", "StreamUpdate", "STEP_ARRAYS",
           "machine_info", "best_lr", "clean_epochs", "epoch_costs", "final_accuracy",
           "time_to_target", "accuracy_vs_time", "accuracy_at_time", "run_times", "gain_family", "gain_vs_cost",
           "range_ci", "PAUSE_FACTOR", "PAUSE_EXCESS_S", "pause_corrected", "one_timing_mode"]

DEFAULT_LR = 0.01   # used when ``hparams`` gives no lr (the report's middle grid value)


# ----------------------------------------------------------------------------- memory
def _tensor_bytes(obj) -> int:
    """Bytes of every tensor inside ``obj`` (tensor, dict, list/tuple; anything else is 0)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of all tensors held in ``optimizer.state`` (0 before the first step for lazy rules).

    Plain SGD keeps nothing; Momentum one ``momentum_buffer`` per parameter; Adam two buffers
    plus a 0-d ``step`` tensor per parameter tensor.
    """
    return int(sum(_tensor_bytes(s) for s in optimizer.state.values()))


def make_optimizer(rule: str, params, hparams: dict | None = None) -> torch.optim.Optimizer:
    """The report's optimizer ``rule`` (a key of ``optimizers.OPTIMIZERS``) on ``params``, as
    the trainer builds it: with the rule's compiled step where it has one (unless ``hparams``
    says ``compiled=False``).

    ``hparams`` are the constructor's keyword arguments; ``lr`` defaults to ``DEFAULT_LR``.
    """
    return trainer.make_optimizer(rule, params, {"lr": DEFAULT_LR, **(hparams or {})})


def _model_and_batch(model: str, batch_size: int, seed: int):
    net = build_model(model, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    return net, x, y


def state_bytes_per_param(rule: str, model: str = "mlp", hparams: dict | None = None,
                          *, seed: int = 0) -> float:
    """Optimizer-state bytes per model parameter after one step on a random batch.

    Builds ``model``, runs one forward/backward on random data (batch 64) and one optimizer
    step, then divides :func:`state_bytes` by the number of parameters. fp32 buffers give 4.0
    per buffer; the small extra (e.g. Adam's 0-d ``step`` tensors) shows up as the fraction.
    """
    net, x, y = _model_and_batch(model, 64, seed)
    opt = make_optimizer(rule, net.parameters(), hparams)
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    n_params = sum(p.numel() for p in net.parameters())
    return state_bytes(opt) / n_params


# ----------------------------------------------------------------------------- time
def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("AMD EPYC"), else the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where a timing ran: OS, CPU, Python/torch versions and torch's thread counts."""
    return {"platform": platform.platform(), "processor": cpu_name(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def stored_measurement(path, measure, *, remeasure: bool = False) -> pd.DataFrame:
    """A speed measurement as data, not a side effect of rendering: the table stored at ``path``
    (CSV) unless it is missing or ``remeasure`` is set; then ``measure()`` (a DataFrame) runs, is
    stamped with the machine and the UTC date it ran on, and is stored first. Either way the table
    is returned as read back from the file, so a render from a stored measurement and the render
    that measured it see the same numbers."""
    path = Path(path)
    if remeasure or not path.exists():
        m = machine_info()
        df = measure().assign(
            machine=f"{m['processor']}, {m['cpu_count']} cores, torch {m['torch']}",
            measured_utc=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False, float_format="%.10g")
    return pd.read_csv(path)


def step_time_us(rule: str, model: str = "mlp", batch_size: int = 64, repeats: int = 7, *,
                 inner: int = 20, warmup: int = 5, hparams: dict | None = None,
                 threads: int | None = None, seed: int = 0, flush_denormal: bool = True) -> dict:
    """Median µs per optimizer step and per forward+backward, measured side by side.

    Each of ``repeats`` rounds runs ``inner`` training steps on one fixed random batch and times
    the two phases of every step separately (``zero_grad``+forward+loss+backward, then
    ``optimizer.step()``); a round's value is its mean per step, the result the median over
    rounds. ``threads`` sets ``torch.set_num_threads`` for the measurement only.
    ``flush_denormal`` flushes subnormal floats to zero while measuring, as the trainer does
    while training: without it, state and activations that decay into the subnormal range
    (Adam's, RMSProp's, at lr 0.01 within a few hundred steps) make the steps *and* the
    forward/backward passes several times slower than in training.

    Returns ``{"rule", "model", "batch_size", "step_us", "fwd_bwd_us", "step_share",
    "repeats", "inner", "threads"}``, where ``step_share = step / (step + fwd_bwd)``.
    """
    table = step_time_table([rule], model, batch_size, repeats, inner=inner, warmup=warmup,
                            threads=threads, seed=seed, flush_denormal=flush_denormal,
                            hparams={rule: hparams})
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[0].to_dict().items()}


def step_time_table(rules, model: str = "mlp", batch_size: int = 64, repeats: int = 7, *,
                    inner: int = 20, warmup: int = 5, threads: int | None = None,
                    seed: int = 0, flush_denormal: bool = True,
                    hparams: dict | None = None) -> pd.DataFrame:
    """:func:`step_time_us` for several rules, interleaved: round r of every rule runs before
    round r+1 of any, so a change in the machine's load during the benchmark hits all rules
    alike instead of whichever rule happened to be running. One row per rule.
    ``hparams``: optional {rule: constructor kwargs}; ``flush_denormal``: as in
    :func:`step_time_us`."""
    if repeats < 1 or inner < 1:
        raise ValueError(f"Invalid repeats/inner: {repeats}/{inner}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with trainer.denormals_flushed(flush_denormal):
            return _interleaved_step_times(rules, model, batch_size, repeats, inner, warmup, seed,
                                           hparams or {})
    finally:
        torch.set_num_threads(old_threads)


def _interleaved_step_times(rules, model, batch_size, repeats, inner, warmup, seed, hparams):
    """``rules``: rule names (with ``hparams`` {rule: kwargs}) or a dict {label: (rule, kwargs)}
    of contenders, where ``rule`` may also be a factory ``rule(params)`` of an object with
    ``step()`` and ``zero_grad(set_to_none=True)``; one row per rule or label (``rule`` column)."""
    loss_fn = nn.CrossEntropyLoss()
    contenders = rules if isinstance(rules, dict) else {r: (r, hparams.get(r)) for r in rules}
    rules = list(contenders)
    setups = {}
    for r, (rule, kw) in contenders.items():
        net, x, y = _model_and_batch(model, batch_size, seed)
        opt = rule(list(net.parameters())) if callable(rule) else make_optimizer(rule, net.parameters(), kw)
        setups[r] = (net, opt, x, y)
    clock = time.perf_counter_ns

    def one_step(r):
        net, opt, x, y = setups[r]
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        t1 = clock()
        opt.step()
        return t1 - t0, clock() - t1

    for r in rules:
        for _ in range(warmup):           # lazy state creation, compiling, allocator warm-up
            one_step(r)
    fb = {r: [] for r in rules}
    st = {r: [] for r in rules}
    for _ in range(repeats):
        for r in rules:
            times = [one_step(r) for _ in range(inner)]
            fb[r].append(sum(t[0] for t in times) / inner / 1e3)
            st[r].append(sum(t[1] for t in times) / inner / 1e3)
    rows = []
    for r in rules:
        s_us, f_us = statistics.median(st[r]), statistics.median(fb[r])
        rows.append({"rule": r, "model": model, "batch_size": batch_size, "step_us": s_us,
                     "fwd_bwd_us": f_us, "step_share": s_us / (s_us + f_us),
                     "repeats": repeats, "inner": inner, "threads": torch.get_num_threads()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- algorithm vs implementation
#: Parameter-sized fp32 arrays one step of each rule must read and write at the least: the
#: parameter (read, write), the gradient (read) and every state buffer of the parameter's size
#: (read, write); Gravity reads the gradient twice (its global norm must be complete before any
#: parameter moves). Cosine's per-row cosine reads a row of m and g that the update then reuses
#: while it is in cache, so it needs no extra pass.
STEP_ARRAYS = {"sgd": 3, "momentum": 5, "nag": 5, "adagrad": 5, "rmsprop": 5, "adadelta": 7,
               "adam": 7, "nadam": 7, "adamw": 7, "gravity": 4, "cosine": 5}


def step_bytes_per_param(rule: str, itemsize: int = 4) -> int:
    """Bytes one optimizer step of ``rule`` must move per parameter (:data:`STEP_ARRAYS` x itemsize):
    what the algorithm costs, whatever the implementation."""
    if rule not in STEP_ARRAYS:
        raise ValueError(f"Unknown rule: {rule!r} (choose from {', '.join(STEP_ARRAYS)})")
    return STEP_ARRAYS[rule] * itemsize


class StreamUpdate:
    """The cheapest update that moves every parameter by its gradient: ``p.add_(g, alpha=-lr)``
    per parameter (torch's own kernel, eagerly). It reads the parameter and the gradient and writes
    the parameter once -- 3 parameter-sized arrays, SGD's minimum -- so, timed where the steps are
    timed (after a forward and backward, same caches), its bytes per second are the speed at which
    a step can stream parameter-sized arrays on this machine."""

    def __init__(self, params, lr: float = 1e-3):
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p in self.params:
            p.add_(p.grad, alpha=-self.lr)


STEP_MODES_COLUMNS = ["rule", "state_buffers", "mb_per_step", "floor_us", "eager_us", "compiled_us",
                      "compiled_vs_eager", "eager_vs_floor", "compiled_vs_floor", "bandwidth_gb_s",
                      "repeats", "inner", "threads"]


def step_modes_table(rules, model: str = "mlp", batch_size: int = 64, repeats: int = 7, *,
                     inner: int = 20, warmup: int = 5, threads: int = 1, seed: int = 0) -> pd.DataFrame:
    """What each rule's step costs by algorithm and by implementation, measured in one run.

    µs per ``optimizer.step()`` of every rule run eagerly (``compiled=False``: the formula as
    written, the reference) and compiled (``compiled=True``: what the trainer runs), all
    contenders interleaved round by round as in :func:`step_time_table`; the bytes the algorithm
    must move per step (:func:`step_bytes_per_param` x the model's parameters) and the time they
    take at the streaming bandwidth measured in the same loop (:class:`StreamUpdate`, a contender
    like the rules, so under the same cache conditions: after a forward and backward):
    ``floor_us``. ``*_vs_floor`` is an implementation's time over that floor."""
    rules = list(rules)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with trainer.denormals_flushed(True):
            labels = {f"{r}|{m}": (r, {"compiled": m == "compiled"}) for r in rules for m in ("eager", "compiled")}
            labels["|stream"] = (StreamUpdate, None)
            t = _interleaved_step_times(labels, model, batch_size, repeats, inner, warmup, seed, {})
            n_params = sum(p.numel() for p in build_model(model, seed).parameters())
            bw = STEP_ARRAYS["sgd"] * 4 * n_params / (t.set_index("rule").loc["|stream", "step_us"] * 1e-6)
    finally:
        torch.set_num_threads(old)
    t = t.set_index("rule")
    rows = []
    for r in rules:
        nbytes = step_bytes_per_param(r) * n_params
        floor = nbytes / bw * 1e6
        eager, compiled = t.loc[f"{r}|eager", "step_us"], t.loc[f"{r}|compiled", "step_us"]
        rows.append({"rule": r, "state_buffers": (STEP_ARRAYS[r] - 3 - (r == "gravity")) // 2,
                     "mb_per_step": nbytes / 1e6, "floor_us": floor, "eager_us": eager, "compiled_us": compiled,
                     "compiled_vs_eager": compiled / eager, "eager_vs_floor": eager / floor,
                     "compiled_vs_floor": compiled / floor, "bandwidth_gb_s": bw / 1e9,
                     "repeats": repeats, "inner": inner, "threads": threads})
    return pd.DataFrame(rows, columns=STEP_MODES_COLUMNS)


# ----------------------------------------------------------------------------- sweep records
_RUN = ["rule", "lr", "seed"]


def best_lr(df: pd.DataFrame, metric: str = "val_acc") -> dict:
    """Per rule, the lr with the best mean final ``metric`` over seeds (validation by default).

    Diverged runs count with their recorded (NaN -> worst) value, so an lr that diverges on some
    seeds is penalised rather than silently averaged over its surviving seeds.
    """
    fin = last_epoch(df)
    fin[metric] = fin[metric].fillna(-np.inf)
    means = fin.groupby(["rule", "lr"])[metric].mean().reset_index()
    idx = means.groupby("rule")[metric].idxmax()
    return dict(zip(means.loc[idx, "rule"], means.loc[idx, "lr"]))


def epoch_costs(df: pd.DataFrame, by=("rule", "lr")) -> pd.DataFrame:
    """Seconds per epoch per group, with the optimizer-step share.

    ``train_seconds`` is an epoch's training wall-clock, ``step_seconds`` the part of it spent
    in ``optimizer.step()``. Each run's mean over its epochs is one observation (epochs of one
    run are not independent); per group: n_runs, train_s (mean) with train_s_lo/hi (95% t CI
    over runs, clipped at 0: a time is never negative), step_s and step_share = step_s / train_s.
    Runs trained beside other work on the machine take longer, never shorter, so the group's
    fastest epoch (``fastest_s``, ``fastest_step_s``) is the least disturbed estimate of what the
    rule costs; ``run_spread`` (slowest run's mean / fastest run's mean) shows how disturbed the
    means are (near 1: not at all).
    """
    one_timing_mode(df)
    per_run = df.groupby("key").agg(**{c: (c, "first") for c in by},
                                    train_s=("train_seconds", "mean"),
                                    step_s=("step_seconds", "mean"),
                                    fastest_s=("train_seconds", "min"),
                                    fastest_step_s=("step_seconds", "min"))
    rows = []
    for keys, g in per_run.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        m, lo, hi = range_ci(g["train_s"], "train_seconds")
        step = float(g["step_s"].mean())
        fastest = float(g["fastest_s"].min())
        rows.append((*keys, len(g), m, lo, hi, step, step / m if m > 0 else np.nan, fastest,
                     float(g["fastest_step_s"].min()), float(g["train_s"].max() / g["train_s"].min())))
    return pd.DataFrame(rows, columns=[*by, "n_runs", "train_s", "train_s_lo", "train_s_hi",
                                       "step_s", "step_share", "fastest_s", "fastest_step_s", "run_spread"])


def one_timing_mode(df: pd.DataFrame) -> bool:
    """Whether the runs of ``df`` were all trained the same way: all alone, or all in stacks of one
    size (load_results' ``stacked``). A stacked run's seconds are its share of its stack's, less than
    the same run alone: comparing the two would credit the rule with the trainer's gain. Warns
    (RuntimeWarning) and returns False when they are mixed."""
    if "stacked" not in df.columns or df["stacked"].nunique() <= 1:
        return True
    sizes = ", ".join(f"{k}: {v} runs" for k, v in df.groupby("stacked")["key"].nunique().items())
    warnings.warn(f"these runs were trained in different modes (models per stack {sizes}): their seconds are not "
                  "comparable across modes", RuntimeWarning, stacklevel=3)
    return False


def _cumulative(df: pd.DataFrame) -> pd.DataFrame:
    one_timing_mode(df)
    d = df.sort_values(["key", "epoch"]).copy()
    d["cum_seconds"] = d.groupby("key")["train_seconds"].cumsum()
    return d


def range_ci(values, metric: str, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and 95% t interval ``(mean, lo, hi)`` of ``values`` inside the range of ``metric``:
    [0, 1] for an accuracy (a name containing "acc"), [0, inf) for a loss, seconds or a ratio,
    unbounded otherwise (``compare.mean_ci_in_range``, clipped)."""
    if "acc" in metric:
        return compare.accuracy_ci(values, level)
    if any(w in metric for w in ("loss", "second", "ratio")) or metric.endswith("_s"):
        return compare.mean_ci_in_range(values, level, lower=0.0)
    return compare.mean_ci_in_range(values, level)


def _median_time_ci(secs: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float, float]:
    """Median of per-run times (``inf``: never reached) with scipy's percentile bootstrap interval
    (``compare.bootstrap_ci``; NaN bounds below ``compare.MIN_BOOT_SEEDS`` runs). ``inf`` stands in
    as a finite value above twice the slowest finite time, so any resample median involving a
    non-reaching run lies above every finite time and is read back as ``inf``."""
    med = float(np.median(secs))
    finite = secs[np.isfinite(secs)]
    if secs.size < compare.MIN_BOOT_SEEDS:
        return med, float("nan"), float("nan")
    if finite.size == 0:
        return med, float("inf"), float("inf")
    top = float(finite.max())
    x = np.where(np.isfinite(secs), secs, 2 * top + 1.0)
    _, lo, hi = compare.bootstrap_ci(x, np.median, level, n_resamples=n_boot, seed=seed, method="percentile")
    back = lambda v: float("inf") if v > top else float(v)  # noqa: E731
    return med, back(lo), back(hi)


def time_to_target(df: pd.DataFrame, targets, *, metric: str = "test_acc", by=("rule",),
                   n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Training seconds (and epochs) until ``metric`` first reaches each target, per group.

    One value per run: cumulative ``train_seconds`` at the first epoch with ``metric >= target``
    (epoch resolution), ``inf`` when the run never gets there. Per group and target we report
    ``n_runs``, ``n_reached``, the median time with a percentile-bootstrap CI over runs
    (``scipy.stats.bootstrap`` through ``compare.bootstrap_ci``, resampling runs, i.e. seeds; no
    interval, NaN, below ``compare.MIN_BOOT_SEEDS`` runs) and the fastest and slowest run
    (``min_s``, ``max_s``). Non-reaching runs stay in as ``inf``: if more than half of a resample
    never reaches the target its median is ``inf`` -- the interval then says "not reached" instead
    of pretending the slow runs did not happen. Times are never negative, so neither is a bound.
    """
    d = _cumulative(df)
    rows = []
    for keys, g in d.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for target in targets:
            secs, eps = [], []
            for _, run in g.groupby("key", sort=False):
                hit = run[run[metric] >= target]
                secs.append(float(hit["cum_seconds"].iloc[0]) if len(hit) else np.inf)
                eps.append(float(hit["epoch"].iloc[0]) if len(hit) else np.inf)
            secs, eps = np.array(secs), np.array(eps)
            med, lo, hi = _median_time_ci(secs, n_boot, level, seed)
            rows.append((*keys, target, secs.size, int(np.isfinite(secs).sum()), med, lo, hi,
                         float(np.median(eps)), float(secs.min()), float(secs.max())))
    return pd.DataFrame(rows, columns=[*by, "target", "n_runs", "n_reached", "median_s",
                                       "ci_lo_s", "ci_hi_s", "median_epochs", "min_s", "max_s"])


def accuracy_vs_time(df: pd.DataFrame, metric: str = "test_acc", by=("rule",)) -> pd.DataFrame:
    """Per group and epoch: mean cumulative training seconds and mean ``metric`` with 95% t CI
    over runs (seeds) inside the metric's range (:func:`range_ci`: an accuracy band stays in
    [0, 1], a loss band above 0). Columns: group keys, epoch, n, seconds, mean, ci_lo, ci_hi."""
    d = _cumulative(df)
    rows = []
    for keys, g in d.groupby([*by, "epoch"], sort=True):
        m, lo, hi = range_ci(g[metric], metric)
        rows.append((*keys, len(g), float(g["cum_seconds"].mean()), m, lo, hi))
    return pd.DataFrame(rows, columns=[*by, "epoch", "n", "seconds", "mean", "ci_lo", "ci_hi"])


def clean_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Epoch rows whose timing is a full training epoch: drops the (partial) epoch in which a
    run diverged. Use for seconds-per-epoch; keep every row for accuracies."""
    bad = df["diverged"].astype(bool) & (df["epoch"] == df["diverged_epoch"])
    return df[~bad.fillna(False).astype(bool)]


def _final_outcomes(final: pd.DataFrame, metric: str) -> list[str]:
    """The outcome word (``outcomes.classify``) of each run's last row; a frame without a training
    loss (timing records) is judged on divergence and accuracy only."""
    div = final["diverged"].fillna(False).astype(bool) if "diverged" in final else pd.Series(False, index=final.index)
    loss = final["train_loss"] if "train_loss" in final else pd.Series(0.0, index=final.index)
    return [classify(bool(d), float(lo), float(a)) for d, lo, a in zip(div, loss, final[metric])]


def final_accuracy(df: pd.DataFrame, by=("rule",), metric: str = "test_acc") -> pd.DataFrame:
    """Per group: n runs, what became of them (``outcomes.classify``: ``n_trained`` and the counts
    ``n_diverged``, ``n_blew_up``, ``n_failed`` of runs that diverged, blew up or failed to learn)
    and the mean final ``metric`` over the runs that trained with its 95% t CI in [0, 1]. A run
    that did not train is an outcome, never averaged in (no trained run: NaN accuracy)."""
    fin = last_epoch(df)
    fin["_outcome"] = _final_outcomes(fin, metric)
    rows = []
    for keys, g in fin.groupby(list(by), sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = g[g["_outcome"] == TRAINED]
        m, lo, hi = range_ci(ok[metric], metric)
        n_out = [int((g["_outcome"] == o).sum()) for o in OUTCOMES if o != TRAINED]
        rows.append((*keys, len(g), len(ok), *n_out, m, lo, hi))
    return pd.DataFrame(rows, columns=[*by, "n_runs", "n_trained", "n_diverged", "n_blew_up", "n_failed",
                                       "acc", "acc_lo", "acc_hi"])


def accuracy_at_time(curves: pd.DataFrame, seconds: float, by: str = "rule") -> pd.Series:
    """Mean accuracy of each group's curve (from :func:`accuracy_vs_time`) at ``seconds`` of
    training, linearly interpolated between epochs; NaN before the first epoch ends."""
    out = {}
    for g, c in curves.groupby(by, sort=False):
        c = c.sort_values("seconds")
        out[g] = (float(np.interp(seconds, c["seconds"], c["mean"]))
                  if seconds >= c["seconds"].iloc[0] else np.nan)
    return pd.Series(out, name=f"acc_at_{seconds:.3g}s")


PAUSE_FACTOR = 3.0      # an epoch over 3x its run's median ...
PAUSE_EXCESS_S = 20.0   # ... and over 20 s more than it was paused (SIGSTOP while speed was measured)


def pause_corrected(df: pd.DataFrame, col: str = "train_seconds") -> tuple[pd.Series, pd.Series]:
    """Per-epoch wall seconds (``col`` of stored runs' epoch rows) with the epochs of a paused sweep
    counted at their run's median epoch, and a mask of those epochs.

    A sweep is paused with SIGSTOP while a benchmark needs a quiet machine; the epoch in flight then
    records the pause as wall time (measured here: 0.1-1.3 h in one epoch of a 15-s-epoch run). An
    epoch is taken as paused when it took more than :data:`PAUSE_FACTOR` times its run's median epoch
    *and* more than :data:`PAUSE_EXCESS_S` seconds more: a first epoch that compiles the step costs
    a few seconds more, not minutes, and stays as measured. Runs of fewer than 3 epochs have no
    median to trust and stay as measured."""
    g = df.groupby("key")[col]
    med = g.transform("median")
    paused = (g.transform("size") >= 3) & (df[col] > PAUSE_FACTOR * med) & (df[col] - med > PAUSE_EXCESS_S)
    return df[col].where(~paused, med), paused


def run_times(df: pd.DataFrame, by=("rule", "lr")) -> pd.DataFrame:
    """One row per run: group keys, seed, final test accuracy, total training seconds,
    seconds per (full) epoch and the optimizer-step share of training time."""
    one_timing_mode(df)
    d = df.sort_values("epoch")
    clean = clean_epochs(d)
    agg = d.groupby("key").agg(**{c: (c, "first") for c in [*by, "seed"]},
                               test_acc=("test_acc", "last"), total_s=("train_seconds", "sum"),
                               step_total_s=("step_seconds", "sum"))
    per = clean.groupby("key")["train_seconds"].mean().rename("sec_per_epoch")
    out = agg.join(per).reset_index()
    out["step_share"] = out["step_total_s"] / out["total_s"]
    return out


def gain_family(lrs, base: str = "sgd", other: str = "adam", *, name: str = "seed 004: Adam vs SGD"
                ) -> compare.Family:
    """The accuracy question of seed 004's table as a comparison family: ``other`` against ``base``
    at each lr (default hyper-parameters otherwise), one Holm correction over the lrs."""
    return compare.Family(name, tuple(compare.Pair(compare.Arm(other, lr), compare.Arm(base, lr)) for lr in lrs))


def gain_vs_cost(df: pd.DataFrame, base: str = "sgd", other: str = "adam",
                 by: str = "lr") -> pd.DataFrame:
    """``other`` against ``base`` per lr, paired over seeds: accuracy gained and time paid.

    Accuracy (final test, percentage points) is the verdict of :func:`gain_family` by
    ``compare.compare`` (paired t with Holm over the lrs, TOST within ``compare.MARGIN_PP``, outcome
    words for runs that did not train): ``acc_gain_pp`` with its interval ``acc_gain_lo/hi`` at
    ``acc_ci_level`` (Holm-adjusted), ``acc_gain_p`` (Holm-adjusted p), ``acc_mde_pp`` and
    ``acc_verdict``. Time: the ratio of seconds per epoch and of total training time, mean over
    seeds with a 95% t CI clipped at 0, and the extra seconds in total."""
    if by != "lr":
        raise ValueError(f"gain_vs_cost compares per lr, got by={by!r}")
    rt = run_times(df, by=("rule", by))
    lrs = list(dict.fromkeys(rt[by]))
    acc = compare.compare(run_outcomes(df), gain_family(lrs, base, other)).set_index("lr_a")
    rows = []
    for v, g in rt.groupby(by, sort=False):
        a = g[g.rule == other].set_index("seed")
        b = g[g.rule == base].set_index("seed")
        seeds = a.index.intersection(b.index)
        a, b = a.loc[seeds], b.loc[seeds]
        c = acc.loc[v]
        r_ep = range_ci((a["sec_per_epoch"] / b["sec_per_epoch"]).to_numpy(), "ratio")
        r_tot = range_ci((a["total_s"] / b["total_s"]).to_numpy(), "ratio")
        rows.append({by: v, "n_seeds": len(seeds),
                     "acc_gain_pp": c["diff_pp"], "acc_gain_lo": c["ci_lo_pp"], "acc_gain_hi": c["ci_hi_pp"],
                     "acc_ci_level": c["ci_level"], "acc_gain_p": c["p_holm"], "acc_mde_pp": c["mde_pp"],
                     "acc_verdict": c["verdict"],
                     "epoch_time_ratio": r_ep[0], "epoch_ratio_lo": r_ep[1], "epoch_ratio_hi": r_ep[2],
                     "total_time_ratio": r_tot[0], "total_ratio_lo": r_tot[1], "total_ratio_hi": r_tot[2],
                     "extra_seconds": float((a["total_s"] - b["total_s"]).mean())})
    return pd.DataFrame(rows)
