"""What became of each run: an outcome word and the accuracies a comparison may use.

A run that did not train is an *outcome*, never a NaN in a mean:

* ``"diverged"``: the training loss became non-finite (the trainer's ``diverged`` flag);
* ``"blew up"``: the final training loss is above :data:`BLOWUP_LOSS` (finite but useless, e.g.
  RMSProp at ~5e4 or Adam at lr 10 at 6.6e7);
* ``"failed to learn"``: the final test accuracy is below ``CHANCE + CHANCE_MARGIN`` (0.15: within
  5 points of guessing one of Fashion-MNIST's ten classes);
* ``"trained"``: everything else.

The checks run in that order, so a run that blew up *and* sits at chance is "blew up".

Beside the final epoch's test accuracy, two less noisy metrics (at a constant lr the last epochs
of one run spread by a few points):

* ``val_test_acc``: the test accuracy at the validation-selected epoch ``val_epoch`` (highest
  ``val_acc``, the first on ties; the test set is never used to choose);
* ``last3_test_acc``: the mean test accuracy of the last :data:`LAST_K` recorded epochs (of all of
  them if the run has fewer).

    from optreport.analysis.outcomes import run_outcomes
    runs = run_outcomes(df)          # df: optreport.runs.results.load_results(...) or sweep.run_grid(...)
    runs[["rule", "lr", "seed", "outcome", "final_test_acc", "val_test_acc", "last3_test_acc"]]
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from optreport.runs.results import EPOCH_COLS, last_epoch

__all__ = ["CHANCE", "CHANCE_MARGIN", "BLOWUP_LOSS", "LAST_K", "TRAINED", "OUTCOMES", "METRICS", "METRIC_TEXT",
           "classify", "run_outcomes", "outcome_summary", "less_noisy_metric"]

CHANCE = 0.10          # accuracy of guessing among Fashion-MNIST's 10 balanced classes
CHANCE_MARGIN = 0.05   # "failed to learn": final test accuracy < CHANCE + CHANCE_MARGIN
BLOWUP_LOSS = 1e3      # "blew up": final training loss above this (cross-entropy at chance is ln 10 = 2.3)
LAST_K = 3             # epochs averaged by last3_test_acc

TRAINED = "trained"
OUTCOMES = ("diverged", "blew up", "failed to learn", TRAINED)   # most severe first

#: metric name -> column of :func:`run_outcomes` (all test accuracies in [0, 1])
METRICS = {"final": "final_test_acc", "val_selected": "val_test_acc", "last3": "last3_test_acc"}
#: what each metric of METRICS is, for prose
METRIC_TEXT = {"final": "test accuracy after the last epoch",
               "val_selected": "test accuracy at the epoch of best validation accuracy",
               "last3": f"mean test accuracy over the last {LAST_K} epochs"}


def classify(diverged: bool, final_train_loss: float, final_test_acc: float) -> str:
    """The outcome word of one run (see the module docstring for the rules and their order)."""
    if diverged or not np.isfinite(final_train_loss):
        return "diverged"
    if final_train_loss > BLOWUP_LOSS:
        return "blew up"
    if not np.isfinite(final_test_acc) or final_test_acc < CHANCE + CHANCE_MARGIN:
        return "failed to learn"
    return TRAINED


def _val_selected(df: pd.DataFrame) -> pd.DataFrame:
    """Per run, the epoch with the highest finite val_acc and the test accuracy there."""
    ok = df[np.isfinite(df["val_acc"].to_numpy(dtype=float))]
    idx = ok.groupby("key", sort=False)["val_acc"].idxmax()
    return ok.loc[idx, ["key", "epoch", "test_acc"]].rename(
        columns={"epoch": "val_epoch", "test_acc": "val_test_acc"})


def _last_k_mean(df: pd.DataFrame, k: int = LAST_K) -> pd.Series:
    """Per run, the mean test accuracy of its last ``k`` recorded epochs (NaN if one is NaN)."""
    tail = df.sort_values(["key", "epoch"], kind="stable").groupby("key", sort=False).tail(k)
    return tail.groupby("key", sort=False)["test_acc"].agg(lambda s: float(s.mean(skipna=False))) \
        .rename("last3_test_acc")


def run_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a per-epoch frame (:func:`optreport.runs.results.load_results`).

    Columns: the run's configuration columns as in ``df`` (key, model, rule, lr, seed, epochs, ...,
    hparams, one per hyper-parameter), then ``final_epoch``, ``final_train_loss``,
    ``final_test_loss``, ``final_test_acc``, ``val_epoch``, ``val_test_acc``, ``last3_test_acc``,
    ``diverged``, ``outcome``. Rows in the frame's order of runs. The metrics are kept as measured
    whatever the outcome (a diverged run's final metrics are usually NaN); a comparison reads
    ``outcome`` first."""
    if df.empty:
        cfg = [c for c in df.columns if c not in EPOCH_COLS and c not in ("diverged", "diverged_epoch")]
        return pd.DataFrame(columns=[*cfg, "final_epoch", "final_train_loss", "final_test_loss",
                                     "final_test_acc", "val_epoch", "val_test_acc", "last3_test_acc",
                                     "diverged", "outcome"])
    final = last_epoch(df)
    cfg = [c for c in final.columns if c not in EPOCH_COLS and c not in ("diverged", "diverged_epoch")]
    out = final[cfg].copy()
    out["final_epoch"] = final["epoch"].to_numpy()
    for c in ("train_loss", "test_loss", "test_acc"):
        out[f"final_{c}"] = final[c].to_numpy(dtype=float)
    out = out.merge(_val_selected(df), on="key", how="left")
    out = out.merge(_last_k_mean(df).reset_index(), on="key", how="left")
    out["val_epoch"] = out["val_epoch"].astype("Int64")
    out["diverged"] = final["diverged"].astype(bool).to_numpy()
    out["outcome"] = [classify(d, loss, acc) for d, loss, acc in
                      zip(out["diverged"], out["final_train_loss"], out["final_test_acc"])]
    return out


def outcome_summary(outcomes) -> str:
    """One cell's outcomes in words: ``"trained"`` when every run trained, the word itself when all
    runs share one outcome (``"diverged"``), else the counts, most severe first
    (``"2/5 diverged, 3/5 trained"``)."""
    outs = [str(o) for o in outcomes]
    if not outs:
        return "not run"
    if len(set(outs)) == 1:
        return outs[0]
    n = len(outs)
    return ", ".join(f"{outs.count(o)}/{n} {o}" for o in OUTCOMES if o in outs)


def less_noisy_metric(runs: pd.DataFrame, candidates=("val_selected", "last3"), by=("rule", "lr")) -> str:
    """The metric (a key of :data:`METRICS`) whose seed-to-seed standard deviation, median over the
    groups ``by`` whose runs all trained, is the smallest: the headline's metric. Ties: the first."""
    ok = runs.groupby(list(by))["outcome"].transform(lambda s: bool((s == TRAINED).all()))
    trained = runs[ok.astype(bool)]
    sds = {}
    for m in candidates:
        sd = trained.groupby(list(by))[METRICS[m]].std(ddof=1)
        sds[m] = float(np.nanmedian(sd.to_numpy(dtype=float))) if sd.notna().any() else np.inf
    return min(candidates, key=lambda m: sds[m])
