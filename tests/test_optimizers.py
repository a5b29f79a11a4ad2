"""Tests of optimizers.py.

* classic rules: step-by-step conformance with torch.optim (>= 50 steps, random
  hyper-parameters, several shapes, float64 and float32, two param groups, a
  parameter without gradient, a closure, a state_dict round trip mid-run);
* Gravity and Cosine: against the plain-Python references in reference_rules.py;
* one formula per rule: the compiled path (compiled=True, the formula through torch.compile)
  follows the eager reference (compiled=False) to rounding for every rule; ``foreach`` changes
  nothing; a new lr or step does not recompile; the fallback to eager without a compiler;
* versions (rule_version) and the trainer's make_optimizer / has_compiled_step;
* inclusion relations of Choi et al. (2019) and Gravity = AdaGrad-Norm;
* invalid hyper-parameters (torch's messages for the classic rules);
* convergence on Rosenbrock and Beale.
"""

import copy
import math
import random
import re
import warnings

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import optimizers as O
from optreport.engine.train import has_compiled_step, make_optimizer

from conftest import needs_torch_compile
from reference_rules import CosineReference, GravityReference

SHAPES = [(), (7,), (5, 3), (2, 3, 2, 2)]
SHAPES_GROUP2 = [(4, 5), (3,)]
STEPS = 50
RELOAD_AT = 25


def _log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _maybe(rng, value):
    return value if rng.random() < 0.7 else 0.0


# rule -> (our class, torch class, extra torch kwargs, sampler of shared kwargs)
CLASSIC = {
    "sgd": (O.SGD, torch.optim.SGD, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-3, 1e-1), weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "momentum": (O.Momentum, torch.optim.SGD, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-3, 1e-1), momentum=r.uniform(0.1, 0.99),
        dampening=_maybe(r, r.uniform(0, 0.5)), weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "nag": (O.Nesterov, torch.optim.SGD, {"nesterov": True}, lambda r: dict(
        lr=_log_uniform(r, 1e-3, 1e-1), momentum=r.uniform(0.1, 0.99),
        weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "adagrad": (O.Adagrad, torch.optim.Adagrad, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-3, 1e-1), lr_decay=_maybe(r, r.uniform(0, 0.1)),
        initial_accumulator_value=_maybe(r, r.uniform(0, 1)), eps=r.choice([1e-10, 1e-6]),
        weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "rmsprop": (O.RMSprop, torch.optim.RMSprop, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-4, 1e-2), alpha=r.uniform(0.8, 0.999), eps=r.choice([1e-8, 1e-4]),
        momentum=_maybe(r, r.uniform(0, 0.9)), centered=r.random() < 0.5,
        weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "adadelta": (O.Adadelta, torch.optim.Adadelta, {}, lambda r: dict(
        lr=r.uniform(0.1, 1.0), rho=r.uniform(0.5, 0.99), eps=r.choice([1e-6, 1e-4]),
        weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "adam": (O.Adam, torch.optim.Adam, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-4, 1e-2), betas=(r.uniform(0.5, 0.99), r.uniform(0.9, 0.9999)),
        eps=r.choice([1e-8, 1e-4]), amsgrad=r.random() < 0.5,
        weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "nadam": (O.NAdam, torch.optim.NAdam, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-4, 1e-2), betas=(r.uniform(0.5, 0.99), r.uniform(0.9, 0.9999)),
        eps=r.choice([1e-8, 1e-4]), momentum_decay=_log_uniform(r, 1e-3, 1e-2),
        decoupled_weight_decay=r.random() < 0.5, weight_decay=_maybe(r, r.uniform(0, 0.1)))),
    "adamw": (O.AdamW, torch.optim.AdamW, {}, lambda r: dict(
        lr=_log_uniform(r, 1e-4, 1e-2), betas=(r.uniform(0.5, 0.99), r.uniform(0.9, 0.9999)),
        eps=r.choice([1e-8, 1e-4]), amsgrad=r.random() < 0.5, weight_decay=r.uniform(0, 0.1))),
}
DRAWS = 3


def _draw(name, draw):
    return CLASSIC[name][3](random.Random(f"{name}-{draw}"))


def _tolerances(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)


class Problem:
    """Two param groups of parameters with pseudo-random gradients, plus one parameter without grad.

    The gradient is grad = 0.5 * p + 0.3 * sin(3 p) + noise, the noise drawn from
    a seeded generator, applied identically to every copy of the problem.
    """

    def __init__(self, dtype, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.group1 = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
        self.group2 = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES_GROUP2]
        self.no_grad = torch.randn(3, 2, generator=gen, dtype=dtype)
        self.noise_gen = torch.Generator().manual_seed(seed + 1)

    def copy(self):
        other = copy.copy(self)
        other.group1 = [p.clone() for p in self.group1]
        other.group2 = [p.clone() for p in self.group2]
        other.no_grad = self.no_grad.clone()
        return other

    @property
    def with_grad(self):
        return self.group1 + self.group2

    def groups(self, group2_overrides):
        return [{"params": self.group1 + [self.no_grad]},
                dict(params=self.group2, **group2_overrides)]

    def noises(self, step):
        gen = torch.Generator().manual_seed(1000 + step)
        return [torch.randn(p.shape, generator=gen, dtype=self.dtype) for p in self.with_grad]

    def closure(self, noises):
        """A closure in torch's sense: recompute the loss and the gradients, return the loss."""

        def closure():
            for p in self.with_grad:
                p.requires_grad_(True)
                p.grad = None
            loss = sum((0.25 * p * p).sum() - 0.1 * torch.cos(3 * p).sum() for p in self.with_grad)
            loss.backward()
            for p, n in zip(self.with_grad, noises):
                p.requires_grad_(False)
                p.grad.add_(n)
            return loss

        return closure


def _group2_overrides(kwargs):
    out = {"lr": kwargs["lr"] * 0.5}
    if "weight_decay" in kwargs:
        out["weight_decay"] = kwargs["weight_decay"] * 0.5
    return out


def _assert_params_close(ps, qs, dtype, msg=""):
    tol = _tolerances(dtype)
    for i, (p, q) in enumerate(zip(ps, qs)):
        if not torch.allclose(p, q, **tol):  # cheap check first; assert_close explains a failure
            torch.testing.assert_close(p, q, **tol, msg=lambda m, i=i: f"{msg} param {i}: {m}")


# ---------------------------------------------------------------------------
# Conformance with torch.optim
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("draw", range(DRAWS))
@pytest.mark.parametrize("name", list(CLASSIC))
def test_matches_torch_step_by_step(name, draw, dtype):
    foreach = draw == 1          # accepted for torch compatibility; changes nothing
    ours_cls, torch_cls, torch_extra, _ = CLASSIC[name]
    kwargs = _draw(name, draw)
    overrides = _group2_overrides(kwargs)
    a, b = Problem(dtype, seed=draw), None
    b = a.copy()
    ours = ours_cls(a.groups(overrides), foreach=foreach, **kwargs)
    theirs = torch_cls(b.groups(overrides), **kwargs, **torch_extra)
    frozen = a.no_grad.clone()

    for t in range(STEPS):
        if t == RELOAD_AT:  # state_dict round trip into a fresh instance, mid-run
            saved = copy.deepcopy(ours.state_dict())
            ours = ours_cls(a.groups(overrides), foreach=foreach, **kwargs)
            ours.load_state_dict(saved)
        noises = a.noises(t)
        loss_a = ours.step(a.closure(noises))
        loss_b = theirs.step(b.closure(noises))
        assert torch.allclose(loss_a, loss_b, **_tolerances(dtype)), (loss_a, loss_b)
        _assert_params_close(a.with_grad, b.with_grad, dtype, msg=f"{name} {kwargs} step {t}")

    # the parameter without gradient neither moved nor got state
    assert torch.equal(a.no_grad, frozen)
    assert a.no_grad not in ours.state
    # our state keys are torch's
    for p, q in zip(a.with_grad, b.with_grad):
        assert set(ours.state[p]) == set(theirs.state[q])


@pytest.mark.parametrize("name", list(CLASSIC))
def test_loads_torch_state_dict(name):
    """A torch.optim state_dict loaded mid-run into ours continues as torch does."""
    ours_cls, torch_cls, torch_extra, _ = CLASSIC[name]
    kwargs = _draw(name, 0)
    overrides = _group2_overrides(kwargs)
    a = Problem(torch.float64)
    b = a.copy()
    theirs = torch_cls(b.groups(overrides), **kwargs, **torch_extra)
    for t in range(RELOAD_AT):
        theirs.step(b.closure(b.noises(t)))
    a = b.copy()
    ours = ours_cls(a.groups(overrides), **kwargs)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
    ours.param_groups[0]["foreach"] = ours.param_groups[1]["foreach"] = True
    for t in range(RELOAD_AT, STEPS):
        ours.step(a.closure(a.noises(t)))
        theirs.step(b.closure(b.noises(t)))
    _assert_params_close(a.with_grad, b.with_grad, torch.float64, msg=name)


# ---------------------------------------------------------------------------
# Invalid hyper-parameters
# ---------------------------------------------------------------------------
INVALID = [
    ("sgd", dict(lr=-1.0)),
    ("sgd", dict(weight_decay=-0.1)),
    ("momentum", dict(momentum=-0.5)),
    ("momentum", dict(lr=-0.01)),
    ("nag", dict(dampening=0.5)),
    ("nag", dict(weight_decay=-1.0)),
    ("adagrad", dict(lr=-1.0)),
    ("adagrad", dict(lr_decay=-1.0)),
    ("adagrad", dict(initial_accumulator_value=-1.0)),
    ("adagrad", dict(eps=-1.0)),
    ("adagrad", dict(weight_decay=-1.0)),
    ("rmsprop", dict(lr=-1.0)),
    ("rmsprop", dict(alpha=-0.5)),
    ("rmsprop", dict(eps=-1.0)),
    ("rmsprop", dict(momentum=-1.0)),
    ("rmsprop", dict(weight_decay=-1.0)),
    ("adadelta", dict(lr=-1.0)),
    ("adadelta", dict(rho=1.5)),
    ("adadelta", dict(eps=-1.0)),
    ("adadelta", dict(weight_decay=-1.0)),
    ("adam", dict(lr=-1.0)),
    ("adam", dict(betas=(1.0, 0.999))),
    ("adam", dict(betas=(0.9, -0.1))),
    ("adam", dict(eps=-1.0)),
    ("adam", dict(weight_decay=-1.0)),
    ("nadam", dict(lr=-1.0)),
    ("nadam", dict(betas=(-0.1, 0.999))),
    ("nadam", dict(momentum_decay=-1.0)),
    ("nadam", dict(weight_decay=-1.0)),
    ("adamw", dict(lr=-1.0)),
    ("adamw", dict(betas=(0.9, 1.5))),
]


@pytest.mark.parametrize("name, bad", INVALID, ids=[f"{n}-{list(b)[0]}" for n, b in INVALID])
def test_invalid_hyperparameters_match_torch(name, bad):
    ours_cls, torch_cls, torch_extra, _ = CLASSIC[name]
    extra = dict(torch_extra)
    if name in ("momentum", "nag"):
        extra.setdefault("momentum", 0.9)
    extra.update(bad)
    with pytest.raises(ValueError) as torch_error:
        torch_cls([torch.zeros(2)], **extra)
    with pytest.raises(ValueError, match=re.escape(str(torch_error.value))):
        ours_cls([torch.zeros(2)], **bad)


@pytest.mark.parametrize("cls, bad, word", [
    (O.Gravity, dict(lr=0.0), "learning rate"),
    (O.Gravity, dict(lr=-1.0), "learning rate"),
    (O.Gravity, dict(weight_decay=-1.0), "weight_decay"),
    (O.Cosine, dict(lr=-1.0), "learning rate"),
    (O.Cosine, dict(C=-0.5), "C"),
    (O.Cosine, dict(C=float("inf")), "C"),
    (O.Cosine, dict(C=float("nan")), "C"),
    (O.Cosine, dict(per="column"), "per"),
    (O.Cosine, dict(weight_decay=-1.0), "weight_decay"),
])
def test_invalid_hyperparameters_novel(cls, bad, word):
    with pytest.raises(ValueError, match=rf"Invalid {word}"):
        cls([torch.zeros(2)], **bad)


def test_registry():
    assert list(O.OPTIMIZERS) == ["sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta",
                                  "adam", "nadam", "adamw", "gravity", "cosine"]
    names = [c.__name__ for c in O.OPTIMIZERS.values()]
    assert names == ["SGD", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adadelta", "Adam",
                     "NAdam", "AdamW", "Gravity", "Cosine"]
    for cls in O.OPTIMIZERS.values():
        assert issubclass(cls, torch.optim.Optimizer)
        assert ".. math::" in cls.__doc__  # the update rule, written out


def test_defaults_match_torch():
    p = [torch.zeros(2)]
    for name, (ours_cls, torch_cls, torch_extra, _) in CLASSIC.items():
        # Momentum and Nesterov stand for SGD(momentum=0.9[, nesterov=True])
        extra = dict(torch_extra, momentum=0.9) if name in ("momentum", "nag") else torch_extra
        ours, theirs = ours_cls(p), torch_cls(p, **extra)
        for key, value in ours.defaults.items():
            if key not in ("foreach", "compiled"):
                assert theirs.defaults[key] == value, (name, key)
    assert O.Momentum(p).defaults["momentum"] == 0.9
    assert O.Nesterov(p).defaults["momentum"] == 0.9


# ---------------------------------------------------------------------------
# Gravity and Cosine against the plain-Python references
# ---------------------------------------------------------------------------
def _novel_problem(seed):
    gen = torch.Generator().manual_seed(seed)
    groups = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES],
              [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES_GROUP2]]
    return groups


def _grads(groups, step):
    """Deterministic gradients: 0.5 p + 0.3 sin(3p) + noise (noise with an occasional zero row)."""
    gen = torch.Generator().manual_seed(5000 + step)
    out = []
    for params in groups:
        gs = []
        for p in params:
            g = 0.5 * p + 0.3 * torch.sin(3 * p) + torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim >= 2 and step % 7 == 3:
                g[0].zero_()  # a zero row: cos must be 0 there
            gs.append(g)
        out.append(gs)
    return out


def _as_lists(groups_of_tensors):
    return [[t.reshape(-1).tolist() for t in ts] for ts in groups_of_tensors]


@pytest.mark.parametrize("accumulate", [True, False])
def test_gravity_matches_plain_python(accumulate):
    groups = _novel_problem(1)
    hyper = [dict(lr=0.05, weight_decay=0.0), dict(lr=0.2, weight_decay=0.01)]
    opt = O.Gravity([dict(params=ps, **h) for ps, h in zip(groups, hyper)],
                    accumulate=accumulate)
    ref = GravityReference([dict(params=ps, accumulate=accumulate, **h)
                            for ps, h in zip(_as_lists(groups), hyper)])
    assert opt.effective_lr() == pytest.approx([0.05, 0.2])
    for t in range(STEPS):
        grads = _grads(groups, t)
        for ps, gs in zip(groups, grads):
            for p, g in zip(ps, gs):
                p.grad = g
        opt.step()
        ref.step(_as_lists(grads))
        for ps, rps in zip(groups, ref.groups):
            for p, rp in zip(ps, rps["params"]):
                assert p.reshape(-1).tolist() == pytest.approx(rp, rel=1e-10, abs=1e-12)
        assert opt.effective_lr() == pytest.approx([1 / k for k in ref.k], rel=1e-12)
    # one S per group, kept in the state of the group's first parameter
    for gi, ps in enumerate(groups):
        assert opt.state[ps[0]]["sum_sq"] == pytest.approx(ref.S[gi], rel=1e-12)


@pytest.mark.parametrize("per", ["row", "tensor"])
def test_cosine_matches_plain_python(per):
    groups = _novel_problem(2)
    hyper = [dict(lr=0.05, C=1.8, weight_decay=0.0), dict(lr=0.02, C=1.2, weight_decay=0.01)]
    opt = O.Cosine([dict(params=ps, **h) for ps, h in zip(groups, hyper)], per=per)
    shapes = [SHAPES, SHAPES_GROUP2]
    ref = CosineReference([dict(params=ps, shapes=sh, per=per, **h)
                           for ps, sh, h in zip(_as_lists(groups), shapes, hyper)])
    for t in range(STEPS):
        grads = _grads(groups, t)
        for ps, gs in zip(groups, grads):
            for p, g in zip(ps, gs):
                p.grad = g
        opt.step()
        ref.step(_as_lists(grads))
        for gi, (ps, rps) in enumerate(zip(groups, ref.groups)):
            for pi, (p, rp) in enumerate(zip(ps, rps["params"])):
                assert p.reshape(-1).tolist() == pytest.approx(rp, rel=1e-10, abs=1e-12)
                cos = opt.state[p]["cos"]
                assert cos.ndim == 1
                assert cos.tolist() == pytest.approx(ref.cos[gi][pi], rel=1e-9, abs=1e-12)
                if t == 0:
                    assert (cos == 0).all()  # |m_0| = 0: the first step is SGD
    assert any((opt.state[p]["cos"] < 0).any() for p in groups[0])  # buffers did flip


def test_cosine_first_step_is_sgd_and_rows_are_independent():
    p = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    opt = O.Cosine([p], lr=0.1, C=1.8)
    p.grad = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(p, torch.tensor([[0.9, 2.0], [3.0, 3.9]], dtype=torch.float64))
    # second step: row 0 aligned (cos = 1), row 1 opposed (cos = -1)
    p.grad = torch.tensor([[2.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    opt.step()
    m = opt.state[p]["momentum_buffer"]
    torch.testing.assert_close(opt.state[p]["cos"], torch.tensor([1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(m, torch.tensor([[0.9 * 0.1 + 0.2, 0.0], [0.0, -0.9 * 0.1 - 0.1]],
                                               dtype=torch.float64))


# ---------------------------------------------------------------------------
# One formula per rule: eager (the reference) and compiled run the same function
# ---------------------------------------------------------------------------
ALL_RULE_KWARGS = {name: [_draw(name, d) for d in range(2)] for name in CLASSIC}
ALL_RULE_KWARGS["gravity"] = [dict(lr=0.1, accumulate=True), dict(lr=0.3, accumulate=False, weight_decay=0.01)]
ALL_RULE_KWARGS["cosine"] = [dict(lr=0.05, per="row"), dict(lr=0.05, C=1.5, per="tensor", weight_decay=0.01)]


def test_every_rule_has_one_formula_and_a_version():
    names = {"sgd": "sgd_update", "momentum": "momentum_update", "nag": "momentum_update",
             "adagrad": "adagrad_update", "rmsprop": "rmsprop_update",
             "adadelta": "adadelta_update", "adam": "adam_update", "nadam": "nadam_update",
             "adamw": "adam_update", "gravity": "gravity_update", "cosine": "cosine_update"}
    for name, cls in O.OPTIMIZERS.items():
        assert cls.formula is getattr(O, names[name]), name
        assert type(cls.__dict__.get("version")) is int and cls.version >= 1, name  # its own
        assert O.rule_version(name) == cls.version
        for old in ("step_param", "step_foreach", "step_compiled", "step_reference"):
            assert not hasattr(cls, old), (name, old)       # no second copy of the math
    with pytest.raises(ValueError, match="Unknown rule"):
        O.rule_version("lion")


def test_foreach_is_accepted_and_changes_nothing():
    for name, cls in O.OPTIMIZERS.items():
        kwargs = ALL_RULE_KWARGS[name][0]
        a = Problem(torch.float32, seed=3)
        b = a.copy()
        overrides = _group2_overrides(kwargs)
        one = cls(a.groups(overrides), foreach=False, **kwargs)
        other = cls(b.groups(overrides), foreach=True, **kwargs)
        for t in range(5):
            noises = a.noises(t)
            one.step(a.closure(noises))
            other.step(b.closure(noises))
        for p, q in zip(a.with_grad, b.with_grad):
            assert torch.equal(p, q), name


COMPILED_RULES = [n for n, c in O.OPTIMIZERS.items() if c.formula is not None]


def test_every_rule_has_a_compiled_path():
    assert COMPILED_RULES == list(O.OPTIMIZERS)
    for name in O.OPTIMIZERS:
        assert has_compiled_step(name)
        p = [torch.zeros(2, requires_grad=True)]
        assert make_optimizer(name, p, {"lr": 0.1}).param_groups[0]["compiled"] is True
        assert make_optimizer(name, p, {"lr": 0.1}, compile_step=False).param_groups[0]["compiled"] is False
        assert make_optimizer(name, p, {"lr": 0.1, "compiled": False}).param_groups[0]["compiled"] is False
    assert not has_compiled_step("lion")


def _eager_vs_compiled(name, dtype, kwargs, steps=30):
    cls = O.OPTIMIZERS[name]
    a = Problem(dtype, seed=5)
    b = a.copy()
    overrides = _group2_overrides(kwargs)
    ref = cls(a.groups(overrides), **kwargs)
    comp = cls(b.groups(overrides), compiled=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # a fallback to eager fails the test
        for t in range(steps):
            noises = a.noises(t)
            ref.step(a.closure(noises))
            comp.step(b.closure(noises))
    # a fused loop rounds differently from op by op (no fused multiply-add, ...)
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert a.no_grad not in comp.state
    for p, q in zip(a.with_grad, b.with_grad):
        torch.testing.assert_close(p, q, **tol)
        for key, value in ref.state[p].items():
            if torch.is_tensor(value) and key != "step":
                torch.testing.assert_close(value, comp.state[q][key], **tol)
            elif key == "step":
                assert torch.equal(value, comp.state[q][key])
            else:                                               # Gravity's S (a float)
                assert value == pytest.approx(comp.state[q][key], rel=1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", COMPILED_RULES)
def test_eager_equals_compiled(name, dtype):
    """compiled=True (the rule's formula through torch.compile) follows the eager reference
    (compiled=False, the same function) over 30 steps, two groups, a parameter without gradient."""
    needs_torch_compile()
    for kwargs in ALL_RULE_KWARGS[name]:
        _eager_vs_compiled(name, dtype, kwargs)


def _steps_changing_lr(name, steps, start):
    ps = [torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)]
    opt = O.OPTIMIZERS[name](ps, lr=0.01, compiled=True)
    for t in range(start, start + steps):
        opt.param_groups[0]["lr"] = 0.01 * (1 + math.cos(t))   # a schedule: a new lr every step
        for p in ps:
            p.grad = torch.randn_like(p)
        opt.step()


@pytest.mark.parametrize("name", ["adam"])          # every rule: the slow test below
def test_a_new_lr_or_step_does_not_recompile(name):
    """Hyper-parameters and step counts are tensor inputs of the compiled formula, not constants."""
    needs_torch_compile()
    _steps_changing_lr(name, 2, 0)                 # compiles (Momentum: its first step is eager)
    counters.clear()
    _steps_changing_lr(name, 6, 2)                 # a new optimizer, new lrs and steps
    assert counters["stats"]["unique_graphs"] == 0, dict(counters["stats"])
    assert sum(counters["recompiles"].values()) == 0 if "recompiles" in counters else True


@pytest.mark.slow
@pytest.mark.parametrize("name", list(O.OPTIMIZERS))
def test_a_new_lr_or_step_does_not_recompile_any_rule(name):
    test_a_new_lr_or_step_does_not_recompile(name)


def test_compiling_raises_the_recompile_limit():
    """Adam(compiled=True), built directly, gets the limit the trainer relies on."""
    needs_torch_compile()
    config = torch._dynamo.config
    before = config.recompile_limit
    config.recompile_limit = 8          # torch's default (set and restored by hand: dynamo's
    try:                                # config module does not survive monkeypatch's undo)
        _steps_changing_lr("adam", 1, 0)
        assert config.recompile_limit == O.RECOMPILE_LIMIT == 64
    finally:
        config.recompile_limit = max(before, O.RECOMPILE_LIMIT)


def test_compiled_path_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C compiler")
        return compiled
    monkeypatch.setattr(O, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    a = Problem(torch.float64, seed=6)
    b = a.copy()
    ref = O.Adam(a.groups({"lr": 0.005}), lr=0.01)
    comp = O.Adam(b.groups({"lr": 0.005}), lr=0.01, compiled=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed for adam_update") as record:
        for t in range(5):
            noises = a.noises(t)
            ref.step(a.closure(noises))
            comp.step(b.closure(noises))
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1   # warns once
    for p, q in zip(a.with_grad, b.with_grad):
        assert torch.equal(p, q)          # the same function, run eagerly


def test_compiled_needs_a_formula():
    class NoFormula(O.RuleOptimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, dict(lr=lr, weight_decay=0), compiled=True)
    with pytest.raises(ValueError, match="compiled"):
        NoFormula([torch.zeros(2, requires_grad=True)])


@pytest.mark.parametrize("name", ["gravity", "cosine"])
def test_novel_rules_state_dict_round_trip_and_closure(name):
    cls = O.OPTIMIZERS[name]
    kwargs = ALL_RULE_KWARGS[name][0]
    overrides = _group2_overrides(kwargs)
    a = Problem(torch.float64, seed=4)
    b = a.copy()
    straight = cls(b.groups(overrides), **kwargs)
    ours = cls(a.groups(overrides), **kwargs)
    for t in range(STEPS):
        if t == RELOAD_AT:
            saved = copy.deepcopy(ours.state_dict())
            ours = cls(a.groups(overrides), **kwargs)
            ours.load_state_dict(saved)
        noises = a.noises(t)
        loss_a = ours.step(a.closure(noises))
        loss_b = straight.step(b.closure(noises))
        assert torch.equal(loss_a, loss_b)
    for p, q in zip(a.with_grad, b.with_grad):
        assert torch.equal(p, q)
    assert a.no_grad not in ours.state
    if name == "gravity":
        assert ours.effective_lr() == straight.effective_lr()
        assert [set(ours.state[g["params"][0]]) for g in ours.param_groups] == [{"sum_sq"}] * 2


def test_gravity_keeps_s_in_first_parameter_even_without_grad():
    first, second = torch.zeros(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    opt = O.Gravity([first, second], lr=0.5)
    second.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    opt.step()
    assert opt.state[first] == {"sum_sq": 25.0}  # the documented exception
    assert torch.equal(first, torch.zeros(3, dtype=torch.float64))
    k = math.sqrt(1 / 0.5**2 + 25.0)
    torch.testing.assert_close(second, 1 - torch.tensor([3.0, 4.0], dtype=torch.float64) / k)
    assert opt.effective_lr() == [pytest.approx(1 / k)]


# ---------------------------------------------------------------------------
# Inclusion relations
# ---------------------------------------------------------------------------
def _run_pair(opt_a, opt_b, pa, pb, steps, grad_fn):
    for t in range(steps):
        pa.grad, pb.grad = grad_fn(pa, t), grad_fn(pb, t)
        opt_a.step()
        opt_b.step()


def _smooth_grad(p, t):
    gen = torch.Generator().manual_seed(t)
    return 0.5 * p + 0.3 * torch.sin(3 * p) + 0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype)


@pytest.mark.parametrize("cls", [O.Momentum, O.Nesterov])
def test_momentum_zero_is_sgd(cls):
    pa = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pb = pa.clone()
    _run_pair(cls([pa], lr=0.05, momentum=0.0, weight_decay=0.01),
              O.SGD([pb], lr=0.05, weight_decay=0.01), pa, pb, 60, _smooth_grad)
    assert torch.equal(pa, pb)


def test_rmsprop_with_alpha_one_and_unit_eps_is_momentum():
    """alpha = 1 keeps square_avg = 0, so the denominator is eps = 1: Momentum ⊆ RMSProp."""
    pa = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pb = pa.clone()
    _run_pair(O.RMSprop([pa], lr=0.05, alpha=1.0, eps=1.0, momentum=0.8),
              O.Momentum([pb], lr=0.05, momentum=0.8), pa, pb, 60, _smooth_grad)
    assert torch.equal(pa, pb)


def test_gravity_is_adagrad_norm():
    """AdaGrad-Norm (Ward, Wu & Bottou 2019): b_t^2 = b_{t-1}^2 + ||g_t||^2, x -= eta g / b_t."""
    lr = 0.1
    ps = [torch.randn(s, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
          for i, s in enumerate(SHAPES)]
    xs = [p.clone() for p in ps]
    opt = O.Gravity(ps, lr=lr)
    b_sq, eta = (1 / lr) ** 2, 1.0  # b0 = 1/lr, unit step size
    for t in range(STEPS):
        for p in ps:
            p.grad = _smooth_grad(p, t)
        opt.step()
        gs = [_smooth_grad(x, t) for x in xs]
        b_sq = b_sq + sum(float((g * g).sum()) for g in gs)
        xs = [x - eta * g / math.sqrt(b_sq) for x, g in zip(xs, gs)]
        for p, x in zip(ps, xs):
            torch.testing.assert_close(p, x, rtol=1e-12, atol=1e-14)
    assert opt.effective_lr()[0] == pytest.approx(1 / math.sqrt(b_sq), rel=1e-12)


@pytest.mark.parametrize("beta1", [0.9, 0.5])
def test_adam_with_huge_eps_tracks_momentum(beta1):
    """Adam ⊇ Momentum (Choi et al. 2019).

    With eps >> sqrt(v_hat), Adam's step is lr_a / (1 - beta1^t) * m_t / eps with
    m_t = (1 - beta1) * sum_s beta1^(t-s) g_s = (1 - beta1) * b_t, b_t being
    Momentum's buffer (b_1 = g_1, dampening 0).  With lr_a = lr_m * eps / (1 - beta1)
    the step is lr_m * b_t / (1 - beta1^t): Momentum's, once 1 - beta1^t ~ 1.
    The gradients do not depend on the parameters here, so the steps can be
    compared after the bias correction has faded.
    """
    lr_m, eps = 0.01, 1e8
    pa = torch.zeros(5, 4, dtype=torch.float64)
    pb = pa.clone()
    adam = O.Adam([pa], lr=lr_m * eps / (1 - beta1), betas=(beta1, 0.999), eps=eps)
    mom = O.Momentum([pb], lr=lr_m, momentum=beta1)

    def grad(p, t):
        gen = torch.Generator().manual_seed(t)
        return 1.0 + torch.randn(p.shape, generator=gen, dtype=p.dtype)

    _run_pair(adam, mom, pa, pb, 150, grad)
    start_a, start_b = pa.clone(), pb.clone()
    _run_pair(adam, mom, pa, pb, 50, grad)
    torch.testing.assert_close(pa - start_a, pb - start_b, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------
# Convergence on Rosenbrock and Beale
# ---------------------------------------------------------------------------
def rosenbrock(x, y):
    """(1 - x)^2 + 100 (y - x^2)^2; minimum 0 at (1, 1).  Returns (f, grad)."""
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2, (-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x))


def beale(x, y):
    """Beale's function; minimum 0 at (3, 0.5).  Returns (f, grad)."""
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y ** 2, 2.625 - x + x * y ** 3
    return a * a + b * b + c * c, (2 * a * (y - 1) + 2 * b * (y ** 2 - 1) + 2 * c * (y ** 3 - 1),
                                   2 * a * x + 4 * b * x * y + 6 * c * x * y ** 2)


SURFACES = {"rosenbrock": (rosenbrock, (-1.5, 2.0), (1.0, 1.0)),
            "beale": (beale, (1.0, 1.5), (3.0, 0.5))}

# (surface, rule) -> (kwargs, steps, loss threshold).  Learning rates picked from a
# log grid (1e-4 .. 3); the thresholds say how far each rule gets in that many
# steps (Rosenbrock's curved valley is slow for the rules without momentum).
# Initial losses: Rosenbrock 12.5, Beale 41.25.
CONVERGENCE = {
    ("rosenbrock", "sgd"): (dict(lr=1e-3), 3000, 1e-1),
    ("rosenbrock", "momentum"): (dict(lr=1e-3), 2000, 1e-4),
    ("rosenbrock", "nag"): (dict(lr=1e-3), 2000, 1e-4),
    ("rosenbrock", "adagrad"): (dict(lr=1.0), 3000, 5e-2),
    ("rosenbrock", "rmsprop"): (dict(lr=3e-3), 3000, 1e-2),
    ("rosenbrock", "adadelta"): (dict(lr=0.1), 3000, 1e-1),
    ("rosenbrock", "adam"): (dict(lr=0.1), 1000, 1e-4),
    ("rosenbrock", "nadam"): (dict(lr=1e-2), 3000, 1e-3),
    ("rosenbrock", "adamw"): (dict(lr=0.1, weight_decay=1e-4), 1000, 1e-3),
    ("rosenbrock", "gravity"): (dict(lr=1.0), 3000, 5e-2),
    ("rosenbrock", "cosine"): (dict(lr=3e-4), 3000, 1e-3),
    ("beale", "sgd"): (dict(lr=1e-2), 1000, 1e-4),
    ("beale", "momentum"): (dict(lr=3e-3), 1000, 1e-4),
    ("beale", "nag"): (dict(lr=3e-3), 1000, 1e-4),
    ("beale", "adagrad"): (dict(lr=1.0), 1000, 1e-4),
    ("beale", "rmsprop"): (dict(lr=1e-2), 1000, 1e-4),
    ("beale", "adadelta"): (dict(lr=0.1), 3000, 1e-3),
    ("beale", "adam"): (dict(lr=0.1), 1000, 1e-4),
    ("beale", "nadam"): (dict(lr=0.1), 1000, 1e-4),
    ("beale", "adamw"): (dict(lr=0.1, weight_decay=1e-4), 1000, 1e-3),
    ("beale", "gravity"): (dict(lr=0.1), 2000, 1e-4),
    ("beale", "cosine"): (dict(lr=3e-3), 1000, 1e-4),
}


@pytest.mark.parametrize("surface, name", list(CONVERGENCE), ids=[f"{s}-{n}" for s, n in CONVERGENCE])
def test_converges(surface, name):
    f, start, minimum = SURFACES[surface]
    kwargs, steps, threshold = CONVERGENCE[surface, name]
    p = torch.tensor(start, dtype=torch.float64)
    opt = O.OPTIMIZERS[name]([p], **kwargs)
    initial = f(*start)[0]
    for _ in range(steps):
        p.grad = torch.tensor(f(*p.tolist())[1], dtype=torch.float64)
        opt.step()
    loss = f(*p.tolist())[0]
    assert loss < threshold < initial, (surface, name, loss)
    if threshold <= 1e-4:
        assert math.dist(p.tolist(), minimum) < 0.05
