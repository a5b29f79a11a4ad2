"""Tables of the report: every table a notebook shows or writes is built here, from tidy frames.

    from optreport.report import tables
    tables.save_table(df, RESULTS_DIR, "02_sweep_table")    # 02_sweep_table.csv and .md

Each builder takes the frames the notebooks already hold (per-epoch runs of
:func:`optreport.runs.results.load_results`, the analysis modules' outputs) and returns a plain
DataFrame with the columns the saved CSV has; the statistics themselves live in
:mod:`optreport.analysis`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optreport.analysis import costs, stats
from optreport.analysis.tuning import hparams_text

__all__ = ["markdown_table", "save_table", "accuracy_grid", "vs_momentum", "VS_MOMENTUM_COLUMNS",
           "ablation_variant", "ablations", "STEP_COST_COLUMNS", "step_cost", "epoch_cost",
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
def accuracy_grid(table: pd.DataFrame, rules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From a :func:`optreport.analysis.stats.sweep_table`: final test accuracy in % (rows:
    ``rules``, columns: lrs) and a note per cell ("2 div." where runs diverged, else "")."""
    acc = table.pivot(index="rule", columns="lr", values="test_acc").reindex(rules) * 100
    notes = table.pivot(index="rule", columns="lr", values="diverged").reindex(rules).map(
        lambda k: f"{int(k)} div." if k else "")
    return acc, notes


# ----------------------------------------------------------------------------- notebook 03
VS_MOMENTUM_COLUMNS = ["metric", "lr", "rule", "n", "diverged", "mean", "reference_mean", "mean_diff",
                       "ci_lo", "ci_hi", "t_p", "wilcoxon_p", "holm_p", "verdict"]


def _vs_momentum_one(frame: pd.DataFrame, value: str, higher_is_better: bool, alpha: float) -> pd.DataFrame:
    c = stats.compare_to_reference(frame, value=value, within="lr", group="rule",
                                   reference="momentum", higher_is_better=higher_is_better, alpha=alpha)
    c["holm_p"] = stats.holm(c["t_p"])              # Holm over all rules x lrs of this metric
    c["distinguishable"] = c["holm_p"] < alpha
    good = (c.mean_diff > 0) if higher_is_better else (c.mean_diff < 0)
    c["verdict"] = np.where(c.n < 2, "n/a", np.where(c.distinguishable, np.where(good, "better", "worse"),
                                                      "indistinguishable"))
    return c.assign(metric=value)


def vs_momentum(runs: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Every rule in ``runs`` against Momentum, paired over seeds, at each lr: final test
    accuracy (higher is better) and final training loss (lower is better). Holm's correction
    runs over all rules x lrs of one metric. Columns: :data:`VS_MOMENTUM_COLUMNS`."""
    comp = pd.concat([_vs_momentum_one(runs, "test_acc", True, alpha),
                      _vs_momentum_one(runs, "train_loss", False, alpha)], ignore_index=True)
    return comp[VS_MOMENTUM_COLUMNS]


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


def ablations(main: pd.DataFrame, abl: pd.DataFrame, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 03's ablations: ``(table, comparisons)``.

    ``table``: :func:`optreport.analysis.stats.sweep_table` per variant ("rule: variant") and lr,
    over the default Gravity and Cosine runs of ``main`` and the ablation runs ``abl``.
    ``comparisons``: each variant against its rule's default at the same lr, paired over seeds;
    Holm's correction over every ablation (one family)."""
    both = pd.concat([main[main.rule.isin(["gravity", "cosine"])], abl], ignore_index=True)
    both["variant"] = both.apply(ablation_variant, axis=1)
    both["group"] = both.rule + ": " + both.variant
    rows = []
    for (_rule, _lr), g in both.groupby(["rule", "lr"]):
        is_default = g.variant.str.startswith("default")
        default = g[is_default].group.iloc[0] if is_default.any() else None
        if default is None or g.group.nunique() < 2:
            continue
        c = stats.compare_to_reference(g.assign(rule=g.group), value="test_acc", within="lr", group="rule",
                                       reference=default, alpha=alpha)
        rows.append(c)
    comp = pd.concat(rows, ignore_index=True).rename(columns={"rule": "variant"})
    comp["holm_p"] = stats.holm(comp["t_p"])
    comp["distinguishable"] = comp["holm_p"] < alpha      # one family: every ablation
    comp["verdict"] = np.where(comp.n < 2, "n/a", np.where(comp.holm_p < alpha,
                               np.where(comp.mean_diff > 0, "better", "worse"), "indistinguishable"))
    return stats.sweep_table(both, by=("group", "lr")), comp


# ----------------------------------------------------------------------------- notebook 04
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
    state bytes, and the epoch's cost relative to SGD's."""
    ec = costs.epoch_costs(costs.clean_epochs(at_best), by=("rule",))
    acc = costs.final_accuracy(at_best)
    out = (pd.DataFrame({"rule": list(rules), "best_lr": [best[r] for r in rules]})
           .merge(ec, on="rule").merge(acc, on="rule")
           .merge(bench[["rule", "step_us", "state_bytes_per_param"]], on="rule"))
    out["epoch_vs_sgd"] = out["train_s"] / out.set_index("rule").loc["sgd", "train_s"]
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
    mean final test accuracy with its 95% t CI, seconds per epoch, total seconds, step share."""
    table = (run_times.groupby(["rule", "lr"], sort=False)
             .apply(lambda g: pd.Series({
                 "n_seeds": len(g),
                 "test_acc": g["test_acc"].mean(),
                 "acc_ci_lo": stats.mean_ci(g["test_acc"])[1], "acc_ci_hi": stats.mean_ci(g["test_acc"])[2],
                 "sec_per_epoch": g["sec_per_epoch"].mean(), "total_s": g["total_s"].mean(),
                 "step_share": g["step_share"].mean()}), include_groups=False)
             .reset_index())
    table["epochs"] = epochs
    return table


# ----------------------------------------------------------------------------- notebook 05
def imitation(variants: dict, acc: dict, base: str) -> pd.DataFrame:
    """Notebook 05's inclusion re-training: per variant (``variants``: {name: (rule, hparams)},
    ``acc``: {name: final test accuracy per seed}), the mean test accuracy with its 95% t CI and
    the paired difference to the ``base`` variant (mean, CI, t-test p; NaN for ``base`` itself)."""
    rows = []
    for name, (_rule, hp) in variants.items():
        m, lo, hi = stats.mean_ci(acc[name])
        cmp = stats.paired_comparison(acc[name], acc[base]) if name != base else {}
        rows.append({"variant": name, "hparams": hparams_text(hp), "n_seeds": len(acc[name]),
                     "test_acc": m, "ci_lo": lo, "ci_hi": hi,
                     "diff_vs_momentum": cmp.get("mean_diff", np.nan), "diff_lo": cmp.get("ci_lo", np.nan),
                     "diff_hi": cmp.get("ci_hi", np.nan), "p": cmp.get("t_p", np.nan)})
    return pd.DataFrame(rows)
