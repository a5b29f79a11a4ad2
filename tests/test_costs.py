"""costs.py: optimizer-state bytes counted by hand, timings positive (no time limits)."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from optimizers import OPTIMIZERS
from optreport.analysis import costs
from optreport.report import figures as plotting
from optreport.report import readings, tables


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]


def _stepped(rule, **hp):
    params = _params()
    opt = OPTIMIZERS[rule](params, lr=0.01, **hp)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    return opt, sum(p.numel() for p in params), len(params)


def test_state_bytes_hand_count():
    opt, n, _ = _stepped("sgd")
    assert costs.state_bytes(opt) == 0                       # plain SGD keeps nothing
    opt, n, _ = _stepped("momentum")
    assert costs.state_bytes(opt) == 4 * n                   # one fp32 momentum_buffer
    opt, n, k = _stepped("adam")
    step_bytes = sum(costs._tensor_bytes(s["step"]) for s in opt.state.values())
    assert step_bytes <= 8 * k                               # 0-d step counters
    assert costs.state_bytes(opt) == 2 * 4 * n + step_bytes  # exp_avg + exp_avg_sq


def test_state_bytes_matches_torch_adam():
    params = _params()
    opt = torch.optim.Adam(params, lr=0.01)
    for p in params:
        p.grad = torch.ones_like(p)
    assert costs.state_bytes(opt) == 0                       # lazy state: nothing before a step
    opt.step()
    n = sum(p.numel() for p in params)
    assert costs.state_bytes(opt) == 8 * n + 2 * 4           # two buffers + two fp32 step tensors


@pytest.mark.parametrize("rule", list(OPTIMIZERS))
def test_state_bytes_per_param_every_rule(rule):
    b = costs.state_bytes_per_param(rule, model="small_mlp")
    assert b >= 0 and math.isfinite(b)


def test_state_bytes_per_param_values():
    assert costs.state_bytes_per_param("sgd", model="small_mlp") == 0
    assert costs.state_bytes_per_param("momentum", model="small_mlp") == pytest.approx(4.0)
    assert costs.state_bytes_per_param("adam", model="small_mlp") == pytest.approx(8.0, abs=0.01)


def test_step_time_positive():
    r = costs.step_time_us("adam", model="small_mlp", repeats=2, inner=2, warmup=1)
    assert r["step_us"] > 0 and r["fwd_bwd_us"] > 0
    assert 0 < r["step_share"] < 1
    with pytest.raises(ValueError):
        costs.step_time_us("adam", repeats=0)


def test_step_time_table_interleaved():
    t = costs.step_time_table(["sgd", "adam"], model="small_mlp", repeats=2, inner=2, warmup=1)
    assert list(t.rule) == ["sgd", "adam"]
    assert (t.step_us > 0).all() and (t.fwd_bwd_us > 0).all()


def test_step_time_restores_threads():
    before = torch.get_num_threads()
    costs.step_time_us("sgd", model="small_mlp", repeats=1, inner=1, warmup=0, threads=1)
    assert torch.get_num_threads() == before


def test_step_time_flushes_denormals_while_measuring_only(monkeypatch):
    seen = []
    real = costs.make_optimizer

    def spy(rule, params, hparams=None):          # runs inside the measurement
        seen.append(float(torch.tensor(1e-40) * 1.0))
        return real(rule, params, hparams)
    monkeypatch.setattr(costs, "make_optimizer", spy)
    costs.step_time_us("sgd", model="small_mlp", repeats=1, inner=1, warmup=0)
    costs.step_time_us("sgd", model="small_mlp", repeats=1, inner=1, warmup=0, flush_denormal=False)
    assert seen[0] == 0.0 and seen[1] > 0.0                  # flushed / not flushed
    assert float(torch.tensor(1e-40) * 1.0) > 0.0            # torch's default again afterwards


def test_unknown_rule():
    with pytest.raises(ValueError, match="Unknown rule"):
        costs.state_bytes_per_param("nope")


def _records():
    """Two rules x two seeds x three epochs of fake per-epoch records."""
    rows = []
    for rule, secs, accs in [("fast", 1.0, [0.80, 0.86, 0.89]), ("slow", 2.0, [0.70, 0.80, 0.84])]:
        for seed in (0, 1):
            for e, a in enumerate(accs, 1):
                rows.append(dict(key=f"{rule}{seed}", rule=rule, lr=0.1, seed=seed, epoch=e,
                                 val_acc=a, test_acc=a + 0.001 * seed, train_seconds=secs,
                                 step_seconds=secs / 4))
    return pd.DataFrame(rows)


def test_time_to_target_counts_unreached():
    t = costs.time_to_target(_records(), [0.85, 0.88], n_boot=200)
    fast85 = t[(t.rule == "fast") & (t.target == 0.85)].iloc[0]
    assert fast85.n_runs == 2 and fast85.n_reached == 2 and fast85.median_s == 2.0
    slow88 = t[(t.rule == "slow") & (t.target == 0.88)].iloc[0]
    assert slow88.n_reached == 0 and np.isinf(slow88.median_s)     # kept, reported as inf


def test_epoch_costs_and_best_lr():
    d = _records()
    c = costs.epoch_costs(d, by=("rule",))
    assert c.set_index("rule").loc["slow", "train_s"] == pytest.approx(2.0)
    assert c.set_index("rule").loc["fast", "step_share"] == pytest.approx(0.25)
    assert costs.best_lr(d) == {"fast": 0.1, "slow": 0.1}


def test_accuracy_vs_time_cumulative():
    a = costs.accuracy_vs_time(_records())
    s = a[a.rule == "slow"]
    assert list(s.seconds) == [2.0, 4.0, 6.0]


def test_markdown_table(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")], "c": ["x|y", "z"]})
    md = tables.markdown_table(df)
    assert md.splitlines()[0] == "| a | b | c |" and "x\\|y" in md
    tables.save_table(df, tmp_path, "t")
    assert (tmp_path / "t.csv").exists() and (tmp_path / "t.md").exists()


def _with_sgd(d):
    """_records() with 'fast' renamed 'sgd' (the tables compare every rule with SGD)."""
    return d.assign(rule=d.rule.replace({"fast": "sgd"}), key=d.key.str.replace("fast", "sgd"),
                    diverged=False, diverged_epoch=pd.array([pd.NA] * len(d), dtype="Int64"))


def test_step_cost_and_epoch_cost_tables():
    bench = pd.DataFrame({"rule": ["sgd", "slow"], "model": "mlp", "batch_size": 64, "step_us": [10.0, 30.0],
                          "fwd_bwd_us": [90.0, 90.0], "step_share": [0.1, 0.25], "repeats": 2, "inner": 3,
                          "threads": 1})
    full, table = tables.step_cost(bench, [0.0, 8.0])
    assert list(table.columns) == tables.STEP_COST_COLUMNS
    assert list(full.step_vs_sgd) == [1.0, 3.0] and list(full.total_us) == [100.0, 120.0]
    d = _with_sgd(_records())
    best = costs.best_lr(d)
    e = tables.epoch_cost(d, best, full, ["sgd", "slow"]).set_index("rule")
    assert e.loc["slow", "epoch_vs_sgd"] == pytest.approx(2.0) and e.loc["sgd", "best_lr"] == 0.1
    assert e.loc["slow", "state_bytes_per_param"] == 8.0
    assert e.loc["sgd", "acc"] == pytest.approx(0.8905)                  # mean final test accuracy
    fig = plotting.step_time_figure(full, "mlp", 64)
    plt.close(fig)
    fig = plotting.epoch_seconds_figure(e.reset_index())
    plt.close(fig)


def test_time_to_target_table_in_the_rules_order_and_figures():
    d = _records()
    t = tables.time_to_target(d, [0.88, 0.85], ["slow", "fast"], n_boot=50)
    assert list(zip(t.target, t.rule)) == [(0.85, "slow"), (0.85, "fast"), (0.88, "slow"), (0.88, "fast")]
    fig = plotting.time_to_target_figure(t, [0.85, 0.88])
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = plotting.accuracy_vs_time_figure(costs.accuracy_vs_time(d), ["fast", "slow"])
    plt.close(fig)


def test_seed004_table_and_figure():
    d = _with_sgd(_records()).assign(test_loss=0.5)
    t = tables.seed004(costs.run_times(d), epochs=3).set_index("rule")
    assert t.loc["slow", "n_seeds"] == 2 and t.loc["slow", "sec_per_epoch"] == pytest.approx(2.0)
    assert t.loc["slow", "total_s"] == pytest.approx(6.0) and (t["epochs"] == 3).all()
    assert t.loc["sgd", "test_acc"] == pytest.approx(0.8905)
    fig = plotting.seed004_figure(costs.accuracy_vs_time(d, by=("rule", "lr")), [0.1], "small_mlp")
    plt.close(fig)


def test_stored_measurement_is_data_not_a_render_side_effect(tmp_path):
    calls = []

    def measure():
        calls.append(1)
        return pd.DataFrame({"rule": ["sgd"], "step_us": [123.456789012345]})
    path = tmp_path / "bench.csv"
    first = costs.stored_measurement(path, measure)
    again = costs.stored_measurement(path, measure)
    assert len(calls) == 1 and first.equals(again)                 # read back, not re-measured
    assert {"machine", "measured_utc"} <= set(first.columns)
    costs.stored_measurement(path, measure, remeasure=True)
    assert len(calls) == 2


@pytest.mark.parametrize("rule", sorted(OPTIMIZERS))
def test_step_arrays_count_the_rules_own_state(rule):
    """3 arrays (parameter read and written, gradient read) + 2 per parameter-sized state buffer
    (+1 for Gravity's second pass over the gradient): checked against the state the rule keeps."""
    p = torch.nn.Parameter(torch.randn(7, 5))
    p.grad = torch.randn_like(p)
    opt = OPTIMIZERS[rule]([p], lr=0.01)
    opt.step()
    buffers = sum(1 for v in opt.state[p].values() if torch.is_tensor(v) and v.shape == p.shape)
    assert costs.STEP_ARRAYS[rule] == 3 + 2 * buffers + (rule == "gravity")
    assert costs.step_bytes_per_param(rule) == 4 * costs.STEP_ARRAYS[rule]
    assert costs.step_bytes_per_param(rule, itemsize=8) == 8 * costs.STEP_ARRAYS[rule]


def test_step_bytes_unknown_rule():
    with pytest.raises(ValueError, match="Unknown rule"):
        costs.step_bytes_per_param("lion")


def test_stream_update_moves_each_parameter_by_its_gradient():
    p = torch.nn.Parameter(torch.ones(4, 3))
    p.grad = torch.full((4, 3), 2.0)
    u = costs.StreamUpdate([p], lr=0.5)
    u.step()
    assert torch.equal(p.detach(), torch.zeros(4, 3))
    u.zero_grad()
    assert p.grad is None


def test_step_modes_table_and_its_reading_and_figure():
    old = torch.get_num_threads()
    t = costs.step_modes_table(["sgd", "adam"], "small_mlp", repeats=2, inner=2, threads=1)
    assert torch.get_num_threads() == old
    assert list(t.columns) == costs.STEP_MODES_COLUMNS and list(t["rule"]) == ["sgd", "adam"]
    n = 52_650                                               # small_mlp's parameters
    assert t["mb_per_step"].tolist() == pytest.approx([12 * n / 1e6, 28 * n / 1e6])
    assert t["state_buffers"].tolist() == [0, 2]
    assert t.loc[1, "floor_us"] == pytest.approx(t.loc[0, "floor_us"] * 7 / 3)     # bytes ratio, one bandwidth
    for r in t.itertuples():
        assert r.floor_us == pytest.approx(r.mb_per_step * 1e6 / (r.bandwidth_gb_s * 1e9) * 1e6)
        assert r.compiled_vs_floor == pytest.approx(r.compiled_us / r.floor_us)
        assert r.eager_vs_floor == pytest.approx(r.eager_us / r.floor_us)
        assert r.compiled_vs_eager == pytest.approx(r.compiled_us / r.eager_us)
        assert r.eager_us > 0 and r.compiled_us > 0
    fig = plotting.step_modes_figure(t)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_xlabel().startswith("µs per optimizer step")
    plt.close(fig)


def test_step_modes_reading_says_what_the_table_says():
    t = pd.DataFrame({"rule": ["sgd", "adam", "gravity"], "mb_per_step": [8.0, 18.8, 10.7],
                      "floor_us": [250.0, 590.0, 335.0], "eager_us": [350.0, 9400.0, 1000.0],
                      "compiled_us": [520.0, 2400.0, 800.0], "bandwidth_gb_s": [32.0] * 3, "threads": [1] * 3})
    t["compiled_vs_eager"] = t["compiled_us"] / t["eager_us"]
    t["eager_vs_floor"] = t["eager_us"] / t["floor_us"]
    t["compiled_vs_floor"] = t["compiled_us"] / t["floor_us"]
    s = readings.step_modes_reading(t)
    assert "8.0 MB per step (SGD" in s and "18.8 MB (Adam: two state buffers more)" in s
    assert "32.0 GB/s" in s and "250–590 µs" in s
    assert "2.1× (SGD) to 4.1× (Adam)" in s                       # compiled over the floor
    assert "eager ones 1.4× to 15.9×" in s
    assert "Compiling makes 2 of 3 steps faster (most Adam: 3.9× faster), and SGD (1.49× the eager time) slower." in s
    t["compiled_us"] = t["eager_us"] * 2
    t["compiled_vs_eager"] = 2.0
    t["compiled_vs_floor"] = t["compiled_us"] / t["floor_us"]
    assert readings.step_modes_reading(t).endswith("Compiling makes no step faster here.")


def test_timing_analyses_warn_when_stacked_and_alone_runs_mix():
    """A stacked run's seconds are its share of the stack's: mixing modes would credit the rule."""
    rows = [dict(key=k, rule="sgd", lr=0.1, seed=i, epoch=1, train_seconds=s, step_seconds=0.1, test_acc=0.5,
                 stacked=n) for i, (k, s, n) in enumerate([("a", 10.0, 1), ("b", 8.0, 4), ("c", 8.0, 4)])]
    df = pd.DataFrame(rows)
    with pytest.warns(RuntimeWarning, match="1: 1 runs, 4: 2 runs"):
        assert not costs.one_timing_mode(df)
    with pytest.warns(RuntimeWarning, match="different modes"):
        costs.epoch_costs(df)
    assert costs.one_timing_mode(df[df.stacked == 4]) and costs.one_timing_mode(df.drop(columns="stacked"))
