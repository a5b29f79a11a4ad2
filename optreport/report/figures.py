"""One plotting style for the whole report.

Every figure goes through :func:`apply_style` (fonts, grid, size) and :func:`savefig` (one PNG
per figure in ``img/``, named ``<notebook>_<figure>.png``). Every rule has one colour and one
label everywhere, so a reader can follow a rule from figure to figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

from optreport.analysis.compare import VERDICTS, accuracy_ci, loss_ci, mean_ci_in_range  # noqa: E402
from optreport.analysis.outcomes import CHANCE, METRICS, TRAINED, outcome_summary  # noqa: E402
from optreport.analysis.surfaces import plot_trajectories  # noqa: E402
from optreport.analysis.tuning import PROTOCOLS  # noqa: E402

# The report's order of rules: classic ones roughly by the inclusion hierarchy, novel ones last.
RULE_ORDER = ["sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta",
              "adam", "nadam", "adamw", "gravity", "cosine"]

RULE_LABELS = {"sgd": "SGD", "momentum": "Momentum", "nag": "Nesterov (NAG)",
               "adagrad": "Adagrad", "rmsprop": "RMSProp", "adadelta": "AdaDelta",
               "adam": "Adam", "nadam": "NAdam", "adamw": "AdamW",
               "gravity": "Gravity", "cosine": "Cosine"}

# tab20-like colours, fixed per rule; the two novel rules get the strongest colours.
RULE_COLORS = {"sgd": "#7f7f7f", "momentum": "#1f77b4", "nag": "#17becf",
               "adagrad": "#bcbd22", "rmsprop": "#9467bd", "adadelta": "#8c564b",
               "adam": "#2ca02c", "nadam": "#98df8a", "adamw": "#006d2c",
               "gravity": "#d62728", "cosine": "#ff7f0e"}


def rule_label(rule: str) -> str:
    """Pretty name of a rule (falls back to the name itself for variants)."""
    return RULE_LABELS.get(rule, rule)


def rule_color(rule: str) -> str:
    """The rule's colour in every figure (grey for unknown names)."""
    return RULE_COLORS.get(rule, "#444444")


def apply_style() -> None:
    """Set the report's matplotlib style. Call once at the top of every notebook."""
    plt.rcParams.update({
        "figure.figsize": (7.5, 4.5),
        "figure.dpi": 100,
        "savefig.dpi": 120,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "lines.linewidth": 1.6,
    })


def savefig(fig, name: str, img_dir: str | Path = "img") -> Path:
    """Save ``fig`` as ``img_dir/name.png`` (folder created if needed) and return the path."""
    path = Path(img_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def band(ax, x, mean, lo, hi, *, rule: str | None = None, label: str | None = None, **kw):
    """Plot a mean line with a shaded confidence band in the rule's colour."""
    color = kw.pop("color", rule_color(rule) if rule else None)
    (line,) = ax.plot(x, mean, color=color, label=label if label is not None else
                      (rule_label(rule) if rule else None), **kw)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    return line


# ----------------------------------------------------------------------------- sweep figures
# Added for notebooks 02 and 03 (per-epoch frames of sweep.load_results).

def curves(ax, df, metric: str, *, rules=None, by: str = "rule", level: float = 0.95,
           log: bool = False, label_fn=None, color_fn=None):
    """Mean ± CI band over seeds of ``metric`` against epoch, one line per ``by`` value.

    Runs that diverged contribute only their finite epochs (the band is over the seeds left).
    Returns the number of groups drawn.
    """
    groups = rules if rules is not None else [r for r in RULE_ORDER if r in set(df[by])] + \
        sorted(set(df[by]) - set(RULE_ORDER))
    drawn = 0
    for g in groups:
        sub = df[df[by] == g]
        if sub.empty:
            continue
        ci = accuracy_ci if "acc" in metric else loss_ci if "loss" in metric else mean_ci_in_range
        rows = [(e, *ci(s[metric], level)) for e, s in sub.groupby("epoch")]
        rows = [r for r in rows if np.isfinite(r[1])]
        if not rows:
            continue
        e, m, lo, hi = map(np.asarray, zip(*rows))
        lo, hi = np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m)
        if log:
            lo = np.maximum(lo, m * 0.5)     # a CI reaching <= 0 cannot be drawn on a log axis
        band(ax, e, m, lo, hi, label=(label_fn or rule_label)(g),
             color=(color_fn or rule_color)(g), marker="." if len(e) < 4 else None)
        drawn += 1
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    return drawn


def heatmap(ax, table, *, fmt: str = "{:.1f}", cmap: str = "viridis", notes=None,
            cbar_label: str = "", xlabel: str = "", ylabel: str = ""):
    """Annotated heat map of a 2-D DataFrame (rows × columns); ``notes`` (same shape, strings)
    are appended under each value (e.g. "2 div."). NaN cells are grey and say "n/a"."""
    v = table.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, aspect="auto")
    im.cmap.set_bad("#dddddd")
    ax.set_xticks(range(v.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(v.shape[0]), [rule_label(str(r)) for r in table.index])
    finite = v[np.isfinite(v)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            txt = "n/a" if not np.isfinite(v[i, j]) else fmt.format(v[i, j])
            if notes is not None and notes.iloc[i, j]:
                txt += f"\n{notes.iloc[i, j]}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v[i, j]) and v[i, j] < mid else "black")
    ax.grid(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(cbar_label)
    return im


def forest(ax, comp, *, y: str, label_fn=None, color_fn=None, xlabel: str = ""):
    """Mean differences with CI whiskers (rows of ``comp``: mean_diff, ci_lo, ci_hi), one row
    per entry, labelled by ``label_fn(row)``; a vertical line marks no difference."""
    comp = comp.reset_index(drop=True)
    for i, r in comp.iterrows():
        c = (color_fn or (lambda r: "#444444"))(r)
        lo = r["ci_lo"] if np.isfinite(r["ci_lo"]) else r["mean_diff"]
        hi = r["ci_hi"] if np.isfinite(r["ci_hi"]) else r["mean_diff"]
        ax.plot([lo, hi], [i, i], color=c, lw=2)
        ax.plot(r["mean_diff"], i, "o", color=c)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(comp)), [(label_fn or (lambda r: str(r[y])))(r)
                                      for _, r in comp.iterrows()])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)


# ----------------------------------------------------------------------------- cost figures (04)
def plot_time_split(ax, table: pd.DataFrame, total: str, step: str, *, err=None,
                    unit: str = "µs") -> None:
    """Horizontal bars per rule: ``total`` split into the optimizer step (dark, ``step``) and
    the rest (light); ``err`` = (lo column, hi column) for a CI on the total."""
    y = np.arange(len(table))[::-1]
    colors = [rule_color(r) for r in table["rule"]]
    rest = table[total] - table[step]
    ax.barh(y, table[step], color=colors, label="optimizer step")
    ax.barh(y, rest, left=table[step], color=colors, alpha=0.35, label="rest of training step")
    if err is not None:
        lo, hi = table[err[0]], table[err[1]]
        ax.errorbar(table[total], y, xerr=[table[total] - lo, hi - table[total]], fmt="none",
                    ecolor="black", capsize=3, lw=1)
    ax.set_yticks(y, [rule_label(r) for r in table["rule"]])
    ax.set_xlabel(unit)
    ax.legend(loc="lower right")


def plot_time_to_target(ax, tt: pd.DataFrame, target: float) -> None:
    """Median seconds to reach ``target`` per rule with bootstrap CI; rules with an infinite
    median (most runs never reach it) are marked with an x at the right edge and annotated
    with how many runs reached it. A rule without a bootstrap interval (too few runs: NaN bounds)
    gets a dotted line over its runs' range (``min_s`` to ``max_s``) instead."""
    t = tt[tt["target"] == target].reset_index(drop=True)
    y = np.arange(len(t))[::-1]
    right = [t["ci_hi_s"], t["median_s"]] + ([t["max_s"]] if "max_s" in t else [])
    vals = np.concatenate([np.asarray(c, float) for c in right])
    vals = vals[np.isfinite(vals)]
    edge = float(vals.max()) * 1.15 if vals.size else 1.0
    for yi, row in zip(y, t.itertuples()):
        c = rule_color(row.rule)
        if np.isfinite(row.median_s):
            if not np.isnan(row.ci_lo_s):
                hi = row.ci_hi_s if np.isfinite(row.ci_hi_s) else edge
                ax.plot([row.ci_lo_s, hi], [yi, yi], color=c, lw=2)
            elif "max_s" in t:
                hi = row.max_s if np.isfinite(row.max_s) else edge
                ax.plot([row.min_s, hi], [yi, yi], color=c, lw=1.2, ls=":")
            ax.plot(row.median_s, yi, "o", color=c)
        else:
            ax.plot(edge, yi, "x", color=c, ms=8)
        ax.annotate(f"{row.n_reached}/{row.n_runs}", (edge, yi), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, [rule_label(r) for r in t["rule"]])
    ax.set_xlabel("training seconds to target: median, 95% bootstrap CI\n"
                  "(dotted: range of the runs, too few to bootstrap)")
    ax.set_title(f"test accuracy ≥ {target:.0%}")


# ----------------------------------------------------------------------------- tuning figures (05)
# ----------------------------------------------------------------------------- notebook 02
# ----------------------------------------------------------------------------- notebook 03
def informative_band(values, *, pad: float = 0.01, floor: float = CHANCE + 0.05, top: float = 1.0):
    """A y-range for accuracies that shows the band where trained runs differ: from just below the
    lowest of ``values`` (means of trained runs) that is above ``floor`` to just above the highest."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v >= floor)]
    if v.size == 0:
        return floor, top
    return max(floor, float(v.min()) - pad), min(top, float(v.max()) + pad)


def _mean_curve(d: pd.DataFrame, metric: str):
    m = d.groupby("epoch")[metric].mean()
    return m.index.to_numpy(), m.to_numpy(dtype=float)


def lr_small_multiples_figure(df: pd.DataFrame, runs: pd.DataFrame, lr: float, rules, *, metric: str = "test_acc",
                              ylabel: str = "test accuracy", skip_epochs: int = 1):
    """One panel per rule at one ``lr``: that rule's mean ``metric`` over seeds with its 95% band (in
    its colour) over the other rules' means (grey). The y-range is the informative band of the
    trained rules (epochs after the first ``skip_epochs``); a rule whose runs did not all train
    says its outcome in the panel (a rule below the band is marked at its lower edge)."""
    d = df[np.isclose(df["lr"], lr)]
    r = runs[np.isclose(runs["lr"], lr)]
    outcome = {rule: outcome_summary(g["outcome"]) for rule, g in r.groupby("rule")}
    trained = [rule for rule in rules if outcome.get(rule) == TRAINED]
    late = d[(d["epoch"] > skip_epochs) & d["rule"].isin(trained)]
    lo, hi = informative_band(late.groupby(["rule", "epoch"])[metric].mean())
    n = len(rules)
    ncol = 4
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.6 * nrow), sharex=True, sharey=True, squeeze=False)
    means = {rule: _mean_curve(d[d["rule"] == rule], metric) for rule in rules if (d["rule"] == rule).any()}
    for ax, rule in zip(axes.flat, rules, strict=False):
        for other, (e, m) in means.items():
            if other != rule:
                ax.plot(e, m, color="#bbbbbb", lw=0.8, zorder=1)
        sub = d[d["rule"] == rule]
        ok = sub[sub["key"].isin(r.loc[(r["rule"] == rule) & (r["outcome"] == TRAINED), "key"])]
        if len(ok):
            curves(ax, ok, metric, rules=[rule])
        title = rule_label(rule)
        out = outcome.get(rule, "not run")
        if out != TRAINED:
            final = r.loc[r["rule"] == rule, "final_test_acc"]
            where = f"; final {100 * final.mean():.0f}%" if final.notna().any() else ""
            ax.text(0.5, 0.04, f"{out}{where}", transform=ax.transAxes, ha="center", va="bottom", fontsize=8,
                    color="#b30000", bbox=dict(facecolor="white", edgecolor="#b30000", lw=0.6, alpha=0.9))
        ax.set_title(title, color=rule_color(rule), fontsize=10)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{ylabel} (fraction)")
    for ax in axes[-1, :]:
        ax.set_xlabel("epoch")
    nseeds = int(r.groupby("rule")["seed"].nunique().max()) if len(r) else 0
    fig.suptitle(f"lr = {lr:g}: each rule's mean {ylabel} ± 95% CI over {nseeds} seeds (colour) "
                 f"against the other rules' means (grey)", fontsize=11)
    fig.tight_layout()
    return fig


def train_loss_by_rule_figure(df: pd.DataFrame, runs: pd.DataFrame, rules, lrs):
    """One panel per rule: its mean training loss (log scale) against epoch at each lr, one line per
    lr; runs that did not train contribute their finite epochs and the legend names their outcome."""
    n = len(rules)
    ncol = 4
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.6 * nrow), sharex=True, sharey=True, squeeze=False)
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(lrs)))
    for ax, rule in zip(axes.flat, rules, strict=False):
        for lr, c in zip(lrs, shades, strict=True):
            sub = df[(df["rule"] == rule) & np.isclose(df["lr"], lr)]
            m = sub.groupby("epoch")["train_loss"].mean()
            m = m[np.isfinite(m) & (m > 0)]
            out = outcome_summary(runs.loc[(runs["rule"] == rule) & np.isclose(runs["lr"], lr), "outcome"])
            label = f"lr {lr:g}" + ("" if out == TRAINED else f" ({out})")
            if len(m):
                ax.plot(m.index, m.to_numpy(), color=c, label=label, marker="." if len(m) < 4 else None)
            else:
                ax.plot([], [], color=c, label=label)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(rule_label(rule), color=rule_color(rule), fontsize=10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("training loss (cross-entropy)")
    for ax in axes[-1, :]:
        ax.set_xlabel("epoch")
    fig.suptitle("Mean training loss over seeds per rule and lr (log scale)", fontsize=11)
    fig.tight_layout()
    return fig


def accuracy_heatmap_figure(acc: pd.DataFrame, notes: pd.DataFrame, final_epoch: int, metric_label: str):
    """Mean test accuracy (%) per rule (rows) and lr (columns) (``acc``, ``notes`` from
    :func:`optreport.report.tables.accuracy_grid`). The colour scale spans the cells whose runs all
    trained, so differences among working cells show; a cell whose runs did not all train is
    hatched grey with its outcome (a partly trained cell also shows its trained runs' mean)."""
    v = acc.to_numpy(dtype=float)
    bad = notes.to_numpy() != ""
    work = v[~bad & np.isfinite(v)]
    vmin, vmax = (float(work.min()), float(work.max())) if work.size else (0.0, 100.0)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(np.ma.masked_where(bad | ~np.isfinite(v), v), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if bad[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#e6e6e6", edgecolor="#999999",
                                           hatch="///", lw=0.5))
                txt = notes.iloc[i, j] + (f"\n(trained: {v[i, j]:.1f})" if np.isfinite(v[i, j]) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize=7.5, color="#b30000")
            else:
                frac = (v[i, j] - vmin) / (vmax - vmin) if vmax > vmin else 1.0
                ax.text(j, i, f"{v[i, j]:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if frac < 0.55 else "black")
    ax.set_xticks(range(v.shape[1]), [f"{c:g}" for c in acc.columns])
    ax.set_yticks(range(v.shape[0]), [rule_label(str(r)) for r in acc.index])
    ax.grid(False)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("update rule")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(f"{metric_label} (%), cells where every run trained")
    ax.set_title(f"{metric_label} (%), mean over seeds ({final_epoch} epochs)\n"
                 "hatched: not every run trained (outcome named)", fontsize=11)
    return fig


VERDICT_COLORS = {"better": "#1a9850", "worse": "#d73027", "equivalent": "#4575b4", "inconclusive": "#7f7f7f"}


def _outcome_label(r) -> str:
    """'Momentum diverged (10/10)' for the side(s) of a comparison row that did not train."""
    bad = [s for s in ("a", "b") if isinstance(r.get(f"outcome_{s}"), str) and r[f"outcome_{s}"] not in (TRAINED, "")]
    parts = [f"{rule_label(str(r[s]).split(' (')[0])} {r[f'outcome_{s}']} ({int(r[f'n_out_{s}'])}/{int(r['n_seeds'])})"
             for s in bad]
    return "; ".join(parts) or str(r["verdict"])


def _forest_panels(table: pd.DataFrame, group: str | None, draw_row, *, label_fn, title: str, xlabel: str,
                   span: float, right: float, before=None):
    """The frame both forest figures share: one panel per ``group`` value (side by side, shared x),
    ``before(ax, rows)`` first (e.g. a shaded margin), the zero line, ``draw_row(ax, i, row)`` per row
    (top to bottom), the rows' labels, x from -1.25·span to ``right``·span, the panel titles."""
    groups = [(None, table)] if group is None else list(table.groupby(group, sort=False))
    n = max(len(g) for _, g in groups)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), 0.42 * n + 1.6), squeeze=False,
                             sharex=True)
    for ax, (name, g) in zip(axes[0], groups, strict=True):
        g = g.reset_index(drop=True)
        if before is not None:
            before(ax, g)
        ax.axvline(0, color="black", lw=0.8)
        for i, r in g.iterrows():
            draw_row(ax, i, r)
        ax.set_yticks(range(len(g)), [label_fn(r) for _, r in g.iterrows()])
        ax.set_ylim(len(g) - 0.5, -0.5)
        ax.set_xlim(-1.25 * span, right * span)
        ax.set_xlabel(xlabel)
        if name is not None:
            ax.set_title(str(name))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _boxed(ax, i, text: str) -> None:
    """A row that has no interval: its word written at 0 in a red box."""
    ax.text(0, i, text, ha="center", va="center", fontsize=8, color="#b30000",
            bbox=dict(facecolor="white", edgecolor="#b30000", lw=0.6))


def verdict_forest_figure(table: pd.DataFrame, *, label_fn, title: str, xlabel: str, group: str | None = None):
    """Paired differences of a comparison table (rows of :func:`optreport.analysis.compare.compare`):
    mean difference (pp) with the interval the verdict used, coloured by verdict, the ±margin band
    shaded; a pair decided by an outcome is written at 0 instead of a blank row. ``group`` (a
    column) splits the rows into panels side by side."""
    finite = table.loc[table["verdict"].isin(VERDICTS), ["ci_lo_pp", "ci_hi_pp", "diff_pp"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    span = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0

    def margin(ax, g):
        m = float(g["margin_pp"].iloc[0]) if len(g) else 0.5
        ax.axvspan(-m, m, color="#4575b4", alpha=0.10, lw=0)

    def draw(ax, i, r):
        v = r["verdict"]
        if v in VERDICTS and np.isfinite(r["diff_pp"]):
            c = VERDICT_COLORS[v]
            lo = r["ci_lo_pp"] if np.isfinite(r["ci_lo_pp"]) else r["diff_pp"]
            hi = r["ci_hi_pp"] if np.isfinite(r["ci_hi_pp"]) else r["diff_pp"]
            ax.plot([lo, hi], [i, i], color=c, lw=2.2)
            ax.plot(r["diff_pp"], i, "o", color=c)
            ax.text(hi + 0.03 * span, i, v, va="center", fontsize=8, color=c)
        else:
            _boxed(ax, i, _outcome_label(r))
    return _forest_panels(table, group, draw, label_fn=label_fn, title=title, xlabel=xlabel, span=span, right=1.45,
                          before=margin)


CHANGE_COLORS = {"gains": VERDICT_COLORS["better"], "loses": VERDICT_COLORS["worse"]}


def change_forest_figure(table: pd.DataFrame, value: str, *, label_fn, title: str, xlabel: str,
                         group: str | None = None):
    """A tested change of each rule's gap (rows of :func:`optreport.analysis.studies.size_trend` or
    :func:`~optreport.analysis.studies.length_change`): ``value`` (pp) with its Holm-level interval,
    coloured by verdict (gains / loses; grey: no change shown), the verdict written beside it; a row
    with too few seeds says so at 0. ``group`` (a column) splits the rows into panels side by side."""
    finite = table[["ci_lo_pp", "ci_hi_pp", value]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    span = max(0.5, float(np.abs(finite).max())) if finite.size else 1.0

    def draw(ax, i, r):
        if np.isfinite(r["ci_lo_pp"]) and np.isfinite(r[value]):
            c = CHANGE_COLORS.get(r["verdict"], VERDICT_COLORS["inconclusive"])
            ax.plot([r["ci_lo_pp"], r["ci_hi_pp"]], [i, i], color=c, lw=2.2)
            ax.plot(r[value], i, "o", color=c)
            ax.text(r["ci_hi_pp"] + 0.03 * span, i, r["verdict"], va="center", fontsize=8, color=c)
        else:
            _boxed(ax, i, r["verdict"])
    return _forest_panels(table, group, draw, label_fn=label_fn, title=title, xlabel=xlabel, span=span, right=1.6)


def gravity_step_size_figure(grav: dict):
    """Gravity's step size 1/k against the optimizer step, one line per lr (``grav``: {lr: probe
    record of ``effective_lr``}); dotted lines mark the nominal lrs."""
    fig, ax = plt.subplots(figsize=(7.5, 4.3))
    for lr, r in grav.items():
        line, = ax.plot(r["steps"], r["values"], label=f"lr = {lr:g}: 1/k")
        ax.axhline(lr, color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("Gravity's step size 1/k")
    ax.set_title("Gravity's effective learning rate (dotted: the nominal lr)")
    ax.legend()
    return fig


def cosine_cosines_figure(cosr: dict):
    """Per lr, histograms of Cosine's per-row cosines early, mid and late in training, and (last
    panel) the fraction of rows whose buffer flips (cos < 0) against the step (``cosr``: {lr:
    probe record of ``cos``})."""
    fig, axes = plt.subplots(1, len(cosr) + 1, figsize=(4.2 * (len(cosr) + 1), 3.8))
    bins = np.linspace(-1, 1, 41)
    for ax, (lr, r) in zip(axes, cosr.items()):
        vals, steps = r["values"][1:], r["steps"][1:]     # step 1: the buffer is empty, every cosine is 0
        n = len(vals)
        for name, idx, c in [("early", slice(0, max(1, n // 10)), "#9ecae1"),
                             ("mid", slice(n // 2 - max(1, n // 20), n // 2 + max(1, n // 20)), "#3182bd"),
                             ("late", slice(n - max(1, n // 10), n), "#08306b")]:
            ax.hist(vals[idx].ravel(), bins=bins, density=True, histtype="step", lw=1.6, color=c,
                    label=f"{name} (steps {steps[idx][0]}–{steps[idx][-1]})")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("cosine(buffer, gradient) per row")
        ax.set_ylabel("density")
        ax.set_title(f"lr = {lr:g}")
        ax.legend(fontsize=7)
    for lr, r in cosr.items():
        axes[-1].plot(r["steps"][1:], (r["values"][1:] < 0).mean(axis=1), label=f"lr = {lr:g}")
    axes[-1].set_xlabel("optimizer step")
    axes[-1].set_ylabel("fraction of rows with cos < 0")
    axes[-1].set_title("buffer flips")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 04
def step_time_figure(bench: pd.DataFrame, model: str, batch_size: int):
    """The live microbenchmark: µs per training step per rule, split into the optimizer step and
    forward+backward (``bench`` from :func:`optreport.report.tables.step_cost`)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    plot_time_split(ax, bench, "total_us", "step_us", unit="µs per training step (median round)")
    ax.set_title(f"{model}, batch {batch_size}: optimizer step vs forward+backward")
    return fig


def step_modes_figure(modes: pd.DataFrame):
    """Per rule: µs per optimizer step eager and compiled beside the time the algorithm's minimum
    memory traffic takes at the measured bandwidth (``modes`` from
    :func:`optreport.analysis.costs.step_modes_table`); a dot plot on a log scale (the rules span
    ~10x), a line from the floor to the slower implementation."""
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    y = np.arange(len(modes))
    ax.hlines(y, modes["floor_us"], modes[["eager_us", "compiled_us"]].max(axis=1), color="#d9d9d9", lw=2, zorder=1)
    marks = [("floor_us", "the algorithm's memory traffic at the measured bandwidth (floor)", "|", "#525252", 14),
             ("compiled_us", "compiled step (what training runs)", "o", "#2c7fb8", 7),
             ("eager_us", "eager step (the formula as written)", "s", "#f46d43", 6)]
    for col, label, marker, color, size in marks:
        ax.plot(modes[col], y, ls="none", marker=marker, color=color, ms=size, mew=2, label=label, zorder=2)
    ax.set_yticks(y, [rule_label(r) for r in modes["rule"]])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"µs per optimizer step (median round, {int(modes['threads'].iloc[0])} thread; log scale)")
    ax.set_title("One optimizer step: algorithm vs implementation")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def epoch_seconds_figure(epoch_cost: pd.DataFrame):
    """Training seconds per epoch per rule at its best lr, split into the optimizer step and
    the rest, with a 95% CI over runs (``epoch_cost`` from :func:`optreport.report.tables.epoch_cost`)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    plot_time_split(ax, epoch_cost, "train_s", "step_s", err=("train_s_lo", "train_s_hi"),
                    unit="seconds per training epoch (mean, 95% CI over runs)")
    ax.set_title("Training seconds per epoch at each rule's best lr (notebook 02's runs)")
    return fig


def accuracy_vs_time_figure(curves_: pd.DataFrame, rules):
    """Mean test accuracy (95% band) against cumulative training seconds, one line per rule
    (``curves_`` from :func:`optreport.analysis.costs.accuracy_vs_time`)."""
    fig, ax = plt.subplots()
    for r in rules:
        c = curves_[curves_["rule"] == r]
        band(ax, c["seconds"], c["mean"], c["ci_lo"], c["ci_hi"], rule=r, marker=".")
    ax.set_xlabel("cumulative training time (s, excluding evaluation)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy against training time, best lr per rule")
    ax.legend(ncol=2, fontsize=8)
    return fig


def time_to_target_figure(ttt: pd.DataFrame, targets):
    """One panel per target accuracy: median training seconds to reach it per rule, with a
    bootstrap CI (``ttt`` from :func:`optreport.analysis.costs.time_to_target`)."""
    fig, axes = plt.subplots(1, len(targets), figsize=(11, 4.8), sharey=True)
    for ax, target in zip(np.atleast_1d(axes), targets):
        plot_time_to_target(ax, ttt, target)
    return fig


def seed004_figure(curves_004: pd.DataFrame, lrs, model: str):
    """Seed 004's experiment: test accuracy against training seconds for SGD and Adam at each lr
    (solid: the largest lr, dashed: the others)."""
    fig, ax = plt.subplots()
    for (r, lr), c in curves_004.groupby(["rule", "lr"], sort=False):
        band(ax, c["seconds"], c["mean"], c["ci_lo"], c["ci_hi"], rule=r,
             label=f"{rule_label(r)}, lr {lr:g}", ls="-" if lr == max(lrs) else "--")
    ax.set_xlabel("cumulative training time (s, excluding evaluation)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Seed 004 on Fashion-MNIST: {model}, SGD vs Adam")
    ax.legend()
    return fig


# ----------------------------------------------------------------------------- notebook 01
def state_memory_figure(mem: pd.DataFrame):
    """Bars of optimizer-state bytes per parameter, one per rule (``mem``: rule, bytes_per_param)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar([rule_label(r) for r in mem.rule], mem.bytes_per_param, color=[rule_color(r) for r in mem.rule])
    for i, v in enumerate(mem.bytes_per_param):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("optimizer state (bytes per parameter)")
    ax.set_title("Optimizer-state memory on the quickstart MLP (float32)")
    ax.tick_params(axis="x", rotation=45)
    return fig


def surface_trajectories_figure(surface, trajs: dict, best: pd.DataFrame, rules, lrs, steps: int):
    """Small multiples on ``surface``: one panel per rule with its runs at each lr of ``lrs``
    (thin, one line style per lr) and at its own best lr (thick, solid), in the rule's colour,
    over the other rules' best-lr runs in faint grey; contours labelled with f, the start (●),
    the minimum (★), each end (●, × if diverged). The last panel is the key. All panels share
    one window, fitted to the runs that did not diverge (0.5 % of their points at either end of
    x and of y may fall outside, so one far excursion does not shrink every path). ``trajs[(rule, lr)]``: trajectories;
    ``best``: one row per rule with its ``lr`` (:func:`optreport.analysis.surfaces.best_of`)."""
    b = best.set_index("rule")
    best_lr = {r: float(b.loc[r, "lr"]) for r in rules}
    best_runs = {r: trajs[(r, best_lr[r])] for r in rules}
    shown = [trajs[(r, lr)] for r in rules for lr in lrs] + list(best_runs.values())
    ncols = 4
    nrows = -(-(len(rules) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.5 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    lr_styles = _lr_line_styles(lrs)
    for ax, r in zip(axes.flat, rules):
        runs = {f"lr {lr:g}": trajs[(r, lr)] for lr in lrs}
        key = f"best lr {best_lr[r]:g}"
        runs[key] = best_runs[r]
        styles = {f"lr {lr:g}": {"ls": ls, "lw": 1.1, "alpha": 0.9} for lr, ls in zip(lrs, lr_styles)}
        styles[key] = {"ls": "-", "lw": 2.4, "alpha": 1.0}
        plot_trajectories(ax, surface, runs, colors={k: rule_color(r) for k in runs}, styles=styles,
                          window=shown, window_quantile=0.005, legend=False, levels=16, label_contours=3,
                          marker_size=0.7, background={o: best_runs[o] for o in rules if o != r})
        ax.set_title(f"{rule_label(r)} · best lr {best_lr[r]:g}", fontsize=10, color=rule_color(r))
        ax.tick_params(labelsize=8)
    _trajectory_key(axes.flat[len(rules)], lrs, lr_styles)
    for ax in list(axes.flat)[len(rules) + 1:]:
        ax.axis("off")
    for ax in axes.flat:                       # x labels on the lowest drawn panel of each column
        ax.set_xlabel("")
        ax.set_ylabel("")
    for col in range(ncols):
        drawn = [axes[i, col] for i in range(nrows) if i * ncols + col < len(rules)]
        if drawn:
            drawn[-1].set_xlabel("x")
            drawn[-1].xaxis.set_tick_params(labelbottom=True)
    for row in range(nrows):
        axes[row, 0].set_ylabel("y")
    mx, my = surface.minimum
    fig.suptitle(f"{surface.title}: ${surface.formula}$\n{steps} steps from ({surface.start[0]:g}, "
                 f"{surface.start[1]:g}); minimum ★ at ({mx:.3g}, {my:.3g}), f = {surface.f_min:.4g}", fontsize=12)
    fig.tight_layout()
    return fig


def adam_tracks_momentum_figure(gaps: dict):
    """Relative gap between Adam's and Momentum(0.9)'s updates against the step, one small panel
    per Adam ε (``gaps``: {eps: gap per step}): that ε's curve in colour over the other ε's in
    faint grey, with the bias-correction term β1^t/(1-β1^t) dashed on top, so no curve hides
    under another (ε = 1e-8 and 1e-2 stay near 1; ε ≥ 1e4 follow the bias term)."""
    eps_list = list(gaps)
    ncols = min(3, len(eps_list))
    nrows = -(-len(eps_list) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.2 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    colors = _eps_colors(len(eps_list))
    t = np.arange(1, max(len(g) for g in gaps.values()) + 1)
    bias = 0.9**t / (1 - 0.9**t)
    for ax, eps, c in zip(axes.flat, eps_list, colors):
        for other in eps_list:
            if other != eps:
                ax.plot(np.arange(1, len(gaps[other]) + 1), gaps[other], color="0.8", lw=0.9)
        gap = np.asarray(gaps[eps])
        ax.plot(np.arange(1, len(gap) + 1), gap, color=c, lw=2.4)
        ax.plot(t, bias, "k--", lw=1, zorder=4)
        ax.set_yscale("log")
        ax.set_title(f"eps = {eps:g}: gap {gap[-1]:.2g} at step {len(gap)}", fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(eps_list):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    for ax in axes[:, 0]:
        ax.set_ylabel("relative gap of the updates")
    handles = [plt.Line2D([], [], color=c, lw=2.4, label=f"eps = {eps:g}") for eps, c in zip(eps_list, colors)]
    handles += [plt.Line2D([], [], color="0.8", lw=0.9, label="the other eps values"),
                plt.Line2D([], [], color="k", ls="--", lw=1, label=r"bias term $\beta_1^t/(1-\beta_1^t)$")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Adam with lr = 0.1·eps/(1−β1) against Momentum(lr 0.1, 0.9), one panel per eps")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


SEED003_COLORS = ["#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#1f77b4"]


def seed003_adam_figure(surface, runs: dict, wrong_zero, f_min: float, lr: float, steps: int):
    """Seed 003's Adam variants (``runs``: {name: trajectory}; the first two drawn bold) on its
    surface (contours labelled with f, start ●, minimum ★), with the zero of the blog's wrong
    gradient, and f − f_min against the step. A run that coincides with an earlier one (within
    1e-3 of the window) is drawn dotted on top and labelled so."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    pts = np.concatenate([np.asarray(t, dtype=float) for t in runs.values()])
    pts = pts[np.all(np.isfinite(pts) & (np.abs(pts) <= 50.0), axis=1)]
    scale = float(np.ptp(pts, axis=0).max())
    names = list(runs)
    labels, styles = {}, {}
    for i, k in enumerate(names):
        same = [j for j in names[:i] if np.nanmax(np.abs(np.asarray(runs[k]) - np.asarray(runs[j]))) < 1e-3 * scale]
        labels[k] = f"{k} (on top of {same[0]})" if same else k
        styles[k] = ({"ls": ":", "lw": 2.6} if same else {"lw": 2.6} if i < 2 else {"ls": "--", "lw": 1.3})
    colors = {labels[k]: c for k, c in zip(names, SEED003_COLORS)}
    plot_trajectories(axes[0], surface, {labels[k]: runs[k] for k in names}, colors=colors,
                      styles={labels[k]: styles[k] for k in names}, label_contours=3,
                      title=f"Seed 003: Adam, lr={lr:g}, {steps} steps", marker_every=10)
    axes[0].plot(*wrong_zero, "P", color="#d62728", ms=9, mec="black", zorder=8, label="zero of the wrong gradient")
    axes[0].legend(fontsize=7, loc="best")
    for k in names:
        t = runs[k]
        axes[1].plot(np.arange(len(t)), [surface.value(p) - f_min for p in t], color=colors[labels[k]],
                     label=labels[k], **styles[k])
    axes[1].axhline(surface.value(wrong_zero) - f_min, color="#d62728", lw=0.8, ls="-.",
                    label="f − f_min at the wrong gradient's zero")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("f − f_min")
    axes[1].set_title("Distance to the minimum value")
    axes[1].legend(fontsize=7)
    return fig


# ----------------------------------------------------------------------------- notebook 06
def long_training_figure(df: pd.DataFrame, rules, schedules, *, skip_epochs: int = 2):
    """One panel per rule: mean test accuracy over seeds against epoch per schedule (solid first,
    dashed second) with its 95% band, and the mean training accuracy (thin) in the same style; the
    y-range is the informative band of the test curves after ``skip_epochs`` epochs."""
    styles = ["-", "--", ":"]
    late = df[df["epoch"] > skip_epochs]
    lo, hi = informative_band(late.groupby(["rule", "schedule", "epoch"])["test_acc"].mean())
    hi = min(1.0, max(hi, float(late.groupby(["rule", "schedule", "epoch"])["train_acc"].mean().max()) + 0.005)) \
        if len(late) else hi
    fig, axes = plt.subplots(1, len(rules), figsize=(3.4 * len(rules), 3.6), sharey=True, squeeze=False)
    for ax, rule in zip(axes[0], rules, strict=True):
        for sch, ls in zip(schedules, styles, strict=False):
            sub = df[(df["rule"] == rule) & (df["schedule"] == sch)]
            if sub.empty:
                continue
            rows = [(e, *accuracy_ci(s["test_acc"])) for e, s in sub.groupby("epoch")]
            e, m, blo, bhi = map(np.asarray, zip(*rows, strict=True))
            blo, bhi = np.where(np.isfinite(blo), blo, m), np.where(np.isfinite(bhi), bhi, m)
            band(ax, e, m, blo, bhi, rule=rule, label=f"test, {sch}", ls=ls)
            tr = sub.groupby("epoch")["train_acc"].mean()
            ax.plot(tr.index, tr.to_numpy(), color=rule_color(rule), ls=ls, lw=0.8, alpha=0.7,
                    label=f"training, {sch}")
        ax.set_title(rule_label(rule), color=rule_color(rule))
        ax.set_xlabel("epoch")
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_ylabel("accuracy (fraction)")
    nseeds = int(df.groupby(["rule", "schedule"])["seed"].nunique().min()) if len(df) else 0
    fig.suptitle(f"Test accuracy (mean ± 95% CI over {nseeds} seeds) and training accuracy (thin), "
                 "constant lr (solid) and cosine decay (dashed)", fontsize=11)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 01 helpers
def _lr_line_styles(lrs) -> list:
    """One line style per lr of a small-multiples trajectory figure (solid is kept for the best lr)."""
    styles = [":", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
    return [styles[i % len(styles)] for i in range(len(lrs))]


def _trajectory_key(ax, lrs, lr_styles) -> None:
    """The key panel of :func:`surface_trajectories_figure` (axes switched off)."""
    c = "#444444"
    handles = [plt.Line2D([], [], color=c, ls=ls, lw=1.1, label=f"lr = {lr:g}") for lr, ls in zip(lrs, lr_styles)]
    handles += [plt.Line2D([], [], color=c, lw=2.4, label="the rule's own best lr"),
                plt.Line2D([], [], color="0.78", lw=0.8, alpha=0.6, label="other rules at their best lr"),
                plt.Line2D([], [], color="black", marker="o", ls="", ms=4, label="start"),
                plt.Line2D([], [], color="gold", mec="black", marker="*", ls="", ms=9, label="minimum"),
                plt.Line2D([], [], color=c, marker="o", ls="", ms=3, label="end of a run"),
                plt.Line2D([], [], color=c, marker="x", ls="", ms=5, mew=2, label="diverged (listed in red)"),
                plt.Line2D([], [], color="0.6", lw=0.6, label="contour of f (labelled)")]
    ax.legend(handles=handles, loc="center", fontsize=8, frameon=False, title="key (colour = rule)",
              title_fontsize=9)
    ax.axis("off")


def _eps_colors(n: int) -> list:
    """Distinct colours for the ε values of :func:`adam_tracks_momentum_figure`."""
    return [plt.cm.viridis(x) for x in np.linspace(0.0, 0.85, n)]


# ----------------------------------------------------------------------------- notebook 07
def data_size_figure(runs: pd.DataFrame, vs_sgd: pd.DataFrame, rules, metric: str):
    """Left: each rule's mean test accuracy (``metric`` of run_outcomes; mean ± 95% CI over the runs
    that trained) against the training-set size (log scale). Right: each rule's difference to SGD
    (pp) with the interval its verdict used, coloured by verdict, against the size; a pair decided by
    an outcome is written at 0. ``runs`` has ``n_train_value``; ``vs_sgd`` has ``n_train_value`` and
    the arm labels ``"rule (…)"``."""
    col = METRICS[metric]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.6))
    sizes = sorted(runs["n_train_value"].unique())
    for rule in rules:
        sub = runs[(runs["rule"] == rule) & (runs["outcome"] == TRAINED)]
        pts = [(n, *accuracy_ci(g[col])) for n, g in sub.groupby("n_train_value")]
        if pts:
            n, m, lo, hi = map(np.asarray, zip(*pts, strict=True))
            ax.errorbar(n, m, yerr=[m - np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m) - m],
                        color=rule_color(rule), label=rule_label(rule), marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{int(s):,}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (fraction)")
    ax.set_title("Test accuracy at an equal step budget")
    ax.legend()
    others = [r for r in rules if r != "sgd"]
    width = 0.06
    for k, rule in enumerate(others):
        off = (k - (len(others) - 1) / 2) * width
        sub = vs_sgd[vs_sgd["a"].str.startswith(f"{rule} (")]
        for _, r in sub.iterrows():
            x = r["n_train_value"] * 10 ** off
            if r["verdict"] in VERDICTS and np.isfinite(r["diff_pp"]):
                c = VERDICT_COLORS[r["verdict"]]
                lo = r["ci_lo_pp"] if np.isfinite(r["ci_lo_pp"]) else r["diff_pp"]
                hi = r["ci_hi_pp"] if np.isfinite(r["ci_hi_pp"]) else r["diff_pp"]
                bx.plot([x, x], [lo, hi], color=c, lw=2)
                bx.plot(x, r["diff_pp"], marker="o", color=rule_color(rule), mec=c, ms=7)
            else:
                bx.text(x, 0, "×", color="#b30000", ha="center", va="center")
        bx.plot([], [], "o", color=rule_color(rule), label=rule_label(rule))
    for v, c in VERDICT_COLORS.items():
        bx.plot([], [], color=c, lw=2, label=v)
    margin = float(vs_sgd["margin_pp"].iloc[0]) if len(vs_sgd) else 0.5
    bx.axhspan(-margin, margin, color="#4575b4", alpha=0.1, lw=0)
    bx.axhline(0, color="black", lw=0.8)
    bx.set_xscale("log")
    bx.set_xticks(sizes, [f"{int(s):,}" for s in sizes])
    bx.minorticks_off()
    bx.set_xlabel("training images (log scale)")
    bx.set_ylabel("rule − SGD (pp of test accuracy)")
    bx.set_title("Difference to SGD on the same data (interval the verdict used)")
    bx.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 05 at a budget that can decide
PROTOCOL_STYLES = {"a": ("#7f7f7f", ":"), "b": ("#1f77b4", "--"), "c": ("#d62728", "-")}


def best_so_far_figure(bsf: pd.DataFrame, rules, protocols=None, *,
                       ylabel: str = "test error of the selected trial", ncols: int = 4):
    """Choi et al.'s convergence-of-tuning figure as small multiples, one panel per rule: per
    protocol (one colour and line style each), the expected test error (100 - accuracy, %) of the
    trial chosen by validation among k trials (``tuning.best_so_far``: ``protocol, rule, k, expected,
    lo, hi`` as accuracies) against k, with its bootstrap band. The shared y axis is logarithmic, so
    the plateau where the protocols end (errors of 10-15%) is as readable as the first trials
    (errors up to 60%); it spans the informative band of the curves (from the highest expected error
    below chance - 5 pp to the lowest band edge); what lies above is cut at the edge."""
    protocols = list(protocols or dict.fromkeys(bsf["protocol"]))
    rules = [r for r in rules if (bsf["rule"] == r).any()] or list(rules)
    ncols = min(ncols, len(rules))
    nrows = -(-len(rules) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.9 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    lo_edge, hi_edge = informative_band(np.r_[bsf["expected"].to_numpy(float), bsf["hi"].to_numpy(float)],
                                        pad=0.005)
    err_lo, err_hi = 100 * (1 - hi_edge), 100 * (1 - lo_edge)

    def err(v):
        return 100 * (1 - v.to_numpy(float))
    for ax, rule in zip(axes.flat, rules):
        for p in protocols:
            c = bsf[(bsf["protocol"] == p) & (bsf["rule"] == rule)].sort_values("k")
            if c.empty:
                continue
            color, ls = PROTOCOL_STYLES.get(p, (None, "-"))
            band(ax, c["k"].to_numpy(), err(c["expected"]), err(c["hi"]), err(c["lo"]), color=color, ls=ls,
                 label=f"{p}: {PROTOCOLS.get(p, p)}")
        ax.set_title(rule_label(rule), color=rule_color(rule), fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _log_percent_axis(axes.flat[0], max(err_lo, 0.1), err_hi)
    for ax in axes.flat[len(rules):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("number of trials k")
    for row in axes:
        row[0].set_ylabel("test error (%, log scale)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(protocols), fontsize=8, frameon=False)
    fig.suptitle(f"{ylabel.capitalize()} among k of the K trials (expected value, 95% bootstrap band; "
                 "lower is better)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


_PERCENT_TICKS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 25, 30, 40, 50, 60, 70, 80, 90)


def _log_percent_axis(ax, lo: float, hi: float, most: int = 8) -> None:
    """A log-scale y axis from ``lo`` to ``hi`` (percent) with plain-number ticks (at most ``most``
    of :data:`_PERCENT_TICKS` inside the range; on shared axes every panel gets them)."""
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ticks = [t for t in _PERCENT_TICKS if lo <= t <= hi]
    while len(ticks) > most:
        ticks = ticks[::2] if len(ticks) % 2 else ticks[::2] + [ticks[-1]]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def rerun_ranking_figure(ranking: pd.DataFrame, rules, protocols=None, *, pad: float = 0.15):
    """Mean rerun test accuracy (validation-selected) of each rule's selected configuration, with its
    95% t interval in [0, 1] (``tuning.rerun_ranking``: ``protocol, rule, outcome, mean, ci_lo,
    ci_hi``), protocols side by side around each rule. The y axis is the informative band: from the
    lowest mean among entries whose reruns all trained to the highest interval end, padded by ``pad``
    of the span; an interval reaching below ends in ▼ at the edge with its bound written there, and an
    entry whose reruns did not all train is a hollow marker on the edge, labelled with its outcome."""
    protocols = list(protocols or dict.fromkeys(ranking["protocol"]))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.0 * len(rules) + 2), 4.6))
    ok = ranking[ranking["outcome"] == TRAINED]
    if ok.empty:
        lo_edge, hi_edge = 0.0, 1.0
    else:
        low = float(ok["mean"].min())
        high = float(np.nanmax(ok[["mean", "ci_hi"]].to_numpy(float)))
        span = max(high - low, 0.01)
        lo_edge, hi_edge = max(0.0, low - pad * span), min(1.0, high + pad * span)
    markers = ["o", "s", "^", "D"]
    n = len(protocols)
    for i, p in enumerate(protocols):
        s = ranking[ranking["protocol"] == p].set_index("rule").reindex(list(rules))
        x = np.arange(len(rules)) + (i - (n - 1) / 2) * 0.25
        med, lo, hi = (s[c].to_numpy(float) for c in ("mean", "ci_lo", "ci_hi"))
        lo = np.where(np.isfinite(lo), lo, med)
        hi = np.where(np.isfinite(hi), hi, med)
        good = (s["outcome"] == TRAINED).to_numpy() & np.isfinite(med) & (med >= lo_edge)
        lo_cut = np.maximum(lo, lo_edge)
        cont = ax.errorbar(x[good], med[good], yerr=[med[good] - lo_cut[good], hi[good] - med[good]],
                           fmt=markers[i % len(markers)], capsize=3, label=f"{p}: {PROTOCOLS.get(p, p)}",
                           color=PROTOCOL_STYLES.get(p, (None,))[0])     # as in best_so_far_figure
        color = cont[0].get_color()
        for xi, g, lo_i, out in zip(x, good, lo, s["outcome"].fillna("not run")):
            if not g:
                ax.plot(xi, lo_edge, markers[i % len(markers)], mfc="none", color=color, clip_on=False)
                ax.annotate(str(out), (xi, lo_edge), xytext=(2, 6), textcoords="offset points", rotation=90,
                            ha="left", va="bottom", fontsize=7, color=color)
            elif lo_i < lo_edge:
                ax.plot(xi, lo_edge, "v", color=color, ms=4, clip_on=False)
                ax.annotate(f"{lo_i:.3f}", (xi, lo_edge), xytext=(2, 5), textcoords="offset points", rotation=90,
                            ha="left", va="bottom", fontsize=7, color=color)
    ax.set_ylim(lo_edge, hi_edge)
    ax.set_xticks(np.arange(len(rules)), [rule_label(r) for r in rules], rotation=35, ha="right")
    ax.set_ylabel("rerun test accuracy (val-selected epoch)\nmean over seeds, 95% CI (▼: continues below)")
    ax.legend(fontsize=8, loc="upper center", ncol=min(n, 3), bbox_to_anchor=(0.5, -0.28))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 08
PUBLISHED_BAND = "#b8a27a"    # the published min–max band (no rule's colour)


def published_comparison_figure(table: pd.DataFrame, published: pd.DataFrame, rules, *, epochs: int | None = None,
                                 skip_epochs: int = 0):
    """One small panel per rule: our per-epoch test accuracy (mean over seeds, min–max band, in the
    rule's colour) over epochs 1..``epochs`` beside the published mean (black) with its min–max
    band (grey) over the same epochs, and the published curve on to its last epoch (100) faint.
    The x axis is logarithmic (epochs 1..100), so the compared epochs take most of the width.
    ``table``: :func:`optreport.report.tables.published_comparison`; ``published``:
    :func:`optreport.analysis.published.load_published`. The shared y-range is the informative
    band of the curves after ``skip_epochs`` epochs."""
    epochs = int(table["epoch"].max()) if epochs is None and len(table) else (epochs or 1)
    pub = published[published["epoch"] >= 1]
    last_pub = int(pub["epoch"].max()) if len(pub) else epochs
    near = pd.concat([table.loc[table["epoch"] > skip_epochs, "test_acc"],
                      pub.loc[(pub["epoch"] > skip_epochs) & pub["rule"].isin(list(rules)), "published_test_acc"]])
    lo, hi = informative_band(near, pad=0.015)
    fig, axes = plt.subplots(1, len(rules), figsize=(3.0 * len(rules), 3.4), sharey=True, squeeze=False)
    for ax, rule in zip(axes[0], rules, strict=True):
        p = pub[pub["rule"] == rule].sort_values("epoch")
        if len(p):
            inside, after = p[p["epoch"] <= epochs], p[p["epoch"] >= epochs]
            ax.plot(after["epoch"], after["published_test_acc"], color="black", lw=0.8, alpha=0.35)
            ax.fill_between(after["epoch"], after["published_min"], after["published_max"], color=PUBLISHED_BAND,
                            alpha=0.15, linewidth=0)
            n_pub = int(p["n_seeds"].min())
            band(ax, inside["epoch"], inside["published_test_acc"], inside["published_min"], inside["published_max"],
                 color="black", label=f"published (n={n_pub})", lw=1.2, ls="--")
            ax.collections[-1].set_color(PUBLISHED_BAND)
            ax.collections[-1].set_alpha(0.35)
        else:
            ax.text(0.03, 0.97, "no published result", transform=ax.transAxes, ha="left", va="top",
                    fontsize=8, color="0.4")
        o = table[table["rule"] == rule].sort_values("epoch")
        if len(o):
            n_ours = int(o["n_seeds"].min())
            band(ax, o["epoch"], o["test_acc"], o["test_acc_min"], o["test_acc_max"], rule=rule,
                 label=f"ours (n={n_ours})", marker="o", ms=2.5)
        ax.axvline(epochs, color="0.5", lw=0.7, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(1, max(last_pub, epochs))
        ax.set_xticks([t for t in (1, 2, 5, 10, 20, 50, 100) if t <= max(last_pub, epochs)])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(rule_label(rule), color=rule_color(rule))
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylim(lo, hi)
        ax.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_ylabel("test accuracy (fraction)")
    fig.suptitle(f"fmnist_2c2d: our test accuracy (mean, min–max over seeds) vs the published one-shot runs "
                 f"(mean, min–max); epochs 1–{epochs} compared, published to {last_pub} faint", fontsize=10)
    fig.tight_layout()
    return fig
