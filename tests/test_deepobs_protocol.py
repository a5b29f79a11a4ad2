"""The deepobs data protocol (RunConfig.data_protocol="deepobs"): DeepOBS's fmnist split and
scaling, the trainer's dropped last batch, validation, keys, the CLI and load_results."""
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optreport.engine import data as D
from optreport.engine.train import train
from optreport.runs import results, sweep
from optreport.runs.keys import RunConfig, validate

from conftest import data_available

HAVE_DATA, WHY = data_available()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"Fashion-MNIST not found: {WHY}")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return D.write_fixture(tmp_path_factory.mktemp("fmnist"), n_train=600, n_test=100, seed=1)


def _raw(folder, split):
    x = D.read_idx(next(folder.glob(D.FILES[f"{split}_images"] + "*")))
    y = D.read_idx(next(folder.glob(D.FILES[f"{split}_labels"] + "*")))
    return x, y


# --------------------------------------------------------------------------- data
def test_fixture_split_is_the_first_images_unshuffled_and_scaled_by_255_only(fixture_dir):
    d = D.load_fashion_mnist(fixture_dir, val_size=100, protocol="deepobs", batch_size=32, download=False)
    x, y = _raw(fixture_dir, "train")
    tx, ty = _raw(fixture_dir, "test")
    assert (d.protocol, d.batch_size) == ("deepobs", 32)
    assert len(d.train_y) == 500 and len(d.val_y) == 96 and len(d.test_y) == 96    # 3 batches of 32
    assert torch.equal(d.val_x.squeeze(1), torch.from_numpy(x[:96].astype(np.float32) / 255.0))
    assert torch.equal(d.train_x.squeeze(1), torch.from_numpy(x[100:].astype(np.float32) / 255.0))
    assert torch.equal(d.train_y, torch.from_numpy(y[100:].astype(np.int64)))
    assert torch.equal(d.test_x.squeeze(1), torch.from_numpy(tx[:96].astype(np.float32) / 255.0))
    assert torch.equal(d.test_y, torch.from_numpy(ty[:96].astype(np.int64)))
    assert d.train_x.dtype == torch.float32 and d.train_x.shape[1:] == (1, 28, 28)
    # split_seed plays no part; the report protocol is still what it was
    assert torch.equal(D.load_fashion_mnist(fixture_dir, val_size=100, split_seed=5, protocol="deepobs",
                                            batch_size=32, download=False).val_x, d.val_x)
    r = D.load_fashion_mnist(fixture_dir, val_size=100, download=False)
    assert r.protocol == "report" and r.batch_size is None and len(r.test_y) == 100 and len(r.train_y) == 500


def test_loader_rejects_an_unknown_protocol(fixture_dir):
    with pytest.raises(ValueError, match="Invalid data_protocol: 'tf'"):
        D.load_fashion_mnist(fixture_dir, protocol="tf", download=False)


@needs_data
def test_real_data_deepobs_split_sizes_range_and_test_set():
    d = D.load_fashion_mnist(val_size=D.DEEPOBS_VAL_SIZE, protocol="deepobs", batch_size=128, download=False)
    assert len(d.train_y) == 50_000
    assert len(d.val_y) == 9_984          # the first 10,000 held out; 78 whole batches evaluated
    assert len(d.test_y) == 9_984         # the first 9,984 of the 10,000 test images
    for x in (d.train_x, d.val_x, d.test_x):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    tx, ty = _raw(Path(d.source), "test")
    assert torch.equal(d.test_x.squeeze(1), torch.from_numpy(tx[:9984].astype(np.float32) / 255.0))
    assert torch.equal(d.test_y, torch.from_numpy(ty[:9984].astype(np.int64)))
    x, _ = _raw(Path(d.source), "train")
    assert torch.equal(d.val_x[:5].squeeze(1), torch.from_numpy(x[:5].astype(np.float32) / 255.0))
    assert torch.equal(d.train_x[:5].squeeze(1), torch.from_numpy(x[10_000:10_005].astype(np.float32) / 255.0))


@needs_data
def test_real_data_390_steps_per_epoch_at_batch_128():
    d = D.load_fashion_mnist(val_size=D.DEEPOBS_VAL_SIZE, protocol="deepobs", batch_size=128, download=False)
    rec = train("small_mlp", "sgd", {"lr": 0.01}, data=d, epochs=1, batch_size=128, threads=1,
                compile_step=False, data_protocol="deepobs")
    assert rec["steps"] == 390 and rec["epochs"][0]["steps"] == 390
    assert rec["config"]["n_train"] == 50_000 and rec["config"]["n_val"] == 9_984
    assert rec["config"]["n_test"] == 9_984 and rec["config"]["data_protocol"] == "deepobs"


# --------------------------------------------------------------------------- trainer
def test_trainer_drops_the_last_partial_batch_only_under_deepobs(fixture_dir):
    dd = D.load_fashion_mnist(fixture_dir, val_size=100, protocol="deepobs", batch_size=64, download=False)
    rec = train("small_mlp", "sgd", {"lr": 0.01}, data=dd, epochs=2, batch_size=64, compile_step=False,
                data_protocol="deepobs")
    assert [e["steps"] for e in rec["epochs"]] == [500 // 64] * 2
    dr = D.load_fashion_mnist(fixture_dir, val_size=100, download=False)
    rec = train("small_mlp", "sgd", {"lr": 0.01}, data=dr, epochs=1, batch_size=64, compile_step=False)
    assert rec["epochs"][0]["steps"] == -(-500 // 64) and "data_protocol" not in rec["config"]


def test_trainer_refuses_data_of_another_protocol_or_batch_size(fixture_dir):
    dr = D.load_fashion_mnist(fixture_dir, val_size=100, download=False)
    with pytest.raises(ValueError, match="Invalid data_protocol"):
        train("small_mlp", "sgd", {"lr": 0.01}, data=dr, max_steps=1, data_protocol="deepobs")
    dd = D.load_fashion_mnist(fixture_dir, val_size=100, protocol="deepobs", batch_size=64, download=False)
    with pytest.raises(ValueError, match="Invalid data_protocol"):
        train("small_mlp", "sgd", {"lr": 0.01}, data=dd, batch_size=64, max_steps=1)
    with pytest.raises(ValueError, match="Invalid batch_size: 32"):
        train("small_mlp", "sgd", {"lr": 0.01}, data=dd, batch_size=32, max_steps=1, data_protocol="deepobs")
    with pytest.raises(ValueError, match="Invalid data_protocol: 'x'"):
        train("small_mlp", "sgd", {"lr": 0.01}, data=dd, max_steps=1, data_protocol="x")


# --------------------------------------------------------------------------- config, key, validation
def _cfg(**kw):
    base = dict(model="cnn", rule="sgd", hparams={"lr": 0.01}, epochs=20, batch_size=128, val_size=10_000,
                data_protocol="deepobs")
    return RunConfig(**{**base, **kw})


def test_protocol_enters_the_key_only_when_not_default():
    report = RunConfig(rule="sgd", hparams={"lr": 0.01}, epochs=1)
    assert "data_protocol" not in report.keyed() and "data_deepobs" not in report.keyed()["versions"]
    same = RunConfig(rule="sgd", hparams={"lr": 0.01}, epochs=1, data_protocol="report")
    assert same.key == report.key
    deep = _cfg()
    k = deep.keyed()
    assert k["data_protocol"] == "deepobs" and k["versions"]["data_deepobs"] == D.DEEPOBS_DATA_VERSION
    assert deep.key != dataclasses.replace(deep, data_protocol="report").key
    assert RunConfig.from_dict(k) == deep and RunConfig.from_dict(k).key == deep.key
    assert deep.train_kwargs()["data_protocol"] == "deepobs"
    assert report.train_kwargs()["data_protocol"] == "report"


def test_validate_names_the_parameter():
    validate(_cfg())
    with pytest.raises(ValueError, match=r"Invalid data_protocol: 'tensorflow' \(choose from report, deepobs\)"):
        validate(_cfg(data_protocol="tensorflow"))
    with pytest.raises(ValueError, match="Invalid val_size: 5000"):
        validate(_cfg(val_size=5000))
    with pytest.raises(ValueError, match="Invalid split_seed: 3"):
        validate(_cfg(split_seed=3))


def test_worker_data_helpers(fixture_dir):
    cfg = _cfg(batch_size=64)
    dd = D.load_fashion_mnist(fixture_dir, val_size=100, protocol="deepobs", batch_size=64, download=False)
    dr = D.load_fashion_mnist(fixture_dir, val_size=5000 - 4500, download=False)
    assert sweep.data_fits(dd, cfg) and not sweep.data_fits(dr, cfg) and not sweep.data_fits(None, cfg)
    assert not sweep.data_fits(dd, _cfg(batch_size=128))
    assert not sweep.data_fits(dd, RunConfig(rule="sgd", hparams={"lr": 0.1}, epochs=1, val_size=100))
    assert sweep.data_fits(dr, RunConfig(rule="sgd", hparams={"lr": 0.1}, epochs=1, val_size=500))


def test_cli_builds_deepobs_configs_and_rejects_unknown_protocols(capsys):
    p = argparse.ArgumentParser()
    sweep._grid_args(p)
    a = p.parse_args(["--rules", "sgd", "--lrs", "0.01", "--epochs", "1", "--model", "cnn", "--batch-size", "128",
                      "--data-protocol", "deepobs"])
    (cfg,) = sweep._configs_from_args(a)
    assert cfg.data_protocol == "deepobs" and cfg.val_size == 10_000
    validate(cfg)
    a = p.parse_args(["--rules", "sgd", "--lrs", "0.01", "--epochs", "1"])
    (cfg,) = sweep._configs_from_args(a)
    assert cfg.data_protocol == "report" and cfg.val_size == 5000
    assert sweep.main(["run", "--rules", "sgd", "--lrs", "0.01", "--epochs", "1", "--data-protocol", "tf",
                       "--runs-dir", "none"]) == 2
    assert "Invalid data_protocol: 'tf'" in capsys.readouterr().err


# --------------------------------------------------------------------------- results
def test_load_results_has_a_data_protocol_column(tmp_path, fixture_dir):
    old = RunConfig(rule="sgd", hparams={"lr": 0.1}, epochs=1, val_size=100, max_steps=2)
    new = RunConfig(rule="sgd", hparams={"lr": 0.1}, epochs=1, val_size=10_000, max_steps=2,
                    data_protocol="deepobs", batch_size=32)
    dr = D.load_fashion_mnist(fixture_dir, val_size=100, download=False)
    dd = D.load_fashion_mnist(fixture_dir, val_size=100, protocol="deepobs", batch_size=32, download=False)
    for cfg, d in ((old, dr), (new, dd)):
        kw = {**cfg.train_kwargs(), "model": "small_mlp", "compile_step": False}
        results.write_run(tmp_path, cfg.key, cfg.keyed(), train(data=d, **kw))
    stored = json.loads(results.run_path(tmp_path, "mlp", "sgd", old.key).read_text())
    assert "data_protocol" not in stored["config"]
    df = results.load_results(runs_dir=tmp_path)
    assert dict(zip(df.key, df.data_protocol)) == {old.key: "report", new.key: "deepobs"}


# --------------------------------------------------------------------------- eval_size (quick runs of the CNN)
def test_eval_size_enters_the_key_only_when_set_and_is_validated():
    base = RunConfig(rule="sgd", hparams={"lr": 0.01}, epochs=1)
    assert "eval_size" not in base.keyed() and base.train_kwargs()["eval_size"] is None
    small = dataclasses.replace(base, eval_size=50)
    assert small.keyed()["eval_size"] == 50 and small.key != base.key
    assert RunConfig.from_dict(small.keyed()) == small
    validate(small)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match=rf"Invalid eval_size: {bad!r}"):
            validate(dataclasses.replace(base, eval_size=bad))


def test_eval_size_evaluates_the_first_images_only(fixture_dir):
    data = D.load_fashion_mnist(fixture_dir, val_size=100, download=False)
    full = train("mlp", "sgd", {"lr": 0.1}, data=data, epochs=1, max_steps=3, threads=1)
    part = train("mlp", "sgd", {"lr": 0.1}, data=data, epochs=1, max_steps=3, threads=1, eval_size=7)
    assert "eval_size" not in full["config"] and part["config"]["eval_size"] == 7
    assert part["config"]["n_val"] == part["config"]["n_test"] == 7
    e_full, e_part = full["epochs"][0], part["epochs"][0]
    assert e_part["train_loss"] == e_full["train_loss"]                     # training is the same
    for split in ("val", "test"):
        assert round(e_part[f"{split}_acc"] * 7, 9) == int(round(e_part[f"{split}_acc"] * 7))   # a multiple of 1/7
    with pytest.raises(ValueError, match="Invalid eval_size: 0"):
        train("mlp", "sgd", {"lr": 0.1}, data=data, epochs=1, max_steps=1, eval_size=0)
