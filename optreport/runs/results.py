"""The only reader of stored runs: finished runs as tidy pandas frames.

Finished runs live as one JSON file each under a runs folder (``results/runs/`` for the report):

    results/runs/<model>/<rule>/<key>.json     {"key": ..., "config": {...}, "record": {...}}

``config`` is the run's configuration with the code versions and settings that entered its key
(see :mod:`optreport.runs.keys`); ``record`` is the trainer's record with the per-step losses kept
compactly (window means, base64 float32; :func:`compact_record`). A file is written once, by an
atomic rename, when its run finishes; nothing else is ever needed to re-render the report, and
reading needs no write access.

    from optreport.runs.results import load_results, last_epoch
    df = load_results(configs, runs_dir)      # one row per run and epoch
    final = last_epoch(df)                     # one row per run
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["RUNS_DIR", "load_results", "load_step_losses", "last_epoch", "run_path", "write_run",
           "read_run", "iter_runs", "compact_record", "decode_losses", "STEP_WINDOW", "EPOCH_COLS"]

#: where the report keeps its finished runs (relative to the repository root)
RUNS_DIR = Path(__file__).resolve().parents[2] / "results" / "runs"
STEP_WINDOW = 10      # per-step losses are stored as means over windows of this many steps

EPOCH_COLS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
              "train_seconds", "step_seconds", "eval_seconds"]


# ---------------------------------------------------------------------------- records

def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, "<f4").tobytes()).decode("ascii")


def decode_losses(w: dict) -> np.ndarray:
    """The window means of a record's ``step_losses_w`` as float64 (NaN where non-finite)."""
    return np.frombuffer(base64.b64decode(w["b64"]), "<f4").astype(np.float64)


def compact_record(rec: dict, window: int = STEP_WINDOW) -> dict:
    """The trainer's record with per-step losses replaced by window means, stored compactly.

    ``step_losses`` (one float per step, None for non-finite) becomes ``step_losses_w``:
    {"window": 10, "n_steps": N, "dtype": "float32-le", "b64": ...}, the means of consecutive
    windows of ``window`` steps (the last may be shorter; a window holding a non-finite loss
    is NaN), as base64 of little-endian float32: ~5.3 bytes per window."""
    rec = dict(rec)
    if "step_losses" not in rec:
        return rec
    steps = np.array([np.nan if v is None else v for v in rec.pop("step_losses")], dtype=np.float64)
    n, full = len(steps), len(steps) // window * window
    means = steps[:full].reshape(-1, window).mean(1)           # NaN propagates: a NaN window
    if full < n:
        means = np.append(means, steps[full:].mean())
    rec["step_losses_w"] = {"window": window, "n_steps": n, "dtype": "float32-le", "b64": _encode(means)}
    return rec


# ---------------------------------------------------------------------------- files

def run_path(runs_dir, model: str, rule: str, key: str) -> Path:
    return Path(runs_dir) / model / rule / f"{key}.json"


def write_run(runs_dir, key: str, config: dict, record: dict) -> Path:
    """Write one finished run atomically (temporary file, fsync, rename); returns its path."""
    path = run_path(runs_dir, config["model"], config["rule"], key)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"key": key, "config": config, "record": compact_record(record)},
                      sort_keys=True, allow_nan=False, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_run(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_runs(runs_dir, keys=None):
    """(key, run dict) of the stored runs, all or those whose key is in ``keys``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return
    wanted = None if keys is None else set(keys)
    for path in sorted(runs_dir.glob("*/*/*.json")):
        key = path.stem
        if wanted is not None and key not in wanted:
            continue
        yield key, read_run(path)


def stored_keys(runs_dir) -> set[str]:
    """Keys of every run stored under ``runs_dir`` (file names only; nothing is parsed)."""
    runs_dir = Path(runs_dir)
    return {p.stem for p in runs_dir.glob("*/*/*.json")} if runs_dir.is_dir() else set()


# ---------------------------------------------------------------------------- tidy frames

def _keys_of(configs):
    return None if configs is None else [c if isinstance(c, str) else c.key for c in configs]


def load_results(configs=None, runs_dir=RUNS_DIR) -> pd.DataFrame:
    """Tidy per-epoch rows of the finished runs among ``configs`` (RunConfigs or keys; None:
    every stored run).

    Columns: key, model, rule, lr, seed, epochs, batch_size, val_size, n_train, schedule,
    data_protocol ("report" for runs stored without one), hparams (JSON string), one column per
    hyper-parameter, epoch, train_loss, train_acc,
    val_loss, val_acc, test_loss, test_acc, train_seconds, step_seconds, eval_seconds, diverged,
    diverged_epoch, stacked (the models the run was trained with, stacked: 1 for a run trained alone;
    its seconds are then its share of the stack's). Unfinished runs are absent."""
    rows, hp_names = [], set()
    for key, run in iter_runs(runs_dir, _keys_of(configs)):
        cfg, rec = run["config"], run["record"]
        hp = cfg["hparams"]
        hp_names |= set(hp)
        base = dict(key=key, model=cfg["model"], rule=cfg["rule"], lr=hp.get("lr"), seed=cfg["seed"],
                    epochs=cfg["epochs"], batch_size=cfg["batch_size"], val_size=cfg["val_size"],
                    n_train=cfg.get("n_train"), schedule=cfg.get("schedule", "constant"),
                    data_protocol=cfg.get("data_protocol", "report"), hparams=json.dumps(hp, sort_keys=True),
                    **{f"hp_{k}": v for k, v in hp.items()})
        for ep in rec["epochs"]:
            rows.append({**base, **{c: ep.get(c) for c in EPOCH_COLS},
                         "diverged": rec["diverged"], "diverged_epoch": rec["diverged_epoch"],
                         "stacked": int(rec.get("stacked", 1))})
    cols = (["key", "model", "rule", "lr", "seed", "epochs", "batch_size", "val_size", "n_train",
             "schedule", "data_protocol", "hparams"] + sorted(f"hp_{n}" for n in hp_names - {"lr"}) + EPOCH_COLS
            + ["diverged", "diverged_epoch", "stacked"])
    df = pd.DataFrame(rows, columns=cols)
    df = df.rename(columns={c: c[3:] for c in df.columns if c.startswith("hp_")})
    for c in EPOCH_COLS[1:]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)    # JSON null -> NaN
    df["diverged"] = df["diverged"].astype(bool)
    df["diverged_epoch"] = df["diverged_epoch"].astype("Int64")
    df["stacked"] = df["stacked"].astype(int)
    return df.sort_values(["model", "rule", "lr", "seed", "epoch"], kind="stable").reset_index(drop=True)


def load_step_losses(configs=None, runs_dir=RUNS_DIR) -> dict:
    """{key: array of window-mean training losses} (window = STEP_WINDOW steps; NaN if non-finite)."""
    return {key: decode_losses(run["record"]["step_losses_w"])
            for key, run in iter_runs(runs_dir, _keys_of(configs))}


def last_epoch(df: pd.DataFrame) -> pd.DataFrame:
    """The last recorded epoch of every run in a frame of :func:`load_results` (one row per key,
    in the frame's order of keys)."""
    return df.sort_values(["key", "epoch"], kind="stable").groupby("key", sort=False).tail(1) \
        .set_index("key").loc[pd.unique(df["key"])].reset_index()
