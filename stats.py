"""Small statistics used across the report: confidence intervals, paired tests, bootstrap.

All functions take plain arrays of per-seed (or per-trial) numbers and return plain numbers or
DataFrames, so each notebook's reading of a figure is computed, never typed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, lo, hi)``; NaNs are dropped.

    With one value the interval is ``(mean, mean)``'s degenerate case reported as NaN bounds.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


def summarize(df: pd.DataFrame, by, value: str, level: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``: n, mean, std and the t confidence interval of column ``value``."""
    rows = []
    for keys, g in df.groupby(by, sort=False):
        m, lo, hi = mean_ci(g[value], level)
        keys = keys if isinstance(keys, tuple) else (keys,)
        finite = np.isfinite(g[value].to_numpy(dtype=float))
        rows.append((*keys, int(finite.sum()), m, float(g[value][finite].std(ddof=1))
                     if finite.sum() > 1 else float("nan"), lo, hi))
    by = [by] if isinstance(by, str) else list(by)
    return pd.DataFrame(rows, columns=[*by, "n", "mean", "std", "ci_lo", "ci_hi"])


def bootstrap_ci(values, stat=np.mean, *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap ``(stat, lo, hi)`` of ``stat`` over ``values`` (NaNs dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boots = np.array([stat(x[rng.integers(0, x.size, x.size)]) for _ in range(n_boot)])
    alpha = (1 - level) / 2
    return float(stat(x)), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def paired_comparison(a, b, level: float = 0.95) -> dict:
    """Compare paired samples ``a`` and ``b`` (same seeds): mean difference ``a - b`` with its
    t interval, the paired t-test p-value, and the Wilcoxon signed-rank p-value (when n allows).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    m, lo, hi = mean_ci(d, level)
    out = {"n": int(d.size), "mean_diff": m, "ci_lo": lo, "ci_hi": hi,
           "t_p": float("nan"), "wilcoxon_p": float("nan")}
    if d.size >= 2 and np.any(d != d[0]):
        out["t_p"] = float(_st.ttest_rel(a[keep], b[keep]).pvalue)
    if d.size >= 2 and np.any(d != 0):
        out["wilcoxon_p"] = float(_st.wilcoxon(d).pvalue)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given; NaNs stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m = order.size
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def kendall_tau(x, y) -> tuple[float, float]:
    """Kendall rank correlation ``(tau, p)`` between two score vectors over the same items."""
    res = _st.kendalltau(x, y)
    return float(res.statistic), float(res.pvalue)
