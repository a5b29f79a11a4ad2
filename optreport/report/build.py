"""The main job: execute every notebook headless and export the HTML report.

    python -m optreport.report                 # full run: figures in img/, tables in results/
    python -m optreport.report --quick         # tiny grid, everything under build/quick/ (or --out DIR)
    python -m optreport.report --rerun         # retrain every run instead of reusing the store
    python -m optreport.report --only 01 03    # just these notebooks (index.html still lists all)
    python -m optreport.report --workers 2     # worker processes for the sweeps

Steps: find Fashion-MNIST first (exit 2 with the loader's message if it is missing or corrupt);
execute ``notebooks/NN_*.ipynb`` in order with papermill (kernel ``python3``, cwd
``notebooks/``, no timeout), passing the six standard parameters as absolute paths; export each
executed notebook to HTML; write ``<RESULTS_DIR>/index.html`` (links, titles, run times, tables
and figures) and ``<RESULTS_DIR>/report_timing.csv``.

Outputs (RESULTS_DIR = results/ for a full run, <out>/results/ in quick mode):
    <RESULTS_DIR>/notebooks/NN_name.ipynb   executed notebooks (kept, partial, when one fails)
    <RESULTS_DIR>/html/NN_name.html         their HTML export
    <RESULTS_DIR>/index.html                the report's front page
A failing notebook stops the job (exit 1) with the notebook, the cell and its error.
"""
from __future__ import annotations

import argparse
import csv
import html
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from optreport.engine import data
from optreport.report.figures import RULE_ORDER, rule_label
from optreport.runs.results import load_results

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
QUICK_DIR = REPO / "build" / "quick"
TIMING_FIELDS = ["notebook", "title", "seconds", "status", "quick", "finished_utc"]


def find_notebooks(only=None) -> list[Path]:
    """``notebooks/NN_*.ipynb`` in order; ``only`` keeps those whose NN (or name) is listed."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {str(o) for o in only}
        nbs = [p for p in nbs if p.name[:2] in wanted or p.stem in wanted]
    return nbs


def paths(quick: bool, out: str | None) -> dict:
    """IMG_DIR, RESULTS_DIR and STORAGE (the queue of runs to train) for a run (absolute);
    finished runs live in RESULTS_DIR/runs."""
    base = Path(out).resolve() if out else (QUICK_DIR if quick else REPO)
    img, res = base / "img", base / "results"
    return {"IMG_DIR": str(img), "RESULTS_DIR": str(res),
            "STORAGE": f"sqlite:///{base / 'build' / 'runs.optuna.sqlite3'}"}


def notebook_title(nb) -> str:
    """The first Markdown heading of a notebook (its file name otherwise)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.lstrip().startswith("#"):
                    return line.lstrip("# ").strip()
    return ""


def check_data() -> None:
    """Find Fashion-MNIST before running anything; exit 2 with the loader's message if not."""
    try:
        data.load_fashion_mnist()
    except (data.DataNotFoundError, data.CorruptDataError) as e:
        print(f"report: cannot run without Fashion-MNIST.\n{e}", file=sys.stderr)
        sys.exit(2)


def cell_error(nb_path: Path, err) -> str:
    """A short description of a papermill cell error."""
    src = (getattr(err, "source", "") or "").strip().splitlines()
    first = src[0] if src else ""
    return (f"notebook {nb_path.name} failed in cell {getattr(err, 'cell_index', '?')} "
            f"(In [{getattr(err, 'exec_count', '?')}]: {first[:80]!r}): "
            f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}")


def export_html(ipynb: Path, html_path: Path) -> None:
    nb = nbformat.read(ipynb, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")


def read_timing(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["notebook"]: row for row in csv.DictReader(fh)}


def write_timing(path: Path, rows: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TIMING_FIELDS)
        w.writeheader()
        for name in sorted(rows):
            w.writerow({k: rows[name].get(k, "") for k in TIMING_FIELDS})


def write_index(results_dir: Path, img_dir: Path, timing: dict[str, dict], quick: bool) -> Path:
    """``index.html``: one section per notebook with a link to its HTML, its title and run
    time, and the tables (``NN_*.csv|md`` in RESULTS_DIR) and figures (``NN_*.png`` in
    IMG_DIR) it wrote."""
    def rel(p: Path) -> str:
        return html.escape(os.path.relpath(p, results_dir).replace(os.sep, "/"))

    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             "<title>Optimizers on Fashion-MNIST: report</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "td,th{padding:0 .8em 0 0;text-align:left}img{max-width:18em;margin:.3em}"
             "</style></head><body>",
             "<h1>Optimizers on Fashion-MNIST: report</h1>",
             f"<p>{'QUICK mode (tiny grid; numbers are not results). ' if quick else ''}"
             f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
             "<code>python -m optreport.report</code>.</p>"]
    total = 0.0
    for name in sorted(timing):
        row = timing[name]
        nn = name[:2]
        h = results_dir / "html" / f"{name}.html"
        secs = float(row.get("seconds") or 0)
        total += secs
        link = (f"<a href='{rel(h)}'>{html.escape(name)}</a>" if h.exists()
                else html.escape(name))
        parts.append(f"<h2>{link}: {html.escape(row.get('title', ''))}</h2>")
        parts.append(f"<p>Status: {html.escape(row.get('status', ''))}; run time {secs:.0f} s"
                     f" (finished {html.escape(row.get('finished_utc', ''))}).</p>")
        tables = sorted(p for p in results_dir.glob(f"{nn}_*") if p.suffix in (".csv", ".md"))
        if tables:
            parts.append("<p>Tables: " + ", ".join(f"<a href='{rel(p)}'>{html.escape(p.name)}</a>"
                                                   for p in tables) + "</p>")
        figs = sorted(img_dir.glob(f"{nn}_*.png"))
        if figs:
            parts.append("<p>Figures:</p><div>" + "".join(
                f"<a href='{rel(p)}'><img src='{rel(p)}' alt='{html.escape(p.stem)}' "
                f"title='{html.escape(p.stem)}'></a>" for p in figs) + "</div>")
    parts.append(f"<p>Total run time of the listed notebooks: {total:.0f} s.</p></body></html>")
    index = results_dir / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


README_START, README_END = "<!-- headline:start -->", "<!-- headline:end -->"


def training_seconds(runs_dir: Path) -> float:
    """Training plus evaluation seconds summed over every run stored under ``runs_dir`` (0 when
    the folder does not exist)."""
    df = load_results(runs_dir=runs_dir)
    return float(df["train_seconds"].fillna(0).sum() + df["eval_seconds"].fillna(0).sum())


def headline_markdown(results_dir: Path, img_dir: Path) -> str:
    """The README's headline, built only from the files a full run wrote: notebook 02's heat
    map and table (final test accuracy, mean and 95% CI over seeds, per rule and lr), and the
    run times (notebook wall times; training and evaluation seconds summed over the runs stored
    in ``<results_dir>/runs``)."""
    t = pd.read_csv(results_dir / "02_sweep_table.csv")
    def cell(r):
        if not np.isfinite(r.test_acc):
            return f"diverged ({int(r.diverged)}/{int(r.runs)})"
        ci = (f"[{100 * r.test_acc_lo:.1f}, {100 * r.test_acc_hi:.1f}]" if np.isfinite(r.test_acc_lo)
              else f"(n={int(r.runs - r.diverged)})")
        return f"{100 * r.test_acc:.1f} {ci}" + (f", {int(r.diverged)}/{int(r.runs)} diverged" if r.diverged else "")
    t["cell"] = [cell(r) for r in t.itertuples()]
    wide = t.pivot(index="rule", columns="lr", values="cell")
    wide = wide.reindex([r for r in RULE_ORDER if r in wide.index])
    seeds = int(t["runs"].max())
    lines = [f"![final test accuracy per rule and lr]({img_dir.name}/02_final_test_acc_heatmap.png)", "",
             f"Final test accuracy (%) of the quickstart MLP after notebook 02's epochs, mean and 95% "
             f"CI over {seeds} seeds ([full table](results/02_sweep_table.md)):", "",
             "| rule | " + " | ".join(f"lr {lr:g}" for lr in wide.columns) + " |",
             "|---|" + "---|" * len(wide.columns)]
    lines += [f"| {rule_label(rule)} | " + " | ".join(str(v) for v in row) + " |"
              for rule, row in zip(wide.index, wide.itertuples(index=False))]
    timing = pd.read_csv(results_dir / "report_timing.csv")
    timing = timing[~timing["quick"].astype(str).str.lower().eq("true")]
    train_s = training_seconds(results_dir / "runs")
    spent = ", ".join(f"{r.notebook} {float(r.seconds) / 60:.1f} min" for r in timing.itertuples())
    lines += ["", f"Run times on this machine (2 cores): training and evaluation of the stored runs add up to "
              f"{train_s / 3600:.1f} process-hours (two worker processes share the cores)"
              + (f"; the last `make report` spent {spent} (runs already in the store are reused, "
                 f"not retrained)" if spent else "") + "."]
    return "\n".join(lines)


def update_readme(results_dir: Path, img_dir: Path, readme: Path | None = None) -> bool:
    """Replace the block between the headline markers in README.md; False if there is none."""
    readme = readme or REPO / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{headline_markdown(results_dir, img_dir)}\n{README_END}{tail}")
    return True


def run(args) -> int:
    nbs = find_notebooks(args.only)
    if not nbs:
        print(f"report: no notebooks matching {args.only or 'NN_*.ipynb'} in {NOTEBOOK_DIR}",
              file=sys.stderr)
        return 1
    check_data()
    p = paths(args.quick, args.out)
    results_dir, img_dir = Path(p["RESULTS_DIR"]), Path(p["IMG_DIR"])
    for d in (results_dir / "notebooks", results_dir / "html", img_dir):
        d.mkdir(parents=True, exist_ok=True)
    params = {"QUICK": bool(args.quick), **p, "WORKERS": int(args.workers),
              "FORCE": bool(args.rerun)}
    timing_csv = results_dir / "report_timing.csv"
    timing = read_timing(timing_csv)
    print(f"report: {len(nbs)} notebook(s); {'QUICK, ' if args.quick else ''}results -> "
          f"{results_dir}, figures -> {img_dir}", flush=True)
    t_all = time.perf_counter()
    status = 0
    for i, nb_path in enumerate(nbs, 1):
        out_nb = results_dir / "notebooks" / nb_path.name
        title = notebook_title(nbformat.read(nb_path, as_version=4))
        print(f"[{i}/{len(nbs)}] {nb_path.name}: {title}", flush=True)
        t0 = time.perf_counter()
        error = None
        try:
            pm.execute_notebook(str(nb_path), str(out_nb), parameters=params,
                                kernel_name="python3", cwd=str(NOTEBOOK_DIR),
                                progress_bar=not args.no_progress, execution_timeout=None)
        except PapermillExecutionError as e:
            error = e
        secs = time.perf_counter() - t0
        timing[nb_path.stem] = {"notebook": nb_path.stem, "title": title, "seconds": f"{secs:.1f}",
                                "status": "failed" if error else "ok", "quick": args.quick,
                                "finished_utc": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}"}
        if out_nb.exists():
            export_html(out_nb, results_dir / "html" / f"{nb_path.stem}.html")
        write_timing(timing_csv, timing)
        if error is not None:
            print(f"\nreport: FAILED: {cell_error(nb_path, error)}\n"
                  f"The partially executed notebook is kept: {out_nb}\n"
                  f"(its HTML: {results_dir / 'html' / (nb_path.stem + '.html')})", file=sys.stderr)
            status = 1
            break
        print(f"    {nb_path.name}: {secs:.1f} s", flush=True)
    total = time.perf_counter() - t_all
    index = write_index(results_dir, img_dir, timing, args.quick)
    print(f"report: total {total:.1f} s; index: {index}", flush=True)
    if status == 0 and not args.quick and args.out is None and (results_dir / "02_sweep_table.csv").exists():
        update_readme(results_dir, img_dir)
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optreport.report", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny grid, outputs under build/quick/ (never touches img/, results/)")
    ap.add_argument("--rerun", action="store_true", help="retrain every run (FORCE=True)")
    ap.add_argument("--out", metavar="DIR", help="output folder (DIR/img, DIR/results)")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (01 02 ...)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for sweeps (2)")
    ap.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    ap.add_argument("--readme", action="store_true",
                    help="only rewrite README.md's headline from the committed results, run nothing")
    args = ap.parse_args(argv)
    if args.readme:
        p = paths(False, None)
        return 0 if update_readme(Path(p["RESULTS_DIR"]), Path(p["IMG_DIR"])) else 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
