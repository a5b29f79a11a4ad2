"""Tables of the report: every table a notebook shows or writes is built here, from tidy frames.

    from optreport.report import tables
    tables.save_table(df, RESULTS_DIR, "02_sweep_table")    # 02_sweep_table.csv and .md

Each builder takes the frames the notebooks already hold (per-epoch runs of
:func:`optreport.runs.results.load_results`, the analysis modules' outputs) and returns a plain
DataFrame with the columns the saved CSV has; the statistics themselves live in
:mod:`optreport.analysis`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from optimizers import OPTIMIZERS
from optreport.analysis import costs
from optreport.analysis.compare import VERDICTS, Arm, Family, Pair, accuracy_ci, loss_ci, mean_ci_in_range
from optreport.analysis.outcomes import TRAINED, outcome_summary
from optreport.analysis.tuning import hparams_text
from optreport.engine.data import TRAIN_SIZE

__all__ = ["markdown_table", "save_table", "SWEEP_COLUMNS", "sweep_table", "catalogue_order", "accuracy_grid",
           "vs_baselines",
           "VS_BASELINES_COLUMNS", "ablation_variant", "ablation_family", "STEP_COST_COLUMNS", "step_cost",
           "epoch_cost",
           "time_to_target", "seed004", "imitation"]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no dependency on ``tabulate``)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.itertuples(index=False, name=None)]
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, results_dir: str | Path, name: str) -> Path:
    """Write ``df`` as ``results_dir/name.csv`` and a Markdown copy ``name.md``; return the CSV."""
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"{name}.csv", index=False, float_format="%.10g")   # fixed digits: re-renders diff clean
    (out / f"{name}.md").write_text(markdown_table(df))
    return out / f"{name}.csv"


# ----------------------------------------------------------------------------- notebook 02
SWEEP_COLUMNS = ["rule", "lr", "n_seeds", "outcome", "n_trained", "n_diverged", "n_blew_up", "n_failed",
                 "final_test_acc", "final_test_acc_lo", "final_test_acc_hi",
                 "val_test_acc", "val_test_acc_lo", "val_test_acc_hi",
                 "last3_test_acc", "last3_test_acc_lo", "last3_test_acc_hi",
                 "final_test_loss", "final_test_loss_lo", "final_test_loss_hi", "val_epoch", "final_epoch"]


def sweep_table(runs: pd.DataFrame, by=("rule", "lr"), level: float = 0.95) -> pd.DataFrame:
    """Per group of ``by`` (rows of :func:`optreport.analysis.outcomes.run_outcomes`): the number of
    seeds, the outcome in words (:func:`~optreport.analysis.outcomes.outcome_summary`) and counts
    per outcome, then the mean and a range-respecting 95% t interval of each accuracy metric
    (final epoch, validation-selected epoch, mean of the last 3 epochs) and of the final test
    loss, over the runs that trained. Means over no trained run are NaN and the outcome says why.
    Columns: :data:`SWEEP_COLUMNS` (``by`` first)."""
    by = list(by)
    rows = []
    for keys, g in runs.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = g[g["outcome"] == TRAINED]
        row = {**dict(zip(by, keys, strict=True)), "n_seeds": int(g["seed"].nunique()),
               "outcome": outcome_summary(g["outcome"]), "n_trained": len(ok),
               "n_diverged": int((g["outcome"] == "diverged").sum()),
               "n_blew_up": int((g["outcome"] == "blew up").sum()),
               "n_failed": int((g["outcome"] == "failed to learn").sum())}
        for col in ("final_test_acc", "val_test_acc", "last3_test_acc"):
            m, lo, hi = accuracy_ci(ok[col], level)
            row.update({col: m, f"{col}_lo": lo, f"{col}_hi": hi})
        m, lo, hi = loss_ci(ok["final_test_loss"], level)
        row.update({"final_test_loss": m, "final_test_loss_lo": lo, "final_test_loss_hi": hi,
                    "val_epoch": float(ok["val_epoch"].astype(float).mean()) if len(ok) else float("nan"),
                    "final_epoch": int(g["final_epoch"].max())})
        rows.append(row)
    cols = by + [c for c in SWEEP_COLUMNS if c not in ("rule", "lr")]
    return catalogue_order(pd.DataFrame(rows, columns=cols), by)


def catalogue_order(df: pd.DataFrame, by=("rule", "lr")) -> pd.DataFrame:
    """Rows sorted by ``by``; a ``rule`` column in the catalogue's order (optimizers.OPTIMIZERS;
    names not in it last, alphabetically)."""
    by = [c for c in by if c in df.columns]
    if df.empty or not by:
        return df.reset_index(drop=True)
    rank = {r: i for i, r in enumerate(OPTIMIZERS)}

    def key(col):
        if col.name != "rule":
            return col
        return col.map(lambda r: (rank.get(r, len(rank)), str(r))).map(lambda t: f"{t[0]:04d}{t[1]}")
    return df.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def accuracy_grid(table: pd.DataFrame, rules, metric: str = "val_test_acc") -> tuple[pd.DataFrame, pd.DataFrame]:
    """From a :func:`sweep_table`: the mean ``metric`` in % over trained runs (rows: ``rules``,
    columns: lrs) and a note per cell: the outcome when not every run trained ("diverged",
    "2/5 diverged, 3/5 trained"), else ""."""
    acc = table.pivot(index="rule", columns="lr", values=metric).reindex(rules) * 100
    notes = table.pivot(index="rule", columns="lr", values="outcome").reindex(rules).map(
        lambda o: "" if o == TRAINED or not isinstance(o, str) else o.replace(", ", "\n"))
    return acc, notes


# ----------------------------------------------------------------------------- notebook 03
VS_BASELINES_COLUMNS = ["rule", "lr", "baseline", "baseline_lr", "n_seeds", "metric", "mean_rule", "mean_baseline",
                        "diff_pp", "ci_lo_pp", "ci_hi_pp", "interval", "ci_level", "p_holm", "p_tost_holm",
                        "margin_pp", "mde_pp", "outcome_rule", "outcome_baseline", "n_out_rule", "n_out_baseline",
                        "verdict", "family"]


def vs_baselines(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`optreport.analysis.compare.compare` table of novel rule (``a``) vs baseline (``b``)
    pairs, in the report's words: columns :data:`VS_BASELINES_COLUMNS` (``baseline``: ``sgd``,
    ``momentum`` or ``momentum (matched)``; differences rule − baseline in pp)."""
    t = table.rename(columns={"a": "rule", "lr_a": "lr", "b": "baseline", "lr_b": "baseline_lr",
                              "mean_a": "mean_rule", "mean_b": "mean_baseline", "outcome_a": "outcome_rule",
                              "outcome_b": "outcome_baseline", "n_out_a": "n_out_rule", "n_out_b": "n_out_baseline"})
    t["verdict"] = [v if v in VERDICTS else v.replace("A ", "rule ").replace("B ", "baseline ") for v in t["verdict"]]
    return t[VS_BASELINES_COLUMNS].reset_index(drop=True)


def ablation_variant(row) -> str:
    """The name of a Gravity or Cosine run's variant, from its hyper-parameter columns."""
    if row.rule == "gravity":
        return ("accumulate=False" if row.get("accumulate") is False or row.get("accumulate") == 0
                else "default (accumulate=True)")
    if isinstance(row.get("per"), str) and row.get("per") == "tensor":
        return "per=tensor"
    if pd.notna(row.get("C")) and float(row.get("C")) != 1.8:
        return f"C={float(row.get('C')):g}"
    return "default (per=row, C=1.8)"


def ablation_family(abl: pd.DataFrame, metric: str) -> Family:
    """Notebook 03's ablations as one family: each variant (a run of ``abl``, rows of run_outcomes)
    against its rule's default at the same lr."""
    pairs = {}
    for _, r in abl.iterrows():
        extra = tuple(sorted((k, v) for k, v in json.loads(r["hparams"]).items() if k != "lr"))
        a = Arm(r["rule"], float(r["lr"]), extra, label=f"{r['rule']}: {ablation_variant(r)}")
        pairs.setdefault((a.rule, a.lr, extra), Pair(a, Arm(r["rule"], float(r["lr"]),
                                                            label=f"{r['rule']}: default")))
    return Family("ablations vs default", tuple(pairs.values()), metric)


# # ----------------------------------------------------------------------------- notebook 04
STEP_COST_COLUMNS = ["rule", "model", "batch_size", "step_us", "fwd_bwd_us", "step_share",
                     "step_vs_sgd", "state_bytes_per_param", "repeats", "inner", "threads"]


def step_cost(bench: pd.DataFrame, bytes_per_param) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The live microbenchmark (``bench`` from :func:`optreport.analysis.costs.step_time_table`)
    with the optimizer-state bytes per parameter (one per row of ``bench``), the step's cost
    relative to SGD's and the whole training step (``total_us``): ``(bench, table)``, where
    ``table`` holds the columns :data:`STEP_COST_COLUMNS` that notebook 04 saves."""
    bench = bench.copy()
    bench["state_bytes_per_param"] = list(bytes_per_param)
    bench["step_vs_sgd"] = bench["step_us"] / bench.set_index("rule").loc["sgd", "step_us"]
    bench["total_us"] = bench["step_us"] + bench["fwd_bwd_us"]
    return bench, bench[STEP_COST_COLUMNS]


def epoch_cost(at_best: pd.DataFrame, best: dict, bench: pd.DataFrame, rules) -> pd.DataFrame:
    """Per rule at its best lr (``best``; ``at_best``: its runs): seconds per epoch with the
    optimizer-step share (full epochs only), final accuracy, the microbenchmark's step time and
    state bytes, and the epoch's cost relative to SGD's, from each rule's fastest epoch (the runs
    shared the machine with other work; see :func:`optreport.analysis.costs.epoch_costs`)."""
    ec = costs.epoch_costs(costs.clean_epochs(at_best), by=("rule",))
    acc = costs.final_accuracy(at_best)
    out = (pd.DataFrame({"rule": list(rules), "best_lr": [best[r] for r in rules]})
           .merge(ec, on="rule").merge(acc, on="rule")
           .merge(bench[["rule", "step_us", "state_bytes_per_param"]], on="rule"))
    out["epoch_vs_sgd"] = out["fastest_s"] / out.set_index("rule").loc["sgd", "fastest_s"]   # least disturbed
    # what the quiet microbenchmark predicts for an epoch's training steps, and how far the fastest
    # stored epoch is above it: a rule whose runs all shared the machine stands out here
    steps = math.ceil((TRAIN_SIZE - 5000) / 64)
    out["predicted_s"] = steps * bench.set_index("rule").loc[out["rule"], "total_us"].to_numpy() * 1e-6
    out["disturbance"] = out["fastest_s"] / out["predicted_s"]
    return out


def time_to_target(at_best: pd.DataFrame, targets, rules, n_boot: int) -> pd.DataFrame:
    """:func:`optreport.analysis.costs.time_to_target` per rule, sorted by target, then rules
    in the order of ``rules``."""
    ttt = costs.time_to_target(at_best, targets, n_boot=n_boot)
    order = list(rules)
    return ttt.sort_values(["target", "rule"], key=lambda c: c.map(order.index) if c.name == "rule" else c,
                           ignore_index=True)


def seed004(run_times: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Seed 004's table per rule and lr from :func:`optreport.analysis.costs.run_times`: seeds,
    mean final test accuracy with its 95% t CI (kept in [0, 1]), seconds per epoch, total seconds,
    step share."""
    table = (run_times.groupby(["rule", "lr"], sort=False)
             .apply(lambda g: pd.Series({
                 "n_seeds": len(g),
                 "test_acc": g["test_acc"].mean(),
                 "acc_ci_lo": costs.range_ci(g["test_acc"], "test_acc")[1],
                 "acc_ci_hi": costs.range_ci(g["test_acc"], "test_acc")[2],
                 "sec_per_epoch": g["sec_per_epoch"].mean(), "total_s": g["total_s"].mean(),
                 "step_share": g["step_share"].mean()}), include_groups=False)
             .reset_index())
    table["epochs"] = epochs
    return table


# ----------------------------------------------------------------------------- notebook 05
def imitation(variants: dict, acc: dict, base: str, comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """Notebook 05's inclusion re-training: per variant (``variants``: {name: (rule, hparams)},
    ``acc``: {name: final test accuracy per seed}), the mean test accuracy with its 95% t CI (kept in
    [0, 1]) and the mean paired difference to the ``base`` variant (``diff_vs_momentum``, NaN for
    ``base`` itself). With ``comparison`` (the ``compare.compare`` table of the variants against
    ``base``, one row per other variant in ``variants``' order, e.g. of
    :func:`optreport.analysis.tuning.imitation_family`), each row also gets that comparison's
    verdict: the variant's outcome, the difference in pp with its Holm-adjusted interval
    (``diff_lo_pp``, ``diff_hi_pp`` at ``ci_level``), ``p_holm``, ``mde_pp`` and ``verdict``."""
    rows = []
    others = [n for n in variants if n != base]
    cmp_rows = dict(zip(others, [r for _, r in comparison.iterrows()])) if comparison is not None else {}
    for name, (_rule, hp) in variants.items():
        m, lo, hi = costs.range_ci(acc[name], "test_acc")
        diff = float(np.nanmean(np.asarray(acc[name], float) - np.asarray(acc[base], float))) \
            if name != base else np.nan
        row = {"variant": name, "hparams": hparams_text(hp), "n_seeds": len(acc[name]),
               "test_acc": m, "ci_lo": lo, "ci_hi": hi, "diff_vs_momentum": diff}
        if comparison is not None:
            c = cmp_rows.get(name)
            base_out = comparison["outcome_b"].iloc[0] if len(comparison) else ""
            row.update(outcome=c["outcome_a"] if c is not None else base_out,
                       diff_pp=c["diff_pp"] if c is not None else np.nan,
                       diff_lo_pp=c["ci_lo_pp"] if c is not None else np.nan,
                       diff_hi_pp=c["ci_hi_pp"] if c is not None else np.nan,
                       ci_level=c["ci_level"] if c is not None else np.nan,
                       p_holm=c["p_holm"] if c is not None else np.nan,
                       mde_pp=c["mde_pp"] if c is not None else np.nan,
                       verdict=c["verdict"] if c is not None else "(baseline)")
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- notebook 06
OVERFITTING_COLUMNS = ["rule", "schedule", "lr", "n_seeds", "outcome", "final_epoch", "train_acc", "test_acc",
                       "gap_pp", "gap_lo_pp", "gap_hi_pp", "val_epoch"]


def overfitting(runs: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Per rule and schedule at the last epoch: mean training accuracy, test accuracy and their
    paired gap in pp (mean and 95% t interval over the runs that trained), and the mean
    validation-selected epoch (``runs``: run_outcomes of ``df``)."""
    last = df.sort_values("epoch").groupby("key").tail(1)[["key", "train_acc"]]
    r = runs.merge(last, on="key", how="left")
    rows = []
    for (rule, sch), g in r.groupby(["rule", "schedule"], sort=False):
        ok = g[g["outcome"] == TRAINED]
        gap = 100 * (ok["train_acc"] - ok["final_test_acc"])
        m, lo, hi = mean_ci_in_range(gap, lower=-100.0, upper=100.0)     # a difference of two accuracies, in pp
        rows.append({"rule": rule, "schedule": sch, "lr": float(g["lr"].iloc[0]), "n_seeds": int(g["seed"].nunique()),
                     "outcome": outcome_summary(g["outcome"]), "final_epoch": int(g["final_epoch"].max()),
                     "train_acc": float(ok["train_acc"].mean()) if len(ok) else float("nan"),
                     "test_acc": float(ok["final_test_acc"].mean()) if len(ok) else float("nan"),
                     "gap_pp": float(gap.mean()) if len(ok) else float("nan"),
                     "gap_lo_pp": lo, "gap_hi_pp": hi,
                     "val_epoch": float(ok["val_epoch"].astype(float).mean()) if len(ok) else float("nan")})
    return catalogue_order(pd.DataFrame(rows, columns=OVERFITTING_COLUMNS), ("rule", "schedule"))


# ----------------------------------------------------------------------------- notebook 08
PUBLISHED_COMPARISON_COLUMNS = ["rule", "epoch", "test_acc", "test_acc_min", "test_acc_max", "n_seeds",
                                "published_test_acc", "published_min", "published_max", "published_n_seeds",
                                "source"]
NO_PUBLISHED = "no published result"


def published_comparison(df: pd.DataFrame, published: pd.DataFrame, rules=None) -> pd.DataFrame:
    """Our per-epoch test accuracy beside the published one (notebook 08's
    ``results/08_cnn_vs_published.csv``).

    df:        per-epoch rows of :func:`optreport.runs.results.load_results` (one rule = one
               configuration over seeds).
    published: :func:`optreport.analysis.published.load_published` (epochs 0..100).
    rules:     rules to keep, in this order (default: the rules of ``df``, catalogue order).
    One row per rule and epoch that we trained: ``test_acc`` the mean over seeds (non-finite
    values of diverged runs left out), its min and max, ``n_seeds``; the published mean, min, max
    and number of seeds at the same epoch, and ``source`` (the published results folder, or
    :data:`NO_PUBLISHED` for a rule without published numbers). Columns:
    :data:`PUBLISHED_COMPARISON_COLUMNS`."""
    d = df[np.isfinite(df["test_acc"].astype(float))] if len(df) else df
    ours = d.groupby(["rule", "epoch"])["test_acc"].agg(["mean", "min", "max", "count"]).reset_index()
    ours = ours.rename(columns={"mean": "test_acc", "min": "test_acc_min", "max": "test_acc_max", "count": "n_seeds"})
    pub = published.rename(columns={"n_seeds": "published_n_seeds"})[
        ["rule", "epoch", "published_test_acc", "published_min", "published_max", "published_n_seeds", "source"]]
    out = ours.merge(pub, on=["rule", "epoch"], how="left")
    out["source"] = out["source"].fillna(NO_PUBLISHED)
    out["published_n_seeds"] = out["published_n_seeds"].astype("Int64")
    if rules is None:
        order = {r: i for i, r in enumerate(OPTIMIZERS)}
        rules = sorted(out["rule"].unique(), key=lambda r: order.get(r, len(order)))
    out = out[out["rule"].isin(list(rules))]
    out["_r"] = out["rule"].map({r: i for i, r in enumerate(rules)})
    out = out.sort_values(["_r", "epoch"], kind="stable").drop(columns="_r").reset_index(drop=True)
    return out[PUBLISHED_COMPARISON_COLUMNS]
