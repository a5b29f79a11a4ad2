"""The runs of notebooks 06 and 07 (optreport.report.plans): lr choice, long and size configs."""
import math

import numpy as np
import pandas as pd

from optreport.engine.data import TRAIN_SIZE
from optreport.report import plans
from optreport.runs.sweep import validate_all

LRS = {"sgd": 0.1, "momentum": 0.01, "adam": 3e-4, "gravity": 0.2, "cosine": 0.1}


def _sel(rows):
    """Selection runs from [(rule, lr, seed, [val_acc per epoch], diverged)]."""
    out = []
    for rule, lr, seed, accs, div in rows:
        for e, a in enumerate(accs, 1):
            out.append(dict(key=f"{rule}{lr}{seed}", rule=rule, lr=lr, seed=seed, epoch=e, val_acc=a, diverged=div))
    return pd.DataFrame(out)


def test_best_lrs_uses_the_best_epoch_counts_divergence_as_chance_and_breaks_ties_low():
    df = _sel([("sgd", 0.1, 0, [0.80, 0.86], False), ("sgd", 0.1, 1, [0.84, 0.85], False),
               ("sgd", 0.2, 0, [0.90, np.nan], True), ("sgd", 0.2, 1, [0.88, 0.89], False),   # mean (0.1+0.89)/2
               ("adam", 1e-3, 0, [0.85], False), ("adam", 3e-4, 0, [0.85], False)])
    assert plans.best_lrs(df) == {"sgd": 0.1, "adam": 3e-4}
    t = plans.lr_choice_table(df)
    assert list(t.rule) == ["sgd", "sgd", "adam", "adam"] and list(t.lr) == [0.1, 0.2, 3e-4, 1e-3]
    assert t.chosen.tolist() == [True, False, True, False] and t.n_seeds.tolist() == [2, 2, 1, 1]
    assert np.isclose(t.mean_best_val_acc.iloc[1], (0.1 + 0.89) / 2)


def test_long_configs_are_seed_major_with_both_schedules():
    cfgs = plans.long_configs(LRS)
    validate_all(cfgs)
    assert plans.LONG_SEEDS == [0, 1, 2, 3, 4]
    assert len(cfgs) == 5 * 2 * 5 == len({c.key for c in cfgs})
    assert [c.seed for c in cfgs] == [s for s in range(5) for _ in range(10)]
    assert {(c.epochs, c.n_train, c.max_steps) for c in cfgs} == {(100, None, None)}
    assert {c.schedule for c in cfgs} == {"constant", "cosine"}
    assert {c.rule: dict(c.hparams) for c in cfgs} == {r: {"lr": lr} for r, lr in LRS.items()}
    quick = plans.long_configs(LRS, quick=True)
    assert {(c.epochs, c.n_train) for c in quick} == {(3, 640)} and not {c.key for c in quick} & {c.key for c in cfgs}
    assert {c.eval_size for c in cfgs} == {None} and {c.eval_size for c in quick} == {plans.QUICK_EVAL_SIZE}


def test_size_configs_share_one_step_budget_on_nested_sizes():
    cfgs = plans.size_configs(LRS)
    validate_all(cfgs)
    budget = plans.step_budget()
    assert budget == 6 * math.ceil((TRAIN_SIZE - 5000) / cfgs[0].batch_size) == 5160    # batch 64
    assert len(cfgs) == 5 * 4 * 5 == len({c.key for c in cfgs})
    assert {c.max_steps for c in cfgs} == {budget}
    sizes = sorted({plans.images(c.n_train) for c in cfgs})
    assert sizes == [2037, 6111, 18333, TRAIN_SIZE - 5000]
    for c in cfgs:      # enough epochs to reach the budget, and not one more
        per_epoch = math.ceil(plans.images(c.n_train) / c.batch_size)
        assert (c.epochs - 1) * per_epoch < budget <= c.epochs * per_epoch
    assert sorted({c.seed for c in cfgs}) == [0, 1, 2, 3, 4]
    assert plans.images(float("nan")) == plans.images(None) == TRAIN_SIZE - 5000
    assert {c.eval_size for c in cfgs} == {None}                 # full runs: every validation and test image
    quick = plans.size_configs(LRS, quick=True)
    validate_all(quick)
    assert {c.eval_size for c in quick} == {plans.QUICK_EVAL_SIZE}
