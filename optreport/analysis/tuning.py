"""Tuning protocols à la Choi et al. (2019): search spaces, quasi-random trials, selection by
validation only, and the bootstrap over trials.

    from optreport.analysis.tuning import sample_trials, select_best, bootstrap_ranking
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
of two keep Sobol's balance best; notebook 05 uses 12 = 3 lrs x 4 seeds for protocol a.

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
from scipy.stats import kendalltau, qmc, rankdata

from optreport.runs.results import last_epoch

__all__ = ["Dim", "SEARCH_SPACES", "PROTOCOLS", "FIXED_LRS", "EPS_COUPLED", "EPS_REF",
           "sample_trials", "trial_seeds", "plan_trials", "select_best", "trial_table",
           "bootstrap_ranking", "ranking_table", "kendall_between", "imitation_hparams",
           "searched_lr", "hparams_text", "INCLUSIONS", "search_space_table", "inclusion_pairs"]

PROTOCOLS = {"a": "fixed grid: lr ∈ {0.01, 0.1, 0.2}, defaults otherwise",
             "b": "lr tuned on a log scale",
             "c": "all hyper-parameters tuned"}
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


def trial_table(results: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """Final-epoch scores of every planned trial.

    ``results`` are sweep rows (per epoch, with ``key``, ``seed``, ``rule``, ``hparams`` as
    JSON text); ``plan`` the output of :func:`plan_trials` plus a ``key`` column. Returns one
    row per (protocol, rule, trial) with key, seed, hparams, val_acc, test_acc, val_loss,
    train_loss, diverged.
    """
    final = last_epoch(results)
    cols = ["key", "val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "diverged"]
    out = plan.merge(final[[c for c in cols if c in final.columns]], on="key", how="left")
    return out


def bootstrap_ranking(trials: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                      by: str = "rule", metric: str = "val_acc", score: str = "test_acc",
                      level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choi et al.'s bootstrap over trials for one protocol.

    For each of ``n_boot`` draws and each group (rule): resample its K trials with replacement,
    pick the best by ``metric`` (validation), record that trial's ``score`` (test). Ranks are
    taken within a draw (1 = best score; a non-finite score ranks last).

    Returns ``(summary, draws)``. ``summary``: one row per group with K, median score and its
    percentile CI, mean rank, median rank, rank CI and P(rank 1), sorted by median score.
    ``draws``: long frame (draw, group, score, rank).
    """
    rng = np.random.default_rng(seed)
    groups = list(dict.fromkeys(trials[by]))
    scores = np.empty((n_boot, len(groups)))
    ks = []
    for j, g in enumerate(groups):
        t = trials[trials[by] == g]
        val = t[metric].to_numpy(dtype=float)
        val = np.where(np.isfinite(val), val, -np.inf)
        k = val.size
        ks.append(k)
        idx = rng.integers(0, k, (n_boot, k))
        pick = idx[np.arange(n_boot), np.argmax(val[idx], axis=1)]   # selection: val only
        scores[:, j] = t[score].to_numpy(dtype=float)[pick]          # then its test score
    ranked = np.where(np.isfinite(scores), -scores, np.inf)
    ranks = rankdata(ranked, axis=1, method="average")           # ties share their mean rank
    a = (1 - level) / 2
    rows = []
    for j, g in enumerate(groups):
        s, r = scores[:, j], ranks[:, j]
        fs = s[np.isfinite(s)]
        rows.append({by: g, "K": ks[j],
                     "median": float(np.median(fs)) if fs.size else np.nan,
                     "ci_lo": float(np.quantile(fs, a)) if fs.size else np.nan,
                     "ci_hi": float(np.quantile(fs, 1 - a)) if fs.size else np.nan,
                     "mean_rank": float(r.mean()), "median_rank": float(np.median(r)),
                     "rank_lo": float(np.quantile(r, a)), "rank_hi": float(np.quantile(r, 1 - a)),
                     "p_best": float((r == 1).mean())})
    summary = pd.DataFrame(rows).sort_values(["median", "mean_rank"], ascending=[False, True])
    draws = pd.DataFrame({"draw": np.repeat(np.arange(n_boot), len(groups)),
                          by: np.tile(groups, n_boot), "score": scores.ravel(),
                          "rank": ranks.ravel()})
    return summary.reset_index(drop=True), draws


def ranking_table(summaries: dict[str, pd.DataFrame], by: str = "rule") -> pd.DataFrame:
    """Side-by-side table: per rule and protocol the median selected test score [CI] and the
    mean bootstrap rank. ``summaries`` maps protocol -> :func:`bootstrap_ranking` summary."""
    out = None
    for p, s in summaries.items():
        part = s[[by, "median", "ci_lo", "ci_hi", "mean_rank", "p_best"]].rename(
            columns={c: f"{c}_{p}" for c in ["median", "ci_lo", "ci_hi", "mean_rank", "p_best"]})
        out = part if out is None else out.merge(part, on=by, how="outer")
    return out


def kendall_between(draws: dict[str, pd.DataFrame], summaries: dict[str, pd.DataFrame],
                    by: str = "rule", level: float = 0.95) -> pd.DataFrame:
    """Kendall τ between every pair of protocols' rankings.

    Point value: τ between the median selected test scores; interval: percentile interval of τ
    over bootstrap draws (draw b of one protocol against draw b of the other -- independent
    resamples). Columns: protocol_1, protocol_2, tau, p, ci_lo, ci_hi.
    """
    names = list(summaries)
    a = (1 - level) / 2
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            p, q = names[i], names[j]
            m = summaries[p][[by, "median"]].merge(summaries[q][[by, "median"]], on=by)
            res = kendalltau(m["median_x"], m["median_y"])
            wide_p = draws[p].pivot(index="draw", columns=by, values="rank")
            wide_q = draws[q].pivot(index="draw", columns=by, values="rank")[wide_p.columns]
            taus = np.array([kendalltau(x, y).statistic for x, y in
                             zip(wide_p.to_numpy(), wide_q.to_numpy())])
            taus = taus[np.isfinite(taus)]
            rows.append({"protocol_1": p, "protocol_2": q, "tau": float(res.statistic),
                         "p": float(res.pvalue),
                         "ci_lo": float(np.quantile(taus, a)) if taus.size else np.nan,
                         "ci_hi": float(np.quantile(taus, 1 - a)) if taus.size else np.nan})
    return pd.DataFrame(rows)


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


def inclusion_pairs(draws: dict[str, pd.DataFrame], pairs=INCLUSIONS, by: str = "rule") -> pd.DataFrame:
    """For every protocol and (special, general) pair: median bootstrap score of each and the
    fraction of draws in which the general rule's selected trial scores at least as well."""
    rows = []
    for p, d in draws.items():
        wide = d.pivot(index="draw", columns=by, values="score")
        for special, general in pairs:
            if special not in wide or general not in wide:
                continue
            s, g = wide[special].to_numpy(), wide[general].to_numpy()
            rows.append({"protocol": p, "special": special, "general": general,
                         "median_special": float(np.nanmedian(s)),
                         "median_general": float(np.nanmedian(g)),
                         "p_general_ge": float(np.mean(np.nan_to_num(g, nan=-1) >= np.nan_to_num(s, nan=-1)))})
    return pd.DataFrame(rows)
