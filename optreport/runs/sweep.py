"""Grids of training runs, resumable, shared through one store (see store.py).

    from optreport.runs.sweep import grid, run_grid, load_results
    configs = grid(["momentum", "gravity", "cosine"], lrs=[0.01, 0.1, 0.2], seeds=range(5), epochs=10)
    df = run_grid(configs)           # runs what is missing, then returns tidy per-epoch rows

Every run is keyed by its full configuration plus a fingerprint of its update rule's source, so
a re-run skips finished runs and editing one rule in optimizers.py re-runs only that rule's runs.
Each finished run is written at once, in one transaction; killing a sweep loses only the runs in
flight, and the next start takes them over (same host: the dead pid is noticed at once; other
hosts: after the lease expires).

Command line:
    python -m optreport.runs run --rules sgd,adam --lrs 0.01,0.1 --seeds 0,1,2 --epochs 5
    python -m optreport.runs worker --rules sgd,adam --lrs 0.01,0.1 --seeds 0,1,2 --epochs 5 \\
        --store postgresql://host/db        # on every machine: they share the work
    python -m optreport.runs status [--store URL]

Default parallelism (``workers=None``): one worker process per core, each with one torch
thread (one in-process worker with all threads when a single run is missing). Measured on the
2-core machine (shared with other jobs, so rough): the MLP trainer loop took 1.5-1.8 ms/step
in one process with 2 threads, and 2.1-2.2 ms/step in each of two concurrent 1-thread
processes, i.e. ~1.35-1.6x more steps per second in total for the two processes; and under
oversubscription 2-thread processes slowed down up to ~10x while 1-thread ones degraded
gracefully. Starting a worker costs a few seconds (import torch, load data), which only
matters for very short runs. Note that ``train_seconds`` of runs made next to a sibling worker
include that contention: measure per-rule cost with benchmarks/ or ``workers=1``.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback

import numpy as np

from optreport.runs.store import DEFAULT_URL, HEARTBEAT_SECONDS, Store, worker_id

__all__ = ["RunConfig", "grid", "run_grid", "run_worker", "load_results", "load_step_losses",
           "rule_fingerprint", "compact_record", "STEP_WINDOW"]

STEP_WINDOW = 10      # per-step losses are stored as means over windows of this many steps
RUN_LOG_ENV = "SWEEP_RUN_LOG"   # if set: a file to which workers append "start KEY" / "done KEY"


# ---------------------------------------------------------------------------- configurations

def _canon(v):
    """Canonical JSON-able form of a hyper-parameter value (1 and 1.0 give the same key)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _canon(x) for k, x in sorted(v.items())}
    raise TypeError(f"hyper-parameter value {v!r} is not JSON-able")


def _code_names(obj) -> set[str]:
    """Global names used by the functions defined in a class (or by a function), recursively."""
    funcs = [v for v in vars(obj).values()] if inspect.isclass(obj) else [obj]
    codes = [getattr(getattr(f, "__func__", f), "__code__", None) for f in funcs]
    names, stack = set(), [c for c in codes if c is not None]
    while stack:
        code = stack.pop()
        names |= set(code.co_names)
        stack += [c for c in code.co_consts if inspect.iscode(c)]
    return names


@functools.lru_cache(maxsize=None)
def rule_fingerprint(rule: str) -> str:
    """Hash of the source of the rule's class, its base classes in optimizers.py, and the
    module-level functions of optimizers.py that they call (transitively).

    Editing a rule, a base class it inherits from, or a helper it calls changes its fingerprint,
    so its runs get new keys and are re-run; other rules keep theirs. For a class taken from
    torch.optim, its torch source is hashed (a torch upgrade re-runs it)."""
    import optimizers
    from optimizers import OPTIMIZERS
    if rule not in OPTIMIZERS:
        raise ValueError(f"Unknown rule: {rule!r} (choose from {', '.join(OPTIMIZERS)})")
    obj = OPTIMIZERS[rule]
    parts = []
    while isinstance(obj, functools.partial):    # allow partial(torch.optim.SGD, momentum=0.9)
        parts.append(repr(sorted(obj.keywords.items())))
        obj = obj.func
    todo = [c for c in inspect.getmro(obj) if c is obj or c.__module__ == optimizers.__name__] \
        if inspect.isclass(obj) else [obj]
    seen = set()
    while todo:
        o = todo.pop(0)
        if id(o) in seen:
            continue
        seen.add(id(o))
        try:
            parts.append(inspect.getsource(o))
        except (OSError, TypeError):
            parts.append(f"{o.__module__}.{o.__qualname__}")
        for name in sorted(_code_names(o)):
            helper = getattr(optimizers, name, None)
            if inspect.isfunction(helper) and helper.__module__ == optimizers.__name__:
                todo.append(helper)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training run. All fields enter the key, plus the rule's code fingerprint."""
    model: str = "mlp"               # name in models.MODELS
    rule: str                        # name in optimizers.OPTIMIZERS
    hparams: dict                    # the rule's keyword arguments, including lr
    seed: int = 0                    # model init, batch order
    epochs: int                      # passes over the training split
    batch_size: int = 64             # examples per step
    val_size: int = 5000             # training images held out for validation
    split_seed: int = 0              # seed of the validation split
    max_steps: int | None = None     # cap on optimizer steps (quick runs, tests)

    def __hash__(self):
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hparams"] = _canon(dict(self.hparams))
        return d

    @property
    def lr(self):
        return self.hparams.get("lr")

    @property
    def key(self) -> str:
        d = self.as_dict()
        d["rule_code"] = rule_fingerprint(self.rule)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:32]

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def grid(rules, lrs, seeds, *, model="mlp", epochs, hparams=None, **fixed) -> list[RunConfig]:
    """The cross product models x rules x lrs x seeds x extra hyper-parameters.

    rules:   names of update rules.
    lrs:     learning rates, used for every rule (a dict {rule: [lrs]} gives per-rule lists).
    seeds:   seeds.
    model:   a model name or a list of names.
    hparams: extra hyper-parameters per rule, {rule: {name: value or [values]}}; a list is
             swept, e.g. {"gravity": {"accumulate": [True, False]}, "cosine": {"C": 1.8}}.
    fixed:   other RunConfig fields (batch_size, val_size, split_seed, max_steps).
    """
    models = [model] if isinstance(model, str) else list(model)
    out = []
    for m, rule in itertools.product(models, rules):
        extra = dict((hparams or {}).get(rule, {}))
        names = sorted(extra)
        values = [v if isinstance(v, list) else [v] for v in (extra[n] for n in names)]
        rule_lrs = lrs[rule] if isinstance(lrs, dict) else lrs
        for lr, combo, seed in itertools.product(rule_lrs, itertools.product(*values), seeds):
            hp = {"lr": lr, **dict(zip(names, combo))}
            out.append(RunConfig(model=m, rule=rule, hparams=hp, seed=int(seed), epochs=epochs, **fixed))
    return out


# ---------------------------------------------------------------------------- records

def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, "<f4").tobytes()).decode("ascii")


def _decode(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), "<f4").astype(np.float64)


def compact_record(rec: dict, window: int = STEP_WINDOW) -> dict:
    """The trainer's record with per-step losses replaced by window means, stored compactly.

    ``step_losses`` (one float per step, None for non-finite) becomes ``step_losses_w``:
    {"window": 10, "n_steps": N, "dtype": "float32-le", "b64": ...}, the means of consecutive
    windows of ``window`` steps (the last may be shorter; a window holding a non-finite loss
    is NaN), as base64 of little-endian float32. ~5.3 bytes per window: 100 epochs of the
    default grid (860 steps each) take ~46 KB."""
    rec = dict(rec)
    steps = np.array([np.nan if v is None else v for v in rec.pop("step_losses")], dtype=np.float64)
    n, full = len(steps), len(steps) // window * window
    means = steps[:full].reshape(-1, window).mean(1)           # NaN propagates: a NaN window
    if full < n:
        means = np.append(means, steps[full:].mean())
    rec["step_losses_w"] = {"window": window, "n_steps": n, "dtype": "float32-le", "b64": _encode(means)}
    return rec


# ---------------------------------------------------------------------------- running

def _log(event: str, key: str) -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if path:
        with open(path, "a") as f:     # one short line per write: atomic with O_APPEND
            f.write(f"{event} {key} {os.getpid()}\n")


def _data(data_dir, val_size, split_seed):      # load_fashion_mnist caches in-process
    from optreport.engine.data import load_fashion_mnist
    return load_fashion_mnist(data_dir, val_size=val_size, split_seed=split_seed)


def _run_one(cfg: RunConfig, store: Store, me: str, data=None, threads=None, data_dir=None) -> bool:
    """Claim, train, store one run. True if this worker ran it."""
    from optreport.engine.train import train
    key = cfg.key
    config = {**cfg.as_dict(), "key": key, "rule_code": rule_fingerprint(cfg.rule)}
    if not store.claim(key, config, me, model=cfg.model, rule=cfg.rule):
        return False
    _log("start", key)
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            store.heartbeat(key, me)
    hb = threading.Thread(target=beat, daemon=True)
    hb.start()
    try:
        if data is None or len(data.val_y) != cfg.val_size:
            data = _data(data_dir, cfg.val_size, cfg.split_seed)
        rec = train(cfg.model, cfg.rule, dict(cfg.hparams), data=data, epochs=cfg.epochs,
                    batch_size=cfg.batch_size, seed=cfg.seed, max_steps=cfg.max_steps, threads=threads)
        rec["config"].update(key=key, rule_code=config["rule_code"], val_size=cfg.val_size,
                             split_seed=cfg.split_seed, worker=me)
        ok = store.finish(key, me, compact_record(rec))
    except (KeyboardInterrupt, SystemExit):
        stop.set()
        store.release(key, me)
        raise
    except Exception:
        store.finish(key, me, {"error": traceback.format_exc()}, status="failed")
        print(f"run {key} ({cfg.rule}, {cfg.hparams}) failed:\n{traceback.format_exc()}", file=sys.stderr)
        ok = False
    finally:
        stop.set()
    if ok:
        _log("done", key)
    return ok


def run_worker(configs, store=DEFAULT_URL, *, threads=None, data=None, data_dir=None, wait=True,
               poll=5.0, bar=None) -> int:
    """Run every claimable config until all are done; returns how many this worker ran.

    wait: when the only unfinished runs are held by other live workers, keep polling (every
    ``poll`` s) so that a run whose worker dies is taken over; False: return at once."""
    store = store if isinstance(store, Store) else Store(store)
    me = worker_id()
    by_key = {c.key: c for c in configs}
    ran = 0
    while True:
        status = store.statuses(by_key)
        pending = [k for k in by_key if status.get(k) not in ("done", "failed")]
        if not pending:
            return ran
        progressed = False
        for k in pending:
            if _run_one(by_key[k], store, me, data=data, threads=threads, data_dir=data_dir):
                ran += 1
                progressed = True
                if bar is not None:
                    bar.update(1)
        if not progressed:
            if not wait:
                return ran
            time.sleep(poll)


def _worker_main(config_dicts, url, threads, data_dir):
    configs = [RunConfig.from_dict(d) for d in config_dicts]
    run_worker(configs, url, threads=threads, data_dir=data_dir, poll=1.0)


def run_grid(configs, *, store=DEFAULT_URL, workers=None, threads=None, force=False, progress=True,
             data=None, data_dir=None):
    """Run the configs not yet in the store, then return ``load_results(configs, store)``.

    store:    SQLAlchemy URL or a Store (default: SQLite file results/runs.sqlite).
    workers:  worker processes (multiprocessing 'spawn'); 1 runs in this process. None: one
              per core (at most one per missing run; 1 when only one run is missing).
    threads:  torch threads per worker (None: torch's default, all cores, for one worker;
              cores // workers for several).
    force:    re-run every config, even finished ones (failed runs are always retried).
    data:     an in-memory data.FashionMNIST to train on (workers=1 only).
    data_dir: folder with the IDX files (else FMNIST_DIR / Debian / torchvision).
    """
    st = store if isinstance(store, Store) else Store(store)
    configs = list({c.key: c for c in configs}.values())
    keys = [c.key for c in configs]
    st.requeue(keys, statuses=("done", "failed") if force else ("failed",))
    status = st.statuses(keys)
    todo = [c for c in configs if status.get(c.key) != "done"]
    if workers is None:
        workers = 1 if data is not None else max(1, min(os.cpu_count() or 1, len(todo)))
    if todo:
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="runs", unit="run")
        try:
            if workers <= 1:
                run_worker(todo, st, threads=threads, data=data, data_dir=data_dir, bar=bar, poll=1.0)
            else:
                if threads is None:
                    threads = max(1, (os.cpu_count() or 1) // workers)
                ctx = multiprocessing.get_context("spawn")
                procs = [ctx.Process(target=_worker_main,
                                     args=([c.as_dict() for c in todo], st.url, threads, data_dir))
                         for _ in range(workers)]
                for p in procs:
                    p.start()
                try:
                    while any(p.is_alive() for p in procs):
                        time.sleep(1.0)
                        if bar is not None:
                            s = st.statuses(keys)
                            bar.n = sum(v == "done" for v in s.values())
                            bar.refresh()
                finally:
                    for p in procs:
                        if p.is_alive():
                            p.terminate()
                        p.join()
                # a worker that crashed leaves its runs; finish them here
                run_worker(todo, st, threads=threads, data=data, data_dir=data_dir, poll=1.0)
        finally:
            if bar is not None:
                bar.n = sum(v == "done" for v in st.statuses(keys).values())
                bar.close()
    return load_results(configs, st)


# ---------------------------------------------------------------------------- reading

_EPOCH_COLS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "train_seconds", "step_seconds"]


def _done_rows(configs, store):
    st = store if isinstance(store, Store) else Store(store)
    keys = None if configs is None else [c.key for c in configs]
    return st.rows(keys, columns=("key", "config", "result"), status="done")


def load_results(configs=None, store=DEFAULT_URL):
    """Tidy per-epoch rows of the finished runs among ``configs`` (None: every finished run).

    Columns: key, model, rule, lr, seed, epochs, batch_size, val_size, hparams (JSON string),
    one column per hyper-parameter, epoch, train_loss, train_acc, val_loss, val_acc, test_loss,
    test_acc, train_seconds, step_seconds, diverged, diverged_epoch. Unfinished runs are absent.
    """
    import pandas as pd
    rows, hp_names = [], set()
    for key, config, result in _done_rows(configs, store):
        cfg, rec = json.loads(config), json.loads(result)
        hp = cfg["hparams"]
        hp_names |= set(hp)
        base = dict(key=key, model=cfg["model"], rule=cfg["rule"], lr=hp.get("lr"), seed=cfg["seed"],
                    epochs=cfg["epochs"], batch_size=cfg["batch_size"], val_size=cfg["val_size"],
                    hparams=json.dumps(hp, sort_keys=True),
                    **{f"hp_{k}": v for k, v in hp.items()})
        for ep in rec["epochs"]:
            rows.append({**base, **{c: ep.get(c) for c in _EPOCH_COLS},
                         "diverged": rec["diverged"], "diverged_epoch": rec["diverged_epoch"]})
    cols = (["key", "model", "rule", "lr", "seed", "epochs", "batch_size", "val_size", "hparams"]
            + sorted(f"hp_{n}" for n in hp_names - {"lr"}) + _EPOCH_COLS + ["diverged", "diverged_epoch"])
    df = pd.DataFrame(rows, columns=cols)
    df = df.rename(columns={c: c[3:] for c in df.columns if c.startswith("hp_")})
    for c in _EPOCH_COLS[1:]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)    # JSON null -> NaN
    df["diverged_epoch"] = df["diverged_epoch"].astype("Int64")
    return df.sort_values(["model", "rule", "lr", "seed", "epoch"], kind="stable").reset_index(drop=True)


def load_step_losses(configs=None, store=DEFAULT_URL) -> dict:
    """{key: array of window-mean training losses} (window = STEP_WINDOW steps; NaN if non-finite)."""
    out = {}
    for key, _config, result in _done_rows(configs, store):
        w = json.loads(result)["step_losses_w"]
        out[key] = _decode(w["b64"])
    return out


# ---------------------------------------------------------------------------- command line

def _value(s: str):
    """CLI value: JSON if it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return {"True": True, "False": False}.get(s, s)


def _csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x.strip()]


def _grid_args(p):
    p.add_argument("--rules", type=_csv(str), required=True, help="comma-separated, e.g. sgd,adam")
    p.add_argument("--lrs", type=_csv(float), required=True, help="comma-separated learning rates")
    p.add_argument("--seeds", type=_csv(int), default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--model", type=_csv(str), default=["mlp"], help="mlp, cnn, small_mlp (comma-separated)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--hparam", action="append", default=[], metavar="[RULE:]K=V[,V...]",
                   help="extra hyper-parameter for every rule, or RULE:K=V for one; several values "
                        "separated by commas are swept (repeatable)")
    p.add_argument("--store", default=DEFAULT_URL, help=f"SQLAlchemy URL (default {DEFAULT_URL})")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")


def _configs_from_args(a) -> list[RunConfig]:
    extra = {r: {} for r in a.rules}
    for item in a.hparam:
        target, _, kv = item.partition(":") if ":" in item.split("=", 1)[0] else ("", "", item)
        k, _, v = kv.partition("=")
        vals = [_value(x) for x in v.split(",")]
        for r in ([target] if target else a.rules):
            extra.setdefault(r, {})[k] = vals if len(vals) > 1 else vals[0]
    return grid(a.rules, a.lrs, a.seeds, model=a.model, epochs=a.epochs, hparams=extra,
                batch_size=a.batch_size, val_size=a.val_size, split_seed=a.split_seed,
                max_steps=a.max_steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optreport.runs", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run a grid (skipping finished runs) and print a summary")
    _grid_args(p_run)
    p_run.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: one per core, 1 thread each)")
    p_run.add_argument("--force", action="store_true", help="re-run finished runs too")
    p_work = sub.add_parser("worker", help="one worker pulling runs of a grid from a shared store "
                                           "(start one per machine with the same flags)")
    _grid_args(p_work)
    p_work.add_argument("--no-wait", action="store_true",
                        help="exit when nothing is claimable instead of waiting for other workers")
    p_work.add_argument("--poll", type=float, default=5.0,
                        help="seconds between looks at the store while others' runs are in flight")
    p_stat = sub.add_parser("status", help="counts of done/running runs per rule")
    p_stat.add_argument("--store", default=DEFAULT_URL)
    a = ap.parse_args(argv)

    if a.cmd == "status":
        st = Store(a.store)
        counts = st.counts()
        if not counts:
            print(f"no runs in {st}")
        table = {}
        for model, rule, status, n in counts:
            table.setdefault((model, rule), {})[status] = n
        statuses = ["done", "running", "queued", "failed"]
        print(f"{'model':10s} {'rule':10s} " + " ".join(f"{s:>8s}" for s in statuses))
        for (model, rule), c in sorted(table.items(), key=lambda x: (str(x[0][0]), str(x[0][1]))):
            print(f"{model or '?':10s} {rule or '?':10s} " + " ".join(f"{c.get(s, 0):8d}" for s in statuses))
        return 0

    configs = _configs_from_args(a)
    if a.cmd == "worker":
        n = run_worker(configs, a.store, threads=a.threads, data_dir=a.data_dir, wait=not a.no_wait,
                       poll=a.poll)
        print(f"worker {worker_id()} ran {n} of {len(configs)} runs")
        return 0
    df = run_grid(configs, store=a.store, workers=a.workers, threads=a.threads, force=a.force,
                  data_dir=a.data_dir)
    if len(df):
        last = df.sort_values("epoch").groupby("key").tail(1)
        print(last.groupby(["model", "rule", "lr"])[["test_acc", "val_acc", "train_seconds"]]
              .mean().to_string())
    print(f"{df['key'].nunique()} of {len(configs)} runs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
