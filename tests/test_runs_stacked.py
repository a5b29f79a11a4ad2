"""The sweep trains runs that differ only in their seed together, stacked (runs.sweep's ``stack``):
the stored numbers are those of training one run at a time, bit for bit; each run keeps its own
trial, heartbeat, record and checkpoint."""
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from optreport.engine import data
from optreport.engine import train as train_mod
from optreport.runs import engine, results, sweep
from optreport.runs.keys import RunConfig
from optreport.runs.results import load_results
from optreport.runs.sweep import can_stack, grid, group_size, run_grid, run_worker, siblings, stack_sizes


class Stop(Exception):
    """Stands for a sweep stopped in the middle of an epoch."""


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return data.write_fixture(tmp_path_factory.mktemp("fmnist"), 400, 60)


def numbers(df):
    return df[["key", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "diverged", "diverged_epoch"]].reset_index(drop=True)


def starts(log):
    return Counter(line.split()[1] for line in Path(log).read_text().splitlines() if line.startswith("start"))


def test_group_size_spreads_the_seeds_evenly():
    assert [group_size(n, 4) for n in range(1, 10)] == [1, 2, 3, 4, 3, 3, 4, 4, 3]
    assert [group_size(n, 1) for n in (1, 5)] == [1, 1] and group_size(0, 4) == 0


def test_stack_sizes_are_the_stacks_the_workers_take():
    """Each leader takes group_size of the seeds still waiting: the sizes cover every seed once."""
    assert stack_sizes(5) == [5] and stack_sizes(7) == [4, 3] and stack_sizes(10) == [5, 5] and stack_sizes(3) == [3]
    assert stack_sizes(5, 4) == [3, 2] and stack_sizes(10, 4) == [4, 3, 3]
    assert stack_sizes(1) == [1] and stack_sizes(0) == [] and stack_sizes(5, 1) == [1] * 5
    assert all(sum(stack_sizes(n, k)) == n and max(stack_sizes(n, k)) <= k for n in range(1, 30) for k in (1, 2, 4))


def test_only_single_thread_mlp_runs_stack():
    assert can_stack(RunConfig(rule="adam", hparams={"lr": 1e-3}, seed=0, epochs=1))
    assert not can_stack(RunConfig(rule="adam", hparams={"lr": 1e-3}, seed=0, epochs=1, threads=2))
    assert not can_stack(RunConfig(model="cnn", rule="sgd", hparams={"lr": 0.01}, seed=0, epochs=1))


def test_siblings_differ_in_the_seed_only():
    a = RunConfig(rule="adam", hparams={"lr": 0.01}, epochs=2, seed=0)
    assert siblings(a, RunConfig(rule="adam", hparams={"lr": 0.01}, epochs=2, seed=7))
    assert not siblings(a, RunConfig(rule="adam", hparams={"lr": 0.02}, epochs=2, seed=7))
    assert not siblings(a, RunConfig(rule="adam", hparams={"lr": 0.01}, epochs=3, seed=7))
    assert not siblings(a, RunConfig(rule="adam", hparams={"lr": 0.01}, epochs=2, seed=7, schedule="cosine"))


def test_stacked_sweep_stores_the_numbers_of_one_run_at_a_time(tmp_path, fx, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv(sweep.RUN_LOG_ENV, str(log))
    cs = grid(["sgd", "gravity"], [0.05], [0, 1, 2, 3, 4], epochs=2, val_size=80, batch_size=64)
    cs.append(RunConfig(rule="sgd", hparams={"lr": 1e6}, epochs=2, val_size=80, batch_size=16, seed=0))
    cs.append(RunConfig(rule="sgd", hparams={"lr": 1e6}, epochs=2, val_size=80, batch_size=16, seed=1))
    kw = dict(data_dir=fx, progress=False, workers=1)
    stacked = run_grid(cs, storage=f"sqlite:///{tmp_path}/a.sqlite3", runs_dir=tmp_path / "a", stack=4, **kw)
    assert starts(log) == {c.key: 1 for c in cs}
    one = run_grid(cs, storage=f"sqlite:///{tmp_path}/b.sqlite3", runs_dir=tmp_path / "b", stack=1, **kw)
    assert numbers(stacked).equals(numbers(one))
    sizes = Counter(run["record"].get("stacked", 1) for _, run in results.iter_runs(tmp_path / "a"))
    assert sizes == {3: 6, 2: 6}          # 5 seeds, at most 4: stacks of 3 and 2; the diverging pair: 2
    assert all("stacked" not in run["record"] for _, run in results.iter_runs(tmp_path / "b"))
    assert stacked[stacked["lr"] == 1e6]["diverged"].all()
    trials = engine.Queue(f"sqlite:///{tmp_path}/a.sqlite3").trials()
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: len(cs)}


def test_a_failing_stack_fails_and_retries_each_of_its_runs(tmp_path, fx, monkeypatch, capsys):
    calls = []

    def broken(**kw):
        calls.append(kw["seeds"])
        raise RuntimeError("simulated fault")
    monkeypatch.setattr(sweep, "train_stacked", broken)
    storage = f"sqlite:///{tmp_path}/q.sqlite3"
    cs = grid(["sgd"], [0.05], [0, 1, 2], epochs=1, val_size=80)
    s = run_worker(cs, storage, runs_dir=tmp_path / "runs", data_dir=fx, wait=False, max_retry=1)
    assert calls == [[0, 1, 2], [0, 1, 2]]
    assert s["failed"] == 6 and s["retried"] == 3 and s["ran"] == 0
    assert capsys.readouterr().err.count("simulated fault") == 6
    monkeypatch.setattr(sweep, "train_stacked", train_mod.train_stacked)
    s = run_worker(cs, storage, runs_dir=tmp_path / "runs", data_dir=fx, wait=False)
    assert s["ran"] == 3 and results.stored_keys(tmp_path / "runs") == {c.key for c in cs}


def test_a_run_with_a_checkpoint_of_its_own_is_not_stacked_with_fresh_ones(tmp_path, fx):
    """Seed 1 was stopped after epoch 1 (its checkpoint): it resumes alone; seeds 0 and 2 train
    stacked from epoch 1; all three give the numbers of one run at a time."""
    cs = grid(["adam"], [0.01], [0, 1, 2], epochs=3, val_size=80, batch_size=64)
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    tiny = data.load_fashion_mnist(fx, val_size=80)

    def stop(step, *_):
        if step == 6:            # 320 training images, 5 steps an epoch: in epoch 2
            raise Stop
    with pytest.raises(Stop):
        train_mod.train(data=tiny, checkpoint=ckdir / f"{cs[1].key}.pt", checkpoint_every=0, callback=stop,
                        **cs[1].train_kwargs())
    s = run_worker(cs, f"sqlite:///{tmp_path}/q.sqlite3", runs_dir=tmp_path / "runs", data_dir=fx, wait=False,
                   checkpoint_dir=ckdir)
    assert s["ran"] == 3 and not list(ckdir.iterdir())
    recs = {c.seed: results.read_run(results.run_path(tmp_path / "runs", c.model, c.rule, c.key))["record"]
            for c in cs}
    assert recs[1].get("resumed_after") == [1] and "stacked" not in recs[1]
    assert recs[0]["stacked"] == recs[2]["stacked"] == 2
    alone = run_grid(cs, storage=f"sqlite:///{tmp_path}/b.sqlite3", runs_dir=tmp_path / "b", data_dir=fx,
                     progress=False, workers=1, stack=1)
    assert numbers(load_results(cs, tmp_path / "runs")).equals(numbers(alone))


def test_invalid_stack_is_named(tmp_path, fx, capsys):
    cs = grid(["sgd"], [0.05], [0], epochs=1, val_size=80)
    with pytest.raises(ValueError, match="Invalid stack"):
        run_grid(cs, storage=f"sqlite:///{tmp_path}/q.sqlite3", runs_dir=tmp_path / "runs", stack=0)
    argv = ["run", "--rules", "sgd", "--lrs", "0.1", "--epochs", "1", "--stack", "0",
            "--store", f"sqlite:///{tmp_path}/q.sqlite3", "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(fx)]
    assert sweep.main(argv) == 2
    assert "--stack" in capsys.readouterr().err
