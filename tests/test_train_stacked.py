"""engine.train.train_stacked: several seeds of one configuration trained stacked give, bit for bit,
the records ``train`` gives for each seed alone (timings aside), through divergence, schedules and
checkpoints; what cannot be stacked is trained one seed after another."""
import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.engine import data
from optreport.engine.train import stackable, train, train_stacked

from conftest import needs_torch_compile

# The report's workers run one torch thread each (engine.stacked: with more, the bits may differ).
pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    """Stands for the sweep being stopped in the middle of an epoch."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return data.load_fashion_mnist(data.write_fixture(tmp_path_factory.mktemp("fmnist"), 320, 60), val_size=64)


def numbers(rec):
    """The record without its timings, its resume marker and its stacking marker."""
    epochs = [{k: v for k, v in e.items() if "seconds" not in k} for e in rec["epochs"]]
    rest = {k: v for k, v in rec.items() if k not in ("epochs", "seconds", "resumed_after", "stacked")}
    return epochs, rest


def alone(tiny, rule, hparams, seeds, **kw):
    return [train("small_mlp", rule, hparams, data=tiny, seed=s, **kw) for s in seeds]


@pytest.mark.parametrize("rule", list(OPTIMIZERS))
def test_every_rule_stacked_equals_each_seed_alone(tiny, rule):
    hparams = {"lr": 1.0 if rule == "adadelta" else 0.02}
    kw = dict(epochs=2, batch_size=32, compile_step=False)
    recs = train_stacked("small_mlp", rule, hparams, data=tiny, seeds=[0, 1, 2], **kw)
    assert [numbers(r) for r in recs] == [numbers(r) for r in alone(tiny, rule, hparams, [0, 1, 2], **kw)]
    assert all(r["stacked"] == 3 for r in recs)
    assert [r["config"]["seed"] for r in recs] == [0, 1, 2]


@pytest.mark.parametrize("rule,schedule", [("sgd", "cosine"), ("gravity", "constant"), ("adam", "cosine")])
def test_compiled_step_and_schedules(tiny, rule, schedule):
    """The report's mode: the rule's compiled formula over every model's parameters."""
    needs_torch_compile()
    kw = dict(epochs=2, batch_size=32, schedule=schedule, n_train=200)
    recs = train_stacked("mlp", rule, {"lr": 0.01}, data=tiny, seeds=[3, 1], **kw)
    assert recs[0]["config"]["compiled_step"] is True
    assert [numbers(r) for r in recs] == [numbers(train("mlp", rule, {"lr": 0.01}, data=tiny, seed=s, **kw))
                                          for s in (3, 1)]


def test_a_diverged_model_ends_alone_and_leaves_the_stack(tiny):
    """Momentum at lr 2 on the fixture: seed 1 diverges in epoch 1 and seed 3 in epoch 2 (alone as
    stacked); the other three train on, restacked twice, as they would alone."""
    kw = dict(epochs=4, batch_size=16, check_every=5)
    seeds = [0, 1, 2, 3, 4]
    solo = alone(tiny, "momentum", {"lr": 2.0}, seeds, **kw)
    assert [r["diverged_epoch"] for r in solo] == [None, 1, None, 2, None]      # the premise of the test
    seen = []
    recs = train_stacked("small_mlp", "momentum", {"lr": 2.0}, data=tiny, seeds=seeds,
                         callback=lambda step, nets, opt, losses: seen.append(len(nets)), **kw)
    assert [numbers(r) for r in recs] == [numbers(r) for r in solo]
    assert seen[0] == 5 and seen[-1] == 3 and sorted(set(seen)) == [3, 4, 5]
    assert recs[1]["steps"] == solo[1]["steps"] < recs[0]["steps"]


@pytest.mark.parametrize("rule", ["gravity", "adam"])
def test_checkpoints_resume_stacked_or_alone(tiny, tmp_path, rule):
    """A stacked run stopped in epoch 3 resumes stacked, or each seed alone, to the uninterrupted records;
    a checkpoint written alone resumes stacked too."""
    kw = dict(epochs=4, batch_size=32, schedule="cosine", compile_step=False)
    hp = {"lr": 0.05}
    solo = alone(tiny, rule, hp, [0, 1], **kw)
    steps = solo[0]["epochs"][0]["steps"]

    def stop(step, *_):
        if step == 2 * steps + 2:
            raise Stop

    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    with pytest.raises(Stop):
        train_stacked("small_mlp", rule, hp, data=tiny, seeds=[0, 1], checkpoints=paths, checkpoint_every=0,
                      callback=stop, **kw)
    assert all(p.exists() for p in paths)
    copies = [tmp_path / "a2.pt", tmp_path / "b2.pt"]
    for p, c in zip(paths, copies):
        c.write_bytes(p.read_bytes())
    resumed = train_stacked("small_mlp", rule, hp, data=tiny, seeds=[0, 1], checkpoints=paths, **kw)
    assert [numbers(r) for r in resumed] == [numbers(r) for r in solo]
    assert [r["resumed_after"] for r in resumed] == [[2], [2]]
    for s, c, whole in zip([0, 1], copies, solo):          # the same files, each resumed alone
        r = train("small_mlp", rule, hp, data=tiny, seed=s, checkpoint=c, **kw)
        assert numbers(r) == numbers(whole) and r["resumed_after"] == [2]
    # written alone (seed 0 and seed 1 both stopped in epoch 3), resumed stacked
    for s in (0, 1):
        with pytest.raises(Stop):
            train("small_mlp", rule, hp, data=tiny, seed=s, checkpoint=copies[s], checkpoint_every=0,
                  callback=stop, **kw)
    resumed = train_stacked("small_mlp", rule, hp, data=tiny, seeds=[0, 1], checkpoints=copies, **kw)
    assert [numbers(r) for r in resumed] == [numbers(r) for r in solo] and resumed[0]["stacked"] == 2


def test_checkpoints_at_different_steps_train_one_after_another(tiny, tmp_path):
    kw = dict(epochs=3, batch_size=32, compile_step=False)
    solo = alone(tiny, "sgd", {"lr": 0.05}, [0, 1], **kw)
    steps = solo[0]["epochs"][0]["steps"]

    def stop(step, *_):
        if step == steps + 2:
            raise Stop
    path = tmp_path / "a.pt"
    with pytest.raises(Stop):
        train("small_mlp", "sgd", {"lr": 0.05}, data=tiny, seed=0, checkpoint=path, checkpoint_every=0,
              callback=stop, **kw)
    recs = train_stacked("small_mlp", "sgd", {"lr": 0.05}, data=tiny, seeds=[0, 1], checkpoints=[path, None], **kw)
    assert [numbers(r) for r in recs] == [numbers(r) for r in solo]
    assert recs[0]["resumed_after"] == [1] and "stacked" not in recs[0]


def test_what_cannot_be_stacked_is_trained_seed_by_seed(tiny):
    assert stackable("mlp") and stackable("small_mlp")
    assert not stackable("cnn") and not stackable("mlp", fast_path=False) and not stackable("mlp", compile=True)
    kw = dict(epochs=1, batch_size=32, max_steps=3, compile_step=False, fast_path=False)
    recs = train_stacked("small_mlp", "adam", {"lr": 0.01}, data=tiny, seeds=[0, 1], **kw)
    assert [numbers(r) for r in recs] == [numbers(r) for r in alone(tiny, "adam", {"lr": 0.01}, [0, 1], **kw)]
    assert all("stacked" not in r for r in recs)


def test_stacked_timings_are_shares_of_the_stack(tiny):
    recs = train_stacked("small_mlp", "sgd", {"lr": 0.05}, data=tiny, seeds=[0, 1], epochs=1, batch_size=32)
    a, b = recs
    assert a["epochs"][0]["train_seconds"] == b["epochs"][0]["train_seconds"] > 0
    assert a["seconds"] > a["epochs"][0]["train_seconds"]


def test_invalid_seeds_and_checkpoints_are_named(tiny):
    with pytest.raises(ValueError, match="Invalid seeds"):
        train_stacked("small_mlp", "sgd", {"lr": 0.1}, data=tiny, seeds=[])
    with pytest.raises(ValueError, match="Invalid seeds"):
        train_stacked("small_mlp", "sgd", {"lr": 0.1}, data=tiny, seeds=[1, 1])
    with pytest.raises(ValueError, match="Invalid checkpoints"):
        train_stacked("small_mlp", "sgd", {"lr": 0.1}, data=tiny, seeds=[0, 1], checkpoints=[None])
    with pytest.raises(ValueError, match="Unknown rule"):
        train_stacked("small_mlp", "nope", {"lr": 0.1}, data=tiny, seeds=[0, 1])
    assert torch.get_num_threads() == 1
