"""benchmarks/bench_throughput.py on tiny sizes: the GEMM inventory and bound, one rule's
measurement with the real trainer on synthetic data, the table's format, and the script end to
end with one worker. No wall-clock limits: only shapes, counts, consistency and the output format."""
import csv
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from optreport.engine import data as data_mod
from optreport.engine.models import build_model, flops_per_example
from optreport.engine.train import EVAL_BATCH

from conftest import needs_torch_compile

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_throughput.py"
if str(SCRIPT.parent) not in sys.path:       # spawned workers import the module by this path too
    sys.path.insert(0, str(SCRIPT.parent))
bench = importlib.import_module("bench_throughput")

LAST_LINE = re.compile(r"^max ratio to the GEMM bound: \d+\.\d{2} \((\w+)\)$")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return data_mod.write_fixture(tmp_path_factory.mktemp("fmnist"), n_train=1000, n_test=300)


def test_gemm_ops_of_the_report_epoch():
    layers = bench.linear_shapes(build_model("mlp", 0))
    assert layers == [(784, 512), (512, 512), (512, 10)]
    ops = bench.gemm_ops(layers, 55_000, (5000, 10_000), batch=64, eval_batch=EVAL_BATCH)
    train = [op for op in ops if op.phase == "train"]
    # 859 batches of 64 and one of 24 = 860 steps; 3 forwards, 3 weight grads, 2 input grads each
    assert sorted({(op.m if op.kind != "grad_W" else op.k, op.count) for op in train}) == [(24, 1), (64, 859)]
    assert len(train) == 2 * 8
    assert not any(op.kind == "grad_x" and op.layer == 1 for op in ops)
    fwd = flops_per_example(build_model("mlp", 0))
    assert sum(op.flops * op.count for op in train) == (3 * fwd - 2 * 784 * 512) * 55_000
    ev = [op for op in ops if op.phase == "eval"]
    assert {op.kind for op in ev} == {"fwd"}
    assert sum(op.m * op.count for op in ev) == 3 * 15_000      # every eval image through 3 layers
    assert bench.batch_counts(15, 4) == {4: 3, 3: 1}


def test_hot_multiplies_on_small_shapes():
    ops = bench.gemm_ops([(16, 8), (8, 4)], 50, (20,), batch=8, eval_batch=16)
    b = bench.hot_multiplies(ops, reps=2, block_seconds=0.001)
    assert [op for op, _ in b["ops"]] == ops
    assert all(t > 0 for _, t in b["ops"])
    assert b["seconds"] == pytest.approx(sum(op.count * t for op, t in b["ops"]))
    for op in ops:                                     # operands in the layouts autograd uses
        a, m, out = bench._operands(op, bench.torch.Generator().manual_seed(0))
        assert a.shape == (op.m, op.k) and m.shape == (op.k, op.n) and out.shape == (op.m, op.n)
        assert m.is_contiguous() == (op.kind != "fwd") and a.is_contiguous() == (op.kind != "grad_W")


def test_step_gemms_are_the_steps_multiplies_on_the_models_tensors():
    torch = bench.torch
    net = build_model("small_mlp", 0)
    layers = bench.linear_shapes(net)
    mods = [m for m in net.modules() if isinstance(m, bench.nn.Linear)]
    for m in mods:
        m.weight.grad = torch.zeros_like(m.weight)
    before = [m.weight.detach().clone() for m in mods]
    seq = bench.StepGemms(layers, 8, weights=mods)
    seq()
    assert seq.w[0] is mods[0].weight and seq.wg[-1] is mods[-1].weight.grad      # the model's own tensors
    assert all(torch.equal(m.weight, w) for m, w in zip(mods, before))            # weights untouched
    h = seq.x                                           # the forward chain and the last weight gradient
    for j, m in enumerate(mods):
        h = h @ m.weight.detach().t()
        assert torch.allclose(seq.z[j], h, rtol=1e-5, atol=1e-5)
    assert torch.allclose(mods[-1].weight.grad, seq.gz.t() @ seq.z[-2], rtol=1e-5, atol=1e-5)
    assert all(m.weight.grad.abs().sum() > 0 for m in mods)                      # every grad_W written
    ev = bench.StepGemms(layers, 5, train=False)                                  # evaluation: forward only
    ev()
    assert ev.wg == [] and ev.z[-1].shape == (5, layers[-1][1])


def test_interleaved_bound_leaves_the_training_numbers_unchanged(fixture_dir):
    needs_torch_compile()
    data = data_mod.load_fashion_mnist(fixture_dir, val_size=200)
    layers = bench.linear_shapes(build_model("mlp", 0))
    cb = bench.InterleavedBound(layers)
    kw = dict(data=data, epochs=1, batch_size=64, seed=3, max_steps=5, threads=1)
    with_cb = bench.train("mlp", "adam", {"lr": 1e-3}, callback=cb, **kw)
    plain = bench.train("mlp", "adam", {"lr": 1e-3}, **kw)
    assert cb.calls == 5 and cb.seconds > 0
    assert with_cb["step_losses"] == plain["step_losses"]
    assert with_cb["epochs"][0]["test_acc"] == plain["epochs"][0]["test_acc"]


def test_interleaved_bound_of_a_stack_times_each_models_multiplies(fixture_dir):
    """Stacked (the sweep's way), the callback gets the stack's models: it runs each one's step
    multiplies, and the training's numbers stay those of the stack without it."""
    data = data_mod.load_fashion_mnist(fixture_dir, val_size=200)
    layers = bench.linear_shapes(build_model("mlp", 0))
    cb = bench.InterleavedBound(layers)
    kw = dict(data=data, epochs=1, batch_size=64, seeds=[3, 4], max_steps=4, threads=1, compile_step=False)
    with_cb = bench.train_stacked("mlp", "adam", {"lr": 1e-3}, callback=cb, **kw)
    plain = bench.train_stacked("mlp", "adam", {"lr": 1e-3}, **kw)
    assert cb.calls == 4 and cb.models == 2 and len(cb.fns) == 2 and cb.seconds > 0
    assert [r["step_losses"] for r in with_cb] == [r["step_losses"] for r in plain]


def test_table_format_and_summary():
    op = bench.GemmOp("train", "fwd", 1, 4, 3, 2, 10)
    raw = {"gemm": {0: [(op, 0.01)], 1: [(op, 0.03)]},          # hot reference: mean(0.1, 0.3) = 0.2 s
           "rules": [dict(rule=r, worker=w, epoch_seconds=s, train_seconds=s - 0.1, step_seconds=0.05,
                          eval_seconds=0.1, steps_timed=2, steps_per_epoch=13, diverged=False,
                          bound_seconds=b, bound_train_seconds=b - 0.05, seq_seconds=0.01)
                     for r, s0 in (("sgd", 0.4), ("adam", 1.0))
                     for w, s, b in ((0, s0, 0.25), (1, s0 + 0.2, 0.35))]}
    bound, rows = bench.summarize(raw)
    assert bound["seconds"] == pytest.approx(0.3) and bound["hot_seconds"] == pytest.approx(0.2)
    sgd, adam = rows
    assert sgd["s_per_epoch_per_worker"] == pytest.approx(0.5)
    assert sgd["model_epochs_per_core_second"] == pytest.approx(2 / 1.0)
    assert adam["ratio_to_gemm_bound"] == pytest.approx((1.0 + 1.2) / (0.25 + 0.35))   # each worker's own bound
    assert adam["worker_ratio"] == pytest.approx([1.0 / 0.25, 1.2 / 0.35])
    assert adam["ratio_to_hot_gemm"] == pytest.approx(1.1 / 0.2)
    lines = bench.table_lines(rows)
    m = LAST_LINE.match(lines[-1])
    assert m and m.group(1) == "adam" and lines[-1].endswith("3.67 (adam)")
    assert any(line.startswith("sgd") for line in lines)
    assert any(line.startswith("warning: the workers' ratios differ") for line in lines)   # 4.00 vs 3.43
    assert bench.bound_lines(bound)[0].startswith("GEMM bound: 0.300 core-seconds per epoch")


def test_write_csv(tmp_path):
    rows = [dict(rule="sgd", workers=1, s_per_epoch_per_worker=1.0, model_epochs_per_core_second=1.0,
                 ratio_to_gemm_bound=2.0, train_s=0.9, step_s=0.1, eval_s=0.1, steps_timed=2,
                 steps_per_epoch=13, gemm_bound_s=0.5, gemm_hot_s=0.4, ratio_to_hot_gemm=2.5, diverged=False,
                 worker_s=[1.0])]
    bench.write_csv(tmp_path / "sub" / "t.csv", rows)
    got = list(csv.DictReader(open(tmp_path / "sub" / "t.csv")))
    assert got[0]["rule"] == "sgd" and float(got[0]["ratio_to_gemm_bound"]) == 2.0
    assert list(got[0]) == bench.CSV_FIELDS


def test_arguments():
    a = bench.parse_args(["--quick", "--rules", "sgd,adam", "--workers", "1", "--stack", "1"])
    assert a.rules == ["sgd", "adam"] and a.steps == bench.QUICK_STEPS and a.warmup == bench.QUICK_WARMUP
    a = bench.parse_args(["--quick"])                         # the sweep's stack: about as many model-steps
    assert a.stack == bench.STACK == 5 and a.steps == bench.QUICK_STACKED_STEPS == 20
    assert bench.parse_args(["--quick", "--stack", "2"]).steps == 30
    assert bench.parse_args([]).steps is None                 # the whole epoch
    for bad in (["--rules", "nosuchrule"], ["--stack", "0"], ["--stack", "2", "--autograd"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_measure_rule_with_the_real_trainer(fixture_dir):
    needs_torch_compile()
    data = data_mod.load_fashion_mnist(fixture_dir, val_size=200)
    bench.warm_up("sgd", data, steps=1)
    r = bench.measure_rule("sgd", data, steps=2)
    assert r["steps_timed"] == 2 and r["steps_per_epoch"] == 13          # 800 training images / 64
    assert r["epoch_seconds"] == pytest.approx(r["train_seconds"] + r["eval_seconds"])
    assert 0 < r["step_seconds"] < r["train_seconds"] and r["eval_seconds"] > 0
    # the bound measured alongside: 800 / 64 steps' multiplies plus the evaluation's (200 + 300 images)
    assert r["bound_train_seconds"] == pytest.approx(r["seq_seconds"] * 800 / 64)
    assert set(r["eval_seq_seconds"]) == {200, 300}
    assert r["bound_seconds"] == pytest.approx(r["bound_train_seconds"] + sum(r["eval_seq_seconds"].values()))
    assert r["stack"] == 1


def test_measure_rule_stacked_is_per_model(fixture_dir):
    needs_torch_compile()
    data = data_mod.load_fashion_mnist(fixture_dir, val_size=200)
    bench.warm_up("sgd", data, steps=1, stack=2)
    r = bench.measure_rule("sgd", data, steps=2, stack=2)
    assert r["stack"] == 2 and r["steps_timed"] == 2 and r["steps_per_epoch"] == 13
    assert r["epoch_seconds"] == pytest.approx(r["train_seconds"] + r["eval_seconds"])
    assert 0 < r["step_seconds"] < r["train_seconds"] and r["eval_seconds"] > 0
    assert r["bound_train_seconds"] == pytest.approx(r["seq_seconds"] * 800 / 64)     # one model's multiplies


@pytest.mark.slow
def test_script_end_to_end_with_one_worker(fixture_dir, tmp_path):
    needs_torch_compile()
    out_csv = tmp_path / "t.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workers", "1", "--rules", "sgd,momentum", "--steps", "2",
                           "--warmup", "1", "--data", str(fixture_dir), "--val-size", "200", "--csv", str(out_csv)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    assert any(line.startswith("GEMM bound:") for line in lines)
    assert any("1 worker process(es)" in line and "2 steps timed" in line for line in lines)
    assert [r["rule"] for r in csv.DictReader(open(out_csv))] == ["sgd", "momentum"]


@pytest.mark.slow
def test_script_fails_loudly(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workers", "1", "--rules", "sgd", "--steps", "2",
                           "--data", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "worker 0 failed" in proc.stderr and "DataNotFoundError" in proc.stderr


def test_bench_fastpath_pairs_and_summary(fixture_dir, capsys):
    fast_bench = importlib.import_module("bench_fastpath")
    assert fast_bench.main(["--rules", "sgd", "--pairs", "2", "--steps", "3", "--data", str(fixture_dir),
                            "--val-size", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("sgd ") and len(line.split()) == 5]
    assert len(rows) == 2
    for line in rows:
        _, _, fast, slow, ratio = line.split()
        assert abs(float(fast) / float(slow) - float(ratio)) < 2e-3
    summary = r"sgd: fast path / autograd, median ratio \d\.\d{3}; the fast path was faster in [012] of 2 pairs"
    assert re.fullmatch(summary, out[-1])
    for bad in (["--rules", "nope"], ["--pairs", "0"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            fast_bench.main(bad)
