"""The three Fashion-MNIST classifiers of the report. All take (N, 1, 28, 28) and return logits (N, 10).

    model = build_model("mlp", seed=0)

mlp        the PyTorch quickstart network (the default and the one every figure uses unless it
           says otherwise): Flatten, 784-512, ReLU, 512-512, ReLU, 512-10; PyTorch's default init.
cnn        DeepOBS's fmnist_2c2d: conv 32@5x5 'same' -> ReLU -> maxpool 2x2 -> conv 64@5x5 'same'
           -> ReLU -> maxpool 2x2 -> fc 3136-1024 -> ReLU -> fc 1024-10. As in DeepOBS
           (deepobs/pytorch/testproblems/testproblems_modules.py, net_mnist_2c2d), weights are
           truncated normal (std 0.05, cut at 2 std) and biases 0.05. For 28x28 inputs and even
           sizes TF's 'same' max-pooling equals PyTorch's MaxPool2d(2) (28 -> 14 -> 7).
small_mlp  the network of seed document 004: hidden layers 64 and 32, then 10 outputs
           (784-64-32-10, ReLU); PyTorch's default init.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODELS", "MODEL_VERSIONS", "build_model", "mlp", "cnn", "small_mlp", "flops_per_example"]


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )


def small_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 64), nn.ReLU(),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )


def cnn() -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(),    # 'same': 28x28
        nn.MaxPool2d(2),                                          # 14x14
        nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(),   # 'same': 14x14
        nn.MaxPool2d(2),                                          # 7x7
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(),
        nn.Linear(1024, 10),
    )
    for m in net.modules():       # DeepOBS's initialisation (see module docstring)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.05, a=-0.1, b=0.1)
            nn.init.constant_(m.bias, 0.05)
    return net


MODELS = {"mlp": mlp, "cnn": cnn, "small_mlp": small_mlp}

#: Version of each model's definition (architecture and initialisation). It enters every run's
#: key: bump a model's number when a change alters its numbers (the golden tests in
#: tests/test_golden.py fail until you do); a refactor that keeps them keeps every stored run.
MODEL_VERSIONS = {"mlp": 1, "cnn": 1, "small_mlp": 1}


def build_model(name: str = "mlp", seed: int = 0) -> nn.Module:
    """A fresh model whose initial weights depend only on ``seed`` (global RNG state untouched)."""
    if name not in MODELS:
        raise ValueError(f"Unknown model: {name!r} (choose from {', '.join(MODELS)})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


def flops_per_example(model: nn.Module, input_shape=(1, 28, 28)) -> int:
    """Forward multiply-adds x 2 of the Linear and Conv2d layers for one example (biases ignored).

    Training costs about 3x this per example (forward, plus two matmuls of the same size in the
    backward pass for the input- and weight-gradients)."""
    total = 0
    hooks = []

    def count(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            total += 2 * k * out[0].numel()
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_hook(count))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return total
