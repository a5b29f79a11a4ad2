"""data.py: parsing, locating, splitting, and every way the files can be missing or broken."""
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from optreport.engine import data
from optreport.engine.data import CorruptDataError, DataNotFoundError, load_fashion_mnist, read_idx, write_fixture

REAL = data.DEBIAN_DIR


@pytest.fixture()
def no_env(monkeypatch):
    monkeypatch.delenv("FMNIST_DIR", raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_fixture_roundtrip(tmp_path, gz, no_env):
    write_fixture(tmp_path, 300, 50, gz=gz)
    d = load_fashion_mnist(tmp_path, val_size=60)
    assert d.train_x.shape == (240, 1, 28, 28) and d.train_x.dtype == torch.float32
    assert d.val_x.shape == (60, 1, 28, 28) and d.test_x.shape == (50, 1, 28, 28)
    assert d.train_y.dtype == torch.int64 and len(d.train_y) == 240
    assert d.source == str(tmp_path)
    # standardised with the training split's own statistics
    assert abs(float(d.train_x.mean())) < 1e-4 and abs(float(d.train_x.std()) - 1) < 1e-3
    # the split is a fixed-seed permutation: disjoint, complete, reproducible, seed-dependent
    raw = read_idx(next(tmp_path.glob("train-images*")))
    def u8(x):
        return torch.round(x.squeeze(1) * d.std * 255 + d.mean * 255).to(torch.uint8).numpy()
    rows = {r.tobytes() for r in raw}
    got = [r.tobytes() for r in np.concatenate([u8(d.train_x), u8(d.val_x)])]
    assert set(got) == rows and len(got) == 300
    again = load_fashion_mnist(tmp_path, val_size=60)
    assert torch.equal(again.val_x, d.val_x)
    other = load_fashion_mnist(tmp_path, val_size=60, split_seed=1)
    assert not torch.equal(other.val_y, d.val_y) or not torch.equal(other.val_x, d.val_x)


def test_env_var_and_torchvision_layout(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_fixture(raw, 120, 20, gz=False)
    monkeypatch.setenv("FMNIST_DIR", str(tmp_path))
    d = load_fashion_mnist(val_size=20)
    assert d.source == str(raw) and len(d.train_y) == 100


def test_idx_header_parsing(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data.write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    b = np.array([1, -2, 3], dtype=np.int32)
    data.write_idx(tmp_path / "b", b)
    assert np.array_equal(read_idx(tmp_path / "b"), b)


def test_missing_names_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as e:
        load_fashion_mnist()
    msg = str(e.value)
    assert "FMNIST_DIR" in msg and "apt-get install dataset-fashion-mnist" in msg and "internet" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_everywhere_download_fails(tmp_path, monkeypatch, no_env):
    """No folder, no Debian package, and the torchvision download fails: DataNotFoundError."""
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")

    def offline(cache):
        raise OSError("no internet")
    monkeypatch.setattr(data, "_torchvision_download", offline)
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()
    assert not (tmp_path / "cache").exists()


def test_download_leaves_nothing_half_written(tmp_path, monkeypatch):
    """The real downloader (no internet here, or a stubbed failure) leaves no partial cache."""
    def fail(root, train=True, download=False):
        Path(root, "FashionMNIST", "raw").mkdir(parents=True, exist_ok=True)
        Path(root, "FashionMNIST", "raw", "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fail)
    with pytest.raises(RuntimeError):
        data._torchvision_download(tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []


def _corrupt_case(tmp_path, how):
    write_fixture(tmp_path, 100, 20)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(f.read_bytes())
    if how == "truncated_gz":
        f.write_bytes(f.read_bytes()[:-200])
    elif how == "not_gzip":
        f.write_bytes(b"this is not gzip at all")
    elif how == "wrong_magic":
        f.write_bytes(gzip.compress(b"\x00\x00\x07\x03" + payload[4:]))
    elif how == "wrong_length":
        f.write_bytes(gzip.compress(payload[:-28]))
    elif how == "count_mismatch":
        f = tmp_path / "train-labels-idx1-ubyte.gz"
        data.write_idx(f, np.zeros(99, np.uint8))
    return f


@pytest.mark.parametrize("how", ["truncated_gz", "not_gzip", "wrong_magic", "wrong_length", "count_mismatch"])
def test_corrupt_file_named(tmp_path, how, no_env):
    f = _corrupt_case(tmp_path, how)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CorruptDataError) as e:
        load_fashion_mnist(tmp_path, val_size=10)
    assert str(f) in str(e.value) and "good copy" in str(e.value)
    assert isinstance(e.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == before      # nothing written


def test_raw_preferred_and_atomic_write(tmp_path):
    a = np.zeros((3, 28, 28), np.uint8)
    data.write_idx(tmp_path / "x", a)
    assert [p.name for p in tmp_path.iterdir()] == ["x"]              # no temp file left


@pytest.mark.skipif(not (REAL / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist not installed")
def test_real_files(no_env):
    d = load_fashion_mnist(REAL)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (55000, 5000, 10000)
    assert d.train_x.shape[1:] == (1, 28, 28)
    assert abs(d.mean - data.FMNIST_TRAIN_MEAN) < 2e-3 and abs(d.std - data.FMNIST_TRAIN_STD) < 2e-3
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert load_fashion_mnist(REAL) .train_x is d.train_x          # cached in-process
