"""The runs of the seed-question notebooks (06 long training, 07 training-set size), defined once.

A notebook and a background sweep must ask for exactly the same configurations (a run's key is
the hash of its configuration), so both take them from here:

    python -m optreport.report.plans 06 07      # train what the notebooks will read, in the background

Each rule runs at its best lr from notebook 02's grid (:func:`best_lrs`, by the mean over seeds
of the validation-selected validation accuracy; a diverged run counts as chance) and Adam at the
best lr of a small search on its own scale (:data:`ADAM_SEARCH_LRS`, same criterion), since the
grid's lrs (>= 0.01) are above Adam's usual range.
"""
from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from optreport.analysis import tuning
from optreport.engine.data import DEEPOBS_VAL_SIZE, TRAIN_SIZE
from optreport.report import experiments as ex
from optreport.runs import results, sweep
from optreport.runs.keys import RunConfig

__all__ = ["STUDY_RULES", "ADAM_SEARCH_LRS", "LONG_EPOCHS", "LONG_SEEDS", "LONG_SCHEDULES", "SIZE_FRACTIONS",
           "SIZE_SEEDS", "STEP_BUDGET_EPOCHS", "selection_score", "best_lrs", "lr_choice_table", "grid_configs",
           "adam_search_configs", "long_configs", "size_configs", "size_n_train", "step_budget", "images", "main"]

STUDY_RULES = ["sgd", "momentum", "adam", "gravity", "cosine"]   # the rules of 06 and 07
ADAM_SEARCH_LRS = [1e-4, 3e-4, 1e-3, 3e-3]  # Adam's own lr scale; 0.01 comes from notebook 02's grid
SEARCH_SEEDS = [0, 1, 2]                    # seeds of Adam's lr search (15 epochs, like notebook 02)

LONG_EPOCHS = 100                           # seed 000's guess: "100 epochs might be needed"
LONG_SEEDS = [0, 1, 2, 3, 4]
LONG_SCHEDULES = ["constant", "cosine"]     # constant lr, and cosine decay to 0 over the 100 epochs

SIZE_FRACTIONS = [1 / 27, 1 / 9, 1 / 3, 1]  # of the 55,000 training images
SIZE_SEEDS = [0, 1, 2, 3, 4]
STEP_BUDGET_EPOCHS = 6                      # every size gets the optimizer steps of 6 epochs of all the data

QUICK_SEEDS = [0, 1]
QUICK_EPOCHS = 2
QUICK_MAX_STEPS = 30
QUICK_LONG_EPOCHS = 3                       # quick notebook 06: 3 epochs of 640 images (10 steps each)
QUICK_LONG_N_TRAIN = 640
QUICK_EVAL_SIZE = ex.QUICK_EVAL_SIZE         # quick notebooks: validation and test images evaluated


def selection_score(df: pd.DataFrame) -> pd.Series:
    """Per run (key): the validation accuracy at its best epoch; a diverged run scores chance (0.1)."""
    best = df.groupby("key").val_acc.max()
    div = df.groupby("key").diverged.any()
    return best.where(~div & best.notna(), 0.1)


def best_lrs(df: pd.DataFrame) -> dict:
    """{rule: lr} with the highest mean :func:`selection_score` over seeds (ties: the smaller lr)."""
    score = selection_score(df)
    runs = df.groupby("key")[["rule", "lr"]].first().join(score.rename("score"))
    mean = runs.groupby(["rule", "lr"]).score.mean().reset_index()
    out = {}
    for rule, g in mean.groupby("rule", sort=False):
        g = g.sort_values(["score", "lr"], ascending=[False, True], kind="stable")
        out[rule] = float(g.lr.iloc[0])
    return out


def lr_choice_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per rule and lr of the selection runs ``df``: the mean :func:`selection_score` over seeds, the
    number of seeds, and whether :func:`best_lrs` chose it (catalogue order)."""
    chosen = best_lrs(df)
    runs = df.groupby("key")[["rule", "lr"]].first().join(selection_score(df).rename("score"))
    t = runs.groupby(["rule", "lr"]).score.agg(["mean", "count"]).reset_index()
    t = t.rename(columns={"mean": "mean_best_val_acc", "count": "n_seeds"})
    t["chosen"] = [chosen.get(r) == lr for r, lr in zip(t["rule"], t["lr"], strict=True)]
    order = {r: i for i, r in enumerate(ex.RULES)}
    return t.sort_values(["rule", "lr"], key=lambda c: c.map(order) if c.name == "rule" else c,
                         kind="stable").reset_index(drop=True)


def grid_configs(quick: bool = False) -> list[RunConfig]:
    """Notebook 02's runs of the study's rules (the source of their best lr)."""
    seeds, epochs, steps, n_eval = (ex.QUICK_SEEDS, ex.QUICK_EPOCHS, ex.QUICK_MAX_STEPS, ex.QUICK_EVAL_SIZE) if quick \
        else (ex.SEEDS, ex.EPOCHS, ex.MAX_STEPS, ex.EVAL_SIZE)
    return sweep.grid(STUDY_RULES, ex.LRS, seeds, epochs=epochs, batch_size=ex.BATCH_SIZE, max_steps=steps,
                      eval_size=n_eval)


def adam_search_configs(quick: bool = False) -> list[RunConfig]:
    seeds, epochs, steps, n_eval = (ex.QUICK_SEEDS, ex.QUICK_EPOCHS, ex.QUICK_MAX_STEPS, ex.QUICK_EVAL_SIZE) if quick \
        else (SEARCH_SEEDS, ex.EPOCHS, ex.MAX_STEPS, ex.EVAL_SIZE)
    return sweep.grid(["adam"], ADAM_SEARCH_LRS, seeds, epochs=epochs, batch_size=ex.BATCH_SIZE, max_steps=steps,
                      eval_size=n_eval)


def chosen_lrs(runs_dir=results.RUNS_DIR, quick: bool = False) -> dict:
    """Each study rule's lr: best of notebook 02's grid; Adam's best over its search and the grid."""
    df = results.load_results(grid_configs(quick) + adam_search_configs(quick), runs_dir)
    missing = {c.key for c in grid_configs(quick) + adam_search_configs(quick)} - set(df.key)
    if missing:
        raise RuntimeError(f"{len(missing)} runs that choose the lrs are not stored yet; "
                           "run `python -m optreport.report.plans select` first")
    lrs = best_lrs(df)
    return {r: lrs[r] for r in STUDY_RULES}


def long_configs(lrs: dict, quick: bool = False) -> list[RunConfig]:
    """Notebook 06: each rule at its lr, 100 epochs, constant and cosine-decayed, seed-major order
    (a partial sweep has whole seeds)."""
    if quick:     # a few whole epochs of a small subset, so that the cut-off epochs differ
        seeds, epochs, n_train, n_eval = QUICK_SEEDS, QUICK_LONG_EPOCHS, QUICK_LONG_N_TRAIN, QUICK_EVAL_SIZE
    else:
        seeds, epochs, n_train, n_eval = LONG_SEEDS, LONG_EPOCHS, None, None
    return [RunConfig(rule=r, hparams={"lr": lrs[r]}, seed=s, epochs=epochs, batch_size=ex.BATCH_SIZE,
                      n_train=n_train, schedule=sch, eval_size=n_eval)
            for s in seeds for sch in LONG_SCHEDULES for r in STUDY_RULES]


def size_n_train(fraction: float, val_size: int = 5000) -> int | None:
    """Training images used at ``fraction`` of the training split (None: all of it)."""
    n = TRAIN_SIZE - val_size
    return None if fraction >= 1 else int(round(n * fraction))


def step_budget(batch_size: int = ex.BATCH_SIZE, val_size: int = 5000) -> int:
    """Optimizer steps of every run of notebook 07: STEP_BUDGET_EPOCHS epochs of all the data."""
    return STEP_BUDGET_EPOCHS * math.ceil((TRAIN_SIZE - val_size) / batch_size)


def size_configs(lrs: dict, quick: bool = False) -> list[RunConfig]:
    """Notebook 07: each rule at its lr on nested subsets, every run the same number of steps."""
    if quick:
        seeds, budget, n_eval = QUICK_SEEDS, QUICK_MAX_STEPS, QUICK_EVAL_SIZE
    else:
        seeds, budget, n_eval = SIZE_SEEDS, step_budget(), None
    out = []
    for s in seeds:
        for frac in SIZE_FRACTIONS:
            n = size_n_train(frac)
            per_epoch = math.ceil((TRAIN_SIZE - 5000 if n is None else n) / ex.BATCH_SIZE)
            epochs = math.ceil(budget / per_epoch)
            for r in STUDY_RULES:
                out.append(RunConfig(rule=r, hparams={"lr": lrs[r]}, seed=s, epochs=epochs,
                                     batch_size=ex.BATCH_SIZE, max_steps=budget, n_train=n, eval_size=n_eval))
    return out


# ----------------------------------------------------------------------------- notebook 08
# DeepOBS's fmnist_2c2d (our "cnn") on DeepOBS's data protocol, with Crowded Valley's one-shot
# defaults (constant lr, batch 128) for the three published rules; Gravity and Cosine, which
# have no published numbers, at SGD's one-shot lr 0.01 (a choice of ours, stated in notebook 08).
CNN_MODEL = "cnn"
CNN_BATCH_SIZE = 128                        # DeepOBS's fmnist_2c2d default (deepobs/config.py)
CNN_EPOCHS = 20                             # of DeepOBS's 100; the published curves are compared to epoch 20
CNN_SEEDS = [0, 1]
CNN_HPARAMS = {                             # rule -> hyper-parameters (Crowded Valley's one-shot defaults)
    "sgd": {"lr": 0.01},
    "momentum": {"lr": 0.01, "momentum": 0.99},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
    "gravity": {"lr": 0.01},                # no published default: SGD's one-shot lr
    "cosine": {"lr": 0.01},                 # no published default: SGD's one-shot lr
}
CNN_QUICK_MAX_STEPS = 5                     # quick: steps per run (a CNN step costs ~0.3 s here)
CNN_QUICK_EPOCHS = 1                        # quick: one evaluation per run (a CNN evaluation costs seconds)
CNN_QUICK_EVAL_SIZE = QUICK_EVAL_SIZE       # quick: validation and test images evaluated


def cnn_configs(quick: bool = False) -> list[RunConfig]:
    """Notebook 08: DeepOBS's fmnist_2c2d with DeepOBS's data protocol (``data_protocol="deepobs"``:
    /255 only, the first 10,000 training images held out, 390 full batches of 128 per epoch, the
    first 9,984 test images), each rule of :data:`CNN_HPARAMS` at a constant lr, seed-major order.
    quick: the same configurations at QUICK_SEEDS, CNN_QUICK_EPOCHS epoch(s), CNN_QUICK_MAX_STEPS steps,
    evaluated on CNN_QUICK_EVAL_SIZE images."""
    seeds, epochs, steps, n_eval = ((QUICK_SEEDS, CNN_QUICK_EPOCHS, CNN_QUICK_MAX_STEPS, CNN_QUICK_EVAL_SIZE) if quick
                                    else (CNN_SEEDS, CNN_EPOCHS, None, None))
    return [RunConfig(model=CNN_MODEL, rule=r, hparams=dict(hp), seed=s, epochs=epochs, batch_size=CNN_BATCH_SIZE,
                      val_size=DEEPOBS_VAL_SIZE, max_steps=steps, schedule="constant", data_protocol="deepobs",
                      eval_size=n_eval)
            for s in seeds for r, hp in CNN_HPARAMS.items()]


__all__ += ["CNN_MODEL", "CNN_BATCH_SIZE", "CNN_EPOCHS", "CNN_QUICK_EPOCHS", "CNN_QUICK_EVAL_SIZE", "CNN_SEEDS",
            "CNN_HPARAMS", "cnn_configs"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m optreport.report.plans",
                                description="train the runs of notebooks 06 and 07 (stored runs are skipped)")
    p.add_argument("what", nargs="+", choices=["select", "05", "06", "07", "08"],
                   help="select: notebook 02's grid of the study rules and Adam's lr search; 06; 07")
    p.add_argument("--store", default=sweep.DEFAULT_STORAGE)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--dry-run", action="store_true", help="print what would be trained")
    a = p.parse_args(argv)
    for what in a.what:
        if what == "select":
            cfgs = grid_configs() + adam_search_configs()
        elif what == "05":     # notebook 05: trains the trials here, returns the selected configs' reruns
            cfgs = tuning.trials_then_rerun_configs(storage=a.store, workers=a.workers, dry_run=a.dry_run)
        elif what == "08":     # notebook 08: fixed published hyper-parameters, no lr selection
            cfgs = cnn_configs()
        else:
            lrs = chosen_lrs()
            print(f"[plans] lrs: {lrs}", flush=True)
            cfgs = long_configs(lrs) if what == "06" else size_configs(lrs)
        stored = results.stored_keys(results.RUNS_DIR)
        todo = [c for c in cfgs if c.key not in stored]
        print(f"[plans] {what}: {len(cfgs)} runs, {len(todo)} to train", flush=True)
        if a.dry_run or not todo:
            continue
        sweep.run_grid(cfgs, storage=a.store, workers=a.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def images(n_train, val_size: int = 5000) -> int:
    """Training images of a run whose ``n_train`` is ``n_train`` (None or NaN: all of the split)."""
    return int(TRAIN_SIZE - val_size) if n_train is None or pd.isna(n_train) else int(n_train)
