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
import matplotlib.pyplot as plt  # noqa: E402

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
    import numpy as np
    from optreport.analysis.stats import mean_ci
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
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
    return drawn


def heatmap(ax, table, *, fmt: str = "{:.1f}", cmap: str = "viridis", notes=None,
            cbar_label: str = "", xlabel: str = "", ylabel: str = ""):
    """Annotated heat map of a 2-D DataFrame (rows × columns); ``notes`` (same shape, strings)
    are appended under each value (e.g. "2 div."). NaN cells are grey and say "n/a"."""
    import numpy as np
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
    import numpy as np
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
