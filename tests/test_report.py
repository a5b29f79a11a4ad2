"""The main job (report.py) and the outputs of notebooks 01-03 in quick mode.

Most tests use the session fixture ``quick_report`` (tests/conftest.py): one run of
``python -m optreport.report --quick --out <tmp>``. The rest are unit tests of report.py and of the
helpers the notebooks use (tables, probes)."""
import copy
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from optimizers import OPTIMIZERS
from optreport.analysis import probes, tuning
from optreport.report import build as report
from optreport.report import experiments as ex
from optreport.report import figures as plotting
from optreport.report import plans, tables
from optreport.runs.results import write_run

from conftest import COMMITTED, REPO, data_available, folder_hash, read_table

RULES = ["sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta",
         "adam", "nadam", "adamw", "gravity", "cosine"]
CLASSIC = RULES[:9]
LRS = [0.01, 0.1, 0.2]
STANDARD = ["QUICK", "IMG_DIR", "RESULTS_DIR", "STORAGE", "WORKERS", "FORCE"]
NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# notebooks whose runs are still training: not rendered by the report, held to the same conventions
DRAFTS = sorted(f"drafts/{p.stem}" for p in (REPO / "notebooks" / "drafts").glob("[0-9][0-9]_*.ipynb"))


# ----------------------------------------------------------------------------- static checks
@pytest.mark.parametrize("name", NOTEBOOKS + DRAFTS)
def test_parameters_cell_has_the_six_standard_names_first(name):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.lstrip().startswith("#")
    assert nb.cells[1] is tagged[0], "the parameters cell comes right after the title"
    names = re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", tagged[0].source, flags=re.M)
    assert names[:6] == STANDARD
    # quick-mode defaults are off in the committed notebook
    assert re.search(r"^QUICK = False", tagged[0].source, flags=re.M)


ABSOLUTE = re.compile(r"(?<![\w.])/(tmp|home|root|work|usr|opt|var)/")     # "../../tmp/x" is relative
TIMING_KEYS = ("start_time", "end_time", "duration", "iopub.", "shell.execute_reply")


def assert_reproducible(text: str, where: str) -> None:
    """No absolute path, no papermill or execution timing metadata in a rendered file."""
    found = ABSOLUTE.search(text)
    assert found is None, f"{where}: absolute path ...{text[max(0, found.start() - 80):found.end() + 80]}..."
    for key in TIMING_KEYS:
        assert key not in text, f"{where}: timing metadata {key!r}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_reproducible(name):
    """A full run writes the executed notebooks back (with outputs): no absolute paths, no
    timestamps or durations, no papermill metadata, no injected parameters cell."""
    path = REPO / "notebooks" / f"{name}.ipynb"
    assert_reproducible(path.read_text(), path.name)
    nb = nbformat.read(path, as_version=4)
    assert "papermill" not in nb.metadata
    assert not any({"papermill", "execution"} & set(c.metadata) for c in nb.cells)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert len({c.get("id") for c in nb.cells}) == len(nb.cells), "cell ids unique"


def test_paths_quick_never_point_at_committed_folders(tmp_path):
    p = report.paths(True, None)
    assert Path(p["RESULTS_DIR"]) == report.QUICK_DIR / "results"
    assert Path(p["IMG_DIR"]) == report.QUICK_DIR / "img"
    assert p["STORAGE"] == f"sqlite:///{report.QUICK_DIR / 'build' / 'runs.optuna.sqlite3'}"
    full = report.paths(False, None)
    assert Path(full["IMG_DIR"]) == REPO / "img" and Path(full["RESULTS_DIR"]) == REPO / "results"
    out = report.paths(True, str(tmp_path))
    assert Path(out["RESULTS_DIR"]) == tmp_path / "results"


@pytest.mark.parametrize("name", NOTEBOOKS + DRAFTS)
def test_full_run_passes_the_notebooks_own_relative_defaults(name):
    """The parameters a full run injects are the parameters cell's defaults ("../img" ...):
    relative to notebooks/, the kernel's cwd, so no absolute path reaches an output."""
    rel = report.notebook_parameters(report.paths(False, None))
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
    for key, value in rel.items():
        assert re.search(rf'^{key} = "{re.escape(value)}"', params, flags=re.M), (key, value)
    quick = report.notebook_parameters(report.paths(True, None))
    assert quick["IMG_DIR"] == "../build/quick/img"
    assert not any(v.startswith("/") or v.startswith("sqlite:////") for v in quick.values())


def _papermill_like_notebook():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 07 — A question?\n\nText."),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("QUICK = True", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_markdown_cell("## 1 · The $\\theta$ curve"),
        nbformat.v4.new_code_cell("save(fig, IMG_DIR, '07_curve')")])
    nb.metadata["papermill"] = {"input_path": "/abs/in.ipynb", "start_time": "2026-01-01T00:00:00"}
    for i, c in enumerate(nb.cells):
        c.metadata["papermill"] = {"duration": 1.5, "start_time": "x", "end_time": "y", "status": "completed"}
        if c.cell_type == "code":
            c.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
            c.execution_count = i
    nb.cells[4].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="W1201 torch/utils/cpp_extension.py:183] No CUDA "
                               "runtime is found, using CUDA_HOME='/usr/local'\n"),
        nbformat.v4.new_output("stream", name="stderr", text="a real warning\n"
                               "/x/site-packages/scipy/stats/_a.py:430: RuntimeWarning: Precision loss\n"
                               "  return f(*args)\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {
            "model_id": "c402cb715e204090b62793abb27153ae"}, "text/plain": "runs:   0%|"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=4)]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_clean_notebook_strips_timing_paths_and_noise():
    raw = _papermill_like_notebook()
    nb = report.clean_notebook(copy.deepcopy(raw))
    text = nbformat.writes(nb)
    assert "papermill" not in text and "iopub" not in text and "start_time" not in text
    assert "widget" not in text and len(nb.cells[4].outputs) == 3
    assert nb.cells[2].id == "injected-parameters"
    outs = nb.cells[4].outputs
    assert [o.get("text") for o in outs[:1]] == ["a real warning\n"]
    alt = outs[1].metadata["image/png"]["alt"]
    assert "07 · A question?" in alt and "07_curve" in alt and "The theta curve" in alt
    assert report.clean_notebook(copy.deepcopy(raw)) == nb                # the same every time
    committed = report.without_injected_parameters(nb)
    assert [c.get("execution_count") for c in committed.cells if c.cell_type == "code"] == [1, 2]
    assert committed.cells[3].outputs[-1]["execution_count"] == 2


def test_titles_read_the_same_everywhere():
    assert report.display_title("05 — How does it change?") == "05 · How does it change?"
    assert report.display_title("01 · How?") == "01 · How?"
    for name in NOTEBOOKS:
        title = report.notebook_title(nbformat.read(REPO / "notebooks" / f"{name}.ipynb", 4))
        assert re.match(rf"{name[:2]} · \S", title), title


def test_find_notebooks_in_order_and_only():
    all_ = report.find_notebooks()
    assert [p.stem for p in all_] == NOTEBOOKS
    assert [p.name[:2] for p in report.find_notebooks(["03", "01"])] == ["01", "03"]


@pytest.mark.slow
def test_missing_data_exits_2_before_running_anything(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "optreport.report", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "FMNIST_DIR": str(empty)})
    assert proc.returncode == 2, proc.stderr
    assert "Fashion-MNIST" in proc.stderr
    assert not (out / "notebooks").exists()


@pytest.mark.slow
def test_failing_notebook_is_named_and_kept(tmp_path, monkeypatch):
    """A notebook that raises stops the job with its name and the cell's error."""
    ok, why = data_available()
    if not ok:
        pytest.skip(why)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A broken notebook"),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
        nbformat.v4.new_code_cell("print('never')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / "99_broken.ipynb")
    monkeypatch.setattr(report, "NOTEBOOK_DIR", nbdir)
    rc = report.main(["--quick", "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 1
    kept = tmp_path / "out" / "notebooks" / "99_broken.ipynb"
    assert kept.exists()
    assert "boom" in (tmp_path / "out" / "results" / "html" / "99_broken.html").read_text()
    source = nbformat.read(nbdir / "99_broken.ipynb", as_version=4)           # quick mode: source untouched
    assert not any(c.get("outputs") for c in source.cells if c.cell_type == "code")
    rows = list(csv.DictReader(open(tmp_path / "out" / "build" / "report_timing.csv")))
    assert rows[0]["status"] == "failed"


def _notebook(nbdir, name, title, *code):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# {title}"),
        nbformat.v4.new_code_cell("QUICK = False", metadata={"tags": ["parameters"]}),
        *[nbformat.v4.new_code_cell(c) for c in code]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbdir / name)


@pytest.mark.slow
def test_jobs_run_notebooks_side_by_side_and_a_failure_starts_no_new_one(tmp_path, monkeypatch):
    """--jobs 2: two notebooks execute at once (each sees the other's flag file), each with its own
    manifest variable; the failing one is named, the running one (which ends only once the report has
    recorded the failure) finishes, the next never starts."""
    ok, why = data_available()
    if not ok:
        pytest.skip(why)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    flags = tmp_path / "flags"
    flags.mkdir()
    wait_for = ("import os, time\nfrom pathlib import Path\n"
                f"flags = Path({str(flags)!r})\n"
                "(flags / '{me}').write_text(os.environ.get('{env}', ''))\n"
                "t0 = time.time()\n"
                "while not (flags / '{other}').exists():\n"
                "    assert time.time() - t0 < 120, 'the other notebook never ran beside this one'\n"
                "    time.sleep(0.05)\n")
    env = report.sweep.MANIFEST_ENV
    out = tmp_path / "out"
    timing = out / "build" / "report_timing.csv"     # the report records 98's failure here first
    _notebook(nbdir, "97_slow.ipynb", "97 · Slow",
              wait_for.format(me="97", other="98", env=env)
              + f"while '98_broken' not in (Path({str(timing)!r}).read_text() if Path({str(timing)!r}).exists() "
                "else ''):\n"
                "    assert time.time() - t0 < 120, 'the report never recorded the failure'\n"
                "    time.sleep(0.05)\n"
                "print('97 done')")
    _notebook(nbdir, "98_broken.ipynb", "98 · Broken",
              wait_for.format(me="98", other="97", env=env) + "raise ValueError('boom')")
    _notebook(nbdir, "99_next.ipynb", "99 · Next", "print('99 ran')")
    monkeypatch.setattr(report, "NOTEBOOK_DIR", nbdir)
    rc = report.main(["--quick", "--out", str(out), "--no-progress", "--jobs", "2"])
    assert rc == 1
    assert "97 done" in (out / "notebooks" / "97_slow.ipynb").read_text()
    assert "boom" in (out / "results" / "html" / "98_broken.html").read_text()
    assert not (out / "notebooks" / "99_next.ipynb").exists()
    manifests = {(flags / n).read_text() for n in ("97", "98")}
    assert manifests == {str(out / "build" / "manifest_97_slow.txt"), str(out / "build" / "manifest_98_broken.txt")}
    rows = {r["notebook"]: r["status"] for r in csv.DictReader(open(out / "build" / "report_timing.csv"))}
    assert rows == {"97_slow": "ok", "98_broken": "failed"}


def test_jobs_below_one_is_refused_before_anything_runs(tmp_path, capsys):
    assert report.main(["--quick", "--out", str(tmp_path / "out"), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_training_seconds_sums_stored_runs(tmp_path):
    """The README's process-hours: train + eval seconds over every stored run; no runs folder -> 0."""
    assert report.training_seconds(tmp_path / "absent") == 0.0
    for i, (train_s, eval_s) in enumerate([(2.0, 0.5), (3.0, 1.0)]):
        epochs = [{"epoch": e, "train_seconds": train_s, "eval_seconds": eval_s, "step_seconds": 0.1,
                   "test_acc": 0.5} for e in (1, 2)]
        write_run(tmp_path / "runs", f"k{i}", {"model": "mlp", "rule": "sgd", "hparams": {"lr": 0.1},
                                               "seed": i, "epochs": 2, "batch_size": 64, "val_size": 5000},
                  {"epochs": epochs, "diverged": False, "diverged_epoch": None})
    assert report.training_seconds(tmp_path / "runs") == pytest.approx(2 * (2.5 + 4.0))


def test_cost_table_from_manifests_counts_a_shared_run_once(tmp_path, monkeypatch):
    """README's cost block: each notebook's runs (its manifest, written from the keys run_grid was asked
    for), a run shared with an earlier notebook counted there; seconds from the runs' records."""
    for i, (train_s, eval_s) in enumerate([(2.0, 0.5), (3.0, 1.0), (10.0, 0.0)]):
        epochs = [{"epoch": e, "train_seconds": train_s, "eval_seconds": eval_s, "step_seconds": 0.1,
                   "test_acc": 0.5} for e in (1, 2)]
        write_run(tmp_path / "runs", f"k{i}", {"model": "mlp", "rule": "sgd", "hparams": {"lr": 0.1},
                                               "seed": i, "epochs": 2, "batch_size": 64, "val_size": 5000},
                  {"epochs": epochs, "diverged": False, "diverged_epoch": None})
    log = tmp_path / "log.txt"
    monkeypatch.setenv(report.sweep.MANIFEST_ENV, str(log))
    report.sweep.run_grid([], runs_dir=tmp_path / "runs")            # nothing asked: nothing logged
    assert not log.exists() or log.read_text() == ""
    log.write_text("k1\nk0\nk1\n")
    report.write_manifest(log, tmp_path / "manifests" / "02_lr_sweep.txt")
    (tmp_path / "manifests" / "03_novel.txt").write_text("k1\nk2\nmissing\n")
    assert (tmp_path / "manifests" / "02_lr_sweep.txt").read_text() == "k0\nk1\n"
    t = report.cost_table(tmp_path).set_index("notebook")
    assert t.loc["02_lr_sweep", "runs"] == 2 and t.loc["03_novel", "runs"] == 2       # k1 counted in 02
    assert t.loc["03_novel", "stored"] == 1 and t.loc["03_novel", "model_epochs"] == 2
    assert t.loc["02_lr_sweep", "process_hours"] == pytest.approx(2 * (2.5 + 4.0) / 3600)
    md = report.cost_markdown(tmp_path)
    assert "| total | 4 | 6 |" in md and "Throughput" not in md and "paused" not in md
    (tmp_path / "bench_throughput.csv").write_text(     # the benchmark's table, as make bench writes it
        "rule,measured_utc,machine,workers,s_per_epoch_per_worker,model_epochs_per_core_second,ratio_to_gemm_bound,"
        "ratio_to_hot_gemm,gemm_bound_s,gemm_hot_s\n"
        "sgd,2026-12-02 16:00 UTC,AMD EPYC (AVX2),2,10.0,0.1,1.25,1.5,8.0,6.6\n"
        "adam,2026-12-02 16:00 UTC,AMD EPYC (AVX2),2,11.0,0.091,1.38,1.65,8.0,6.6\n")
    md = report.cost_markdown(tmp_path)
    assert "on 2026-12-02 16:00 UTC, AMD EPYC (AVX2), 2 workers" in md and "(mean 8.00 core-seconds" in md
    assert "(6.60 core-seconds per epoch)" in md and "| adam | 11.00 | 0.091 | 1.38 | 1.65 |" in md
    assert "one model at a time per worker" in md and "were trained stacked" in md     # stored runs: alone
    # the report's configuration (stacked) and the same benchmark one model at a time
    (tmp_path / "bench_throughput.csv").write_text(
        "rule,measured_utc,machine,workers,stack,s_per_epoch_per_worker,model_epochs_per_core_second,"
        "ratio_to_gemm_bound,ratio_to_hot_gemm,gemm_bound_s,gemm_hot_s\n"
        "sgd,2026-12-02 19:00 UTC,AMD EPYC (AVX2),2,4,8.0,0.125,1.10,1.3,7.0,6.6\n"
        "adam,2026-12-02 19:00 UTC,AMD EPYC (AVX2),2,4,9.0,0.111,1.20,1.4,7.0,6.6\n")
    (tmp_path / "bench_throughput_alone.csv").write_text(
        "rule,measured_utc,workers,stack,ratio_to_gemm_bound\nsgd,2026-12-02 19:10 UTC,2,1,1.32\n")
    md = report.cost_markdown(tmp_path)
    assert "4 models of one configuration stacked per worker" in md and "2026-12-02 19:10 UTC" in md
    assert "| sgd | 8.00 | 0.125 | 1.10 | 1.30 | 1.32 | 1.20 |" in md
    assert "| adam | 9.00 | 0.111 | 1.20 | 1.40 | – | – |" in md
    # the stacked estimate: k0 and k1 differ only in their seed (one stack of 2), k2 is 03's only run
    t = report.cost_table(tmp_path).set_index("notebook")
    assert t.loc["02_lr_sweep", "stacked_hours"] == t.loc["02_lr_sweep", "process_hours"]   # no gain measured at 2
    assert "| 02_lr_sweep | 2 | 4 |" in md and "no gain" in md
    (tmp_path / "bench_throughput_stack2.csv").write_text(
        "rule,measured_utc,workers,stack,ratio_to_gemm_bound\nsgd,2026-12-02 19:20 UTC,2,2,1.10\n")
    assert report.stack_gains(tmp_path) == pytest.approx({("sgd", 4): 1.32 / 1.10, ("sgd", 2): 1.32 / 1.10})
    (tmp_path / "bench_throughput_stack3.csv").write_text(        # another machine: its ratios do not compare
        "rule,machine,workers,stack,ratio_to_gemm_bound\nsgd,AMD EPYC (AVX-512),2,3,1.0\n")
    (tmp_path / "bench_throughput_alone.csv").write_text(
        "rule,measured_utc,machine,workers,stack,ratio_to_gemm_bound\n"
        "sgd,2026-12-02 19:10 UTC,AMD EPYC (AVX2),2,1,1.32\n")
    assert set(report.stack_gains(tmp_path)) == {("sgd", 4), ("sgd", 2)}
    t = report.cost_table(tmp_path).set_index("notebook")
    assert t.loc["02_lr_sweep", "stacked_hours"] == pytest.approx(2 * (2.5 + 4.0) / 3600 / 1.2)
    assert t.loc["03_novel", "stacked_hours"] == pytest.approx(t.loc["03_novel", "process_hours"])  # a stack of 1
    md = report.cost_markdown(tmp_path)
    assert "stacked: wall clock (h) |" in md and "at stack 2, 4" in md and "1.20–1.20×" in md
    assert f"| total | 4 | 6 | {(13 + 20) / 3600:.2f} | {(13 + 20) / 7200:.2f} | {(13 / 1.2 + 20) / 7200:.2f} |" in md


def test_cost_table_counts_an_epoch_of_a_paused_sweep_at_its_runs_median(tmp_path):
    """An epoch that was in flight while the sweep was paused (SIGSTOP) records the pause: the cost
    table counts it at its run's median epoch and says how many it corrected; a first epoch that is a
    few seconds slower (compiling) stays as measured, and so do runs of fewer than 3 epochs."""
    runs = {"k0": [(10.0, 1.0), (10.0, 1.0), (900.0, 1.0), (10.0, 1.0)],    # paused in epoch 3's training
            "k1": [(14.0, 1.0), (4.0, 1.0), (4.0, 90.0), (4.0, 1.0)],       # compile in 1; paused in eval 3
            "k2": [(5.0, 0.5), (500.0, 0.5)]}                               # 2 epochs: no median to trust
    for i, (key, eps) in enumerate(runs.items()):
        epochs = [{"epoch": e + 1, "train_seconds": t, "eval_seconds": v, "step_seconds": 0.1, "test_acc": 0.5}
                  for e, (t, v) in enumerate(eps)]
        write_run(tmp_path / "runs", key, {"model": "mlp", "rule": "sgd", "hparams": {"lr": 0.1}, "seed": i,
                                           "epochs": len(eps), "batch_size": 64, "val_size": 5000},
                  {"epochs": epochs, "diverged": False, "diverged_epoch": None})
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "02_lr_sweep.txt").write_text("k0\nk1\nk2\n")
    t = report.cost_table(tmp_path).iloc[0]
    expected = (40 + 4) + (26 + 4) + (505 + 1)                # k0: 900 -> 10; k1: eval 90 -> 1; k2 as is
    assert t.process_hours == pytest.approx(expected / 3600) and t.paused_epochs == 2
    assert "2 epochs in flight while the sweep was paused for a speed measurement count as their run's median" \
        in report.cost_markdown(tmp_path)


# ----------------------------------------------------------------------------- quick report


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_notebook_executed_and_exported(results, quick_report, name):
    path = Path(quick_report) / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert_reproducible(path.read_text(), path.name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "a cell was not executed"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    params = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "QUICK = True" in params.source
    html = results / "html" / f"{name}.html"
    assert html.exists() and html.stat().st_size > 10_000
    text = html.read_text()
    assert_reproducible(text, html.name)
    assert "cdnjs" not in text and "mathjax" not in text.lower() and "assets/katex/katex.min.js" in text
    assert "No description has been provided" not in text and text.count("<img alt=\"Figure ") >= 1
    assert f"href='../../notebooks/{name}.ipynb'" in text
    assert not (results / "notebooks").exists(), "executed copies live in notebooks/, not results/"


@pytest.mark.slow
def test_rendering_again_gives_the_same_bytes(results, quick_report, tmp_path):
    """The HTML and the index are functions of the executed notebooks and results only."""
    name = NOTEBOOKS[0]
    again = tmp_path / "html" / f"{name}.html"
    report.export_html(Path(quick_report) / "notebooks" / f"{name}.ipynb", again, f"../../notebooks/{name}.ipynb")
    assert again.read_bytes() == (results / "html" / f"{name}.html").read_bytes()
    before = (results / "index.html").read_bytes()
    listed = [(n, report.notebook_title(nbformat.read(REPO / "notebooks" / f"{n}.ipynb", 4))) for n in NOTEBOOKS]
    report.write_index(results, Path(quick_report) / "img", listed, True)
    assert (results / "index.html").read_bytes() == before
    assert_reproducible(before.decode(), "index.html")
    assert not re.search(r"20\d\d-\d\d-\d\d", before.decode()), "no date in the index"


@pytest.mark.slow
def test_index_links_every_notebook_with_title_and_time(results):
    index = (results / "index.html").read_text()
    links = {h for h in re.findall(r"href='([^']+)'", index) if not h.startswith("#")}
    for name in NOTEBOOKS:
        assert f"html/{name}.html" in links and f"../notebooks/{name}.ipynb" in links
        title = report.notebook_title(nbformat.read(REPO / "notebooks" / f"{name}.ipynb", 4))
        assert title.split("·")[-1].strip() in index and f">{title}</a></h2>" in index
    for link in links:            # every link resolves
        assert (results / link).exists(), link
    assert index.count("<table>") == len(NOTEBOOKS), "one key table per notebook, as HTML"
    assert index.count("<figure><img") == len(NOTEBOOKS), "one headline figure per notebook"
    timing = pd.read_csv(Path(results).parent / "build" / "report_timing.csv")
    assert sorted(timing["notebook"]) == NOTEBOOKS
    assert (timing["status"] == "ok").all() and (timing["seconds"] > 0).all()


@pytest.mark.slow
def test_every_figure_and_table_is_listed_in_the_index(results, quick_report):
    index = (results / "index.html").read_text()
    for png in (Path(quick_report) / "img").glob("0[123]_*.png"):
        assert png.name in index
    for t in results.glob("0[123]_*.csv"):
        assert t.name in index


@pytest.mark.slow
def test_committed_folders_untouched(quick_report, committed_hashes):
    for name in COMMITTED:
        assert folder_hash(REPO / name) == committed_hashes[name], f"{name}/ changed"


@pytest.mark.slow
def test_01_tables(results):
    conf = read_table(results, "01_conformance")
    assert list(conf["rule"]) == CLASSIC
    assert {"max_abs", "max_rel", "verdict"} <= set(conf.columns)
    assert (conf["verdict"] == "matches").all()
    mem = read_table(results, "01_state_memory")
    assert list(mem["rule"]) == RULES
    traj = read_table(results, "01_trajectories")
    assert set(traj["surface"]) == {"seed003", "rosenbrock", "beale", "saddle"}
    assert {"final_f", "gap", "diverged", "diverged_step"} <= set(traj.columns)
    per = traj.groupby(["surface", "setting"])["rule"].apply(sorted)
    assert all(v == sorted(RULES) for v in per)
    assert set(traj["setting"]) == {f"lr={lr:g}" for lr in LRS} | {"best lr"}
    s3 = read_table(results, "01_seed003_adam").set_index("variant")
    assert s3.loc["our Adam class (optimizers.Adam)", "max_dev_from_correct"] < 1e-9
    assert s3.loc["seed 003 as written (3 bugs)", "max_dev_from_correct"] > 1e-2
    hier = read_table(results, "01_hierarchy")
    assert (hier[hier["demo"].str.contains("momentum=0")]["max_gap"] == 0).all()


@pytest.mark.slow
def test_02_table_every_rule_and_lr(results):
    t = read_table(results, "02_sweep_table")
    assert sorted(zip(t["rule"], t["lr"])) == sorted((r, lr) for r in RULES for lr in LRS)
    assert set(tables.SWEEP_COLUMNS) <= set(t.columns)
    assert (t["n_seeds"] >= 2).all() and (t["n_trained"] <= t["n_seeds"]).all()
    for col in ("final_test_acc", "val_test_acc", "last3_test_acc"):
        for c in (col, f"{col}_lo", f"{col}_hi"):
            finite = t[c].dropna()
            assert ((finite >= 0) & (finite <= 1)).all()
    assert (t["final_test_loss_lo"].dropna() >= 0).all()
    comp = read_table(results, "02_vs_best")
    assert len(comp) == len(LRS) * (len(RULES) - 1)
    assert {"diff_pp", "ci_lo_pp", "ci_hi_pp", "p_holm", "mde_pp", "verdict", "family"} <= set(comp.columns)
    assert not comp["verdict"].str.contains("indistinguishable").any()


@pytest.mark.slow
def test_03_tables(results):
    c = read_table(results, "03_vs_baselines")
    assert list(c.columns) == tables.VS_BASELINES_COLUMNS
    assert sorted(zip(c["rule"], c["lr"], c["baseline"])) == sorted(
        (r, lr, b) for r in ("gravity", "cosine") for lr in LRS for b in ("sgd", "momentum", "momentum (matched)"))
    assert c["verdict"].isin(["better", "worse", "equivalent", "inconclusive", "no paired runs"]
                             + [w for w in c["verdict"] if "diverged" in w or "blew up" in w or "failed" in w]).all()
    a = read_table(results, "03_ablation_vs_default")
    variants = set(a["a"])
    assert "gravity: accumulate=False" in variants and "cosine: per=tensor" in variants
    assert any(v.startswith("cosine: C=") for v in variants)


# ----------------------------------------------------------------------------- helpers
def _fake_sweep():
    """Per-epoch rows of 3 rules x 1 lr x 4 seeds x 2 epochs; 'bad' diverges on seed 3."""
    rows = []
    for rule, base in (("good", 0.80), ("same", 0.7999), ("bad", 0.60)):
        for seed in range(4):
            div = rule == "bad" and seed == 3
            for epoch in (1, 2):
                acc = base + 0.01 * epoch + 0.002 * seed + 0.001 * ((seed * 7 + len(rule)) % 3)
                rows.append(dict(key=f"{rule}{seed}", rule=rule, lr=0.1, seed=seed, epoch=epoch,
                                 train_loss=1 - acc, val_acc=acc, test_acc=np.nan if div and epoch == 2 else acc,
                                 test_loss=np.nan if div and epoch == 2 else 1 - acc, diverged=div))
    return pd.DataFrame(rows)


def test_tables_list_rules_in_catalogue_order():
    t = pd.DataFrame({"rule": ["cosine", "zeta", "sgd", "adam", "sgd", "alpha"],
                      "lr": [0.1, 0.1, 0.2, 0.01, 0.01, 0.1], "x": range(6)})
    out = tables.catalogue_order(t)
    assert list(zip(out["rule"], out["lr"])) == [("sgd", 0.01), ("sgd", 0.2), ("adam", 0.01),
                                                 ("cosine", 0.1), ("alpha", 0.1), ("zeta", 0.1)]


def test_probe_records_gravity_step_size_and_caches(tmp_path):
    ok, why = data_available()
    if not ok:
        pytest.skip(why)
    r = probes.probe_run("gravity", {"lr": 0.1}, "effective_lr", max_steps=6, every=2,
                         cache_dir=tmp_path)
    assert list(r["steps"]) == [1, 2, 4, 6]
    assert r["values"][0] < 0.1 and np.all(np.diff(r["values"]) <= 0)
    again = probes.probe_run("gravity", {"lr": 0.1}, "effective_lr", max_steps=6, every=2,
                             cache_dir=tmp_path)
    np.testing.assert_array_equal(r["values"], again["values"])
    assert len(list(tmp_path.glob("*.npz"))) == 1


@pytest.mark.slow
def test_readme_headline_is_built_from_the_results(results, quick_report, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_START}\nstale\n{report.README_END}\nmid\n"
                      f"{report.COST_START}\nold\n{report.COST_END}\nafter\n")
    assert report.update_readme(results, Path(quick_report) / "img", readme)
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    cost = text.split(report.COST_START)[1].split(report.COST_END)[0]
    assert "old" not in cost and "| 02_lr_sweep |" in cost and "| total |" in cost     # quick run's manifests
    block = text.split(report.README_START)[1].split(report.README_END)[0]
    table = [line for line in block.splitlines() if line.startswith("| ") and "rule" not in line]
    assert len(table) == 11                                   # one row per rule
    assert all(line.count("|") == 5 for line in table)        # rule + three learning rates
    assert "last `make report`" not in block and "process-hours" in block
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not report.update_readme(results, Path(quick_report) / "img", plain)
    assert plain.read_text() == "no markers\n"


# ----------------------------------------------------------------------------- shared grids, tables, figures
def test_experiments_define_the_shared_grid_once():
    assert ex.RULES == RULES == list(OPTIMIZERS) == plotting.RULE_ORDER
    assert ex.LRS == LRS == list(tuning.FIXED_LRS)
    assert set(ex.QUICK_SEEDS) <= set(ex.SEEDS) and ex.QUICK_EPOCHS <= ex.EPOCHS
    assert set(ex.NOVEL_RULES) <= set(ex.RULES)
    # quick runs evaluate ex.QUICK_EVAL_SIZE images wherever they are built; full runs all of them
    # (eval_size None: the stored runs' keys)
    assert ex.EVAL_SIZE is None and 0 < ex.QUICK_EVAL_SIZE < 5000
    for quick, n in ((True, ex.QUICK_EVAL_SIZE), (False, None)):
        cfgs = ex.comparison_configs(quick) + plans.grid_configs(quick) + plans.adam_search_configs(quick)
        assert {c.eval_size for c in cfgs} == {n}


@pytest.mark.parametrize("name", ["02_lr_sweep", "03_gravity_and_cosine", "04_cost"])
def test_notebooks_take_02s_grid_from_experiments(name):
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    params = nb.cells[1].source
    for var in ("LRS", "SEEDS", "EPOCHS", "MAX_STEPS", "EVAL_SIZE"):
        assert re.search(rf"^{var} = ex\.{var}\b", params, flags=re.M), var
    quick = nb.cells[2].source
    assert "EVAL_SIZE = ex.QUICK_SEEDS, ex.QUICK_EPOCHS, ex.QUICK_MAX_STEPS, ex.QUICK_EVAL_SIZE" in quick
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert ".groupby(\"key\").tail(1)" not in code and "must equal" not in code


def _fake_grid():
    """Per-epoch rows of momentum, gravity, cosine x 2 lrs x 3 seeds x 2 epochs, plus the three
    ablations of notebook 03 (hyper-parameter columns accumulate, per, C)."""
    rows = []
    for rule, base in [("momentum", 0.80), ("gravity", 0.70), ("cosine", 0.805)]:
        for lr in (0.01, 0.1):
            for seed in range(3):
                for epoch in (1, 2):
                    acc = base + 0.01 * epoch + 0.003 * seed + 0.001 * ((seed * 5 + len(rule)) % 3)
                    rows.append(dict(key=f"{rule}{lr}{seed}", rule=rule, lr=lr, seed=seed, epoch=epoch,
                                     train_loss=1 - acc, val_acc=acc, test_acc=acc, test_loss=1 - acc,
                                     diverged=False, accumulate=True if rule == "gravity" else np.nan,
                                     per="row" if rule == "cosine" else None,
                                     C=1.8 if rule == "cosine" else np.nan))
    main = pd.DataFrame(rows)
    abl = []
    for name, rule, hp, shift in [("g", "gravity", {"accumulate": False}, -0.05),
                                  ("t", "cosine", {"per": "tensor"}, 0.0), ("c", "cosine", {"C": 1.0}, 0.01)]:
        for r in rows:
            if r["rule"] == rule:
                abl.append({**r, "key": name + r["key"], "test_acc": r["test_acc"] + shift
                            + 0.0005 * r["seed"], **hp})
    return main, pd.DataFrame(abl)


def test_notebook_figures_draw():
    steps = np.array([1, 2, 4, 8])
    fig = plotting.gravity_step_size_figure({0.1: {"steps": steps, "values": 0.1 / np.sqrt(steps)}})
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)
    rng = np.random.default_rng(0)
    cos = {lr: {"steps": np.arange(1, 41), "values": rng.uniform(-1, 1, (40, 7))} for lr in (0.01, 0.1)}
    fig = plotting.cosine_cosines_figure(cos)
    assert len(fig.axes) == 3
    plt.close(fig)


@pytest.mark.slow
def test_plain_nbconvert_execute_inplace_prints_no_kernel_warning(tmp_path):
    """README: a notebook re-executes in place with plain `jupyter nbconvert --execute --inplace`; the
    venv's config (written by `make setup`) runs the kernel over a socket file, so it does not warn
    about unencrypted TCP."""
    cfg = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_nbconvert_config.json"
    if not cfg.exists():
        pytest.skip(f"{cfg} missing: created by `make setup`")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import optreport\nprint('ok')")])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    jupyter = Path(sys.executable).parent / "jupyter"
    r = subprocess.run([str(jupyter), "nbconvert", "--to", "notebook", "--execute", "--inplace", str(path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "TCP without encryption" not in r.stderr + r.stdout
    out = nbformat.read(path, as_version=4)
    assert out.cells[0].outputs[0]["text"] == "ok\n"
    assert not list(tmp_path.glob("kernel-*"))          # no socket files left behind


def test_front_page_verdicts_come_from_the_notebooks_answer_cells(tmp_path):
    """index.html shows each notebook's verdict sentences: markdown outputs starting with **Answer /
    **Verdict, and the output after a "## Verdict" heading; nothing else, each once."""
    def md_out(text):
        return nbformat.v4.new_output("display_data", data={"text/markdown": text})
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x", outputs=[md_out("**Reading.** not a verdict")]),
        nbformat.v4.new_code_cell("y", outputs=[md_out("**Answer.** Yes, with evidence.")]),
        nbformat.v4.new_markdown_cell("## Verdict"),
        nbformat.v4.new_code_cell("z", outputs=[md_out("Per epoch the rules differ by at most 1.2x.")]),
        nbformat.v4.new_code_cell("w", outputs=[md_out("**Reading.** after the verdict cell")])])
    path = tmp_path / "09_x.ipynb"
    nbformat.write(nb, path)
    assert report.verdict_markdown(path) == ["**Answer.** Yes, with evidence.",
                                             "Per epoch the rules differ by at most 1.2x."]
    assert report.verdict_markdown(tmp_path / "absent.ipynb") == []


def test_readme_answers_the_seed_questions_from_06_and_07_tables(tmp_path):
    """When notebooks 06 and 07 have written their comparison tables, README's headline carries one
    generated sentence per seed guess; without them, nothing."""
    assert report.seed_question_lines(tmp_path) == []
    base = dict(b="sgd (constant)", lr_b=0.1, ci_lo_pp=-1.0, ci_hi_pp=0.0, n_seeds=3, outcome_a="trained",
                outcome_b="trained", n_out_a=0, n_out_b=0, mde_pp=1.0)
    pd.DataFrame([dict(base, a="gravity (constant)", lr_a=0.2, cut=15, diff_pp=-1.2, verdict="worse"),
                  dict(base, a="gravity (constant)", lr_a=0.2, cut=100, diff_pp=-1.0, verdict="worse")]
                 ).to_csv(tmp_path / "06_vs_sgd_by_length.csv", index=False)
    pd.DataFrame([dict(base, a="cosine (n=2037)", lr_a=0.1, n_train_value=2037, diff_pp=-0.2, verdict="inconclusive"),
                  dict(base, a="cosine (all data)", lr_a=0.1, n_train_value=55000, diff_pp=-0.9, verdict="worse")]
                 ).to_csv(tmp_path / "07_vs_sgd.csv", index=False)
    lines = "\n".join(report.seed_question_lines(tmp_path))
    assert "**Would 100 epochs change the answer?** (notebook 06) Between epoch 15 and epoch 100, 0 of 1" in lines
    assert "**Is the data set too small to show a difference?** (notebook 07) **No.**" in lines
    assert "notebook 05" not in lines and "notebook 08" not in lines and "per tripling" not in lines
    pd.DataFrame([dict(rule="adam", base="sgd", n_seeds=5, n_sizes=4, factor=3.0, diff_smallest_pp=-0.4,
                       diff_largest_pp=1.1, slope_pp=0.5, ci_lo_pp=0.2, ci_hi_pp=0.8, ci_level=0.975, p=0.001,
                       p_holm=0.002, alpha_adj=0.025, sd_pp=0.1, mde_pp=0.3, verdict="gains")]
                 ).to_csv(tmp_path / "07_size_trend.csv", index=False)        # notebook 07's trend, when written
    pd.DataFrame([dict(schedule="constant", rule="gravity", base="sgd", n_seeds=3, short=15, long=100,
                       diff_short_pp=-1.2, diff_long_pp=-1.0, change_pp=0.2, ci_lo_pp=-1.0, ci_hi_pp=1.4,
                       ci_level=0.95, p=0.5, p_holm=0.5, alpha_adj=0.05, sd_pp=0.3, mde_pp=2.0,
                       verdict="no change shown")]).to_csv(tmp_path / "06_gap_change.csv", index=False)
    lines = "\n".join(report.seed_question_lines(tmp_path))
    assert "The gap to SGD changes with the training-set size for Adam +0.50 pp per tripling" in lines
    assert "(notebook 06) **No change shown.** No rule's gap to SGD is shown to change between epoch 15 and 100." \
        in lines


def test_readme_answers_the_tuning_and_benchmark_questions_from_05_and_08_tables(tmp_path):
    """Notebook 05's rerun tables and notebook 08's comparison add their generated answers; the old
    05 (no ``05_reruns``) adds none."""
    pd.DataFrame([dict(protocol="a", rule=r, n_seeds=5, n_trained=5, outcome="trained", mean=m, ci_lo=m - .01,
                       ci_hi=m + .01, rank=i + 1) for i, (r, m) in enumerate([("sgd", .89), ("adam", .86)])]
                 ).to_csv(tmp_path / "05_ranking.csv", index=False)
    pd.DataFrame([dict(family="each rule vs the top of the reruns (a)", a="adam", b="sgd", verdict="worse")]
                 ).to_csv(tmp_path / "05_vs_top.csv", index=False)
    pd.DataFrame(columns=["protocol_1", "protocol_2", "n_rules", "tau", "p"]).to_csv(tmp_path / "05_kendall.csv",
                                                                                      index=False)
    pd.DataFrame([dict(protocol="a", special="sgd", general="adam", inclusion="violated")]
                 ).to_csv(tmp_path / "05_inclusion_pairs.csv", index=False)
    assert report.seed_question_lines(tmp_path) == []                   # the old notebook 05 wrote no reruns
    pd.DataFrame(columns=["rule", "protocol", "seed", "test_acc"]).to_csv(tmp_path / "05_reruns.csv", index=False)
    lines = "\n".join(report.seed_question_lines(tmp_path))
    assert ("**How does the tuning protocol change the ranking?** (notebook 05" in lines
            and "**Under a, 1 of 1 rules are shown worse than the top.** Under a (fixed grid) the top is SGD "
            "89.00% [88.00, 90.00] (5 seeds), the other 1 rules against it: 1 worse." in lines
            and "a: 1 violated" in lines)
    pd.DataFrame([dict(rule="sgd", epoch=1, test_acc=.8, n_seeds=2, published_test_acc=.8, published_min=.79,
                       published_max=.81)]).to_csv(tmp_path / "08_cnn_vs_published.csv", index=False)
    lines = "\n".join(report.seed_question_lines(tmp_path))
    assert "**Do our numbers agree with a published benchmark?** (notebook 08" in lines and "agrees: SGD" in lines
