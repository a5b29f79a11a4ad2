"""Short test of the live torch.optim check (the full one runs in notebook 01)."""
import inspect

import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.analysis.conformance import TORCH_COUNTERPARTS, compare_with_torch, conformance_table, rule_card

SMALL = [(7, 5), (7,), (3, 7), (3,)]


@pytest.mark.parametrize("rule", list(TORCH_COUNTERPARTS))
def test_every_classic_rule_matches_torch(rule):
    r = compare_with_torch(rule, steps=15, shapes=SMALL)
    assert r["max_rel"] <= 1e-12, r


def test_a_wrong_rule_is_caught():
    # our Momentum against torch's plain SGD must differ
    fake = {**OPTIMIZERS, "sgd": OPTIMIZERS["momentum"]}
    r = compare_with_torch("sgd", steps=5, shapes=SMALL, optimizers=fake)
    assert r["max_rel"] > 1e-3


def test_table_has_a_verdict_per_rule():
    df = conformance_table(["sgd", "adam"], steps=3, shapes=SMALL, dtype=torch.float32,
                           rtol=1e-5)
    assert list(df["rule"]) == ["sgd", "adam"]
    assert set(df["verdict"]) == {"matches"}


@pytest.mark.parametrize("rule", list(OPTIMIZERS))
def test_rule_card_shows_the_code_that_trains(rule):
    cls = OPTIMIZERS[rule]
    card = rule_card(rule)
    assert inspect.getsource(cls.formula) in card        # the one formula, run eager and compiled
    assert "def step_group" in card and "$$" in card
    assert "step_param" not in card and "step_foreach" not in card
