"""Notebooks 04 (cost) and 05 (tuning protocol) in quick mode: tables and HTML exist with the
expected rows and columns. Uses the session fixture ``quick_report`` (tests/conftest.py), the
output folder of ``python -m optreport.report --quick``."""

import numpy as np
import pytest

from optreport.analysis import tuning

from conftest import read_table

RULES = ["sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta",
         "adam", "nadam", "adamw", "gravity", "cosine"]
BUDGET_RULES = list(tuning.BUDGET_RULES)    # notebook 05's rules (the budget that can decide)

pytestmark = pytest.mark.slow      # every test here reads the quick report (minutes, once per session)


@pytest.mark.parametrize("nb", ["04_cost", "05_tuning_protocol"])
def test_html_exported(results, nb):
    html = results / "html" / f"{nb}.html"
    assert html.exists() and html.stat().st_size > 10_000
    text = html.read_text(errors="replace")
    assert "Traceback" not in text


def test_04_step_cost(results):
    t = read_table(results, "04_step_cost")
    assert list(t["rule"]) == RULES
    assert {"step_us", "fwd_bwd_us", "step_share", "state_bytes_per_param"} <= set(t.columns)
    assert (t["step_us"] > 0).all() and (t["fwd_bwd_us"] > 0).all()
    mem = t.set_index("rule")["state_bytes_per_param"]
    assert mem["sgd"] == 0 and mem["momentum"] == pytest.approx(4.0)
    assert mem["adam"] == pytest.approx(8.0, abs=0.01)


def test_04_epoch_cost(results):
    t = read_table(results, "04_epoch_cost")
    assert list(t["rule"]) == RULES
    assert {"best_lr", "train_s", "train_s_lo", "train_s_hi", "step_s", "step_share", "acc",
            "state_bytes_per_param", "epoch_vs_sgd"} <= set(t.columns)
    assert (t["train_s"] > 0).all() and ((t["step_share"] > 0) & (t["step_share"] < 1)).all()
    assert set(t["best_lr"]) <= {0.01, 0.1, 0.2}


def test_04_time_to_target(results):
    t = read_table(results, "04_time_to_target")
    assert set(t["rule"]) == set(RULES) and t["target"].nunique() == 2
    assert len(t) == 2 * len(RULES)
    assert (t["n_reached"] <= t["n_runs"]).all()
    # a run that never reaches the target is counted, and then the median may be infinite
    unreached = t[t["n_reached"] == 0]
    assert np.isinf(unreached["median_s"]).all()


def test_04_seed004(results):
    t = read_table(results, "04_seed004")
    assert set(zip(t["rule"], t["lr"])) == {("sgd", 1e-3), ("sgd", 1e-4), ("adam", 1e-3), ("adam", 1e-4)}
    assert {"test_acc", "acc_ci_lo", "acc_ci_hi", "sec_per_epoch", "total_s"} <= set(t.columns)
    g = read_table(results, "04_seed004_gain")
    assert sorted(g["lr"]) == [1e-4, 1e-3]
    assert {"acc_gain_pp", "epoch_time_ratio", "total_time_ratio", "extra_seconds"} <= set(g.columns)
    assert (g["epoch_time_ratio"] > 0).all()


def test_05_search_spaces(results):
    t = read_table(results, "05_search_spaces")
    assert set(t["rule"]) == set(BUDGET_RULES)
    assert (t[t["hparam"] == "lr"]["in_b"]).all()


def test_05_trials_and_selection(results):
    trials = read_table(results, "05_trials")
    assert set(trials["protocol"]) == {"a", "b", "c"} and set(trials["rule"]) == set(BUDGET_RULES)
    k = trials.groupby(["protocol", "rule"]).size()
    assert k.nunique() == 1                                    # the same budget everywhere
    sel = read_table(results, "05_selected")
    assert len(sel) == 3 * len(BUDGET_RULES)
    for row in sel.itertuples():         # best by validation among the trials that trained, never by test
        g = trials[(trials.protocol == row.protocol) & (trials.rule == row.rule) & (trials.outcome == "trained")]
        assert row.val_acc == pytest.approx(g["val_acc"].max())


def test_05_best_so_far_covers_every_k(results):
    b = read_table(results, "05_best_so_far")
    trials = read_table(results, "05_trials")
    K = trials.groupby(["protocol", "rule"]).size().iloc[0]
    for _, g in b.groupby(["protocol", "rule"]):
        assert sorted(g["k"]) == list(range(1, K + 1)) and (g["K"] == K).all()
    assert ((b["lo"] <= b["expected"] + 1e-9) & (b["expected"] <= b["hi"] + 1e-9)).all()


def test_05_reruns_are_the_selected_configurations_over_the_seeds(results):
    reruns = read_table(results, "05_reruns")
    sel = read_table(results, "05_selected").set_index(["protocol", "rule"])["hparams_text"]
    assert {"rule", "protocol", "seed", "test_acc"} <= set(reruns.columns)
    n = reruns.groupby(["protocol", "rule"])["seed"].nunique()
    assert len(n) == 3 * len(BUDGET_RULES) and n.nunique() == 1 and n.iloc[0] >= 2
    for row in reruns.itertuples():
        assert row.hparams_text == sel[(row.protocol, row.rule)]


def test_05_ranking_and_kendall(results):
    r = read_table(results, "05_ranking")
    for _, g in r.groupby("protocol"):
        assert set(g["rule"]) == set(BUDGET_RULES) and sorted(g["rank"]) == list(range(1, len(BUDGET_RULES) + 1))
        trained = g[g["outcome"] == "trained"].sort_values("rank")
        assert trained["mean"].is_monotonic_decreasing
    assert ((r["ci_lo"] >= 0) & (r["ci_hi"] <= 1)).all()
    k = read_table(results, "05_kendall")
    assert len(k) == 3 and k["tau"].between(-1, 1).all() and k["p"].between(0, 1).all()
    v = read_table(results, "05_vs_top")
    assert set(v["verdict"]) <= VERDICT_WORDS | {"no paired runs"}


def test_05_inclusion(results):
    pairs = read_table(results, "05_inclusion_pairs")
    assert set(pairs["protocol"]) == {"a", "b", "c"}
    assert set(pairs["verdict"]) <= VERDICT_WORDS | {"no paired runs"}
    inc = read_table(results, "05_inclusion")
    assert inc["variant"].iloc[0].startswith("momentum")
    assert inc["variant"].str.contains("imitating").sum() >= 2
    assert inc["test_acc"].notna().all()


# ----------------------------------------------------------------------------- issue 11: verdicts a reviewer would sign

VERDICT_WORDS = {"better", "worse", "equivalent", "inconclusive"}


@pytest.mark.parametrize("nb", ["04_cost", "05_tuning_protocol"])
def test_no_indistinguishable_anywhere(results, nb):
    assert "indistinguishable" not in (results / "html" / f"{nb}.html").read_text(errors="replace").lower()
    for csv in results.glob(f"{nb[:2]}_*.csv"):
        assert "indistinguishable" not in csv.read_text().lower(), csv.name


def test_04_intervals_respect_their_range(results):
    e = read_table(results, "04_epoch_cost")
    assert {"n_trained", "n_diverged", "n_blew_up", "n_failed"} <= set(e.columns)
    acc = e.dropna(subset=["acc_lo", "acc_hi"])
    assert (acc["acc_lo"] >= 0).all() and (acc["acc_hi"] <= 1).all()
    assert (e["train_s_lo"].dropna() >= 0).all()
    t = read_table(results, "04_time_to_target")
    assert (t["ci_lo_s"].dropna() >= 0).all() and {"min_s", "max_s"} <= set(t.columns)
    s = read_table(results, "04_seed004")
    assert (s["acc_ci_lo"].dropna() >= 0).all() and (s["acc_ci_hi"].dropna() <= 1).all()
    g = read_table(results, "04_seed004_gain")
    assert (g["epoch_ratio_lo"].dropna() >= 0).all()
    assert all(v in VERDICT_WORDS or v.startswith(("A ", "B ", "both ")) for v in g["acc_verdict"])


def test_05_outcomes_and_verdicts(results):
    trials = read_table(results, "05_trials")
    assert set(trials["outcome"].dropna()) <= {"trained", "diverged", "blew up", "failed to learn"}
    inc = read_table(results, "05_inclusion")
    assert inc["verdict"].iloc[0] == "(baseline)"
    assert all(v in VERDICT_WORDS or v.startswith(("A ", "B ", "both ")) or v == "no paired runs"
               for v in inc["verdict"].iloc[1:])
    assert (inc["ci_lo"].dropna() >= 0).all() and (inc["ci_hi"].dropna() <= 1).all()
