"""Shared fixtures.

``quick_report`` runs the whole report once per test session in quick mode,
``python -m optreport.report --quick --out <tmp>``, as a subprocess (exactly what a user would run), and
returns the output folder (``<tmp>/img``, ``<tmp>/results``). Tests of any notebook's outputs
use it. It is skipped, with the reason, when Fashion-MNIST cannot be found.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from optreport.engine import data

REPO = Path(__file__).resolve().parents[1]
COMMITTED = ("img", "results", "notebooks")     # folders a quick run must never touch


def folder_hash(folder: Path, skip: tuple[str, ...] = ("runs",)) -> str:
    """SHA-256 over the relative paths, sizes and contents of every file under ``folder``, except
    under its top-level folders ``skip``: ``results/runs/`` grows while a training sweep runs
    beside the tests (a quick run stores its runs under its own --out folder)."""
    h = hashlib.sha256()
    if folder.exists():
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.relative_to(folder).parts[0] not in skip:
                h.update(str(p.relative_to(folder)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()


_COMPILE = {}


def needs_torch_compile():
    """Skip the calling test, with the reason, where torch.compile cannot build a CPU kernel
    (no C++ compiler): there the compiled steps run eagerly after a warning, which
    test_compiled_path_falls_back_to_eager_with_a_warning covers."""
    if "ok" not in _COMPILE:
        try:
            torch.compile(lambda x: x * 2 + 1, fullgraph=True)(torch.ones(3))
            _COMPILE["ok"], _COMPILE["why"] = True, ""
        except Exception as e:   # no compiler, missing headers ...
            _COMPILE["ok"], _COMPILE["why"] = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not _COMPILE["ok"]:
        pytest.skip(f"torch.compile unavailable here ({_COMPILE['why']}); install a C++ compiler (Debian: g++)")


def data_available() -> tuple[bool, str]:
    try:
        data.locate(download=False)
        return True, ""
    except Exception as e:       # DataNotFoundError, unreadable folder ...
        return False, str(e)


@pytest.fixture(scope="session")
def committed_hashes():
    """Hashes of the committed img/ and results/ taken before the quick report runs."""
    return {name: folder_hash(REPO / name) for name in COMMITTED}


@pytest.fixture(scope="session")
def quick_report(tmp_path_factory, committed_hashes):
    ok, why = data_available()
    if not ok:
        pytest.skip(f"Fashion-MNIST not found, the quick report cannot run: {why}")
    out = tmp_path_factory.mktemp("quick_report")
    proc = subprocess.run([sys.executable, "-m", "optreport.report", "--quick", "--out", str(out),
                           "--no-progress"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ})
    if proc.returncode != 0:
        pytest.fail(f"python -m optreport.report --quick failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def results(quick_report):
    """The quick report's results folder."""
    return Path(quick_report) / "results"


def read_table(results, name):
    """A table the report wrote: its CSV (as a DataFrame) and its Markdown copy must exist."""
    path = results / f"{name}.csv"
    assert path.exists(), f"missing table {path}"
    assert (results / f"{name}.md").exists(), f"missing Markdown copy of {name}"
    return pd.read_csv(path)
