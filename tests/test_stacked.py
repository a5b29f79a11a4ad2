"""engine.stacked: K models trained in lockstep give, bit for bit, each model's numbers alone."""
import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.engine import data as data_mod
from optreport.engine.fastpath import LinearStack
from optreport.engine.models import build_model
from optreport.engine.stacked import StackedLinearStack, stacked_param_groups
from optreport.engine.train import evaluate, make_optimizer

from conftest import needs_torch_compile

SEEDS = (0, 1, 2)


# The report's workers run one torch thread each; with more, a single model's ``mm`` is split
# across threads differently from ``bmm``'s one slice per thread, and the bits may differ.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = data_mod.write_fixture(tmp_path_factory.mktemp("fmnist"), n_train=600, n_test=200)
    return data_mod.load_fashion_mnist(d, val_size=100)


def _batches(seed, n, steps, b):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [perm[i * b:(i + 1) * b] for i in range(steps)]


def _alone(model, rule, seed, data, steps, b, compiled):
    net = build_model(model, seed)
    opt = make_optimizer(rule, net.parameters(), {"lr": 0.01}, compile_step=compiled)
    stack = LinearStack.of(net)
    losses = []
    for idx in _batches(seed, len(data.train_y), steps, b):
        _, _, loss = stack.step(data.train_x, data.train_y, idx)
        opt.step()
        losses.append(loss.item())
    return net, losses


def _stacked(model, rule, data, steps, b, compiled):
    nets = [build_model(model, s) for s in SEEDS]
    stack = StackedLinearStack.of(nets)
    opt = make_optimizer(rule, stacked_param_groups(rule, nets), {"lr": 0.01}, compile_step=compiled)
    batches = [_batches(s, len(data.train_y), steps, b) for s in SEEDS]
    losses = [[] for _ in SEEDS]
    for i in range(steps):
        _, _, ls = stack.step(data.train_x, data.train_y, [bs[i] for bs in batches])
        opt.step()
        for k, loss in enumerate(ls):
            losses[k].append(loss.item())
    return nets, losses


def _check_equal(model, rule, data, steps, compiled, b=32):
    nets, losses = _stacked(model, rule, data, steps, b, compiled)
    for k, seed in enumerate(SEEDS):
        alone, alone_losses = _alone(model, rule, seed, data, steps, b, compiled)
        assert losses[k] == alone_losses, (rule, seed)
        for (name, p), q in zip(nets[k].named_parameters(), alone.parameters()):
            assert torch.equal(p, q), (rule, seed, name)
        assert evaluate(nets[k], data.test_x, data.test_y) == evaluate(alone, data.test_x, data.test_y)


@pytest.mark.parametrize("rule", list(OPTIMIZERS))
def test_every_rule_eager_is_each_models_own_training(data, rule):
    _check_equal("small_mlp", rule, data, steps=4, compiled=False)


@pytest.mark.parametrize("rule", ["sgd", "gravity"])
def test_compiled_step_is_each_models_own_training(data, rule):
    """The report's mode (compiled formula over all models' parameters; Gravity one group per model)."""
    needs_torch_compile()
    _check_equal("mlp", rule, data, steps=3, compiled=True)


@pytest.mark.slow
@pytest.mark.parametrize("rule", [r for r in OPTIMIZERS if r not in ("sgd", "gravity")])
def test_compiled_step_every_rule(data, rule):
    needs_torch_compile()
    _check_equal("mlp", rule, data, steps=3, compiled=True)


def test_parameters_are_views_of_the_stacked_tensors(data):
    nets = [build_model("small_mlp", s) for s in SEEDS]
    w0 = [list(net.parameters())[0].detach().clone() for net in nets]
    stack = StackedLinearStack.of(nets)
    first = [list(net.parameters())[0] for net in nets]
    assert all(torch.equal(p, w) for p, w in zip(first, w0))               # values kept
    assert all(p.untyped_storage().data_ptr() == stack.weight[0].untyped_storage().data_ptr() for p in first)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in first)
    assert len(stacked_param_groups("adam", nets)) == sum(len(list(n.parameters())) for n in nets)
    groups = stacked_param_groups("gravity", nets)                         # Gravity: one group per model
    assert len(groups) == len(SEEDS) and all(isinstance(g, dict) for g in groups)


def test_not_stackable_and_bad_batches(data):
    assert StackedLinearStack.of([build_model("mlp", 0), build_model("small_mlp", 0)]) is None   # shapes differ
    assert StackedLinearStack.of([]) is None
    stack = StackedLinearStack.of([build_model("small_mlp", s) for s in SEEDS])
    idx = torch.arange(8)
    with pytest.raises(ValueError, match="idxs"):
        stack.step(data.train_x, data.train_y, [idx, idx])
    with pytest.raises(ValueError, match="same size"):
        stack.step(data.train_x, data.train_y, [idx, idx, idx[:4]])
    with pytest.raises(ValueError, match="Unknown rule"):
        stacked_param_groups("nosuchrule", [])
