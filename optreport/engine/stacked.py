"""K copies of the MLP trained in lockstep in one process: the fast path's numbers, bit for bit, per model.

    from optreport.engine.stacked import StackedLinearStack, stacked_param_groups
    nets = [build_model("mlp", seed) for seed in seeds]
    stack = StackedLinearStack.of(nets)               # None if the nets are not stackable
    opt = make_optimizer(rule, stacked_param_groups(rule, nets), hparams)
    logits, ys, losses = stack.step(x_all, y_all, [idx_0, idx_1, ...])   # one batch per model
    opt.step()

The K models' weights live in stacked tensors (K x out x in); each model's ``nn.Linear`` keeps
its parameters as views of its slice, so an optimizer over the models' parameters, ``evaluate``
and ``state_dict`` see each model as if it were alone. A step runs each of engine.fastpath's calls
once for all K models: ``baddbmm``/``bmm`` instead of ``addmm``/``mm`` (on this CPU they give, slice
by slice, the bits ``mm`` gives), the row-wise kernels (ReLU, log-softmax and its backward,
threshold_backward) over all rows at once, the loss per model (its mean is over the model's own
batch), the bias gradient as a sum over each model's batch. The update is one optimizer step over
all K models' parameters: one call of the rule's compiled formula instead of K. Every model's
numbers are those of training it alone with one torch thread, as the report's workers train
(tests/test_stacked.py checks it bitwise for every rule, eager and compiled). With more threads a
single model's ``mm`` is split across threads differently from ``bmm``, and the bits may differ.

What it saves is per-step work that does not grow with the batch: Python and dispatch of ~25 small
calls and one optimizer call per step, shared by K models (benchmarks/bench_stacking.py measures
it). The matrix multiplies and the update's memory traffic stay K times those of one model.

The trainer stacks with it (engine.train.train_stacked: K seeds of one configuration, each with its
own batch order, divergence, checkpoint and record), and the sweep trains the waiting seeds of a
configuration that way (runs.sweep.STACK).
"""
from __future__ import annotations

import torch
from torch import nn

from optimizers import OPTIMIZERS
from optreport.engine.fastpath import LinearStack

__all__ = ["StackedLinearStack", "stacked_param_groups"]

_aten = torch.ops.aten
_MEAN = 1              # ATen's reduction code for "mean"
_IGNORE = -100         # F.cross_entropy's default ignore_index


def stacked_param_groups(rule: str, nets: list[nn.Module]) -> list:
    """The parameters of ``nets`` for one optimizer of ``rule``: one group for all models, or one
    group per model when the rule's formula couples the parameters of a group (its class sets
    ``couples_group``: Gravity's S sums the squared gradients of the whole group), so that each
    model's step depends on its own parameters only."""
    if rule not in OPTIMIZERS:
        raise ValueError(f"Unknown rule: {rule!r} (choose from {', '.join(OPTIMIZERS)})")
    if getattr(OPTIMIZERS[rule], "couples_group", False):
        return [{"params": list(net.parameters())} for net in nets]
    return [p for net in nets for p in net.parameters()]


class StackedLinearStack:
    """The manual training step of K ``Sequential([Flatten,] Linear, ReLU, ..., Linear)`` of the
    same shapes, stacked."""

    def __init__(self, stacks: list[LinearStack]):
        self.k = len(stacks)
        layers = [s.layers for s in stacks]
        n_layers = len(layers[0])
        self.weight, self.bias, self.weight_grad, self.bias_grad = [], [], [], []
        with torch.no_grad():
            for j in range(n_layers):
                w = torch.stack([ls[j].weight.detach() for ls in layers]).contiguous()
                b = torch.stack([ls[j].bias.detach() for ls in layers]).contiguous()
                self.weight.append(w)
                self.bias.append(b)
                self.weight_grad.append(torch.empty_like(w))
                self.bias_grad.append(torch.empty_like(b))
        for k, ls in enumerate(layers):           # each model's parameters become views of its slice
            for j, m in enumerate(ls):
                m.weight = nn.Parameter(self.weight[j][k])
                m.bias = nn.Parameter(self.bias[j][k])
                m.weight.grad = self.weight_grad[j][k]
                m.bias.grad = self.bias_grad[j][k]
        self.layers = layers
        self._buffers: dict[int, dict] = {}
        self._one = torch.ones((), dtype=self.weight[0].dtype)

    @classmethod
    def of(cls, nets: list[nn.Module]) -> StackedLinearStack | None:
        """The stacked step of ``nets`` if each is a stack engine.fastpath supports and all have
        the same layer shapes and dtype, else None. Rebinds each net's parameters as views of
        the stacked tensors (call it before building the optimizer)."""
        stacks = [LinearStack.of(net) for net in nets]
        if not stacks or any(s is None for s in stacks):
            return None
        shape = [(m.in_features, m.out_features, m.weight.dtype) for m in stacks[0].layers]
        if any([(m.in_features, m.out_features, m.weight.dtype) for m in s.layers] != shape for s in stacks):
            return None
        return cls(stacks)

    def _bufs(self, b: int, x_all: torch.Tensor, y_all: torch.Tensor) -> dict:
        """Activation and gradient buffers for batches of ``b`` per model (made once per size)."""
        if b not in self._buffers:
            dt, k = self.weight[0].dtype, self.k
            self._buffers[b] = dict(
                x=torch.empty(k * b, x_all[0].numel(), dtype=x_all.dtype),
                y=torch.empty(k * b, dtype=y_all.dtype),
                z=[torch.empty(k, b, w.shape[1], dtype=dt) for w in self.weight],
                gx=[torch.empty(k, b, w.shape[2], dtype=dt) for w in self.weight],
            )
        return self._buffers[b]

    def _check_grads(self):
        """Each parameter's ``.grad`` must still be its view of the stacked gradient (an optimizer's
        ``zero_grad(set_to_none=True)`` would have dropped it)."""
        for j in range(len(self.weight)):
            for k, ls in enumerate(self.layers):
                m = ls[j]
                if m.weight.grad is None or m.bias.grad is None:
                    m.weight.grad = self.weight_grad[j][k]
                    m.bias.grad = self.bias_grad[j][k]

    @torch.no_grad()
    def step(self, x_all: torch.Tensor, y_all: torch.Tensor, idxs: list[torch.Tensor]):
        """Forward and backward of each model's mean cross-entropy on its examples ``idxs[k]`` of
        ``x_all`` (flattened from dimension 1) and ``y_all`` (every idx of the same length): fills
        every parameter's ``.grad`` and returns (logits K x b x classes, labels K x b, list of the K
        losses). Logits and labels live in buffers the next step overwrites."""
        if len(idxs) != self.k:
            raise ValueError(f"Invalid idxs: {len(idxs)} index tensors for {self.k} stacked models")
        b = len(idxs[0])
        if any(len(i) != b for i in idxs):
            raise ValueError("Invalid idxs: every model's batch must have the same size")
        self._check_grads()
        buf = self._bufs(b, x_all, y_all)
        idx = torch.cat(idxs)
        x = torch.index_select(x_all.flatten(1), 0, idx, out=buf["x"]).view(self.k, b, -1)
        y = torch.index_select(y_all, 0, idx, out=buf["y"])
        last = len(self.weight) - 1
        acts, h = [x], x
        for j in range(last + 1):
            h = torch.baddbmm(self.bias[j].unsqueeze(1), h, self.weight[j].transpose(1, 2), out=buf["z"][j])
            if j < last:
                h = h.relu_()
                acts.append(h)
        logits = h
        logp = torch._log_softmax(logits.view(self.k * b, -1), 1, False)
        losses, gs = [], []
        for k in range(self.k):                    # each model's mean over its own batch
            lp, yk = logp[k * b:(k + 1) * b], y[k * b:(k + 1) * b]
            loss, total_weight = _aten.nll_loss_forward(lp, yk, None, _MEAN, _IGNORE)
            gs.append(_aten.nll_loss_backward(self._one, lp, yk, None, _MEAN, _IGNORE, total_weight))
            losses.append(loss)
        g = _aten._log_softmax_backward_data(torch.cat(gs), logp, 1, logp.dtype).view(self.k, b, -1)
        for j in range(last, -1, -1):
            torch.bmm(g.transpose(1, 2), acts[j], out=self.weight_grad[j])
            torch.sum(g, 1, out=self.bias_grad[j])
            if j > 0:
                g = torch.bmm(g, self.weight[j], out=buf["gx"][j])
                g = _aten.threshold_backward(g, acts[j], 0)
        return logits, y.view(self.k, b), losses
