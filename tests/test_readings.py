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
