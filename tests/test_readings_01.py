"""Notebook 01's readings (readings.py, notebook-01 part): one test per wording."""
import numpy as np
import pandas as pd

from optreport.analysis import surfaces as S
from optreport.report import readings as rd


def surface_rows(best_gaps: dict, *, lrs=None, setting_rows=None):
    """Rows of 01_trajectories for one surface: the "best lr" setting from ``best_gaps``
    ({rule: gap}), plus optional grid-setting rows."""
    rows = list(setting_rows or [])
    for rule, gap in best_gaps.items():
        rows.append({"setting": "best lr", "rule": rule, "lr": (lrs or {}).get(rule, 0.1), "gap": gap,
                     "diverged": not np.isfinite(gap)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- surface_reading
def test_surface_reading_names_all_rules_tied_at_the_minimum_within_rounding():
    t = surface_rows({"sgd": 0.0, "cosine": -8.9e-16, "adam": 3e-13, "nag": 0.02, "gravity": 4.4})
    text = rd.surface_reading("Seed 003's polynomial", t, -4.96)
    assert "Tied at the minimum within rounding" in text
    assert "SGD (lr 0.1)" in text and "Cosine (lr 0.1)" in text and "Adam (lr 0.1)" in text
    assert "Lowest final value" not in text
    assert "-8.9e-16" not in text and "−8.9e-16" not in text and "e-16" not in text
    assert "Highest: Gravity (lr 0.1, f − f_min = 4.4)" in text


def test_surface_reading_single_winner_and_highest():
    t = surface_rows({"sgd": 0.5, "adam": 0.01, "gravity": 2.0}, lrs={"adam": 0.3})
    text = rd.surface_reading("Rosenbrock", t, 0.0)
    assert "Lowest final value at its own lr: Adam (lr 0.3), f − f_min = 0.01." in text
    assert "Highest: Gravity (lr 0.1, f − f_min = 2)." in text
    assert "Tied" not in text


def test_surface_reading_single_rule_at_rounding_level_prints_zero_not_a_negative_gap():
    t = surface_rows({"cosine": -8.9e-16, "adam": 1e-6})
    text = rd.surface_reading("Seed 003's polynomial", t, -4.96)
    assert "Lowest final value at its own lr: Cosine (lr 0.1), f − f_min = 0 within rounding" in text
    assert "e-16" not in text


def test_surface_reading_tie_away_from_the_minimum():
    t = surface_rows({"sgd": 0.25, "momentum": 0.25 + 1e-14, "adam": 1.0})
    text = rd.surface_reading("Saddle", t, -0.25)
    assert "tied within rounding: SGD (lr 0.1), Momentum (lr 0.1), f − f_min = 0.25" in text


def test_surface_reading_everyone_tied_has_no_highest():
    t = surface_rows({"sgd": 0.0, "adam": 0.0})
    text = rd.surface_reading("Saddle", t, -0.25)
    assert "Tied at the minimum" in text and "Highest" not in text


def test_surface_reading_counts_per_setting_and_divergence():
    grid = [{"setting": "lr=0.1", "rule": "sgd", "lr": 0.1, "gap": np.inf, "diverged": True},
            {"setting": "lr=0.1", "rule": "adam", "lr": 0.1, "gap": 1e-5, "diverged": False}]
    t = surface_rows({"sgd": 0.3, "adam": 1e-5}, setting_rows=grid)
    text = rd.surface_reading("Rosenbrock", t, 0.0)
    assert "at lr=0.1: 1 of 2 rules end within 0.001 of the minimum value (Adam), 1 diverge (SGD)" in text


# ---------------------------------------------------------------- lr_edge_reading (and lr_edge_check)
GRID = [1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def sweep_rows(rule, finals, surface="rosenbrock"):
    return pd.DataFrame([{"surface": surface, "rule": rule, "lr": lr, "final_f": f} for lr, f in zip(GRID, finals)])


def test_lr_edge_check_statuses():
    inf = np.inf
    t = pd.concat([sweep_rows("adam", [5, 4, 3, 1, 2, 3, inf, inf]),                   # interior
                   sweep_rows("gravity", [9, 5, 4.4, 4.373131, 4.373129, 4.3731285, 4.3731282, 4.373128]),  # flat
                   sweep_rows("sgd", [9, 8, 7, 6, 5, 4, 3, 2]),                          # still improving
                   sweep_rows("cosine", [inf] * 8)])                                     # all diverged
    e = S.lr_edge_check(t, GRID).set_index("rule")
    assert e.loc["adam", "status"] == "interior" and e.loc["adam", "edge"] == ""
    assert e.loc["gravity", "status"] == "edge, flat" and e.loc["gravity", "edge"] == "high"
    assert e.loc["gravity", "plateau_lo"] == 0.1 and e.loc["gravity", "plateau_hi"] == 10.0
    assert e.loc["sgd", "status"] == "edge, still improving"
    assert e.loc["cosine", "status"] == "all diverged"


def test_lr_edge_reading_none_on_edge():
    e = S.lr_edge_check(sweep_rows("adam", [5, 4, 3, 1, 2, 3, 4, 5]), GRID)
    text = rd.lr_edge_reading(e, GRID)
    assert "No rule's best lr sits on an edge of the grid on any surface" in text
    assert "from lr 0.001 to 10 (8 values)" in text


def test_lr_edge_reading_explains_a_flat_edge():
    e = S.lr_edge_check(sweep_rows("gravity", [9, 5, 4.4, 4.373131, 4.373129, 4.3731285, 4.3731282, 4.373128]), GRID)
    text = rd.lr_edge_reading(e, GRID, {"rosenbrock": "Rosenbrock"})
    assert "Best lr on an edge of the grid: 1 of 1" in text
    assert "insensitive to lr, not a missed optimum: Gravity on Rosenbrock" in text
    assert "from 0.1 to 10" in text and "lr drops out" in text
    assert "widened" not in text


def test_lr_edge_reading_flags_a_best_still_improving_at_the_edge():
    e = S.lr_edge_check(sweep_rows("sgd", [9, 8, 7, 6, 5, 4, 3, 2]), GRID)
    text = rd.lr_edge_reading(e, GRID, {"rosenbrock": "Rosenbrock"})
    assert "Still improving at the edge — the grid should be widened: SGD on Rosenbrock (high edge, lr 10)" in text


# ---------------------------------------------------------------- divergence_reading
def test_divergence_reading_states_gravity_step_correctly():
    g = pd.DataFrame([{"surface": s, "rule": r, "lr": lr, "diverged": d}
                      for s in ("a", "b") for lr in (0.01, 0.1) for r, d in (("sgd", lr > 0.05), ("gravity", False))])
    text = rd.divergence_reading(g, {"sgd": [2.0, 160.0], "gravity": [2.0, 85.0]}, 0.01)
    assert "at most lr in total" not in text
    assert "Gravity multiplies the gradient by 1/k ≤ lr" in text
    assert "at most lr·‖g‖ — longer than lr wherever ‖g‖ > 1 (here up to 85·lr)" in text
    assert "divergences: SGD 2, Gravity 0" in text and "Never diverged on the grid: Gravity" in text
    assert "(lr = 0.01, range over the surfaces): SGD 2–160; Gravity 2–85" in text


def test_divergence_reading_real_gravity_step_exceeds_lr_where_the_gradient_is_large():
    # the claim behind the wording: on Rosenbrock's start (|g| ≈ 163) Gravity's first step is far longer than lr
    lr = 0.01
    step = S.first_step_length("gravity", "rosenbrock", lr)
    g = np.linalg.norm(S.SURFACES["rosenbrock"].grad(S.SURFACES["rosenbrock"].start))
    assert lr < step <= lr * g and step < 1.0


# ---------------------------------------------------------------- seed003_reading
def t003(bug=(4.21, -0.15), cor=(5.85, 4.05), b1=4.08, b2=5.85, b3=5.86, long=None):
    rows = [("seed 003 as written (3 bugs)", *bug), ("correct Adam", *cor), ("only bug 1: counter reset", b1, 0.0),
            ("only bug 2: eps subtracted", b2, 0.0), ("only bug 3: wrong gradient", b3, 0.0)]
    t = pd.DataFrame([{"variant": v, "final_x": 0.1, "final_y": 0.2, "final_f": f, "dist_to_min": d}
                      for v, d, f in rows])
    if long:
        t["dist_to_min_long"], t["gap_long"], t["dist_to_wrong_zero_long"] = zip(*long)
    return t


def test_seed003_reading_buggy_nearer_is_an_accident_when_the_long_run_reverses():
    long = [(0.46, 0.71, 0.0), (1e-6, 1e-12, 0.46), (0.001, 1e-7, 0.46), (1e-6, 1e-12, 0.46), (0.46, 0.71, 0.0)]
    text = rd.seed003_reading(t003(long=long), 93, 1000)
    assert "**The buggy Adam ends nearer the minimum** (4.21 against 5.85), at a lower f." in text
    assert "Of the bugs alone, counter reset (4.08) ends nearer than correct Adam; eps subtracted (5.85), " \
           "wrong gradient (5.86) do not." in text
    assert "Run for 1000 steps, correct Adam ends 1e-06 from the minimum" in text
    assert "the blog's Adam 0.46 (f − f_min = 0.71), 0 from the zero of its wrong gradient" in text
    assert "an accident of the larger steps of the counter reset" in text


def test_seed003_reading_no_accident_claim_when_the_buggy_run_stays_nearer():
    long = [(0.1, 0.01, 0.4), (0.3, 0.1, 0.5), (0.1, 0.01, 0.4), (0.3, 0.1, 0.5), (0.3, 0.1, 0.5)]
    text = rd.seed003_reading(t003(long=long), 93, 1000)
    assert "The buggy Adam ends nearer" in text
    assert "accident" not in text and "It still ends nearer after 1000 steps." in text


def test_seed003_reading_correct_adam_nearer():
    text = rd.seed003_reading(t003(bug=(6.0, 5.0)), 93)
    assert "Correct Adam ends nearer the minimum (5.85 against 6.00)." in text
    assert "buggy Adam ends nearer" not in text and "accident" not in text


def test_seed003_reading_equal_distances():
    text = rd.seed003_reading(t003(bug=(5.8501, 4.0)), 93)
    assert "Both end as near the minimum." in text


def test_gap_text_never_prints_rounding_as_a_negative_gap():
    assert rd.gap_text(-8.9e-16, -4.96) == "f − f_min = 0 within rounding (|f − f_min| < 5e-12)"
    assert rd.gap_text(np.inf, 0.0) == "diverged"
    assert rd.gap_text(0.031, 0.0) == "f − f_min = 0.031"
