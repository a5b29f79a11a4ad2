"""sweep.py / store.py: keys, resuming, a worker killed mid-run, two workers sharing a store."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from optreport.engine import data
from optreport.runs import store as store_mod
from optreport.runs import sweep
from optreport.runs.store import Store
from optreport.runs.sweep import RunConfig, grid, load_results, load_step_losses, run_grid

REPO = Path(__file__).resolve().parents[1]
REAL = data.DEBIAN_DIR / "train-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return data.write_fixture(tmp_path_factory.mktemp("fmnist"), 400, 60)


def tiny_grid(**kw):
    args = dict(epochs=2, val_size=80, batch_size=64)
    args.update(kw)
    return grid(["sgd", "gravity"], [0.01, 0.1], [0], **args)


def read_log(path):
    if not Path(path).exists():
        return []
    return [line.split()[:2] for line in Path(path).read_text().splitlines()]


# ---------------------------------------------------------------------------- keys

def test_keys():
    a = RunConfig(rule="sgd", hparams={"lr": 1}, epochs=1)
    assert a.key == RunConfig(rule="sgd", hparams={"lr": 1.0}, epochs=1).key
    assert a.key != RunConfig(rule="sgd", hparams={"lr": 1.0}, epochs=2).key
    assert a.key != RunConfig(rule="sgd", hparams={"lr": 1.0}, epochs=1, seed=1).key
    assert a.key != RunConfig(rule="sgd", hparams={"lr": 1.0}, epochs=1, val_size=100).key
    assert a.key != RunConfig(rule="momentum", hparams={"lr": 1.0}, epochs=1).key
    assert RunConfig.from_dict(a.as_dict()) == a and hash(a) == hash(RunConfig.from_dict(a.as_dict()))


def test_grid_expands_per_rule_hparams():
    cs = grid(["sgd", "gravity"], [0.1, 0.2], [0, 1, 2], epochs=3,
              hparams={"gravity": {"accumulate": [True, False]}}, max_steps=5)
    assert len(cs) == 2 * 3 + 2 * 2 * 3
    assert {c.hparams.get("accumulate") for c in cs if c.rule == "gravity"} == {True, False}
    assert all(c.max_steps == 5 and c.epochs == 3 for c in cs)
    assert len({c.key for c in cs}) == len(cs)


def test_editing_a_rule_changes_only_its_keys(tmp_path, monkeypatch):
    src = textwrap.dedent('''
        import torch
        def _helper(x):
            return x
        class Base(torch.optim.Optimizer):
            pass
        class A(Base):
            def step(self):
                return _helper(1)
        class B(Base):
            def step(self):
                return 2
        OPTIMIZERS = {"a": A, "b": B}
    ''')

    def keys(text, name):
        (tmp_path / f"{name}.py").write_text(text)
        monkeypatch.syspath_prepend(str(tmp_path))
        import importlib
        mod = importlib.import_module(name)
        monkeypatch.setitem(sys.modules, "optimizers", mod)
        sweep.rule_fingerprint.cache_clear()
        return {r: RunConfig(rule=r, hparams={"lr": 0.1}, epochs=1).key for r in ("a", "b")}
    try:
        k0 = keys(src, "opt_v0")
        k1 = keys(src.replace("return 2", "return 3"), "opt_v1")        # edit B
        k2 = keys(src.replace("return x", "return x + 0"), "opt_v2")    # edit A's helper
        k3 = keys(src.replace("pass", "x = 1"), "opt_v3")               # edit the shared base
    finally:
        sweep.rule_fingerprint.cache_clear()
    assert k1["a"] == k0["a"] and k1["b"] != k0["b"]
    assert k2["a"] != k0["a"] and k2["b"] == k0["b"]
    assert k3["a"] != k0["a"] and k3["b"] != k0["b"]


# ---------------------------------------------------------------------------- store

def test_claim_cas(tmp_path, monkeypatch):
    st = Store(f"sqlite:///{tmp_path}/s.sqlite", lease=1000)
    me = store_mod.worker_id()
    assert st.claim("k", {}, me)
    assert not st.claim("k", {}, "otherhost:1")             # live holder (ours)
    assert not st.finish("k", "otherhost:1", {"x": 1})      # only the holder can finish
    assert st.heartbeat("k", me) and not st.heartbeat("k", "otherhost:1")
    assert st.finish("k", me, {"x": 1})
    assert not st.claim("k", {}, "otherhost:1")             # done
    # a dead worker on this host: taken over at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    st.claim("d", {}, f"{store_mod.socket.gethostname()}:{dead.pid}")
    assert st.claim("d", {}, me)
    # a worker on another host: taken over only when its lease expires
    st.claim("r", {}, "elsewhere:42")
    assert not st.claim("r", {}, me)
    st.lease = 0.0
    assert st.claim("r", {}, me)
    assert not st.finish("r", "elsewhere:42", {})
    # Ctrl-C gives a run back
    st.release("r", me)
    assert st.statuses(["r"]) == {"r": "queued"} and st.claim("r", {}, "elsewhere:43")
    (attempts,) = [r.attempts for r in st.rows(["r"])]
    assert attempts == 3


def test_run_grid_resumes_and_forces(tmp_path, fx, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    cs = tiny_grid()
    df = run_grid(cs, store=url, data_dir=fx, progress=False, workers=1, threads=1)
    assert df["key"].nunique() == 4 and len(df) == 8
    for col in ["key", "model", "rule", "lr", "seed", "epochs", "hparams", "epoch", "train_loss",
                "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "train_seconds",
                "step_seconds", "diverged", "diverged_epoch"]:
        assert col in df.columns
    assert sorted(df["lr"].unique()) == [0.01, 0.1]
    assert Counter(e for e, _ in read_log(log)) == {"start": 4, "done": 4}
    # re-run: nothing trains; a bigger grid trains only the new configs
    run_grid(cs, store=url, data_dir=fx, progress=False, workers=1, threads=1)
    more = cs + tiny_grid(epochs=1)[:1]
    assert len(run_grid(more, store=url, data_dir=fx, progress=False, workers=1, threads=1)) == 9
    assert Counter(e for e, _ in read_log(log)) == {"start": 5, "done": 5}
    # force re-runs all, results identical except timings
    df2 = run_grid(cs, store=url, data_dir=fx, progress=False, force=True, workers=1, threads=1)
    assert Counter(e for e, _ in read_log(log)) == {"start": 9, "done": 9}
    cols = ["key", "epoch", "train_loss", "val_loss", "test_acc"]
    assert df2[cols].equals(df[cols])
    # step losses: window means of the trainer's per-step losses
    losses = load_step_losses(cs, url)
    assert set(losses) == {c.key for c in cs}
    from optreport.engine.train import train
    c = cs[0]
    rec = train(c.model, c.rule, c.hparams, data=data.load_fashion_mnist(fx, val_size=80),
                epochs=c.epochs, batch_size=c.batch_size, seed=c.seed)
    steps = np.array(rec["step_losses"])          # 10 steps -> one window of 10
    assert losses[c.key] == pytest.approx([steps[:10].mean()], rel=1e-6)
    assert load_results(None, url)["key"].nunique() == 5


def test_diverged_run_stored(tmp_path, fx):
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    cs = [RunConfig(rule="sgd", hparams={"lr": 1e6}, epochs=3, val_size=80, batch_size=16)]
    df = run_grid(cs, store=url, data_dir=fx, progress=False, workers=1, threads=1)
    assert df["diverged"].all() and (df["diverged_epoch"] == 1).all() and len(df) == 1
    assert np.isnan(df["train_loss"]).all()
    assert np.isnan(load_step_losses(cs, url)[cs[0].key][-1])


def test_failed_run_recorded_and_retried(tmp_path, fx):
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    cs = [RunConfig(rule="sgd", hparams={"lr": -1.0}, epochs=1, val_size=80)]   # invalid lr
    assert len(run_grid(cs, store=url, data_dir=fx, progress=False, workers=1, threads=1)) == 0
    (row,) = Store(url).rows([cs[0].key])
    assert row.status == "failed" and "Invalid learning rate" in row.result
    run_grid(cs, store=url, data_dir=fx, progress=False, workers=1, threads=1)
    (row,) = Store(url).rows([cs[0].key])
    assert row.attempts == 2


def test_compact_record_size():
    rec = {"config": {}, "epochs": [], "diverged": False, "diverged_epoch": None,
           "step_losses": list(np.random.default_rng(0).random(100 * 860))}
    out = sweep.compact_record(rec)
    assert len(json.dumps(out)) < 50_000
    assert len(sweep._decode(out["step_losses_w"]["b64"])) == 8600


# ---------------------------------------------------------------------------- processes

def _worker(url, fx, log, *extra):
    env = {**os.environ, sweep.RUN_LOG_ENV: str(log), "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.Popen(
        [sys.executable, "-m", "optreport.runs", "worker", "--rules", "sgd,momentum", "--lrs", "0.01,0.05",
         "--seeds", "0", "--val-size", "80", "--batch-size", "8", "--threads", "1",
         "--data-dir", str(fx), "--store", url, "--poll", "0.2", *extra],
        env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _grid_keys(epochs):
    return [c.key for c in grid(["sgd", "momentum"], [0.01, 0.05], [0], epochs=epochs,
                                val_size=80, batch_size=8)]


def test_killed_worker_loses_and_duplicates_nothing(tmp_path, fx):
    log, url = tmp_path / "runs.log", f"sqlite:///{tmp_path}/runs.sqlite"
    epochs = 12                               # 40 steps x 12 epochs: a run lasts ~1-3 s
    p = _worker(url, fx, log, "--epochs", str(epochs))
    victim = None
    try:
        for _ in range(6000):                 # wait until the 2nd run is in flight
            events = read_log(log)
            starts = [k for e, k in events if e == "start"]
            dones = {k for e, k in events if e == "done"}
            if len(starts) >= 2 and starts[-1] not in dones:
                victim = starts[-1]
                os.kill(p.pid, signal.SIGKILL)
                break
            assert p.poll() is None, p.stdout.read().decode()
            time.sleep(0.02)
    finally:
        p.kill()
        p.wait()
    assert victim is not None
    st = Store(url)
    before = st.statuses()
    assert before[victim] == "running"       # left behind by the dead worker
    p2 = _worker(url, fx, log, "--epochs", str(epochs), "--no-wait")
    out = p2.communicate()[0].decode()
    assert p2.returncode == 0, out
    keys = _grid_keys(epochs)
    assert st.statuses() == {k: "done" for k in keys}
    events = read_log(log)
    done = Counter(k for e, k in events if e == "done")
    start = Counter(k for e, k in events if e == "start")
    assert done == {k: 1 for k in keys}                              # nothing lost or duplicated
    assert start == {k: 2 if k == victim else 1 for k in keys}       # only the victim re-ran
    assert all(k in done for k, s in before.items() if s == "done")


def test_two_workers_share_a_grid(tmp_path, fx):
    log, url = tmp_path / "runs.log", f"sqlite:///{tmp_path}/runs.sqlite"
    procs = [_worker(url, fx, log, "--epochs", "3") for _ in range(2)]
    outs = [p.communicate()[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    keys = _grid_keys(3)
    events = read_log(log)
    assert Counter(k for e, k in events if e == "start") == {k: 1 for k in keys}
    assert Counter(k for e, k in events if e == "done") == {k: 1 for k in keys}
    rows = Store(url).rows()
    assert len(rows) == 4 and all(r.status == "done" and r.attempts == 1 for r in rows)


def test_run_grid_with_two_worker_processes(tmp_path, fx, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    cs = tiny_grid(epochs=1)
    df = run_grid(cs, store=url, data_dir=fx, workers=2, threads=1, progress=False)
    assert df["key"].nunique() == 4
    assert Counter(k for e, k in read_log(log) if e == "done") == {c.key: 1 for c in cs}


# ---------------------------------------------------------------------------- command line

def test_cli(tmp_path, fx, capsys):
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    args = ["--rules", "gravity", "--lrs", "0.1", "--seeds", "0,1", "--epochs", "1", "--val-size", "80",
            "--hparam", "gravity:accumulate=true,false", "--store", url, "--data-dir", str(fx)]
    assert sweep.main(["run", *args, "--workers", "1", "--threads", "1"]) == 0
    assert "4 of 4 runs done" in capsys.readouterr().out
    assert sweep.main(["status", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "gravity" in out and "4" in out
    with pytest.raises(SystemExit):
        sweep.main(["--help"])
    assert "run" in capsys.readouterr().out


@pytest.mark.skipif(not REAL.exists(), reason="Debian's dataset-fashion-mnist not installed")
def test_end_to_end_real_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FMNIST_DIR", raising=False)
    url = f"sqlite:///{tmp_path}/runs.sqlite"
    cs = grid(["momentum", "cosine"], [0.01], [0], epochs=1, max_steps=20)
    df = run_grid(cs, store=url, data_dir=data.DEBIAN_DIR, progress=False, workers=1, threads=1)
    assert len(df) == 2 and not df["diverged"].any()
    assert (df["test_acc"] > 0.3).all()                      # 20 steps already beat chance
    assert os.path.getsize(f"{tmp_path}/runs.sqlite") < 200_000
