"""Forward and backward of a Linear/ReLU stack by hand: autograd's numbers, bit for bit, with less work.

    from optreport.engine.fastpath import LinearStack
    stack = LinearStack.of(net)                   # None if net is not a supported stack
    logits, y, loss = stack.step(x_all, y_all, idx)   # every parameter's .grad filled, then optimizer.step()

The trainer's models ``mlp`` and ``small_mlp`` are ``Sequential(Flatten, Linear, ReLU, ...,
Linear)``. For them a training step's forward and backward are a fixed list of ATen calls; this
module issues exactly the calls autograd issues, in the layouts autograd uses, so the loss, the
gradients and therefore every run's numbers are identical to ``F.cross_entropy(net(x), y)
.backward()`` (tests/test_fastpath.py checks it bitwise for every rule, and the golden
trajectories in tests/test_golden.py still hold; the run key does not change). Per Linear layer
``y = x W^T + b`` (autograd's ``addmm``) and, with ``g`` the gradient at its output::

    grad_W = g^T @ x            grad_b = sum_rows(g)          grad_x = g @ W   (not for the input)

ReLU's backward is ``threshold_backward(g, relu_output, 0)``; the loss is ``log_softmax`` then
``nll_loss`` (mean), with their own backward kernels.

What it saves (benchmarks/bench_throughput.py measures it): building and walking the autograd
graph, allocating fresh gradient and activation tensors every step (gradients are written into
the same ``.grad`` tensors, activations into buffers made once per batch size), and the batch
gather's allocation (``index_select`` into a buffer).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearStack"]

_aten = torch.ops.aten
_MEAN = 1              # ATen's reduction code for "mean"
_IGNORE = -100         # F.cross_entropy's default ignore_index


class LinearStack:
    """The manual training step of ``Sequential([Flatten,] Linear, ReLU, ..., Linear)``."""

    def __init__(self, layers: list[nn.Linear]):
        self.layers = layers
        self._buffers: dict[int, dict] = {}

    @classmethod
    def of(cls, net: nn.Module) -> LinearStack | None:
        """The stack of ``net`` if it is a supported Linear/ReLU stack (float, CPU, every parameter
        trainable, no hooks), else None."""
        if type(net) is not nn.Sequential:
            return None
        mods = list(net)
        if mods and type(mods[0]) is nn.Flatten and (mods[0].start_dim, mods[0].end_dim) == (1, -1):
            mods = mods[1:]
        if not mods or len(mods) % 2 != 1:
            return None
        layers = mods[0::2]
        if any(type(m) is not nn.Linear or m.bias is None for m in layers):
            return None
        if any(type(m) is not nn.ReLU or m.inplace for m in mods[1::2]):
            return None
        params = list(net.parameters())
        if any(p.device.type != "cpu" or not p.dtype.is_floating_point or p.dtype != params[0].dtype
               or not p.requires_grad for p in params):        # a frozen parameter gets no gradient
            return None
        if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in net.modules()):
            return None
        return cls(layers)

    def _bufs(self, b: int, x_all: torch.Tensor, y_all: torch.Tensor) -> dict:
        """Activation and gradient buffers for batches of ``b`` (made once per batch size)."""
        if b not in self._buffers:
            dt = self.layers[0].weight.dtype
            self._buffers[b] = dict(
                x=torch.empty(b, x_all[0].numel(), dtype=x_all.dtype),
                y=torch.empty(b, dtype=y_all.dtype),
                z=[torch.empty(b, m.out_features, dtype=dt) for m in self.layers],
                gx=[torch.empty(b, m.in_features, dtype=dt) for m in self.layers],
            )
        return self._buffers[b]

    def _grads(self):
        """Each parameter's ``.grad`` (made once, then written in place every step)."""
        for m in self.layers:
            for p in (m.weight, m.bias):
                if p.grad is None or p.grad.shape != p.shape or not p.grad.is_contiguous():
                    p.grad = torch.empty_like(p, memory_format=torch.contiguous_format)

    @torch.no_grad()
    def step(self, x_all: torch.Tensor, y_all: torch.Tensor, idx: torch.Tensor):
        """Forward and backward of the mean cross-entropy on the examples ``idx`` of ``x_all``
        (flattened from dimension 1) and ``y_all``: fills every parameter's ``.grad`` and returns
        (logits, labels of the batch, loss). Logits and labels live in buffers the next step
        overwrites."""
        self._grads()
        buf = self._bufs(len(idx), x_all, y_all)
        x = torch.index_select(x_all.flatten(1), 0, idx, out=buf["x"])
        y = torch.index_select(y_all, 0, idx, out=buf["y"])
        last = len(self.layers) - 1
        acts, h = [x], x
        for j, m in enumerate(self.layers):
            h = torch.addmm(m.bias, h, m.weight.t(), out=buf["z"][j])
            if j < last:
                h = h.relu_()                       # ReLU's output is what its backward reads
                acts.append(h)
        logits = h
        logp = torch._log_softmax(logits, 1, False)
        loss, total_weight = _aten.nll_loss_forward(logp, y, None, _MEAN, _IGNORE)
        g = _aten.nll_loss_backward(torch.ones((), dtype=loss.dtype), logp, y, None, _MEAN, _IGNORE,
                                    total_weight)
        g = _aten._log_softmax_backward_data(g, logp, 1, logp.dtype)
        for j in range(last, -1, -1):
            m = self.layers[j]
            torch.mm(g.t(), acts[j], out=m.weight.grad)
            torch.sum(g, 0, out=m.bias.grad)
            if j > 0:
                g = torch.mm(g, m.weight, out=buf["gx"][j])
                g = _aten.threshold_backward(g, acts[j], 0)
        return logits, y, loss
