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

from optreport.analysis.compare import Arm, Family, Pair
from optreport.analysis.outcomes import run_outcomes

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
