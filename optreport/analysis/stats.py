"""Small statistics used across the report: confidence intervals, paired tests, bootstrap.

All functions take plain arrays of per-seed (or per-trial) numbers and return plain numbers or
DataFrames, so each notebook's reading of a figure is computed, never typed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from optimizers import OPTIMIZERS
from optreport.runs.results import last_epoch


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


# ----------------------------------------------------------------------------- sweep tables
# Helpers for the per-epoch frames of results.load_results / sweep.run_grid (one row per run x
# epoch, columns key, rule, lr, seed, epoch, train_loss ..., diverged). Added for notebooks 02 and 03.

def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last recorded epoch of every run (``key``; :func:`optreport.runs.results.last_epoch`)
    with ``epoch`` renamed ``final_epoch``. A diverged run's last row has NaN metrics (or the
    values of the epoch it diverged in); ``diverged`` tells."""
    return last_epoch(df).rename(columns={"epoch": "final_epoch"})


def best_epoch_rows(df: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Per run, the epoch with the highest ``metric`` (first one on ties); runs where the
    metric is never finite are absent."""
    ok = df[np.isfinite(df[metric].to_numpy(dtype=float))]
    idx = ok.groupby("key", sort=False)[metric].idxmax()
    return ok.loc[idx].rename(columns={"epoch": "best_epoch"}).reset_index(drop=True)


def _finite_ok(final: pd.DataFrame) -> pd.Series:
    return ~final["diverged"].astype(bool)


def sweep_table(df: pd.DataFrame, by=("rule", "lr"), level: float = 0.95,
                metric: str = "val_acc") -> pd.DataFrame:
    """Per group of ``by``: runs, diverged runs, mean and CI of the final test accuracy and
    test loss over the runs that did not diverge, the best epoch (by ``metric``) and the test
    accuracy there, and the final epoch. Diverged runs are excluded from every mean."""
    by = list(by)
    final = final_rows(df)
    best = best_epoch_rows(df, metric)
    best = best.merge(final[["key", "diverged"]].rename(columns={"diverged": "_div"}), on="key")
    rows = []
    for keys, g in final.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = g[_finite_ok(g)]
        b = best[(best["key"].isin(ok["key"]))]
        acc = mean_ci(ok["test_acc"], level)
        loss = mean_ci(ok["test_loss"], level)
        bacc = mean_ci(b["test_acc"], level)
        rows.append({**dict(zip(by, keys)), "runs": len(g), "diverged": int((~_finite_ok(g)).sum()),
                     "test_acc": acc[0], "test_acc_lo": acc[1], "test_acc_hi": acc[2],
                     "test_loss": loss[0], "test_loss_lo": loss[1], "test_loss_hi": loss[2],
                     "best_epoch": float(b["best_epoch"].mean()) if len(b) else float("nan"),
                     "best_epoch_test_acc": bacc[0], "best_epoch_test_acc_lo": bacc[1],
                     "best_epoch_test_acc_hi": bacc[2],
                     "final_epoch": int(g["final_epoch"].max())})
    return catalogue_order(pd.DataFrame(rows), by)


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


def per_seed(df: pd.DataFrame, value: str = "test_acc", by=("rule", "lr")) -> pd.DataFrame:
    """Final ``value`` per run as a table: index = ``by``, columns = seeds; diverged runs NaN."""
    final = final_rows(df)
    v = final[value].astype(float).where(_finite_ok(final))
    return final.assign(_v=v).pivot_table(index=list(by), columns="seed", values="_v",
                                          aggfunc="first", dropna=False)


def compare_to_reference(df: pd.DataFrame, *, value: str = "test_acc", within: str = "lr",
                         group: str = "rule", reference=None, higher_is_better: bool = True,
                         alpha: float = 0.05) -> pd.DataFrame:
    """Paired comparisons over seeds of every ``group`` against a reference, within each level
    of ``within`` (e.g. every rule against the best rule, at each lr).

    ``reference=None`` takes, at each level, the group with the best mean final ``value``;
    a name (e.g. "momentum") fixes it. Diverged runs are NaN and their seeds drop out of the
    pair (``n`` says how many pairs remain; ``diverged`` counts the group's diverged runs).
    p-values: paired t-test (``t_p``) and Wilcoxon signed-rank (``wilcoxon_p``); ``holm_p``
    is the t-test's p, Holm-corrected over the comparisons within the level.
    ``distinguishable`` is ``holm_p < alpha``; ``verdict`` says "better" / "worse" (than the
    reference, significant after Holm), "indistinguishable", "identical" (every pair equal),
    "diverged" (no finite run) or "n/a" (fewer than two pairs).
    """
    table = per_seed(df, value, (within, group))
    rows = []
    for lvl, sub in table.groupby(level=0, sort=True):
        sub = sub.droplevel(0)
        means = sub.mean(axis=1, skipna=True)
        if reference is None:           # best mean among groups without diverged runs
            clean = means[sub.notna().all(axis=1)]
            pool = clean if len(clean) else means
            ref = pool.idxmax() if higher_is_better else pool.idxmin()
        else:
            ref = reference
        if ref not in sub.index:
            continue
        part = []
        for g in sub.index:
            if g == ref:
                continue
            r = paired_comparison(sub.loc[g].to_numpy(float), sub.loc[ref].to_numpy(float))
            part.append({within: lvl, group: g, "reference": ref,
                         "diverged": int(np.isnan(sub.loc[g].to_numpy(float)).sum()),
                         "mean": float(means[g]), "reference_mean": float(means[ref]), **r})
        ps = holm([p["t_p"] for p in part])
        for p, h in zip(part, ps):
            p["holm_p"] = float(h)
            p["distinguishable"] = bool(np.isfinite(h) and h < alpha)
            good = p["mean_diff"] > 0 if higher_is_better else p["mean_diff"] < 0
            p["verdict"] = ("diverged" if p["n"] == 0 and p["diverged"] else
                            "identical" if p["n"] >= 1 and p["mean_diff"] == 0 and
                            p["t_p"] != p["t_p"] else
                            "n/a" if not np.isfinite(h) and p["n"] < 2 else
                            ("better" if good else "worse") if p["distinguishable"] else
                            "indistinguishable")
        rows += part
    return pd.DataFrame(rows)


def fmt_p(p: float) -> str:
    """A p-value for prose: 'p = 0.032', 'p < 0.001', 'p n/a'."""
    if p is None or not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 1e-3 else f"p = {p:.3f}"
