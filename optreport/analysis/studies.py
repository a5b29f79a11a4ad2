"""The seed-question studies (notebooks 06 and 07) as comparisons: arms that differ by schedule,
training-set size or cut-off epoch, judged with :mod:`optreport.analysis.compare`.

A study's runs differ by more than rule and lr (the lr schedule, the training-set size), so each
run gets an *arm name* that carries the difference (``"sgd/cosine"``, ``"adam/n=2037"``) in the
``rule`` column before comparing; :class:`~optreport.analysis.compare.Arm` then selects by that
name and the run's lr, and the label says in words what the arm is.

    runs = studies.at_epoch(df, 15)                 # run_outcomes of the first 15 epochs
    runs = studies.tag(runs, "schedule")            # rule -> "sgd/constant", ...
    fam = studies.vs_reference(runs, "sgd", "schedule", metric="val_selected")
    table = compare.compare(runs, fam)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats as st

from optreport.analysis import compare
from optreport.analysis.compare import Arm, Family, Pair
from optreport.analysis.outcomes import TRAINED, run_outcomes

__all__ = ["at_epoch", "tag", "arm", "vs_reference", "schedule_pairs", "cross_pairs", "curve_table", "label_values"]


def at_epoch(df: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """:func:`~optreport.analysis.outcomes.run_outcomes` of the runs cut after ``epoch`` epochs
    (final = epoch ``epoch``, validation selection within the first ``epoch`` epochs)."""
    return run_outcomes(df[df["epoch"] <= epoch])


def _value_text(by: str, v) -> str:
    if by == "n_train":
        return "all data" if pd.isna(v) else f"n={int(v)}"
    return str(v)


def tag(runs: pd.DataFrame, by: str) -> pd.DataFrame:
    """``runs`` with ``rule`` replaced by ``"<rule>/<value of by>"`` (``base_rule`` keeps the rule)."""
    out = runs.copy()
    out["base_rule"] = out["rule"]
    out["rule"] = [f"{r}/{_value_text(by, v)}" for r, v in zip(out["rule"], out[by], strict=True)]
    return out


def arm(runs: pd.DataFrame, rule: str, by: str, value) -> Arm:
    """The arm of ``rule`` at ``by == value`` in tagged ``runs`` (its lr read from the runs), labelled
    ``"rule (value)"`` so readings print "SGD at lr 0.1 (cosine)"."""
    name = f"{rule}/{_value_text(by, value)}"
    lrs = runs.loc[runs["rule"] == name, "lr"].unique()
    if len(lrs) != 1:
        raise ValueError(f"arm {name!r}: expected one lr among the runs, found {sorted(lrs)}")
    return Arm(name, float(lrs[0]), label=f"{rule} ({_value_text(by, value)})")


def vs_reference(runs: pd.DataFrame, reference: str, by: str, *, metric: str, name: str | None = None) -> Family:
    """Each rule against ``reference`` at the same value of ``by`` (tagged ``runs``), for every value."""
    pairs = []
    for value in runs[by].drop_duplicates().tolist():
        here = runs[(runs[by] == value) if not pd.isna(value) else runs[by].isna()]
        for rule in here["base_rule"].drop_duplicates():
            if rule != reference:
                pairs.append(Pair(arm(runs, rule, by, value), arm(runs, reference, by, value)))
    return Family(name or f"each rule vs {reference}, per {by}", tuple(pairs), metric)


def schedule_pairs(runs: pd.DataFrame, a: str, b: str, *, metric: str, name: str | None = None,
                   rules=None) -> Family:
    """Each rule with schedule ``a`` against itself with schedule ``b`` (tagged by ``schedule``)."""
    rules = list(runs["base_rule"].drop_duplicates()) if rules is None else rules
    pairs = [Pair(arm(runs, r, "schedule", a), arm(runs, r, "schedule", b)) for r in rules]
    return Family(name or f"{a} vs {b} schedule", tuple(pairs), metric)


def cross_pairs(runs: pd.DataFrame, pairs, by: str, *, metric: str, name: str) -> Family:
    """A family of explicit pairs ``[((rule, value), (rule, value)), ...]`` of tagged ``runs``."""
    return Family(name, tuple(Pair(arm(runs, ra, by, va), arm(runs, rb, by, vb)) for (ra, va), (rb, vb) in pairs),
                  metric)


def curve_table(df: pd.DataFrame, by=("rule", "schedule"), metric: str = "test_acc") -> pd.DataFrame:
    """Mean ``metric`` over seeds per ``by`` and epoch, with the number of seeds that have a finite value."""
    g = df.groupby([*by, "epoch"])[metric]
    return pd.DataFrame({"mean": g.mean(), "n": g.apply(lambda s: int(np.isfinite(s).sum()))}).reset_index()


def label_values(runs: pd.DataFrame, by: str, column: str | None = None) -> dict:
    """{arm label (as :func:`arm` names it): value of ``column`` (default ``by``)} of tagged ``runs``."""
    column = column or by
    out = {}
    for rule, v, x in runs[["base_rule", by, column]].drop_duplicates(subset=["base_rule", by]).itertuples(index=False):
        out[f"{rule} ({_value_text(by, v)})"] = x
    return out


# ----------------------------------------------------------------------------- trend with size

TREND_COLUMNS = ["rule", "base", "n_seeds", "n_sizes", "factor", "diff_smallest_pp", "diff_largest_pp", "slope_pp",
                 "ci_lo_pp", "ci_hi_pp", "ci_level", "p", "p_holm", "alpha_adj", "sd_pp", "mde_pp", "verdict"]


def size_trend(per_run: pd.DataFrame, base: str = "sgd", *, size: str = "n_train", metric: str = "test_acc",
               factor: float = 3.0, alpha: float = compare.ALPHA) -> pd.DataFrame:
    """Does each rule's gap to ``base`` change with the training-set size? One row per rule.

    ``per_run``: one row per run with ``rule, seed, <size>, <metric>, outcome`` (notebook 07's
    ``07_data_size`` table). For every seed at which the rule and ``base`` trained at every size,
    the paired gap d(n) = metric(rule) - metric(base) (pp) is fitted by least squares against
    log(n)/log(``factor``); ``slope_pp`` is the mean of those per-seed slopes: how much the gap
    changes when the training set grows ``factor``-fold. The seeds' slopes are independent (the
    sizes of one seed share its initial weights, so they are not), and a one-sample t-test on them
    gives ``p``; Holm over the rules gives ``p_holm`` and the level of the interval (1 - alpha_adj,
    which excludes 0 exactly when the verdict is a change). Verdict: "gap grows" (the rule gains on
    ``base`` as the set grows), "gap shrinks", or "no trend shown" with ``mde_pp``, the smallest
    slope this many seeds detects with 80% power. A rule with fewer than 2 complete seeds is
    "too few seeds"."""
    ok = per_run[per_run["outcome"] == TRAINED]
    wide = ok.pivot_table(index=["seed", size], columns="rule", values=metric)
    sizes = sorted(per_run[size].unique())
    rows = []
    for rule in [r for r in dict.fromkeys(per_run["rule"]) if r != base]:
        slopes, first, last = [], [], []
        for _, g in wide.groupby(level="seed"):
            g = g.droplevel("seed").reindex(sizes)
            if rule not in g or base not in g:
                continue
            d = 100 * (g[rule] - g[base])
            if d.isna().any():
                continue
            x = np.log(np.asarray(sizes, float)) / np.log(factor)
            slopes.append(float(np.polyfit(x, d.to_numpy(), 1)[0]))
            first.append(float(d.iloc[0]))
            last.append(float(d.iloc[-1]))
        s = np.asarray(slopes)
        row = dict(rule=rule, base=base, n_seeds=len(s), n_sizes=len(sizes), factor=factor,
                   diff_smallest_pp=float(np.mean(first)) if first else np.nan,
                   diff_largest_pp=float(np.mean(last)) if last else np.nan,
                   slope_pp=float(s.mean()) if len(s) else np.nan,
                   sd_pp=float(s.std(ddof=1)) if len(s) > 1 else np.nan,
                   p=float(st.ttest_1samp(s, 0.0).pvalue) if len(s) > 1 and np.ptp(s) > 0 else np.nan)
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    tested = out["p"].notna()
    reject, p_adj, a_adj = compare.holm_alphas(out.loc[tested, "p"].to_numpy(), alpha)
    out["p_holm"], out["alpha_adj"] = np.nan, np.nan
    out.loc[tested, "p_holm"], out.loc[tested, "alpha_adj"] = p_adj, a_adj
    out["ci_lo_pp"], out["ci_hi_pp"], out["ci_level"], out["mde_pp"], out["verdict"] = np.nan, np.nan, np.nan, \
        np.nan, "too few seeds"
    for i in out.index[tested]:
        n, m, sd, a = int(out.at[i, "n_seeds"]), out.at[i, "slope_pp"], out.at[i, "sd_pp"], out.at[i, "alpha_adj"]
        half = float(st.t.ppf(1 - a / 2, n - 1) * sd / np.sqrt(n))
        out.loc[i, ["ci_lo_pp", "ci_hi_pp", "ci_level"]] = [m - half, m + half, 1 - a]
        out.at[i, "mde_pp"] = compare.mde_pp(n, sd, a)
        out.at[i, "verdict"] = ("gap grows" if m > 0 else "gap shrinks") if out.at[i, "p_holm"] < alpha \
            else "no trend shown"
    return out[TREND_COLUMNS]


__all__ += ["TREND_COLUMNS", "size_trend"]
