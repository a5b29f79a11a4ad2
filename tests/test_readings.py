"""readings.py: one test per verdict wording, the family summary, what the novel rules reduce to."""
import json

import numpy as np
import pandas as pd
import pytest

from optreport.analysis import compare as cmp
from optreport.analysis.compare import Arm, Family, Pair
from optreport.report import readings as rd


def runs_of(spec: dict) -> pd.DataFrame:
    """Rows shaped like outcomes.run_outcomes from ``{(rule, lr): [acc or (acc, outcome), ...]}``."""
    rows = []
    for (rule, lr), values in spec.items():
        for seed, v in enumerate(values):
            acc, outcome = v if isinstance(v, tuple) else (v, "trained")
            rows.append(dict(key=f"{rule}-{lr}-{seed}", rule=rule, lr=lr, seed=seed, hparams=json.dumps({"lr": lr}),
                             final_test_acc=acc, val_test_acc=acc, last3_test_acc=acc, outcome=outcome))
    return pd.DataFrame(rows)


def row(a_vals, b_vals, a=("gravity", 0.1), b=("momentum", 0.1)) -> pd.Series:
    fam = Family("novel vs baselines", (Pair(Arm(*a), Arm(*b)),))
    return cmp.compare(runs_of({a: a_vals, b: b_vals}), fam).iloc[0]


def noisy(mean, sd, n=10, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def test_better():
    s = rd.verdict_sentence(row(noisy(0.88, 0.003, seed=1), noisy(0.85, 0.003, seed=2)))
    assert s.startswith("Gravity at lr 0.1 is better than Momentum at lr 0.1: +")
    assert "% CI, Holm-adjusted, p < 0.001; 10 seeds)." in s


def test_worse():
    s = rd.verdict_sentence(row(noisy(0.85, 0.003, seed=1), noisy(0.88, 0.003, seed=2)))
    assert s.startswith("Gravity at lr 0.1 is worse than Momentum at lr 0.1: -")


def test_equivalent():
    base = noisy(0.87, 0.01, seed=3)
    s = rd.verdict_sentence(row(base, [x + 1e-4 * (i % 2) for i, x in enumerate(base)]))
    assert s.startswith("Gravity at lr 0.1 and Momentum at lr 0.1 are equivalent within ±0.5 pp: ")
    assert "% TOST interval, Holm-adjusted; 10 seeds)." in s
    r = row(base, [x + e for x, e in zip(base, noisy(0.0, 0.001, seed=4))])      # no steady difference
    assert r.verdict == "equivalent" and r.p_holm >= r.alpha
    assert "also significant" not in rd.verdict_sentence(r)


def test_equivalent_and_also_significant_says_both():
    """A small, steady difference inside the margin: equivalent, and the sentence does not hide that the
    difference itself is significant (Adam with and without cosine decay in notebook 06)."""
    base = noisy(0.87, 0.01, seed=3)
    r = row([x + 0.003 + 1e-4 * (i % 3) for i, x in enumerate(base)], base)
    assert r.verdict == "equivalent" and r.p_holm < r.alpha
    s = rd.verdict_sentence(r)
    assert s.endswith(f"; 10 seeds). The difference is also significant ({rd.fmt_p(r.p_holm)}): Gravity at lr 0.1 "
                      "is higher, by less than the margin.")


def test_inconclusive_names_the_detectable_difference():
    r = row(noisy(0.86, 0.02, n=3, seed=6), noisy(0.87, 0.02, n=3, seed=7))
    s = rd.verdict_sentence(r)
    assert s.startswith("Gravity at lr 0.1 vs Momentum at lr 0.1 is inconclusive: ")
    assert (f"with 3 seeds only a difference of about {r.mde_pp:.1f} pp or more would have been detected "
            "(80% power)") in s
    assert "indistinguishable" not in s


def test_inconclusive_with_one_seed():
    s = rd.verdict_sentence(row([0.86], [0.87]))
    assert s == "Gravity at lr 0.1 vs Momentum at lr 0.1 is inconclusive: 1 paired seed(s), too few to test."


def test_a_diverged():
    s = rd.verdict_sentence(row([(np.nan, "diverged")] * 3, [0.87, 0.88, 0.86]))
    assert s == ("Gravity at lr 0.1 diverged in 3 of 3 seeds, while Momentum at lr 0.1 trained in every seed "
                 "(87.0%); decided by outcome, no test.")


def test_b_diverged():
    s = rd.verdict_sentence(row([0.874] * 3, [(np.nan, "diverged")] * 3, a=("gravity", 0.2), b=("momentum", 0.2)))
    assert s == ("Momentum at lr 0.2 diverged in 3 of 3 seeds, while Gravity at lr 0.2 trained in every seed "
                 "(87.4%); decided by outcome, no test.")


def test_failed_to_learn_names_chance():
    s = rd.verdict_sentence(row([0.87] * 3, [(0.1, "failed to learn")] * 2 + [0.5]))
    assert s.startswith("Momentum at lr 0.1 failed to learn in 2 of 3 seeds, near chance (10%), while Gravity")


def test_both_diverged():
    s = rd.verdict_sentence(row([(np.nan, "diverged")] * 3, [(np.nan, "diverged")] * 3))
    assert s == "Both Gravity at lr 0.1 and Momentum at lr 0.1 diverged (3 and 3 of 3 seeds); no comparison."


def test_different_outcomes_on_both_sides():
    s = rd.verdict_sentence(row([(np.nan, "diverged")] * 3, [(1e-1, "blew up")] * 3))
    assert s == ("Gravity at lr 0.1 diverged in 3 of 3 seeds and Momentum at lr 0.1 blew up in 3 of 3 seeds; "
                 "no comparison.")


def test_no_paired_runs():
    fam = Family("f", (Pair(Arm("gravity", 0.1), Arm("sgd", 0.1)),))
    r = cmp.compare(runs_of({("gravity", 0.1): [0.87, 0.86]}), fam).iloc[0]
    assert rd.verdict_sentence(r) == "Gravity at lr 0.1 vs SGD at lr 0.1: no runs share a seed yet; no comparison."


def test_matched_arm_text():
    assert rd.arm_text("momentum (matched)", 0.01) == "Momentum at lr 0.01 (matched)"
    assert rd.arm_text("nag", 0.2) == "Nesterov (NAG) at lr 0.2"


def test_fmt_p():
    assert (rd.fmt_p(0.0321), rd.fmt_p(1e-5), rd.fmt_p(float("nan"))) == ("p = 0.032", "p < 0.001", "p n/a")


def test_family_summary_counts_outcomes_and_detectable_differences():
    spec = {("ref", 0.1): noisy(0.87, 0.01, n=3, seed=1), ("a", 0.1): noisy(0.86, 0.02, n=3, seed=2),
            ("b", 0.1): [(np.nan, "diverged")] * 3, ("c", 0.1): [(np.nan, "diverged")] * 3}
    fam = Family("vs ref", tuple(Pair(Arm(r, 0.1), Arm("ref", 0.1)) for r in "abc")
                 + (Pair(Arm("d", 0.1), Arm("ref", 0.1)),))
    t = cmp.compare(runs_of(spec), fam)
    s = rd.family_summary(t)
    assert s.startswith("vs ref: 4 comparisons; Holm over the 1 tested at α = 0.05, equivalence margin ±0.5 pp: "
                        "0 better, 0 worse, 0 equivalent, 1 inconclusive.")
    assert "Decided by outcome (2): b at lr 0.1 diverged (3/3); c at lr 0.1 diverged (3/3)." in s
    assert "Not yet run: 1." in s
    assert f"differences of {t.mde_pp.iloc[0]:.1f}–{t.mde_pp.iloc[0]:.1f} pp or more" in s
    assert rd.family_summary(t.iloc[:0], "empty") == "empty: no comparisons."


def test_gravity_reduction_states_the_multiplier_and_the_step():
    s = rd.gravity_reduction({0.01: 0.0071, 0.1: 0.0098, 0.2: 0.011})
    assert "1/k = 1/√(1/lr² + S) starts just below lr" in s
    assert "0.0071 at lr 0.01 (71% of it), 0.0098 at lr 0.1 (9.8% of it), 0.011 at lr 0.2 (5.5% of it)" in s
    assert "Only the multiplier is at most lr: the step ‖g‖/k exceeds lr whenever ‖g‖ > 1." in s
    assert "factor 20, the final multipliers by 1.55: Gravity reduces to SGD with a decaying step" in s
    assert "at most lr in total" not in s
    assert "reduces to" not in rd.gravity_reduction({0.01: 0.005, 0.2: 0.15})   # the lr still matters


def test_cosine_reduction_sgd_like():
    rng = np.random.default_rng(0)
    cos = {lr: rng.uniform(-0.6, 0.45, 1000) for lr in (0.01, 0.1)}
    s = rd.cosine_reduction(cos)
    share = (cos[0.01] < 0).mean()
    assert f"at lr 0.01 {share:.0%} of the cosines are negative and the mean decay factor C·cos/2 is " \
           f"{1.8 * cos[0.01].mean() / 2:+.2f}" in s
    assert "(Momentum's buffer always decays by +0.90)" in s
    assert s.endswith("flips its buffer and behaves like SGD with step lr rather than like Momentum.")


def test_cosine_reduction_with_memory_and_mixed():
    keep = np.full(100, 0.8)                        # factor 0.72
    assert rd.cosine_reduction({0.1: keep}).endswith("It keeps a momentum-like memory at every lr.")
    mixed = rd.cosine_reduction({0.01: keep, 0.2: np.full(100, -0.2)})
    assert mixed.endswith("At lr 0.2 it flips its buffer and behaves like SGD; elsewhere it keeps a memory.")


@pytest.mark.parametrize("verdict", ["better", "worse", "equivalent", "inconclusive"])
def test_every_verdict_word_has_a_sentence_without_indistinguishable(verdict):
    cases = {"better": (noisy(0.88, 0.003, seed=1), noisy(0.85, 0.003, seed=2)),
             "worse": (noisy(0.85, 0.003, seed=1), noisy(0.88, 0.003, seed=2)),
             "equivalent": (noisy(0.87, 0.01, seed=3), noisy(0.87, 0.01, seed=3)),
             "inconclusive": (noisy(0.86, 0.02, n=3, seed=6), noisy(0.87, 0.02, n=3, seed=7))}
    r = row(*cases[verdict])
    assert r.verdict == verdict
    s = rd.verdict_sentence(r)
    assert verdict in s and "indistinguishable" not in s


# ----------------------------------------------------------------------------- notebooks 04 and 05

def _ttt(rows):
    """Rows of tables.time_to_target: (rule, target, n_runs, n_reached, median, lo, hi, min, max)."""
    return pd.DataFrame(rows, columns=["rule", "target", "n_runs", "n_reached", "median_s", "ci_lo_s", "ci_hi_s",
                                       "min_s", "max_s"])


LRS_RUN = {r: [0.01, 0.1, 0.2] for r in ("nag", "adam", "nadam", "adamw", "gravity", "sgd")}


def test_time_to_target_reading_names_the_lrs_a_never_reaching_rule_was_run_at():
    inf = np.inf
    t = _ttt([("nag", 0.88, 5, 5, 17.0, 13.0, 24.0, 13.0, 24.0),
              ("adam", 0.88, 5, 0, inf, inf, inf, inf, inf), ("nadam", 0.88, 5, 0, inf, inf, inf, inf, inf),
              ("gravity", 0.88, 5, 0, inf, inf, inf, inf, inf)])
    best = {"nag": 0.1, "adam": 0.01, "nadam": 0.01, "gravity": 0.2}
    s = rd.time_to_target_reading(t, 0.88, LRS_RUN, best)
    assert s.startswith("**88%:** fastest Nesterov (NAG) (median 17 s, 95% bootstrap CI 13 s to 24 s); "
                        "5 of 20 runs reached it; never reached by ")
    assert ("Adam, NAdam (each run at lr 0.01, 0.1, 0.2 only, shown at its best, 0.01, the smallest of them); "
            "Gravity (run at lr 0.01, 0.1, 0.2 only, shown at its best, 0.2, the largest of them).") in s
    assert "For Adam, NAdam, Gravity the best lr is at the edge of the lrs run" in s
    assert "not the rule" in s and "indistinguishable" not in s


def test_time_to_target_reading_without_bootstrap_interval_and_partly_reached():
    t = _ttt([("sgd", 0.85, 3, 3, 33.0, np.nan, np.nan, 30.0, 48.0),
              ("adam", 0.85, 3, 1, np.inf, np.nan, np.nan, 12.0, np.inf)])
    s = rd.time_to_target_reading(t, 0.85, LRS_RUN, {"sgd": 0.2, "adam": 0.01})
    assert "fastest SGD (median 33 s, no bootstrap interval from 3 runs; runs took 30–48 s)" in s
    assert "reached by fewer than half of the runs of Adam (1/3)" in s and "never" not in s
    assert s.endswith(".")


def test_time_to_target_reading_every_rule_reached_and_open_upper_bound():
    t = _ttt([("nag", 0.85, 5, 4, 6.0, 4.0, np.inf, 4.0, np.inf)])
    s = rd.time_to_target_reading(t, 0.85, LRS_RUN)
    assert s == ("**85%:** fastest Nesterov (NAG) (median 6 s, 95% bootstrap CI 4 s to not reached); "
                 "4 of 5 runs reached it.")


def test_time_to_target_reading_rule_inside_its_lrs_has_no_edge_note():
    t = _ttt([("adam", 0.9, 5, 0, np.inf, np.inf, np.inf, np.inf, np.inf)])
    s = rd.time_to_target_reading(t, 0.9, {"adam": [0.001, 0.01, 0.1]}, {"adam": 0.01})
    assert "Adam (run at lr 0.001, 0.01, 0.1 only, shown at its best, 0.01)." in s and "edge" not in s


def test_outcome_counts_sentence():
    t = pd.DataFrame({"rule": ["sgd", "rmsprop"], "n_runs": [5, 5], "n_diverged": [0, 1], "n_blew_up": [0, 2],
                      "n_failed": [0, 0]})
    s = rd.outcome_counts_sentence(t)
    assert "RMSProp (1 diverged, 2 blew up of 5)" in s and "SGD" not in s
    assert "counted as outcomes" in s and "not averaged in as NaN" in s
    ok = rd.outcome_counts_sentence(t.assign(n_diverged=0, n_blew_up=0))
    assert ok == "Outcomes: every one of the 10 runs trained (none diverged, blew up or failed to learn)."


def test_trial_outcomes_sentence_counts_outcomes_per_protocol():
    trials = pd.DataFrame({"protocol": ["a", "a", "a", "b", "b"],
                           "outcome": ["trained", "diverged", "failed to learn", "trained", "trained"]})
    s = rd.trial_outcomes_sentence(trials, ["a", "b"])
    assert "a: 1 diverged, 1 failed to learn of 3; b: none of 2." in s
    assert s.startswith("Trials that did not train (outcomes, not missing values)")


def test_seed004_reading_uses_the_verdict_and_the_threshold():
    v = row(noisy(0.88, 0.003, seed=1), noisy(0.85, 0.003, seed=2), a=("adam", 0.001), b=("sgd", 0.001))
    g = pd.Series({"lr": 0.001, "n_seeds": 10, "epoch_time_ratio": 1.15, "epoch_ratio_lo": 0.95,
                   "epoch_ratio_hi": 1.35, "extra_seconds": 7.0})
    s = rd.seed004_reading(g, v, 2.0)
    assert s.startswith("**lr 0.001:** Adam at lr 0.001 is better than SGD at lr 0.001: +")
    assert "1.15× SGD's seconds per epoch (95% CI 0.95–1.35) and +7.0 s in total over 10 seeds: not much slower" in s
    slow = pd.Series({**g, "epoch_ratio_lo": 2.5, "epoch_ratio_hi": 3.0})
    assert ": much slower (more" in rd.seed004_reading(slow, v, 2.0)
    assert "inconclusive against the threshold" in rd.seed004_reading(pd.Series({**g, "epoch_ratio_hi": 2.5}), v, 2.0)


def _epoch_table():
    return pd.DataFrame({"fastest_s": [3.0, 3.3, 2.9], "step_share": [0.2, 0.3, 0.25], "epoch_vs_sgd": [1.0, 1.1, 0.97],
                         "run_spread": [6.0, 1.1, 1.2], "state_bytes_per_param": [0, 8, 0]},
                        index=pd.Index(["sgd", "adam", "gravity"], name="rule"))


def test_epoch_cost_reading_uses_fastest_epochs_and_names_disturbed_runs():
    bench = pd.DataFrame({"total_us": [1000.0, 1150.0]}, index=["sgd", "adam"])
    text = rd.epoch_cost_reading(_epoch_table(), bench)
    assert text.startswith("Fastest observed epoch: 2.90 s (Gravity) to 3.30 s (Adam)")
    assert "Adam's fastest epoch takes 1.10× SGD's (3.30 s vs 3.00 s), against 1.15× in the microbenchmark" in text
    assert "The mean epoch times of SGD (slowest run 6.0× its fastest) are inflated" in text
    calm = _epoch_table().assign(run_spread=1.1)
    assert rd.epoch_cost_reading(calm, bench).endswith("so the mean times compare rules too.")


def test_cost_verdict_from_fastest_epochs():
    gain = pd.DataFrame({"lr": [1e-4, 1e-3], "epoch_time_ratio": [0.98, 1.15], "acc_gain_pp": [13.5, 3.9],
                         "acc_verdict": ["better", "better"]})
    text = rd.cost_verdict(_epoch_table(), gain)
    assert text.startswith("Per epoch (fastest observed, rules timed undisturbed), the rules differ by at most "
                           "1.14× (cheapest Gravity, dearest Adam)")
    slowed = _epoch_table().assign(disturbance=[3.0, 1.0, 1.0])      # SGD's runs all shared the machine
    assert "at most 1.14× (cheapest Gravity, dearest Adam)" in rd.cost_verdict(slowed, gain)
    bench = pd.DataFrame({"total_us": [1000.0, 1150.0]}, index=["sgd", "adam"])
    reading = rd.epoch_cost_reading(slowed, bench)
    assert "Even the fastest epochs of SGD (3.0× what the microbenchmark predicts, against a median 1.0×)" in reading
    assert "Adam against SGD per epoch cannot be read from these runs; the microbenchmark gives 1.15×" in reading
    assert "(verdict against SGD: better at lr 0.0001, better at lr 0.001)." in text

