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
