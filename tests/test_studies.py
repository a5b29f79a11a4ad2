"""Arms that differ by schedule or training-set size (notebooks 06 and 07), judged by the
comparisons module."""
import matplotlib
import numpy as np
import pandas as pd
import pytest
from test_verdict_tables import epoch_rows, ok

from optreport.analysis import compare as cmp
from optreport.analysis import studies
from optreport.report import figures, readings

matplotlib.use("Agg")


def schedule_frame():
    parts = []
    for sch, shift in (("constant", 0.0), ("cosine", 0.01)):
        df = epoch_rows({("sgd", 0.1): ok(0.88 + shift, n=5), ("gravity", 0.2): ok(0.87 + shift, n=5, seed=1),
                         ("adam", 0.001): ok(0.88 + shift, n=5, seed=2)}, epochs=6)
        df["schedule"] = sch
        df["key"] = df["key"] + sch
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_at_epoch_cuts_runs():
    df = schedule_frame()
    r3, r6 = studies.at_epoch(df, 3), studies.at_epoch(df, 6)
    assert (r3.final_epoch == 3).all() and (r6.final_epoch == 6).all()
    assert (r3.final_test_acc < r6.final_test_acc).all()


def test_vs_reference_per_schedule_and_schedule_pairs():
    runs = studies.tag(studies.at_epoch(schedule_frame(), 6), "schedule")
    assert set(runs.rule) == {f"{r}/{s}" for r in ("sgd", "gravity", "adam") for s in ("constant", "cosine")}
    fam = studies.vs_reference(runs, "sgd", "schedule", metric="final")
    assert len(fam.pairs) == 4 and {p.b.rule for p in fam.pairs} == {"sgd/constant", "sgd/cosine"}
    t = cmp.compare(runs, fam).set_index("a")
    assert t.loc["gravity (constant)", "verdict"] == "worse"
    assert t.loc["gravity (constant)", "lr_a"] == pytest.approx(0.2) and t.loc["adam (cosine)", "lr_a"] == 0.001
    fam2 = studies.schedule_pairs(runs, "cosine", "constant", metric="final")
    t2 = cmp.compare(runs, fam2)
    assert (t2.verdict == "better").all() and np.allclose(t2.diff_pp, 1.0, atol=0.01)
    fam3 = studies.cross_pairs(runs, [(("gravity", "constant"), ("sgd", "cosine"))], "schedule", metric="final",
                               name="built-in decay vs explicit schedule")
    assert cmp.compare(runs, fam3).verdict.iloc[0] == "worse"


def test_tag_by_training_set_size():
    df = epoch_rows({("sgd", 0.1): ok(0.8, n=5), ("cosine", 0.1): ok(0.8, n=5, seed=3)})
    df["n_train"] = [2037 if s % 2 else None for s in range(len(df))]
    runs = studies.tag(studies.at_epoch(df.assign(n_train=None), 4), "n_train")
    assert set(runs.rule) == {"sgd/all data", "cosine/all data"}
    a = studies.arm(runs, "cosine", "n_train", None)
    assert a.label == "cosine (all data)" and a.lr == 0.1


def _rows(spec):
    """Comparison rows from [(a, lr_a, b, lr_b, cut/size, diff, verdict)]."""
    return pd.DataFrame([dict(a=a, lr_a=la, b=b, lr_b=lb, cut=c, n_train_value=c, diff_pp=d, ci_lo_pp=d - 0.3,
                              ci_hi_pp=d + 0.3, verdict=v, n_seeds=5, outcome_a="trained", outcome_b="trained",
                              n_out_a=0, n_out_b=0, mde_pp=0.8) for a, la, b, lb, c, d, v in spec])


def test_gap_change_and_long_answer():
    t = _rows([("gravity (constant)", 0.2, "sgd (constant)", 0.1, 15, -1.2, "worse"),
               ("gravity (constant)", 0.2, "sgd (constant)", 0.1, 100, -0.1, "equivalent"),
               ("adam (constant)", 0.001, "sgd (constant)", 0.1, 15, 0.2, "inconclusive"),
               ("adam (constant)", 0.001, "sgd (constant)", 0.1, 100, 0.3, "inconclusive")])
    text = readings.gap_change(t)
    assert ("- Gravity at lr 0.2 (constant) vs SGD at lr 0.1 (constant): -1.20 pp, worse at epoch 15 → "
            "-0.10 pp, equivalent at epoch 100") in text
    ans = readings.long_answer(t)
    assert ans.startswith("Between epoch 15 and epoch 100, 1 of 2 comparisons with SGD change verdict: "
                          "Gravity at lr 0.2 (constant) worse → equivalent")
    same = t[t.a.str.startswith("adam")]
    assert readings.long_answer(same).endswith("training 100 epochs instead of 15 does not change the answer.")


def test_size_answer_yes_no_and_neither():
    no = _rows([("cosine (n=2037)", 0.1, "sgd (n=2037)", 0.1, 2037, -0.2, "inconclusive"),
                ("cosine (all data)", 0.1, "sgd (all data)", 0.1, 50000, -0.9, "worse")])
    assert readings.size_answer(no).startswith("**No.** With all 50,000 training images the rules already differ")
    yes = no.assign(verdict=["inconclusive", "inconclusive"])
    assert readings.size_answer(yes).startswith("**Yes, possibly.**")
    neither = yes.assign(diff_pp=[-0.9, -0.2])
    text = readings.size_answer(neither)
    assert text.startswith("**Not shown either way.** No rule is shown to differ from SGD on the full training set "
                           "(1 inconclusive: only differences of 0.8 pp or more were detectable)")
    assert "0.90 pp at 2,037 images, 0.20 pp at 50,000 images" in text
    eq = neither.assign(verdict=["inconclusive", "equivalent"], margin_pp=0.5)
    assert "(1 equivalent within ±0.5 pp)" in readings.size_answer(eq)
    middle = _rows([("cosine (n=2037)", 0.1, "sgd (n=2037)", 0.1, 2037, -0.2, "inconclusive"),
                    ("cosine (n=6111)", 0.1, "sgd (n=6111)", 0.1, 6111, -1.5, "inconclusive"),
                    ("cosine (all data)", 0.1, "sgd (all data)", 0.1, 50000, -0.9, "inconclusive")])
    assert readings.size_answer(middle).startswith("**Not shown either way.**")     # up then down: no steady growth


def test_gap_change_per_rule_across_sizes():
    t = _rows([("cosine (n=2037)", 0.1, "sgd (n=2037)", 0.1, 2037, -0.2, "inconclusive"),
               ("cosine (all data)", 0.1, "sgd (all data)", 0.1, 55000, -0.9, "worse")])
    text = readings.gap_change(t.assign(images=t.n_train_value, rule="cosine"), by="images", per="rule")
    assert text == ("- Cosine vs SGD: -0.20 pp, inconclusive at 2,037 images → -0.90 pp, worse at 55,000 images")


def _over(gaps, val_epochs, outcomes=None, last=100):
    rows = []
    for i, (g, v) in enumerate(zip(gaps, val_epochs, strict=True)):
        rows.append(dict(rule=["sgd", "momentum", "adam"][i % 3], schedule=["constant", "cosine"][i // 3], lr=0.1,
                         n_seeds=3, outcome=(outcomes or {}).get(i, "trained"), final_epoch=last,
                         train_acc=0.9 + g / 100, test_acc=0.9, gap_pp=g, gap_lo_pp=g - 0.5, gap_hi_pp=g + 0.5,
                         val_epoch=v))
    return pd.DataFrame(rows)


def test_overfitting_reading_names_the_extremes_and_the_peaks():
    text = readings.overfitting_reading(_over([2.0, 6.5, 0.3, 4.0], [40, 95, 98, 99]))
    assert "from +0.3 pp (Adam (constant, 90.3% training vs 90.0% test))" in text
    assert "to +6.5 pp (Momentum (constant," in text
    assert "lies above 0 for 3 of 4" in text and "averages 40–99 of 100" in text
    assert "1 of 4 peak before epoch 90" in text
    late = readings.overfitting_reading(_over([2.0, 3.0], [95, 100]))
    assert "still peaks near the end" in late
    mixed = _over([2.0, np.nan], [95, np.nan], outcomes={1: "diverged"})
    assert "Did not train: Momentum (constant): diverged." in readings.overfitting_reading(mixed)


def test_gravity_schedule_answer():
    t = _rows([("gravity (constant)", 0.2, "sgd (cosine)", 0.1, 100, -0.1, "equivalent"),
               ("gravity (cosine)", 0.2, "gravity (constant)", 0.2, 100, 0.1, "equivalent"),
               ("sgd (cosine)", 0.1, "sgd (constant)", 0.1, 100, 0.9, "better")]).assign(margin_pp=0.5)
    text = readings.gravity_schedule_answer(t)
    assert text.startswith("**Yes.** Gravity with a constant lr vs SGD with cosine decay: -0.10 pp, equivalent")
    assert text.endswith("Adding cosine decay changes Gravity +0.10 pp, equivalent and SGD +0.90 pp, better.")
    worse = readings.gravity_schedule_answer(t.assign(verdict=["worse", "equivalent", "better"],
                                                      diff_pp=[-1, 0.1, 0.9]))
    assert worse.startswith("**No.**")
    unsure = readings.gravity_schedule_answer(t.assign(verdict=["inconclusive", "equivalent", "better"]))
    assert unsure.startswith("**Not decided.**") and "≥ 0.8 pp" in unsure
    assert "not compared" in readings.gravity_schedule_answer(t.iloc[1:])


SIZES = [2037, 6111, 18333, 55000]


def size_runs(slopes: dict, n_seeds: int = 5, noise_pp: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Notebook 07's per-run table: SGD at 85% plus a seed effect, each rule at SGD + its gap, the gap
    ``intercept + slope * log3(n / 2037)`` pp with independent noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        seed_effect = rng.normal(0, 0.5)
        for i, n in enumerate(SIZES):
            sgd = 85 + 1.5 * i + seed_effect + rng.normal(0, 0.3)
            rows.append(dict(rule="sgd", n_train=n, seed=s, test_acc=sgd / 100, outcome="trained"))
            for rule, (a, b) in slopes.items():
                gap = a + b * np.log(n / SIZES[0]) / np.log(3) + rng.normal(0, noise_pp)
                rows.append(dict(rule=rule, n_train=n, seed=s, test_acc=(sgd + gap) / 100, outcome="trained"))
    return pd.DataFrame(rows)


def test_size_trend_finds_a_growing_gap_and_none_where_there_is_none():
    t = studies.size_trend(size_runs({"adam": (-0.5, 0.5), "gravity": (-0.5, 0.0), "cosine": (0.5, -0.6)}))
    assert list(t.columns) == studies.TREND_COLUMNS
    r = t.set_index("rule")
    assert r.loc["adam", "verdict"] == "gains" and r.loc["cosine", "verdict"] == "loses"
    assert r.loc["gravity", "verdict"] == "no trend shown" and r.loc["gravity", "mde_pp"] > 0
    assert r.loc["adam", "slope_pp"] == pytest.approx(0.5, abs=0.1)
    assert r.loc["adam", "diff_smallest_pp"] == pytest.approx(-0.5, abs=0.15)
    assert r.loc["adam", "diff_largest_pp"] == pytest.approx(1.0, abs=0.15)
    assert (r["ci_lo_pp"] <= r["slope_pp"]).all() and (r["slope_pp"] <= r["ci_hi_pp"]).all()
    # the interval is at Holm's level and excludes 0 exactly for a change
    changed = r["verdict"] != "no trend shown"
    assert ((r["ci_lo_pp"] > 0) | (r["ci_hi_pp"] < 0)).eq(changed).all()
    assert (r["p_holm"] >= r["p"]).all() and r["ci_level"].between(0.95, 1).all()


def test_size_trend_uses_only_seeds_trained_at_every_size():
    df = size_runs({"adam": (0.0, 0.5)}, n_seeds=3)
    df.loc[(df.rule == "adam") & (df.seed == 0) & (df.n_train == 6111), "outcome"] = "diverged"
    r = studies.size_trend(df).iloc[0]
    assert r.n_seeds == 2
    df.loc[(df.rule == "adam") & (df.seed == 1), "outcome"] = "diverged"
    r = studies.size_trend(df).iloc[0]
    assert r.n_seeds == 1 and r.verdict == "too few seeds" and np.isnan(r.p_holm)


def test_size_answer_from_the_trend():
    trend = studies.size_trend(size_runs({"adam": (-0.5, 0.5), "gravity": (-0.5, 0.0), "momentum": (0.5, -0.6)}))
    t = _rows([(f"{r} (n=2037)", 0.1, "sgd (n=2037)", 0.1, 2037, -0.5, "inconclusive") for r in ("adam", "gravity")]
              + [(f"{r} (all data)", 0.1, "sgd (all data)", 0.1, 55000, 1.0, "inconclusive")
                 for r in ("adam", "gravity")])
    text = readings.size_answer(t, trend=trend)
    assert text.startswith("**Yes, for Adam and Momentum.** No rule is shown to differ from SGD on the full training "
                           "set (2 inconclusive")
    assert "as the set grows, Adam gains on SGD; Momentum loses ground to SGD." in text
    a = trend.set_index("rule").loc["adam"]
    assert f"Adam {a.slope_pp:+.2f} pp per tripling of the training set [{a.ci_lo_pp:+.2f}, {a.ci_hi_pp:+.2f}]" in text
    assert "Gravity: no trend shown" in text and "Mean |difference to SGD|" in text
    flat = trend.assign(verdict="no trend shown")
    assert readings.size_answer(t, trend=flat).startswith("**Not shown either way.**")
    assert "no rule's gap to SGD is shown to change" in readings.size_answer(t, trend=flat)
    worse = t.assign(verdict=["inconclusive", "inconclusive", "worse", "inconclusive"])
    assert readings.size_answer(worse, trend=trend).startswith("**No.**")


def length_runs(changes: dict, n_seeds: int = 5, seed: int = 1) -> pd.DataFrame:
    """Rows of at_epoch(df, cut) for cuts 15 and 100 under two schedules: each rule = SGD + gap, the gap
    moving by ``changes[rule]`` pp from the short cut to the long one (noise 0.1 pp)."""
    rng = np.random.default_rng(seed)
    rows = []
    for sch in ("constant", "cosine"):
        for s in range(n_seeds):
            for cut, x in ((15, 0.0), (100, 1.0)):
                sgd = 86 + 2 * x + rng.normal(0, 0.4)
                rows.append(dict(rule="sgd", schedule=sch, seed=s, cut=cut, val_test_acc=sgd / 100, outcome="trained"))
                for rule, ch in changes.items():
                    gap = -1.0 + ch * x + rng.normal(0, 0.1)
                    rows.append(dict(rule=rule, schedule=sch, seed=s, cut=cut, val_test_acc=(sgd + gap) / 100,
                                     outcome="trained"))
    return pd.DataFrame(rows)


def test_length_change_tests_the_change_of_each_gap():
    c = studies.length_change(length_runs({"gravity": 1.0, "adam": 0.0}), metric="val_test_acc")
    assert list(c.columns) == ["schedule"] + studies.CHANGE_COLUMNS and len(c) == 4
    r = c.set_index(["schedule", "rule"])
    assert (r.xs("gravity", level="rule")["verdict"] == "gains").all()
    assert (r.xs("adam", level="rule")["verdict"] == "no change shown").all()
    g = r.loc[("cosine", "gravity")]
    assert g.change_pp == pytest.approx(1.0, abs=0.15) and g.diff_short_pp == pytest.approx(-1.0, abs=0.15)
    assert (g.short, g.long) == (15, 100) and g.ci_lo_pp > 0
    with pytest.raises(ValueError, match="cut"):
        studies.length_change(length_runs({"adam": 0.0}).query("cut == 15"), metric="val_test_acc")


def test_long_answer_from_the_tested_change():
    changes = studies.length_change(length_runs({"gravity": 1.0, "adam": 0.0}), metric="val_test_acc")
    t = _rows([("gravity (constant)", 0.2, "sgd (constant)", 0.1, 15, -1.0, "worse"),
               ("gravity (constant)", 0.2, "sgd (constant)", 0.1, 100, 0.0, "equivalent"),
               ("adam (constant)", 0.001, "sgd (constant)", 0.1, 15, -1.0, "inconclusive"),
               ("adam (constant)", 0.001, "sgd (constant)", 0.1, 100, -1.0, "worse")])
    text = readings.long_answer(t, changes)
    assert text.startswith("**Yes, for Gravity (constant), Gravity (cosine).** Their gap to SGD changes between "
                           "epoch 15 and epoch 100.")
    g = changes.set_index(["schedule", "rule"]).loc[("constant", "gravity")]
    assert (f"Gravity (constant) gains on SGD, {g.diff_short_pp:+.2f} → {g.diff_long_pp:+.2f} pp, change "
            f"{g.change_pp:+.2f} pp [") in text
    assert "2 of 4 show no change (only changes of" in text
    assert text.endswith("(a verdict that changes is not by itself evidence that the gap changed).")
    flat = changes.assign(verdict="no change shown")
    assert readings.long_answer(t, flat).startswith("**No change shown.** No rule's gap to SGD is shown to change")
    assert readings.long_answer(t).startswith("Between epoch 15 and epoch 100, 2 of 2 comparisons")   # no test given


def test_change_forest_figure(tmp_path):
    t = studies.size_trend(size_runs({"adam": (-0.5, 0.5), "gravity": (-0.5, 0.0), "cosine": (0.5, -0.6)}))
    fig = figures.change_forest_figure(t, "slope_pp", label_fn=lambda r: figures.rule_label(r["rule"]),
                                       title="gap per tripling", xlabel="change per tripling (pp)")
    ax = fig.axes[0]
    assert [x.get_text() for x in ax.get_yticklabels()] == ["Adam", "Gravity", "Cosine"]
    assert [x.get_text() for x in ax.texts] == ["gains", "no trend shown", "loses"]
    colors = {x.get_text(): x.get_color() for x in ax.texts}
    assert colors["gains"] == figures.VERDICT_COLORS["better"] and colors["loses"] == figures.VERDICT_COLORS["worse"]
    lo, hi = ax.get_xlim()
    assert lo < t.ci_lo_pp.min() and hi > t.ci_hi_pp.max()
    c = studies.length_change(length_runs({"gravity": 1.0}, n_seeds=1), metric="val_test_acc")   # 1 seed: untested
    fig = figures.change_forest_figure(c, "change_pp", label_fn=lambda r: r["rule"], group="schedule", title="t",
                                       xlabel="x")
    assert len(fig.axes) == 2 and fig.axes[0].texts[0].get_text() == "too few seeds"
    assert figures.savefig(fig, "x", tmp_path).stat().st_size > 0
