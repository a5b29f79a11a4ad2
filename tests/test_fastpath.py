"""engine.fastpath: the hand-written forward/backward gives autograd's numbers bit for bit."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optimizers import OPTIMIZERS
from optreport.engine import data, models
from optreport.engine.fastpath import LinearStack
from optreport.engine.train import train

LRS = {"sgd": 0.1, "momentum": 0.05, "nag": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adadelta": 1.0,
       "adam": 1e-3, "nadam": 1e-3, "adamw": 1e-3, "gravity": 0.1, "cosine": 0.05}
TIMINGS = ("train_seconds", "step_seconds", "eval_seconds")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = data.write_fixture(tmp_path_factory.mktemp("fmnist"), 400, 60)
    return data.load_fashion_mnist(root, val_size=80)


def _run(tiny, model, rule, fast, **kw):
    """train() with ``fast_path=fast``; returns (record without timings, final parameters)."""
    final = {}

    def keep(step, net, opt, loss):
        final["params"] = [p.detach().clone() for p in net.parameters()]
    rec = train(model, rule, kw.pop("hparams", {"lr": LRS[rule]}), data=tiny, callback=keep,
                fast_path=fast, **kw)
    rec.pop("seconds")
    for e in rec["epochs"]:
        for k in TIMINGS:
            e.pop(k)
    return rec, final["params"]


def _assert_identical(a, b):
    (ra, pa), (rb, pb) = a, b
    assert ra == rb                                            # losses, accuracies, divergence: exact
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        assert torch.equal(x, y), (x - y).abs().max()


@pytest.mark.parametrize("rule", sorted(OPTIMIZERS))
def test_every_rule_trains_the_same_bits_with_and_without_autograd(tiny, rule):
    # 320 training images at batch 48: 6 full batches and one of 32 per epoch; 2 epochs
    kw = dict(epochs=2, batch_size=48, seed=5, n_train=320, compile_step=False)
    _assert_identical(_run(tiny, "mlp", rule, True, **kw), _run(tiny, "mlp", rule, False, **kw))


@pytest.mark.parametrize("rule", ["adam", "gravity"])
def test_compiled_step_weight_decay_schedule_and_small_mlp_the_same_bits(tiny, rule):
    hp = {"lr": LRS[rule], "weight_decay": 1e-2}
    kw = dict(epochs=2, batch_size=64, seed=2, schedule="cosine", hparams=hp)
    _assert_identical(_run(tiny, "small_mlp", rule, True, **kw), _run(tiny, "small_mlp", rule, False, **kw))


def test_divergence_is_recorded_the_same(tiny):
    kw = dict(epochs=3, batch_size=32, seed=1, compile_step=False, hparams={"lr": 1e4}, check_every=3)
    fast, slow = _run(tiny, "mlp", "sgd", True, **kw), _run(tiny, "mlp", "sgd", False, **kw)
    assert fast[0]["diverged"] and slow[0]["diverged"]
    assert fast[0]["diverged_epoch"] == slow[0]["diverged_epoch"]
    assert fast[0]["step_losses"] == slow[0]["step_losses"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_equal_autograd_for_any_batch(dtype):
    net = models.build_model("mlp", seed=3).to(dtype)
    gen = torch.Generator().manual_seed(0)
    x_all = torch.randn(50, 1, 28, 28, generator=gen, dtype=dtype)
    y_all = torch.randint(0, 10, (50,), generator=gen)
    stack = LinearStack.of(net)
    assert stack is not None
    for idx in (torch.arange(17), torch.tensor([3, 3, 40, 7]), torch.arange(17)):   # sizes reuse buffers
        logits, y, loss = stack.step(x_all, y_all, idx)
        fast = [p.grad.clone() for p in net.parameters()]
        ref = net(x_all[idx])
        ref_loss = F.cross_entropy(ref, y_all[idx])
        grads = torch.autograd.grad(ref_loss, list(net.parameters()))
        assert torch.equal(logits, ref.detach()) and torch.equal(y, y_all[idx])
        assert torch.equal(loss, ref_loss.detach())
        for a, b in zip(fast, grads):
            assert torch.equal(a, b)


def test_only_plain_linear_relu_stacks_take_the_fast_path():
    assert LinearStack.of(models.build_model("mlp")) is not None
    assert LinearStack.of(models.build_model("small_mlp")) is not None
    assert LinearStack.of(nn.Sequential(nn.Linear(4, 3))) is not None
    assert LinearStack.of(models.build_model("cnn")) is None
    assert LinearStack.of(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(inplace=True), nn.Linear(3, 2))) is None
    assert LinearStack.of(nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))) is None
    assert LinearStack.of(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(), nn.Linear(3, 2))) is None
    assert LinearStack.of(nn.Sequential(nn.Linear(4, 3, bias=False))) is None
    assert LinearStack.of(nn.Sequential(nn.Linear(4, 3), nn.ReLU())) is None           # ends in ReLU
    frozen = models.build_model("mlp")
    frozen[1].bias.requires_grad_(False)
    assert LinearStack.of(frozen) is None
    hooked = models.build_model("mlp")
    hooked[1].register_forward_hook(lambda *a: None)
    assert LinearStack.of(hooked) is None


def test_the_trainer_uses_it_for_the_mlp_only(tiny, monkeypatch):
    calls = []
    real = LinearStack.step

    def counting(self, *a):
        calls.append(1)
        return real(self, *a)
    monkeypatch.setattr(LinearStack, "step", counting)
    train("mlp", "sgd", {"lr": 0.1}, data=tiny, max_steps=3, compile_step=False)
    assert len(calls) == 3
    train("mlp", "sgd", {"lr": 0.1}, data=tiny, max_steps=3, compile_step=False, fast_path=False)
    assert len(calls) == 3
