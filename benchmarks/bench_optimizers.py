"""Cost of one optimizer step, ours vs torch.optim, on the PyTorch quickstart MLP.

The model is the quickstart's Fashion-MNIST MLP (Flatten, Linear 784-512, ReLU,
Linear 512-512, ReLU, Linear 512-10; 669,706 parameters) at batch 64 on random
data.  Gradients are computed once and kept; every timed call is one
``optimizer.step()`` on them (the parameters drift, which does not change the
cost).  For each rule, our optimizer and torch's are timed side by side in one
run, interleaved (ours, torch, ours, torch, ...), and the median over repeats is
reported.  "ours" is the rule's compiled step (``compiled=True``: its formula through
torch.compile, what the trainer uses; compiled during the warm-up), "ours eager" the
same formula run eagerly (``compiled=False``, the reference).  "torch" is torch.optim
with its default implementation on this device (on CPU torch picks the single-tensor
for-loop, since its foreach kernels are CUDA-only); "torch foreach" forces
``foreach=True`` for context, and "torch fused" is torch's own fused CPU kernel where
torch has one (``fused=True``: SGD, Adam, AdamW, Adagrad).  Gravity and Cosine have no
torch counterpart: torch's Adam is their baseline.  One forward + backward pass is
timed as well, for scale.

    python benchmarks/bench_optimizers.py [--threads 1] [--repeats 15] [--quick]

A timing on a shared machine is a measurement, not a verification: numbers
vary with the load of other processes.
"""

import argparse
import statistics
import time

import torch
from torch import nn

import optimizers
from optreport.engine.train import has_compiled_step

FUSED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad)  # fused=True on CPU

# (rule, our constructor kwargs, torch class, torch kwargs)
PAIRS = [
    ("sgd", {}, torch.optim.SGD, {}),
    ("momentum", {}, torch.optim.SGD, {"momentum": 0.9}),
    ("nag", {}, torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", {}, torch.optim.Adagrad, {}),
    ("rmsprop", {}, torch.optim.RMSprop, {}),
    ("adadelta", {}, torch.optim.Adadelta, {}),
    ("adam", {}, torch.optim.Adam, {}),
    ("nadam", {}, torch.optim.NAdam, {}),
    ("adamw", {}, torch.optim.AdamW, {}),
    ("gravity", {}, torch.optim.Adam, {}),
    ("cosine", {}, torch.optim.Adam, {}),
]


def quickstart_mlp():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )


def model_with_grads(seed=0):
    torch.manual_seed(seed)
    model = quickstart_mlp()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    nn.functional.cross_entropy(model(x), y).backward()
    return model


def time_calls(fn, calls):
    """Microseconds per call of ``fn``, over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def bench_rule(name, ours_kwargs, torch_cls, torch_kwargs, repeats, calls, warmup):
    ours = optimizers.OPTIMIZERS[name]
    contenders = {"ours": (ours, ours_kwargs)}   # eager, for a rule without a compiled step
    if has_compiled_step(name):                  # every rule of optimizers.OPTIMIZERS
        contenders = {"ours": (ours, dict(ours_kwargs, compiled=True)),
                      "ours eager": (ours, dict(ours_kwargs, compiled=False))}
    contenders.update({
        "torch": (torch_cls, torch_kwargs),
        "torch foreach": (torch_cls, dict(torch_kwargs, foreach=True)),
    })
    if torch_cls in FUSED and name not in ("gravity", "cosine"):
        contenders["torch fused"] = (torch_cls, dict(torch_kwargs, fused=True))
    steps = {}
    for label, (cls, kwargs) in contenders.items():
        model = model_with_grads()
        opt = cls(model.parameters(), **kwargs)
        for _ in range(warmup):  # creates the state and warms the caches
            opt.step()
        steps[label] = opt.step
    samples = {label: [] for label in steps}
    for _ in range(repeats):  # interleaved: each repeat times every contender once
        for label, step in steps.items():
            samples[label].append(time_calls(step, calls))
    return {label: statistics.median(v) for label, v in samples.items()}


def bench_forward_backward(repeats, calls):
    model = quickstart_mlp()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    fwd_bwd()
    return statistics.median(time_calls(fwd_bwd, calls) for _ in range(repeats))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per contender (median)")
    parser.add_argument("--calls", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats of 3 calls")
    parser.add_argument("--rules", nargs="*", default=None, help="subset of rules (default: all)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 3, 3
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} x {args.calls} steps, median")
    fb = bench_forward_backward(args.repeats, args.calls)
    print(f"one forward+backward (batch 64): {fb:.0f} us\n")
    header = (f"{'rule':<10} {'ours us':>9} {'torch us':>9} {'ratio':>6} {'torch foreach us':>17} "
              f"{'ours eager us':>14} {'torch fused us':>15}  baseline")
    print(header)
    print("-" * len(header))
    rows = []
    for name, ours_kwargs, torch_cls, torch_kwargs in PAIRS:
        if args.rules and name not in args.rules:
            continue
        t = bench_rule(name, ours_kwargs, torch_cls, torch_kwargs, args.repeats, args.calls,
                       warmup=3)
        ratio = t["ours"] / t["torch"]
        baseline = torch_cls.__name__ + "".join(f" {k}={v}" for k, v in torch_kwargs.items())
        eager, fused = (f"{t[k]:.0f}" if k in t else "-" for k in ("ours eager", "torch fused"))
        print(f"{name:<10} {t['ours']:>9.0f} {t['torch']:>9.0f} {ratio:>6.2f} "
              f"{t['torch foreach']:>17.0f} {eager:>14} {fused:>15}  {baseline}", flush=True)
        rows.append((name, t["ours"], t["torch"], ratio, t["torch foreach"],
                     t.get("ours eager"), t.get("torch fused")))
    return rows


if __name__ == "__main__":
    main()
