r"""Update rules of the report, written one formula per line.

Every rule is a :class:`torch.optim.Optimizer`.  A small base class,
:class:`RuleOptimizer`, owns the loop that every rule shares: it walks the
parameter groups, gathers the parameters that have a gradient, creates their
state lazily (``init_state``), adds the L2 term ``g <- g + weight_decay * theta``
to the gradient (as ``torch.optim`` does) and then hands the group to the
rule.  Each rule writes only its own math, twice:

* ``step_param`` -- the *reference path*: per-tensor ops, every line of code
  under the formula it implements;
* ``step_foreach`` -- the *fast path*: the same math with multi-tensor
  ``torch._foreach_*`` ops (one call per operation for a run of tensors, like
  torch's ``foreach`` implementation; runs are capped at FOREACH_CHUNK_NUMEL
  elements).  It is selected by ``foreach=True`` (the default);
  ``foreach=False`` runs the reference path.  The tests prove the two paths
  equal (bitwise, except where the fast path saves a pass -- Gravity's sum of
  squares, Adadelta's single square root, Nesterov's update without a
  temporary -- and agrees to rounding).

The rules whose step makes several passes over memory (Momentum, Nesterov,
Adam, AdamW, NAdam, Gravity, Cosine) have a third, *compiled* path, selected
by ``compiled=True``: the same formula written once more as a plain function of tensors (the
``_*_kernel`` functions below, hyper-parameters passed as a float64 tensor so
that a new learning rate or step count does not recompile), handed to
``torch.compile``, which fuses it into one loop per tensor.  It agrees with the
reference path to rounding (tests); if compiling fails (no C compiler), it warns
once and runs the same function eagerly.

The classic rules mirror ``torch.optim`` (hyper-parameter names, defaults,
state keys, the tensor ``state["step"]``, error messages and the order of
floating-point operations), so that they agree with it step by step.

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

Differences from ``torch.optim`` shared by every rule: ``foreach`` defaults to
True (torch's ``None`` means its for-loop on CPU; results are the same); state is
created on a parameter's first step (torch's Adagrad creates it in the
constructor).  Not supported: sparse gradients, complex parameters,
``maximize``, ``capturable``, ``differentiable``, ``fused``, tensor ``lr``.
"""

import math

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
]


#: The fast path applies its ``torch._foreach_*`` ops to runs of parameters of at
#: most this many elements (a larger tensor is a run of its own).  On CPU a
#: foreach op is a loop over per-tensor kernels, so its gain is fewer Python
#: calls, which matters for many small tensors (biases); applied to a whole
#: group at once it would keep every temporary of every tensor alive together
#: (more memory touched per step), which made it slower than torch's per-tensor
#: loop for rules with temporaries (Adadelta).  Chunking changes no result.
FOREACH_CHUNK_NUMEL = 2**16


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

    Subclasses implement
      * ``init_state(state, group, param)`` -- fill a fresh per-parameter state;
      * ``step_param(state, group, param, grad)`` -- the reference update of one tensor;
      * ``step_foreach(group, params, grads, states)`` -- optional fast path
        (defaults to calling the reference path);
      * or override ``step_reference(group, params, grads, states)`` when the
        rule needs the whole group at once (Gravity).

    ``grad`` handed to the hooks already contains the L2 term
    ``weight_decay * param`` unless the group says ``decoupled_weight_decay``.
    """

    #: run the fast path chunk by chunk (see FOREACH_CHUNK_NUMEL); False when the
    #: rule needs the whole group in one call (Gravity's global S).
    chunk_foreach = True

    def __init__(self, params, defaults, foreach=True, compiled=False):
        _check(not compiled or type(self).step_compiled is not RuleOptimizer.step_compiled,
               f"Invalid compiled value: {compiled} ({type(self).__name__} has no compiled path)")
        defaults = dict(defaults, foreach=bool(foreach), compiled=bool(compiled))
        super().__init__(params, defaults)

    # ---- hooks -----------------------------------------------------------
    def init_state(self, state, group, param):
        """Initialise the state of ``param`` (called once, on its first step)."""

    def step_param(self, state, group, param, grad):
        raise NotImplementedError

    def step_reference(self, group, params, grads, states):
        for param, grad, state in zip(params, grads, states):
            self.step_param(state, group, param, grad)

    def step_foreach(self, group, params, grads, states):
        self.step_reference(group, params, grads, states)

    def step_compiled(self, group, params, grads, states):
        """Optional compiled path (whole group in one call); rules that have one override it."""
        raise NotImplementedError

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

            fast = group["foreach"] or group.get("compiled", False)
            weight_decay = group["weight_decay"]
            if weight_decay != 0 and not group.get("decoupled_weight_decay", False):
                # g <- g + lambda * theta          (L2 penalty, as torch.optim)
                if fast:
                    grads = torch._foreach_add(grads, params, alpha=weight_decay)
                else:
                    grads = [g.add(p, alpha=weight_decay) for p, g in zip(params, grads)]

            if group.get("compiled", False):
                self.step_compiled(group, params, grads, states)
            elif not fast:
                self.step_reference(group, params, grads, states)
            elif not self.chunk_foreach:
                self.step_foreach(group, params, grads, states)
            else:
                for chunk in _chunks([p.numel() for p in params], FOREACH_CHUNK_NUMEL):
                    self.step_foreach(group, [params[i] for i in chunk], [grads[i] for i in chunk],
                                      [states[i] for i in chunk])
        return loss


def _chunks(sizes, budget):
    """Split indices 0..len(sizes)-1, in order, into runs of at most ``budget`` elements
    (a tensor larger than the budget is a run of its own)."""
    chunks, current, total = [], [], 0
    for i, n in enumerate(sizes):
        if current and total + n > budget:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += n
    if current:
        chunks.append(current)
    return chunks


_COMPILED = {}


def _compiled(kernel):
    """``torch.compile(kernel)``, made once per kernel; if compiling fails (for example no C
    compiler), warn once and return ``kernel`` itself, which computes the same thing eagerly."""
    if kernel not in _COMPILED:
        try:
            fn = torch.compile(kernel, fullgraph=True)
        except Exception as error:                 # torch.compile unsupported here
            fn = _eager_after_warning(kernel, error)
        _COMPILED[kernel] = _fall_back_on_error(kernel, fn)
    return _COMPILED[kernel]


def _eager_after_warning(kernel, error):
    import warnings
    warnings.warn(f"compiled={True} but torch.compile failed for {kernel.__name__} "
                  f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                  "running it eagerly (same results, slower)", RuntimeWarning, stacklevel=3)
    return kernel


def _fall_back_on_error(kernel, fn):
    """Call ``fn``; if it raises (a compile error: compiling happens before the kernel runs,
    so nothing was changed), switch to ``kernel`` for good and run that."""
    state = {"fn": fn}

    def call(*args):
        if state["fn"] is kernel:
            return kernel(*args)
        try:
            return state["fn"](*args)
        except Exception as error:
            state["fn"] = _eager_after_warning(kernel, error)
            return kernel(*args)
    call.__wrapped__ = kernel
    return call


def _hyper(rows):
    """Per-parameter scalars as one float64 tensor (rows x k): inputs, not constants, to the
    compiled kernels, so new values do not recompile."""
    return torch.tensor(rows, dtype=torch.float64)


def _increment_steps(states, fast):
    """t <- t + 1 on torch's 0-d ``state['step']`` tensors; return the new t as floats."""
    steps = [s["step"] for s in states]
    if fast:
        torch._foreach_add_(steps, 1.0)
    else:
        for t in steps:
            t += 1
    return [t.item() for t in steps]


# =========================================================================
# SGD family
# =========================================================================
class SGD(RuleOptimizer):
    r"""Stochastic gradient descent.

    .. math::  \theta_t = \theta_{t-1} - \eta\, g_t

    Robbins & Monro (1951).  Same as ``torch.optim.SGD(params, lr)`` (momentum 0).
    No state.
    """

    def __init__(self, params, lr=1e-3, weight_decay=0, *, foreach=True):
        _check_lr_and_weight_decay(lr, weight_decay)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay), foreach)

    def step_param(self, state, group, param, grad):
        # theta <- theta - lr * g
        param.add_(grad, alpha=-group["lr"])

    def step_foreach(self, group, params, grads, states):
        # theta <- theta - lr * g
        torch._foreach_add_(params, grads, alpha=-group["lr"])


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

    nesterov = False

    def __init__(self, params, lr=1e-3, momentum=0.9, dampening=0, weight_decay=0, *, foreach=True,
                 compiled=False):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        if self.nesterov and dampening != 0:
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        RuleOptimizer.__init__(self, params, defaults, foreach, compiled)

    def step_param(self, state, group, param, grad):
        mu, tau = group["momentum"], group["dampening"]
        buf = state.get("momentum_buffer")
        if buf is None:
            # b_1 = g_1
            buf = state["momentum_buffer"] = grad.detach().clone()
        else:
            # b_t = mu * b_{t-1} + (1 - tau) * g_t
            buf.mul_(mu).add_(grad, alpha=1 - tau)
        if self.nesterov:
            # d_t = g_t + mu * b_t
            direction = grad.add(buf, alpha=mu)
        else:
            # d_t = b_t
            direction = buf
        # theta <- theta - lr * d_t
        param.add_(direction, alpha=-group["lr"])

    def step_foreach(self, group, params, grads, states):
        mu, tau = group["momentum"], group["dampening"]
        old = [i for i, s in enumerate(states) if s.get("momentum_buffer") is not None]
        if old:
            bufs = [states[i]["momentum_buffer"] for i in old]
            # b_t = mu * b_{t-1} + (1 - tau) * g_t
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, [grads[i] for i in old], alpha=1 - tau)
        for s, g in zip(states, grads):
            if s.get("momentum_buffer") is None:
                # b_1 = g_1
                s["momentum_buffer"] = g.detach().clone()
        bufs = [s["momentum_buffer"] for s in states]
        lr = group["lr"]
        if self.nesterov:
            # theta <- theta - lr * g_t - lr * mu * b_t   (two in-place passes, no temporary;
            # equal to the reference's theta - lr * (g_t + mu * b_t) to rounding)
            torch._foreach_add_(params, grads, alpha=-lr)
            torch._foreach_add_(params, bufs, alpha=-lr * mu)
        else:
            # theta <- theta - lr * b_t
            torch._foreach_add_(params, bufs, alpha=-lr)

    def step_compiled(self, group, params, grads, states):
        if any(s.get("momentum_buffer") is None for s in states):
            return self.step_foreach(group, params, grads, states)     # b_1 = g_1: the first step
        h = _hyper([group["lr"], group["momentum"], 1 - group["dampening"]])
        _compiled(_momentum_kernel)(params, grads, [s["momentum_buffer"] for s in states], h,
                                    self.nesterov)


def _momentum_kernel(params, grads, bufs, h, nesterov):
    """Momentum's (and Nesterov's) step after the first, as one function of tensors (for
    torch.compile); h = (lr, mu, 1 - tau)."""
    lr, mu, one_minus_tau = h.unbind()
    for p, g, b in zip(params, grads, bufs):
        # b_t = mu * b_{t-1} + (1 - tau) * g_t
        b.mul_(mu).add_(one_minus_tau * g)
        # d_t = g_t + mu * b_t (Nesterov) or b_t
        d = g + mu * b if nesterov else b
        # theta <- theta - lr * d_t
        p.sub_(lr * d)


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

    nesterov = True


# =========================================================================
# Adaptive per-coordinate rules
# =========================================================================
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

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, foreach=True):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= lr_decay, f"Invalid lr_decay value: {lr_decay}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= initial_accumulator_value,
               f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults, foreach)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        # s_0 = initial_accumulator_value
        state["sum"] = torch.full_like(param, group["initial_accumulator_value"],
                                       memory_format=torch.preserve_format)

    def step_param(self, state, group, param, grad):
        (t,) = _increment_steps([state], fast=False)
        # eta_t = eta / (1 + (t - 1) * lr_decay)
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        # s_t = s_{t-1} + g^2
        state["sum"].addcmul_(grad, grad, value=1)
        # theta <- theta - eta_t * g / (sqrt(s_t) + eps)
        std = state["sum"].sqrt().add_(group["eps"])
        param.addcdiv_(grad, std, value=-clr)

    def step_foreach(self, group, params, grads, states):
        ts = _increment_steps(states, fast=True)
        lr, lr_decay = group["lr"], group["lr_decay"]
        neg_clrs = [-(lr / (1 + (t - 1) * lr_decay)) for t in ts]
        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, group["eps"])
        torch._foreach_addcdiv_(params, grads, std, neg_clrs)


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

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, foreach=True):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= momentum, f"Invalid momentum value: {momentum}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        _check(0.0 <= alpha, f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay)
        super().__init__(params, defaults, foreach)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_param(self, state, group, param, grad):
        alpha, mu = group["alpha"], group["momentum"]
        _increment_steps([state], fast=False)
        # v_t = alpha * v_{t-1} + (1 - alpha) * g^2
        v = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            # gbar_t = alpha * gbar_{t-1} + (1 - alpha) * g
            gbar = state["grad_avg"].lerp_(grad, 1 - alpha)
            # sqrt(v_t - gbar_t^2) + eps
            avg = v.addcmul(gbar, gbar, value=-1).sqrt_().add_(group["eps"])
        else:
            # sqrt(v_t) + eps
            avg = v.sqrt().add_(group["eps"])
        if mu > 0:
            # b_t = mu * b_{t-1} + g / avg ;  theta <- theta - lr * b_t
            buf = state["momentum_buffer"].mul_(mu).addcdiv_(grad, avg)
            param.add_(buf, alpha=-group["lr"])
        else:
            # theta <- theta - lr * g / avg
            param.addcdiv_(grad, avg, value=-group["lr"])

    def step_foreach(self, group, params, grads, states):
        alpha, mu = group["alpha"], group["momentum"]
        _increment_steps(states, fast=True)
        vs = [s["square_avg"] for s in states]
        torch._foreach_mul_(vs, alpha)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - alpha)
        if group["centered"]:
            gbars = [s["grad_avg"] for s in states]
            torch._foreach_lerp_(gbars, grads, 1 - alpha)
            avg = torch._foreach_addcmul(vs, gbars, gbars, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(vs)
        torch._foreach_add_(avg, group["eps"])
        if mu > 0:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, mu)
            torch._foreach_addcdiv_(bufs, grads, avg)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        else:
            torch._foreach_addcdiv_(params, grads, avg, value=-group["lr"])


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

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, foreach=True):
        _check(0.0 <= lr, f"Invalid learning rate: {lr}")
        _check(0.0 <= rho <= 1.0, f"Invalid rho value: {rho}")
        _check(0.0 <= eps, f"Invalid epsilon value: {eps}")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay), foreach)

    def init_state(self, state, group, param):
        state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def step_param(self, state, group, param, grad):
        rho, eps = group["rho"], group["eps"]
        _increment_steps([state], fast=False)
        # v_t = rho * v_{t-1} + (1 - rho) * g^2
        v = state["square_avg"].mul_(rho).addcmul_(grad, grad, value=1 - rho)
        # Delta_t = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g
        std = v.add(eps).sqrt_()
        delta = state["acc_delta"].add(eps).sqrt_().div_(std).mul_(grad)
        # u_t = rho * u_{t-1} + (1 - rho) * Delta_t^2
        state["acc_delta"].mul_(rho).addcmul_(delta, delta, value=1 - rho)
        # theta <- theta - lr * Delta_t
        param.add_(delta, alpha=-group["lr"])

    def step_foreach(self, group, params, grads, states):
        rho, eps = group["rho"], group["eps"]
        _increment_steps(states, fast=True)
        vs = [s["square_avg"] for s in states]
        us = [s["acc_delta"] for s in states]
        torch._foreach_mul_(vs, rho)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - rho)
        # one square root instead of two: sqrt((u + eps) / (v + eps)) * g (equal to rounding)
        var = torch._foreach_add(vs, eps)
        deltas = torch._foreach_add(us, eps)
        torch._foreach_div_(deltas, var)
        torch._foreach_sqrt_(deltas)
        torch._foreach_mul_(deltas, grads)
        torch._foreach_mul_(us, rho)
        torch._foreach_addcmul_(us, deltas, deltas, value=1 - rho)
        torch._foreach_add_(params, deltas, alpha=-group["lr"])


# =========================================================================
# Adam family
# =========================================================================
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

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, decoupled_weight_decay=False, foreach=True, compiled=False):
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

    def step_param(self, state, group, param, grad):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        (t,) = _increment_steps([state], fast=False)
        if group["decoupled_weight_decay"] and group["weight_decay"] != 0:
            # theta <- (1 - lr * lambda) * theta          (AdamW)
            param.mul_(1 - lr * group["weight_decay"])
        # m_t = beta1 * m_{t-1} + (1 - beta1) * g
        m = state["exp_avg"].lerp_(grad, 1 - beta1)
        # v_t = beta2 * v_{t-1} + (1 - beta2) * g^2
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["amsgrad"]:
            # vmax_t = max(vmax_{t-1}, v_t)
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        # denom = sqrt(v_t) / sqrt(1 - beta2^t) + eps
        denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
        # theta <- theta - lr / (1 - beta1^t) * m_t / denom
        param.addcdiv_(m, denom, value=-(lr / (1 - beta1**t)))

    def step_foreach(self, group, params, grads, states):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        ts = _increment_steps(states, fast=True)
        if group["decoupled_weight_decay"] and group["weight_decay"] != 0:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        if group["amsgrad"]:
            vmax = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(vmax, vs)
            denom = torch._foreach_sqrt(vmax)
        else:
            denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in ts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, ms, denom, [-(lr / (1 - beta1**t)) for t in ts])

    def step_compiled(self, group, params, grads, states):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        ts = _increment_steps(states, fast=True)
        decay = 1 - lr * group["weight_decay"] if group["decoupled_weight_decay"] else 1.0
        h = _hyper([[lr, beta1, beta2, eps, 1 - beta1**t, (1 - beta2**t) ** 0.5, decay] for t in ts])
        vmax = [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else None
        _compiled(_adam_kernel)(params, grads, [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], vmax, h)


def _adam_kernel(params, grads, ms, vs, vmaxs, h):
    """Adam's step as one function of tensors (for torch.compile); h[i] holds
    lr, beta1, beta2, eps, 1 - beta1^t, sqrt(1 - beta2^t), 1 - lr*lambda (AdamW; else 1)."""
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


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    .. math:: \theta \leftarrow (1 - \eta\lambda)\,\theta, \text{ then the Adam step without L2.}

    Loshchilov & Hutter (2019).  Same as ``torch.optim.AdamW`` (``weight_decay``
    default 1e-2; the decay is scaled by ``lr``, as in torch, not by the schedule
    multiplier alone as in the paper).

    State: as :class:`Adam`.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, foreach=True, compiled=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         decoupled_weight_decay=True, foreach=foreach, compiled=compiled)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


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

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=True, compiled=False):
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

    def step_param(self, state, group, param, grad):
        lr, (beta1, beta2), eps, psi = group["lr"], group["betas"], group["eps"], group["momentum_decay"]
        (t,) = _increment_steps([state], fast=False)
        if group["decoupled_weight_decay"] and group["weight_decay"] != 0:
            # theta <- (1 - lr * lambda) * theta          (NAdamW)
            param.mul_(1 - lr * group["weight_decay"])
        mu, mu_next = self._mu(beta1, t, psi), self._mu(beta1, t + 1, psi)
        # Pi_t = Pi_{t-1} * mu_t
        state["mu_product"] *= mu
        pi = state["mu_product"].item()
        # m_t = beta1 * m_{t-1} + (1 - beta1) * g
        m = state["exp_avg"].lerp_(grad, 1 - beta1)
        # v_t = beta2 * v_{t-1} + (1 - beta2) * g^2
        v = state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # denom = sqrt(v_t / (1 - beta2^t)) + eps
        denom = v.div(1 - beta2**t).sqrt().add_(eps)
        # theta <- theta - lr (1 - mu_t) / (1 - Pi_t) * g / denom
        param.addcdiv_(grad, denom, value=(-lr * (1.0 - mu) / (1.0 - pi)))
        # theta <- theta - lr mu_{t+1} / (1 - Pi_t mu_{t+1}) * m_t / denom
        param.addcdiv_(m, denom, value=(-lr * mu_next) / (1.0 - pi * mu_next))

    def step_foreach(self, group, params, grads, states):
        lr, (beta1, beta2), eps, psi = group["lr"], group["betas"], group["eps"], group["momentum_decay"]
        ts = _increment_steps(states, fast=True)
        if group["decoupled_weight_decay"] and group["weight_decay"] != 0:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        mus = [self._mu(beta1, t, psi) for t in ts]
        mu_nexts = [self._mu(beta1, t + 1, psi) for t in ts]
        pis = [s["mu_product"] for s in states]
        torch._foreach_mul_(pis, mus)
        pis = [p.item() for p in pis]
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_div(vs, [1 - beta2**t for t in ts])
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, grads, denom,
                                [(-lr * (1.0 - mu) / (1.0 - pi)) for mu, pi in zip(mus, pis)])
        torch._foreach_addcdiv_(params, ms, denom,
                                [(-lr * mn) / (1.0 - pi * mn) for mn, pi in zip(mu_nexts, pis)])

    def step_compiled(self, group, params, grads, states):
        lr, (beta1, beta2), eps, psi = group["lr"], group["betas"], group["eps"], group["momentum_decay"]
        ts = _increment_steps(states, fast=True)
        mus = [self._mu(beta1, t, psi) for t in ts]
        mu_nexts = [self._mu(beta1, t + 1, psi) for t in ts]
        pis = [s["mu_product"] for s in states]
        torch._foreach_mul_(pis, mus)
        pis = [p.item() for p in pis]
        decay = 1 - lr * group["weight_decay"] if group["decoupled_weight_decay"] else 1.0
        h = _hyper([[beta1, beta2, eps, 1 - beta2**t, -lr * (1.0 - mu) / (1.0 - pi),
                     (-lr * mn) / (1.0 - pi * mn), decay]
                    for t, mu, mn, pi in zip(ts, mus, mu_nexts, pis)])
        _compiled(_nadam_kernel)(params, grads, [s["exp_avg"] for s in states],
                                 [s["exp_avg_sq"] for s in states], h)


def _nadam_kernel(params, grads, ms, vs, h):
    """NAdam's step as one function of tensors (for torch.compile); h[i] holds beta1, beta2,
    eps, 1 - beta2^t, the gradient's and the momentum's step coefficients, 1 - lr*lambda."""
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


# =========================================================================
# The two rules of seed 000
# =========================================================================
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

    chunk_foreach = False  # S sums over the whole group before any parameter moves

    def __init__(self, params, lr=0.01, accumulate=True, weight_decay=0, *, foreach=True,
                 compiled=False):
        _check(0.0 < lr < math.inf, f"Invalid learning rate: {lr} (Gravity needs 0 < lr < inf: b0 = 1/lr)")
        _check(0.0 <= weight_decay, f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, accumulate=bool(accumulate), weight_decay=weight_decay)
        super().__init__(params, defaults, foreach, compiled)

    def _holder(self, group):
        """The state dict that carries the group's S (its first parameter's)."""
        return self.state[group["params"][0]]

    def _previous_sum_sq(self, group):
        # S_{t-1}     (:= 0 when accumulate=False)
        return self._holder(group).get("sum_sq", 0.0) if group["accumulate"] else 0.0

    def _descend(self, group, params, grads, sum_sq_now, fast):
        holder = self._holder(group)
        # S_t = S_{t-1} + sum_p ||g_p||^2
        holder["sum_sq"] = self._previous_sum_sq(group) + sum_sq_now
        # k_t = sqrt(1/lr^2 + S_t)
        k = math.sqrt(1.0 / group["lr"] ** 2 + holder["sum_sq"])
        # theta <- theta - g / k_t
        if fast:
            torch._foreach_add_(params, grads, alpha=-1.0 / k)
        else:
            for p, g in zip(params, grads):
                p.add_(g, alpha=-1.0 / k)

    def step_reference(self, group, params, grads, states):
        # sum_p sum_i g_{p,i}^2
        sum_sq_now = sum(float(torch.sum(g * g)) for g in grads)
        self._descend(group, params, grads, sum_sq_now, fast=False)

    def step_foreach(self, group, params, grads, states):
        norms = torch._foreach_norm(grads)
        sum_sq_now = float(torch.stack([n.double() for n in norms]).square().sum())
        self._descend(group, params, grads, sum_sq_now, fast=True)

    def step_compiled(self, group, params, grads, states):
        h = _hyper([self._previous_sum_sq(group), 1.0 / group["lr"] ** 2])
        self._holder(group)["sum_sq"] = float(_compiled(_gravity_kernel)(params, grads, h))

    def effective_lr(self):
        """Per param group, the step size ``1/k`` of the last step (``lr`` before the first)."""
        out = []
        for group in self.param_groups:
            holder = self.state.get(group["params"][0], {})
            out.append(1.0 / math.sqrt(1.0 / group["lr"] ** 2 + holder.get("sum_sq", 0.0)))
        return out


def _gravity_kernel(params, grads, h):
    """Gravity's step as one function of tensors (for torch.compile); h = (S_{t-1}, 1/lr^2).
    Returns S_t (0-d float64)."""
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

    def __init__(self, params, lr=0.01, C=1.8, per="row", weight_decay=0, *, foreach=True,
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

    def step_param(self, state, group, param, grad):
        m, per = state["momentum_buffer"], group["per"]
        # c_r = <m_r, g_r> / (|m_r| |g_r|)
        cos = state["cos"] = _row_cosines(m, grad, per)
        # m <- C * (c / 2) * m + lr * g
        m.mul_((group["C"] / 2 * cos).reshape(_broadcast_shape(m, per))).add_(grad, alpha=group["lr"])
        # theta <- theta - m
        param.sub_(m)

    def step_foreach(self, group, params, grads, states):
        per, half_c = group["per"], group["C"] / 2
        ms = [s["momentum_buffer"] for s in states]
        for s, m, g in zip(states, ms, grads):
            s["cos"] = _row_cosines(m, g, per)
            m.mul_((half_c * s["cos"]).reshape(_broadcast_shape(m, per)))
        torch._foreach_add_(ms, grads, alpha=group["lr"])
        torch._foreach_sub_(params, ms)

    def step_compiled(self, group, params, grads, states):
        ms = [s["momentum_buffer"] for s in states]
        coss = _compiled(_cosine_kernel)(params, grads, ms, _hyper([group["C"] / 2, group["lr"]]),
                                         group["per"])
        for s, cos in zip(states, coss):
            s["cos"] = cos


def _cosine_kernel(params, grads, ms, h, per):
    """Cosine's step as one function of tensors (for torch.compile); h = (C/2, lr).
    Returns the cosines (one tensor per parameter)."""
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
