r"""Update rules of the report: one formula per rule, written once.

Every rule is a :class:`torch.optim.Optimizer`.  A small base class,
:class:`RuleOptimizer`, owns the loop that every rule shares: it walks the
parameter groups, gathers the parameters that have a gradient, creates their
state lazily (``init_state``), adds the L2 term ``g <- g + weight_decay * theta``
to the gradient (as ``torch.optim`` does) and hands the group to the rule's
``step_group``, which turns the group's hyper-parameters into per-step scalars
(bias corrections, step counts) and calls the rule's **formula**.

The formula (``<rule>_update`` below, the class attribute ``formula``) is the one
place a rule's math lives: a plain function of lists of tensors, every line of
code under the formula line it implements, the hyper-parameters passed as a
float64 tensor ``h`` (inputs, not constants: a new learning rate or step count
does not recompile).  The same function runs two ways:

* ``compiled=False`` (the default) -- eagerly, op by op: the *reference*, which the
  tests check against ``torch.optim`` (float64, 1e-10) and the plain-Python
  references of ``tests/reference_rules.py``;
* ``compiled=True`` -- handed to ``torch.compile``, which fuses it into one loop per
  tensor (what training uses, see ``optreport.engine.train.make_optimizer``).  It
  agrees with the eager run to rounding (tests).  If compiling fails (no C++
  compiler) it warns once and runs the same function eagerly.

So the code that a formula card shows (``optreport.analysis.conformance.rule_card``)
is the code that trains.  ``foreach`` is accepted for compatibility with
``torch.optim`` and changes nothing (there is one implementation).

Each rule class has an integer ``version`` (:func:`rule_version`).  It enters every
run's key: bump it when a change alters the numbers the rule produces (on either
path, in any dtype); ``tests/test_golden.py`` fails until you do.  A refactor that
keeps the numbers bit-identical keeps the version, and with it every stored run.

The classic rules mirror ``torch.optim`` (hyper-parameter names, defaults,
state keys, the tensor ``state["step"]``, error messages), so that they agree with
it step by step and load its ``state_dict``s.

Which rule contains which (Choi et al. 2019, "On Empirical Comparisons of
Optimizers for Deep Learning")::

    SGD  ⊆ Momentum ⊆ Adam ⊆ NAdam      Adam(eps -> inf, lr = lr_m * eps / (1 - beta1))
                                          tracks Momentum(lr_m, momentum=beta1)
                                          once the bias correction 1 - beta1**t -> 1
    SGD  ⊆ Nesterov ⊆ NAdam             Momentum/Nesterov with momentum = 0 are SGD
    Momentum ⊆ RMSprop                  RMSprop(alpha=1, eps=1, momentum=mu) keeps
                                          square_avg = 0, so it *is* Momentum(mu)
    Gravity  = AdaGrad-Norm               (Ward, Wu & Bottou 2019) with b0 = 1/lr, eta = 1
    Cosine   (no inclusion)               where momentum and gradient are aligned (cos = 1)
                                          its step is Momentum's with mu = C/2 = 0.9
                                          (lr folded into the buffer); elsewhere it differs

(NAdam contains Adam and Nesterov in Choi et al.'s parameterisation; torch's
NAdam with its ``momentum_decay`` schedule does not reduce to Adam exactly.)

Slips in the lecture notes (seed 001) that this module does *not* follow:

* RMSProp: the notes put the decay inside the square root.  The rule (and
  ``torch.optim.RMSprop``) keeps ``v <- alpha v + (1 - alpha) g**2`` outside and
  divides by ``sqrt(v) + eps``.
* AdaDelta: the notes accumulate the step ``dx`` itself; Zeiler (2012)
  accumulates its *square*, ``u <- rho u + (1 - rho) dx**2``.

Differences from ``torch.optim`` shared by every rule: the order of floating-point
operations is the formula's, not always torch's (the rules agree with torch to
rounding, 1e-10 relative in float64, not bitwise); ``foreach`` is ignored; state is
created on a parameter's first step (torch's Adagrad creates it in the
constructor).  Not supported: sparse gradients, complex parameters, ``maximize``,
``capturable``, ``differentiable``, ``fused``, tensor ``lr``.
"""

import math
import warnings

import torch
from torch.optim import Optimizer

__all__ = [
    "RuleOptimizer",
    "SGD",
    "Momentum",
    "Nesterov",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "NAdam",
    "AdamW",
    "Gravity",
    "Cosine",
    "OPTIMIZERS",
    "rule_version",
    "sgd_update",
    "momentum_update",
    "adagrad_update",
    "rmsprop_update",
    "adadelta_update",
    "adam_update",
    "nadam_update",
    "gravity_update",
    "cosine_update",
]

#: torch.compile keeps at most this many versions of a compiled formula per process (one per
#: dtype, number of tensors, option, shape set); torch's default of 8 runs out in a process that
#: trains many models and rules (a test session, a notebook kernel, a sweep worker), after which
#: the step would fall back to eager code with a warning.
RECOMPILE_LIMIT = 64


def _scalar_dtype():
    """dtype of torch's 0-d ``step`` / ``mu_product`` tensors (float32 unless default is float64)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _check_lr_and_weight_decay(lr, weight_decay):
    _check(0.0 <= lr, f"Invalid learning rate: {lr}")
    _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")


class RuleOptimizer(Optimizer):
    """Base class: the loop shared by every rule.

    A subclass sets
      * ``formula`` -- its update, a plain function of tensors (``staticmethod``);
      * ``version`` -- an integer, bumped when the rule's numbers change;
    and implements
      * ``init_state(state, group, param)`` -- fill a fresh per-parameter state;
      * ``step_group(group, params, grads, states)`` -- compute the step's scalars and call
        the formula through ``self.run(group, formula)``.

    ``grads`` handed to ``step_group`` already contain the L2 term
    ``weight_decay * param`` unless the group says ``decoupled_weight_decay``.
    """

    #: the rule's one formula (a staticmethod in every rule)
    formula = None
    #: bump when a change alters the numbers the rule produces (tests/test_golden.py)
    version = None
    #: whether the formula couples the parameters of a group (a sum over all of them, as
    #: Gravity's S): then models trained in one optimizer need a group each
    couples_group = False

    def __init__(self, params, defaults, foreach=None, compiled=False):
        _check(not compiled or type(self).formula is not None,
               f"Invalid compiled value: {compiled} ({type(self).__name__} has no formula to compile)")
        defaults = dict(defaults, foreach=foreach, compiled=bool(compiled))
        super().__init__(params, defaults)

    # ---- hooks -----------------------------------------------------------
    def init_state(self, state, group, param):
        """Initialise the state of ``param`` (called once, on its first step)."""

    def step_group(self, group, params, grads, states):
        raise NotImplementedError

    @staticmethod
    def run(group, formula):
        """``formula`` as ``group`` runs it: through torch.compile (``compiled=True``) or
        eagerly (the reference)."""
        return _compiled(formula) if group.get("compiled", False) else formula

    # ---- the loop --------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; return the closure's loss (or None)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    self.init_state(state, group, p)
                params.append(p)
                grads.append(p.grad)
                states.append(state)
            if not params:
                continue
            weight_decay = group["weight_decay"]
            if weight_decay != 0 and not group.get("decoupled_weight_decay", False):
                # g <- g + lambda * theta          (L2 penalty, as torch.optim)
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
            self.step_group(group, params, grads, states)
        return loss


# =========================================================================
# Running a formula compiled
# =========================================================================
_COMPILED = {}


def _allow_recompiles():
    """Raise torch.compile's recompile limit to RECOMPILE_LIMIT (never lower it)."""
    import torch._dynamo  # noqa: PLC0415 -- ~2 s to import; only the compiled path needs it
    config = torch._dynamo.config
    if getattr(config, "recompile_limit", RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
        config.recompile_limit = RECOMPILE_LIMIT


def _compiled(formula):
    """``torch.compile(formula)``, made once per formula (static shapes: a kernel depends only
    on the shapes it runs on, not on what the process compiled before); if compiling fails (for
    example no C++ compiler), warn once and return ``formula`` itself, which computes the same
    thing eagerly."""
    _allow_recompiles()
    if formula not in _COMPILED:
        try:
            fn = torch.compile(formula, fullgraph=True, dynamic=False)
        except Exception as error:                 # torch.compile unsupported here
            fn = _eager_after_warning(formula, error)
        _COMPILED[formula] = _fall_back_on_error(formula, fn)
    return _COMPILED[formula]


def _eager_after_warning(formula, error):
    warnings.warn(f"compiled={True} but torch.compile failed for {formula.__name__} "
                  f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                  "running it eagerly (same results to rounding, slower)", RuntimeWarning, stacklevel=3)
    return formula


def _fall_back_on_error(formula, fn):
    """Call ``fn``; if it raises (a compile error: compiling happens before the formula runs,
    so nothing was changed), switch to ``formula`` for good and run that."""
    state = {"fn": fn}

    def call(*args):
        if state["fn"] is formula:
            return formula(*args)
        try:
            return state["fn"](*args)
        except Exception as error:
            state["fn"] = _eager_after_warning(formula, error)
            return formula(*args)
    call.__wrapped__ = formula
    return call


def _hyper(rows):
    """Scalars of a step as one float64 tensor: inputs, not constants, to the compiled
    formulas, so new values do not recompile."""
    return torch.tensor(rows, dtype=torch.float64)


def _increment_steps(states):
    """t <- t + 1 on torch's 0-d ``state['step']`` tensors; return the new t as floats."""
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1.0)
    return [t.item() for t in steps]


def rule_version(name: str) -> int:
    """The version of rule ``name`` (a key of OPTIMIZERS): bumped whenever its numbers change."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown rule: {name!r} (choose from {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name].version


# =========================================================================
# SGD family
# =========================================================================
def sgd_update(params, grads, h):
    """SGD's step; h = (lr,)."""
    (lr,) = h.unbind()
    for p, g in zip(params, grads):
        # theta <- theta - lr * g
        p.addcmul_(g, -lr)


class SGD(RuleOptimizer):
    r"""Stochastic gradient descent.

    .. math::  \theta_t = \theta_{t-1} - \eta\, g_t

    Robbins & Monro (1951).  Same as ``torch.optim.SGD(params, lr)`` (momentum 0).
    No state.
    """

    version = 1   # bump when a change alters SGD's numbers (see the module docstring)
    formula = staticmethod(sgd_update)

    def __init__(self, params, lr=1e-3, weight_decay=0, *, foreach=None, compiled=False):
        _check_lr_and_weight_decay(lr, weight_decay)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay), foreach, compiled)

    def step_group(self, group, params, grads, states):
        self.run(group, sgd_update)(params, grads, _hyper([group["lr"]]))


def momentum_update(params, grads, bufs, h, nesterov, first=False):
    """Momentum's (and Nesterov's) step; h = (lr, mu, 1 - tau).  ``first``: the parameters'
    first step, which sets the buffer; it runs eagerly even with ``compiled=True`` (once per
    run, not worth a compile), and Nesterov's first update is taken in two parts, as version 1
    has always computed it (equal to ``theta - lr * d_1`` to rounding)."""
    lr, mu, one_minus_tau = h.unbind()
    for p, g, b in zip(params, grads, bufs):
        if first:
            # b_1 = g_1
            b.copy_(g)
            if nesterov:
                # theta <- theta - lr * g_1 - lr * mu * b_1
                p.addcmul_(g, -lr).addcmul_(b, -lr * mu)
                continue
        else:
            # b_t = mu * b_{t-1} + (1 - tau) * g_t
            b.mul_(mu).add_(one_minus_tau * g)
        # d_t = g_t + mu * b_t (Nesterov) or b_t
        d = g + mu * b if nesterov else b
        # theta <- theta - lr * d_t
        p.addcmul_(d, -lr)


class Momentum(SGD):
    r"""SGD with (heavy-ball) momentum, torch's convention.

    .. math::
        b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g_t, \qquad
        \theta_t = \theta_{t-1} - \eta\, b_t

    Polyak (1964); Sutskever et al. (2013) for this form.  Same as
    ``torch.optim.SGD(params, lr, momentum=0.9, dampening=0)``: the first
    buffer is the first gradient (not ``(1 - tau) g``), and the learning rate
    multiplies the buffer (not folded into it).  Unlike torch, ``momentum=0`` still
    keeps a buffer (``b_t = g_t``), which makes the step plain SGD.

    State: ``momentum_buffer``.
    """

    version = 1   # bump when a change alters Momentum's numbers (see the module docstring)
    formula = staticmethod(momentum_update)
    nesterov = False

    def __init__(self, params, lr=1e-3, momentum=0.9, dampening=0, weight_decay=0, *, foreach=None,
                 compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        if self.nesterov and dampening != 0:
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        RuleOptimizer.__init__(self, params, defaults, foreach, compiled)

    def step_group(self, group, params, grads, states):
        h = _hyper([group["lr"], group["momentum"], 1 - group["dampening"]])
        fresh = [s.get("momentum_buffer") is None for s in states]
        for s, p, new in zip(states, params, fresh):
            if new:
                s["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        for first in (True, False):
            idx = [i for i, new in enumerate(fresh) if new == first]
            if idx:
                formula = momentum_update if first else self.run(group, momentum_update)
                formula([params[i] for i in idx], [grads[i] for i in idx],
                        [states[i]["momentum_buffer"] for i in idx], h, self.nesterov, first)


class Nesterov(Momentum):
    r"""Nesterov accelerated gradient, in torch's (Sutskever et al. 2013) form.

    .. math::
        b_t = \mu\, b_{t-1} + g_t \;(b_1 = g_1), \qquad
        \theta_t = \theta_{t-1} - \eta\,(g_t + \mu\, b_t)

    Nesterov (1983); Sutskever, Martens, Dahl & Hinton (2013).  Same as
    ``torch.optim.SGD(params, lr, momentum=0.9, nesterov=True)``.  Difference:
    torch refuses ``momentum=0`` with nesterov; here it is allowed and gives SGD.
    ``dampening`` must be 0 (torch's message otherwise).

    State: ``momentum_buffer``.
    """

    version = 1   # bump when a change alters Nesterov's numbers (see the module docstring)
    nesterov = True


# =========================================================================
# Adaptive per-coordinate rules
# =========================================================================
def adagrad_update(params, grads, sums, h):
    """AdaGrad's step; h[i] = (lr_t, eps) with lr_t = lr / (1 + (t - 1) * lr_decay)."""
    for i, (p, g, s) in enumerate(zip(params, grads, sums)):
        lr_t, eps = h[i].unbind()
        # s_t = s_{t-1} + g^2
        s.addcmul_(g, g)
        # theta <- theta - lr_t * g / (sqrt(s_t) + eps)
        p.addcmul_(g / (s.sqrt() + eps), -lr_t)


class Adagrad(RuleOptimizer):
    r"""AdaGrad.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad
        \theta_t = \theta_{t-1} - \frac{\eta}{1 + (t-1)\,\delta}\;\frac{g_t}{\sqrt{s_t} + \epsilon}

    Duchi, Hazan & Singer (2011).  Same as ``torch.optim.Adagrad`` (``lr_decay``
    = delta, epsilon outside the root, ``s_0 = initial_accumulator_value``).
    Difference: torch creates the state of every parameter in its constructor;
    here it is created on a parameter's first step (a parameter that never gets
    a gradient has no state).

    State: ``step`` (0-d tensor), ``sum``.
    """

    version = 1   # bump when a change alters Adagrad's numbers (see the module docstring)
    formula = staticmethod(adagrad_update)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, foreach=None, compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= lr_decay, f"Invalid lr_decay value: {lr_decay}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= initial_accumulator_value,
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults, foreach, compiled)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        # s_0 = initial_accumulator_value
        state["sum"] = torch.full_like(param, group["initial_accumulator_value"],
                                       memory_format=torch.preserve_format)

    def step_group(self, group, params, grads, states):
        lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
        ts = _increment_steps(states)
        # lr_t = lr / (1 + (t - 1) * lr_decay)
        h = _hyper([[lr / (1 + (t - 1) * lr_decay), eps] for t in ts])
        self.run(group, adagrad_update)(params, grads, [s["sum"] for s in states], h)


def rmsprop_update(params, grads, square_avgs, grad_avgs, bufs, h):
    """RMSprop's step; h = (lr, alpha, eps, mu); ``grad_avgs`` None unless centered, ``bufs``
    None unless momentum > 0."""
    lr, alpha, eps, mu = h.unbind()
    for i, (p, g, v) in enumerate(zip(params, grads, square_avgs)):
        # v_t = alpha * v_{t-1} + (1 - alpha) * g^2
        v.mul_(alpha).addcmul_(g * g, 1 - alpha)
        if grad_avgs is not None:
            # gbar_t = alpha * gbar_{t-1} + (1 - alpha) * g
            gbar = grad_avgs[i].lerp_(g, 1 - alpha)
            # avg = sqrt(v_t - gbar_t^2) + eps
            avg = (v - gbar * gbar).sqrt() + eps
        else:
            # avg = sqrt(v_t) + eps
            avg = v.sqrt() + eps
        if bufs is not None:
            # b_t = mu * b_{t-1} + g / avg ;  theta <- theta - lr * b_t
            b = bufs[i].mul_(mu).add_(g / avg)
            p.addcmul_(b, -lr)
        else:
            # theta <- theta - lr * g / avg
            p.addcmul_(g / avg, -lr)


class RMSprop(RuleOptimizer):
    r"""RMSProp (optionally centred, optionally with momentum).

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \;(\text{centered}), \quad
        d_t = \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon}

    .. math::
        b_t = \mu b_{t-1} + d_t \;(b_0 = 0), \qquad \theta_t = \theta_{t-1} - \eta\, b_t
        \quad(\text{or } \theta_t = \theta_{t-1} - \eta\, d_t \text{ when } \mu = 0)

    Tieleman & Hinton (2012, Coursera lecture 6.5); Graves (2013) for the
    centred form.  Same as ``torch.optim.RMSprop``: epsilon outside the root,
    momentum buffer starting at zeros.  The lecture notes (seed 001) put the
    decay inside the root -- a slip.

    State: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    version = 1   # bump when a change alters RMSprop's numbers (see the module docstring)
    formula = staticmethod(rmsprop_update)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, foreach=None, compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= alpha, f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_group(self, group, params, grads, states):
        _increment_steps(states)
        h = _hyper([group["lr"], group["alpha"], group["eps"], group["momentum"]])
        grad_avgs = [s["grad_avg"] for s in states] if group["centered"] else None
        bufs = [s["momentum_buffer"] for s in states] if group["momentum"] > 0 else None
        self.run(group, rmsprop_update)(params, grads, [s["square_avg"] for s in states],
                                        grad_avgs, bufs, h)


def adadelta_update(params, grads, square_avgs, acc_deltas, h):
    """AdaDelta's step; h = (lr, rho, eps)."""
    lr, rho, eps = h.unbind()
    for p, g, v, u in zip(params, grads, square_avgs, acc_deltas):
        # v_t = rho * v_{t-1} + (1 - rho) * g^2
        v.mul_(rho).addcmul_(g * g, 1 - rho)
        # Delta_t = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g
        delta = (u + eps).sqrt() / (v + eps).sqrt() * g
        # u_t = rho * u_{t-1} + (1 - rho) * Delta_t^2
        u.mul_(rho).addcmul_(delta * delta, 1 - rho)
        # theta <- theta - lr * Delta_t
        p.addcmul_(delta, -lr)


class Adadelta(RuleOptimizer):
    r"""AdaDelta.

    .. math::
        v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
        \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \quad
        u_t = \rho u_{t-1} + (1-\rho) \Delta_t^2, \quad
        \theta_t = \theta_{t-1} - \eta\, \Delta_t

    Zeiler (2012).  Same as ``torch.optim.Adadelta`` (``lr`` multiplies the
    step, default 1.0; epsilon *inside* the roots, as in the paper).  The
    lecture notes (seed 001) accumulate ``Delta`` instead of ``Delta**2`` -- a slip.

    State: ``step``, ``square_avg`` (v), ``acc_delta`` (u).
    """

    version = 1   # bump when a change alters Adadelta's numbers (see the module docstring)
    formula = staticmethod(adadelta_update)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, foreach=None,
                 compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= rho <= 1.0, f"Invalid rho value: {rho}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay), foreach,
                         compiled)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_group(self, group, params, grads, states):
        _increment_steps(states)
        h = _hyper([group["lr"], group["rho"], group["eps"]])
        self.run(group, adadelta_update)(params, grads, [s["square_avg"] for s in states],
                                         [s["acc_delta"] for s in states], h)


# =========================================================================
# Adam family
# =========================================================================
def adam_update(params, grads, ms, vs, vmaxs, h):
    """Adam's step; h[i] holds lr, beta1, beta2, eps, 1 - beta1^t, sqrt(1 - beta2^t),
    1 - lr*lambda (AdamW; else 1); ``vmaxs`` None unless amsgrad."""
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        lr, beta1, beta2, eps, bc1, bc2_sqrt, decay = h[i].unbind()
        # theta <- (1 - lr * lambda) * theta          (AdamW)
        p.mul_(decay)
        # m_t = beta1 * m_{t-1} + (1 - beta1) * g
        m.lerp_(g, 1 - beta1)
        # v_t = beta2 * v_{t-1} + (1 - beta2) * g^2
        v.mul_(beta2).add_((1 - beta2) * g * g)
        if vmaxs is not None:
            # vmax_t = max(vmax_{t-1}, v_t)
            v = vmaxs[i].copy_(torch.maximum(vmaxs[i], v))
        # theta <- theta - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)
        p.sub_(lr / bc1 * m / (v.sqrt() / bc2_sqrt + eps))


class Adam(RuleOptimizer):
    r"""Adam (optionally AMSGrad, optionally decoupled weight decay).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        \theta_t = \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,
                   \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Kingma & Ba (2015); Reddi, Kale & Kumar (2018) for ``amsgrad`` (``v`` replaced by
    its running maximum).  Same as ``torch.optim.Adam``: epsilon outside the
    root and added to the bias-corrected root.

    State: ``step`` (0-d tensor), ``exp_avg`` (m), ``exp_avg_sq`` (v),
    ``max_exp_avg_sq`` (amsgrad).
    """

    version = 1   # bump when a change alters Adam's numbers (see the module docstring)
    formula = staticmethod(adam_update)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, decoupled_weight_decay=False, foreach=None, compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
        _check(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_group(self, group, params, grads, states):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        ts = _increment_steps(states)
        decay = 1 - lr * group["weight_decay"] if group["decoupled_weight_decay"] else 1.0
        h = _hyper([[lr, beta1, beta2, eps, 1 - beta1**t, (1 - beta2**t) ** 0.5, decay] for t in ts])
        vmax = [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None
        self.run(group, adam_update)(params, grads, [s["exp_avg"] for s in states],
                                     [s["exp_avg_sq"] for s in states], vmax, h)


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    .. math:: \theta \leftarrow (1 - \eta\lambda)\,\theta, \text{ then the Adam step without L2.}

    Loshchilov & Hutter (2019).  Same as ``torch.optim.AdamW`` (``weight_decay``
    default 1e-2; the decay is scaled by ``lr``, as in torch, not by the schedule
    multiplier alone as in the paper).

    State: as :class:`Adam`.
    """

    version = 1   # bump when a change alters AdamW's numbers (see the module docstring)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, foreach=None, compiled=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         decoupled_weight_decay=True, foreach=foreach, compiled=compiled)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def nadam_update(params, grads, ms, vs, h):
    """NAdam's step; h[i] holds beta1, beta2, eps, 1 - beta2^t, the gradient's and the
    momentum's step coefficients, 1 - lr*lambda (NAdamW; else 1)."""
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        beta1, beta2, eps, bc2, c_grad, c_momentum, decay = h[i].unbind()
        # theta <- (1 - lr * lambda) * theta          (NAdamW)
        p.mul_(decay)
        # m_t = beta1 * m_{t-1} + (1 - beta1) * g
        m.lerp_(g, 1 - beta1)
        # v_t = beta2 * v_{t-1} + (1 - beta2) * g^2
        v.mul_(beta2).add_((1 - beta2) * g * g)
        # denom = sqrt(v_t / (1 - beta2^t)) + eps
        denom = (v / bc2).sqrt() + eps
        # theta <- theta - lr (1 - mu_t)/(1 - Pi_t) g/denom - lr mu_{t+1}/(1 - Pi_t mu_{t+1}) m_t/denom
        p.add_(c_grad * g / denom + c_momentum * m / denom)


class NAdam(RuleOptimizer):
    r"""NAdam with torch's momentum-decay schedule.

    .. math::
        \mu_t = \beta_1\bigl(1 - \tfrac12\, 0.96^{t\,\psi}\bigr), \quad
        \Pi_t = \prod_{i \le t} \mu_i, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2

    .. math::
        \theta_t = \theta_{t-1}
          - \eta\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
          - \eta\,\frac{\mu_{t+1}}{1-\Pi_t\,\mu_{t+1}}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

    Dozat (2016), "Incorporating Nesterov Momentum into Adam"; psi =
    ``momentum_decay``.  Same as ``torch.optim.NAdam``, including
    ``mu_product`` (Pi_t) kept as a 0-d float32 tensor (so it rounds as torch's
    does) and ``decoupled_weight_decay`` (NAdamW).

    State: ``step``, ``mu_product``, ``exp_avg``, ``exp_avg_sq``.
    """

    version = 1   # bump when a change alters NAdam's numbers (see the module docstring)
    formula = staticmethod(nadam_update)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None, compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= betas[0] < 1.0, f"Invalid beta parameter at index 0: {betas[0]}")
        _check(0.0 <= betas[1] < 1.0, f"Invalid beta parameter at index 1: {betas[1]}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= momentum_decay, f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["mu_product"] = torch.tensor(1.0, dtype=_scalar_dtype())
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    @staticmethod
    def _mu(beta1, t, psi):
        # mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi))
        return beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))

    def step_group(self, group, params, grads, states):
        lr, (beta1, beta2), eps, psi = group["lr"], group["betas"], group["eps"], group["momentum_decay"]
        ts = _increment_steps(states)
        mus = [self._mu(beta1, t, psi) for t in ts]
        mu_nexts = [self._mu(beta1, t + 1, psi) for t in ts]
        # Pi_t = Pi_{t-1} * mu_t      (a 0-d tensor, rounded as torch's)
        pis = [s["mu_product"] for s in states]
        torch._foreach_mul_(pis, mus)
        pis = [p.item() for p in pis]
        decay = 1 - lr * group["weight_decay"] if group["decoupled_weight_decay"] else 1.0
        h = _hyper([[beta1, beta2, eps, 1 - beta2**t, -lr * (1.0 - mu) / (1.0 - pi),
                     (-lr * mn) / (1.0 - pi * mn), decay]
                    for t, mu, mn, pi in zip(ts, mus, mu_nexts, pis)])
        self.run(group, nadam_update)(params, grads, [s["exp_avg"] for s in states],
                                      [s["exp_avg_sq"] for s in states], h)


# =========================================================================
# The two rules of seed 000
# =========================================================================
def gravity_update(params, grads, h):
    """Gravity's step over a whole group; h = (S_{t-1}, 1/lr^2).  Returns S_t (0-d float64)."""
    previous, inv_lr_sq = h.unbind()
    # S_t = S_{t-1} + sum_p ||g_p||^2
    sum_sq = previous
    for g in grads:
        sum_sq = sum_sq + g.double().square().sum()
    # k_t = sqrt(1/lr^2 + S_t)
    k = (inv_lr_sq + sum_sq).sqrt()
    # theta <- theta - g / k_t
    for p, g in zip(params, grads):
        p.sub_(g * (1 / k))
    return sum_sq


class Gravity(RuleOptimizer):
    r"""Gravity (seed 000), read as AdaGrad-Norm with :math:`b_0 = 1/\eta`.

    .. math::
        S_0 = 0, \qquad
        S_t = S_{t-1} + \sum_{p \in \text{group}} \lVert g_{p,t} \rVert_2^2, \qquad
        k_t = \sqrt{1/\eta^2 + S_t}, \qquad
        \theta_{p,t} = \theta_{p,t-1} - g_{p,t} / k_t

    With ``accumulate=False`` S is reset every step, :math:`S_t = \sum_p \lVert g_{p,t}\rVert^2`:
    a smooth global gradient clip, step :math:`g / \sqrt{1/\eta^2 + \lVert g \rVert^2}`,
    which is :math:`\approx \eta g` for small gradients and never longer than 1.

    **Reading.**  The pseudocode in seed 000 is damaged by text extraction; it
    reads ``S = 0`` before the loop, ``S += sum grad**2`` over all parameters,
    then "k as sum sqrt(1/lr**2 + 1/grad**2)" and ``param -= grad / k``.  We read
    ``k = sqrt(1/lr**2 + S)``: the first step is SGD with step ``lr`` (S = 0
    before the first gradient is added, ``k ~ 1/lr``) and the step shrinks as
    squared gradients pile up.  That is AdaGrad-Norm (Ward, Wu & Bottou 2019,
    "AdaGrad stepsizes: sharp convergence over nonconvex landscapes"):
    :math:`b_t^2 = b_{t-1}^2 + \lVert g_t\rVert^2,\; x_{t+1} = x_t - \eta' g_t / b_t`
    with :math:`b_0 = 1/\eta` and :math:`\eta' = 1`.

    **Alternatives considered and rejected.**

    * *One S per parameter tensor* (S summed over that tensor only): the
      pseudocode sums over *all* parameters before the update loop, so S is
      global; per-tensor S would make the rule depend on how a layer is split
      into tensors (weight vs bias).
    * *The literal* ``k = sum sqrt(1/lr**2 + 1/grad**2)``: it is infinite
      wherever a gradient entry is 0, and it makes the step *grow* as gradients
      shrink (``1/grad**2`` dominates), the opposite of the stated intent
      (stronger vectors are damped); and S would be computed but never used.
    * *Per-element S* (``S_i += g_i**2``): that is Adagrad with
      ``initial_accumulator_value = 1/lr**2`` and unit step -- already in the
      catalogue, and the pseudocode's ``sum`` makes S a scalar.

    **Scope of S.**  One S per *param group* (the sum runs over the parameters
    of the group that have a gradient at that step).  Gradients include the L2
    term ``weight_decay * theta`` (as for every rule here) before being summed
    into S.  ``k`` uses the group's current ``lr``, so a scheduler changing
    ``lr`` changes :math:`b_0` on the fly.

    **State.**  S lives in the state of the group's *first* parameter under
    ``sum_sq`` (a Python float: the S used at the last step), following the
    precedent of ``torch.optim.LBFGS``; it therefore survives
    ``state_dict()``/``load_state_dict()``.  That first parameter gets this state
    entry even if it has no gradient; otherwise parameters hold no state.
    :meth:`effective_lr` returns ``1/k`` per group.

    Differences from the seed: ``lr`` must be > 0 (``1/lr``); ``weight_decay``
    added (default 0, i.e. the seed's rule).
    """

    version = 1   # bump when a change alters Gravity's numbers (see the module docstring)
    formula = staticmethod(gravity_update)
    couples_group = True      # S sums over the group

    def __init__(self, params, lr=0.01, accumulate=True, weight_decay=0, *, foreach=None,
                 compiled=False):
        _check(0.0 < lr < math.inf, f"Invalid learning rate: {lr} (Gravity needs 0 < lr < inf: b0 = 1/lr)")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, accumulate=bool(accumulate), weight_decay=weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def _holder(self, group):
        """The state dict that carries the group's S (its first parameter's)."""
        return self.state[group["params"][0]]

    def step_group(self, group, params, grads, states):
        # S_{t-1}     (:= 0 when accumulate=False)
        previous = self._holder(group).get("sum_sq", 0.0) if group["accumulate"] else 0.0
        h = _hyper([previous, 1.0 / group["lr"] ** 2])
        self._holder(group)["sum_sq"] = float(self.run(group, gravity_update)(params, grads, h))

    def effective_lr(self):
        """Per param group, the step size ``1/k`` of the last step (``lr`` before the first)."""
        out = []
        for group in self.param_groups:
            holder = self.state.get(group["params"][0], {})
            out.append(1.0 / math.sqrt(1.0 / group["lr"] ** 2 + holder.get("sum_sq", 0.0)))
        return out


def _rows(param, per):
    """Number of vectors a cosine is taken over: the rows (slices along dim 0) of a
    matrix or higher tensor; one for a 1-D or 0-d parameter, and for ``per="tensor"``."""
    return param.shape[0] if (per == "row" and param.ndim > 1) else 1


def _row_cosines(m, g, per):
    """cos_r = <m_r, g_r> / (|m_r| |g_r|) per row r (0 where a norm is 0), clamped to [-1, 1]."""
    rows = _rows(m, per)
    m2, g2 = m.reshape(rows, -1), g.reshape(rows, -1)
    # <m_r, g_r>
    dot = torch.linalg.vecdot(m2, g2, dim=1)
    # |m_r| |g_r|
    norms = torch.linalg.vector_norm(m2, dim=1) * torch.linalg.vector_norm(g2, dim=1)
    # cos_r = dot / norms, or 0 where norms = 0
    return torch.where(norms > 0, dot / norms, 0.0).clamp_(-1.0, 1.0)


def _broadcast_shape(m, per):
    """Shape that spreads one value per row over the tensor ((rows, 1, 1, ...))."""
    if m.ndim == 0:
        return ()
    return (_rows(m, per),) + (1,) * (m.ndim - 1)


def cosine_update(params, grads, ms, h, per):
    """Cosine's step; h = (C/2, lr).  Returns the cosines (one 1-D tensor per parameter)."""
    half_c, lr = h.unbind()
    coss = []
    for p, g, m in zip(params, grads, ms):
        # c_r = <m_r, g_r> / (|m_r| |g_r|)
        cos = _row_cosines(m, g, per)
        # m <- C * (c / 2) * m + lr * g
        m.mul_((half_c * cos).reshape(_broadcast_shape(m, per))).add_(lr * g)
        # theta <- theta - m
        p.sub_(m)
        coss.append(cos)
    return coss


class Cosine(RuleOptimizer):
    r"""Cosine (seed 000): momentum whose decay is the cosine between momentum and gradient.

    .. math::
        m_0 = 0, \qquad
        c_{t,r} = \frac{\langle m_{t-1,r},\, g_{t,r}\rangle}{\lVert m_{t-1,r}\rVert\,\lVert g_{t,r}\rVert}
        \;(0 \text{ if a norm is } 0), \qquad
        m_{t,r} = C\,\frac{c_{t,r}}{2}\, m_{t-1,r} + \eta\, g_{t,r}, \qquad
        \theta_t = \theta_{t-1} - m_t

    for each row r (slice along dim 0) of every parameter; a 1-D parameter is
    one vector and a 0-d parameter one scalar.  ``per="tensor"`` takes one
    cosine over the whole tensor.  The first step is SGD (``|m_0| = 0`` gives
    ``c = 0``, ``m_1 = lr g``).  When the buffer agrees with the new gradient
    it decays by ``C/2`` (0.9 at the default ``C = 1.8``, the Momentum
    baseline's value); when it opposes it the buffer's sign flips, turning the
    direction abruptly -- the seed's stated intent.

    **Reading.**  Seed 000's Algorithm 2 computes, for each (m, g) pair of a
    parameter matrix, ``cos = m.g / (|m||g|)`` broadcast to a vector
    (``cos * 1``), then ``m = C * cosine / 2 * m + lr * gradient`` and
    ``param -= m``.  We read the pair as a row of the matrix.

    **Alternatives considered.**

    * *Elementwise sign agreement* (``cos_i = sign(m_i g_i)``): that is what a
      "cosine" of 1-D slices of length 1 would be; it throws away magnitudes and
      is Rprop-like, not what ``m.g/(|m||g|)`` says.
    * *Whole-tensor cosine*: kept as ``per="tensor"`` for the ablation.
    * *C instead of C/2*: the seed writes ``C * cos / 2``; with ``C = 1.8``
      this gives Momentum's 0.9 for aligned steps, so the halving is intended.
    * *lr outside the buffer* (``m = C cos/2 m + g``, ``param -= lr m``):
      equivalent at constant lr, but the seed puts ``lr`` inside, which makes a
      schedule change act gradually; we follow the seed.

    Values of ``C > 2`` let an aligned buffer grow without bound; they are
    allowed (finite ``C >= 0``) for exploration.  The gradient includes the L2
    term ``weight_decay * theta`` (default 0: the seed's rule).

    State: ``momentum_buffer`` (m), ``cos`` (1-D tensor, one cosine per row
    from the last step -- for plotting their distribution).
    """

    version = 1   # bump when a change alters Cosine's numbers (see the module docstring)
    formula = staticmethod(cosine_update)

    def __init__(self, params, lr=0.01, C=1.8, per="row", weight_decay=0, *, foreach=None,
                 compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(isinstance(C, (int, float)) and math.isfinite(C) and C >= 0,
               f"Invalid C value: {C} (C must be finite and >= 0)")
        _check(per in ("row", "tensor"), f"Invalid per value: {per!r} (per must be 'row' or 'tensor')")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, C=C, per=per, weight_decay=weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def init_state(self, state, group, param):
        # m_0 = 0
        state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["cos"] = torch.zeros(_rows(param, group["per"]), dtype=param.dtype, device=param.device)

    def step_group(self, group, params, grads, states):
        ms = [s["momentum_buffer"] for s in states]
        coss = self.run(group, cosine_update)(params, grads, ms, _hyper([group["C"] / 2, group["lr"]]),
                                              group["per"])
        for s, cos in zip(states, coss):
            s["cos"] = cos


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nag": Nesterov,
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adadelta": Adadelta,
    "adam": Adam,
    "nadam": NAdam,
    "adamw": AdamW,
    "gravity": Gravity,
    "cosine": Cosine,
}
