"""Checkpoints (engine.train's ``checkpoint``, runs.sweep's ``checkpoint_dir``): a run stopped
after some epochs and started again with the same checkpoint gives the record an uninterrupted
run gives, bit for bit (timings aside); a checkpoint of another run, or a corrupt one, is
ignored with a warning; a stored run leaves no checkpoint behind."""
import pytest
import torch

from optreport.engine import data
from optreport.engine.train import load_checkpoint, train
from optreport.runs import sweep
from optreport.runs.keys import RunConfig


class Stop(Exception):
    """Stands for the sweep being stopped in the middle of an epoch."""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return data.write_fixture(tmp_path_factory.mktemp("fmnist"), 320, 60)


@pytest.fixture(scope="module")
def tiny(fixture_dir):
    return data.load_fashion_mnist(fixture_dir, val_size=64)


def numbers(rec):
    """The record without its timings (and without the resume marker)."""
    epochs = [{k: v for k, v in e.items() if "seconds" not in k} for e in rec["epochs"]]
    rest = {k: v for k, v in rec.items() if k not in ("epochs", "seconds", "resumed_after")}
    return epochs, rest


def stop_in_epoch(epoch, steps_per_epoch):
    def callback(step, *_):
        if step == (epoch - 1) * steps_per_epoch + 2:
            raise Stop
    return callback


@pytest.mark.parametrize("rule,hparams,schedule", [
    ("sgd", {"lr": 0.05}, "constant"),
    ("momentum", {"lr": 0.05}, "constant"),
    ("nag", {"lr": 0.05}, "cosine"),          # the saved param groups carry the scheduled lr
    ("adagrad", {"lr": 0.05}, "constant"),
    ("adadelta", {"lr": 1.0}, "constant"),
    ("adam", {"lr": 1e-3}, "cosine"),
    ("gravity", {"lr": 0.05}, "constant"),
    ("cosine", {"lr": 0.05}, "constant"),
])
def test_resumed_run_equals_uninterrupted_run(tiny, tmp_path, rule, hparams, schedule):
    kw = dict(data=tiny, epochs=4, batch_size=32, seed=2, schedule=schedule)
    whole = train("small_mlp", rule, hparams, **kw)
    ckpt = tmp_path / "run.pt"
    steps = whole["epochs"][0]["steps"]
    with pytest.raises(Stop):            # stopped in epoch 3: epochs 1 and 2 are checkpointed
        train("small_mlp", rule, hparams, checkpoint=ckpt, checkpoint_every=0,
              callback=stop_in_epoch(3, steps), **kw)
    assert ckpt.exists()
    resumed = train("small_mlp", rule, hparams, checkpoint=ckpt, checkpoint_every=0, **kw)
    assert numbers(resumed) == numbers(whole)
    assert resumed["resumed_after"] == [2] and "resumed_after" not in whole
    assert resumed["seconds"] > sum(e["train_seconds"] for e in resumed["epochs"][2:])


def test_cnn_resumes_through_autograd(fixture_dir, tmp_path):
    deep = data.load_fashion_mnist(fixture_dir, val_size=64, protocol="deepobs", batch_size=32, download=False)
    kw = dict(data=deep, epochs=3, batch_size=32, seed=1, data_protocol="deepobs", eval_size=40)
    whole = train("cnn", "momentum", {"lr": 0.01, "momentum": 0.99}, **kw)
    ckpt = tmp_path / "cnn.pt"
    with pytest.raises(Stop):
        train("cnn", "momentum", {"lr": 0.01, "momentum": 0.99}, checkpoint=ckpt, checkpoint_every=0,
              callback=stop_in_epoch(2, whole["epochs"][0]["steps"]), **kw)
    resumed = train("cnn", "momentum", {"lr": 0.01, "momentum": 0.99}, checkpoint=ckpt, **kw)
    assert numbers(resumed) == numbers(whole) and resumed["resumed_after"] == [1]


def test_no_checkpoint_after_the_last_epoch_and_none_before_the_interval(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    train("small_mlp", "sgd", {"lr": 0.05}, data=tiny, epochs=2, checkpoint=ckpt, checkpoint_every=0)
    assert ckpt.exists()                  # after epoch 1, not replaced by a final one
    assert len(torch.load(ckpt, weights_only=True)["epochs"]) == 1
    other = tmp_path / "later.pt"
    train("small_mlp", "sgd", {"lr": 0.05}, data=tiny, epochs=2, checkpoint=other, checkpoint_every=3600)
    assert not other.exists()


def test_checkpoint_of_another_run_or_corrupt_is_ignored_with_a_warning(tiny, tmp_path):
    kw = dict(data=tiny, epochs=2, batch_size=32)
    ckpt = tmp_path / "run.pt"
    train("small_mlp", "sgd", {"lr": 0.05}, seed=0, checkpoint=ckpt, checkpoint_every=0, **kw)
    whole = train("small_mlp", "sgd", {"lr": 0.05}, seed=1, **kw)
    with pytest.warns(RuntimeWarning, match="run.pt: it belongs to another run configuration"):
        other = train("small_mlp", "sgd", {"lr": 0.05}, seed=1, checkpoint=ckpt, **kw)
    assert numbers(other) == numbers(whole) and "resumed_after" not in other
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="run.pt: cannot read it"):
        assert load_checkpoint(ckpt, whole["config"]) is None
    with pytest.warns(RuntimeWarning, match="cannot read it"):
        again = train("small_mlp", "sgd", {"lr": 0.05}, seed=1, checkpoint=ckpt, **kw)
    assert numbers(again) == numbers(whole)


def test_invalid_checkpoint_every_is_named(tiny):
    with pytest.raises(ValueError, match="Invalid checkpoint_every: -1"):
        train("small_mlp", "sgd", {"lr": 0.05}, data=tiny, max_steps=1, checkpoint_every=-1)


def test_worker_resumes_from_and_then_deletes_its_checkpoint(fixture_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_DIR", str(fixture_dir))
    cfg = RunConfig(model="small_mlp", rule="adam", hparams={"lr": 1e-3}, epochs=3, seed=0, val_size=64,
                    threads=1)
    storage = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    ckpts, runs = tmp_path / "ckpt", tmp_path / "runs"
    tiny = data.load_fashion_mnist(fixture_dir, val_size=64)
    # a worker stopped in epoch 3 left a checkpoint after epoch 2 under the run's key
    with pytest.raises(Stop):
        train(data=tiny, checkpoint=ckpts / f"{cfg.key}.pt", checkpoint_every=0,
              callback=stop_in_epoch(3, len(tiny.train_y) // 64 + 1), **cfg.train_kwargs())
    assert (ckpts / f"{cfg.key}.pt").exists()
    summary = sweep.run_worker([cfg], storage, runs_dir=runs, data=tiny, checkpoint_dir=ckpts)
    assert summary["ran"] == 1 and not list(ckpts.iterdir())
    stored = sweep.results.read_run(sweep.results.run_path(runs, cfg.model, cfg.rule, cfg.key))["record"]
    fresh = train(data=tiny, **cfg.train_kwargs())
    assert stored["resumed_after"] == [2]
    assert [e["test_acc"] for e in stored["epochs"]] == [e["test_acc"] for e in fresh["epochs"]]
    assert [e["train_loss"] for e in stored["epochs"]] == [e["train_loss"] for e in fresh["epochs"]]
