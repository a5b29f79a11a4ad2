"""outcomes.py and compare.py: outcome words, families, Holm, TOST, verdicts, range-respecting intervals.

Everything runs on small synthetic frames (no training)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from optreport.analysis import compare as cmp
from optreport.analysis import outcomes as oc
from optreport.analysis.compare import Arm, Family, Pair

# ----------------------------------------------------------------------------- synthetic frames

RNG = np.random.default_rng(0)


def make_runs(spec: dict) -> pd.DataFrame:
    """Rows shaped like outcomes.run_outcomes from ``{(rule, lr) or (rule, lr, extra pairs): [acc or
    (acc, outcome), ...]}``; seeds are the list positions."""
    rows = []
    for arm, values in spec.items():
        rule, lr, extra = (*arm, ())[:3]
        extra = dict(extra)
        for seed, v in enumerate(values):
            acc, outcome = v if isinstance(v, tuple) else (v, oc.TRAINED)
            rows.append(dict(key=f"{rule}-{lr}-{json.dumps(extra)}-{seed}", model="mlp", rule=rule, lr=lr,
                             seed=seed, hparams=json.dumps({"lr": lr, **extra}, sort_keys=True),
                             final_test_acc=acc, val_test_acc=acc, last3_test_acc=acc, outcome=outcome))
    return pd.DataFrame(rows)


def noisy(mean: float, sd: float, n: int = 10, seed: int = 0) -> list:
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def pair_table(a_vals, b_vals, **family_kw) -> pd.Series:
    runs = make_runs({("a", 0.1): a_vals, ("b", 0.1): b_vals})
    fam = Family("t", (Pair(Arm("a", 0.1), Arm("b", 0.1)),), **family_kw)
    return cmp.compare(runs, fam).iloc[0]


def epoch_frame() -> pd.DataFrame:
    """Per-epoch rows of four runs (the columns outcomes.run_outcomes reads)."""
    def run(key, rule, accs, vals, losses, diverged=False):
        return [dict(key=key, model="mlp", rule=rule, lr=0.1, seed=0, epochs=len(accs), hparams='{"lr": 0.1}',
                     epoch=e + 1, train_loss=loss, train_acc=a, val_loss=1.0, val_acc=v, test_loss=1.0,
                     test_acc=a, train_seconds=1.0, step_seconds=1.0, eval_seconds=1.0, diverged=diverged,
                     diverged_epoch=None) for e, (a, v, loss) in enumerate(zip(accs, vals, losses))]
    rows = (run("ok", "sgd", [0.5, 0.8, 0.85, 0.82, 0.84], [0.5, 0.81, 0.9, 0.8, 0.85], [1, 0.5, 0.4, 0.4, 0.3])
            + run("div", "momentum", [0.5, np.nan], [0.5, np.nan], [1.0, np.nan], diverged=True)
            + run("blow", "rmsprop", [0.1, 0.1], [0.1, 0.1], [5e4, 5e4])
            + run("chance", "adam", [0.1, 0.12], [0.1, 0.11], [2.3, 2.3]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- outcomes

@pytest.mark.parametrize("args, word", [
    ((True, 0.3, 0.9), "diverged"), ((False, np.nan, 0.9), "diverged"), ((False, np.inf, 0.1), "diverged"),
    ((False, 2 * oc.BLOWUP_LOSS, 0.1), "blew up"), ((False, 2.3, 0.12), "failed to learn"),
    ((False, 2.3, np.nan), "failed to learn"), ((False, 0.3, 0.85), "trained"),
    ((False, 0.3, oc.CHANCE + oc.CHANCE_MARGIN), "trained")])
def test_classify_each_outcome_in_order(args, word):
    assert oc.classify(*args) == word


def test_run_outcomes_metrics_and_outcomes():
    runs = oc.run_outcomes(epoch_frame()).set_index("key")
    assert list(runs.index) == ["ok", "div", "blow", "chance"]
    assert runs.loc[["ok", "div", "blow", "chance"], "outcome"].tolist() == \
        ["trained", "diverged", "blew up", "failed to learn"]
    ok = runs.loc["ok"]
    assert ok.final_epoch == 5 and ok.final_test_acc == pytest.approx(0.84)
    assert ok.val_epoch == 3 and ok.val_test_acc == pytest.approx(0.85)          # argmax val_acc
    assert ok.last3_test_acc == pytest.approx((0.85 + 0.82 + 0.84) / 3)
    assert runs.loc["blow", "last3_test_acc"] == pytest.approx(0.1)              # fewer than 3 epochs: all
    assert np.isnan(runs.loc["div", "last3_test_acc"])                           # a NaN epoch stays NaN
    for c in ["final_train_loss", "final_test_loss", "final_test_acc", "val_epoch", "val_test_acc",
              "last3_test_acc", "diverged", "outcome", "rule", "lr", "seed", "hparams"]:
        assert c in runs.columns
    assert set(oc.METRICS.values()) <= set(runs.columns)
    assert set(oc.METRIC_TEXT) == set(oc.METRICS)                  # every metric has its words for prose


def test_run_outcomes_empty_frame_has_the_columns():
    out = oc.run_outcomes(epoch_frame().iloc[:0])
    assert out.empty and {"outcome", "val_test_acc", "last3_test_acc"} <= set(out.columns)


# ----------------------------------------------------------------------------- verdicts

def test_better_and_worse_with_the_interval_the_verdict_used():
    a, b = noisy(0.88, 0.003, seed=1), noisy(0.85, 0.003, seed=2)
    r = pair_table(a, b)
    assert r.verdict == "better" and r.diff_pp == pytest.approx(100 * (np.mean(a) - np.mean(b)))
    assert r.interval == "t" and r.ci_level == pytest.approx(1 - r.alpha_adj)
    assert 0 < r.ci_lo_pp < r.diff_pp < r.ci_hi_pp
    w = pair_table(b, a)
    assert w.verdict == "worse" and w.ci_hi_pp < 0
    for c in ["a", "b", "lr_a", "lr_b", "n_seeds", "diff_pp", "ci_lo_pp", "ci_hi_pp", "p_holm", "verdict", "mde_pp"]:
        assert c in r.index


def test_equivalent_within_the_margin_with_the_tost_interval():
    base = noisy(0.87, 0.01, seed=3)
    r = pair_table([x + 0.0005 for x in base] + [], [x + RNG.normal(0, 0.0002) for x in base])
    assert r.verdict == "equivalent" and r.interval == "TOST"
    assert r.ci_level == pytest.approx(1 - 2 * r.alpha_adj)
    assert -r.margin_pp < r.ci_lo_pp <= r.ci_hi_pp < r.margin_pp


def test_a_wider_margin_turns_inconclusive_into_equivalent():
    a, b = noisy(0.87, 0.01, seed=4), noisy(0.87, 0.01, seed=5)
    assert pair_table(a, b).verdict == "inconclusive"
    assert pair_table(a, b, margin_pp=5.0).verdict == "equivalent"


def test_inconclusive_reports_the_minimum_detectable_effect():
    a, b = noisy(0.86, 0.02, n=3, seed=6), noisy(0.87, 0.02, n=3, seed=7)
    r = pair_table(a, b)
    assert r.verdict == "inconclusive" and r.interval == "t"
    assert r.ci_lo_pp < 0 < r.ci_hi_pp
    d = 100 * (np.array(a) - np.array(b))
    assert r.sd_pp == pytest.approx(d.std(ddof=1))
    power = TTestPower().power(effect_size=r.mde_pp / r.sd_pp, nobs=3, alpha=r.alpha_adj, alternative="two-sided")
    assert power == pytest.approx(cmp.POWER, abs=1e-3)
    assert r.mde_pp > abs(r.diff_pp)


def test_mde_shrinks_with_more_seeds():
    assert cmp.mde_pp(10, 1.0, 0.05) < cmp.mde_pp(5, 1.0, 0.05) < cmp.mde_pp(3, 1.0, 0.05)
    assert cmp.mde_pp(10, 0.0, 0.05) == 0.0 and np.isnan(cmp.mde_pp(1, 1.0, 0.05))


@pytest.mark.parametrize("a, b, word", [
    ([(np.nan, "diverged")] * 3, [0.87] * 3, "A diverged"),
    ([0.87, 0.86, 0.88], [(0.1, "failed to learn")] * 3, "B failed to learn"),
    ([(np.nan, "diverged")] * 3, [(np.nan, "diverged")] * 3, "both diverged"),
    ([(np.nan, "diverged")] * 3, [(0.1, "blew up")] * 3, "A diverged, B blew up"),
    ([0.87, (np.nan, "diverged"), 0.88], [0.86, 0.85, 0.87], "A diverged"),   # one seed is enough
    ([(0.1, "blew up"), (np.nan, "diverged"), 0.88], [0.86, 0.85, 0.87], "A diverged"),  # the worst is named
])
def test_outcome_verdicts(a, b, word):
    r = pair_table(a, b)
    assert r.verdict == word
    assert np.isnan(r.p_holm) and np.isnan(r.diff_pp)


def test_outcome_counts_and_no_paired_runs():
    r = pair_table([(np.nan, "diverged")] * 2 + [0.8], [0.87] * 3)
    assert (r.n_out_a, r.n_out_b, r.n_seeds) == (2, 0, 3)
    runs = make_runs({("a", 0.1): [0.8, 0.81]})
    t = cmp.compare(runs, Family("t", (Pair(Arm("a", 0.1), Arm("b", 0.1)),)))
    assert t.verdict.iloc[0] == "no paired runs" and t.n_seeds.iloc[0] == 0


def test_holm_over_the_family_by_statsmodels_and_outcome_pairs_not_counted():
    spec = {("ref", 0.1): noisy(0.87, 0.01, seed=10)}
    for i, shift in enumerate([0.0, 0.004, 0.01, 0.02]):
        spec[(f"r{i}", 0.1)] = [x - shift + RNG.normal(0, 0.004) for x in spec[("ref", 0.1)]]
    spec[("dead", 0.1)] = [(np.nan, "diverged")] * 10
    runs = make_runs(spec)
    fam = Family("f", tuple(Pair(Arm(r, 0.1), Arm("ref", 0.1)) for r in ["r0", "r1", "r2", "r3", "dead"]))
    t = cmp.compare(runs, fam)
    tested = t[t.p.notna()]
    assert len(tested) == 4
    np.testing.assert_allclose(tested.p_holm, multipletests(tested.p, method="holm")[1])
    assert t.verdict.iloc[-1] == "A diverged"
    assert set(t.verdict) <= {*cmp.VERDICTS, "A diverged"}
    assert not t.verdict.str.contains("indistinguishable").any()


def test_holm_alphas_agree_with_rejections():
    rng = np.random.default_rng(1)
    for _ in range(15):                     # multipletests runs gc.collect() on every call: keep it few
        p = rng.uniform(0, 0.08, rng.integers(1, 12))
        reject, p_adj, a_adj = cmp.holm_alphas(p, 0.05)
        np.testing.assert_array_equal(reject, p < a_adj)
        np.testing.assert_array_equal(reject, p_adj < 0.05)
        assert (a_adj >= 0.05 / p.size - 1e-15).all() and (a_adj <= 0.05).all()


def test_identical_runs_are_equivalent_and_constant_gaps_decided_exactly():
    same = noisy(0.87, 0.01, seed=11)
    r = pair_table(same, same)
    assert r.verdict == "equivalent" and r.ci_lo_pp == r.ci_hi_pp == 0
    r = pair_table([x + 0.02 for x in same], same)
    assert r.verdict == "better" and r.diff_pp == pytest.approx(2.0)


# ----------------------------------------------------------------------------- families

def test_arms_select_exact_hparams_and_refuse_duplicate_seeds():
    runs = make_runs({("gravity", 0.1): noisy(0.87, 0.01, seed=12),
                      ("gravity", 0.1, (("accumulate", False),)): [(np.nan, "diverged")] * 10,
                      ("sgd", 0.1): noisy(0.88, 0.01, seed=13)})
    fam = Family("f", (Pair(Arm("gravity", 0.1), Arm("sgd", 0.1)),
                       Pair(Arm("gravity", 0.1, (("accumulate", False),), label="gravity (no acc)"),
                            Arm("sgd", 0.1))))
    t = cmp.compare(runs, fam)
    assert t.verdict.iloc[0] in cmp.VERDICTS and t.verdict.iloc[1] == "A diverged"
    assert t.a.iloc[1] == "gravity (no acc)"
    dup = pd.concat([runs, runs[runs.rule == "sgd"]])
    with pytest.raises(ValueError, match="share a seed"):
        cmp.compare(dup, fam)


def test_family_rejects_a_pair_twice_and_unknown_metrics():
    p = Pair(Arm("a", 0.1), Arm("b", 0.1))
    with pytest.raises(ValueError, match="twice"):
        Family("f", (p, Pair(Arm("b", 0.1), Arm("a", 0.1))))
    with pytest.raises(ValueError, match="metric"):
        Family("f", (p,), metric="best")


def test_metric_choice_reads_its_column():
    runs = make_runs({("a", 0.1): noisy(0.87, 0.01, seed=14), ("b", 0.1): noisy(0.86, 0.01, seed=15)})
    runs.loc[runs.rule == "a", "last3_test_acc"] += 0.05
    fam = lambda m: Family("f", (Pair(Arm("a", 0.1), Arm("b", 0.1)),), metric=m)  # noqa: E731
    assert cmp.compare(runs, fam("last3")).diff_pp.iloc[0] == pytest.approx(
        cmp.compare(runs, fam("final")).diff_pp.iloc[0] + 5.0)


def test_vs_baselines_declares_three_baselines_per_rule_and_lr():
    fam = cmp.vs_baselines(["gravity", "cosine"], [0.01, 0.1])
    assert len(fam.pairs) == 12
    b = {(p.b.name, round(p.b.lr, 9)) for p in fam.pairs if p.a == Arm("gravity", 0.1)}
    assert b == {("sgd", 0.1), ("momentum", 0.1), ("momentum (matched)", 0.01)}


def test_vs_best_takes_the_best_arm_that_trained():
    runs = make_runs({("sgd", 0.2): [0.88, 0.88, 0.89], ("momentum", 0.2): [(0.95, "blew up"), 0.95, 0.95],
                      ("adam", 0.2): [0.80, 0.81, 0.80]})
    fam = cmp.vs_best(runs, ["sgd", "momentum", "adam"], [0.2])
    assert {p.b.rule for p in fam.pairs} == {"sgd"} and {p.a.rule for p in fam.pairs} == {"momentum", "adam"}


def test_a_pair_gets_one_verdict_wherever_it_appears():
    spec = {(r, lr): noisy(m, 0.01, seed=i) for i, (r, lr, m) in enumerate(
        [("sgd", 0.1, 0.88), ("momentum", 0.1, 0.84), ("momentum", 0.01, 0.87), ("gravity", 0.1, 0.872),
         ("cosine", 0.1, 0.873), ("adam", 0.1, 0.1)])}
    runs = make_runs(spec)
    cmps = cmp.report_comparisons(runs, ["sgd", "momentum", "gravity", "cosine", "adam"], [0.1], ["gravity", "cosine"])
    home = cmps.tables["novel vs baselines"]
    best = cmps.tables["each rule vs the best of its lr"]
    g_vs_sgd = home[(home.a == "gravity") & (home.b == "sgd")].iloc[0]
    again = best[(best.a == "gravity") & (best.b == "sgd")].iloc[0]
    assert again.family == "novel vs baselines"
    pd.testing.assert_series_equal(g_vs_sgd, again, check_names=False)
    back = cmps.lookup(Arm("sgd", 0.1), Arm("gravity", 0.1))
    assert back.diff_pp == pytest.approx(-g_vs_sgd.diff_pp)
    assert (back.ci_lo_pp, back.ci_hi_pp) == pytest.approx((-g_vs_sgd.ci_hi_pp, -g_vs_sgd.ci_lo_pp))
    assert back.verdict == {"better": "worse", "worse": "better"}.get(g_vs_sgd.verdict, g_vs_sgd.verdict)
    fresh = best[best.family == "each rule vs the best of its lr"]
    assert len(fresh) and fresh.p_holm.dropna().size < best.p_holm.dropna().size   # own Holm, new pairs only
    assert cmps.declare(cmps.families["novel vs baselines"]) is home


def test_swapped_outcome_verdicts_read_from_the_other_side():
    runs = make_runs({("gravity", 0.2): [0.87] * 3, ("momentum", 0.2): [(np.nan, "diverged")] * 3,
                      ("nag", 0.2): [(0.1, "blew up")] * 3})
    cmps = cmp.Comparisons(runs)
    cmps.declare(Family("f", (Pair(Arm("gravity", 0.2), Arm("momentum", 0.2)),
                              Pair(Arm("momentum", 0.2), Arm("nag", 0.2)))))
    assert cmps.lookup(Arm("gravity", 0.2), Arm("momentum", 0.2)).verdict == "B diverged"
    assert cmps.lookup(Arm("momentum", 0.2), Arm("gravity", 0.2)).verdict == "A diverged"
    assert cmps.lookup(Arm("nag", 0.2), Arm("momentum", 0.2)).verdict == "A blew up, B diverged"


# ----------------------------------------------------------------------------- intervals

def t_lower(values):
    """The plain Student-t 95% lower bound, which ignores the range."""
    x = np.asarray(values, dtype=float)
    return x.mean() - st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))


def test_accuracy_intervals_stay_in_0_1():
    near_chance = [0.10, 0.10, 0.32]                       # a plain t interval goes below 0 here
    assert t_lower(near_chance) < 0
    for scale in ("clip", "logit"):
        m, lo, hi = cmp.accuracy_ci(near_chance, scale=scale)
        assert 0 <= lo <= hi <= 1 and m == pytest.approx(np.mean(near_chance))
    m, lo, hi = cmp.accuracy_ci([0.99, 1.0, 0.90])
    assert hi <= 1 and lo <= m <= hi


def test_loss_intervals_stay_at_or_above_0():
    rmsprop_like = [2.3, 2.31, 19.0]                       # one seed far off: a t interval dips below 0
    assert t_lower(rmsprop_like) < 0
    for scale in ("clip", "log"):
        m, lo, hi = cmp.loss_ci(rmsprop_like, scale=scale)
        assert 0 <= lo <= hi and m == pytest.approx(np.mean(rmsprop_like))
    m, lo, hi = cmp.loss_ci([0.3, 0.31, 0.29])
    x = np.array([0.3, 0.31, 0.29])
    half = st.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))    # inside the range: unchanged


def test_interval_edge_cases():
    assert np.isnan(cmp.accuracy_ci([0.5])[1]) and np.isnan(cmp.accuracy_ci([])[0])
    assert cmp.accuracy_ci([0.5, np.nan, 0.6])[0] == pytest.approx(0.55)
    with pytest.raises(ValueError):
        cmp.mean_ci_in_range([0.1, 0.2], scale="logit", lower=0.0)
    with pytest.raises(ValueError):
        cmp.mean_ci_in_range([0.1, 0.2], scale="sqrt")


def test_bootstrap_refuses_fewer_than_five_seeds():
    s, lo, hi = cmp.bootstrap_ci([0.85, 0.86, 0.88])
    assert s == pytest.approx(np.mean([0.85, 0.86, 0.88])) and np.isnan(lo) and np.isnan(hi)
    x = noisy(0.87, 0.01, n=10, seed=20)
    s, lo, hi = cmp.bootstrap_ci(x, n_resamples=999)
    assert lo < s < hi and hi - lo < 0.05
    assert cmp.bootstrap_ci(x, n_resamples=999) == cmp.bootstrap_ci(x, n_resamples=999)     # seeded
    assert cmp.bootstrap_ci([0.5] * 6) == (0.5, 0.5, 0.5)


# ----------------------------------------------------------------------------- list-valued hyper-parameters

def test_select_matches_list_valued_hparams_given_as_tuples():
    """Adam's betas are stored as a JSON list; an arm gives them as a tuple (hashable) and still matches
    its runs, and only its runs (other betas, or no betas, are other arms)."""
    rows = []
    for betas, base in (([0.817, 0.999], 0.85), ([0.9, 0.999], 0.80)):
        for seed in range(3):
            acc = base + 0.001 * seed
            rows.append(dict(key=f"adam-{betas[0]}-{seed}", model="mlp", rule="adam", lr=0.64, seed=seed,
                             hparams=json.dumps({"lr": 0.64, "betas": betas, "eps": 1.0}),
                             final_test_acc=acc, val_test_acc=acc, last3_test_acc=acc, outcome=oc.TRAINED))
    runs = pd.DataFrame(rows)
    arm = Arm("adam", 0.64, extra=(("betas", (0.817, 0.999)), ("eps", 1.0)))
    sel = cmp._select(runs, arm)
    assert len(sel) == 3 and (sel["final_test_acc"] > 0.84).all()
    assert len(cmp._select(runs, Arm("adam", 0.64, extra=(("betas", (0.817, 0.9)), ("eps", 1.0))))) == 0
    assert len(cmp._select(runs, Arm("adam", 0.64, extra=(("betas", (0.817, 0.999, 0.5)), ("eps", 1.0))))) == 0
    assert len(cmp._select(runs, Arm("adam", 0.64, extra=(("eps", 1.0),)))) == 0
    other = Arm("adam", 0.64, extra=(("betas", (0.9, 0.999)), ("eps", 1.0)))
    t = cmp.compare(runs, Family("betas", (Pair(arm, other),)))
    assert t["n_seeds"].iloc[0] == 3 and t["verdict"].iloc[0] == "better"


def test_difference_intervals_stay_within_plus_minus_100_pp():
    row = pair_table([0.9, 0.1], [0.1, 0.12])         # 2 seeds, wildly apart: a t interval spans hundreds of pp
    assert -100 <= row.ci_lo_pp <= row.ci_hi_pp <= 100 and row.verdict == "inconclusive"
