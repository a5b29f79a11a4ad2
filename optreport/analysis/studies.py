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


# ----------------------------------------------------------------------------- gaps that change

TREND_COLUMNS = ["rule", "base", "n_seeds", "n_sizes", "factor", "diff_smallest_pp", "diff_largest_pp", "slope_pp",
                 "ci_lo_pp", "ci_hi_pp", "ci_level", "p", "p_holm", "alpha_adj", "sd_pp", "mde_pp", "verdict"]
CHANGE_COLUMNS = ["rule", "base", "n_seeds", "short", "long", "diff_short_pp", "diff_long_pp", "change_pp",
                  "ci_lo_pp", "ci_hi_pp", "ci_level", "p", "p_holm", "alpha_adj", "sd_pp", "mde_pp", "verdict"]
GAINS, LOSES = "gains", "loses"       # the rule gains on / loses ground to the base rule as x grows


def _slope_tests(per_run: pd.DataFrame, base: str, x: str, xfun, metric: str, by: str | None,
                 alpha: float, flat_word: str) -> pd.DataFrame:
    """Per (``by`` value and) rule: per seed trained at every ``x``, the least-squares slope of the
    paired gap rule - base (pp) against ``xfun(x)``; the mean slope, a one-sample t-test over the
    seeds' slopes, Holm over all rows, the interval at Holm's level and the 80%-power detectable
    slope. Verdict :data:`GAINS` / :data:`LOSES` / ``flat_word`` / "too few seeds"."""
    ok = per_run[per_run["outcome"] == TRAINED]
    xs = sorted(per_run[x].unique())
    xv = np.asarray([xfun(v) for v in xs], float)
    groups = [(None, ok, per_run)] if by is None else [(g, ok[ok[by] == g], per_run[per_run[by] == g])
                                                        for g in dict.fromkeys(per_run[by])]
    rows = []
    for gval, okg, allg in groups:
        wide = okg.pivot_table(index=["seed", x], columns="rule", values=metric)
        for rule in [r for r in dict.fromkeys(allg["rule"]) if r != base]:
            slopes, first, last = [], [], []
            for _, g in wide.groupby(level="seed"):
                g = g.droplevel("seed").reindex(xs)
                if rule not in g or base not in g:
                    continue
                d = 100 * (g[rule] - g[base])
                if d.isna().any():
                    continue
                slopes.append(float(np.polyfit(xv, d.to_numpy(), 1)[0]))
                first.append(float(d.iloc[0]))
                last.append(float(d.iloc[-1]))
            sl = np.asarray(slopes)
            row = {} if by is None else {by: gval}
            row.update(rule=rule, base=base, n_seeds=len(sl), first=float(np.mean(first)) if first else np.nan,
                       last=float(np.mean(last)) if last else np.nan, slope=float(sl.mean()) if len(sl) else np.nan,
                       sd_pp=float(sl.std(ddof=1)) if len(sl) > 1 else np.nan,
                       p=float(st.ttest_1samp(sl, 0.0).pvalue) if len(sl) > 1 and np.ptp(sl) > 0 else np.nan)
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    tested = out["p"].notna()
    out["p_holm"], out["alpha_adj"] = np.nan, np.nan
    if tested.any():
        _, p_adj, a_adj = compare.holm_alphas(out.loc[tested, "p"].to_numpy(), alpha)
        out.loc[tested, "p_holm"], out.loc[tested, "alpha_adj"] = p_adj, a_adj
    for c in ("ci_lo", "ci_hi", "ci_level", "mde_pp"):
        out[c] = np.nan
    out["verdict"] = "too few seeds"
    for i in out.index[tested]:
        n, m, sd, a = int(out.at[i, "n_seeds"]), out.at[i, "slope"], out.at[i, "sd_pp"], out.at[i, "alpha_adj"]
        half = float(st.t.ppf(1 - a / 2, n - 1) * sd / np.sqrt(n))
        out.loc[i, ["ci_lo", "ci_hi", "ci_level"]] = [m - half, m + half, 1 - a]
        out.at[i, "mde_pp"] = compare.mde_pp(n, sd, a)
        out.at[i, "verdict"] = (GAINS if m > 0 else LOSES) if out.at[i, "p_holm"] < alpha else flat_word
    return out


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
    which excludes 0 exactly when the verdict is a change). Verdict: :data:`GAINS` (the rule gains on
    ``base`` as the set grows), :data:`LOSES`, or "no trend shown" with ``mde_pp``, the smallest
    slope this many seeds detects with 80% power; "too few seeds" below 2 complete seeds."""
    out = _slope_tests(per_run, base, size, lambda n: np.log(n) / np.log(factor), metric, None, alpha,
                       "no trend shown")
    if out.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    out = out.rename(columns={"first": "diff_smallest_pp", "last": "diff_largest_pp", "slope": "slope_pp",
                              "ci_lo": "ci_lo_pp", "ci_hi": "ci_hi_pp"})
    out["n_sizes"], out["factor"] = per_run[size].nunique(), factor
    return out[TREND_COLUMNS]


def length_change(per_run: pd.DataFrame, base: str = "sgd", *, at: str = "cut", by: str | None = "schedule",
                  metric: str = "test_acc", alpha: float = compare.ALPHA) -> pd.DataFrame:
    """Does each rule's gap to ``base`` change between a short and a long training length? One row
    per (``by`` value and) rule.

    ``per_run``: one row per run and cut-off (column ``at``, two values) with ``rule, seed,
    <metric>, outcome`` (and ``by``), the metric read within the cut. Per seed, ``change_pp`` is the
    gap at the long cut minus the gap at the short one (pp; the same seed's runs, so the change is
    paired twice), a one-sample t-test over the seeds, Holm over all rows. Verdict :data:`GAINS`
    (the rule gains on ``base`` with longer training: a negative gap closes or a positive one opens),
    :data:`LOSES`, or "no change shown" with ``mde_pp``. A verdict that differs between the two
    cut-offs is not by itself evidence of a change; this test is."""
    cuts = sorted(per_run[at].unique())
    if len(cuts) != 2:
        raise ValueError(f"Invalid {at}: length_change compares two cut-offs, got {cuts}")
    out = _slope_tests(per_run, base, at, lambda c: float(c == cuts[1]), metric, by, alpha, "no change shown")
    if out.empty:
        return pd.DataFrame(columns=([by] if by else []) + CHANGE_COLUMNS)
    out = out.rename(columns={"first": "diff_short_pp", "last": "diff_long_pp", "slope": "change_pp",
                              "ci_lo": "ci_lo_pp", "ci_hi": "ci_hi_pp"})
    out["short"], out["long"] = cuts
    return out[([by] if by else []) + CHANGE_COLUMNS]


__all__ += ["TREND_COLUMNS", "CHANGE_COLUMNS", "GAINS", "LOSES", "size_trend", "length_change"]
