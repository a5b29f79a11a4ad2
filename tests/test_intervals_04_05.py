"""Issue 11 for notebooks 04 and 05: intervals inside their range, scipy bootstraps, outcomes instead
of NaN, comparisons of the inclusion re-training, the protocol-score figure's informative band.

Synthetic frames only (no training)."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from optreport.analysis import compare, costs, outcomes, tuning
from optreport.report import figures as plotting
from optreport.report import tables


def records(rule_accs: dict, seeds=range(5), secs=1.0, lr=0.1, extra_cols=True) -> pd.DataFrame:
    """Per-epoch rows: {rule: [acc per epoch] or a function seed -> accs}."""
    rows = []
    for rule, accs in rule_accs.items():
        for seed in seeds:
            a = accs(seed) if callable(accs) else accs
            for e, acc in enumerate(a, 1):
                row = dict(key=f"{rule}{seed}", rule=rule, lr=lr, seed=seed, epoch=e, val_acc=acc, test_acc=acc,
                           train_seconds=secs * (1 + 0.1 * seed), step_seconds=secs / 4,
                           hparams=json.dumps({"lr": lr}))
                if extra_cols:
                    row.update(train_loss=0.5, test_loss=0.5, val_loss=0.5, diverged=False)
                rows.append(row)
    df = pd.DataFrame(rows)
    if extra_cols:
        df["diverged_epoch"] = pd.array([pd.NA] * len(df), dtype="Int64")
    return df


# ----------------------------------------------------------------------------- intervals in range

def test_accuracy_band_stays_in_unit_interval():
    """Accuracies near 1 with a wide spread: a plain t band would pass 1; this one stops there."""
    d = records({"r": lambda s: [0.5, [0.999, 0.6][s % 2]]}, seeds=range(3))
    c = costs.accuracy_vs_time(d)
    assert (c["ci_lo"] >= 0).all() and (c["ci_hi"] <= 1).all()
    assert c["ci_hi"].iloc[-1] == 1.0                    # clipped, not beyond
    loss = costs.accuracy_vs_time(d.assign(test_loss=lambda x: np.where(x.seed == 0, 0.01, 3.0)), metric="test_loss")
    assert (loss["ci_lo"] >= 0).all()


def test_seconds_interval_never_negative():
    d = records({"r": [0.8]}, seeds=range(3))
    d.loc[d.seed == 2, "train_seconds"] = 40.0           # one slow run: t interval would reach below 0
    c = costs.epoch_costs(d, by=("rule",))
    assert c["train_s_lo"].iloc[0] == 0.0 and c["train_s_hi"].iloc[0] > 0


def test_range_ci_picks_the_range_from_the_metric_name():
    x = [0.01, 0.99, 0.5]
    assert costs.range_ci(x, "test_acc")[1] >= 0 and costs.range_ci(x, "test_acc")[2] <= 1
    assert costs.range_ci([0.1, 5.0, 0.2], "ratio")[1] >= 0
    assert costs.range_ci([-1.0, 1.0, 3.0], "diff")[1] < 0          # unbounded metric: not clipped


# ----------------------------------------------------------------------------- time to target (scipy bootstrap)

def test_time_to_target_bootstrap_is_scipy_and_keeps_never_reached_runs():
    # 5 runs, 2 never reach 0.9: median finite (3 of 5 reach), the upper bound "not reached"
    d = records({"r": lambda s: [0.8, 0.85, 0.95] if s < 3 else [0.8, 0.85, 0.86]})
    t = costs.time_to_target(d, [0.9], n_boot=500).iloc[0]
    assert t.n_runs == 5 and t.n_reached == 3 and np.isfinite(t.median_s)
    assert np.isinf(t.ci_hi_s) and 0 < t.ci_lo_s <= t.median_s
    assert t.min_s == pytest.approx(3.0) and np.isinf(t.max_s)
    again = costs.time_to_target(d, [0.9], n_boot=500).iloc[0]
    assert (again.ci_lo_s, again.ci_hi_s) == (t.ci_lo_s, t.ci_hi_s)          # seeded


def test_time_to_target_all_finite_interval_inside_the_runs():
    d = records({"r": [0.8, 0.95]}, seeds=range(6))
    t = costs.time_to_target(d, [0.9], n_boot=500).iloc[0]
    assert t.min_s <= t.ci_lo_s <= t.median_s <= t.ci_hi_s <= t.max_s


def test_time_to_target_no_bootstrap_below_five_runs():
    d = records({"r": [0.8, 0.95]}, seeds=range(3))
    t = costs.time_to_target(d, [0.9], n_boot=200).iloc[0]
    assert np.isfinite(t.median_s) and np.isnan(t.ci_lo_s) and np.isnan(t.ci_hi_s)
    assert t.min_s < t.max_s
    fig = plotting.time_to_target_figure(costs.time_to_target(d, [0.9, 0.99], n_boot=200), [0.9, 0.99])
    plt.close(fig)


def test_time_to_target_never_reached_by_any_run():
    d = records({"r": [0.8, 0.85]})
    t = costs.time_to_target(d, [0.9], n_boot=200).iloc[0]
    assert t.n_reached == 0 and np.isinf(t.median_s) and np.isinf(t.ci_lo_s) and np.isinf(t.ci_hi_s)


# ----------------------------------------------------------------------------- outcomes, not NaN

def test_final_accuracy_counts_outcomes_and_averages_trained_runs_only():
    d = records({"r": lambda s: [0.5, 0.1] if s == 0 else [0.5, 0.8]})
    d.loc[(d.seed == 1), "train_loss"] = 5e4                                    # blew up
    d.loc[(d.seed == 2) & (d.epoch == 2), ["test_acc", "train_loss"]] = np.nan  # diverged
    d.loc[d.seed == 2, "diverged"] = True
    f = costs.final_accuracy(d).iloc[0]
    assert (f.n_runs, f.n_trained, f.n_diverged, f.n_blew_up, f.n_failed) == (5, 2, 1, 1, 1)
    assert f.acc == pytest.approx(0.8) and 0 <= f.acc_lo <= f.acc_hi <= 1


def test_final_accuracy_on_timing_records_without_a_loss():
    f = costs.final_accuracy(records({"r": [0.8]}, extra_cols=False)).iloc[0]
    assert f.n_trained == 5 and f.acc == pytest.approx(0.8)


# ----------------------------------------------------------------------------- seed 004's verdicts

def test_gain_vs_cost_gives_a_verdict_per_lr():
    def acc(rule, lr, s):
        return 0.85 + (0.03 if (rule, lr) == ("adam", 0.001) else 0.0) + 0.002 * ((s * 7) % 3)
    rows = []
    for rule in ("sgd", "adam"):
        for lr in (0.001, 0.0001):
            d = records({rule: lambda s, rule=rule, lr=lr: [0.5, acc(rule, lr, s)]}, lr=lr)
            rows.append(d.assign(key=d.key + f"-{lr}", hparams=json.dumps({"lr": lr})))
    g = costs.gain_vs_cost(pd.concat(rows, ignore_index=True)).set_index("lr")
    assert g.loc[0.001, "acc_gain_pp"] == pytest.approx(3.0) and g.loc[0.001, "acc_verdict"] == "better"
    assert g.loc[0.0001, "acc_verdict"] == "equivalent"
    assert (g["epoch_ratio_lo"] >= 0).all() and {"acc_ci_level", "acc_mde_pp"} <= set(g.columns)


# ----------------------------------------------------------------------------- inclusion re-training

def test_imitation_family_compares_every_variant_with_the_base_and_matches_betas():
    mom = {"lr": 0.1, "momentum": 0.8}
    variants = {"momentum (tuned, c)": ("momentum", mom),
                "adam (imitating)": ("adam", tuning.imitation_hparams(mom, 100.0))}
    fam = tuning.imitation_family(variants, "momentum (tuned, c)")
    assert len(fam.pairs) == 1 and fam.pairs[0].a.extra == (("betas", (0.8, 0.999)), ("eps", 100.0))
    rows = []
    for name, (rule, hp) in variants.items():
        for s in range(4):
            a = 0.85 + 0.004 * s + (0.01 if rule == "adam" else 0.0) + 0.001 * (s % 2) * (rule == "adam")
            rows.append(dict(key=f"{name}{s}", rule=rule, lr=hp["lr"], seed=s, hparams=json.dumps(hp),
                             final_test_acc=a, val_test_acc=a, last3_test_acc=a, outcome=outcomes.TRAINED))
    runs = pd.DataFrame(rows)
    table = compare.compare(runs, fam)
    assert table["n_seeds"].iloc[0] == 4 and table["verdict"].iloc[0] in compare.VERDICTS
    acc = {n: runs[runs.key.str.startswith(n)]["final_test_acc"].to_numpy() for n in variants}
    inc = tables.imitation(variants, acc, base="momentum (tuned, c)", comparison=table).set_index("variant")
    assert inc.loc["momentum (tuned, c)", "verdict"] == "(baseline)"
    assert inc.loc["adam (imitating)", "verdict"] == table["verdict"].iloc[0]
    im = inc.loc["adam (imitating)"]
    assert im["diff_pp"] == pytest.approx(100 * im["diff_vs_momentum"])
    assert ((inc["ci_lo"] >= 0) & (inc["ci_hi"] <= 1)).all()
    assert not any("indistinguishable" in str(v) for v in inc.to_numpy().ravel())

