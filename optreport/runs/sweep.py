"""Grids of training runs on the Optuna engine: resumable, shared by any number of workers.

    from optreport.runs.sweep import grid, run_grid
    configs = grid(["momentum", "gravity"], lrs=[0.01, 0.1], seeds=range(5), epochs=10)
    df = run_grid(configs)     # trains what is missing, then returns tidy per-epoch rows

A run is keyed by everything that changes its numbers (optreport.runs.keys). Finished runs are
files under a runs folder (results/runs/ for the report; optreport.runs.results reads them);
the queue of runs to do is an Optuna storage (optreport.runs.engine; a SQLite file by default,
PostgreSQL for many machines). Every setting is validated before anything is enqueued.

Command line (``python -m optreport.runs --help``):
    python -m optreport.runs run    --rules sgd,adam --lrs 0.01,0.1 --seeds 0,1,2 --epochs 5
    python -m optreport.runs worker --rules sgd,adam --lrs 0.01,0.1 --seeds 0,1,2 --epochs 5 \\
        --store postgresql://user:pass@dbhost/sweeps      # the same command on every machine
    python -m optreport.runs status [--store URL]
    python -m optreport.runs export --store URL             # finished runs -> results/runs/

Parallelism: ``run_grid`` starts one worker process per core (``workers=None``), each with the
run's thread count (1 by default: measured here, two 1-thread processes train 1.35-1.6x more
steps per second than one 2-thread process). A worker trains up to ``STACK`` waiting runs that
differ only in their seed together, stacked (engine.train.train_stacked: each record bit for bit
the one of the run alone; ``stack=1``: one at a time); each run keeps its own trial, heartbeat,
record and checkpoint, and a fault fails (and retries) every run of the stack.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from optreport.engine.data import DEEPOBS_VAL_SIZE, CorruptDataError, DataNotFoundError, load_fashion_mnist
from optreport.engine.train import stackable, train, train_stacked
from optreport.runs import engine, results
from optreport.runs.keys import RunConfig, validate
from optreport.runs.results import load_results, load_step_losses  # noqa: F401 -- re-exported for notebooks

__all__ = ["grid", "run_grid", "run_worker", "validate_all", "load_data", "data_fits", "DEFAULT_STORAGE", "main",
           "WorkerSummary", "RunConfig", "load_results", "load_step_losses", "STACK", "siblings", "group_size",
           "stack_sizes", "can_stack"]

REPO = Path(__file__).resolve().parents[2]
#: the queue of runs to do (not committed: finished runs live in results/runs/)
DEFAULT_STORAGE = f"sqlite:///{REPO / 'build' / 'runs.optuna.sqlite3'}"
#: where a worker keeps the checkpoint of the run it trains (engine.train's ``checkpoint``): a run
#: stopped with its sweep resumes from its last checkpoint, not from epoch 1
CHECKPOINT_DIR = REPO / "build" / "checkpoints"
MANIFEST_ENV = "OPTREPORT_MANIFEST"   # a file run_grid appends the keys it is asked for to (set by the report job)
#: at most this many runs that differ only in their seed are trained together, stacked: 5, so that
#: the notebooks' 5 (and 10) seeds of a configuration train as whole stacks of 5, not as 3 + 2
#: (benchmarks/bench_throughput.py --stack K measures the ratio to the GEMM bound per K)
STACK = 5
RUN_LOG_ENV = "SWEEP_RUN_LOG"   # if set: a file to which workers append "start KEY" / "done KEY"


# ---------------------------------------------------------------------------- configurations

def grid(rules, lrs, seeds, *, model="mlp", epochs, hparams=None, **fixed) -> list[RunConfig]:
    """The cross product models x rules x lrs x seeds x extra hyper-parameters.

    rules:   names of update rules.
    lrs:     learning rates, used for every rule (a dict {rule: [lrs]} gives per-rule lists).
    seeds:   seeds.
    model:   a model name or a list of names.
    hparams: extra hyper-parameters per rule, {rule: {name: value or [values]}}; a list is
             swept, e.g. {"gravity": {"accumulate": [True, False]}}; to pass one list-valued
             value (betas), wrap it: {"adam": {"betas": [[0.9, 0.99]]}}.
    fixed:   other RunConfig fields (batch_size, val_size, split_seed, max_steps, n_train,
             schedule, threads, compile_step, flush_denormal).
    """
    models = [model] if isinstance(model, str) else list(model)
    out = []
    for m, rule in itertools.product(models, rules):
        extra = dict((hparams or {}).get(rule, {}))
        names = sorted(extra)
        values = [v if isinstance(v, list) else [v] for v in (extra[n] for n in names)]
        rule_lrs = lrs[rule] if isinstance(lrs, dict) else lrs
        for lr, combo, seed in itertools.product(rule_lrs, itertools.product(*values), seeds):
            hp = {"lr": lr, **dict(zip(names, combo, strict=True))}
            out.append(RunConfig(model=m, rule=rule, hparams=hp, seed=int(seed), epochs=epochs, **fixed))
    return out


def validate_all(configs) -> list[RunConfig]:
    """Validate every config (ValueError naming the parameter and the run); drop duplicates."""
    configs = list(configs)
    for cfg in configs:
        try:
            validate(cfg)
        except ValueError as e:
            raise ValueError(f"{e} [run: model={cfg.model}, rule={cfg.rule}, hparams={dict(cfg.hparams)}, "
                             f"seed={cfg.seed}]") from None
    return list({c.key: c for c in configs}.values())


# ---------------------------------------------------------------------------- one worker

def _log(event: str, key: str) -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if path:
        with open(path, "a") as f:     # one short line per write: atomic with O_APPEND
            f.write(f"{event} {key} {os.getpid()}\n")


def _final_value(record: dict) -> float:
    for ep in reversed(record.get("epochs", [])):
        v = ep.get("val_acc")
        if v is not None and math.isfinite(v):
            return float(v)
    return 0.0


class WorkerSummary(dict):
    """Counts of what one worker did: ran, failed (with retry queued or final), yielded, reaped."""

    def line(self) -> str:
        return (f"ran {self.get('ran', 0)}, failed {self.get('failed', 0)} "
                f"({self.get('retried', 0)} re-enqueued), duplicates skipped {self.get('yielded', 0)}, "
                f"dead workers' runs retried {self.get('reaped', 0)}")


def run_worker(configs, storage=DEFAULT_STORAGE, *, runs_dir=results.RUNS_DIR, data=None, data_dir=None,
               wait=True, poll=2.0, bar=None, force=False, enqueue=True, max_retry=engine.MAX_RETRY,
               heartbeat_interval=engine.HEARTBEAT_INTERVAL, grace_period=engine.GRACE_PERIOD,
               experiment=None, parent=None, checkpoint_dir=CHECKPOINT_DIR, stack=STACK) -> WorkerSummary:
    """Run the configs' trials until every one is finished (complete, or failed with no retry
    left); returns what this worker did. ``enqueue``: first enqueue the configs that are neither
    stored in ``runs_dir`` (None: no local folder) nor queued. ``wait``: while only other
    workers' runs are left, keep watching them (a dead worker's run is retried here). ``parent``: the
    pid of the process that started this worker; when it is gone, take no new run (run_grid's
    workers end with the sweep that started them). ``checkpoint_dir``: a run saves its checkpoints
    there (``<key>.pt``, about once a minute of training) and resumes from them after a stop; the
    file is deleted once the run is stored (None: no checkpoints). ``stack``: train up to this many
    waiting runs that differ only in their seed together (engine.train.train_stacked: each record
    the one the run gives alone, bit for bit; Linear/ReLU models with one torch thread), each with
    its own heartbeat, record and checkpoint; 1: one run at a time."""
    if not (isinstance(stack, int) and stack >= 1):
        raise ValueError(f"Invalid stack: {stack!r} (at least 1 run per stack)")
    configs = validate_all(configs)
    by_key = {c.key: c for c in configs}
    q = engine.Queue(storage, max_retry=max_retry, heartbeat_interval=heartbeat_interval,
                     grace_period=grace_period)
    local = results.stored_keys(runs_dir) if runs_dir is not None else set()
    if force and runs_dir is not None:
        local = set()
    if enqueue:
        q.enqueue(configs, skip=local, force=force, experiment=experiment)
    summary = WorkerSummary(ran=0, failed=0, retried=0, yielded=0, reaped=0, failed_keys=[])
    todo = set(by_key) - local
    while True:
        if parent is not None and os.getppid() != parent:
            print("[runs] the sweep that started this worker is gone; stopping", file=sys.stderr, flush=True)
            break
        summary["reaped"] += q.reap()
        trial = q.pop(todo)
        if trial is None:
            if not _pending(q, todo):
                break
            if not wait:
                break
            time.sleep(poll)
            continue
        cfg = by_key[trial.user_attrs["key"]]
        if not _to_train(q, trial, cfg, runs_dir=runs_dir, force=force, summary=summary):
            continue
        group = [(trial, cfg)]
        if stack > 1 and can_stack(cfg):
            group += _take_siblings(q, cfg, todo, by_key, runs_dir=runs_dir, force=force, stack=stack,
                                    checkpoint_dir=checkpoint_dir, summary=summary)
        for _, c in group:
            _log("start", c.key)
        ckpts = [_checkpoint_path(checkpoint_dir, c) for _, c in group]
        try:
            with contextlib.ExitStack() as beats:
                for t, _ in group:
                    beats.enter_context(q.heartbeat(t._trial_id))
                if not data_fits(data, cfg):
                    data = load_data(cfg, data_dir)
                if len(group) == 1:
                    recs = [train(data=data, checkpoint=ckpts[0], **cfg.train_kwargs())]
                else:
                    kwargs = cfg.train_kwargs()
                    del kwargs["seed"]
                    recs = train_stacked(data=data, seeds=[c.seed for _, c in group], checkpoints=ckpts, **kwargs)
                for (t, c), rec, ckpt in zip(group, recs, ckpts):
                    rec["config"].update(key=c.key, versions=c.keyed()["versions"], val_size=c.val_size,
                                         split_seed=c.split_seed, worker=t.user_attrs.get("worker", {}).get("host"))
                    if runs_dir is not None:
                        results.write_run(runs_dir, c.key, c.keyed(), rec)
                    q.finish(t, rec, _final_value(rec))
                    if ckpt is not None:
                        ckpt.unlink(missing_ok=True)
                    summary["ran"] += 1
                    _log("done", c.key)
                    if bar is not None:
                        bar.update(1)
        except (KeyboardInterrupt, SystemExit):
            for t, _ in group:
                if not _finished(q, t):
                    q.fail(t, "interrupted")
            raise
        except Exception:
            err = traceback.format_exc()
            last = err.strip().splitlines()[-1]
            for t, c in group:
                if _finished(q, t):
                    continue
                summary["failed"] += 1
                summary["failed_keys"].append(c.key)
                retried = q.fail(t, err)
                summary["retried"] += int(retried)
                print(f"[runs] run {c.key[:12]} ({c.rule}, {dict(c.hparams)}, seed {c.seed}) failed: {last}"
                      f"{' (re-enqueued)' if retried else ' (no retries left)'}", file=sys.stderr, flush=True)
            continue
    return summary


def _complete_stored(q: engine.Queue, trial, runs_dir, cfg: RunConfig) -> None:
    run = results.read_run(results.run_path(runs_dir, cfg.model, cfg.rule, cfg.key))
    q.complete_from(trial, _final_value(run["record"]))


def _finished(q: engine.Queue, trial) -> bool:
    """Whether ``trial`` is complete already (its record stored before the group failed)."""
    try:
        return q.storage.get_trial(trial._trial_id).state == engine.TrialState.COMPLETE
    except Exception:          # noqa: BLE001 -- storage outage: treat as not finished (the retry finds the record)
        return False


def siblings(a: RunConfig, b: RunConfig) -> bool:
    """Whether runs ``a`` and ``b`` differ in their seed only (they can be trained stacked)."""
    da, db = a.as_dict(), b.as_dict()
    da.pop("seed")
    db.pop("seed")
    return da == db


def _checkpoint_path(checkpoint_dir, cfg: RunConfig) -> Path | None:
    """Where run ``cfg`` keeps its checkpoint (None: no checkpoints)."""
    return None if checkpoint_dir is None else Path(checkpoint_dir) / f"{cfg.key}.pt"


def _checkpoint_step(path) -> int | None:
    """The step a run's checkpoint file was saved at (0: no file; None: unreadable)."""
    if path is None or not Path(path).exists():
        return 0
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except Exception:          # noqa: BLE001 -- the trainer ignores such a file with a warning
        return None


def group_size(n: int, stack: int) -> int:
    """Models per stack for ``n`` waiting seeds of one configuration and at most ``stack`` per stack:
    the stacks as even as possible (7 seeds, at most 5: stacks of 4 and 3, not 5 and 2)."""
    return math.ceil(n / math.ceil(n / stack)) if n > 0 else 0


def stack_sizes(n: int, stack: int = STACK) -> list[int]:
    """The stacks the sweep trains ``n`` waiting seeds of one configuration in (each worker's leader
    takes ``group_size`` of the seeds still waiting): 5 -> [5], 7 -> [4, 3], 10 -> [5, 5]."""
    out = []
    while n > 0:
        out.append(group_size(n, stack))
        n -= out[-1]
    return out


def can_stack(cfg: RunConfig) -> bool:
    """Whether the sweep trains ``cfg`` stacked with its siblings (:func:`siblings`) when it can."""
    return stackable(cfg.model) and cfg.threads == 1


def _to_train(q: engine.Queue, trial, cfg: RunConfig, *, runs_dir, force, summary) -> bool:
    """Whether the popped ``trial`` of ``cfg`` is this worker's to train: not when another worker
    trains the same key (it yields to that trial) or when the run is stored already (a retry of a
    run that finished while its trial was failed, e.g. an outage: it completes from the file)."""
    other = q.duplicate_of(trial)
    if other is not None:
        q.yield_to(trial, other)
        summary["yielded"] += 1
        return False
    if runs_dir is not None and not force and cfg.key in results.stored_keys(runs_dir):
        _complete_stored(q, trial, runs_dir, cfg)
        return False
    return True


def _take_siblings(q: engine.Queue, cfg: RunConfig, todo, by_key, *, runs_dir, force, stack, checkpoint_dir,
                   summary) -> list:
    """Take waiting trials of runs that differ from ``cfg`` in their seed only, whose checkpoint is at
    the same step as ``cfg``'s (to be trained stacked with it): [(trial, config), ...], at most
    ``group_size(...) - 1`` of them."""
    stored = results.stored_keys(runs_dir) if runs_dir is not None and not force else set()
    cands = sorted((c for k, c in by_key.items() if k in todo and k != cfg.key and k not in stored
                    and siblings(c, cfg)), key=lambda c: c.seed)
    if not cands:
        return []
    trials = q.by_key([c.key for c in cands])
    waiting = [c for c in cands
               if any(t.state == engine.TrialState.WAITING for t in trials.get(c.key, []))]

    mine = _checkpoint_step(_checkpoint_path(checkpoint_dir, cfg))
    want = group_size(len(waiting) + 1, stack) - 1
    out = []
    for c in waiting:
        if len(out) >= want:
            break
        if mine is None or _checkpoint_step(_checkpoint_path(checkpoint_dir, c)) != mine:
            continue
        t = q.pop([c.key])
        if t is None:
            continue
        if _to_train(q, t, c, runs_dir=runs_dir, force=force, summary=summary):
            out.append((t, c))
    return out


def load_data(cfg: RunConfig, data_dir=None):
    """The Fashion-MNIST splits run ``cfg`` trains on (its data protocol, validation split and,
    for the deepobs protocol, its batch size)."""
    if cfg.data_protocol == "deepobs":
        return load_fashion_mnist(data_dir, val_size=cfg.val_size, protocol="deepobs", batch_size=cfg.batch_size)
    return load_fashion_mnist(data_dir, val_size=cfg.val_size, split_seed=cfg.split_seed)


def data_fits(data, cfg: RunConfig) -> bool:
    """Whether in-memory ``data`` can serve run ``cfg`` (same protocol; report: a validation split of
    ``cfg.val_size``; deepobs: cut to whole batches of ``cfg.batch_size``)."""
    if data is None or getattr(data, "protocol", "report") != cfg.data_protocol:
        return False
    if cfg.data_protocol == "deepobs":
        return data.batch_size == cfg.batch_size
    return len(data.val_y) == cfg.val_size


def _pending(q: engine.Queue, keys) -> bool:
    """Whether any of ``keys`` still has a waiting or running trial."""
    for trials in q.by_key(keys).values():
        if any(t.state in (engine.TrialState.WAITING, engine.TrialState.RUNNING) for t in trials):
            return True
    return False


def final_failures(storage, configs, runs_dir=results.RUNS_DIR) -> list[str]:
    """Keys among ``configs`` that are neither stored nor complete and have no trial left to run."""
    q = engine.Queue(storage)
    local = results.stored_keys(runs_dir) if runs_dir is not None else set()
    out = []
    trials = q.by_key([c.key for c in configs])
    for c in configs:
        states = {t.state for t in trials.get(c.key, [])}
        if c.key in local or engine.TrialState.COMPLETE in states:
            continue
        if not states & {engine.TrialState.WAITING, engine.TrialState.RUNNING}:
            out.append(c.key)
    return out


# ---------------------------------------------------------------------------- a local grid

def _worker_main(config_dicts, storage, runs_dir, data_dir, force, parent, stack=STACK):
    configs = [RunConfig.from_dict(d) for d in config_dicts]
    run_worker(configs, storage, runs_dir=runs_dir, data_dir=data_dir, poll=1.0, enqueue=False, force=force,
               parent=parent, stack=stack)


def run_grid(configs, *, storage=DEFAULT_STORAGE, runs_dir=results.RUNS_DIR, workers=None, force=False,
             progress=True, data=None, data_dir=None, experiment=None, stack=STACK) -> pd.DataFrame:
    """Train the configs not yet stored in ``runs_dir``, then return ``load_results(configs)``.

    storage:  Optuna storage URL of the queue (default: a SQLite file under build/).
    runs_dir: folder of finished runs (default results/runs).
    workers:  worker processes (multiprocessing 'spawn'); 1 trains in this process. None: one per
              core (at most one per missing run).
    force:    retrain every config, even stored ones.
    data:     an in-memory engine.data.FashionMNIST to train on (workers=1 only).
    data_dir: folder with the IDX files (else FMNIST_DIR / Debian / torchvision).
    stack:    runs differing only in their seed trained together, at most this many (see run_worker).
    Raises RuntimeError naming the runs that failed after their retries.
    """
    if not (isinstance(stack, int) and stack >= 1):
        raise ValueError(f"Invalid stack: {stack!r} (at least 1 run per stack)")
    configs = validate_all(configs)
    manifest = os.environ.get(MANIFEST_ENV)
    if manifest:          # the report's job records which runs each notebook reads (README's cost table)
        with open(manifest, "a") as fh:
            fh.writelines(f"{c.key}\n" for c in configs)
    local = set() if force else results.stored_keys(runs_dir)
    todo = [c for c in configs if c.key not in local]
    if todo:
        q = engine.Queue(storage)
        if not force:      # finished in the storage (e.g. by a remote worker) but not yet in runs_dir
            engine.export(q, runs_dir, [c.key for c in todo])
            local = results.stored_keys(runs_dir)
            todo = [c for c in todo if c.key not in local]
        q.enqueue(todo, force=force, experiment=experiment)
    if todo:
        if workers is None:
            workers = 1 if data is not None else max(1, min(os.cpu_count() or 1, len(todo)))
        bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="runs", unit="run") \
            if progress else None
        try:
            if workers <= 1:
                run_worker(todo, storage, runs_dir=runs_dir, data=data, data_dir=data_dir, bar=bar, poll=1.0,
                           enqueue=False, force=force, stack=stack)
            else:
                ctx = multiprocessing.get_context("spawn")
                procs = [ctx.Process(target=_worker_main,
                                     args=([c.as_dict() for c in todo], storage, str(runs_dir), data_dir, force,
                                           os.getpid(), stack))
                         for _ in range(workers)]
                for p in procs:
                    p.start()
                keys = {c.key for c in todo}
                try:
                    while any(p.is_alive() for p in procs):
                        time.sleep(1.0)
                        if bar is not None:
                            bar.n = len(configs) - len(todo) + len(keys & results.stored_keys(runs_dir))
                            bar.refresh()
                finally:
                    for p in procs:
                        if p.is_alive():
                            p.terminate()
                        p.join()
                # a worker that crashed leaves its runs to the heartbeat; finish them here
                run_worker(todo, storage, runs_dir=runs_dir, data_dir=data_dir, poll=1.0, enqueue=False, force=force,
                           stack=stack)
        finally:
            if bar is not None:
                bar.close()
        failed = [c for c in todo if c.key not in results.stored_keys(runs_dir)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(configs)} runs failed after retries: " + "; ".join(
                f"{c.rule} {dict(c.hparams)} seed {c.seed}" for c in failed[:5]))
    return results.load_results(configs, runs_dir)


# ---------------------------------------------------------------------------- command line

def _split_top(s: str) -> list[str]:
    """Split at commas outside brackets: '[0.9,0.999],[0.8,0.99]' -> two items."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out if x.strip()]


def _value(s: str):
    """CLI value: JSON if it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(s, s)


def _csv(kind):
    def parse(s):
        try:
            return [kind(x) for x in _split_top(s)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {s!r}") from None
    return parse


def _grid_args(p):
    p.add_argument("--rules", type=_csv(str), required=True, help="comma-separated, e.g. sgd,adam")
    p.add_argument("--lrs", type=_csv(float), required=True, help="comma-separated learning rates")
    p.add_argument("--seeds", type=_csv(int), default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--model", type=_csv(str), default=["mlp"], help="mlp, cnn, small_mlp (comma-separated)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--val-size", type=int, default=None,
                   help="validation images (default 5000; 10000 with --data-protocol deepobs)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None, help="train on a nested subset of this size")
    p.add_argument("--schedule", default="constant", help="constant or cosine")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (part of the run's key)")
    p.add_argument("--data-protocol", default="report",
                   help="report (default) or deepobs (DeepOBS's fmnist split and scaling; needs --val-size 10000)")
    p.add_argument("--hparam", action="append", default=[], metavar="[RULE:]K=V[,V...]",
                   help="extra hyper-parameter for every rule, or RULE:K=V for one; values separated by "
                        "commas outside brackets are swept: betas=[0.9,0.999] is one value (repeatable)")
    p.add_argument("--store", default=DEFAULT_STORAGE,
                   help="Optuna storage URL of the queue: sqlite:///path or postgresql://user:pass@host/db "
                        "(default: build/runs.optuna.sqlite3)")
    p.add_argument("--runs-dir", default=str(results.RUNS_DIR),
                   help="folder of finished runs (default results/runs); 'none' on a machine without it")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--stack", type=int, default=STACK,
                   help=f"train up to this many runs that differ only in their seed together, stacked (same "
                        f"numbers, faster; default {STACK}; 1: one run at a time)")


def _val_size(a) -> int:
    if a.val_size is not None:
        return a.val_size
    return DEEPOBS_VAL_SIZE if getattr(a, "data_protocol", "report") == "deepobs" else 5000


def _configs_from_args(a) -> list[RunConfig]:
    extra = {r: {} for r in a.rules}
    for item in a.hparam:
        target, _, kv = item.partition(":") if ":" in item.split("=", 1)[0] else ("", "", item)
        k, eq, v = kv.partition("=")
        if not eq or not k:
            raise ValueError(f"Invalid --hparam {item!r} (expected [RULE:]NAME=VALUE[,VALUE...])")
        if target and target not in a.rules:
            raise ValueError(f"Invalid --hparam {item!r}: rule {target!r} is not in --rules")
        vals = [_value(x) for x in _split_top(v)]
        for r in ([target] if target else a.rules):
            extra.setdefault(r, {})[k] = vals        # a list: the values swept (one list value stays one)
    return grid(a.rules, a.lrs, a.seeds, model=a.model, epochs=a.epochs, hparams=extra,
                batch_size=a.batch_size, val_size=_val_size(a), split_seed=a.split_seed,
                max_steps=a.max_steps, n_train=a.n_train, schedule=a.schedule, threads=a.threads,
                data_protocol=getattr(a, "data_protocol", "report"))


def _status(a) -> int:
    try:
        q = engine.Queue(a.store, create=False)
    except engine.StorageMissing as e:
        print(f"status: {e}", file=sys.stderr)
        return 2
    table: dict = {}
    for t in q.trials():
        k = (t.user_attrs.get("model", "?"), t.user_attrs.get("rule", "?"))
        name = t.state.name.lower()
        table.setdefault(k, {}).setdefault(name, 0)
        table[k][name] += 1
    stored = results.stored_keys(a.runs_dir) if a.runs_dir.lower() != "none" else set()
    cols = ["waiting", "running", "complete", "fail", "pruned"]
    print(f"storage {q.url.split('@')[-1]}: {sum(sum(v.values()) for v in table.values())} trials; "
          f"{len(stored)} runs stored in {a.runs_dir}")
    print(f"{'model':10s} {'rule':10s} " + " ".join(f"{s:>8s}" for s in cols))
    for (model, rule), c in sorted(table.items()):
        print(f"{model:10s} {rule:10s} " + " ".join(f"{c.get(s, 0):8d}" for s in cols))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optreport.runs", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="train a grid here with one worker per core; print a summary")
    _grid_args(p_run)
    p_run.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p_run.add_argument("--force", action="store_true", help="retrain stored runs too")
    p_work = sub.add_parser("worker", help="one worker of a grid shared through --store "
                                           "(start the same command on every machine)")
    _grid_args(p_work)
    p_work.add_argument("--no-wait", action="store_true",
                        help="exit when nothing is left to take instead of watching other workers' runs")
    p_work.add_argument("--max-retry", type=int, default=engine.MAX_RETRY,
                        help=f"times a failed run is re-enqueued (default {engine.MAX_RETRY})")
    p_work.add_argument("--poll", type=float, default=2.0, help="seconds between looks while others train")
    p_work.add_argument("--heartbeat-interval", type=int, default=engine.HEARTBEAT_INTERVAL,
                        help=f"seconds between heartbeats of a running trial (default {engine.HEARTBEAT_INTERVAL})")
    p_work.add_argument("--grace-period", type=int, default=engine.GRACE_PERIOD,
                        help="seconds without a heartbeat after which a run is retried elsewhere "
                             f"(default {engine.GRACE_PERIOD})")
    p_stat = sub.add_parser("status", help="trials per rule and state, and the runs stored")
    p_stat.add_argument("--store", default=DEFAULT_STORAGE)
    p_stat.add_argument("--runs-dir", default=str(results.RUNS_DIR))
    p_exp = sub.add_parser("export", help="write the storage's finished runs missing from --runs-dir")
    p_exp.add_argument("--store", default=DEFAULT_STORAGE)
    p_exp.add_argument("--runs-dir", default=str(results.RUNS_DIR))
    a = ap.parse_args(argv)

    if a.cmd == "status":
        return _status(a)
    if a.cmd == "export":
        try:
            q = engine.Queue(a.store, create=False)
        except engine.StorageMissing as e:
            print(f"export: {e}", file=sys.stderr)
            return 2
        n = engine.export(q, a.runs_dir)
        print(f"export: {n} run(s) written to {a.runs_dir}")
        return 0
    try:
        if a.stack < 1:
            raise ValueError(f"Invalid --stack: {a.stack} (at least 1 run per stack)")
        configs = validate_all(_configs_from_args(a))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs_dir = None if a.runs_dir.lower() == "none" else a.runs_dir
    try:
        load_data(configs[0], a.data_dir)
        if a.cmd == "worker":
            s = run_worker(configs, a.store, runs_dir=runs_dir, data_dir=a.data_dir, wait=not a.no_wait,
                           poll=a.poll, max_retry=a.max_retry, heartbeat_interval=a.heartbeat_interval,
                           grace_period=a.grace_period, stack=a.stack)
            lost = final_failures(a.store, configs, runs_dir)
            print(f"worker {engine.worker_identity()['host']}:{os.getpid()}: {s.line()}; "
                  f"grid of {len(configs)}: {len(configs) - len(lost)} done or in progress, {len(lost)} failed")
            return 1 if s["failed"] or lost else 0
        df = run_grid(configs, storage=a.store, runs_dir=runs_dir or results.RUNS_DIR, workers=a.workers,
                      force=a.force, data_dir=a.data_dir, stack=a.stack)
    except (DataNotFoundError, CorruptDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(df):
        last = results.last_epoch(df)
        print(last.groupby(["model", "rule", "lr"])[["test_acc", "val_acc", "train_seconds"]].mean().to_string())
    print(f"{df['key'].nunique()} of {len(configs)} runs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
