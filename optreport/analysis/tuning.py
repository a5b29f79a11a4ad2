"""Tuning protocols à la Choi et al. (2019): search spaces, quasi-random trials, selection by
validation only, and the bootstrap over trials.

    from optreport.analysis.tuning import sample_trials, select_best
    sample_trials("adam", "c", budget=16, seed=0)    # 16 hparam dicts from a scrambled Sobol set

Three protocols, one trial budget K per rule:

a  the fixed grid of seed 000: lr in {0.01, 0.1, 0.2}, every other hyper-parameter at the
   rule's default. Three configurations only, so K trials are the 3 lrs x ceil(K/3) seeds
   (trial i: lr ``FIXED_LRS[i % 3]``, seed ``i // 3``): the same compute as the other
   protocols, and the bootstrap over K trials means the same thing for all three.
b  lr alone, on a log scale over the rule's own range (``SEARCH_SPACES[rule]["lr"]``).
c  every hyper-parameter of ``SEARCH_SPACES[rule]``, each on its own scale: log for lr, ε,
   weight decay; log of ``1 - x`` for decays close to 1 (momentum, β1, β2, RMSProp's alpha,
   AdaDelta's rho, Cosine's C/2); categorical for switches (Gravity's ``accumulate``,
   Cosine's ``per``). Trial i of b and c uses seed i.

Quasi-random search. Points are a scrambled Sobol sequence (``scipy.stats.qmc.Sobol``) in the
unit cube, one dimension per hyper-parameter, mapped through each dimension's scale. We use
scipy rather than Optuna's QMCSampler because the trial list must exist *before* training --
a pure function of (rule, protocol, K, seed) -- so the sweep store can run the trials on
several machines, in any order, and resume; Optuna's sampler asks within a study, one trial at
a time. The Sobol scramble seed is derived (CRC32, stable across runs and Python versions)
from ``seed``, the rule and the names of the searched dimensions, so a rule whose full space is
its lr (SGD) gets the *same* trials under b and c and trains them once. Budgets that are powers
of two keep Sobol's balance best; notebook 05 uses K = 16 (protocol a: its 3 lrs over seeds 0-5).

Adam's and RMSProp's ε. Choi et al.'s point is that a large ε turns Adam into Momentum
(update ≈ lr/ε · m̂) -- but only if lr grows with ε. With independent boxes nearly every
large-ε trial would have a uselessly small step. So for the rules in ``EPS_COUPLED`` the
searched ``lr`` is the step at small ε and the trained lr is ``lr * max(1, ε / EPS_REF)``,
``EPS_REF = 1e-3`` (about the size of √v for our MLP's gradients). At default ε (protocol b)
the factor is 1. The hparams a trial returns are the trained (constructor) values.

Selection sees validation only. :func:`select_best` first cuts its input down to the group
keys, the trial key and the validation metric, so test columns can never influence it; the
bootstrap selects on validation arrays and only then looks up the selected trial's test score.
"""
from __future__ import annotations

import json
import math
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, qmc

from optreport.analysis import compare
from optreport.analysis.outcomes import CHANCE, OUTCOMES, TRAINED, run_outcomes
from optreport.runs import results as results_io
from optreport.runs import sweep

__all__ = ["Dim", "SEARCH_SPACES", "PROTOCOLS", "PROTOCOL_NAMES", "FIXED_LRS", "EPS_COUPLED", "EPS_REF",
           "sample_trials", "trial_seeds", "plan_trials", "select_best", "imitation_hparams",
           "searched_lr", "hparams_text", "INCLUSIONS", "search_space_table", "arm",
           "imitation_family"]

PROTOCOLS = {"a": "fixed grid: lr ∈ {0.01, 0.1, 0.2}, defaults otherwise",
             "b": "lr tuned on a log scale",
             "c": "all hyper-parameters tuned"}
PROTOCOL_NAMES = {"a": "fixed grid", "b": "lr tuned", "c": "all tuned"}   # short, for one-line answers
FIXED_LRS = (0.01, 0.1, 0.2)      # seed 000's learning rates (protocol a)
EPS_REF = 1e-3                    # ε above which Adam/RMSProp's lr is scaled with ε (see above)
EPS_COUPLED = ("rmsprop", "adam", "nadam", "adamw")


@dataclass(frozen=True)
class Dim:
    """One searched hyper-parameter.

    kind  "log":   x = 10**U(log10 low, log10 high)
          "log1m": x = scale * (1 - y), y = 10**U(log10 low, log10 high)   (decays near 1)
          "cat":   x = choices[floor(u * len(choices))]
    """
    kind: str
    low: float | None = None
    high: float | None = None
    scale: float = 1.0
    choices: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.kind in ("log", "log1m"):
            if not (self.low is not None and self.high is not None and 0 < self.low < self.high):
                raise ValueError(f"Invalid log range: {self.low}..{self.high}")
        elif self.kind == "cat":
            if len(self.choices) < 1:
                raise ValueError("Invalid categorical dimension: no choices")
        else:
            raise ValueError(f"Invalid kind: {self.kind!r}")

    def value(self, u: float):
        """Map ``u`` in [0, 1) to the hyper-parameter's value."""
        if self.kind == "cat":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        y = 10 ** (math.log10(self.low) + u * (math.log10(self.high) - math.log10(self.low)))
        return float(y if self.kind == "log" else self.scale * (1 - y))

    def bounds(self) -> tuple[float, float]:
        """(min, max) of the values this dimension can produce (not for "cat")."""
        if self.kind == "log":
            return self.low, self.high
        return self.scale * (1 - self.high), self.scale * (1 - self.low)


def _log(lo, hi):
    return Dim("log", lo, hi)


def _decay(lo, hi, scale=1.0):
    """A decay x searched as log(1 - x/scale): 1 - x/scale in [lo, hi]."""
    return Dim("log1m", lo, hi, scale=scale)


_ADAM = {"lr": _log(1e-5, 1e-1),            # step at small ε (scaled with ε, see EPS_COUPLED)
         "beta1": _decay(1e-2, 0.5),         # β1 in [0.5, 0.99]
         "beta2": _decay(1e-4, 1e-1),        # β2 in [0.9, 0.9999]
         "eps": _log(1e-10, 1e2)}            # up to ε = 100: Adam ≈ Momentum there

SEARCH_SPACES: dict[str, dict[str, Dim]] = {
    "sgd":      {"lr": _log(1e-3, 1.0)},
    "momentum": {"lr": _log(1e-4, 1.0), "momentum": _decay(1e-3, 0.5)},      # μ in [0.5, 0.999]
    "nag":      {"lr": _log(1e-4, 1.0), "momentum": _decay(1e-3, 0.5)},
    "adagrad":  {"lr": _log(1e-3, 1.0), "eps": _log(1e-10, 1e-2)},
    "rmsprop":  {"lr": _log(1e-5, 1e-1),                                       # scaled with ε
                 "alpha": _decay(1e-3, 0.3),                                   # α in [0.7, 0.999]
                 "momentum": _decay(1e-2, 1.0),                                # μ in [0, 0.99]
                 "eps": _log(1e-10, 1e2)},
    "adadelta": {"lr": _log(1e-2, 10.0),                                       # torch default 1.0
                 "rho": _decay(1e-3, 0.3),                                     # ρ in [0.7, 0.999]
                 "eps": _log(1e-8, 1e-3)},
    "adam":     dict(_ADAM),
    "nadam":    dict(_ADAM),
    "adamw":    {**_ADAM, "weight_decay": _log(1e-5, 1e-1)},
    "gravity":  {"lr": _log(1e-3, 10.0), "accumulate": Dim("cat", choices=(True, False))},
    "cosine":   {"lr": _log(1e-4, 1.0),
                 "C": _decay(1e-3, 0.5, scale=2.0),                            # C in [1, 1.998]
                 "per": Dim("cat", choices=("row", "tensor"))},
}

# defaults of the rules' constructors that protocol-c points need to complete a pair (betas)
_BETAS_DEFAULT = (0.9, 0.999)


def _space(rule: str, protocol: str) -> dict[str, Dim]:
    if rule not in SEARCH_SPACES:
        raise ValueError(f"Unknown rule: {rule!r} (choose from {', '.join(SEARCH_SPACES)})")
    if protocol == "b":
        return {"lr": SEARCH_SPACES[rule]["lr"]}
    if protocol == "c":
        return SEARCH_SPACES[rule]
    raise ValueError(f"Invalid protocol: {protocol!r} (choose from a, b, c)")


def _to_hparams(rule: str, point: dict) -> dict:
    """Searched values -> constructor keyword arguments (betas pair, ε-scaled lr)."""
    hp = dict(point)
    if "beta1" in hp or "beta2" in hp:
        hp["betas"] = [hp.pop("beta1", _BETAS_DEFAULT[0]), hp.pop("beta2", _BETAS_DEFAULT[1])]
    if rule in EPS_COUPLED and "eps" in hp:
        hp["lr"] = hp["lr"] * max(1.0, hp["eps"] / EPS_REF)
    return hp


def searched_lr(rule: str, hparams: dict) -> float:
    """The searched (unscaled) lr behind a trial's constructor lr (inverse of the ε scaling)."""
    if rule in EPS_COUPLED and "eps" in hparams:
        return hparams["lr"] / max(1.0, hparams["eps"] / EPS_REF)
    return hparams["lr"]


def _sobol(d: int, n: int, seed: int) -> np.ndarray:
    sampler = qmc.Sobol(d, scramble=True, seed=seed)
    with warnings.catch_warnings():      # non-powers of two lose balance, they still work
        warnings.simplefilter("ignore", UserWarning)
        return sampler.random(n)


def sample_trials(rule: str, protocol: str, budget: int, seed: int = 0) -> list[dict]:
    """``budget`` hyper-parameter dicts (constructor kwargs, always with ``lr``) for ``rule``.

    Protocol "a" cycles through ``FIXED_LRS`` (pair with :func:`trial_seeds`); "b" and "c" map
    a scrambled Sobol set through the search space. Deterministic in (rule, protocol, budget,
    seed); the first n of a larger budget are *not* the same as a budget of n (scrambling).
    """
    if budget < 1:
        raise ValueError(f"Invalid budget: {budget}")
    if protocol == "a":
        if rule not in SEARCH_SPACES:
            raise ValueError(f"Unknown rule: {rule!r}")
        return [{"lr": FIXED_LRS[i % len(FIXED_LRS)]} for i in range(budget)]
    space = _space(rule, protocol)
    names = list(space)
    sobol_seed = zlib.crc32(f"{seed}|{rule}|{','.join(names)}".encode())
    u = _sobol(len(names), budget, sobol_seed)
    return [_to_hparams(rule, {n: space[n].value(float(x)) for n, x in zip(names, row)})
            for row in u]


def trial_seeds(protocol: str, budget: int) -> list[int]:
    """Training seed of each trial: protocol a repeats its 3 lrs over seeds 0, 1, ...;
    b and c give trial i seed i."""
    if protocol == "a":
        return [i // len(FIXED_LRS) for i in range(budget)]
    return list(range(budget))


def plan_trials(rules, protocols=("a", "b", "c"), budget: int = 16, seed: int = 0) -> pd.DataFrame:
    """One row per (protocol, rule, trial): seed and ``hparams`` (dict) -- the tuning plan.

    Turn it into sweep configs with ``sweep.RunConfig(rule=r.rule, hparams=r.hparams,
    seed=r.seed, ...)``; a configuration shared by two protocols is trained once.
    """
    rows = []
    for protocol in protocols:
        seeds = trial_seeds(protocol, budget)
        for rule in rules:
            for i, (hp, s) in enumerate(zip(sample_trials(rule, protocol, budget, seed), seeds)):
                rows.append({"protocol": protocol, "rule": rule, "trial": i, "seed": s,
                             "hparams": hp})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- selection
def select_best(df: pd.DataFrame, by=("rule",), metric: str = "val_acc",
                key: str = "key") -> pd.DataFrame:
    """Per group of ``by``, the trial ``key`` with the best ``metric`` (validation by default).

    The first line keeps only ``by``, ``key`` and ``metric``: nothing else -- in particular no
    test column -- reaches the choice. Non-finite scores (diverged runs) rank last; ties go to
    the first row. Returns a frame of ``by`` + ``key``.
    """
    if metric.startswith("test"):
        raise ValueError(f"Selection must not use a test metric: {metric!r}")
    view = df.loc[:, [*by, key, metric]].copy()
    view[metric] = view[metric].astype(float).where(np.isfinite(view[metric].astype(float)),
                                                    -np.inf)
    idx = view.groupby(list(by), sort=False)[metric].idxmax()
    return view.loc[idx.to_numpy(), [*by, key]].reset_index(drop=True)


def imitation_hparams(momentum_hparams: dict, eps: float, match: str = "asymptotic") -> dict:
    """Adam hyper-parameters that imitate Momentum ``{lr: η, momentum: μ}`` at a large ε.

    With ε ≫ √v̂ Adam's step is (lr/ε)·m̂, torch's Momentum step η·b with b = Σ μ^k g. Take
    β1 = μ (β2 at its default: it only enters through √v̂, which ε swamps). Adam's bias-corrected
    m̂_t = (1-β1)/(1-β1^t) · Σ β1^k g, so no single lr matches every step:

    * ``match="asymptotic"``: lr = η ε / (1-β1) matches once bias correction has faded, and
      makes the first steps up to 1/(1-β1) times too long;
    * ``match="first_step"``: lr = η ε matches the first step, and later steps are (1-β1) times
      Momentum's (Momentum with lr η(1-β1)).
    """
    lr, mu = momentum_hparams["lr"], momentum_hparams.get("momentum", 0.9)
    if match not in ("asymptotic", "first_step"):
        raise ValueError(f"Invalid match: {match!r} (asymptotic or first_step)")
    scale = 1 / (1 - mu) if match == "asymptotic" else 1.0
    return {"lr": lr * eps * scale, "betas": [mu, _BETAS_DEFAULT[1]], "eps": eps}


def hparams_text(hp) -> str:
    """Short readable form of a hparams dict (or its JSON text) for tables."""
    if isinstance(hp, str):
        hp = json.loads(hp)
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(fmt(x) for x in v) + ")"
        return str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in hp.items())


# Choi et al.'s inclusions among our rules: (special, general) -- the general rule can imitate
# the special one with some setting of its hyper-parameters (see the module docstring).
INCLUSIONS = [("sgd", "momentum"), ("momentum", "rmsprop"), ("momentum", "adam"),
              ("adam", "nadam"), ("nag", "nadam"), ("sgd", "nag")]


def search_space_table(rules=None) -> pd.DataFrame:
    """The search spaces as a table: rule, hyper-parameter, scale, low, high (values, not the
    searched 1-x), and whether it is searched under protocol b too."""
    rows = []
    for rule in rules or SEARCH_SPACES:
        for name, d in SEARCH_SPACES[rule].items():
            if d.kind == "cat":
                lo = hi = np.nan
                scale = "categorical: " + ", ".join(map(str, d.choices))
            else:
                lo, hi = d.bounds()
                scale = "log" if d.kind == "log" else f"log of 1 - x/{d.scale:g}"
            if name == "lr" and rule in EPS_COUPLED:
                scale += f"; × max(1, ε/{EPS_REF:g})"
            rows.append({"rule": rule, "hparam": name, "scale": scale, "low": lo, "high": hi,
                         "in_b": name == "lr"})
    return pd.DataFrame(rows)


def arm(rule: str, hparams: dict, label: str | None = None) -> compare.Arm:
    """The comparison arm (``compare.Arm``) of a trial's ``hparams``: its lr and every other
    hyper-parameter, sorted by name, lists (Adam's ``betas``) as tuples so the arm is hashable."""
    extra = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in hparams.items() if k != "lr"))
    return compare.Arm(rule, hparams["lr"], extra=extra, label=label)


def imitation_family(variants: dict, base: str, *, name: str = "Adam's imitations vs tuned Momentum",
                     metric: str = "final") -> compare.Family:
    """Notebook 05's inclusion re-training as one comparison family: every variant of ``variants``
    ({name: (rule, hparams)}) against the ``base`` variant, paired by seed, one Holm correction.
    Arms are labelled with the variants' names."""
    b_rule, b_hp = variants[base]
    b = arm(b_rule, b_hp, label=base)
    pairs = tuple(compare.Pair(arm(r, hp, label=n), b) for n, (r, hp) in variants.items() if n != base)
    return compare.Family(name, pairs, metric)


# ----------------------------------------------------------------------------- a budget that can decide
# Notebook 05 at a budget that can decide: K quasi-random trials per rule and protocol at a few
# epochs, the configuration selected by validation rerun at full length over several seeds, and
# the ranking and the inclusions judged on those reruns (compare's verdicts), not on one seed of
# each trial. Protocol a stays the fixed grid (its K trials: 3 lrs x seeds, see the docstring).
#
#     plan = budget_plan()                                   # 8 rules x 3 protocols x 16 trials
#     plan, cfgs = trial_configs(plan)                       # 5 epochs each; plan gets "key"
#     trials = budget_trial_table(sweep.run_grid(cfgs), plan)
#     chosen = select_trials(trials)                         # per (protocol, rule), by validation
#     reruns, rcfgs = rerun_configs(chosen)                  # 15 epochs x seeds 0-4
#     table = rerun_table(sweep.run_grid(rcfgs), reruns)
#
# Selection score: a trial's validation accuracy at its best epoch; a trial that did not train
# (outcomes.classify: diverged, blew up, failed to learn) scores -inf, so it is chosen only when
# no trial of its rule trained; ties go to the earliest trial. Scores compared after selection are
# the validation-selected test accuracy (test accuracy at the best-validation epoch,
# ``outcomes.METRICS["val_selected"]``).

BUDGET_RULES = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "gravity", "cosine"]
BUDGET_K = 16                      # quasi-random trials per rule and protocol (a power of 2: Sobol's balance)
BUDGET_EPOCHS = 5                  # epochs per trial
RERUN_EPOCHS = 15                  # epochs of each rerun (notebook 02's length)
RERUN_SEEDS = (0, 1, 2, 3, 4)      # seeds of each rerun (notebook 02's seeds)
IMITATION_EPS = (1.0, 100.0)       # Adam's ε when imitating the Momentum selected under protocol c
SEL = "sel_val"                    # the selection score's column (see above)

__all__ += ["BUDGET_RULES", "BUDGET_K", "BUDGET_EPOCHS", "RERUN_EPOCHS", "RERUN_SEEDS", "IMITATION_EPS",
            "budget_plan", "trial_configs", "budget_trial_table", "select_trials", "rerun_configs",
            "rerun_table", "rerun_ranking", "rerun_comparisons", "inclusion_verdicts", "INCLUSION_WORDS",
            "rerun_kendall", "expected_best_weights", "best_so_far", "imitation_variants",
            "imitation_configs", "trials_then_rerun_configs", "budget_estimate"]


def budget_plan(rules=None, protocols=("a", "b", "c"), budget: int = BUDGET_K, seed: int = 0) -> pd.DataFrame:
    """:func:`plan_trials` of ``rules`` (default :data:`BUDGET_RULES`) at ``budget`` trials per rule
    and protocol: protocol a the fixed grid (3 lrs x seeds), b and c scrambled Sobol points."""
    return plan_trials(list(rules) if rules is not None else list(BUDGET_RULES), protocols, budget, seed)


def trial_configs(plan: pd.DataFrame, *, epochs: int = BUDGET_EPOCHS, max_steps: int | None = None,
                  batch_size: int = 64, eval_size: int | None = None) -> tuple[pd.DataFrame, list]:
    """``(plan with a "key" column, distinct RunConfigs)``: a configuration shared by two
    protocols (SGD's b and c trials, whose space is its lr) is trained once. ``eval_size``:
    validation and test images evaluated (None: all; quick mode evaluates fewer)."""
    cfg = [sweep.RunConfig(rule=r.rule, hparams=r.hparams, seed=int(r.seed), epochs=epochs,
                           batch_size=batch_size, max_steps=max_steps, eval_size=eval_size) for r in plan.itertuples()]
    out = plan.copy()
    out["key"] = [c.key for c in cfg]
    return out, list({c.key: c for c in cfg}.values())


def budget_trial_table(results: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per planned trial (``plan`` with ``key``) from the sweep rows ``results``: ``val_acc``
    (validation accuracy at the best epoch), ``val_epoch``, ``test_acc`` (test accuracy at that
    epoch: validation-selected), ``final_test_acc``, ``outcome`` ("" if not run yet) and the
    selection score ``sel_val`` (``val_acc`` for a trained trial, -inf otherwise)."""
    cols = ["key", "val_epoch", "val_test_acc", "final_test_acc", "diverged", "outcome"]
    if len(results):
        runs = run_outcomes(results)[cols]
        best_val = results.groupby("key")["val_acc"].max().rename("val_acc").reset_index()
        runs = runs.merge(best_val, on="key", how="left")
    else:
        runs = pd.DataFrame(columns=[*cols, "val_acc"])
    out = plan.merge(runs, on="key", how="left").rename(columns={"val_test_acc": "test_acc"})
    out["outcome"] = out["outcome"].fillna("")
    val = out["val_acc"].astype(float)
    out[SEL] = np.where((out["outcome"] == TRAINED) & np.isfinite(val), val, -np.inf)
    return out.reset_index(drop=True)


def select_trials(trials: pd.DataFrame, by=("protocol", "rule")) -> pd.DataFrame:
    """The selected trial per group of ``by``: highest ``sel_val`` (validation accuracy at the best
    epoch of a trained trial), ties to the earliest trial. Only ``by``, ``trial``, ``key`` and
    ``sel_val`` reach the choice (:func:`select_best`); the chosen rows are returned whole."""
    ordered = trials.sort_values([*by, "trial"], kind="stable").reset_index(drop=True)
    ordered["_row"] = np.arange(len(ordered))
    pick = select_best(ordered, by=by, metric=SEL, key="_row")
    out = ordered.loc[pick["_row"].to_numpy()].drop(columns="_row")
    return out.reset_index(drop=True)


def rerun_configs(selected: pd.DataFrame, *, epochs: int = RERUN_EPOCHS, seeds=RERUN_SEEDS,
                  max_steps: int | None = None, batch_size: int = 64,
                  eval_size: int | None = None) -> tuple[pd.DataFrame, list]:
    """The reruns of each selected configuration (rows of :func:`select_trials`): ``epochs`` x
    ``seeds``. Returns ``(plan, distinct RunConfigs)``; ``plan`` has protocol, rule, trial, seed,
    hparams, key. A configuration selected under two protocols is trained once."""
    rows, cfgs = [], {}
    for r in selected.itertuples():
        for s in seeds:
            c = sweep.RunConfig(rule=r.rule, hparams=dict(r.hparams), seed=int(s), epochs=epochs,
                                batch_size=batch_size, max_steps=max_steps, eval_size=eval_size)
            cfgs.setdefault(c.key, c)
            rows.append({"protocol": r.protocol, "rule": r.rule, "trial": int(r.trial), "seed": int(s),
                         "hparams": dict(r.hparams), "key": c.key})
    return pd.DataFrame(rows), list(cfgs.values())


def rerun_table(results: pd.DataFrame, reruns: pd.DataFrame) -> pd.DataFrame:
    """One row per rerun (plan of :func:`rerun_configs`): rule, protocol, seed, ``test_acc`` (final
    epoch), ``val_test_acc`` (validation-selected), ``val_epoch``, ``outcome`` ("" if not run yet),
    trial, hparams and key."""
    cols = ["key", "final_test_acc", "val_test_acc", "val_epoch", "outcome"]
    runs = run_outcomes(results)[cols] if len(results) else pd.DataFrame(columns=cols)
    out = reruns.merge(runs, on="key", how="left").rename(columns={"final_test_acc": "test_acc"})
    out["outcome"] = out["outcome"].fillna("")
    return out[["rule", "protocol", "seed", "test_acc", "val_test_acc", "val_epoch", "outcome", "trial",
                "hparams", "key"]]


def rerun_ranking(reruns: pd.DataFrame, metric: str = "val_test_acc", level: float = 0.95) -> pd.DataFrame:
    """Per protocol, the rules ranked by their mean rerun ``metric`` (validation-selected test
    accuracy) over the reruns that trained, with its t interval clipped to [0, 1]
    (``compare.accuracy_ci``). Columns: protocol, rule, n_seeds, n_trained, outcome (the worst
    outcome of its reruns), mean, ci_lo, ci_hi, rank (1 = best; a rule with a rerun that did not
    train ranks after those whose reruns all trained)."""
    rows = []
    for (p, rule), g in reruns.groupby(["protocol", "rule"], sort=False):
        ok = g[g["outcome"] == TRAINED]
        ran = g[g["outcome"] != ""]
        m, lo, hi = compare.accuracy_ci(ok[metric], level)
        worst = min(ran["outcome"], key=OUTCOMES.index) if len(ran) else "not run"
        rows.append({"protocol": p, "rule": rule, "n_seeds": len(ran), "n_trained": len(ok), "outcome": worst,
                     "mean": m, "ci_lo": lo, "ci_hi": hi})
    out = pd.DataFrame(rows)
    if out.empty:
        return out.assign(rank=pd.Series(dtype=int))
    out["_all"] = (out["outcome"] == TRAINED) & (out["n_trained"] == out["n_seeds"])
    out["_m"] = out["mean"].fillna(-np.inf)
    out = out.sort_values(["protocol", "_all", "_m"], ascending=[True, False, False], kind="stable")
    out["rank"] = out.groupby("protocol").cumcount() + 1
    return out.drop(columns=["_all", "_m"]).reset_index(drop=True)


def _arms(selected: pd.DataFrame, protocol: str) -> dict:
    sel = selected[selected["protocol"] == protocol]
    return {r.rule: arm(r.rule, dict(r.hparams)) for r in sel.itertuples()}


def rerun_comparisons(runs: pd.DataFrame, selected: pd.DataFrame, ranking: pd.DataFrame, protocols=None,
                      pairs=INCLUSIONS, metric: str = "val_selected") -> dict:
    """The verdicts on the reruns, per protocol: ``{protocol: (inclusions, vs_top)}``.

    ``runs``: ``outcomes.run_outcomes`` of the reruns only (one run per arm and seed). For each
    protocol one :class:`compare.Comparisons` declares, in this order, (1) the family of inclusion
    pairs present among the rules, each "general vs special" paired by seed, and (2) "each rule vs
    the top of the reruns" (the top: rank 1 of ``ranking``, chosen on the same reruns, so its lead is
    biased upwards: the verdicts say whether a rule is behind the best-looking one). A pair in both
    keeps the inclusion family's verdict. Holm within each family; metric: validation-selected."""
    out = {}
    for p in protocols or list(dict.fromkeys(selected["protocol"])):
        arms = _arms(selected, p)
        cmps = compare.Comparisons(runs)
        incl = tuple(compare.Pair(arms[g], arms[s]) for s, g in pairs if s in arms and g in arms)
        t_incl = cmps.declare(compare.Family(f"inclusions on reruns ({p})", incl, metric))
        rk = ranking[ranking["protocol"] == p].sort_values("rank")
        if len(rk):
            top = rk["rule"].iloc[0]
            vs = tuple(compare.Pair(arms[r], arms[top]) for r in rk["rule"] if r != top and r in arms)
            t_top = cmps.declare(compare.Family(f"each rule vs the top of the reruns ({p})", vs, metric))
        else:
            t_top = pd.DataFrame(columns=compare.COLUMNS)
        out[p] = (t_incl, t_top)
    return out


#: what a verdict of "general vs special" says about the inclusion special ⊆ general
INCLUSION_WORDS = {"better": "holds", "equivalent": "holds", "worse": "violated", "inconclusive": "undecided"}


def inclusion_verdicts(tables: dict, pairs=INCLUSIONS) -> pd.DataFrame:
    """One row per protocol and inclusion pair from :func:`rerun_comparisons`: special, general,
    n_seeds, mean_special, mean_general, diff_pp (general − special), its interval, p_holm, mde_pp,
    verdict (general vs special, or an outcome word) and ``inclusion`` (:data:`INCLUSION_WORDS`:
    holds / violated / undecided; "decided by outcome" for an outcome word)."""
    rows = []
    for p, (t, _) in tables.items():
        for _, r in t.iterrows():
            rows.append({"protocol": p, "special": r["b"], "general": r["a"], "n_seeds": r["n_seeds"],
                         "mean_special": r["mean_b"], "mean_general": r["mean_a"], "diff_pp": r["diff_pp"],
                         "ci_lo_pp": r["ci_lo_pp"], "ci_hi_pp": r["ci_hi_pp"], "interval": r["interval"],
                         "p_holm": r["p_holm"], "mde_pp": r["mde_pp"], "verdict": r["verdict"],
                         "inclusion": INCLUSION_WORDS.get(r["verdict"], "decided by outcome"
                                                          if r["verdict"] != "no paired runs" else "not run")})
    return pd.DataFrame(rows)


def rerun_kendall(ranking: pd.DataFrame, protocols=None) -> pd.DataFrame:
    """Kendall τ (and its p) between every two protocols' rankings by mean rerun accuracy, over the
    rules ranked under both."""
    names = protocols or list(dict.fromkeys(ranking["protocol"]))
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            p, q = names[i], names[j]
            m = ranking[ranking["protocol"] == p][["rule", "mean"]].merge(
                ranking[ranking["protocol"] == q][["rule", "mean"]], on="rule").dropna()
            res = kendalltau(m["mean_x"], m["mean_y"]) if len(m) >= 2 else None
            rows.append({"protocol_1": p, "protocol_2": q, "n_rules": len(m),
                         "tau": float(res.statistic) if res else np.nan, "p": float(res.pvalue) if res else np.nan})
    return pd.DataFrame(rows)


def expected_best_weights(K: int) -> np.ndarray:
    """``W`` (K x K): ``W[k-1, j]`` is the probability that the trial ranked ``j`` (0 = best by the
    selection score) is the one selected among ``k`` trials drawn without replacement from the ``K``,
    C(K-1-j, k-1) / C(K, k). Row k-1 dotted with the scores in selection order is the expected score
    of the trial selected among k."""
    W = np.zeros((K, K))
    for k in range(1, K + 1):
        total = math.comb(K, k)
        for j in range(K):
            W[k - 1, j] = math.comb(K - 1 - j, k - 1) / total
    return W


def best_so_far(trials: pd.DataFrame, *, by=("protocol", "rule"), metric: str = SEL, score: str = "test_acc",
                n_boot: int = 1000, level: float = 0.95, seed: int = 0, fail_score: float = CHANCE) -> pd.DataFrame:
    """Choi et al.'s convergence of tuning: for k = 1..K, the expected ``score`` (validation-selected
    test accuracy) of the trial selected by ``metric`` (validation) among k of a group's K trials
    drawn without replacement, computed exactly (:func:`expected_best_weights`), with a percentile
    bootstrap band: the K trials are resampled with replacement ``n_boot`` times and the whole curve
    recomputed on each resample (one joint draw per curve, which ``scipy.stats.bootstrap``'s
    per-statistic intervals do not give). Ties in ``metric`` go to the earliest trial; a score that is
    not finite (a trial that never evaluated) counts as ``fail_score`` (chance). At k = K the band is
    the bootstrap of a maximum, whose point value sits at the top of it: read the curve's shape (does
    it flatten before K?), and the reruns for the level.

    Returns a long frame: ``by``..., k, K, expected, lo, hi."""
    rng = np.random.default_rng(seed)
    a = (1 - level) / 2
    rows = []
    for keys, g in trials.groupby(list(by), sort=False):
        g = g.sort_values("trial", kind="stable")
        sel = g[metric].to_numpy(dtype=float)
        sel = np.where(np.isfinite(sel), sel, -np.inf)
        sc = g[score].to_numpy(dtype=float)
        sc = np.where(np.isfinite(sc), sc, fail_score)
        K = sel.size
        order = np.lexsort((np.arange(K), -sel))          # best first, ties: earliest trial
        pos = np.empty(K, int)
        pos[order] = np.arange(K)
        sc_by_pos = sc[order]
        W = expected_best_weights(K)
        point = W @ sc_by_pos
        idx = rng.integers(0, K, (n_boot, K))
        boot = np.sort(pos[idx], axis=1)
        curves = sc_by_pos[boot] @ W.T
        lo, hi = np.quantile(curves, a, axis=0), np.quantile(curves, 1 - a, axis=0)
        keys = keys if isinstance(keys, tuple) else (keys,)
        for k in range(K):
            rows.append({**dict(zip(by, keys)), "k": k + 1, "K": K, "expected": float(point[k]),
                         "lo": float(lo[k]), "hi": float(hi[k])})
    return pd.DataFrame(rows)


def imitation_variants(selected: pd.DataFrame, eps_values=IMITATION_EPS, protocol: str = "c") -> tuple[dict, str]:
    """Section 4's variants from the trials selected under ``protocol``: ``({name: (rule, hparams)},
    base name)`` -- the selected Momentum (base), the selected Adam, and Adam imitating the Momentum
    at each ε with both lr matches (:func:`imitation_hparams`)."""
    sel = selected[selected["protocol"] == protocol].set_index("rule")
    mom_hp, adam_hp = dict(sel.loc["momentum", "hparams"]), dict(sel.loc["adam", "hparams"])
    base = f"momentum (tuned, {protocol})"
    variants = {base: ("momentum", mom_hp), f"adam (tuned, {protocol})": ("adam", adam_hp)}
    for eps in eps_values:
        for match in ("asymptotic", "first_step"):
            variants[f"adam (imitating momentum, eps={eps:g}, {match} lr)"] = (
                "adam", imitation_hparams(mom_hp, eps, match))
    return variants, base


def imitation_configs(variants: dict, *, epochs: int = RERUN_EPOCHS, seeds=RERUN_SEEDS,
                      max_steps: int | None = None, batch_size: int = 64, eval_size: int | None = None) -> dict:
    """``{name: [RunConfig per seed]}`` of :func:`imitation_variants` (at the reruns' length and
    seeds, so the selected Momentum and Adam are the reruns' own runs)."""
    return {name: [sweep.RunConfig(rule=r, hparams=hp, seed=int(s), epochs=epochs, batch_size=batch_size,
                                   max_steps=max_steps, eval_size=eval_size) for s in seeds]
            for name, (r, hp) in variants.items()}


def budget_estimate(n_trial_runs: int, n_rerun_runs: int, *, epochs_tune: int = BUDGET_EPOCHS,
                    rerun_epochs: int = RERUN_EPOCHS, sec_per_epoch: float = 3.5, workers: int = 2) -> dict:
    """Epochs and wall-clock minutes of training ``n_trial_runs`` trials and ``n_rerun_runs`` reruns."""
    epochs = n_trial_runs * epochs_tune + n_rerun_runs * rerun_epochs
    return {"trial_runs": n_trial_runs, "rerun_runs": n_rerun_runs, "epochs": epochs,
            "minutes": epochs * sec_per_epoch / workers / 60}


def trials_then_rerun_configs(*, rules=None, protocols=("a", "b", "c"), budget: int = BUDGET_K,
                              epochs_tune: int = BUDGET_EPOCHS, rerun_epochs: int = RERUN_EPOCHS,
                              seeds=RERUN_SEEDS, imitation_eps=IMITATION_EPS, sampler_seed: int = 0,
                              storage=sweep.DEFAULT_STORAGE, runs_dir=results_io.RUNS_DIR, workers=None,
                              dry_run: bool = False, progress: bool = True) -> list:
    """The background launcher of notebook 05 (``python -m optreport.report.plans 05``): trains the
    trials of :func:`budget_plan` (stored ones are reused), selects per rule and protocol by
    validation, and returns the reruns' configs (with section 4's imitation runs), for the caller to
    train. With ``dry_run`` nothing is trained: if some trial is not stored yet, the trials' configs
    are returned instead (the reruns cannot be known before the trials). ``progress``: a bar over the
    trials."""
    plan, cfgs = trial_configs(budget_plan(rules, protocols, budget, sampler_seed), epochs=epochs_tune)
    stored = results_io.stored_keys(runs_dir)
    missing = [c for c in cfgs if c.key not in stored]
    print(f"[05] trials: {len(cfgs)} runs of {epochs_tune} epochs, {len(missing)} to train", flush=True)
    if missing:
        if dry_run:
            return cfgs
        sweep.run_grid(cfgs, storage=storage, runs_dir=runs_dir, workers=workers, progress=progress)
    trials = budget_trial_table(results_io.load_results(cfgs, runs_dir), plan)
    chosen = select_trials(trials)
    _, rcfgs = rerun_configs(chosen, epochs=rerun_epochs, seeds=seeds)
    if {"momentum", "adam"} <= set(chosen.loc[chosen["protocol"] == "c", "rule"]):
        variants, _ = imitation_variants(chosen, imitation_eps)
        icfgs = [c for cs in imitation_configs(variants, epochs=rerun_epochs, seeds=seeds).values() for c in cs]
        rcfgs = list({c.key: c for c in rcfgs + icfgs}.values())
    print(f"[05] reruns (selected configurations and imitations): {len(rcfgs)} runs of {rerun_epochs} epochs",
          flush=True)
    return rcfgs
