"""tuning.py: search spaces, quasi-random sampling, validation-only selection, bootstrap."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.analysis import tuning
from optreport.report import tables


def test_every_rule_has_a_valid_space():
    assert set(tuning.SEARCH_SPACES) == set(OPTIMIZERS)
    for rule, space in tuning.SEARCH_SPACES.items():
        assert "lr" in space and space["lr"].kind == "log"
        for name, d in space.items():
            if d.kind in ("log", "log1m"):
                assert 0 < d.low < d.high, (rule, name)
                lo, hi = d.bounds()
                assert lo < hi
            else:
                assert d.kind == "cat" and len(d.choices) >= 2


def test_invalid_dims_rejected():
    with pytest.raises(ValueError):
        tuning.Dim("log", 0.0, 1.0)
    with pytest.raises(ValueError):
        tuning.Dim("log", 1.0, 0.1)
    with pytest.raises(ValueError):
        tuning.Dim("cat")


@pytest.mark.parametrize("protocol", ["a", "b", "c"])
@pytest.mark.parametrize("budget", [1, 5, 16])
def test_budget_respected_and_deterministic(protocol, budget):
    for rule in tuning.SEARCH_SPACES:
        t1 = tuning.sample_trials(rule, protocol, budget, seed=3)
        assert len(t1) == budget
        assert t1 == tuning.sample_trials(rule, protocol, budget, seed=3)
        assert all("lr" in hp and hp["lr"] > 0 for hp in t1)
    assert len(tuning.trial_seeds(protocol, budget)) == budget


def test_seed_changes_trials():
    assert tuning.sample_trials("adam", "c", 8, 0) != tuning.sample_trials("adam", "c", 8, 1)


def test_protocol_a_is_the_fixed_grid():
    t = tuning.sample_trials("adam", "a", 12)
    assert [hp["lr"] for hp in t[:3]] == list(tuning.FIXED_LRS)
    assert all(set(hp) == {"lr"} for hp in t)
    assert tuning.trial_seeds("a", 12) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert tuning.trial_seeds("c", 4) == [0, 1, 2, 3]


def _searched(rule, hp):
    """Map constructor kwargs back to searched values (betas pair, ε-scaled lr)."""
    out = dict(hp)
    if "betas" in out:
        out["beta1"], out["beta2"] = out.pop("betas")
    out["lr"] = tuning.searched_lr(rule, hp)
    return out


@pytest.mark.parametrize("rule", list(tuning.SEARCH_SPACES))
def test_samples_inside_bounds_and_constructible(rule):
    space = tuning.SEARCH_SPACES[rule]
    for protocol in ("b", "c"):
        for hp in tuning.sample_trials(rule, protocol, 16, seed=0):
            for name, v in _searched(rule, hp).items():
                d = space[name]
                if d.kind == "cat":
                    assert v in d.choices
                else:
                    lo, hi = d.bounds()
                    assert lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9), (rule, name, v)
            OPTIMIZERS[rule]([torch.nn.Parameter(torch.zeros(2))], **hp)   # valid kwargs


def test_protocol_b_searches_lr_only():
    for rule in tuning.SEARCH_SPACES:
        assert all(set(hp) == {"lr"} for hp in tuning.sample_trials(rule, "b", 4))


def test_sgd_b_and_c_share_trials():
    assert tuning.sample_trials("sgd", "b", 8) == tuning.sample_trials("sgd", "c", 8)


def test_quasi_random_coverage():
    """16 Sobol points of a 1-D log range put exactly one point in each of 16 equal log bins;
    in 4-D (Adam) every 1-D projection does too."""
    d = tuning.SEARCH_SPACES["sgd"]["lr"]
    u = [(math.log10(hp["lr"]) - math.log10(d.low)) / (math.log10(d.high) - math.log10(d.low))
         for hp in tuning.sample_trials("sgd", "b", 16, seed=0)]
    assert sorted(int(x * 16) for x in u) == list(range(16))
    space = tuning.SEARCH_SPACES["adam"]
    pts = [_searched("adam", hp) for hp in tuning.sample_trials("adam", "c", 16, seed=0)]
    for name in ("lr", "eps"):
        lo, hi = math.log10(space[name].low), math.log10(space[name].high)
        bins = sorted(int((math.log10(p[name]) - lo) / (hi - lo) * 16) for p in pts)
        assert bins == list(range(16)), name


def test_eps_coupling_lets_adam_reach_momentum_like_steps():
    big = [hp for hp in tuning.sample_trials("adam", "c", 64) if hp["eps"] > 1]
    assert big and all(hp["lr"] > hp["eps"] * 1e-5 / tuning.EPS_REF * 0.999 for hp in big)


def _trials(seed=0, k=6, rules=("sgd", "adam", "cosine")):
    rng = np.random.default_rng(seed)
    rows = []
    for r in rules:
        for i in range(k):
            v = rng.random()
            rows.append({"rule": r, "key": f"{r}-{i}", "val_acc": v, "test_acc": v + rng.normal(0, 0.05)})
    return pd.DataFrame(rows)


def test_selection_uses_validation_only():
    t = _trials()
    sel = tuning.select_best(t)
    shuffled = t.copy()
    shuffled["test_acc"] = np.random.default_rng(1).permutation(shuffled["test_acc"].to_numpy())
    pd.testing.assert_frame_equal(sel, tuning.select_best(shuffled))
    pd.testing.assert_frame_equal(sel, tuning.select_best(t.drop(columns="test_acc")))
    assert list(sel.columns) == ["rule", "key"]
    for _, row in sel.iterrows():
        g = t[t.rule == row.rule]
        assert row.key == g.loc[g.val_acc.idxmax(), "key"]
    with pytest.raises(ValueError):
        tuning.select_best(t, metric="test_acc")


def test_selection_diverged_ranks_last():
    t = pd.DataFrame({"rule": ["x", "x"], "key": ["bad", "ok"], "val_acc": [np.nan, 0.1]})
    assert tuning.select_best(t).key.tolist() == ["ok"]


def test_plan_trials():
    plan = tuning.plan_trials(["sgd", "gravity"], budget=4)
    assert len(plan) == 3 * 2 * 4
    assert set(plan.columns) >= {"protocol", "rule", "trial", "seed", "hparams"}


def test_imitation_hparams():
    hp = tuning.imitation_hparams({"lr": 0.05, "momentum": 0.9}, eps=10.0)
    assert hp["betas"][0] == 0.9 and hp["lr"] == pytest.approx(0.05 * 10 / 0.1)
    assert tuning.imitation_hparams({"lr": 0.05, "momentum": 0.9}, 10.0, "first_step")["lr"] == pytest.approx(0.5)


def test_imitation_matches_momentum_at_large_eps():
    """Adam with the asymptotic imitation tracks Momentum once bias correction has faded."""
    torch.manual_seed(0)
    p0 = torch.randn(50)
    pm, pa = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    mom = OPTIMIZERS["momentum"]([pm], lr=0.01, momentum=0.5)
    adam = OPTIMIZERS["adam"]([pa], **tuning.imitation_hparams({"lr": 0.01, "momentum": 0.5}, 1e4))
    g = torch.randn(200, 50)
    for t in range(200):
        pm.grad, pa.grad = g[t].clone(), g[t].clone()
        mom.step()
        adam.step()
    dm, da = pm.detach() - p0, pa.detach() - p0
    assert torch.allclose(da, dm, rtol=0.05, atol=0.05 * float(dm.abs().max()))


def test_imitation_table():
    variants = {"momentum (tuned, c)": ("momentum", {"lr": 0.1, "momentum": 0.9}),
                "adam imitating": ("adam", {"lr": 1.0, "eps": 10.0})}
    acc = {"momentum (tuned, c)": np.array([0.80, 0.82, 0.81]), "adam imitating": np.array([0.81, 0.83, 0.83])}
    t = tables.imitation(variants, acc, base="momentum (tuned, c)").set_index("variant")
    assert np.isnan(t.loc["momentum (tuned, c)", "diff_vs_momentum"])
    assert t.loc["adam imitating", "diff_vs_momentum"] == pytest.approx(0.0133333, abs=1e-6)
    assert t.loc["adam imitating", "hparams"] == "lr=1, eps=10" and t.loc["adam imitating", "n_seeds"] == 3
