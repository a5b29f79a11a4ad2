"""Shared fixtures.

``quick_report`` runs the whole report once per test session in quick mode,
``python -m optreport.report --quick --out <tmp> --jobs 2 --workers 1`` (what ``make quick`` runs), as a
subprocess, and returns the output folder (``<tmp>/img``, ``<tmp>/results``). Tests of any notebook's outputs
use it. It is skipped, with the reason, when Fashion-MNIST cannot be found.

The quick report is the longest part of the suite and mostly runs one process at a time, so it is
started in the background as soon as the tests are collected (when any selected test needs it) and
the tests that need it are moved to the end: the rest of the suite runs meanwhile.
"""
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from optreport.engine import data

REPO = Path(__file__).resolve().parents[1]
COMMITTED = ("img", "results", "notebooks")     # folders a quick run must never touch
QUICK_JOBS = 2                                  # notebooks the quick report executes at a time, each
QUICK_WORKERS = 1                               # training in its own kernel (no worker processes to start)


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


def committed_now() -> dict[str, str]:
    return {name: folder_hash(REPO / name) for name in COMMITTED}


class QuickReport:
    """``python -m optreport.report --quick --out OUT`` running in the background (own process group,
    output in ``LOG``)."""

    def __init__(self, out: Path, log: Path):
        self.out, self.log = out, log
        with open(log, "wb") as f:
            cmd = [sys.executable, "-m", "optreport.report", "--quick", "--out", str(out), "--no-progress",
                   "--jobs", str(QUICK_JOBS), "--workers", str(QUICK_WORKERS)]
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env={**os.environ},
                                         start_new_session=True)

    def wait(self) -> Path:
        rc = self.proc.wait()
        if rc != 0:
            tail = self.log.read_text(errors="replace")[-8000:]
            pytest.fail(f"python -m optreport.report --quick failed (exit {rc}); its output ({self.log}):\n{tail}")
        return self.out

    def stop(self) -> None:
        """End the report and its kernels and workers if it is still running (an interrupted session)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()


_SESSION: dict = {}      # "hashes": committed folders before the report ran; "report": QuickReport; "skip": why


def needs_quick_report(item) -> bool:
    return "quick_report" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)        # after -m / -k deselection: start it only if a selected test needs it
def pytest_collection_modifyitems(session, config, items):
    wanted = [it for it in items if needs_quick_report(it)]
    if not wanted or config.option.collectonly:
        return
    items[:] = [it for it in items if not needs_quick_report(it)] + wanted
    ok, why = data_available()
    if not ok:
        _SESSION["skip"] = why
        return
    _SESSION["hashes"] = committed_now()
    start_quick_report(config._tmp_path_factory)


def start_quick_report(factory) -> None:
    _SESSION["report"] = QuickReport(factory.mktemp("quick_report"), factory.mktemp("quick_report_log") / "report.log")


def pytest_sessionfinish(session, exitstatus):
    if "report" in _SESSION:
        _SESSION["report"].stop()


@pytest.fixture(scope="session")
def committed_hashes():
    """Hashes of the committed img/ and results/ taken before the quick report started."""
    return _SESSION.get("hashes") or committed_now()


@pytest.fixture(scope="session")
def quick_report(tmp_path_factory, committed_hashes):
    if "skip" in _SESSION:
        pytest.skip(f"Fashion-MNIST not found, the quick report cannot run: {_SESSION['skip']}")
    if "report" not in _SESSION:     # not started at collection (a test that requests it dynamically)
        ok, why = data_available()
        if not ok:
            pytest.skip(f"Fashion-MNIST not found, the quick report cannot run: {why}")
        start_quick_report(tmp_path_factory)
    return _SESSION["report"].wait()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module's tests, as the report's workers train (``pytestmark =
    pytest.mark.usefixtures("one_thread")``); the previous count afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
