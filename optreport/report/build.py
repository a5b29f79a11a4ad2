"""The main job: execute every notebook headless and export the HTML report.

    python -m optreport.report                 # full run: figures in img/, tables in results/
    python -m optreport.report --quick         # tiny grid, everything under build/quick/ (or --out DIR)
    python -m optreport.report --rerun         # retrain every run instead of reusing the store
    python -m optreport.report --only 01 03    # just these notebooks (index.html still lists all)
    python -m optreport.report --workers 2     # worker processes for the sweeps
    python -m optreport.report --quick --jobs 2  # two notebooks at a time

Steps: find Fashion-MNIST first (exit 2 with the loader's message if it is missing or corrupt);
execute ``notebooks/NN_*.ipynb`` in order with papermill (kernel ``python3``, cwd
``notebooks/``, no timeout), passing the six standard parameters with paths relative to
``notebooks/`` (so no absolute path reaches an output); clean each executed notebook (no
papermill or timing metadata, stable cell ids, library noise removed from stderr, alt text on
every figure); export it to HTML (code hidden, formulas typeset offline by the KaTeX copy in
``assets/katex``); write ``<RESULTS_DIR>/index.html`` (per notebook: question, headline figure,
key table, links).

Outputs (BASE = the repository for a full run, build/quick/ or --out DIR in quick mode):
    notebooks/NN_name.ipynb                 full run: the executed notebook written back, with
                                            its outputs (parameters as committed)
    BASE/notebooks/NN_name.ipynb            quick mode: the executed notebooks
    BASE/results/html/NN_name.html          their HTML export (+ html/assets/katex/)
    BASE/results/index.html                 the report's front page
    BASE/build/report_timing.csv            wall time per notebook (not committed: it changes)
A failing notebook stops the job (exit 1; with --jobs, no further notebook starts and the running
ones finish) with the notebook, the cell and its error; its partial execution is kept (full run:
build/executed/NN_name.ipynb; notebooks/ is left as it was).
Rendering twice from unchanged results gives byte-identical files.
"""
from __future__ import annotations

import argparse
import copy
import csv
import html
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.preprocessors import TagRemovePreprocessor
from papermill.exceptions import PapermillExecutionError

from optreport.analysis import costs, tuning
from optreport.engine import data
from optreport.report import readings
from optreport.report.figures import RULE_ORDER, rule_label
from optreport.runs import sweep
from optreport.runs.results import iter_runs, load_results

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
QUICK_DIR = REPO / "build" / "quick"
KATEX_DIR = Path(__file__).resolve().parent / "assets" / "katex"
TIMING_FIELDS = ["notebook", "title", "seconds", "status", "quick"]
PARAMETER_TAGS = {"parameters", "injected-parameters"}

# Library noise removed from the notebooks' stderr outputs (and kept out of the kernel's log):
# torch's CUDA probe on a CPU-only machine, the kernel's note on its local TCP transport.
NOISE = [re.compile(p) for p in (r"No CUDA runtime is found", r"running over TCP without encryption")]
# A library's own warning (raised in site-packages, e.g. scipy's "Precision loss ..." on the quick
# grid's near-identical samples): its line and the indented source line after it.
LIBRARY_WARNING = re.compile(r"^[^\n]*site-packages/[^\n]*:\d+: \w*Warning: [^\n]*\n?(?:[ \t]+[^\n]*\n?)*", re.M)
KERNEL_ENV = {"TORCH_LOGS": "-all"}          # torch's own warnings (the CUDA probe) off, kernel and workers
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]

# Per notebook: the figure and the table the front page shows (the first ones written otherwise),
# and the table's columns (all when None).
KEY_FIGURE = {"01": "01_trajectories_rosenbrock.png", "02": "02_final_test_acc_heatmap.png",
              "03": "03_vs_baselines.png", "04": "04_accuracy_vs_time.png", "05": "05_rerun_ranking.png"}
KEY_TABLE = {"01": ("01_conformance", ["rule", "torch", "steps", "max_abs", "max_rel", "verdict"]),
             "03": ("03_vs_baselines", ["rule", "lr", "baseline", "baseline_lr", "n_seeds", "diff_pp", "ci_lo_pp",
                                        "ci_hi_pp", "verdict"]),
             "04": ("04_epoch_cost", ["rule", "best_lr", "train_s", "step_share", "acc",
                                      "state_bytes_per_param", "epoch_vs_sgd"]),
             "05": ("05_ranking", ["protocol", "rank", "rule", "n_seeds", "outcome", "mean", "ci_lo", "ci_hi"])}
KEY_TABLE_ROWS = 40


def find_notebooks(only=None) -> list[Path]:
    """``notebooks/NN_*.ipynb`` in order; ``only`` keeps those whose NN (or name) is listed."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {str(o) for o in only}
        nbs = [p for p in nbs if p.name[:2] in wanted or p.stem in wanted]
    return nbs


def base_dir(quick: bool, out: str | None) -> Path:
    """The folder a run writes into: --out, else build/quick/ in quick mode, else the repository."""
    return Path(out).resolve() if out else (QUICK_DIR if quick else REPO)


def paths(quick: bool, out: str | None) -> dict:
    """IMG_DIR, RESULTS_DIR and STORAGE (the queue of runs to train) for a run (absolute);
    finished runs live in RESULTS_DIR/runs."""
    base = base_dir(quick, out)
    img, res = base / "img", base / "results"
    return {"IMG_DIR": str(img), "RESULTS_DIR": str(res),
            "STORAGE": f"sqlite:///{base / 'build' / 'runs.optuna.sqlite3'}"}


def notebook_parameters(p: dict, notebook_dir: Path | None = None) -> dict:
    """The paths of :func:`paths` relative to the notebooks' folder (the kernel's cwd), as the
    notebooks' own defaults are ("../img"): no absolute path reaches an executed notebook."""
    nbdir = notebook_dir or NOTEBOOK_DIR

    def rel(path: str) -> str:
        return os.path.relpath(path, nbdir).replace(os.sep, "/")
    storage = p["STORAGE"]
    if storage.startswith("sqlite:///"):
        storage = "sqlite:///" + rel(storage[len("sqlite:///"):])
    return {"IMG_DIR": rel(p["IMG_DIR"]), "RESULTS_DIR": rel(p["RESULTS_DIR"]), "STORAGE": storage}


def notebook_title(nb) -> str:
    """The first Markdown heading of a notebook ("" if none), numbered "NN · Question"."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.lstrip().startswith("#"):
                    return display_title(line.lstrip("# ").strip())
    return ""


def display_title(title: str) -> str:
    """One style for every title: "05 — How ..." and "05 - How ..." read "05 · How ..."."""
    return re.sub(r"^(\d\d)\s*[—–:-]\s*", r"\1 · ", title)


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


# ----------------------------------------------------------------------------- cleaning
def _plain(text: str) -> str:
    """Markdown/TeX text reduced to plain words for an alt attribute."""
    text = re.sub(r"\$+([^$]*)\$+", r"\1", text)
    text = re.sub(r"\\(alpha|beta|gamma|delta|epsilon|varepsilon|eta|theta|lambda|mu|rho|sigma|tau)\b",
                  r"\1", text)                                     # Greek letters by name
    text = re.sub(r"\\[a-zA-Z]+", "", text)
    text = re.sub(r"[#*_`{}\\]|\[|\]\([^)]*\)", "", text)
    return " ".join(text.split())


def figure_alt(cell, previous_markdown: str, title: str, k: int) -> str:
    """Alt text of a figure: the file it is saved as (a "NN_name" string in the cell), the text
    just above it, and which figure of which notebook it is."""
    names = re.findall(r"""["'](\d\d_[A-Za-z0-9_.\-]+?)(?:\.png)?["']""", cell.source)
    lead = _plain(previous_markdown.strip().split("\n\n")[0])[:200]
    parts = [f"Figure {k} of {title or 'the notebook'}"]
    if names:
        parts.append("(" + ", ".join(dict.fromkeys(names)) + ")")
    return " ".join(parts) + (f": {lead}" if lead else "")


def clean_notebook(nb, title: str | None = None):
    """Make an executed notebook reproducible byte for byte: no papermill or timing metadata
    (start/end times, durations, input/output paths), no progress-bar widgets, the injected
    parameters cell with a fixed id, library warnings and known noise removed from stderr, and
    alt text (``metadata['image/png']['alt']``) on every figure. Returns ``nb`` (changed in place)."""
    title = title if title is not None else notebook_title(nb)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)             # progress-bar widgets' state (random ids)
    previous, k = "", 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
        if cell.cell_type == "markdown":
            previous = cell.source
            continue
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                continue                         # a live progress bar: nothing for a reader, random id
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = LIBRARY_WARNING.sub("", out.get("text", ""))
                lines = [ln for ln in text.splitlines(keepends=True)
                         if not any(n.search(ln) for n in NOISE)]
                if not "".join(lines).strip():
                    continue
                out["text"] = "".join(lines)
            if "image/png" in out.get("data", {}):
                k += 1
                meta = out.setdefault("metadata", {}).setdefault("image/png", {})
                meta["alt"] = figure_alt(cell, previous, title, k)
            outputs.append(out)
        cell["outputs"] = outputs
    return nb


def without_injected_parameters(nb):
    """A copy of an executed notebook as it is committed: papermill's injected cell dropped
    (the parameters cell's defaults are the full run's) and execution counts renumbered."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    n = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            n += 1
            cell["execution_count"] = n
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = n
    return nb


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (so an unchanged render touches nothing)."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- HTML
# The exporter's template: JupyterLab's, with KaTeX (shipped in assets/katex) instead of MathJax
# from a CDN, no require.js or Mermaid from a CDN, and each figure's alt text from its output
# metadata (clean_notebook writes it).
REPORT_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<link rel="stylesheet" href="assets/katex/katex.min.css">
<script defer src="assets/katex/katex.min.js"></script>
<script defer src="assets/katex/contrib/auto-render.min.js"></script>
<script>
document.addEventListener("DOMContentLoaded", function () {
  renderMathInElement(document.body, {
    delimiters: [{left: "$$", right: "$$", display: true}, {left: "\\[", right: "\\]", display: true},
                 {left: "$", right: "$", display: false}, {left: "\\(", right: "\\)", display: false}],
    throwOnError: false});
});
</script>
<style>.report-nav{font-family:sans-serif;margin:0 0 1em 0}.jp-RenderedImage img{max-width:100%;height:auto}</style>
{%- endblock html_head_js_mathjax -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
 alt="{{ output.metadata.get('image/png', {}).get('alt', 'figure') | escape_html }}">
</div>
{%- endblock data_png %}
"""


def copy_katex(html_dir: Path) -> None:
    """KaTeX (the math renderer, MIT, vendored from npm) next to the HTML pages: formulas render
    without a network."""
    for src in sorted(KATEX_DIR.rglob("*")):
        if src.is_file():
            dst = html_dir / "assets" / "katex" / src.relative_to(KATEX_DIR)
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)


def export_html(ipynb: Path, html_path: Path, notebook_link: str | None = None) -> None:
    """HTML of an executed notebook for a reader: code cells hidden except the parameters, no
    prompts, formulas typeset by the local KaTeX, alt text on figures, links to the index and to
    the notebook itself at the top."""
    nb = nbformat.read(ipynb, as_version=4)
    title = notebook_title(nb) or ipynb.stem
    nb.metadata["title"] = title
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            head, _, rest = cell.source.partition("\n")
            cell.source = "# " + display_title(head.lstrip("# ").strip()) + ("\n" + rest if rest else "")
            break
    for cell in nb.cells:
        if cell.cell_type == "code" and not PARAMETER_TAGS & set(cell.metadata.get("tags", [])):
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "report-hide-input"]
    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True, template_file="report.html.j2",
                            extra_loaders=[DictLoader({"report.html.j2": REPORT_TEMPLATE})])
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"report-hide-input"}), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    nav = ["<a href='../index.html'>← the report's front page</a>"]
    if notebook_link:
        nav.append(f"<a href='{html.escape(notebook_link)}'>this notebook ({html.escape(ipynb.name)})</a>")
    nav_html = f"<p class='report-nav'>{' · '.join(nav)}</p>"
    body = re.sub(r"(<main>)", lambda m: m.group(1) + "\n" + nav_html, body, count=1)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    copy_katex(html_path.parent)
    write_if_changed(html_path, body)


# ----------------------------------------------------------------------------- timing, index
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


def sweep_grid(t: pd.DataFrame, col: str = "val_test_acc") -> pd.DataFrame:
    """Notebook 02's table as a grid: the mean ``col`` (default: the test accuracy at the
    validation-selected epoch) in % with its 95% CI per rule (rows, catalogue order) and lr
    (columns); a cell whose runs did not all train names its outcome ("diverged",
    "2/5 diverged, 3/5 trained: 85.1 ...")."""
    def cell(r):
        head = "" if r.outcome == "trained" else str(r.outcome)
        m, lo, hi = getattr(r, col), getattr(r, f"{col}_lo"), getattr(r, f"{col}_hi")
        if not np.isfinite(m):
            return head
        ci = f"[{100 * lo:.1f}, {100 * hi:.1f}]" if np.isfinite(lo) else f"(n={int(r.n_trained)})"
        return (f"{head}: " if head else "") + f"{100 * m:.1f} {ci}"
    t = t.assign(cell=[cell(r) for r in t.itertuples()])
    wide = t.pivot(index="rule", columns="lr", values="cell")
    wide = wide.reindex([r for r in RULE_ORDER if r in wide.index])
    wide.index = [rule_label(r) for r in wide.index]
    wide.index.name = "rule"
    wide.columns = [f"lr {lr:g}" for lr in wide.columns]
    return wide.reset_index()


def key_table(results_dir: Path, nn: str) -> tuple[str, pd.DataFrame] | None:
    """The table the front page shows for notebook ``nn`` (name, frame), or None."""
    if nn == "02" and (results_dir / "02_sweep_table.csv").exists():
        return "02_sweep_table", sweep_grid(pd.read_csv(results_dir / "02_sweep_table.csv"))
    name, cols = KEY_TABLE.get(nn, (None, None))
    if name is None or not (results_dir / f"{name}.csv").exists():
        found = sorted(results_dir.glob(f"{nn}_*.csv"))
        if not found:
            return None
        name, cols = found[0].stem, None
    df = pd.read_csv(results_dir / f"{name}.csv")
    if cols:
        df = df[[c for c in cols if c in df.columns]]
    if "rule" in df.columns:
        df["rule"] = [rule_label(r) if r in RULE_ORDER else r for r in df["rule"]]
    return name, df


def table_html(df: pd.DataFrame) -> str:
    """A frame as a plain HTML table, numbers to 4 significant digits."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), ".4g")
        return str(v)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False, name=None))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def write_index(results_dir: Path, img_dir: Path, notebooks: list[tuple[str, str]], quick: bool,
                notebook_dir: Path | None = None) -> Path:
    """``index.html``, the report's front page: per notebook (``(stem, title)`` pairs) its
    question, its headline figure at full width, its key table as an HTML table, a link to its
    HTML page and to the notebook; then its other figures and its tables (CSV) by name. Nothing
    in it changes unless the results do (no dates, no run times)."""
    def rel(p: Path) -> str:
        return html.escape(os.path.relpath(p, results_dir).replace(os.sep, "/"))
    nbdir = notebook_dir or results_dir.parent / "notebooks"
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>Deep-learning optimizers, measured</title>",
             "<style>body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em;line-height:1.45}"
             "figure{margin:1em 0}figure img{width:100%;height:auto;border:1px solid #ddd}"
             "table{border-collapse:collapse;font-size:.9em;margin:.5em 0}"
             "td,th{padding:.15em .7em;text-align:left;border-bottom:1px solid #eee}"
             "th{border-bottom:1px solid #999}section{margin-bottom:3em}.more{font-size:.9em;color:#444}"
             ".verdict{background:#f6f8fa;border-left:4px solid #4575b4;padding:.2em 1em;margin:1em 0}"
             "</style></head><body>",
             "<h1>Deep-learning optimizers, measured</h1>",
             "<p>How do SGD, Momentum, Nesterov, Adagrad, RMSProp, AdaDelta, Adam, NAdam, AdamW and two new "
             "rules, Gravity and Cosine, behave when a Fashion-MNIST classifier is trained with them? "
             "One section per notebook: its question, its headline figure and key table; the notebook's "
             "page has every figure, table and reading.</p>"]
    if quick:
        parts.append("<p><strong>QUICK mode</strong>: a tiny grid for the tests; the numbers are not results.</p>")
    parts.append("<ol>" + "".join(f"<li><a href='#nb{html.escape(stem[:2])}'>{html.escape(title)}</a></li>"
                                  for stem, title in notebooks) + "</ol>")
    for stem, title in notebooks:
        nn = stem[:2]
        page = results_dir / "html" / f"{stem}.html"
        head = (f"<a href='{rel(page)}'>{html.escape(title)}</a>" if page.exists() else html.escape(title))
        parts.append(f"<section id='nb{html.escape(nn)}'><h2>{head}</h2>")
        figs = sorted(img_dir.glob(f"{nn}_*.png"))
        key_fig = img_dir / KEY_FIGURE.get(nn, "")
        key_fig = key_fig if key_fig in figs else (figs[0] if figs else None)
        if key_fig is not None:
            parts.append(f"<figure><img src='{rel(key_fig)}' alt='{html.escape(title)}: headline figure "
                         f"({html.escape(key_fig.stem)})'><figcaption>{html.escape(key_fig.name)}"
                         "</figcaption></figure>")
        verdicts = verdict_markdown(nbdir / f"{stem}.ipynb")
        if verdicts:
            parts.append("<div class='verdict'>" + "".join(markdown2html_mistune(v) for v in verdicts) + "</div>")
        kt = key_table(results_dir, nn)
        if kt is not None:
            name, df = kt
            shown = df.head(KEY_TABLE_ROWS)
            note = (f" (first {KEY_TABLE_ROWS} of {len(df)} rows)" if len(df) > KEY_TABLE_ROWS else "")
            parts.append(f"<p>Key table, <code>{html.escape(name)}</code>{note}:</p>{table_html(shown)}")
        links = []
        if page.exists():
            links.append(f"<a href='{rel(page)}'>read the notebook: every figure, table and reading</a>")
        nb_file = nbdir / f"{stem}.ipynb"
        if nb_file.exists():
            links.append(f"<a href='{rel(nb_file)}'>the notebook ({html.escape(nb_file.name)})</a>")
        if links:
            parts.append("<p>" + " · ".join(links) + "</p>")
        other = [p for p in figs if p != key_fig]
        if other:
            parts.append("<p class='more'>Other figures: " + ", ".join(
                f"<a href='{rel(p)}'>{html.escape(p.name)}</a>" for p in other) + "</p>")
        tables = sorted(results_dir.glob(f"{nn}_*.csv"))
        if tables:
            parts.append("<p class='more'>Tables as CSV (shown on the notebook's page): " + ", ".join(
                f"<a href='{rel(p)}'>{html.escape(p.name)}</a>" for p in tables) + "</p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    index = results_dir / "index.html"
    write_if_changed(index, "\n".join(parts))
    return index


VERDICT_HEADS = ("## Verdict", "## Answer")        # markdown cells whose next code cell prints the verdict


def verdict_markdown(nb_file: Path) -> list[str]:
    """The verdict sentences of an executed notebook: its markdown outputs that start with
    "**Answer" or "**Verdict", and the markdown output of the code cell after a "## Verdict" or
    "## Answer" heading (in order, each once). Empty when the notebook has no outputs."""
    if not nb_file.exists():
        return []
    nb = nbformat.read(nb_file, as_version=4)
    out, after_head = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            after_head = cell.source.lstrip().startswith(VERDICT_HEADS)
            continue
        for o in cell.get("outputs", []):
            text = o.get("data", {}).get("text/markdown") if o.get("output_type") in ("display_data",
                                                                                    "execute_result") else None
            if text and (after_head or text.lstrip().startswith(("**Answer", "**Verdict"))) and text not in out:
                out.append(text)
        after_head = False
    return out


# ----------------------------------------------------------------------------- run manifests
def write_manifest(log: Path, out: Path) -> None:
    """The keys a notebook asked ``run_grid`` for (``log``, one per line, repeats allowed), sorted and
    unique, as ``out`` (written only when it changes; nothing when the notebook reads no runs)."""
    keys = sorted(set(log.read_text().split())) if log.exists() else []
    if keys:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_if_changed(out, "\n".join(keys) + "\n")


def stack_gains(results_dir: Path) -> dict:
    """{(rule, K): gain} of training K seeds stacked, from ``make bench``'s tables: the throughput
    benchmark's ratio to the GEMM bound one model at a time (``bench_throughput_alone.csv``, stack 1)
    over its ratio at stack K (every other ``bench_throughput*.csv`` measured on the same machine: the
    ratios depend on how fast the machine multiplies, the per-step overhead does not). Empty without
    the alone table."""
    alone_csv = results_dir / "bench_throughput_alone.csv"
    if not alone_csv.exists():
        return {}
    a = pd.read_csv(alone_csv)
    machine = a["machine"].iloc[0] if "machine" in a.columns else None
    alone = a.set_index("rule")["ratio_to_gemm_bound"]
    gains = {}
    for path in sorted(results_dir.glob("bench_throughput*.csv")):
        b = pd.read_csv(path)
        if path == alone_csv or "stack" not in b.columns:
            continue
        if machine is not None and "machine" in b.columns and b["machine"].iloc[0] != machine:
            continue
        for r in b.itertuples():
            if r.stack > 1 and r.rule in alone.index and pd.notna(alone[r.rule]) and pd.notna(r.ratio_to_gemm_bound):
                gains[(r.rule, int(r.stack))] = float(alone[r.rule] / r.ratio_to_gemm_bound)
    return gains


def _stacked_seconds(keys, per_run: pd.DataFrame, configs: dict, gains: dict) -> float:
    """Seconds of the runs ``keys`` had the sweep stacked their seeds (:func:`optreport.runs.sweep.stack_sizes`):
    a run trained alone that would be stacked with K-1 siblings counts its measured seconds over its
    rule's measured gain at K (:func:`stack_gains`; none measured: no gain); the others as measured."""
    groups = {}
    for k in keys:
        cfg = dict(configs[k])
        seed = cfg.pop("seed")
        groups.setdefault(json.dumps(cfg, sort_keys=True, default=str), []).append((seed, k))
    total = 0.0
    for members in groups.values():
        members.sort()
        ks = [k for _, k in members]
        seconds = per_run.loc[ks, "seconds"] + per_run.loc[ks, "eval_seconds"]
        cfg = sweep.RunConfig.from_dict(configs[ks[0]])
        if not sweep.can_stack(cfg) or (per_run.loc[ks, "stacked"] > 1).any():
            total += float(seconds.sum())
            continue
        i = 0
        for size in sweep.stack_sizes(len(ks)):
            gain = gains.get((cfg.rule, size), 1.0) if size > 1 else 1.0
            total += float(seconds.iloc[i:i + size].sum()) / gain
            i += size
    return total


def cost_table(results_dir: Path) -> pd.DataFrame:
    """Per notebook (``results/manifests/NN_*.txt``, in order), the runs it reads that no earlier
    notebook read, their model-epochs and their measured training + evaluation seconds (from the
    runs' records; an epoch in flight while the sweep was paused counts as its run's median epoch,
    :func:`optreport.analysis.costs.pause_corrected`, and ``paused_epochs`` counts them): what the
    notebook costs on an empty store. ``stacked_hours``: the same had the sweep trained every run
    as it does now, seeds stacked (:func:`_stacked_seconds`; equal to ``process_hours`` without
    the benchmark's tables)."""
    runs_dir = results_dir / "runs"
    df = load_results(runs_dir=runs_dir)
    train_s, paused_t = costs.pause_corrected(df, "train_seconds")
    eval_s, paused_e = costs.pause_corrected(df, "eval_seconds")
    df = df.assign(train_s=train_s.fillna(0), eval_s=eval_s.fillna(0), paused=paused_t | paused_e)
    per_run = df.groupby("key").agg(epochs=("epoch", "size"), seconds=("train_s", "sum"),
                                    eval_seconds=("eval_s", "sum"), paused=("paused", "sum"),
                                    stacked=("stacked", "first"))
    gains = stack_gains(results_dir)
    configs = {k: run["config"] for k, run in iter_runs(runs_dir)} if gains else {}
    seen, rows = set(), []
    for path in sorted((results_dir / "manifests").glob("[0-9][0-9]_*.txt")):
        keys = [k for k in path.read_text().split() if k not in seen]
        seen |= set(keys)
        have = per_run.reindex([k for k in keys if k in per_run.index])
        hours = float((have["seconds"] + have["eval_seconds"]).sum() / 3600)
        rows.append({"notebook": path.stem, "runs": len(keys), "stored": len(have),
                     "model_epochs": int(have["epochs"].sum()), "process_hours": hours,
                     "stacked_hours": _stacked_seconds(list(have.index), per_run, configs, gains) / 3600
                     if gains else hours,
                     "paused_epochs": int(have["paused"].sum()),
                     "stacked_runs": int((have["stacked"] > 1).sum())})
    return pd.DataFrame(rows, columns=["notebook", "runs", "stored", "model_epochs", "process_hours", "stacked_hours",
                                       "paused_epochs", "stacked_runs"])


def cost_markdown(results_dir: Path, workers: int = 2) -> str:
    """README's cost block: per notebook, runs and measured process-hours on an empty store, the
    wall-clock estimate with ``workers`` worker processes, and the throughput benchmark's table
    (``results/bench_throughput.csv``, written by ``make bench``) when it exists."""
    t = cost_table(results_dir)
    paused = int(t["paused_epochs"].sum())
    pause_note = (f"; {paused} epoch{'s' if paused != 1 else ''} in flight while the sweep was paused for a speed "
                  f"measurement count{'' if paused != 1 else 's'} as {'their' if paused != 1 else 'its'} run's "
                  f"median epoch" if paused else "")
    n_stacked, n_stored = int(t["stacked_runs"].sum()), int(t["stored"].sum())
    gains = stack_gains(results_dir)
    projected = bool(gains) and n_stacked < n_stored
    if n_stored == 0:
        stack_note = ""
    elif n_stacked == n_stored:
        stack_note = (" Every run was trained stacked with other seeds of its configuration (its share of the "
                      "stack's time).")
    else:
        stack_note = (f" {n_stacked} of the {n_stored} runs were trained stacked with other seeds of their "
                      f"configuration (a stacked run counts its share of the stack's time); the others one at a "
                      f"time (trained before the sweep stacked seeds, or with no sibling waiting), so an empty store "
                      f"costs less than these hours. ")
        if projected:
            sizes = ", ".join(str(k) for k in sorted({k for _, k in gains}))
            lo, hi = min(gains.values()), max(gains.values())
            stack_note += (f"Stacked: the wall clock had the sweep stacked them as it does now (up to "
                           f"{sweep.STACK} runs that differ only in their seed, one torch thread, the MLP; 3 seeds "
                           f"stack as {' + '.join(map(str, sweep.stack_sizes(3)))}, 10 as "
                           f"{' + '.join(map(str, sweep.stack_sizes(10)))}): each such run's "
                           f"seconds over its rule's gain at its stack's size, measured by the throughput "
                           f"benchmark at stack {sizes} against one model at a time ({lo:.2f}–{hi:.2f}×; a size "
                           f"not measured counts no gain). An estimate: the benchmark's gain is for the full "
                           f"training set's epochs with evaluation on the benchmark's machine, and the runs' own "
                           f"seconds were measured beside other work, not all on that machine type.")
        else:
            stack_note += "The throughput table below measures the gain."
    head = "| notebook | runs | model-epochs | process-hours | wall clock (h) |"
    lines = [f"Training cost of each notebook on an empty store, from the seconds its stored runs took (as measured "
             f"while they ran, often beside other work on the machine{pause_note}) "
             f"(a run shared by several notebooks counts for the first); wall clock with {workers} worker processes."
             f"{stack_note}",
             "", head + (" stacked: wall clock (h) |" if projected else ""),
             "|---|---|---|---|---|" + ("---|" if projected else "")]
    for r in t.itertuples():
        lines.append(f"| {r.notebook} | {r.runs} | {r.model_epochs:,} | {r.process_hours:.2f} | "
                     f"{r.process_hours / workers:.2f} |"
                     + (f" {r.stacked_hours / workers:.2f} |" if projected else ""))
    lines.append(f"| total | {int(t.runs.sum())} | {int(t.model_epochs.sum()):,} | {t.process_hours.sum():.2f} | "
                 f"{t.process_hours.sum() / workers:.2f} |"
                 + (f" {t.stacked_hours.sum() / workers:.2f} |" if projected else ""))
    bench = results_dir / "bench_throughput.csv"
    if bench.exists():
        b = pd.read_csv(bench)
        stack = int(b["stack"].iloc[0]) if "stack" in b.columns else 1
        alone_csv = results_dir / "bench_throughput_alone.csv"
        alone = pd.read_csv(alone_csv).set_index("rule") if stack > 1 and alone_csv.exists() else None
        when = f" on {b['measured_utc'].iloc[0]}" if "measured_utc" in b.columns else ""
        when += f", {b['machine'].iloc[0]}" if "machine" in b.columns else ""
        how = (f"{stack} models of one configuration stacked per worker, as the sweep trains the seeds of a "
               f"configuration (times per model)" if stack > 1 else "one model at a time per worker")
        lines += ["", f"Throughput (`benchmarks/bench_throughput.py`{when}, {int(b['workers'].iloc[0])} workers × 1 "
                  f"thread, {how}, evaluation included): seconds per epoch per worker and the ratio to the GEMM "
                  f"bound: every matrix multiply of an epoch, step by step on the model's own tensors, timed on each "
                  f"worker's core alongside the rule's run (mean {b['gemm_bound_s'].mean():.2f} core-seconds per "
                  f"epoch). Hot: the ratio to the same multiplies each timed alone on operands kept in cache "
                  f"({b['gemm_hot_s'].iloc[0]:.2f} core-seconds per epoch), a time no training step reaches"
                  + (". Alone: the same benchmark one model at a time (`--stack 1`"
                     + (f", {alone['measured_utc'].iloc[0]}" if "measured_utc" in alone.columns else "")
                     + "); gain: its ratio over the stacked one (each ratio against a bound measured in its own run, "
                       "so the machine's speed at the time cancels)" if alone is not None else "") + ":", ""]
        if alone is None:
            lines += ["| rule | s/epoch/worker | model-epochs per core-second | ratio to the GEMM bound | hot |",
                      "|---|---|---|---|---|"]
        else:
            lines += ["| rule | s/epoch/worker | model-epochs per core-second | ratio to the GEMM bound | hot "
                      "| alone: ratio | gain |", "|---|---|---|---|---|---|---|"]
        for r in b.itertuples():
            row = (f"| {r.rule} | {r.s_per_epoch_per_worker:.2f} | {r.model_epochs_per_core_second:.3f} | "
                   f"{r.ratio_to_gemm_bound:.2f} | {r.ratio_to_hot_gemm:.2f} |")
            if alone is not None:
                a = alone["ratio_to_gemm_bound"].get(r.rule)
                ok = a is not None and pd.notna(a)
                row += f" {a:.2f} | {a / r.ratio_to_gemm_bound:.2f} |" if ok else " – | – |"
            lines.append(row)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- README
README_START, README_END = "<!-- headline:start -->", "<!-- headline:end -->"
BASELINE_COLUMNS = {"a": "rule", "lr_a": "lr", "b": "baseline", "lr_b": "baseline_lr", "outcome_a": "outcome_rule",
                    "outcome_b": "outcome_baseline", "n_out_a": "n_out_rule", "n_out_b": "n_out_baseline"}
COST_START, COST_END = "<!-- cost:start -->", "<!-- cost:end -->"


def training_seconds(runs_dir: Path) -> float:
    """Training plus evaluation seconds summed over every run stored under ``runs_dir`` (0 when
    the folder does not exist)."""
    df = load_results(runs_dir=runs_dir)
    return float(df["train_seconds"].fillna(0).sum() + df["eval_seconds"].fillna(0).sum())


def seed_question_lines(results_dir: Path) -> list[str]:
    """The README's answers to the report's questions beyond notebooks 02-03, each generated from a
    notebook's tables when they exist: seed 000's two guesses (would 100 epochs change the answer,
    notebook 06; is the data set too small to show a difference, notebook 07), how the tuning
    protocol changes the ranking (notebook 05's reruns), and whether our numbers agree with a
    published benchmark (notebook 08)."""
    out = []
    long_, change = results_dir / "06_vs_sgd_by_length.csv", results_dir / "06_gap_change.csv"
    if long_.exists():
        out += ["", "**Would 100 epochs change the answer?** (notebook 06) "
                + readings.long_answer(pd.read_csv(long_), pd.read_csv(change) if change.exists() else None)]
    size, trend = results_dir / "07_vs_sgd.csv", results_dir / "07_size_trend.csv"
    if size.exists():
        out += ["", "**Is the data set too small to show a difference?** (notebook 07) "
                + readings.size_answer(pd.read_csv(size), trend=pd.read_csv(trend) if trend.exists() else None)]
    names = ("05_reruns", "05_ranking", "05_vs_top", "05_kendall", "05_inclusion_pairs")
    if all((results_dir / f"{n}.csv").exists() for n in names):      # 05 at the budget that can decide
        _, ranking, vs_top, tau, incl = (pd.read_csv(results_dir / f"{n}.csv") for n in names)
        out += ["", "**How does the tuning protocol change the ranking?** (notebook 05, Choi et al. 2019: the "
                "configuration each protocol selects on the validation split, rerun with several seeds) "
                + readings.tuning_answer(ranking, vs_top, tau, incl, tuning.PROTOCOL_NAMES)]
    cnn = results_dir / "08_cnn_vs_published.csv"
    if cnn.exists():
        out += ["", "**Do our numbers agree with a published benchmark?** (notebook 08, DeepOBS's fmnist_2c2d at "
                "Crowded Valley's one-shot defaults) " + readings.published_answer(pd.read_csv(cnn))]
    return out


def headline_markdown(results_dir: Path, img_dir: Path) -> str:
    """The README's headline, built only from the files a full run wrote: notebook 02's heat
    map and table (final test accuracy, mean and 95% CI over seeds, per rule and lr), and the
    training and evaluation seconds summed over the runs stored in ``<results_dir>/runs``. It
    changes only when those change."""
    t = pd.read_csv(results_dir / "02_sweep_table.csv")
    wide = sweep_grid(t)
    seeds = int(t["n_seeds"].max())
    cols = list(wide.columns[1:])
    lines = [f"![test accuracy per rule and lr]({img_dir.name}/02_final_test_acc_heatmap.png)", "",
             f"Test accuracy (%) of the quickstart MLP at the epoch with the best validation accuracy "
             f"({int(t['final_epoch'].max())} epochs), mean and 95% CI over the runs that trained of {seeds} seeds; a "
             f"cell whose runs did not all train names the outcome ([full table](results/02_sweep_table.md)):", "",
             "| rule | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.itertuples(index=False)]
    vs = results_dir / "03_vs_baselines.csv"
    if vs.exists():
        t3 = pd.read_csv(vs).rename(columns={v: k for k, v in BASELINE_COLUMNS.items()})
        lines += ["", f"**Seed 000's question** (\"almost no change\" between Momentum, Gravity and Cosine; notebook "
                  f"03, {int(t3['n_seeds'].max())} seeds): " + readings.almost_no_change(t3, "momentum"),
                  "", "Against the right baselines: " + readings.baseline_summary(t3)]
    lines += seed_question_lines(results_dir)
    if any((results_dir / "manifests").glob("[0-9][0-9]_*.txt")):
        cost = cost_table(results_dir)
        lines += ["", "Run times on this machine (2 cores): training and evaluation of the "
                  f"{int(cost.runs.sum())} runs the notebooks read add up to {cost.process_hours.sum():.1f} "
                  "process-hours (two worker processes share the cores; per notebook in [Speed](#speed))."]
    else:
        train_s = training_seconds(results_dir / "runs")
        lines += ["", f"Run times on this machine (2 cores): training and evaluation of the stored runs add up to "
                  f"{train_s / 3600:.1f} process-hours (two worker processes share the cores)."]
    return "\n".join(lines)


def update_readme(results_dir: Path, img_dir: Path, readme: Path | None = None) -> bool:
    """Replace the block between the headline markers in README.md; False if there is none."""
    readme = readme or REPO / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    text = f"{head}{README_START}\n{headline_markdown(results_dir, img_dir)}\n{README_END}{tail}"
    if COST_START in text and COST_END in text:
        head, rest = text.split(COST_START, 1)
        _, tail = rest.split(COST_END, 1)
        text = f"{head}{COST_START}\n{cost_markdown(results_dir)}\n{COST_END}{tail}"
    write_if_changed(readme, text)
    return True


# ----------------------------------------------------------------------------- the job
def execute_one(nb_path: Path, out_nb: Path, params: dict, base: Path, results_dir: Path, quick: bool,
                notebook_dir: Path, progress: bool = False) -> tuple[float, str | None]:
    """Execute one notebook with papermill, clean it, write it back (full run, on success), export its
    HTML and its manifest; returns (seconds, the failing cell's message or None). Runs in the
    report's process (one notebook at a time) or in one of its job processes (--jobs)."""
    title = notebook_title(nbformat.read(nb_path, as_version=4))
    t0 = time.perf_counter()
    error = None
    manifest = base / "build" / f"manifest_{nb_path.stem}.txt"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    os.environ[sweep.MANIFEST_ENV] = str(manifest)      # the kernel inherits it: run_grid logs its keys
    try:
        pm.execute_notebook(str(nb_path), str(out_nb), parameters=params,
                            kernel_name="python3", cwd=str(notebook_dir),
                            progress_bar=progress, execution_timeout=None,
                            extra_arguments=KERNEL_ARGS, record_timing=False)
    except PapermillExecutionError as e:
        error = cell_error(nb_path, e)
    finally:
        os.environ.pop(sweep.MANIFEST_ENV, None)
    secs = time.perf_counter() - t0
    if out_nb.exists():
        nb = clean_notebook(nbformat.read(out_nb, as_version=4), title)
        write_if_changed(out_nb, nbformat.writes(nb) + "\n")
        shown = out_nb
        if error is None and not quick:          # the notebook as committed; its HTML without
            committed = nbformat.writes(without_injected_parameters(nb)) + "\n"   # the injected cell
            write_if_changed(notebook_dir / nb_path.name, committed)
            shown = notebook_dir / nb_path.name
        html_path = results_dir / "html" / f"{nb_path.stem}.html"
        link = os.path.relpath((base / "notebooks" / nb_path.name), html_path.parent).replace(os.sep, "/")
        export_html(shown, html_path, link)
    if error is None:
        write_manifest(manifest, results_dir / "manifests" / f"{nb_path.stem}.txt")
    return secs, error


def run(args) -> int:
    nbs = find_notebooks(args.only)
    if not nbs:
        print(f"report: no notebooks matching {args.only or 'NN_*.ipynb'} in {NOTEBOOK_DIR}",
              file=sys.stderr)
        return 1
    if args.jobs < 1:
        print(f"report: --jobs must be at least 1 (got {args.jobs})", file=sys.stderr)
        return 2
    check_data()
    base = base_dir(args.quick, args.out)
    p = paths(args.quick, args.out)
    results_dir, img_dir = Path(p["RESULTS_DIR"]), Path(p["IMG_DIR"])
    # quick mode: executed notebooks next to its results; full run: executed in build/, written
    # back to notebooks/ once they succeed
    executed_dir = base / "notebooks" if args.quick else base / "build" / "executed"
    for d in (executed_dir, results_dir / "html", img_dir):
        d.mkdir(parents=True, exist_ok=True)
    params = {"QUICK": bool(args.quick), **notebook_parameters(p), "WORKERS": int(args.workers),
              "FORCE": bool(args.rerun)}
    if args.measure:           # notebook 04 re-times its microbenchmarks (stored in results/)
        params["MEASURE"] = True
    for k, v in KERNEL_ENV.items():
        os.environ.setdefault(k, v)
    timing_csv = base / "build" / "report_timing.csv"
    timing = read_timing(timing_csv)
    jobs = min(args.jobs, len(nbs))
    print(f"report: {len(nbs)} notebook(s); {'QUICK, ' if args.quick else ''}results -> "
          f"{results_dir}, figures -> {img_dir}" + (f"; {jobs} at a time" if jobs > 1 else ""), flush=True)
    t_all = time.perf_counter()
    failures = []
    titles = {nb_path: notebook_title(nbformat.read(nb_path, as_version=4)) for nb_path in nbs}

    def done(i, nb_path, secs, error):
        timing[nb_path.stem] = {"notebook": nb_path.stem, "title": titles[nb_path], "seconds": f"{secs:.1f}",
                                "status": "failed" if error else "ok", "quick": args.quick}
        write_timing(timing_csv, timing)
        out_nb = executed_dir / nb_path.name
        if error is not None:
            failures.append(nb_path)
            print(f"\nreport: FAILED: {error}\n"
                  f"The partially executed notebook is kept: {out_nb}\n"
                  f"(its HTML: {results_dir / 'html' / (nb_path.stem + '.html')})", file=sys.stderr)
        else:
            print(f"    {nb_path.name}: {secs:.1f} s", flush=True)

    def started(i, nb_path):
        print(f"[{i}/{len(nbs)}] {nb_path.name}: {titles[nb_path]}", flush=True)

    if jobs == 1:
        for i, nb_path in enumerate(nbs, 1):
            started(i, nb_path)
            secs, error = execute_one(nb_path, executed_dir / nb_path.name, params, base, results_dir, args.quick,
                                      NOTEBOOK_DIR, progress=not args.no_progress)
            done(i, nb_path, secs, error)
            if error is not None:
                break
    else:      # job processes (spawned after KERNEL_ENV is set; each sets its own manifest variable);
        # notebooks share runs only through the store, whose workers train each run once
        queue = list(enumerate(nbs, 1))
        running = {}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            while queue or running:
                while queue and len(running) < jobs and not failures:   # a failure starts no new notebook
                    i, nb_path = queue.pop(0)
                    started(i, nb_path)
                    fut = pool.submit(execute_one, nb_path, executed_dir / nb_path.name, params, base,
                                      results_dir, args.quick, NOTEBOOK_DIR)
                    running[fut] = (i, nb_path)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i, nb_path = running.pop(fut)
                    secs, error = fut.result()
                    done(i, nb_path, secs, error)
    status = 1 if failures else 0
    total = time.perf_counter() - t_all
    listed = [(nb.stem, notebook_title(nbformat.read(nb, as_version=4)) or nb.stem) for nb in find_notebooks()]
    index = write_index(results_dir, img_dir, listed, args.quick, base / "notebooks")
    print(f"report: total {total:.1f} s; index: {index}", flush=True)
    if status == 0 and not args.quick and args.out is None and (results_dir / "02_sweep_table.csv").exists():
        update_readme(results_dir, img_dir)
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optreport.report", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny grid, outputs under build/quick/ (never touches notebooks/, img/, results/)")
    ap.add_argument("--rerun", action="store_true", help="retrain every run (FORCE=True)")
    ap.add_argument("--out", metavar="DIR", help="output folder (DIR/img, DIR/results, DIR/notebooks)")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (01 02 ...)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for sweeps (2)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="notebooks executed at the same time (1); they share runs through the store, which "
                         "trains each run once (the tests' quick report uses 2)")
    ap.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    ap.add_argument("--measure", action="store_true",
                    help="re-measure the speed microbenchmarks (notebook 04) on this machine and store them in "
                         "results/ with the machine and date; without it they are read from results/ (use a "
                         "quiet machine)")
    ap.add_argument("--readme", action="store_true",
                    help="only rewrite README.md's headline from the committed results, run nothing")
    args = ap.parse_args(argv)
    if args.readme:
        p = paths(False, None)
        return 0 if update_readme(Path(p["RESULTS_DIR"]), Path(p["IMG_DIR"])) else 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
