"""Published reference numbers: Crowded Valley's one-shot runs of DeepOBS's ``fmnist_2c2d``.

    df = load_published()                  # results/published/crowded_valley_fmnist_2c2d.csv
    df[df.rule == "adam"].set_index("epoch").published_test_acc

The CSV holds, per rule (``sgd``, ``momentum``, ``adam``) and epoch (0 = before training, then
1..100), the test accuracy of Schmidt, Schneider & Hennig (2021), "Descending through a Crowded
Valley -- Benchmarking Deep Learning Optimizers" (ICML), one-shot defaults, constant schedule,
batch size 128: mean, min and max over the seeds found, their number and the results directory
they were read from. How it was extracted: ``results/published/README.md``.

:data:`DEEPOBS_FMNIST_2C2D` records DeepOBS's definition of the test problem, each entry with the
file it was read from (repository ``fsschneider/DeepOBS``, at the commit shown). The published
runs were made with DeepOBS's TensorFlow code (their JSON names ``tf.train`` optimizers and their
``use_locking`` argument), so the TensorFlow files are the reference; the PyTorch port is cited
where it says the same or differs.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["PUBLISHED_CSV", "COLUMNS", "RULES", "DEEPOBS_FMNIST_2C2D", "PublishedDataError", "load_published"]

PUBLISHED_CSV = Path(__file__).resolve().parents[2] / "results" / "published" / "crowded_valley_fmnist_2c2d.csv"
COLUMNS = ("rule", "epoch", "published_test_acc", "published_min", "published_max", "n_seeds", "source")
RULES = ("sgd", "momentum", "adam")

_DEEPOBS = "fsschneider/DeepOBS"
_TF_2C2D = f"{_DEEPOBS}@7a88c3f00d048a22b178da972c92cd56b47fd687:deepobs/tensorflow/testproblems/_2c2d.py"
_TF_PROBLEM = f"{_DEEPOBS}@3ec7b5c13ed58f7f6828ce619d3ecc32e6f2c2fb:deepobs/tensorflow/testproblems/fmnist_2c2d.py"
_TF_DATA = f"{_DEEPOBS}@ee79d9f1f9510bfeeb706e53f59daa3d8a9ffa67:deepobs/tensorflow/datasets/fmnist.py"
_PT_NET = f"{_DEEPOBS}@5be88e2a147a32842a8593064c1b9b7c364087b9:deepobs/pytorch/testproblems/testproblems_modules.py"
_PT_UTILS = f"{_DEEPOBS}@9787fbdd89155db15b0de8fffcb4d0a27f355356:deepobs/pytorch/testproblems/testproblems_utils.py"
_PT_DATA = f"{_DEEPOBS}@9787fbdd89155db15b0de8fffcb4d0a27f355356:deepobs/pytorch/datasets/fmnist.py"
_PT_SPLIT = f"{_DEEPOBS}@ee79d9f1f9510bfeeb706e53f59daa3d8a9ffa67:deepobs/pytorch/datasets/dataset.py"
_CONFIG = f"{_DEEPOBS}@06e33ed4525bfe0b891f8c9c920ee2929309c7d0:deepobs/config.py"
_RESULTS = ("SirRob1997/Crowded-Valley---Results@47ce79cad0863a189d825e732f43928666cf5429:"
            "results/oneshot/none/fmnist_2c2d/")

#: DeepOBS's fmnist_2c2d as used by the published runs; every entry names its source file.
DEEPOBS_FMNIST_2C2D = {
    "architecture": {
        "value": ("conv 32@5x5 stride 1 'same' + ReLU -> max-pool 2x2 stride 2 'same' -> "
                  "conv 64@5x5 stride 1 'same' + ReLU -> max-pool 2x2 stride 2 'same' -> "
                  "reshape 7*7*64 -> dense 1024 + ReLU -> dense 10 (logits); softmax cross-entropy"),
        "source": [_TF_2C2D, _TF_PROBLEM, _PT_NET],
    },
    "init": {
        "value": {
            "conv1": {"weight": "truncated normal, mean 0, std 0.05 (cut at 2 std)", "bias": "constant 0.05"},
            "conv2": {"weight": "truncated normal, mean 0, std 0.05 (cut at 2 std)", "bias": "constant 0.05"},
            "dense1": {"weight": "truncated normal, mean 0, std 0.05 (cut at 2 std)", "bias": "constant 0.05"},
            "dense2": {"weight": "truncated normal, mean 0, std 0.05 (cut at 2 std)", "bias": "constant 0.05"},
        },
        "source": [_TF_2C2D, _PT_NET, _PT_UTILS],
    },
    "regularisation": {
        "value": "none (weight_decay is ignored with a warning; the published runs log l2_reg null)",
        "source": [_TF_PROBLEM, _RESULTS],
    },
    "input_scaling": {
        "value": "uint8 / 255 only, no mean/std normalisation (PyTorch port: transforms.ToTensor() only)",
        "source": [_TF_DATA, _PT_DATA],
    },
    "batch_size": {"value": 128, "source": [_CONFIG, _RESULTS]},
    "epochs": {"value": 100, "source": [_CONFIG, _RESULTS]},
    "drop_remainder": {
        "value": ("every split is batched with drop_remainder=True: 390 steps of 128 per epoch on the "
                  "50,000 training images; the test accuracy is over the first 78 x 128 = 9,984 of "
                  "the 10,000 test images (unshuffled)"),
        "source": [_TF_DATA],
    },
    "train_size": {"value": 50_000, "source": [_TF_DATA]},
    "valid": {
        "value": ("the FIRST 10,000 images of the training file (data.take(10000), no shuffling, the "
                  "same for every seed); PyTorch port instead: a random 10,000 (random.shuffle of the "
                  "indices)"),
        "size": 10_000,
        "source": [_TF_DATA, _PT_SPLIT],
    },
    "train_eval": {
        "value": ("the first 10000 // 128 = 78 batches of the shuffled training split (9,984 images), "
                  "evaluated after each epoch; this is what DeepOBS logs as train_losses/train_accuracies"),
        "size": 9_984,
        "source": [_TF_DATA],
    },
    "train_shuffle": {"value": "tf.data shuffle with buffer_size=20000 (not a full permutation)",
                      "source": [_TF_DATA]},
    "logging": {"value": "epoch 0 (before training) then after each of epochs 1..100: 101 values per metric",
                "source": [_RESULTS]},
}


class PublishedDataError(ValueError):
    """The published-results CSV is missing or not in the expected form."""


def load_published(path=PUBLISHED_CSV) -> pd.DataFrame:
    """The published per-epoch test accuracies as a DataFrame with :data:`COLUMNS`, validated.

    Raises :class:`PublishedDataError` naming ``path`` when the file is missing, lacks a column,
    or holds impossible values (accuracies outside [0, 1], min > mean > max, n_seeds < 1)."""
    path = Path(path)
    if not path.is_file():
        raise PublishedDataError(f"{path}: published results file not found (see results/published/README.md)")
    df = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise PublishedDataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    df = df[list(COLUMNS)].copy()
    if df.empty:
        raise PublishedDataError(f"{path}: no rows")
    if df[list(COLUMNS)].isna().any().any():
        raise PublishedDataError(f"{path}: empty cells")
    df["epoch"] = df["epoch"].astype(int)
    df["n_seeds"] = df["n_seeds"].astype(int)
    acc = df[["published_test_acc", "published_min", "published_max"]]
    if not ((acc >= 0) & (acc <= 1)).all().all():
        raise PublishedDataError(f"{path}: accuracies outside [0, 1]")
    tol = 1e-9
    if ((df.published_min > df.published_test_acc + tol) | (df.published_test_acc > df.published_max + tol)).any():
        raise PublishedDataError(f"{path}: a row has min > mean or mean > max")
    if (df.n_seeds < 1).any():
        raise PublishedDataError(f"{path}: n_seeds < 1")
    if df.duplicated(["rule", "epoch"]).any():
        raise PublishedDataError(f"{path}: duplicate (rule, epoch) rows")
    return df.sort_values(["rule", "epoch"], ignore_index=True)
