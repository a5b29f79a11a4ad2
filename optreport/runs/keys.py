"""What makes two training runs the same: a run's configuration and its key.

A run's key is the hash of everything that changes its numbers:

* the configuration (:class:`RunConfig`: model, rule, hyper-parameters, seed, epochs, batch
  size, validation split, training-subset size, lr schedule, step cap, data protocol);
* how it is executed: torch threads, the compiled update step, flushing of subnormal floats,
  the execution mode;
* the code: an explicit integer version of the update rule (``optimizers.<Rule>.version``), of
  the trainer (``engine.train.TRAINER_VERSION``), of the model (``engine.models.MODEL_VERSIONS``)
  and of the data pipeline (``engine.data.DATA_VERSION``), and torch's version.

Versions are explicit rather than hashes of source code, so a refactor that keeps the numbers
keeps every stored run, and a change that alters them bumps exactly one version and re-runs
exactly the runs it affects. tests/test_golden.py holds a short golden trajectory per rule,
model, trainer and data pipeline and fails when behaviour changes without a version bump.

A field added after runs were stored enters the key only when it differs from its default, so
every earlier run keeps its key: ``data_protocol`` ("report", the default, is not hashed;
"deepobs" is, with the deepobs pipeline's own version ``versions["data_deepobs"]``).
tests/test_run_keys_stable.py recomputes the key of every stored run from its stored config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import torch

import optimizers
from optreport.engine.data import DATA_VERSION, DEEPOBS_DATA_VERSION, DEEPOBS_VAL_SIZE, PROTOCOLS, TRAIN_SIZE
from optreport.engine.models import MODEL_VERSIONS, MODELS
from optreport.engine.train import SCHEDULES, TRAINER_VERSION

__all__ = ["RunConfig", "code_versions", "canonical", "validate", "MODES", "DEFAULT_ONLY_IF_SET"]

#: execution modes of the trainer whose numbers differ. Seeds trained stacked (engine.train.
#: train_stacked, one torch thread) give each run's "single" numbers bit for bit
#: (tests/test_train_stacked.py), so stacking is not a mode of its own: it changes no key.
MODES = ("single",)
#: fields hashed only when they differ from this value (added after runs were stored: the keys
#: of those runs must not change)
DEFAULT_ONLY_IF_SET = {"data_protocol": "report", "eval_size": None}


def canonical(v):
    """Canonical JSON-able form of a hyper-parameter value (1 and 1.0 give the same key)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        return {str(k): canonical(x) for k, x in sorted(v.items())}
    raise TypeError(f"hyper-parameter value {v!r} is not JSON-able")


def _rule_version(rule: str) -> int:
    finder = getattr(optimizers, "rule_version", None)
    if finder is not None:
        return int(finder(rule))
    return int(getattr(optimizers.OPTIMIZERS[rule], "version", 1))


def code_versions(rule: str, model: str) -> dict:
    """The versions of the code a run of ``rule`` on ``model`` executes (they enter its key)."""
    return {"rule": _rule_version(rule), "trainer": TRAINER_VERSION, "model": MODEL_VERSIONS[model],
            "data": DATA_VERSION, "torch": torch.__version__}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One training run. Every field enters the key, with the code versions."""
    model: str = "mlp"               # name in engine.models.MODELS
    rule: str                        # name in optimizers.OPTIMIZERS
    hparams: dict                    # the rule's keyword arguments, including lr
    seed: int = 0                    # model init, batch order
    epochs: int                      # passes over the training examples
    batch_size: int = 64             # examples per step
    val_size: int = 5000             # training images held out for validation
    split_seed: int = 0              # seed of the validation split
    max_steps: int | None = None     # cap on optimizer steps (quick runs, tests)
    n_train: int | None = None       # train on a nested subset of this size (None: all)
    schedule: str = "constant"       # lr schedule: constant | cosine (to 0 over the run)
    threads: int = 1                 # torch intra-op threads (results differ between 1 and 2)
    compile_step: bool = True        # the rule's compiled update step
    flush_denormal: bool = True      # subnormal floats flushed to zero while training
    mode: str = "single"             # execution mode (see MODES)
    data_protocol: str = "report"    # data protocol: report | deepobs (engine.data; keyed if not report)
    eval_size: int | None = None     # evaluate on the first N validation and test images (quick runs; keyed if set)

    def __hash__(self):
        return hash(self.key)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hparams"] = canonical(dict(self.hparams))
        return d

    @property
    def lr(self):
        return self.hparams.get("lr")

    def keyed(self) -> dict:
        """The configuration with the code versions: exactly what the key hashes. A field of
        :data:`DEFAULT_ONLY_IF_SET` at its default is left out (the keys of runs stored before it
        existed stay the same); the deepobs data protocol adds its pipeline's version."""
        d = self.as_dict()
        for name, default in DEFAULT_ONLY_IF_SET.items():
            if d[name] == default:
                del d[name]
        versions = code_versions(self.rule, self.model)
        if self.data_protocol == "deepobs":
            versions["data_deepobs"] = DEEPOBS_DATA_VERSION
        return {**d, "versions": versions}

    @property
    def key(self) -> str:
        text = json.dumps(self.keyed(), sort_keys=True, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def train_kwargs(self) -> dict:
        """Keyword arguments of engine.train.train for this run (data excepted)."""
        return dict(model=self.model, rule=self.rule, hparams=dict(self.hparams), epochs=self.epochs,
                    batch_size=self.batch_size, seed=self.seed, max_steps=self.max_steps,
                    threads=self.threads, compile_step=self.compile_step,
                    flush_denormal=self.flush_denormal, schedule=self.schedule, n_train=self.n_train,
                    data_protocol=self.data_protocol, eval_size=self.eval_size)


def _int(name, v, lo, hi=None, *, optional=False):
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        bound = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"Invalid {name}: {v!r} (must be {bound}{' or None' if optional else ''})")


def validate(cfg: RunConfig) -> None:
    """Raise ValueError naming the offending parameter if ``cfg`` cannot run; nothing else happens.

    The rule's own checks run by building it on a dummy parameter, so an invalid hyper-parameter
    gets torch.optim's message (``Invalid learning rate: -0.1``)."""
    if cfg.model not in MODELS:
        raise ValueError(f"Invalid model: {cfg.model!r} (choose from {', '.join(MODELS)})")
    if cfg.rule not in optimizers.OPTIMIZERS:
        raise ValueError(f"Invalid rule: {cfg.rule!r} (choose from {', '.join(optimizers.OPTIMIZERS)})")
    _int("epochs", cfg.epochs, 1)
    _int("batch_size", cfg.batch_size, 1)
    _int("seed", cfg.seed, 0)
    _int("split_seed", cfg.split_seed, 0)
    _int("val_size", cfg.val_size, 0, TRAIN_SIZE - 1)
    _int("max_steps", cfg.max_steps, 1, optional=True)
    _int("n_train", cfg.n_train, 1, TRAIN_SIZE - cfg.val_size, optional=True)
    _int("threads", cfg.threads, 1)
    _int("eval_size", cfg.eval_size, 1, optional=True)
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"Invalid schedule: {cfg.schedule!r} (choose from {', '.join(SCHEDULES)})")
    if cfg.mode not in MODES:
        raise ValueError(f"Invalid mode: {cfg.mode!r} (choose from {', '.join(MODES)})")
    if cfg.data_protocol not in PROTOCOLS:
        raise ValueError(f"Invalid data_protocol: {cfg.data_protocol!r} (choose from {', '.join(PROTOCOLS)})")
    if cfg.data_protocol == "deepobs":
        # DeepOBS's split is fixed (the first 10,000 training images): nothing else to choose
        if cfg.val_size != DEEPOBS_VAL_SIZE:
            raise ValueError(f"Invalid val_size: {cfg.val_size!r} (the deepobs data protocol holds out the first "
                             f"{DEEPOBS_VAL_SIZE} training images: val_size must be {DEEPOBS_VAL_SIZE})")
        if cfg.split_seed != 0:
            raise ValueError(f"Invalid split_seed: {cfg.split_seed!r} (the deepobs data protocol's split is not "
                             "random: split_seed must be 0)")
    for name in ("compile_step", "flush_denormal"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"Invalid {name}: {getattr(cfg, name)!r} (must be true or false)")
    hp = dict(cfg.hparams)
    if "lr" not in hp:
        raise ValueError(f"Invalid hparams for {cfg.rule}: no lr")
    for k, v in hp.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"Invalid {k}: {v} (must be finite)")
    try:
        canonical(hp)
        optimizers.OPTIMIZERS[cfg.rule]([torch.zeros(2, requires_grad=True)], **hp)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid hparams for {cfg.rule} {hp}: {e}") from None
