"""Notebooks 02 and 03's tables, figures and readings built on the comparisons module: outcome
columns instead of NaN, intervals in range, the three baselines, verdict words only."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from optreport.analysis import compare as cmp  # noqa: E402
from optreport.analysis import outcomes as oc  # noqa: E402
from optreport.report import figures as plotting  # noqa: E402
from optreport.report import readings, tables  # noqa: E402
from optreport.report.experiments import LRS, matched_momentum_lr  # noqa: E402


def epoch_rows(spec: dict, epochs: int = 4) -> pd.DataFrame:
    """Per-epoch rows (the columns of results.load_results) from {(rule, lr, extra): [(final acc,
    kind), ...]} with kind 'ok', 'div' (non-finite loss from epoch 2) or 'chance'; seeds = positions."""
    rows = []
    for arm, runs in spec.items():
        rule, lr, extra = (*arm, ())[:3]
        hp = {"lr": lr, **dict(extra)}
        for seed, (acc, kind) in enumerate(runs):
            key = f"{rule}-{lr}-{json.dumps(dict(extra))}-{seed}"
            for e in range(1, epochs + 1):
                a = acc - 0.02 * (epochs - e) if kind == "ok" else (0.1 if kind == "chance" else acc)
                loss = 2.3 if kind == "chance" else (np.nan if kind == "div" and e > 1 else 1 - a)
                rows.append(dict(key=key, model="mlp", rule=rule, lr=lr, seed=seed, epochs=epochs,
                                 hparams=json.dumps(hp, sort_keys=True), **{k: v for k, v in dict(extra).items()},
                                 epoch=e, train_loss=loss, train_acc=a, val_loss=loss, val_acc=a + 0.001 * e,
                                 test_loss=loss, test_acc=np.nan if kind == "div" and e > 1 else a,
                                 train_seconds=1.0, step_seconds=0.5, eval_seconds=0.1, diverged=kind == "div",
                                 diverged_epoch=2 if kind == "div" else None))
    return pd.DataFrame(rows)


def ok(mean, n=5, sd=0.004, seed=0):
    return [(float(v), "ok") for v in np.random.default_rng(seed).normal(mean, sd, n)]


def sweep_frame():
    return epoch_rows({("sgd", 0.1): ok(0.88), ("momentum", 0.1): ok(0.86, seed=1),
                       ("momentum", 0.2): [(0.5, "div")] * 5,
                       ("adam", 0.1): [(0.1, "chance")] * 5,
                       ("rmsprop", 0.1): [(0.30, "ok"), (0.16, "ok")] + [(0.1, "chance")] * 3})


def test_sweep_table_has_outcomes_and_intervals_in_range():
    runs = oc.run_outcomes(sweep_frame())
    t = tables.sweep_table(runs).set_index(["rule", "lr"])
    assert list(t.reset_index().columns) == tables.SWEEP_COLUMNS
    assert t.loc[("sgd", 0.1), "outcome"] == "trained" and t.loc[("sgd", 0.1), "n_seeds"] == 5
    assert t.loc[("momentum", 0.2), "outcome"] == "diverged" and t.loc[("momentum", 0.2), "n_diverged"] == 5
    assert np.isnan(t.loc[("momentum", 0.2), "val_test_acc"])           # no mean over runs that did not train
    assert t.loc[("adam", 0.1), "outcome"] == "failed to learn"
    assert t.loc[("rmsprop", 0.1), "outcome"] == "3/5 failed to learn, 2/5 trained"
    for col in ("final_test_acc", "val_test_acc", "last3_test_acc"):
        lo, hi = t[f"{col}_lo"].dropna(), t[f"{col}_hi"].dropna()
        assert ((lo >= 0) & (hi <= 1)).all()
    assert (t["final_test_loss_lo"].dropna() >= 0).all()
    assert t.loc[("rmsprop", 0.1), "val_test_acc_lo"] == 0       # 2 runs, 0.16 and 0.30: t interval clipped at 0
    # catalogue order
    assert list(t.reset_index()["rule"]) == ["sgd", "momentum", "momentum", "rmsprop", "adam"]


def test_outcome_summary_and_less_noisy_metric():
    assert oc.outcome_summary(["trained"] * 3) == "trained"
    assert oc.outcome_summary(["diverged"] * 3) == "diverged"
    assert oc.outcome_summary(["trained", "diverged", "blew up"]) == "1/3 diverged, 1/3 blew up, 1/3 trained"
    runs = oc.run_outcomes(sweep_frame())
    runs["last3_test_acc"] = runs["val_test_acc"] + np.where(runs.seed % 2, 0.05, -0.05)   # noisier
    assert oc.less_noisy_metric(runs) == "val_selected"
    runs["last3_test_acc"] = runs.groupby(["rule", "lr"])["val_test_acc"].transform("mean")  # no spread
    assert oc.less_noisy_metric(runs) == "last3"


def test_accuracy_grid_marks_cells_that_did_not_train_and_heatmap_scales_to_working_cells():
    t = tables.sweep_table(oc.run_outcomes(sweep_frame()))
    acc, notes = tables.accuracy_grid(t, ["sgd", "momentum", "rmsprop", "adam"])
    assert notes.loc["momentum", 0.2] == "diverged" and notes.loc["sgd", 0.1] == ""
    assert notes.loc["rmsprop", 0.1] == "3/5 failed to learn\n2/5 trained"
    fig = plotting.accuracy_heatmap_figure(acc, notes, 4, "test accuracy")
    im = fig.axes[0].images[0]
    working = acc.where(notes == "").stack()
    assert im.norm.vmin == pytest.approx(working.min()) and im.norm.vmax == pytest.approx(working.max())
    texts = [x.get_text() for x in fig.axes[0].texts]
    assert any(x.startswith("diverged") for x in texts) and any("failed to learn" in x for x in texts)
    plt.close(fig)


def test_small_multiples_name_outcomes_and_use_the_informative_band():
    df = sweep_frame()
    runs = oc.run_outcomes(df)
    fig = plotting.lr_small_multiples_figure(df, runs, 0.1, ["sgd", "momentum", "rmsprop", "adam"], skip_epochs=0)
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 4
    lo, hi = axes[0].get_ylim()
    assert lo > 0.5 and hi <= 1.0                                  # not stretched down to chance
    texts = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in axes}
    assert any("failed to learn" in t for t in texts["Adam"]) and texts["SGD"] == []
    plt.close(fig)
    fig = plotting.train_loss_by_rule_figure(df, runs, ["sgd", "momentum"], [0.1, 0.2])
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "lr 0.2 (diverged)" in labels and fig.axes[0].get_yscale() == "log"
    plt.close(fig)


def novel_frame():
    spec = {}
    for i, lr in enumerate(LRS):
        spec[("sgd", lr)] = ok(0.880, n=10, seed=10 + i)
        spec[("gravity", lr)] = ok(0.870, n=10, seed=20 + i)
        spec[("cosine", lr)] = ok(0.8801, n=10, sd=0.0005, seed=30 + i)
        spec[("momentum", lr)] = [(0.5, "div")] * 10 if lr == 0.2 else ok(0.875, n=10, seed=40 + i)
        spec[("momentum", matched_momentum_lr(lr))] = ok(0.878, n=10, seed=50 + i)
    spec[("sgd", 0.1)] = [(v + 0.0001, k) for v, k in spec[("cosine", 0.1)]]     # equivalent by construction
    return epoch_rows(spec)


def test_vs_baselines_table_covers_three_baselines_with_verdict_words():
    runs = oc.run_outcomes(novel_frame())
    cmps = cmp.report_comparisons(runs, ["sgd", "momentum", "gravity", "cosine"], LRS, ["gravity", "cosine"],
                                  metric="val_selected")
    t = tables.vs_baselines(cmps.tables["novel vs baselines"])
    assert list(t.columns) == tables.VS_BASELINES_COLUMNS
    assert set(t.baseline) == {"sgd", "momentum", "momentum (matched)"} and (t.n_seeds == 10).all()
    g = t.set_index(["rule", "lr", "baseline"])
    assert g.loc[("gravity", 0.01, "sgd"), "verdict"] == "worse"
    assert g.loc[("cosine", 0.1, "sgd"), "verdict"] == "equivalent"
    assert g.loc[("gravity", 0.2, "momentum"), "verdict"] == "baseline diverged"
    assert g.loc[("gravity", 0.2, "momentum (matched)"), "baseline_lr"] == pytest.approx(0.02)
    assert not t.verdict.str.contains("indistinguishable").any()
    # every interval in pp of an accuracy difference stays within [-100, 100]
    assert (t.ci_lo_pp.dropna() >= -100).all() and (t.ci_hi_pp.dropna() <= 100).all()
    text = readings.novel_answer(cmps.tables["novel vs baselines"])
    assert "**Gravity**" in text and "vs SGD at the same lr (its special case): worse at lr 0.01" in text
    assert "Momentum at lr 0.2 diverged (10/10)" in text
    assert "Better than a baseline: Cosine at lr 0.1 vs Momentum at lr 0.1" in text     # 0.880 vs 0.875
    no_better = cmps.tables["novel vs baselines"].query("verdict != 'better'")
    assert "No novel rule is better than any of its baselines." in readings.novel_answer(no_better)
    summary = readings.baseline_summary(cmps.tables["novel vs baselines"])
    assert summary.startswith("Gravity and Cosine over seed 000's three lrs — "
                              "vs SGD at the same lr (its special case): ")
    assert "vs Momentum at the same lr (seed 000's baseline):" in summary and "2 decided by an outcome" in summary
    ans = readings.almost_no_change(cmps.tables["novel vs baselines"])
    assert ans.startswith("Seed 000's \"almost no change\" does not hold")
    fig = plotting.verdict_forest_figure(cmps.tables["novel vs baselines"], group="a", label_fn=lambda r: r["b"],
                                         title="t", xlabel="pp")
    texts = [x.get_text() for ax in fig.axes for x in ax.texts]
    assert "Momentum diverged (10/10)" in texts and "worse" in texts   # outcome rows are written, not blank
    plt.close(fig)


def test_ablation_family_pairs_each_variant_with_its_default():
    spec = {("gravity", 0.1): ok(0.87, n=3), ("gravity", 0.1, (("accumulate", False),)): ok(0.80, n=3, seed=2),
            ("cosine", 0.1): ok(0.87, n=3, seed=3), ("cosine", 0.1, (("per", "tensor"),)): ok(0.87, n=3, seed=4),
            ("cosine", 0.1, (("C", 1.0),)): ok(0.86, n=3, seed=5)}
    df = epoch_rows(spec)
    runs = oc.run_outcomes(df)
    abl = runs[runs.hparams.str.count(":") > 1]
    fam = tables.ablation_family(abl, "val_selected")
    names = sorted(p.a.name for p in fam.pairs)
    assert names == ["cosine: C=1", "cosine: per=tensor", "gravity: accumulate=False"]
    assert {p.b.name for p in fam.pairs} == {"gravity: default", "cosine: default"}
    out = cmp.compare(runs, fam)
    assert (out.n_seeds == 3).all() and out.verdict.isin(cmp.VERDICTS).all()


def test_readings_of_notebook_02():
    t = tables.sweep_table(oc.run_outcomes(sweep_frame()))
    text = readings.lr_reading(t, 0.1, "final_test_acc", "final test accuracy")
    assert "Among the 2 rules whose runs all trained" in text and "Adam (failed to learn)" in text
    assert "RMSProp (3/5 failed to learn, 2/5 trained)" in text
    acc, notes = tables.accuracy_grid(t, ["sgd", "momentum", "rmsprop", "adam"])
    g = readings.grid_reading(acc, notes)
    assert g.startswith("**Reading.** Best cell: SGD at lr 0.1") and "3 of 8 cells did not train" in g
    eq = pd.DataFrame([dict(a="gravity", lr_a=0.1, b="momentum", lr_b=0.1, verdict="equivalent", margin_pp=0.5,
                            diff_pp=0.1, mde_pp=0.4, n_seeds=10, outcome_a="trained", outcome_b="trained",
                            n_out_a=0, n_out_b=0)])
    assert "holds: every one of the 1 comparisons" in readings.almost_no_change(eq)
    inc = eq.assign(verdict="inconclusive")
    assert "is not shown" in readings.almost_no_change(inc)
