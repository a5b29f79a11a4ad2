"""Live check of our classic update rules against ``torch.optim``.

    from optreport.analysis.conformance import compare_with_torch, conformance_table
    compare_with_torch("adam", steps=100)      # {'max_abs': 2e-17, 'max_rel': 4e-16, ...}

Both optimizers get parameters of the quickstart MLP's shapes (784-512-512-10: three weight
matrices and three bias vectors), initialised identically. At every step each side computes
its gradient from *its own* parameters, ``g = noise_t + c * p`` (the gradient of
``c/2 |p|² + noise_t · p``, with the same seeded noise on both sides), so a difference in one
step feeds into the next as it would in training. After every step we record

* ``max_abs``: the largest element-wise ``|ours − torch|`` over all parameters and steps;
* ``max_rel``: the largest ``max|ours − torch| / max|torch|`` per tensor and step (relative to
  the tensor's scale, so near-zero elements do not blow it up).

Our classes are called with ``hparams`` only (so their own defaults are checked against
torch's); torch's classes with ``TORCH_COUNTERPARTS[rule][1]`` updated by ``hparams``. Our side
runs each rule's formula eagerly (``compiled=False``): the very function that training hands to
``torch.compile`` (see optimizers), so the check and the formula cards (``rule_card``) are
about the code that trains.
"""
from __future__ import annotations

import inspect
import re
import textwrap

import numpy as np
import pandas as pd
import torch

from optimizers import OPTIMIZERS

__all__ = ["TORCH_COUNTERPARTS", "DEFAULT_LR", "MLP_SHAPES", "compare_with_torch",
           "conformance_table", "update_gap", "rule_formulas", "rule_source", "rule_card"]

# rule -> (torch class, kwargs that make torch's class the same rule as ours with its defaults)
TORCH_COUNTERPARTS = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nag": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adadelta": (torch.optim.Adadelta, {}),
    "adam": (torch.optim.Adam, {}),
    "nadam": (torch.optim.NAdam, {}),
    "adamw": (torch.optim.AdamW, {}),
}

# The lr each check uses when none is given: 0.1 for the SGD family (a typical training lr),
# torch's default for the adaptive rules.
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.1, "nag": 0.1, "adagrad": 0.01, "rmsprop": 0.01,
              "adadelta": 1.0, "adam": 1e-3, "nadam": 2e-3, "adamw": 1e-3}

# Parameter shapes of the quickstart MLP (models.MODELS["mlp"]): Linear layers 784-512-512-10.
MLP_SHAPES = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]


def compare_with_torch(rule: str, *, steps: int = 100, seed: int = 0,
                       dtype: torch.dtype = torch.float64, hparams: dict | None = None,
                       shapes=MLP_SHAPES, decay: float = 1e-2, optimizers=None) -> dict:
    """Run ``rule`` (ours) and its ``torch.optim`` counterpart side by side for ``steps`` steps.

    Returns ``{'rule', 'steps', 'max_abs', 'max_rel', 'hparams', 'torch_class', 'n_params'}``.
    """
    if optimizers is None:
        optimizers = OPTIMIZERS
    torch_cls, torch_kw = TORCH_COUNTERPARTS[rule]
    hp = {"lr": DEFAULT_LR[rule], **(hparams or {})}
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen, dtype=dtype) * 0.05 for s in shapes]
    ours_p = [torch.nn.Parameter(t.clone()) for t in init]
    ref_p = [torch.nn.Parameter(t.clone()) for t in init]
    ours = optimizers[rule](ours_p, **hp)
    ref = torch_cls(ref_p, **{**torch_kw, **hp})
    max_abs = 0.0
    max_rel = 0.0
    for _ in range(steps):
        noise = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
        for params in (ours_p, ref_p):
            for p, n in zip(params, noise):
                p.grad = n + decay * p.detach()
        ours.step()
        ref.step()
        with torch.no_grad():
            for a, b in zip(ours_p, ref_p):
                d = float((a - b).abs().max())
                scale = float(b.abs().max())
                max_abs = max(max_abs, d)
                max_rel = max(max_rel, d / scale if scale > 0 else d)
    return {"rule": rule, "steps": steps, "max_abs": max_abs, "max_rel": max_rel,
            "hparams": hp, "torch_class": f"torch.optim.{torch_cls.__name__}"
            + (f"({', '.join(f'{k}={v}' for k, v in torch_kw.items())})" if torch_kw else ""),
            "n_params": sum(t.numel() for t in init)}


def conformance_table(rules=None, *, steps: int = 100, rtol: float = 1e-10, **kw):
    """One row per rule: ``compare_with_torch`` plus ``verdict`` ("matches" when
    ``max_rel <= rtol``, else "DIFFERS")."""
    rows = []
    for rule in rules or TORCH_COUNTERPARTS:
        r = compare_with_torch(rule, steps=steps, **kw)
        rows.append({"rule": rule, "torch": r["torch_class"], "lr": r["hparams"]["lr"],
                     "steps": r["steps"], "max_abs": r["max_abs"], "max_rel": r["max_rel"],
                     "verdict": "matches" if r["max_rel"] <= rtol else "DIFFERS"})
    return pd.DataFrame(rows)


def update_gap(rule_a: str, hparams_a: dict, rule_b: str, hparams_b: dict, *, steps: int = 100,
               seed: int = 0, dtype: torch.dtype = torch.float64, shapes=MLP_SHAPES,
               optimizers=None):
    """Per step, how far rule A's update is from rule B's when both see the *same* gradients.

    Both start from the same parameters and get the same seeded gradient sequence (pure noise,
    independent of the parameters, so the updates of step t are directly comparable). Returns
    a float64 array ``gap[t] = max_p |Δa_p − Δb_p|_∞ / max_p |Δb_p|_∞`` for t = 1..steps: 0 means
    the two rules took identical steps. Used for the inclusion-hierarchy demos (Momentum with
    momentum=0 *is* SGD; Adam with a huge eps and ``lr = lr_m * eps / (1 - beta1)`` tracks
    Momentum once its bias correction has died out).
    """
    if optimizers is None:
        optimizers = OPTIMIZERS
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen, dtype=dtype) * 0.05 for s in shapes]
    pa = [torch.nn.Parameter(t.clone()) for t in init]
    pb = [torch.nn.Parameter(t.clone()) for t in init]
    oa = optimizers[rule_a](pa, **hparams_a)
    ob = optimizers[rule_b](pb, **hparams_b)
    gap = np.empty(steps)
    for t in range(steps):
        noise = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
        before_a = [p.detach().clone() for p in pa]
        before_b = [p.detach().clone() for p in pb]
        for params in (pa, pb):
            for p, n in zip(params, noise):
                p.grad = n.clone()
        oa.step()
        ob.step()
        with torch.no_grad():
            da = [p - q for p, q in zip(pa, before_a)]
            db = [p - q for p, q in zip(pb, before_b)]
            num = max(float((x - y).abs().max()) for x, y in zip(da, db))
            den = max(float(y.abs().max()) for y in db)
        gap[t] = num / den if den > 0 else num
    return gap


# --------------------------------------------------------------------------- showing a rule
# The code that trains a rule: its formula (``cls.formula``, the one function of tensors that runs
# eagerly and through torch.compile) and the method that turns the group's hyper-parameters into
# the formula's scalars (``step_group``).


def rule_formulas(cls) -> list[str]:
    """The LaTeX of every ``.. math::`` block in the class docstring."""
    doc = inspect.getdoc(cls) or ""
    out, lines, i = [], doc.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith(".. math::"):
            first = line.split(".. math::", 1)[1].strip()
            block = [first] if first else []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                if not lines[i].strip() and block:
                    break
                block.append(lines[i])
                i += 1
            out.append(" ".join(textwrap.dedent("\n".join(block)).split()))
            continue
        i += 1
    return out


def rule_source(cls) -> str:
    """Source of the code that trains the rule: its formula (``cls.formula``; both paths,
    ``compiled=False`` and ``compiled=True``, run this function) and ``step_group``, which
    computes the step's scalars and calls it (where it is defined in the class's MRO)."""
    parts = []
    if getattr(cls, "formula", None) is not None:
        fn = inspect.unwrap(cls.formula)
        parts.append(f"# {fn.__module__}.{fn.__name__}\n{textwrap.dedent(inspect.getsource(fn))}")
    owner = next((c for c in cls.__mro__ if "step_group" in c.__dict__), None)
    if owner is not None and owner.__name__ != "RuleOptimizer":
        src = textwrap.dedent(inspect.getsource(owner.__dict__["step_group"]))
        parts.append(f"# {owner.__name__}.step_group\n{src}")
    return "\n".join(parts)


def rule_card(rule: str, optimizers=None) -> str:
    """Markdown: the rule's name, its formulas (from the class docstring) and its code."""
    if optimizers is None:
        optimizers = OPTIMIZERS
    cls = optimizers[rule]
    summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    summary = re.sub(r":math:`([^`]*)`", r"$\1$", summary)
    summary = re.sub(r"``([^`]*)``", r"`\1`", summary)
    maths = "\n\n".join(f"$$ {m} $$" for m in rule_formulas(cls))
    return (f"#### `{rule}`: {cls.__module__}.{cls.__name__}\n\n{summary}\n\n{maths}\n\n"
            f"```python\n{rule_source(cls)}```\n")
