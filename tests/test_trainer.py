"""trainer.py and models.py on tiny fixture data: determinism, divergence, the record's shape."""
import json
import math
import warnings

import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.engine import data, models
from optreport.engine import train as trainer
from optreport.engine.train import train

from conftest import needs_torch_compile

RULES = ["sgd", "momentum", "adam", "gravity", "cosine"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls: one thread is faster, and much faster on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = data.write_fixture(tmp_path_factory.mktemp("fmnist"), 400, 60)
    return data.load_fashion_mnist(root, val_size=80)


@pytest.mark.parametrize("name,n_params", [("mlp", 669_706), ("small_mlp", 52_650), ("cnn", 3_274_634)])
def test_models(name, n_params):
    m = models.build_model(name, seed=0)
    assert sum(p.numel() for p in m.parameters()) == n_params
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    same = models.build_model(name, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), same.parameters()))
    other = models.build_model(name, seed=1)
    assert not torch.equal(next(m.parameters()), next(other.parameters()))


def test_flops_per_example():
    assert models.flops_per_example(models.build_model("mlp")) == 2 * (784 * 512 + 512 * 512 + 512 * 10)


def test_unknown_names(tiny):
    with pytest.raises(ValueError, match="Unknown model"):
        models.build_model("resnet", 0)
    with pytest.raises(ValueError, match="Unknown rule"):
        train("mlp", "nope", {"lr": 0.1}, data=tiny, max_steps=1)


@pytest.mark.parametrize("rule", RULES)
def test_same_seed_identical(tiny, rule):
    kw = dict(data=tiny, epochs=2, batch_size=32, seed=3, max_steps=15)
    a = train("mlp", rule, {"lr": 0.01}, **kw)
    b = train("mlp", rule, {"lr": 0.01}, **kw)
    def strip(r):
        return [{k: v for k, v in e.items() if "seconds" not in k} for e in r["epochs"]]
    assert a["step_losses"] == b["step_losses"] and strip(a) == strip(b)
    assert len(a["step_losses"]) == 15 and a["steps"] == 15
    assert [e["epoch"] for e in a["epochs"]] == [1, 2]         # 10 steps per epoch: 10 + 5
    c = train("mlp", rule, {"lr": 0.01}, **{**kw, "seed": 4})
    assert c["step_losses"] != a["step_losses"]


def test_record_is_strict_json_and_complete(tiny):
    rec = train("small_mlp", "sgd", {"lr": 0.1}, data=tiny, epochs=2)
    json.dumps(rec, allow_nan=False)
    assert rec["diverged"] is False and rec["diverged_epoch"] is None
    assert rec["config"]["model"] == "small_mlp" and rec["config"]["hparams"] == {"lr": 0.1}
    e = rec["epochs"][0]
    for k in ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "train_seconds", "step_seconds"]:
        assert k in e
    assert len(rec["step_losses"]) == 2 * math.ceil(320 / 64)
    assert 0 <= e["step_seconds"] <= e["train_seconds"] <= rec["seconds"]
    assert e["train_loss"] == pytest.approx(sum(rec["step_losses"][:5]) / 5)
    # the task is learnable: the loss falls
    assert rec["epochs"][-1]["train_loss"] < rec["epochs"][0]["train_loss"]


def test_divergence_is_recorded_not_raised(tiny):
    rec = train("mlp", "sgd", {"lr": 1e6}, data=tiny, epochs=3, batch_size=16, check_every=7)
    assert rec["diverged"] is True and rec["diverged_epoch"] == 1
    assert len(rec["epochs"]) == 1
    assert rec["step_losses"][-1] is None                   # first non-finite step is kept, as null
    assert all(v is not None for v in rec["step_losses"][:-1])
    assert rec["epochs"][0]["train_loss"] is None
    json.dumps(rec, allow_nan=False)


def test_callback_and_max_steps(tiny):
    seen = []
    rec = train("mlp", "gravity", {"lr": 0.1}, data=tiny, epochs=5, max_steps=7,
                callback=lambda step, model, opt, loss: seen.append((step, float(loss))))
    assert [s for s, _ in seen] == list(range(1, 8))
    assert [loss for _, loss in seen] == pytest.approx(rec["step_losses"])


def test_compile_falls_back(tiny, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no compiler")
    monkeypatch.setattr(torch, "compile", broken)
    ref = train("mlp", "sgd", {"lr": 0.01}, data=tiny, max_steps=3)
    rec = train("mlp", "sgd", {"lr": 0.01}, data=tiny, max_steps=3, compile=True)
    assert rec["step_losses"] == ref["step_losses"]


def test_threads_restored_and_rng_untouched(tiny):
    before_threads, before_rng = torch.get_num_threads(), torch.random.get_rng_state()
    train("mlp", "sgd", {"lr": 0.01}, data=tiny, max_steps=2, threads=1)
    assert torch.get_num_threads() == before_threads
    assert torch.equal(torch.random.get_rng_state(), before_rng)


def test_evaluate_matches_manual(tiny):
    m = models.build_model("mlp", 0)
    loss, acc = trainer.evaluate(m, tiny.test_x, tiny.test_y, batch_size=7)
    with torch.no_grad():
        out = m(tiny.test_x)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, tiny.test_y)), rel=1e-5)
    assert acc == pytest.approx(float((out.argmax(1) == tiny.test_y).float().mean()))


def test_flush_denormal_recorded_and_switched_off_after(tiny):
    tiny_float = torch.tensor([1e-39])          # subnormal in float32
    rec = train("small_mlp", "adam", {"lr": 1e-3}, data=tiny, epochs=1, max_steps=3)
    assert rec["config"]["flush_denormal"] is True
    assert (tiny_float * 1.0).item() != 0.0     # torch's default (no flushing) is back
    rec = train("small_mlp", "adam", {"lr": 1e-3}, data=tiny, epochs=1, max_steps=3,
                flush_denormal=False)
    assert rec["config"]["flush_denormal"] is False


def test_compiled_step_where_the_rule_has_one(tiny):
    """The trainer uses a rule's compiled step by default, says so in the record, and the
    result agrees with the uncompiled step (to rounding: fused loops round differently)."""
    needs_torch_compile()
    kw = dict(data=tiny, epochs=1, batch_size=32, seed=1, max_steps=10)
    with warnings.catch_warnings():
        # no fallback to eager, even late in a test session that compiled many kernel versions
        warnings.simplefilter("error", RuntimeWarning)
        fused = train("mlp", "adam", {"lr": 1e-3}, **kw)
        train("small_mlp", "adam", {"lr": 1e-3, "amsgrad": True}, **kw)
    plain = train("mlp", "adam", {"lr": 1e-3}, compile_step=False, **kw)
    assert fused["config"]["compiled_step"] is True and plain["config"]["compiled_step"] is False
    assert fused["step_losses"] == pytest.approx(plain["step_losses"], rel=1e-4)
    assert all(trainer.has_compiled_step(r) for r in OPTIMIZERS)     # every rule has one now
    # an explicit compiled=False in the hyper-parameters wins
    assert train("mlp", "adam", {"lr": 1e-3, "compiled": False}, **kw)["config"]["compiled_step"] is False
