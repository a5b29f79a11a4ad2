"""Tests of the 2-D surfaces, the trajectories and seed 003's buggy Adam."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optreport.analysis import surfaces as S
from optreport.report import figures as plotting


def finite_diff(f, xy, h=1e-6):
    xy = np.asarray(xy, float)
    g = np.zeros(2)
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        g[i] = (f(torch.tensor(xy + e)) - f(torch.tensor(xy - e))).item() / (2 * h)
    return g


POINTS = [(0.5, 5.8), (-1.5, 2.0), (1.0, 1.5), (0.3, -0.7), (2.0, 0.25)]


@pytest.mark.parametrize("name", list(S.SURFACES))
def test_autograd_gradient_matches_finite_differences(name):
    s = S.SURFACES[name]
    for xy in POINTS:
        np.testing.assert_allclose(s.grad(xy), finite_diff(s.f, xy), rtol=1e-6, atol=1e-5)


def test_seed003_true_gradient_matches_autograd():
    s = S.SURFACES["seed003"]
    for xy in POINTS:
        np.testing.assert_allclose(S.seed003_grad(*xy), s.grad(xy), rtol=1e-12, atol=1e-12)


def test_seed003_wrong_gradient_is_wrong():
    s = S.SURFACES["seed003"]
    g_true = s.grad((0.5, 5.8))
    g_wrong = np.array(S.seed003_wrong_grad(0.5, 5.8))
    assert np.abs(g_true - g_wrong).max() > 1.0


@pytest.mark.parametrize("name", list(S.SURFACES))
def test_minimum_is_stationary_and_lowest_nearby(name):
    s = S.SURFACES[name]
    assert s.value(s.minimum) == pytest.approx(s.f_min, abs=1e-7)
    assert np.abs(s.grad(s.minimum)).max() < 1e-5
    rng = np.random.default_rng(0)
    near = np.asarray(s.minimum) + rng.normal(scale=0.05, size=(50, 2))
    assert all(s.value(p) >= s.f_min - 1e-9 for p in near)


def test_seed003_minimum_numeric_agrees_with_table():
    xy, fmin = S.seed003_minimum(box=10.0, n=401)
    np.testing.assert_allclose(xy, S.SURFACES["seed003"].minimum, atol=1e-6)
    assert fmin == pytest.approx(S.SURFACES["seed003"].f_min, abs=1e-9)


def test_seed003_is_bounded_below_on_a_large_box():
    s = S.SURFACES["seed003"]
    X, Y, Z = s.grid((-200, 200), (-200, 200), n=401)
    assert Z.min() >= s.f_min - 1e-9


def test_seed003_adam_without_bugs_matches_our_adam_class():
    ref = S.seed003_adam(steps=93, reset_step_counter=False, eps_sign=+1, wrong_gradient=False)
    ours = S.trajectory("adam", {"lr": 5e-2}, "seed003", (0.5, 5.8), steps=93)
    np.testing.assert_allclose(ref, ours, rtol=0, atol=1e-12)


def test_seed003_adam_bugs_change_the_run():
    clean = dict(reset_step_counter=False, eps_sign=+1, wrong_gradient=False)
    base = S.seed003_adam(steps=93, **clean)
    for bug in ("reset_step_counter", "wrong_gradient"):
        run = S.seed003_adam(steps=93, **{**clean, bug: not clean[bug]})
        assert np.abs(run - base).max() > 1e-2, bug
    # epsilon's sign only matters where sqrt(v) is near 1e-8: tiny here, but not zero
    eps_run = S.seed003_adam(steps=93, **{**clean, "eps_sign": -1})
    assert 0 < np.abs(eps_run - base).max() < 1e-6
    # the buggy counter keeps bias correction at t=1: the first step is the same
    assert np.allclose(S.seed003_adam(steps=1), S.seed003_adam(steps=1, reset_step_counter=False))


def test_trajectory_shape_start_and_descent():
    t = S.trajectory("sgd", {"lr": 0.1}, "saddle", steps=50)
    assert t.shape == (51, 2)
    np.testing.assert_array_equal(t[0], S.SURFACES["saddle"].start)
    assert not S.diverged(t)
    assert S.final_value("saddle", t) < S.SURFACES["saddle"].value(t[0])


def test_sgd_trajectory_is_plain_gradient_descent():
    s = S.SURFACES["beale"]
    t = S.trajectory("sgd", {"lr": 1e-3}, s, steps=5)
    xy = np.array(s.start)
    for i in range(1, 6):
        xy = xy - 1e-3 * s.grad(xy)
        np.testing.assert_allclose(t[i], xy, rtol=1e-12)


def test_divergence_is_recorded_not_clipped():
    t = S.trajectory("sgd", {"lr": 0.2}, "rosenbrock", steps=20)
    k = S.divergence_step(t)
    assert k is not None and S.diverged(t)
    assert np.isnan(t[k:]).all() and np.isfinite(t[:k]).all()
    assert np.abs(t[:k]).max() <= S.DIVERGENCE_BOUND
    assert S.final_value("rosenbrock", t) == np.inf


def test_best_lr_picks_the_lowest_final_value():
    lrs = [1e-3, 1e-2, 1e-1]
    lr, traj = S.best_lr("sgd", "saddle", lrs, steps=30)
    finals = {x: S.final_value("saddle", S.trajectory("sgd", {"lr": x}, "saddle", steps=30))
              for x in lrs}
    assert lr == min(finals, key=finals.get)
    assert S.final_value("saddle", traj) == finals[lr]


def test_plot_limits_cover_trajectories_and_ignore_runaways():
    trajs = [np.array([[0.0, 0.0], [2.0, -3.0]]), np.array([[0.0, 0.0], [1e6, 1e6]])]
    xlim, ylim = S.plot_limits("saddle", trajs, bound=50)
    assert xlim[0] < 0 and xlim[1] > 2 and ylim[0] < -3 and ylim[1] > 1
    assert xlim[1] < 10


def test_plot_trajectories_marks_divergence():
    fig, ax = plt.subplots()
    good = S.trajectory("adam", {"lr": 0.1}, "rosenbrock", steps=20)
    bad = S.trajectory("sgd", {"lr": 0.2}, "rosenbrock", steps=20)
    S.plot_trajectories(ax, "rosenbrock", {"Adam": good, "SGD": bad})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "SGD (diverged)" in labels and "Adam" in labels
    plt.close(fig)


def test_notebook_01_figures_draw():
    fig = plotting.adam_tracks_momentum_figure({1e-8: np.full(10, 0.5), 1.0: np.geomspace(1, 1e-3, 10)})
    assert len(fig.axes) == 2 and all(ax.get_yscale() == "log" for ax in fig.axes)
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)        # its eps, the other eps (grey), bias term
    plt.close(fig)
    s = S.SURFACES["seed003"]
    runs = {"as written": S.seed003_adam(10, 0.05, reset_step_counter=True, eps_sign=-1, wrong_gradient=True),
            "correct": S.seed003_adam(10, 0.05, reset_step_counter=False, eps_sign=1, wrong_gradient=False)}
    fig = plotting.seed003_adam_figure(s, runs, S.seed003_wrong_grad_zero(), -4.962, 0.05, 10)
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"
    plt.close(fig)


def test_adam_tracks_momentum_every_eps_has_its_own_visible_panel():
    gaps = {eps: np.full(20, 1.0) for eps in (1e-8, 1e-2)} | {eps: 0.9 ** np.arange(1, 21) for eps in (1e4, 1e6)}
    fig = plotting.adam_tracks_momentum_figure(gaps)
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(drawn) == 4
    for ax, eps in zip(drawn, gaps):
        assert f"eps = {eps:g}" in ax.get_title()
        top = max(ax.get_lines(), key=lambda ln: ln.get_linewidth())   # the highlighted curve
        np.testing.assert_allclose(top.get_ydata(), gaps[eps])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:4] == [f"eps = {eps:g}" for eps in gaps]
    plt.close(fig)


def test_surface_trajectories_figure_small_multiples():
    s = S.SURFACES["rosenbrock"]
    rules, lrs = ["sgd", "adam", "gravity"], [0.01, 0.1]
    trajs, table = S.sweep_trajectories(rules, lrs + [0.3], s, steps=20)
    best = S.best_of(table)
    fig = plotting.surface_trajectories_figure(s, trajs, best, rules, lrs, 20)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(rules)
    for ax, r in zip(panels, rules):
        assert ax.get_title().startswith(plotting.rule_label(r))
        assert any(t.get_text() for t in ax.texts)                    # contour labels (and divergence notes)
        assert any(ln.get_marker() == "*" for ln in ax.get_lines())   # the minimum
    assert panels[0].get_ylabel() == "y" and any(ax.get_xlabel() == "x" for ax in panels)
    plt.close(fig)


def test_lr_edge_check_on_real_runs_flags_a_narrow_grid():
    trajs, table = S.sweep_trajectories(["sgd"], [1e-5, 1e-4], "saddle", steps=30)
    e = S.lr_edge_check(table, [1e-5, 1e-4])
    assert e.loc[0, "edge"] == "high" and e.loc[0, "status"] == "edge, still improving"


def test_first_step_length_of_sgd_is_lr_times_gradient_norm():
    s = S.SURFACES["beale"]
    assert S.first_step_length("sgd", s, 1e-3) == pytest.approx(1e-3 * np.linalg.norm(s.grad(s.start)), rel=1e-12)


def test_plot_limits_quantile_lets_a_far_excursion_leave_the_window():
    path = np.column_stack([np.linspace(0, 1, 1000), np.zeros(1000)])
    path[500] = (40.0, 40.0)                                   # one far point
    xlim, _ = S.plot_limits("saddle", [path], bound=50)
    assert xlim[1] > 40
    xlim, ylim = S.plot_limits("saddle", [path], bound=50, quantile=0.005)
    assert xlim[1] < 3 and ylim[1] < 3 and xlim[0] < 0 and ylim[1] > 1   # start and minimum still inside
