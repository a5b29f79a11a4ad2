"""benchmarks/bench_stacking.py on tiny sizes: its arguments and one measurement (no time limits)."""
import importlib
import sys
from pathlib import Path

import pytest

from optreport.engine import data as data_mod

from conftest import needs_torch_compile

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stacking.py"
if str(SCRIPT.parent) not in sys.path:
    sys.path.insert(0, str(SCRIPT.parent))
bench = importlib.import_module("bench_stacking")


def test_arguments():
    a = bench.parse_args(["--rules", "sgd,adam", "--k", "2,4", "--workers", "1"])
    assert a.rules == ["sgd", "adam"] and a.k == [2, 4] and a.workers == 1
    for bad in (["--rules", "nosuchrule"], ["--k", "0"], ["--k", "two"], ["--workers", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_measure_on_small_data(tmp_path):
    needs_torch_compile()
    data = data_mod.load_fashion_mnist(data_mod.write_fixture(tmp_path, n_train=700, n_test=100), val_size=100)
    r = bench.measure("sgd", data, k=2, blocks=2, steps=2, warmup=1)
    assert r["rule"] == "sgd" and r["k"] == 2
    assert r["one_ms"] > 0 and r["stacked_ms"] > 0 and r["speedup"] > 0
