"""Notebook 08 (a published benchmark): its runs (plans.cnn_configs), table, figure and reading."""
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from optreport.analysis.published import load_published
from optreport.report import figures, plans, readings, tables
from optreport.runs.keys import validate
from optreport.runs.sweep import validate_all

matplotlib.use("Agg")
RULES = ["sgd", "momentum", "adam", "gravity", "cosine"]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# a draft (notebooks/drafts/, which the report does not render) until its runs are trained, then notebooks/
NB08 = next(p for p in (NOTEBOOKS / "08_published_benchmark.ipynb",
                        NOTEBOOKS / "drafts" / "08_published_benchmark.ipynb") if p.exists())


# --------------------------------------------------------------------------- runs
def test_cnn_configs_are_deepobs_fmnist_2c2d_with_one_shot_defaults():
    cfgs = plans.cnn_configs()
    assert len(cfgs) == 2 * 5 and len({c.key for c in cfgs}) == 10
    validate_all(cfgs)
    for c in cfgs:
        assert (c.model, c.batch_size, c.data_protocol, c.val_size) == ("cnn", 128, "deepobs", 10_000)
        assert c.epochs == 20 and c.max_steps is None and c.schedule == "constant" and c.seed in (0, 1)
        assert c.keyed()["versions"]["data_deepobs"] == 1
    hp = {c.rule: dict(c.hparams) for c in cfgs}
    assert hp["sgd"] == {"lr": 0.01} and hp["momentum"] == {"lr": 0.01, "momentum": 0.99}
    assert hp["adam"]["lr"] == 1e-3 and hp["gravity"] == {"lr": 0.01} and hp["cosine"] == {"lr": 0.01}
    assert [c.seed for c in cfgs] == [0] * 5 + [1] * 5           # seed-major: a partial sweep has whole seeds


def test_quick_cnn_configs_are_tiny_and_valid():
    q = plans.cnn_configs(quick=True)
    assert len(q) == 10 and {c.seed for c in q} == {0, 1}
    assert all(c.max_steps <= 5 and c.epochs == 1 and c.data_protocol == "deepobs" for c in q)
    for c in q:
        validate(c)
    assert not {c.key for c in q} & {c.key for c in plans.cnn_configs()}


def test_plans_main_knows_08(capsys, monkeypatch):
    monkeypatch.setattr(plans.results, "stored_keys", lambda d: set())
    assert plans.main(["08", "--dry-run"]) == 0
    assert "[plans] 08: 10 runs, 10 to train" in capsys.readouterr().out


# --------------------------------------------------------------------------- table
@pytest.fixture(scope="module")
def published():
    return load_published()


def _ours(published, shift=None, epochs=20, seeds=(0, 1), rules=RULES):
    """Fake per-epoch rows: the published mean (SGD's for rules without one) + a shift (pp) + ±0.1 pp."""
    shift = shift or {}
    rows = []
    for rule in rules:
        ref = rule if rule in set(published.rule) else "sgd"
        p = published[published.rule == ref].set_index("epoch").published_test_acc
        for i, s in enumerate(seeds):
            for e in range(1, epochs + 1):
                rows.append(dict(key=f"{rule}{s}", rule=rule, seed=s, epoch=e,
                                 test_acc=p[e] + shift.get(rule, 0) / 100 + (0.001 if i else -0.001)))
    return pd.DataFrame(rows)


def test_published_comparison_table(published):
    t = tables.published_comparison(_ours(published), published, RULES)
    assert list(t.columns) == tables.PUBLISHED_COMPARISON_COLUMNS
    assert {"rule", "epoch", "test_acc", "published_test_acc", "source"} <= set(t.columns)
    assert len(t) == 5 * 20 and list(pd.unique(t.rule)) == RULES
    row = t[(t.rule == "adam") & (t.epoch == 20)].iloc[0]
    pub = published[(published.rule == "adam") & (published.epoch == 20)].iloc[0]
    assert row.test_acc == pytest.approx(pub.published_test_acc)           # mean over the two seeds
    assert row.test_acc_max - row.test_acc_min == pytest.approx(0.002)
    assert row.n_seeds == 2 and row.published_n_seeds == pub.n_seeds and row.source == pub.source
    assert row.published_min == pub.published_min and row.published_max == pub.published_max
    g = t[t.rule == "gravity"]
    assert g.published_test_acc.isna().all() and (g.source == tables.NO_PUBLISHED).all()


def test_published_comparison_leaves_out_diverged_values(published):
    df = _ours(published, rules=["sgd"])
    df.loc[(df.seed == 1) & (df.epoch == 3), "test_acc"] = np.nan
    t = tables.published_comparison(df, published)
    r = t[t.epoch == 3].iloc[0]
    assert r.n_seeds == 1 and np.isfinite(r.test_acc)


# --------------------------------------------------------------------------- figure
def test_published_comparison_figure(published, tmp_path):
    t = tables.published_comparison(_ours(published), published, RULES)
    fig = figures.published_comparison_figure(t, published, RULES, epochs=20)
    assert len(fig.axes) == 5
    sgd = fig.axes[0]
    assert sgd.get_xscale() == "log" and sgd.get_xlim() == (1, 100)
    labels = [ln.get_label() for ln in sgd.get_lines()]
    assert "published (n=4)" in labels and "ours (n=2)" in labels
    assert any("no published result" in tx.get_text() for tx in fig.axes[3].texts)
    lo, hi = sgd.get_ylim()
    assert lo < t.test_acc.min() and hi > t.test_acc.max() and hi <= 1
    path = figures.savefig(fig, "08_cnn_vs_published", tmp_path)
    assert path.exists() and path.stat().st_size > 0


# --------------------------------------------------------------------------- reading
def test_position_inside_near_below_above():
    t = pd.DataFrame(dict(test_acc=[0.5, 0.497, 0.48, 0.62, 0.5], published_min=[0.49, 0.5, 0.5, 0.5, np.nan],
                          published_max=[0.51, 0.6, 0.6, 0.6, np.nan]))
    assert list(readings.published_position(t, tol=0.005)) == ["inside", "near", "below", "above", "no published"]


def test_reading_agrees_when_inside_and_names_reasons_when_not(published):
    t = tables.published_comparison(_ours(published, shift={"adam": -3}), published, RULES)
    text = readings.published_reading(t, tol=0.005, protocol="deepobs")
    lines = dict(line.split("**")[1:3:1] for line in text.splitlines())
    assert "inside the published min–max at 20 of 20 epochs" in lines["SGD"] and "**Agrees**" in text
    adam = next(line for line in text.splitlines() if line.startswith("- **Adam**"))
    assert "**Disagrees** at 20 epoch(s)" in adam and "below it by more than 0.5 pp at 20 (epochs 1–20" in adam
    assert "Mean gap ours − published over these epochs: -3.00 pp" in adam
    assert "Adam's epsilon" in adam and "shuffling" in adam and "2/4 = 50%" in adam
    assert "input scaling" not in adam                     # removed by the deepobs protocol
    sgd = next(line for line in text.splitlines() if line.startswith("- **SGD**"))
    assert "Disagrees" not in sgd and "Adam's epsilon" not in sgd
    assert "no published result" in next(line for line in text.splitlines() if line.startswith("- **Gravity**"))


def test_reading_under_the_report_protocol_lists_the_data_differences(published):
    t = tables.published_comparison(_ours(published, shift={"sgd": 2}, rules=["sgd"]), published)
    text = readings.published_reading(t, protocol="report")
    assert "above it by more than 0.5 pp" in text and "input scaling" in text and "validation split" in text
    assert readings.candidate_reasons("sgd", "deepobs") == [r for r in readings.candidate_reasons("sgd", "report")
                                                         if not r.startswith(("input", "validation", "last",
                                                                              "test images"))]
    assert readings.published_reading(t.iloc[:0]) == "No runs to compare yet."


def test_reading_tolerance_is_used(published):
    t = tables.published_comparison(_ours(published, shift={"adam": -0.3}, rules=["adam"]), published)
    strict = readings.published_reading(t, tol=0.0)
    loose = readings.published_reading(t, tol=0.05)
    assert "**Agrees**" in loose and "Disagrees" not in loose
    assert strict != loose



def test_published_answer_for_the_readme(published):
    """The README's sentence: each published rule agrees or disagrees (side, epochs, largest distance,
    mean gap), the rules without published numbers by their last epoch."""
    t = tables.published_comparison(_ours(published, shift={"adam": -3}), published, RULES)
    text = readings.published_answer(t, tol=0.005)
    assert text.startswith("**Partly: SGD and Momentum stay within the published range (±0.5 pp) at every epoch; "
                           "Adam does not.** Our mean test accuracy (2 seeds, 20 epochs) against the published "
                           "min–max (within 0.5 pp counts as agreeing): agrees: SGD (mean gap +0.00 pp over 20 "
                           "epochs), Momentum")
    assert "disagrees: Adam (below at 20 of 20 epochs, by up to " in text and "mean gap -3.00 pp)" in text
    gravity = t[(t.rule == "gravity") & (t.epoch == 20)].test_acc.iloc[0]
    assert f"Without published numbers, at epoch 20: Gravity {gravity:.1%}, Cosine" in text
    up = tables.published_comparison(_ours(published, shift={"sgd": 2}, rules=["sgd"]), published)
    assert "disagrees: SGD (above at 20 of 20" in readings.published_answer(up) and "agrees:" not in \
        readings.published_answer(up).replace("disagrees:", "")
    assert readings.published_answer(up).startswith("**No: SGD leaves the published range (±0.5 pp) at some epochs.**")
    same = tables.published_comparison(_ours(published), published, RULES)
    assert readings.published_answer(same).startswith("**Yes: SGD, Momentum and Adam stay within the published range")
    none = tables.published_comparison(_ours(published, rules=["gravity"]), published, ["gravity"])
    assert readings.published_answer(none).startswith("**No rule here has published numbers.** Without published")
    assert readings.published_answer(t.iloc[:0]) == "No runs to compare yet."
    ours = _ours(published)
    partial = tables.published_comparison(ours[~((ours.rule == "sgd") & (ours.seed == 1))], published, RULES)
    assert "Our mean test accuracy (1–2 seeds per rule, 20 epochs)" in readings.published_answer(partial)


# --------------------------------------------------------------------------- the draft notebook
def test_notebook_follows_the_conventions():
    nb = json.loads(NB08.read_text())
    cells = nb["cells"]
    assert "".join(cells[0]["source"]).startswith("# 08 · ") and "**Question.**" in "".join(cells[0]["source"])
    params = cells[1]
    assert params["metadata"].get("tags") == ["parameters"]
    names = [ln.split("=")[0].strip() for ln in "".join(params["source"]).splitlines()
             if "=" in ln and not ln.startswith(("from", "import", "#"))]
    assert names[:6] == ["QUICK", "IMG_DIR", "RESULTS_DIR", "STORAGE", "WORKERS", "FORCE"]
    text = "\n".join("".join(c["source"]) for c in cells)
    for needle in ("plans.cnn_configs(QUICK)", "sweep.run_grid(", "tables.save_table(", "plotting.savefig(",
                   "readings.published_reading(", "readings.published_answer(cmp, tol=TOL)",
                   "fsschneider/DeepOBS", "SirRob1997/Crowded-Valley---Results@47ce79c",
                   "lr 0.01, SGD's one-shot lr"):
        assert needle in text, needle
    assert "plotting.published_comparison_figure(" in text and "protocol=cfgs[0].data_protocol" in text
