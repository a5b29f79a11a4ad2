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
from matplotlib.ticker import MaxNLocator  # noqa: E402

from optreport.analysis.stats import mean_ci  # noqa: E402
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
        rows = [(e, *mean_ci(s[metric], level)) for e, s in sub.groupby("epoch")]
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
    with how many runs reached it."""
    t = tt[tt["target"] == target].reset_index(drop=True)
    y = np.arange(len(t))[::-1]
    finite = np.isfinite(t["median_s"])
    edge = float(np.nanmax(np.where(np.isfinite(t["ci_hi_s"]), t["ci_hi_s"],
                                    np.where(finite, t["median_s"], np.nan)))) if finite.any() else 1.0
    edge = edge * 1.15 if np.isfinite(edge) else 1.0
    for yi, row in zip(y, t.itertuples()):
        c = rule_color(row.rule)
        if np.isfinite(row.median_s):
            hi = row.ci_hi_s if np.isfinite(row.ci_hi_s) else edge
            ax.plot([row.ci_lo_s, hi], [yi, yi], color=c, lw=2)
            ax.plot(row.median_s, yi, "o", color=c)
        else:
            ax.plot(edge, yi, "x", color=c, ms=8)
        ax.annotate(f"{row.n_reached}/{row.n_runs}", (edge, yi), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, [rule_label(r) for r in t["rule"]])
    ax.set_xlabel("training seconds to reach target (median, 95% bootstrap CI)")
    ax.set_title(f"test accuracy ≥ {target:.0%}")


# ----------------------------------------------------------------------------- tuning figures (05)
def plot_protocol_scores(ax, summaries: dict[str, pd.DataFrame], rules, by: str = "rule") -> None:
    """Median test score of the selected trial per rule (x) and protocol (marker), with its
    bootstrap CI; protocols side by side around each rule."""
    markers = ["o", "s", "^", "D"]
    n = len(summaries)
    for i, (p, s) in enumerate(summaries.items()):
        s = s.set_index(by).reindex(list(rules))
        x = np.arange(len(rules)) + (i - (n - 1) / 2) * 0.25
        ax.errorbar(x, s["median"], yerr=[s["median"] - s["ci_lo"], s["ci_hi"] - s["median"]],
                    fmt=markers[i % len(markers)], capsize=3, label=f"{p}: {PROTOCOLS.get(p, p)}")
    ax.set_xticks(np.arange(len(rules)), [rule_label(r) for r in rules], rotation=35, ha="right")
    ax.set_ylabel("test accuracy of the selected trial")
    ax.legend(fontsize=8)


# ----------------------------------------------------------------------------- notebook 02
def lr_curves_figure(df: pd.DataFrame, lr: float, rules, n_seeds: int):
    """Training and test loss (log scale) and accuracy against epoch at one ``lr``, one line per
    rule: mean ± 95% CI over seeds (seed 000's Figures 1-3 for every rule)."""
    d = df[df.lr == lr]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for ax, (metric, title, log) in zip(axes.flat, [
            ("train_loss", "training loss", True), ("test_loss", "test loss", True),
            ("train_acc", "training accuracy", False), ("test_acc", "test accuracy", False)]):
        curves(ax, d, metric, rules=rules, log=log)
        ax.set_ylabel(title + (" (cross-entropy)" if "loss" in metric else " (fraction)"))
        ax.set_title(title)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"lr = {lr:g}: mean ± 95% CI over {n_seeds} seeds")
    fig.tight_layout()
    return fig


def accuracy_heatmap_figure(acc: pd.DataFrame, notes: pd.DataFrame, final_epoch: int):
    """Final test accuracy (%) per rule (rows) and lr (columns), diverged runs noted in each
    cell (``acc``, ``notes`` from :func:`optreport.report.tables.accuracy_grid`)."""
    fig, ax = plt.subplots(figsize=(6.5, 6))
    heatmap(ax, acc, fmt="{:.1f}", notes=notes, cbar_label="final test accuracy (%)",
            xlabel="learning rate", ylabel="update rule")
    ax.set_title(f"Final test accuracy (%), mean over non-diverged seeds, epoch {final_epoch}")
    return fig


# ----------------------------------------------------------------------------- notebook 03
def vs_momentum_figure(comp: pd.DataFrame, n_seeds: int):
    """Paired differences to Momentum (rows of :func:`optreport.report.tables.vs_momentum`):
    final test accuracy (pp) on the left, final training loss on the right, mean and 95% CI."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, (metric, label, scale) in zip(axes, [("test_acc", "final test accuracy, rule − Momentum (pp)", 100),
                                                 ("train_loss", "final training loss, rule − Momentum", 1)]):
        c = comp[comp.metric == metric].copy()
        c[["mean_diff", "ci_lo", "ci_hi"]] *= scale
        forest(ax, c, y="rule", xlabel=label, color_fn=lambda r: rule_color(r["rule"]),
               label_fn=lambda r: f"{rule_label(r['rule'])}, lr {r['lr']:g}")
    axes[0].set_title("test accuracy (higher is better)")
    axes[1].set_title("training loss (lower is better)")
    fig.suptitle(f"Paired differences over seeds, mean and 95% CI ({n_seeds} seeds)")
    fig.tight_layout()
    return fig


def ablations_figure(abl_comp: pd.DataFrame):
    """Final test accuracy of each ablation minus its rule's default (pp), mean and 95% CI
    (rows of :func:`optreport.report.tables.ablations`)."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(abl_comp) + 1.5))
    c = abl_comp.copy()
    c[["mean_diff", "ci_lo", "ci_hi"]] *= 100
    forest(ax, c, y="variant", xlabel="final test accuracy, variant − default (pp)",
           color_fn=lambda r: rule_color(r["variant"].split(":")[0]),
           label_fn=lambda r: f"{r['variant']}, lr {r['lr']:g}")
    ax.set_title("Ablations: paired differences to the default rule, mean and 95% CI")
    return fig


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
    """One panel per lr in ``lrs`` and a last one with each rule at its best lr: every rule's
    trajectory on ``surface`` (``trajs[(rule, lr)]``; ``best``: one row per rule with its ``lr``,
    from :func:`optreport.analysis.surfaces.best_of`)."""
    b = best.set_index("rule")
    panels = [(f"lr = {lr:g}", {rule_label(r): trajs[(r, lr)] for r in rules}) for lr in lrs]
    panels.append(("each rule at its best lr", {rule_label(r): trajs[(r, b.loc[r, "lr"])] for r in rules}))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.6))
    colors = {rule_label(r): rule_color(r) for r in rules}
    for ax, (title, tr) in zip(axes, panels):
        plot_trajectories(ax, surface, tr, colors=colors, title=title, legend=False)
    handles = [plt.Line2D([], [], color=rule_color(r), label=f"{rule_label(r)} (best lr {b.loc[r, 'lr']:g})")
               for r in rules]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"{surface.title}: ${surface.formula}$, {steps} steps from {surface.start}")
    fig.tight_layout()
    return fig


def adam_tracks_momentum_figure(gaps: dict):
    """Relative gap between Adam's and Momentum(0.9)'s updates against the step, one line per
    Adam ε (``gaps``: {eps: gap per step}), with the bias-correction term β1^t/(1-β1^t)."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for eps, gap in gaps.items():
        ax.plot(np.arange(1, len(gap) + 1), gap, label=f"eps = {eps:g}")
    t = np.arange(1, max(len(g) for g in gaps.values()) + 1)
    ax.plot(t, 0.9**t / (1 - 0.9**t), "k--", lw=1, label=r"bias term $\beta_1^t/(1-\beta_1^t)$")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("relative gap of the updates")
    ax.set_title("Adam with lr = 0.1·eps/(1−β1) against Momentum(lr 0.1, 0.9)")
    ax.legend(fontsize=8)
    return fig


SEED003_COLORS = ["#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#1f77b4"]


def seed003_adam_figure(surface, runs: dict, wrong_zero, f_min: float, lr: float, steps: int):
    """Seed 003's Adam variants (``runs``: {name: trajectory}; the first two drawn bold) on its
    surface, with the zero of the blog's wrong gradient, and f − f_min against the step."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    styles = {k: ({"lw": 2.6} if i < 2 else {"ls": "--", "lw": 1.3}) for i, k in enumerate(runs)}
    plot_trajectories(axes[0], surface, runs, colors=dict(zip(runs, SEED003_COLORS)), styles=styles,
                      title=f"Seed 003: Adam, lr={lr:g}, {steps} steps", marker_every=10)
    axes[0].plot(*wrong_zero, "P", color="#d62728", ms=9, mec="black", label="zero of the wrong gradient")
    axes[0].legend(fontsize=7, loc="best")
    for (k, t), c in zip(runs.items(), SEED003_COLORS):
        axes[1].plot(np.arange(len(t)), [surface.value(p) - f_min for p in t], color=c, label=k, **styles[k])
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("f − f_min")
    axes[1].set_title("Distance to the minimum value")
    axes[1].legend(fontsize=7)
    return fig
