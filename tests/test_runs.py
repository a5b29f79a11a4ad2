"""The run engine (optreport.runs): keys, validation, the Optuna queue on SQLite and on a real
PostgreSQL server, workers killed, databases restarted, files of finished runs.

The PostgreSQL tests start a throwaway server (tests/pgserver.py); where none can be had they
skip and say why. Each defect of the engine issue has a test here (named in its docstring)."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pgserver
import pytest
from optuna.trial import TrialState

from optreport.engine import data
from optreport.engine import train as train_mod
from optreport.runs import engine, results, sweep
from optreport.runs import keys as keys_mod
from optreport.runs.keys import RunConfig, validate
from optreport.runs.results import load_results, load_step_losses
from optreport.runs.sweep import grid, run_grid, run_worker

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return data.write_fixture(tmp_path_factory.mktemp("fmnist"), 400, 60)


@pytest.fixture(scope="module")
def pg():
    reason = pgserver.unavailable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    server = pgserver.PostgresServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    """A fresh storage URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.sqlite3"
    return request.getfixturevalue("pg").new_database()


def tiny_grid(**kw):
    args = dict(epochs=2, val_size=80, batch_size=64)
    args.update(kw)
    return grid(["sgd", "gravity"], [0.01, 0.1], [0], **args)


def read_log(path):
    if not Path(path).exists():
        return []
    return [line.split()[:2] for line in Path(path).read_text().splitlines()]


def numbers(df):
    """The columns that must be bit-identical between two runs of one key (no timings)."""
    return df[["key", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]]


# ---------------------------------------------------------------------------- keys

def test_keys_cover_configuration_execution_and_versions(monkeypatch):
    """Defect: `threads` was recorded but not keyed; the key missed trainer/model/data code."""
    a = RunConfig(rule="sgd", hparams={"lr": 1}, epochs=1)
    assert a.key == RunConfig(rule="sgd", hparams={"lr": 1.0}, epochs=1).key
    for change in [dict(epochs=2), dict(seed=1), dict(val_size=100), dict(rule="momentum"), dict(threads=2),
                   dict(compile_step=False), dict(flush_denormal=False), dict(n_train=1000),
                   dict(schedule="cosine"), dict(batch_size=128), dict(max_steps=10), dict(model="cnn")]:
        b = RunConfig(**{**dict(rule="sgd", hparams={"lr": 1.0}, epochs=1), **change})
        assert b.key != a.key, change
    assert RunConfig.from_dict(a.as_dict()) == a and hash(a) == hash(RunConfig.from_dict(a.as_dict()))
    sgd, mom = a.key, RunConfig(rule="momentum", hparams={"lr": 1.0}, epochs=1).key
    monkeypatch.setattr(keys_mod, "TRAINER_VERSION", 99)
    assert a.key != sgd and RunConfig(rule="momentum", hparams={"lr": 1.0}, epochs=1).key != mom
    monkeypatch.undo()
    monkeypatch.setattr(keys_mod, "DATA_VERSION", 99)
    assert a.key != sgd
    monkeypatch.undo()
    monkeypatch.setitem(keys_mod.MODEL_VERSIONS, "mlp", 99)
    assert a.key != sgd
    monkeypatch.undo()
    # a rule's version changes its runs' keys and no other rule's
    monkeypatch.setattr(keys_mod, "_rule_version", lambda r: 99 if r == "sgd" else 1)
    assert a.key != sgd and RunConfig(rule="momentum", hparams={"lr": 1.0}, epochs=1).key == mom
    monkeypatch.undo()
    assert a.key == sgd
    assert a.keyed()["versions"]["torch"]


def test_grid_expands_per_rule_hparams():
    cs = grid(["sgd", "gravity"], [0.1, 0.2], [0, 1, 2], epochs=3,
              hparams={"gravity": {"accumulate": [True, False]}}, max_steps=5)
    assert len(cs) == 2 * 3 + 2 * 2 * 3
    assert {c.hparams.get("accumulate") for c in cs if c.rule == "gravity"} == {True, False}
    assert all(c.max_steps == 5 and c.epochs == 3 and c.threads == 1 for c in cs)
    assert len({c.key for c in cs}) == len(cs)


@pytest.mark.parametrize("change, name", [
    (dict(hparams={"lr": -0.1}), "learning rate"), (dict(hparams={"lr": float("nan")}), "lr"),
    (dict(batch_size=0), "batch_size"), (dict(val_size=60000), "val_size"), (dict(model="resnet"), "model"),
    (dict(rule="lion"), "rule"), (dict(epochs=0), "epochs"), (dict(max_steps=0), "max_steps"),
    (dict(threads=0), "threads"), (dict(schedule="linear"), "schedule"), (dict(n_train=0), "n_train"),
    (dict(hparams={"lr": 0.1, "momentum": -1}), "momentum"), (dict(hparams={"lr": 0.1, "bogus": 1}), "bogus"),
])
def test_invalid_settings_named_before_anything_runs(change, name, tmp_path, fx):
    """Defect: bad settings were caught only after a run was claimed, exit 0; epochs 0 stored as done."""
    cfg = {**dict(rule="sgd", hparams={"lr": 0.1}, epochs=1, val_size=80), **change}
    rule = cfg.pop("rule")
    with pytest.raises(ValueError, match=name):
        validate(RunConfig(rule=rule, **cfg))
    store = tmp_path / "q.sqlite3"
    with pytest.raises(ValueError, match=name):
        run_grid([RunConfig(rule=rule, **cfg)], storage=f"sqlite:///{store}", runs_dir=tmp_path / "runs",
                 data_dir=fx, progress=False, workers=1)
    assert not store.exists() and not (tmp_path / "runs").exists()      # nothing written


@pytest.mark.parametrize("args, name", [
    (["--lrs", "-0.1"], "learning rate"), (["--lrs", "nan"], "lr"), (["--batch-size", "0"], "batch_size"),
    (["--val-size", "60000"], "val_size"), (["--model", "resnet"], "model"), (["--epochs", "0"], "epochs"),
    (["--max-steps", "0"], "max_steps"), (["--hparam", "sgd:lr"], "--hparam"),
])
def test_cli_rejects_bad_settings_with_exit_2(args, name, tmp_path, fx, capsys):
    store = tmp_path / "q.sqlite3"
    base = {"--rules": "sgd", "--lrs": "0.1", "--epochs": "1", "--val-size": "80"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    argv = ["worker", *[x for kv in base.items() for x in kv], "--store", f"sqlite:///{store}",
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(fx)]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err
    assert not store.exists()


def test_list_valued_hparams_parse(tmp_path):
    """Defect: --hparam 'betas=[0.9,0.999]' was split at the comma into two runs."""
    ns = sweep.argparse.Namespace(rules=["adam"], lrs=[1e-3], seeds=[0], epochs=1, model=["mlp"], batch_size=64,
                                  val_size=5000, split_seed=0, max_steps=None, n_train=None, schedule="constant",
                                  threads=1, hparam=["betas=[0.9,0.999]"])
    (c,) = sweep._configs_from_args(ns)
    assert c.hparams["betas"] == [0.9, 0.999]
    validate(c)
    ns.hparam = ["adam:betas=[0.9,0.999],[0.8,0.99]", "eps=1e-8"]
    cs = sweep._configs_from_args(ns)
    assert sorted(tuple(c.hparams["betas"]) for c in cs) == [(0.8, 0.99), (0.9, 0.999)]
    assert all(c.hparams["eps"] == 1e-8 for c in cs)


def test_status_of_a_missing_storage_says_so(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "q.sqlite3"
    assert sweep.main(["status", "--store", f"sqlite:///{missing}"]) == 2
    assert "no run storage" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()
    assert sweep.main(["export", "--store", str(missing)]) == 2


# ---------------------------------------------------------------------------- identities

def test_worker_identity_tells_live_dead_and_foreign_processes():
    """Defect: two hosts sharing a hostname took each other's live runs (pid tested in the wrong namespace)."""
    me = engine.worker_identity()
    assert engine.identity_alive(me) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = {**me, "pid": child.pid, "start": engine._start_time(child.pid)}
    child.wait()
    assert engine.identity_alive(ident) is False                           # dead, same machine
    assert engine.identity_alive({**me, "start": "1"}) is False             # pid reused by another process
    assert engine.identity_alive({**me, "boot_id": "another-boot"}) is None  # same hostname, other machine
    assert engine.identity_alive({**me, "pidns": "4026531999"}) is None     # another container
    assert engine.identity_alive(None) is None


# ---------------------------------------------------------------------------- the queue, both backends

def test_run_grid_resumes_forces_and_is_bit_identical(storage, tmp_path, fx, monkeypatch):
    """Same key, same machine -> bit-identical numbers; a re-run trains nothing; force retrains."""
    log, runs = tmp_path / "runs.log", tmp_path / "runs"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    cs = tiny_grid()
    df = run_grid(cs, storage=storage, runs_dir=runs, data_dir=fx, progress=False, workers=1)
    assert df["key"].nunique() == 4 and len(df) == 8
    for col in ["key", "model", "rule", "lr", "seed", "epochs", "hparams", "epoch", "train_loss", "train_acc",
                "val_loss", "val_acc", "test_loss", "test_acc", "train_seconds", "step_seconds",
                "eval_seconds", "diverged", "diverged_epoch", "n_train", "schedule"]:
        assert col in df.columns
    assert Counter(e for e, _ in read_log(log)) == {"start": 4, "done": 4}
    run_grid(cs, storage=storage, runs_dir=runs, data_dir=fx, progress=False, workers=1)
    more = cs + tiny_grid(epochs=1)[:1]
    assert len(run_grid(more, storage=storage, runs_dir=runs, data_dir=fx, progress=False, workers=1)) == 9
    assert Counter(e for e, _ in read_log(log)) == {"start": 5, "done": 5}
    df2 = run_grid(cs, storage=storage, runs_dir=runs, data_dir=fx, progress=False, force=True, workers=1)
    assert Counter(e for e, _ in read_log(log)) == {"start": 9, "done": 9}
    assert numbers(df2).equals(numbers(df))                      # bit-identical, timings aside
    losses = load_step_losses(cs, runs)
    assert set(losses) == {c.key for c in cs}
    c = cs[0]
    rec = train_mod.train(data=data.load_fashion_mnist(fx, val_size=80), **c.train_kwargs())
    steps = np.array(rec["step_losses"])          # 10 steps -> one window of 10
    assert losses[c.key] == pytest.approx([steps[:10].mean()], rel=1e-6)
    assert load_results(None, runs)["key"].nunique() == 5
    # the files are the results: a fresh queue with the same runs folder trains nothing
    fresh = f"sqlite:///{tmp_path}/fresh.sqlite3"
    run_grid(more, storage=fresh, runs_dir=runs, data_dir=fx, progress=False, workers=1)
    assert Counter(e for e, _ in read_log(log)) == {"start": 9, "done": 9}


def test_diverged_run_is_an_outcome(storage, tmp_path, fx):
    runs = tmp_path / "runs"
    cs = [RunConfig(rule="sgd", hparams={"lr": 1e6}, epochs=3, val_size=80, batch_size=16)]
    df = run_grid(cs, storage=storage, runs_dir=runs, data_dir=fx, progress=False, workers=1)
    assert df["diverged"].all() and (df["diverged_epoch"] == 1).all() and len(df) == 1
    assert np.isnan(load_step_losses(cs, runs)[cs[0].key][-1])
    (t,) = engine.Queue(storage).trials()
    assert t.state == TrialState.COMPLETE and t.user_attrs["result"]["outcome"] == "diverged"


def test_failed_runs_are_retried_up_to_the_limit_and_reported(storage, tmp_path, fx, monkeypatch, capsys):
    """Defect: `sweep worker` never retried failed runs and exited 0 when runs failed."""
    calls = []

    def broken(**kw):
        calls.append(kw["rule"])
        raise RuntimeError("simulated fault")
    monkeypatch.setattr(sweep, "train", broken)
    argv = ["worker", "--rules", "sgd", "--lrs", "0.1", "--epochs", "1", "--val-size", "80", "--store", storage,
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(fx), "--max-retry", "2", "--no-wait"]
    assert sweep.main(argv) == 1
    out = capsys.readouterr()
    assert len(calls) == 3                                   # first attempt + 2 retries
    assert "failed 3 (2 re-enqueued)" in out.out and "1 failed" in out.out
    assert "simulated fault" in out.err and "no retries left" in out.err
    states = Counter(t.state for t in engine.Queue(storage).trials())
    assert states == {TrialState.FAIL: 3}
    # a later worker of the same grid gets a fresh budget and, with the fault gone, finishes it
    monkeypatch.setattr(sweep, "train", train_mod.train)
    assert sweep.main(argv) == 0
    assert len(load_results(None, tmp_path / "runs")) == 1


def test_missing_data_fails_before_anything_is_enqueued(tmp_path, capsys):
    """Defect: a worker with a wrong FMNIST_DIR failed 7 of 8 runs of a shared grid, exit 0."""
    empty = tmp_path / "empty"
    empty.mkdir()
    store = tmp_path / "q.sqlite3"
    argv = ["worker", "--rules", "sgd", "--lrs", "0.1", "--epochs", "1", "--store", f"sqlite:///{store}",
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(empty)]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert "fashion" in err.lower() and "Traceback" not in err
    assert not store.exists()


def test_duplicate_enqueues_train_once(storage, tmp_path, fx, monkeypatch):
    """Two workers enqueueing one grid at once: the later trial of a key yields."""
    log = tmp_path / "runs.log"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    cs = tiny_grid(epochs=1)[:2]
    q = engine.Queue(storage)
    for c in cs:           # enqueue each twice, as two racing workers would
        for _ in range(2):
            engine.retrying(lambda c=c: q.study.enqueue_trial({}, user_attrs={
                "key": c.key, "config": c.keyed(), "rule": c.rule, "model": c.model,
                "enqueued": engine._now(), "force": False}), "enqueue")
    s = run_worker(cs, storage, runs_dir=tmp_path / "runs", data_dir=fx, wait=False, enqueue=False)
    assert s["ran"] == 2 and s["yielded"] == 2
    assert Counter(k for e, k in read_log(log) if e == "start") == {c.key: 1 for c in cs}
    states = Counter(t.state for t in q.trials())
    assert states == {TrialState.COMPLETE: 2, TrialState.PRUNED: 2}


def _foreign_running_trial(q, cfg, **ident):
    """A trial held by a worker of another machine whose host name equals ours."""
    q.enqueue([cfg])
    t = q.pop({cfg.key})
    foreign = {"host": socket.gethostname(), "boot_id": "another-machine", "pidns": "1", "pid": 1, "start": "1",
               **ident}
    q.storage.set_trial_user_attr(t._trial_id, "worker", foreign)
    q.storage.record_heartbeat(t._trial_id)
    return t


def test_a_live_run_of_a_same_named_host_is_never_taken_and_a_lapsed_one_is(storage, tmp_path, fx):
    """Defect: workers sharing a hostname took each other's live runs. A run of another machine is
    retried only after its heartbeat lapses (here grace 3 s)."""
    cfg = tiny_grid(epochs=1)[0]
    q = engine.Queue(storage, heartbeat_interval=1, grace_period=3)
    held = _foreign_running_trial(q, cfg)
    kw = dict(runs_dir=tmp_path / "runs", data_dir=fx, heartbeat_interval=1, grace_period=3, enqueue=False)
    s = run_worker([cfg], storage, wait=False, **kw)
    assert s["ran"] == 0 and q.storage.get_trial(held._trial_id).state == TrialState.RUNNING
    t0 = time.monotonic()
    s = run_worker([cfg], storage, wait=True, poll=0.3, **kw)    # waits for the heartbeat to lapse
    assert s["ran"] == 1 and time.monotonic() - t0 >= 1.0
    assert q.storage.get_trial(held._trial_id).state == TrialState.FAIL
    assert Counter(t.state for t in q.trials()) == {TrialState.FAIL: 1, TrialState.COMPLETE: 1}


def test_a_dead_local_workers_run_is_retried_at_once(storage, tmp_path, fx):
    """Same machine: the dead pid is noticed at once, long before the heartbeat lapses."""
    cfg = tiny_grid(epochs=1)[0]
    q = engine.Queue(storage)                       # default grace: 300 s
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = {**engine.worker_identity(), "pid": child.pid, "start": engine._start_time(child.pid)}
    child.wait()
    q.enqueue([cfg])
    t = q.pop({cfg.key})
    q.storage.set_trial_user_attr(t._trial_id, "worker", ident)
    t0 = time.monotonic()
    s = run_worker([cfg], storage, runs_dir=tmp_path / "runs", data_dir=fx, wait=False, enqueue=False)
    assert s["ran"] == 1 and s["reaped"] == 1 and time.monotonic() - t0 < 60


def test_reading_results_needs_no_write_access(tmp_path, fx, monkeypatch):
    """Reading stored runs opens no storage and writes nothing: every way of writing raises here."""
    runs = tmp_path / "runs"
    cs = tiny_grid(epochs=1)[:1]
    run_grid(cs, storage=f"sqlite:///{tmp_path}/q.sqlite3", runs_dir=runs, data_dir=fx, progress=False, workers=1)
    real_open = open

    def read_only_open(file, mode="r", *a, **kw):
        if any(m in mode for m in "wax+"):
            raise PermissionError(f"read-only: {file}")
        return real_open(file, mode, *a, **kw)

    def refuse(*a, **kw):
        raise PermissionError("read-only")
    monkeypatch.setattr("builtins.open", read_only_open)
    for name in ("replace", "rename", "mkdir", "makedirs", "remove", "unlink"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(engine, "open_storage", refuse)
    df = load_results(None, runs)
    assert df["key"].nunique() == 1 and set(load_step_losses(cs, runs)) == {cs[0].key}
    assert results.last_epoch(df)["epoch"].tolist() == [1]


def test_export_brings_runs_of_other_machines(storage, tmp_path, fx):
    """Workers without the runs folder (--runs-dir none) store records in the storage only."""
    cs = tiny_grid(epochs=1)[:2]
    s = run_worker(cs, storage, runs_dir=None, data_dir=fx, wait=False)
    assert s["ran"] == 2
    runs = tmp_path / "runs"
    assert sweep.main(["export", "--store", storage, "--runs-dir", str(runs)]) == 0
    assert results.stored_keys(runs) == {c.key for c in cs}
    df = run_grid(cs, storage=storage, runs_dir=runs, data_dir=fx, progress=False, workers=1)
    assert df["key"].nunique() == 2


def test_compact_record_size():
    rec = {"config": {}, "epochs": [], "diverged": False, "diverged_epoch": None,
           "step_losses": list(np.random.default_rng(0).random(100 * 860))}
    out = results.compact_record(rec)
    assert len(json.dumps(out)) < 50_000
    assert len(results.decode_losses(out["step_losses_w"])) == 8600


# ---------------------------------------------------------------------------- processes

def _worker(storage, runs, fx, log, *extra, epochs=3, rules="sgd,momentum"):
    env = {**os.environ, sweep.RUN_LOG_ENV: str(log)}
    return subprocess.Popen(
        [sys.executable, "-m", "optreport.runs", "worker", "--rules", rules, "--lrs", "0.01,0.05",
         "--seeds", "0", "--val-size", "80", "--batch-size", "8", "--epochs", str(epochs),
         "--data-dir", str(fx), "--store", storage, "--runs-dir", str(runs), "--poll", "0.2", *extra],
        env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _grid_keys(epochs, rules=("sgd", "momentum")):
    return {c.key for c in grid(list(rules), [0.01, 0.05], [0], epochs=epochs, val_size=80, batch_size=8)}


def _wait_for(log, pred, proc, timeout=300):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        events = read_log(log)
        hit = pred(events)
        if hit:
            return hit
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_killed_worker_loses_and_duplicates_nothing(storage, tmp_path, fx):
    log, runs, epochs = tmp_path / "runs.log", tmp_path / "runs", 12
    p = _worker(storage, runs, fx, log, epochs=epochs)

    def second_in_flight(events):
        starts = [k for e, k in events if e == "start"]
        dones = {k for e, k in events if e == "done"}
        return starts[-1] if len(starts) >= 2 and starts[-1] not in dones else None
    try:
        victim = _wait_for(log, second_in_flight, p)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.wait()
    p2 = _worker(storage, runs, fx, log, "--no-wait", epochs=epochs)
    out = p2.communicate()[0].decode()
    assert p2.returncode == 0, out
    keys = _grid_keys(epochs)
    assert results.stored_keys(runs) == keys
    events = read_log(log)
    assert Counter(k for e, k in events if e == "done") == {k: 1 for k in keys}
    assert Counter(k for e, k in events if e == "start") == {k: 2 if k == victim else 1 for k in keys}
    assert "dead workers' runs retried 1" in out


@pytest.mark.slow
def test_two_workers_share_a_grid_exactly_once(storage, tmp_path, fx):
    log, runs = tmp_path / "runs.log", tmp_path / "runs"
    procs = [_worker(storage, runs, fx, log, epochs=3) for _ in range(2)]
    outs = [p.communicate()[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    keys = _grid_keys(3)
    events = read_log(log)
    assert Counter(k for e, k in events if e == "start") == {k: 1 for k in keys}
    assert Counter(k for e, k in events if e == "done") == {k: 1 for k in keys}
    assert results.stored_keys(runs) == keys


@pytest.mark.slow
def test_run_grid_with_two_worker_processes(tmp_path, fx, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    cs = tiny_grid(epochs=1)
    df = run_grid(cs, storage=f"sqlite:///{tmp_path}/q.sqlite3", runs_dir=tmp_path / "runs", data_dir=fx,
                  workers=2, progress=False)
    assert df["key"].nunique() == 4
    assert Counter(k for e, k in read_log(log) if e == "done") == {c.key: 1 for c in cs}


# ---------------------------------------------------------------------------- PostgreSQL faults

@pytest.mark.slow
def test_postgres_restart_mid_run_loses_nothing(pg, tmp_path, fx):
    """Defect: a 3-s PostgreSQL restart while a run trained stored the finished run as failed."""
    url, log, runs = pg.new_database(), tmp_path / "runs.log", tmp_path / "runs"
    p = _worker(url, runs, fx, log, "--no-wait", epochs=25, rules="sgd")
    _wait_for(log, lambda ev: any(e == "start" for e, _ in ev), p)
    time.sleep(0.5)
    pg.stop()
    time.sleep(3)
    pg.start()
    out = p.communicate(timeout=600)[0].decode()
    assert p.returncode == 0, out
    keys = _grid_keys(25, rules=("sgd",))
    assert results.stored_keys(runs) == keys
    states = Counter(t.state for t in engine.Queue(url).trials())
    assert states == {TrialState.COMPLETE: len(keys)}, out


@pytest.mark.slow
def test_postgres_down_20s_across_a_runs_end(pg, tmp_path, fx):
    """Defect: a 20-s outage across a run's end crashed the worker (rc 1) and left the row running."""
    url, log, runs = pg.new_database(), tmp_path / "runs.log", tmp_path / "runs"
    p = _worker(url, runs, fx, log, "--no-wait", epochs=6, rules="sgd")
    first = _wait_for(log, lambda ev: next((k for e, k in ev if e == "start"), None), p)
    pg.stop()
    t0 = time.monotonic()
    # the first run ends while the server is down (its file is written before the storage is told)
    t_wait = time.monotonic()
    while first not in results.stored_keys(runs):
        assert p.poll() is None and time.monotonic() - t_wait < 120, p.stdout.read().decode()
        time.sleep(0.05)
    assert time.monotonic() - t0 < 20, "the run did not end within the outage; make it shorter"
    time.sleep(max(0.0, 20 - (time.monotonic() - t0)))
    assert p.poll() is None                                   # the worker outlives the outage
    pg.start()
    out = p.communicate(timeout=600)[0].decode()
    assert p.returncode == 0, out
    assert "storage unavailable" in out
    keys = _grid_keys(6, rules=("sgd",))
    assert results.stored_keys(runs) == keys
    states = Counter(t.state for t in engine.Queue(url).trials())
    assert states == {TrialState.COMPLETE: len(keys)}, out


def test_heartbeat_outlives_storage_errors(tmp_path, capsys):
    q = engine.Queue(f"sqlite:///{tmp_path}/q.sqlite3")
    calls = []

    def failing(trial_id):
        calls.append(trial_id)
        raise engine.sqlalchemy.exc.OperationalError("stmt", {}, Exception("server closed the connection"))
    q.storage.record_heartbeat = failing
    with q.heartbeat(7, interval=0.05):
        time.sleep(0.3)
    assert len(calls) >= 2 and all(c == 7 for c in calls)
    assert "heartbeat of trial 7 failed" in capsys.readouterr().err
    assert not [t for t in threading.enumerate() if t.name == "heartbeat-7"]


# ---------------------------------------------------------------------------- the README's recipe

def _readme_recipe():
    """The README's many-machine worker command, joined from its continuation lines."""
    text = (REPO / "README.md").read_text()
    block = text.split("### Spreading a sweep over machines", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    (worker,) = [ln.split("#")[0].split() for ln in lines if " worker " in ln]
    return worker


@pytest.mark.slow
def test_readme_many_machine_recipe_runs_a_grid_exactly_once(pg, tmp_path, fx):
    """The README's command, verbatim but for the database URL, with sizes shrunk by flags appended
    after it (argparse: the last wins): two workers, one killed mid-run, every run stored once."""
    cmd = _readme_recipe()
    assert cmd[:4] == ["python", "-m", "optreport.runs", "worker"]
    url = pg.new_database()
    cmd = [sys.executable, *cmd[1:]]
    cmd[cmd.index("--store") + 1] = url
    small = ["--seeds", "0", "--epochs", "2", "--val-size", "80", "--batch-size", "8", "--data-dir", str(fx),
             "--runs-dir", str(tmp_path / "runs"), "--poll", "0.2"]
    log = tmp_path / "runs.log"
    env = {**os.environ, sweep.RUN_LOG_ENV: str(log)}
    procs = [subprocess.Popen(cmd + small, env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(2)]
    victim = procs[0]

    def victim_training(_events):
        lines = Path(log).read_text().split("\n")[:-1] if Path(log).exists() else []
        return any(ln.split()[0] == "start" and ln.split()[2] == str(victim.pid) for ln in lines)
    _wait_for(log, victim_training, victim)
    victim.kill()
    victim.wait()
    out = procs[1].communicate(timeout=900)[0].decode()
    assert procs[1].returncode == 0, out
    rules = cmd[cmd.index("--rules") + 1].split(",")
    lrs = [float(x) for x in cmd[cmd.index("--lrs") + 1].split(",")]
    keys = {c.key for c in grid(rules, lrs, [0], epochs=2, val_size=80, batch_size=8)}
    assert results.stored_keys(tmp_path / "runs") == keys
    done = Counter(k for e, k in read_log(log) if e == "done")
    assert done == {k: 1 for k in keys}
    states = Counter(t.state for t in engine.Queue(url).trials())
    assert states[TrialState.COMPLETE] == len(keys) and states[TrialState.FAIL] == 1


def test_a_worker_of_a_dead_sweep_takes_no_new_run(tmp_path, fx):
    """run_grid's worker processes end with the sweep that started them (no orphans training on)."""
    cs = tiny_grid(epochs=1)[:1]
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    s = run_worker(cs, storage, runs_dir=tmp_path / "runs", data_dir=fx, parent=-1)
    assert s["ran"] == 0
    assert [t.state for t in engine.Queue(storage).trials()] == [TrialState.WAITING]


_OPEN_AT_ONCE = """
import sys
from optreport.runs import engine
print("ready", flush=True)
for url in sys.argv[1:]:
    sys.stdin.readline()            # the test's go, written to every process at once
    engine.Queue(url)
    print("ok", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_opening_a_fresh_database_at_once_all_start(backend, request, tmp_path):
    """CI, sessions 3 and 4: two workers started together on an empty store; one died creating
    Optuna's schema (UniqueViolation on PostgreSQL, IntegrityError on ``alembic_version`` with
    SQLite). Six processes, once they have imported everything, open each of three fresh stores
    at the same instant (released together by a line on their stdin), and every one of them starts."""
    urls = [f"sqlite:///{tmp_path}/fresh{i}.sqlite3" if backend == "sqlite"
            else request.getfixturevalue("pg").new_database() for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, *urls], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(6)]
    try:
        def expect(word):        # every process says ``word`` (after any warning it prints)
            for p in procs:
                seen = []
                while not seen or seen[-1].strip() != word:
                    seen.append(p.stdout.readline())
                    assert seen[-1], "".join(seen) + f"(exit {p.wait()} before saying {word!r})"
        expect("ready")
        for _ in urls:
            for p in procs:
                p.stdin.write("go\n")
            for p in procs:
                p.stdin.flush()
            expect("ok")
        for p in procs:
            out = p.communicate(timeout=60)[0]
            assert p.returncode == 0, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


_POPPER = """
import sys, time
from optreport.runs import engine
q = engine.Queue(sys.argv[1])
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)                       # start together
got = []
while (t := q.pop(set(sys.argv[3:]))) is not None:
    got.append(t.number)
print(" ".join(map(str, got)))
"""


@pytest.mark.slow
def test_processes_popping_together_take_each_trial_once(storage):
    """Taking a trial is atomic on both backends: 3 processes popping one queue at the same moment
    never take the same trial (on SQLite the check-and-set needs the engine's file lock)."""
    cfgs = grid(["sgd"], [0.01], list(range(24)), epochs=1)
    engine.Queue(storage).enqueue(cfgs)
    start = time.time() + 4
    procs = [subprocess.Popen([sys.executable, "-c", _POPPER, storage, str(start), *[c.key for c in cfgs]],
                              cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e.decode()[-2000:] for _, e in outs]
    taken = [int(n) for o, _ in outs for n in o.split()]
    assert Counter(taken) == {n: 1 for n in range(len(cfgs))}
