"""Notebook 05 at a budget that can decide: trial plans, selection by validation, reruns, verdicts on
the reruns, the best-so-far curve, its figures and readings (tuning.py, figures.py, readings.py)."""
import functools
import itertools
import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from optreport.analysis import tuning  # noqa: E402
from optreport.analysis.compare import VERDICTS  # noqa: E402
from optreport.analysis.outcomes import run_outcomes  # noqa: E402
from optreport.report import experiments as ex  # noqa: E402
from optreport.report import figures as plotting  # noqa: E402
from optreport.report import plans, readings  # noqa: E402
from optreport.runs import sweep  # noqa: E402

RULES = tuning.BUDGET_RULES


def frame(cfgs, curve) -> pd.DataFrame:
    """Per-epoch rows shaped like results.load_results for RunConfigs; ``curve(cfg)`` returns
    ``(val_accs, test_accs, diverged)`` per epoch."""
    rows = []
    for c in cfgs:
        val, test, div = curve(c)
        for e, (v, t) in enumerate(zip(val, test), start=1):
            rows.append(dict(key=c.key, model=c.model, rule=c.rule, lr=c.hparams["lr"], seed=c.seed, epochs=c.epochs,
                             hparams=json.dumps(c.hparams, sort_keys=True), epoch=e,
                             train_loss=np.nan if div else 0.3, train_acc=t, val_loss=0.4, val_acc=v,
                             test_loss=0.4, test_acc=t, diverged=div, diverged_epoch=np.nan))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- plans and configs

def test_budget_plan_has_16_trials_per_rule_under_b_and_c():
    plan = tuning.budget_plan()
    assert tuning.BUDGET_K == 16 and tuning.BUDGET_EPOCHS == 5
    assert list(dict.fromkeys(plan["rule"])) == RULES
    k = plan.groupby(["protocol", "rule"]).size()
    assert (k == 16).all() and set(plan["protocol"]) == {"a", "b", "c"}
    a = plan[plan["protocol"] == "a"]
    assert set(h["lr"] for h in a["hparams"]) == set(tuning.FIXED_LRS)       # protocol a stays the grid
    # the rule list is a parameter; the existing plan_trials is unchanged
    small = tuning.budget_plan(["sgd", "adam"], ("b", "c"), budget=4)
    assert len(small) == 2 * 2 * 4
    assert small.equals(tuning.plan_trials(["sgd", "adam"], ("b", "c"), 4, 0))


def test_trial_configs_train_shared_configurations_once():
    plan, cfgs = tuning.trial_configs(tuning.budget_plan())
    assert all(c.epochs == 5 for c in cfgs)
    assert plan["key"].nunique() == len(cfgs)
    # SGD's full space is its lr: its b and c trials are the same runs
    sgd = plan[plan["rule"] == "sgd"]
    assert list(sgd[sgd.protocol == "b"]["key"]) == list(sgd[sgd.protocol == "c"]["key"])
    assert len(cfgs) == 3 * 8 * 16 - 16


def _trials(vals, tests=None, outcomes=None, rule="adam", protocol="c"):
    n = len(vals)
    tests = tests if tests is not None else [v - 0.01 for v in vals]
    outcomes = outcomes or ["trained"] * n
    t = pd.DataFrame({"protocol": protocol, "rule": rule, "trial": range(n), "seed": range(n),
                      "hparams": [{"lr": 0.001 * (i + 1)} for i in range(n)], "key": [f"k{i}" for i in range(n)],
                      "val_acc": vals, "test_acc": tests, "outcome": outcomes})
    t[tuning.SEL] = np.where(t["outcome"] == "trained", t["val_acc"], -np.inf)
    return t


def test_selection_uses_the_best_epoch_skips_failures_and_breaks_ties_to_the_earliest_trial():
    plan = pd.DataFrame({"protocol": "b", "rule": "sgd", "trial": [0, 1, 2],
                         "seed": [0, 1, 2], "hparams": [{"lr": 0.01}, {"lr": 0.1}, {"lr": 1.0}]})
    plan, cfgs = tuning.trial_configs(plan, epochs=3)
    curves = {0.01: ([0.80, 0.84, 0.82], [0.79, 0.83, 0.81], False),     # best epoch 2: 0.84
              0.1: ([0.84, 0.83, 0.80], [0.70, 0.70, 0.99], False),      # ties with trial 0, later
              1.0: ([0.90, 0.95, np.nan], [0.9, 0.9, np.nan], True)}     # diverged: never chosen
    trials = tuning.budget_trial_table(frame(cfgs, lambda c: curves[c.hparams["lr"]]), plan)
    t = trials.set_index("trial")
    assert t.loc[0, "val_acc"] == pytest.approx(0.84) and t.loc[0, "test_acc"] == pytest.approx(0.83)
    assert t.loc[0, "val_epoch"] == 2 and t.loc[0, "final_test_acc"] == pytest.approx(0.81)
    assert t.loc[2, "outcome"] == "diverged" and t.loc[2, tuning.SEL] == -np.inf
    chosen = tuning.select_trials(trials)
    assert len(chosen) == 1 and int(chosen["trial"].iloc[0]) == 0
    # a test column never reaches the choice
    trials2 = trials.assign(test_acc=[0.1, 0.99, 0.99], final_test_acc=[0.1, 0.99, 0.99])
    assert int(tuning.select_trials(trials2)["trial"].iloc[0]) == 0


def test_rerun_configs_are_15_epochs_times_5_seeds_and_protocol_a_reuses_notebook_02():
    chosen = pd.DataFrame({"protocol": ["a", "b", "c"], "rule": ["sgd"] * 3, "trial": [4, 3, 3],
                           "hparams": [{"lr": 0.1}, {"lr": 0.05}, {"lr": 0.05}]})
    plan, cfgs = tuning.rerun_configs(chosen)
    assert len(plan) == 15 and len(cfgs) == 10                    # b and c chose the same: trained once
    assert {c.epochs for c in cfgs} == {15} and {c.seed for c in cfgs} == {0, 1, 2, 3, 4}
    grid02 = {c.key for c in sweep.grid(["sgd"], [0.1], ex.SEEDS, epochs=ex.EPOCHS, batch_size=ex.BATCH_SIZE,
                                         max_steps=ex.MAX_STEPS)}
    assert set(plan.loc[plan.protocol == "a", "key"]) == grid02
    assert set(plan.groupby("protocol").size()) == {5}


# ----------------------------------------------------------------------------- reruns and verdicts

MEANS = {"sgd": 0.85, "momentum": 0.88, "nag": 0.88, "rmsprop": 0.87, "adam": 0.86, "nadam": 0.86,
         "gravity": 0.80, "cosine": 0.884}


def _reruns(diverge=("b", "rmsprop")):
    """Selected configurations for protocols b and c and their synthetic reruns (5 seeds, noise 0.1 pp):
    under b Adam is 2 pp below Momentum (a violated inclusion); RMSProp diverges under ``diverge``."""
    rng = np.random.default_rng(0)
    rows = [{"protocol": p, "rule": r, "trial": i, "hparams": {"lr": 0.01 * (i + 1) + (0.001 if p == "c" else 0)}}
            for p in ("b", "c") for i, r in enumerate(RULES)]
    chosen = pd.DataFrame(rows)
    plan, cfgs = tuning.rerun_configs(chosen)
    proto = {c.key: p for c, p in zip(cfgs, plan.drop_duplicates("key")["protocol"])}

    def curve(c):
        p = proto[c.key]
        m = MEANS[c.rule] + (0.03 if (p, c.rule) == ("c", "adam") else 0) + rng.normal(0, 0.001)
        div = (p, c.rule) == diverge
        return [m - 0.01, m], [m - 0.01, np.nan if div else m], div
    df = frame(cfgs, curve)
    return chosen, plan, df


def test_rerun_table_and_ranking():
    chosen, plan, df = _reruns()
    table = tuning.rerun_table(df, plan)
    assert list(table.columns[:4]) == ["rule", "protocol", "seed", "test_acc"]
    assert {"val_test_acc", "outcome"} <= set(table.columns)
    assert (table.groupby(["rule", "protocol"]).size() == 5).all()
    rk = tuning.rerun_ranking(table)
    b = rk[rk.protocol == "b"].set_index("rule")
    assert b.loc["cosine", "rank"] == 1 and b.loc["gravity", "rank"] == 7
    assert b.loc["rmsprop", "rank"] == 8 and b.loc["rmsprop", "outcome"] == "diverged"   # failures last
    ok = rk[rk.outcome == "trained"]
    assert ((ok.ci_lo >= 0) & (ok.ci_hi <= 1) & (ok.ci_lo <= ok["mean"]) & (ok["mean"] <= ok.ci_hi)).all()
    assert rk[rk.protocol == "c"].set_index("rule").loc["adam", "rank"] == 1


def test_inclusions_and_vs_top_judged_on_reruns():
    chosen, plan, df = _reruns()
    table = tuning.rerun_table(df, plan)
    rk = tuning.rerun_ranking(table)
    tabs = tuning.rerun_comparisons(run_outcomes(df), chosen, rk)
    assert set(tabs) == {"b", "c"}
    incl = tuning.inclusion_verdicts(tabs)
    assert len(incl) == 2 * len(tuning.INCLUSIONS)
    v = incl.set_index(["protocol", "special", "general"])
    assert v.loc[("b", "sgd", "momentum"), "verdict"] == "better"
    assert v.loc[("b", "sgd", "momentum"), "inclusion"] == "holds"
    assert v.loc[("b", "momentum", "adam"), "inclusion"] == "violated"      # Adam 2 pp below Momentum
    assert v.loc[("c", "momentum", "adam"), "inclusion"] == "holds"
    assert v.loc[("b", "momentum", "rmsprop"), "inclusion"] == "decided by outcome"
    assert v.loc[("b", "momentum", "rmsprop"), "verdict"] == "A diverged"
    for _, (ti, tt) in tabs.items():
        words = set(ti["verdict"]) | set(tt["verdict"])
        assert "indistinguishable" not in words
        assert words <= set(VERDICTS) | {"A diverged", "B diverged"}
    # vs the top: every other rule once, against the rank-1 rule
    top_b = tabs["b"][1]
    assert set(top_b["b"]) == {"cosine"} and len(top_b) == len(RULES) - 1
    tau = tuning.rerun_kendall(rk)
    assert len(tau) == 1 and -1 <= tau["tau"].iloc[0] <= 1


# ----------------------------------------------------------------------------- best so far

def test_expected_best_weights():
    W = tuning.expected_best_weights(6)
    assert np.allclose(W.sum(axis=1), 1)
    assert np.allclose(W[0], 1 / 6) and W[-1, 0] == 1 and W[-1, 1:].sum() == 0
    assert W[2, 0] == pytest.approx(math.comb(5, 2) / math.comb(6, 3))


def test_best_so_far_matches_enumeration_and_is_bounded():
    vals = [0.80, 0.86, 0.82, 0.86, 0.60, 0.84]
    tests = [0.79, 0.85, 0.83, 0.70, 0.55, 0.86]
    outc = ["trained"] * 5 + ["diverged"]                        # trial 5 is never selected over a trained one
    t = _trials(vals, tests, outc)
    bsf = tuning.best_so_far(t, n_boot=500)
    assert list(bsf["k"]) == list(range(1, 7)) and (bsf["K"] == 6).all()
    sel = t[tuning.SEL].to_numpy()
    for k in range(1, 7):                                        # brute force over all subsets
        picks = []
        for sub in itertools.combinations(range(6), k):
            best = max(sub, key=lambda i: (sel[i], -i))          # ties: the earliest trial
            picks.append(tests[best])
        assert bsf.loc[bsf.k == k, "expected"].iloc[0] == pytest.approx(np.mean(picks))
    assert (bsf["lo"] <= bsf["hi"]).all()
    assert bsf["lo"].min() >= min(tests) and bsf["hi"].max() <= max(tests)
    # k = K: the selected trial is trial 1 (0.86 val, earliest of the tie)
    assert bsf["expected"].iloc[-1] == pytest.approx(0.85)


def test_best_so_far_rises_when_validation_predicts_test():
    t = _trials(list(np.linspace(0.7, 0.9, 16)[::-1]))
    bsf = tuning.best_so_far(t, n_boot=200)
    assert np.all(np.diff(bsf["expected"].to_numpy()) >= -1e-12)


# ----------------------------------------------------------------------------- readings

@functools.cache
def _judged_once():
    chosen, plan, df = _reruns()
    rk = tuning.rerun_ranking(tuning.rerun_table(df, plan))
    tabs = tuning.rerun_comparisons(run_outcomes(df), chosen, rk)
    return rk, tabs


def _judged():
    """The synthetic reruns' ranking and verdict tables (computed once: ~5 s), copied per test."""
    rk, tabs = _judged_once()
    return rk.copy(), {p: (a.copy(), b.copy()) for p, (a, b) in tabs.items()}


def test_rerun_ranking_reading():
    rk, tabs = _judged()
    text = readings.rerun_ranking_reading(rk, tabs["b"][1], "b", tuning.PROTOCOLS["b"])
    assert text.startswith("**b** (lr tuned on a log scale): Cosine 88.")
    assert "RMSProp (diverged)" in text and "Against the top, Cosine" in text
    assert "Gravity worse" in text and "indistinguishable" not in text
    assert "(5 seeds each)" in text
    assert readings.rerun_ranking_reading(rk, tabs["b"][1], "a") == "**a**: no reruns yet."


def test_inclusion_reruns_reading():
    rk, tabs = _judged()
    incl = tuning.inclusion_verdicts(tabs)
    text = readings.inclusion_reruns_reading(incl, "b")
    assert "SGD ⊆ Momentum holds (Momentum better than SGD, +3.0" in text
    assert "Momentum ⊆ Adam violated (Adam worse than Momentum" in text
    assert "Momentum ⊆ RMSProp: RMSProp diverged" in text
    assert text.startswith("Protocol b, on the reruns (5 seeds, paired): ")
    assert "In all: " in text and "indistinguishable" not in text
    assert readings.inclusion_reruns_reading(incl, "a") == "Protocol a: no inclusion pair among these rules."


def test_novel_rerun_reading():
    rk, tabs = _judged()
    text = readings.novel_rerun_reading(rk, tabs)
    lines = text.split("  \n")
    assert lines[0].startswith("**Gravity** — b: rank 7 of 8") and "vs the top (Cosine) worse" in lines[0]
    assert lines[1].startswith("**Cosine** — b: rank 1 of 8") and "the top" in lines[1]



def test_tuning_answer_for_the_readme():
    """The README's one-paragraph answer: per protocol the top and the verdict counts against it,
    Kendall τ worded by its p-value, the inclusions per protocol; built from the saved tables."""
    rk, tabs = _judged()
    vs_top = pd.concat([t for _, t in tabs.values()], ignore_index=True)
    tau = tuning.rerun_kendall(rk)
    incl = tuning.inclusion_verdicts(tabs)
    text = readings.tuning_answer(rk, vs_top, tau, incl, {"b": "lr tuned", "c": "all tuned"})
    lead = readings.tuning_lead(rk, vs_top, {"b": "lr tuned", "c": "all tuned"})
    assert text.startswith(lead + " Under b (lr tuned) the top is Cosine 88.")
    b, c = text[len(lead):].split("; under c")
    assert "(5 seeds), the other 7 rules against it: " in b
    assert "1 decided by an outcome" in b                        # RMSProp diverged under b
    n_b = sum(int(x.split()[0]) for x in b.split("against it: ")[1].split(", "))
    assert n_b == 7                                              # every other rule counted once
    assert c.startswith(" (all tuned) the top is Adam ")
    t = tau.iloc[0]
    word = ("agree" if t.tau > 0 else "reversed") if t.p < 0.05 else "not shown to agree"
    assert f"b–c τ = {t.tau:.2f} ({readings.fmt_p(t.p)}, {word})" in text
    n = incl[incl.protocol == "b"].inclusion.value_counts()
    assert (f"b: {n['holds']} holds, {n['violated']} violated, {n['decided by outcome']} decided by outcome;"
            in text) and "indistinguishable" not in text
    no_extra = readings.tuning_answer(rk, vs_top, tau.iloc[:0])
    assert "Kendall" not in no_extra and "inclusions" not in no_extra and "Under b the top" in no_extra


def test_tuning_lead_counts_worse_verdicts_between_first_and_last_protocol():
    """The README's bold lead: rules shown worse than the top under the first and the last protocol,
    the largest gap, and the rules that leave "worse" (never called equal to the top)."""
    rk, tabs = _judged()
    vs_top = pd.concat([t for _, t in tabs.values()], ignore_index=True)
    worse = {p: sorted(t.loc[t.verdict == "worse", "a"]) for p, (_, t) in tabs.items()}
    gap = {p: -t.diff_pp.dropna().min() for p, (_, t) in tabs.items()}
    lead = readings.tuning_lead(rk, vs_top, {"c": "all tuned"})
    kb, kc = len(worse["b"]), len(worse["c"])
    head = "Tuning closes gaps" if kc < kb else "Tuning opens gaps" if kc > kb else "Tuning does not change"
    assert lead.startswith(f"**{head}") and f": {kb} of 7 rules are shown worse than the top under b, " in lead
    assert f"{kc} of 7 under c (all tuned); the largest gap to the top is {gap['b']:.2f} pp under b and " \
           f"{gap['c']:.2f} pp under c.**" in lead
    moved = [r for r in worse["b"] if r not in worse["c"] and r in set(rk[rk.protocol == "c"].rule)]
    for r in moved:
        assert readings.rule_label(r) in lead.split(".**")[1]
    assert ("but not shown worse under c." in lead) == bool(moved)
    assert "equal" not in lead and "indistinguishable" not in lead
    # the head follows the counts: with no rule shown worse under c, tuning closes the gaps
    flipped = vs_top.copy()
    flipped.loc[flipped.family.str.endswith("(c)"), "verdict"] = "inconclusive"
    closed = readings.tuning_lead(rk, flipped)
    assert closed.startswith(f"**Tuning closes gaps: {kb} of 7 rules are shown worse than the top under b, 0 of 7 "
                             "under c;") and closed.endswith("but not shown worse under c.")


# ----------------------------------------------------------------------------- figures

def test_budget_figures():
    rk, _ = _judged()
    fig = plotting.rerun_ranking_figure(rk, RULES, ["b", "c"])
    lo, hi = fig.axes[0].get_ylim()
    assert 0.15 < lo < 0.8 and hi <= 1.0                       # the informative band, not [0, 1]
    handles, labels = fig.axes[0].get_legend_handles_labels()
    ranking_colors = {lab[0]: matplotlib.colors.to_hex(h[0].get_color()) for h, lab in zip(handles, labels)}
    plt.close(fig)
    t = pd.concat([_trials(list(np.linspace(0.7, 0.9, 8)), rule=r, protocol=p)
                   for p in ("b", "c") for r in ("sgd", "adam")])
    bsf = tuning.best_so_far(t, n_boot=100)
    fig = plotting.best_so_far_figure(bsf, ["sgd", "adam"], ["b", "c"])
    assert len(fig.axes) == 2                                   # one panel per rule, a line per protocol
    assert [ax.get_title() for ax in fig.axes] == ["SGD", "Adam"] and len(fig.axes[0].get_lines()) == 2
    lo, hi = fig.axes[0].get_ylim()                             # test error (%), log scale: the
    err = 100 * (1 - bsf["expected"])                           # band of the 70-90% accuracies
    assert fig.axes[0].get_yscale() == "log" and 8 <= lo <= err.min() and err.max() <= hi <= 40
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert 3 <= len(ticks) <= 8 and "20" in ticks and all(t.isdigit() for t in ticks)   # plain percents
    assert fig.axes[0].get_ylabel() == "test error (%, log scale)"
    bsf_colors = {ln.get_label()[0]: matplotlib.colors.to_hex(ln.get_color()) for ln in fig.axes[0].get_lines()}
    assert bsf_colors == ranking_colors and len(set(bsf_colors.values())) == 2   # one colour per protocol
    plt.close(fig)


# ----------------------------------------------------------------------------- the launcher

def test_launcher_trains_trials_first_then_returns_the_reruns(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(tuning.sweep, "run_grid", lambda cfgs, **kw: calls.append((list(cfgs), kw["progress"])))

    def fake_load(cfgs, runs_dir):
        return frame(cfgs, lambda c: ([0.8, 0.8 + 0.001 * c.seed], [0.8, 0.8], False))
    monkeypatch.setattr(tuning.results_io, "load_results", fake_load)
    # dry run with nothing stored: the trials' configs, nothing trained
    dry = tuning.trials_then_rerun_configs(rules=["sgd", "momentum", "adam"], budget=4, runs_dir=tmp_path,
                                           dry_run=True)
    assert not calls and len(dry) == 3 * 3 * 4 - 4 and {c.epochs for c in dry} == {5}
    out = tuning.trials_then_rerun_configs(rules=["sgd", "momentum", "adam"], budget=4, runs_dir=tmp_path)
    assert len(calls) == 1 and {c.epochs for c in calls[0][0]} == {5} and calls[0][1]    # with a progress bar
    assert {c.epochs for c in out} == {15} and {c.seed for c in out} == set(tuning.RERUN_SEEDS)
    # selected: the latest seed wins (val 0.8 + 0.001 seed) -> per rule and protocol one config x 5 seeds,
    # plus the 4 imitation variants of protocol c's Momentum (5 seeds each)
    n_sel = len({(c.rule, json.dumps(c.hparams, sort_keys=True)) for c in out})
    assert len(out) == 5 * n_sel and n_sel >= 3 * 3 - 1 + 4
    # the report's launcher knows "05"
    monkeypatch.setattr(plans.results, "stored_keys", lambda d: set())
    assert plans.main(["05", "--dry-run"]) == 0


def test_rerun_kendall_sentence_claims_only_what_p_shows():
    row = dict(protocol_1="a", protocol_2="c", n_rules=8, tau=0.71, p=0.011)
    assert readings.rerun_kendall_sentence(row) == ("a vs c: τ = 0.71 over 8 rules (p = 0.011); the rankings agree "
                                                    "more than chance would.")
    assert "reversed" in readings.rerun_kendall_sentence({**row, "tau": -0.71})
    weak = readings.rerun_kendall_sentence({**row, "p": 0.2})
    assert weak.endswith("not significant at α = 0.05: these 8 rules cannot show whether the two rankings agree.")
    assert "no τ" in readings.rerun_kendall_sentence({**row, "tau": float("nan"), "p": float("nan"), "n_rules": 1})


def test_trial_outcomes_sentence_without_bootstrap():
    t = pd.DataFrame({"protocol": ["b", "b", "c"], "outcome": ["diverged", "trained", "trained"]})
    text = readings.trial_outcomes_sentence(t, ["b", "c"], bootstrap=False)
    assert text.startswith("Trials that did not train (outcomes, not missing values) — b: 1 diverged of 2; "
                           "c: none of 1.")
    assert "bootstrap" not in text and "bootstrap" in readings.trial_outcomes_sentence(t, ["b", "c"])
