"""published.py: the Crowded Valley fmnist_2c2d reference numbers load and are well formed."""
import re

import pytest

from optreport.analysis import published


def test_loads_all_rules_and_epochs():
    df = published.load_published()
    assert tuple(df.columns) == published.COLUMNS
    assert set(df.rule) == {"sgd", "momentum", "adam"}
    for _rule, g in df.groupby("rule"):
        assert g.epoch.nunique() >= 20
        assert g.epoch.min() == 0 and (g.epoch.diff().dropna() == 1).all()   # 0, 1, 2, ... no gaps
        assert (g.n_seeds >= 1).all()


def test_accuracies_are_fractions_and_ordered():
    df = published.load_published()
    for col in ("published_test_acc", "published_min", "published_max"):
        assert df[col].between(0, 1).all()
    assert (df.published_min <= df.published_test_acc + 1e-9).all()
    assert (df.published_test_acc <= df.published_max + 1e-9).all()
    trained = df[df.epoch >= 1]
    assert (trained.published_test_acc > 0.5).all()          # a trained 2c2d is far above chance
    assert (df[df.epoch == 0].published_test_acc < 0.3).all()  # epoch 0 is the untrained network


def test_source_names_repository_commit_and_file():
    df = published.load_published()
    pattern = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+$")
    for src in df.source.unique():
        assert pattern.match(src), src
        assert "fmnist_2c2d" in src
    by_rule = df.groupby("rule").source.first()
    assert "GradientDescentOptimizer" in by_rule["sgd"]
    assert "MomentumOptimizer" in by_rule["momentum"] and "momentum__9.9e-01" in by_rule["momentum"]
    assert "AdamOptimizer" in by_rule["adam"] and "learning_rate__1.e-03" in by_rule["adam"]


def test_setting_cites_its_sources():
    s = published.DEEPOBS_FMNIST_2C2D
    assert s["batch_size"]["value"] == 128 and s["epochs"]["value"] == 100
    assert s["valid"]["size"] == 10_000
    for key, entry in s.items():
        assert entry["source"], key
        for src in entry["source"]:
            assert re.match(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}:\S+$", src), (key, src)


def test_missing_file_and_column_name_the_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(published.PublishedDataError, match="nope.csv"):
        published.load_published(missing)
    bad = tmp_path / "bad.csv"
    bad.write_text("rule,epoch,published_test_acc\nsgd,1,0.8\n")
    with pytest.raises(published.PublishedDataError, match=r"bad\.csv.*published_min"):
        published.load_published(bad)
