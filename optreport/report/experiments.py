"""The grids the notebooks share, defined once.

Notebook 02 trains every rule at seed 000's three learning rates over several seeds; notebooks
03 and 04 read the same runs back (same configurations, so nothing is retrained) and 05 tunes
the same rules. Each notebook's ``parameters`` cell takes its grid from here, so "must equal
notebook 02's" holds by construction:

    from optreport.report import experiments as ex
    RULES, LRS, SEEDS, EPOCHS, EVAL_SIZE = ex.RULES, ex.LRS, ex.SEEDS, ex.EPOCHS, ex.EVAL_SIZE
    if QUICK:
        SEEDS, EPOCHS, MAX_STEPS, EVAL_SIZE = ex.QUICK_SEEDS, ex.QUICK_EPOCHS, ex.QUICK_MAX_STEPS, ex.QUICK_EVAL_SIZE

A notebook may still override a value in its parameters cell (papermill can inject one); it then
no longer reuses 02's runs for that part of its grid.
"""
from __future__ import annotations

from optimizers import OPTIMIZERS
from optreport.runs import sweep

__all__ = ["RULES", "NOVEL_RULES", "NOVEL_SEEDS", "BASELINES", "ABLATION_SEEDS", "comparison_configs",
           "MOMENTUM", "matched_momentum_lr", "LRS", "SEEDS", "EPOCHS",
           "BATCH_SIZE", "MAX_STEPS", "EVAL_SIZE", "QUICK_SEEDS", "QUICK_EPOCHS", "QUICK_MAX_STEPS", "QUICK_EVAL_SIZE",
           "ALPHA", "SEC_PER_EPOCH"]

# ----------------------------------------------------------------------------- notebook 02's grid
RULES = list(OPTIMIZERS)            # every update rule of the report, in the catalogue's order
NOVEL_RULES = ["gravity", "cosine"]  # seed 000's two proposals (Momentum is their baseline)
LRS = [0.01, 0.1, 0.2]              # seed 000's learning rates, used for every rule
SEEDS = [0, 1, 2, 3, 4]             # model init and batch order; paired across rules
EPOCHS = 15                         # passes over the 55,000 training images
BATCH_SIZE = 64                     # examples per step (the PyTorch quickstart's)
MAX_STEPS = None                    # cap on optimizer steps per run (None: no cap)
EVAL_SIZE = None                    # validation and test images evaluated after each epoch (None: all)

# the novel rules and their three baselines (notebook 03) get 10 seeds, as DeepOBS and Crowded
# Valley rerun every final setting: SGD at the same lr (their special case), Momentum at the same
# lr (seed 000's baseline) and Momentum at the matched effective step lr * (1 - MOMENTUM)
NOVEL_SEEDS = list(range(10))
MOMENTUM = 0.9                      # Momentum's default coefficient (torch's and seed 000's)


def matched_momentum_lr(lr: float) -> float:
    """Momentum's lr whose effective step lr / (1 - MOMENTUM) equals a plain step of ``lr``."""
    return round(lr * (1 - MOMENTUM), 12)


BASELINES = ["sgd", "momentum"]      # the novel rules' baselines (Momentum also at the matched lr)
ABLATION_SEEDS = [0, 1, 2]          # notebook 03's ablation variants (their verdicts say what 3 seeds detect)


def comparison_configs(quick: bool = False) -> list:
    """Every run the report's comparisons read (notebooks 02 and 03 declare their families on the
    same runs, so a pair gets the same verdict in both): notebook 02's grid, and the novel rules
    with their baselines at NOVEL_SEEDS, Momentum also at the matched lrs."""
    seeds, novel_seeds, epochs, steps, n_eval = (
        (QUICK_SEEDS, QUICK_SEEDS, QUICK_EPOCHS, QUICK_MAX_STEPS, QUICK_EVAL_SIZE) if quick
        else (SEEDS, NOVEL_SEEDS, EPOCHS, MAX_STEPS, EVAL_SIZE))
    common = dict(epochs=epochs, batch_size=BATCH_SIZE, max_steps=steps, eval_size=n_eval)
    cfgs = (sweep.grid(RULES, LRS, seeds, **common)
            + sweep.grid(NOVEL_RULES + BASELINES, LRS, novel_seeds, **common)
            + sweep.grid(["momentum"], [matched_momentum_lr(lr) for lr in LRS], novel_seeds, **common))
    return list({c.key: c for c in cfgs}.values())


# the same grid in quick mode (tests): every rule and lr kept, so tables keep their shape
QUICK_SEEDS = [0, 1]
QUICK_EPOCHS = 1
QUICK_MAX_STEPS = 30
QUICK_EVAL_SIZE = 500               # validation and test images evaluated (a quick run's numbers are meaningless)

# ----------------------------------------------------------------------------- shared settings
ALPHA = 0.05                        # significance level after Holm correction (02, 03)
SEC_PER_EPOCH = 3.5                 # s per mlp epoch per worker process, incl. evaluation (planning: 04, 05)
