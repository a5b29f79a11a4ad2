"""One trainer for every update rule: preloaded tensors, no DataLoader, a JSON-ready record.

    from optreport.engine.train import train
    rec = train("mlp", "adam", {"lr": 1e-3}, epochs=2, seed=0)
    rec["epochs"][-1]["test_acc"], rec["diverged"]

Speed (see benchmarks/bench_trainer.py for the measurements). The whole training split sits in
memory as one tensor; each epoch draws a permutation from a seeded torch.Generator and a batch
is an index into it. Per step the loop does no host synchronisation: the batch loss and the
number of correct predictions are written into preallocated tensors and read once per epoch,
and divergence is checked every ``check_every`` steps (one sync per check). The MLPs (Linear/ReLU
stacks) take their forward and backward from engine.fastpath: the calls autograd would make, in
its layouts, with no graph and no fresh tensors per step -- the same numbers, bit for bit.
Other models use autograd and release gradients with ``zero_grad(set_to_none=True)``.
``torch.compile`` of the model is available (``compile=True``) but off by default: for this
small MLP it did not pay on our 2-core CPU; if compiling fails the trainer falls back to eager.

Denormals. Adam-like state of units that stop receiving gradient (dead ReLUs) decays
geometrically into the subnormal range, where CPU arithmetic is 10x slower or worse (measured:
an Adam step on a 512x784 tensor of subnormal state took 16.7 ms instead of 1.3 ms). The
trainer therefore sets ``torch.set_flush_denormal(True)`` while it trains (``flush_denormal``;
subnormals, below 1.2e-38 in float32, become 0) and records the setting in the run's config.

Divergence. A non-finite training loss ends the run at once (within ``check_every`` steps; the
steps after the first non-finite loss are dropped from ``step_losses``): the epoch is recorded
with what it has, ``diverged`` is True and ``diverged_epoch`` its number. Non-finite floats
anywhere in the record are stored as None (JSON null), so the record is strict JSON.

Checkpoints. With ``checkpoint=PATH`` the trainer saves everything the rest of the run depends
on (weights, the rule's state and param groups, the batch-order generator, torch's RNG, the
record so far) at the end of an epoch once ``checkpoint_every`` seconds have passed since the
last save, and a later call with the same path and the same run resumes from it: the record is
the one an uninterrupted run gives, bit for bit, timings aside (tests/test_checkpoint.py), plus
``resumed_after`` (the epochs after which it resumed). A checkpoint of another run (its config
differs) or one that cannot be read is ignored with a warning. The caller deletes the file once
the record is stored (runs.sweep does).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from optimizers import OPTIMIZERS, RuleOptimizer
from optreport.engine.data import DEEPOBS_VAL_SIZE, PROTOCOLS, _atomic_write, load_fashion_mnist
from optreport.engine.fastpath import LinearStack
from optreport.engine.models import MODELS, build_model
from optreport.engine.stacked import StackedLinearStack, stacked_param_groups

__all__ = ["TRAINER_VERSION", "SCHEDULES", "train", "train_stacked", "stackable", "train_subset",
           "scheduled_lr", "evaluate", "json_safe",
           "make_optimizer", "has_compiled_step", "denormals_flushed"]

#: Version of the training loop (batch order, loss, evaluation, schedules, divergence rule). It
#: enters every run's key: bump it when a change alters a run's numbers (tests/test_golden.py
#: fails until you do); a refactor that keeps them keeps every stored run.
TRAINER_VERSION = 1
SCHEDULES = ("constant", "cosine")   # learning-rate schedules over the run's steps
SUBSET_SEED = 20_260_101             # seeds the permutation whose prefixes are the training subsets

CHECKPOINT_EVERY = 60.0   # seconds of training between checkpoints (when a checkpoint path is given)

EVAL_BATCH = 5000      # examples per forward pass when evaluating (memory, not results)
CHECK_EVERY = 50       # steps between divergence checks (each check is one host sync)


def json_safe(x):
    """Replace non-finite floats by None, recursively (strict JSON has no NaN/inf)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


@torch.inference_mode()
def evaluate(model, x, y, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    for i in range(0, len(y), batch_size):
        out = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(len(y), 1)
    return float(loss_sum) / n, int(correct) / n


@contextlib.contextmanager
def _num_threads(n):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def denormals_flushed(on: bool = True):
    """While inside: subnormal floats are flushed to zero (``on``; see the module docstring);
    afterwards torch's default (no flushing) again."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)     # torch's default (there is no getter)


def has_compiled_step(rule) -> bool:
    """Whether rule ``rule`` has a compiled path (``compiled=True``: its formula through
    torch.compile; every rule of optimizers.OPTIMIZERS has one)."""
    cls = OPTIMIZERS.get(rule)
    return isinstance(cls, type) and issubclass(cls, RuleOptimizer) and cls.formula is not None


def train_subset(n: int, n_train: int | None) -> torch.Tensor | None:
    """Indices of the first ``n_train`` examples of a fixed permutation of the ``n`` training
    examples (None: all of them). Subsets are nested: the first 2,037 of the examples are the
    same whichever larger size is asked for."""
    if n_train is None or n_train >= n:
        return None
    if n_train < 1:
        raise ValueError(f"Invalid n_train: {n_train} (must be at least 1)")
    return torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))[:n_train]


def scheduled_lr(lr0: float, schedule: str, step: int, total: int) -> float:
    """Learning rate of step ``step`` (0-based) of ``total``: ``lr0`` ("constant"), or
    ``lr0 * (1 + cos(pi * step / total)) / 2`` ("cosine", Loshchilov & Hutter 2017, no restarts,
    decaying to 0 at the end of the run)."""
    if schedule == "constant":
        return lr0
    if schedule == "cosine":
        return lr0 * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    raise ValueError(f"Invalid schedule: {schedule!r} (choose from {', '.join(SCHEDULES)})")


def make_optimizer(rule: str, params, hparams: dict | None = None, compile_step: bool = True):
    """``OPTIMIZERS[rule](params, **hparams)`` as training uses it: with the rule's compiled
    step where it has one (``compile_step``; an explicit ``compiled`` in ``hparams`` wins)."""
    if rule not in OPTIMIZERS:
        raise ValueError(f"Unknown rule: {rule!r} (choose from {', '.join(OPTIMIZERS)})")
    hparams = dict(hparams or {})
    if compile_step and has_compiled_step(rule):
        hparams.setdefault("compiled", True)
    return OPTIMIZERS[rule](params, **hparams)


def _compiled(model):
    """torch.compile(model) that falls back to the eager model if compiling fails."""
    try:
        compiled = torch.compile(model)
    except Exception:
        return model
    state = {"fn": compiled}

    def forward(x):
        try:
            return state["fn"](x)
        except Exception:
            if state["fn"] is model:
                raise
            state["fn"] = model     # e.g. no C compiler: run eager from now on
            return model(x)
    return forward


def _comparable(config: dict) -> dict:
    """The run's config as a checkpoint stores and compares it: plain JSON values (NaN as None,
    torch's version string as a str)."""
    return json.loads(json.dumps(json_safe(config)))


def load_checkpoint(path, config: dict) -> dict | None:
    """The state saved at ``path`` for a run of ``config`` (None: no file; a file that cannot be
    read, or that belongs to another run, is ignored with a RuntimeWarning)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as error:          # truncated or corrupt: start the run again
        warnings.warn(f"Ignoring checkpoint {path.name}: cannot read it ({type(error).__name__}); "
                      "the run starts from epoch 1", RuntimeWarning, stacklevel=3)
        return None
    if not isinstance(state, dict) or state.get("config") != _comparable(config):
        warnings.warn(f"Ignoring checkpoint {path.name}: it belongs to another run configuration; "
                      "the run starts from epoch 1", RuntimeWarning, stacklevel=3)
        return None
    return state


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (data's temporary-file-then-rename writer: a reader
    sees the old file or the new one)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write(Path(path), buf.getvalue())


def train(model: str = "mlp", rule: str = "sgd", hparams: dict | None = None, *, data=None,
          epochs: int = 1, batch_size: int = 64, seed: int = 0, max_steps: int | None = None,
          callback=None, progress: bool = False, threads: int | None = None,
          compile: bool = False, compile_step: bool = True, check_every: int = CHECK_EVERY,
          flush_denormal: bool = True, schedule: str = "constant", n_train: int | None = None,
          data_protocol: str = "report", eval_size: int | None = None, fast_path: bool = True,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: float = CHECKPOINT_EVERY) -> dict:
    """Train ``model`` with update rule ``rule`` and return a JSON-serialisable record.

    model:       name in models.MODELS.
    rule:        name in optimizers.OPTIMIZERS.
    hparams:     keyword arguments of the rule, including ``lr`` (missing ones: rule defaults).
    data:        a data.FashionMNIST (default: data.load_fashion_mnist() with ``data_protocol``;
                 for "deepobs" its validation split of data.DEEPOBS_VAL_SIZE images).
    epochs:      passes over the training split; the last batch of an epoch may be smaller
                 (like DataLoader's default drop_last=False), except under the "deepobs"
                 protocol, which drops it (DeepOBS's ``drop_remainder=True``: 390 steps of 128
                 on its 50,000 training images).
    batch_size:  examples per step.
    seed:        seeds the model's initial weights, the batch order and any randomness of the
                 rule (torch's global RNG is forked, so the caller's state is untouched).
    max_steps:   stop after this many optimizer steps in total (the partial epoch is recorded).
    callback:    ``callback(step, model, optimizer, loss)`` after every optimizer step; ``step``
                 counts steps taken (1-based), ``loss`` is the batch loss tensor. None: no cost.
    progress:    show a tqdm bar over steps.
    threads:     torch intra-op threads during the run (None: leave as is).
    compile:     torch.compile the model (falls back to eager on failure).
    compile_step: use the rule's compiled update (``compiled=True``) where it has one: all 11
                 rules of optimizers.OPTIMIZERS do (the rule's one formula fused by torch.compile,
                 up to 2x faster a step; falls back to eager on failure). Results agree with the
                 uncompiled step to rounding, not bitwise.
    check_every: steps between divergence checks.
    flush_denormal: flush subnormal floats to zero while training (see module docstring); the
                 process's setting is turned off again afterwards (torch's default).
    schedule:    "constant" (the lr of ``hparams``) or "cosine" (decayed per step to 0 over the
                 run's steps: ``epochs`` epochs, or ``max_steps`` if smaller).
    n_train:     train on this many examples of the training split (a fixed prefix of a seeded
                 permutation: nested subsets, see :func:`train_subset`); None: all of them.
    data_protocol: "report" or "deepobs" (see optreport.engine.data); ``data`` must have been
                 loaded with the same protocol (and, for deepobs, the same batch size). Echoed
                 in the record's config only when it is not "report".
    fast_path:   train a Linear/ReLU stack (mlp, small_mlp) with the hand-written forward and
                 backward of engine.fastpath (the same numbers as autograd, bit for bit; faster);
                 False, or any other model, or ``compile``: autograd.
    eval_size:   evaluate on the first ``eval_size`` validation and test images only (quick runs
                 of a costly model); None: all of them. Echoed in the record's config when set.
    checkpoint:  a file to resume this run from, if it holds a checkpoint of the same config, and
                 to save checkpoints to (see the module docstring); None: none.
    checkpoint_every: seconds since the last save after which an epoch's end saves one (0: every
                 epoch but the last).

    Record: ``config`` (echo), ``epochs`` (one dict per epoch: epoch, train_loss, train_acc
    -- plain means over the epoch's batches --, val_loss, val_acc, test_loss, test_acc,
    train_seconds -- the training loop of the epoch, no evaluation --, step_seconds -- the part
    spent in optimizer.step()), ``step_losses`` (loss of every step), ``diverged``,
    ``diverged_epoch``, ``steps``, ``seconds`` (total wall time including evaluation, summed over
    the resumed parts), and ``resumed_after`` when the run resumed from a checkpoint.
    """
    return _train_group(model, rule, hparams, seeds=[seed], checkpoints=[checkpoint], data=data, epochs=epochs,
                        batch_size=batch_size, max_steps=max_steps, callback=callback, progress=progress,
                        threads=threads, compile=compile, compile_step=compile_step, check_every=check_every,
                        flush_denormal=flush_denormal, schedule=schedule, n_train=n_train,
                        data_protocol=data_protocol, eval_size=eval_size, fast_path=fast_path,
                        checkpoint_every=checkpoint_every)[0]


def train_stacked(model: str = "mlp", rule: str = "sgd", hparams: dict | None = None, *, seeds,
                  checkpoints=None, callback=None, **kwargs) -> list[dict]:
    """Train one configuration with several ``seeds`` at once; one record per seed, each the record
    :func:`train` gives for that seed, bit for bit (timings aside) when it runs with one torch thread.

    The models are stacked (engine.stacked) when that is possible: a Linear/ReLU model
    (mlp, small_mlp) on the fast path, and every checkpoint (if any) at the same step. Otherwise
    the seeds are trained one after another with :func:`train`. Each model keeps its own batch
    order (its seed's generator), its own divergence (a model whose loss turns non-finite is
    evaluated at that point and its record ends there, as alone; it leaves the stack at the end of
    the epoch) and its own checkpoint file (``checkpoints``: one path or None per seed; the files are
    those :func:`train` writes and reads, so a run can resume stacked or alone).

    With more than one torch thread the stacked multiplies may round differently from a single
    model's (see engine.stacked); the report's workers use one.

    Timings: the stack's wall time is shared equally among the models trained in it
    (``train_seconds``, ``step_seconds`` and ``seconds`` are the stack's divided by the number of
    models), and a stacked record says ``stacked``: the number of models it started with.
    ``callback(step, nets, optimizer, losses)``: after every step, the stacked models (those of
    the current stack), the optimizer over all of them and their batch losses (a 1-D tensor).
    Every other keyword: as :func:`train`.
    """
    seeds = [int(s) for s in seeds]
    return _train_group(model, rule, hparams, seeds=seeds,
                        checkpoints=[None] * len(seeds) if checkpoints is None else list(checkpoints),
                        callback=callback, **kwargs)


def stackable(model: str, *, fast_path: bool = True, compile: bool = False) -> bool:
    """Whether runs of ``model`` can be trained stacked (:func:`train_stacked`)."""
    if not fast_path or compile or model not in MODELS:
        return False
    return LinearStack.of(build_model(model, 0)) is not None


class _Member:
    """One model of a group trained together: its seed, record so far and batch generator."""

    def __init__(self, seed: int, config: dict, checkpoint):
        self.seed, self.config, self.checkpoint = seed, config, checkpoint
        self.gen = torch.Generator().manual_seed(seed)
        self.net = None
        self.epochs, self.step_losses, self.resumed_after = [], [], []
        self.seconds_before, self.seconds = 0.0, None
        self.diverged, self.diverged_epoch, self.steps = False, None, 0
        self.rng = None        # torch's RNG state its checkpoint records when stacked (none of it is used)

    def record(self, stacked: int) -> dict:
        rec = dict(config=self.config, epochs=self.epochs, step_losses=self.step_losses,
                   diverged=self.diverged, diverged_epoch=self.diverged_epoch, steps=self.steps,
                   seconds=self.seconds)
        if stacked > 1:
            rec["stacked"] = stacked
        if self.resumed_after:
            rec["resumed_after"] = self.resumed_after
        return json_safe(rec)


def _member_rng(m: _Member) -> torch.Tensor:
    """The state of torch's RNG a run of ``m`` alone would checkpoint: seeded with its seed (the
    training draws nothing from it), or the state its own checkpoint held."""
    return m.rng if m.rng is not None else torch.Generator().manual_seed(m.seed).get_state()


def _single_view(rule, net, optimizer, hparams, compile_step):
    """An optimizer of ``rule`` over ``net``'s parameters alone that shares ``optimizer``'s state of
    them (and its current lr): what training ``net`` alone would hold, for its checkpoint."""
    single = make_optimizer(rule, net.parameters(), hparams, compile_step)
    for p in net.parameters():
        if p in optimizer.state:
            single.state[p] = optimizer.state[p]
    single.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]
    return single


def _load_member_state(rule, net, optimizer, saved: dict, hparams, compile_step):
    """Load a single run's optimizer state (its checkpoint) into the stacked ``optimizer``."""
    single = make_optimizer(rule, net.parameters(), hparams, compile_step)
    single.load_state_dict(saved)
    for p in net.parameters():
        if p in single.state:
            optimizer.state[p] = single.state[p]


def _restack(rule, nets, optimizer, hparams, compile_step):
    """A new stack and optimizer of ``nets`` (models left the stack), carrying their weights and state."""
    before = [list(net.parameters()) for net in nets]
    stack = StackedLinearStack.of(nets)          # copies the weights, rebinds the parameters
    new = make_optimizer(rule, stacked_param_groups(rule, nets), hparams, compile_step)
    for old_params, net in zip(before, nets):
        for old, p in zip(old_params, net.parameters()):
            if old in optimizer.state:
                new.state[p] = optimizer.state[old]
    return stack, new


def _train_group(model, rule, hparams, *, seeds, checkpoints, data=None, epochs=1, batch_size=64,
                 max_steps=None, callback=None, progress=False, threads=None, compile=False, compile_step=True,
                 check_every=CHECK_EVERY, flush_denormal=True, schedule="constant", n_train=None,
                 data_protocol="report", eval_size=None, fast_path=True,
                 checkpoint_every=CHECKPOINT_EVERY) -> list[dict]:
    """The training loop of :func:`train` (one seed) and :func:`train_stacked` (several)."""
    if not seeds:
        raise ValueError("Invalid seeds: [] (give at least one)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Invalid seeds: {seeds} (each seed once)")
    if len(checkpoints) != len(seeds):
        raise ValueError(f"Invalid checkpoints: {len(checkpoints)} paths for {len(seeds)} seeds")
    if data_protocol not in PROTOCOLS:
        raise ValueError(f"Invalid data_protocol: {data_protocol!r} (choose from {', '.join(PROTOCOLS)})")
    if batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size}")
    if eval_size is not None and eval_size < 1:
        raise ValueError(f"Invalid eval_size: {eval_size} (must be >= 1 or None)")
    if not checkpoint_every >= 0:
        raise ValueError(f"Invalid checkpoint_every: {checkpoint_every} (must be >= 0 seconds)")
    deepobs = data_protocol == "deepobs"
    if data is None:
        data = (load_fashion_mnist(protocol="deepobs", val_size=DEEPOBS_VAL_SIZE, batch_size=batch_size)
                if deepobs else load_fashion_mnist())
    if getattr(data, "protocol", "report") != data_protocol:
        raise ValueError(f"Invalid data_protocol: {data_protocol!r}, but the data were loaded with protocol "
                         f"{getattr(data, 'protocol', 'report')!r}")
    if deepobs and data.batch_size != batch_size:
        raise ValueError(f"Invalid batch_size: {batch_size} (the deepobs data were cut to whole batches of "
                         f"{data.batch_size}; load them with batch_size={batch_size})")
    hparams = dict(hparams or {})
    if schedule not in SCHEDULES:
        raise ValueError(f"Invalid schedule: {schedule!r} (choose from {', '.join(SCHEDULES)})")
    subset = train_subset(len(data.train_y), n_train)
    ev = slice(None) if eval_size is None else slice(0, eval_size)

    def run_config(seed):
        config = dict(model=model, rule=rule, hparams=dict(hparams), epochs=epochs, batch_size=batch_size,
                      seed=seed, max_steps=max_steps, schedule=schedule,
                      n_train=len(data.train_y) if subset is None else len(subset), n_val=len(data.val_y),
                      data_source=getattr(data, "source", None), torch=torch.__version__,
                      threads=threads or torch.get_num_threads(), flush_denormal=flush_denormal)
        if deepobs:        # only when not the default: report records stay as they were
            config.update(data_protocol=data_protocol, n_test=len(data.test_y))
        if eval_size is not None:        # likewise
            config.update(eval_size=eval_size, n_val=len(data.val_y[ev]), n_test=len(data.test_y[ev]))
        return config

    members = [_Member(s, run_config(s), c) for s, c in zip(seeds, checkpoints)]
    compiled_step = bool(hparams.get("compiled", compile_step and has_compiled_step(rule)))
    for m in members:     # as make_optimizer decides it (checked below); a checkpoint compares it
        m.config["compiled_step"] = compiled_step
    saved = [load_checkpoint(m.checkpoint, m.config) if m.checkpoint is not None else None for m in members]
    k_all = len(members)
    stacking = k_all > 1
    if stacking and (not stackable(model, fast_path=fast_path, compile=compile)
                     or len({0 if s is None else s["step"] for s in saved}) > 1):
        # not stackable: one after another (each reads its checkpoint again)
        return [_train_group(model, rule, hparams, seeds=[m.seed], checkpoints=[m.checkpoint], data=data,
                             epochs=epochs, batch_size=batch_size, max_steps=max_steps, callback=callback,
                             progress=progress, threads=threads, compile=compile, compile_step=compile_step,
                             check_every=check_every, flush_denormal=flush_denormal, schedule=schedule,
                             n_train=n_train, data_protocol=data_protocol, eval_size=eval_size,
                             fast_path=fast_path, checkpoint_every=checkpoint_every)[0] for m in members]

    t_start = time.perf_counter()
    with _num_threads(threads), denormals_flushed(flush_denormal), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0])
        for m, s in zip(members, saved):
            m.net = build_model(model, m.seed)
            m.net.train()
            if s is not None:
                m.net.load_state_dict(s["model"])
        if stacking:
            stack = StackedLinearStack.of([m.net for m in members])
            optimizer = make_optimizer(rule, stacked_param_groups(rule, [m.net for m in members]), hparams,
                                       compile_step)
        else:
            net = members[0].net
            optimizer = make_optimizer(rule, net.parameters(), hparams, compile_step)
            forward = _compiled(net) if compile else net
            stack = LinearStack.of(net) if fast_path and not compile else None
        assert compiled_step == bool(optimizer.param_groups[0].get("compiled", False))
        x_all, y_all = data.train_x, data.train_y
        if subset is not None:
            x_all, y_all = x_all[subset], y_all[subset]
        n = len(y_all)
        steps_per_epoch = n // batch_size if deepobs else math.ceil(n / batch_size)
        if deepobs and steps_per_epoch < 1:
            raise ValueError(f"Invalid batch_size: {batch_size} (more than the {n} training examples, "
                             "and the deepobs protocol drops the last partial batch)")
        total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
        lr0 = optimizer.param_groups[0]["lr"]       # the unscheduled lr (every group has the same)

        step, first_epoch = 0, 1
        if saved[0] is not None:     # every model's checkpoint is at the same step
            if stacking:
                for m, s in zip(members, saved):
                    _load_member_state(rule, m.net, optimizer, s["optimizer"], hparams, compile_step)
            else:
                optimizer.load_state_dict(saved[0]["optimizer"])
            torch.set_rng_state(saved[0]["rng"])
            step, first_epoch = saved[0]["step"], len(saved[0]["epochs"]) + 1
            for m, s in zip(members, saved):
                m.gen.set_state(s["generator"])
                m.epochs, m.step_losses = s["epochs"], s["step_losses"]
                m.seconds_before, m.resumed_after = s["seconds"], s["resumed_after"] + [len(s["epochs"])]
                m.rng = s["rng"]
        t_saved = time.perf_counter()
        bar = None
        if progress:
            bar = tqdm(total=total_steps, initial=step, leave=False,
                       desc=f"{model}/{rule}" + (f" x{k_all}" if stacking else ""))

        def close(m, col, epoch, losses, done, correct, seen, share, diverged):
            """End ``m``'s epoch after ``done`` steps: its losses, evaluation and epoch row."""
            epoch_losses = losses[col, :done]
            if diverged:       # keep the steps up to and including the first non-finite loss
                first_bad = int((~torch.isfinite(epoch_losses)).nonzero()[0, 0])
                epoch_losses = epoch_losses[:first_bad + 1]
            m.step_losses.extend(epoch_losses.tolist())
            t_eval = time.perf_counter()
            val_loss, val_acc = (evaluate(m.net, data.val_x[ev], data.val_y[ev]) if len(data.val_y)
                                 else (math.nan, math.nan))
            test_loss, test_acc = evaluate(m.net, data.test_x[ev], data.test_y[ev])
            eval_seconds = time.perf_counter() - t_eval
            train_seconds, step_seconds = share
            m.epochs.append(dict(
                epoch=epoch,
                train_loss=float(epoch_losses.double().mean()) if len(epoch_losses) else math.nan,
                train_acc=int(correct[col]) / max(seen, 1),
                val_loss=val_loss, val_acc=val_acc, test_loss=test_loss, test_acc=test_acc,
                train_seconds=train_seconds, step_seconds=step_seconds, eval_seconds=eval_seconds,
                steps=len(epoch_losses)))
            if diverged:
                m.diverged, m.diverged_epoch = True, epoch
            m.steps = step
            m.seconds = m.seconds_before + (time.perf_counter() - t_start) / k_all

        active = list(members)          # the models still training, in the stack's order
        for epoch in range(first_epoch, epochs + 1):
            if max_steps is not None and step >= max_steps:
                break
            if stacking and len(active) < stack.k:     # diverged models leave the stack
                stack, optimizer = _restack(rule, [m.net for m in active], optimizer, hparams, compile_step)
            nets = [m.net for m in active]
            width = len(active)
            perms = [torch.randperm(n, generator=m.gen) for m in active]
            n_steps = steps_per_epoch if max_steps is None else min(steps_per_epoch, max_steps - step)
            losses = torch.empty(width, n_steps)                      # per-step losses, read once per epoch
            correct = torch.zeros(width if stacking else (), dtype=torch.int64)   # running count of right answers
            alive = list(range(width))                                # columns still training this epoch
            seen = 0
            step_time = 0.0
            done = checked = 0                                        # steps done / checked for NaN
            t_epoch = time.perf_counter()
            for i in range(n_steps):
                lo, hi = i * batch_size, (i + 1) * batch_size
                if stacking:
                    out, yb, loss_list = stack.step(x_all, y_all, [p[lo:hi] for p in perms])
                    loss = torch.stack(loss_list)
                elif stack is not None:       # autograd's numbers without autograd (engine.fastpath)
                    out, yb, loss = stack.step(x_all, y_all, perms[0][lo:hi])
                else:
                    idx = perms[0][lo:hi]
                    xb, yb = x_all[idx], y_all[idx]
                    out = forward(xb)
                    loss = F.cross_entropy(out, yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                if schedule != "constant":
                    for g in optimizer.param_groups:
                        g["lr"] = scheduled_lr(lr0, schedule, step, total_steps)
                t0 = time.perf_counter()
                optimizer.step()
                step_time += time.perf_counter() - t0
                step += 1
                done = i + 1
                with torch.no_grad():
                    losses[:, i] = loss.detach()
                    correct += (out.argmax(-1) == yb).sum(-1)
                seen += yb.shape[-1]
                if callback is not None:
                    callback(step, nets if stacking else nets[0], optimizer, loss.detach())
                if done - checked >= check_every or done == n_steps:
                    if bar is not None:
                        bar.update(done - checked)
                    finite = torch.isfinite(losses[:, checked:done]).all(1).tolist()
                    bad = [c for c in alive if not finite[c]]
                    if bad:
                        share = ((time.perf_counter() - t_epoch) / width, step_time / width)
                        for c in bad:
                            close(active[c], c, epoch, losses, done, correct.view(-1), seen, share, True)
                            alive.remove(c)
                        if not alive:
                            break
                    checked = done
            share = ((time.perf_counter() - t_epoch) / width, step_time / width)
            for c in alive:
                close(active[c], c, epoch, losses, done, correct.view(-1), seen, share, False)
            active = [active[c] for c in alive]
            if not active:
                break
            last = epoch == epochs or (max_steps is not None and step >= max_steps)
            if any(m.checkpoint is not None for m in active) and not last \
                    and time.perf_counter() - t_saved >= checkpoint_every:
                for m in active:
                    if m.checkpoint is None:
                        continue
                    opt = _single_view(rule, m.net, optimizer, hparams, compile_step) if stacking else optimizer
                    save_checkpoint(m.checkpoint, dict(
                        config=_comparable(m.config),
                        model={k: v.clone() for k, v in m.net.state_dict().items()},
                        optimizer=opt.state_dict(), generator=m.gen.get_state(),
                        rng=_member_rng(m) if stacking else torch.get_rng_state(),
                        epochs=m.epochs, step_losses=m.step_losses, step=step, resumed_after=m.resumed_after,
                        seconds=m.seconds_before + (time.perf_counter() - t_start) / k_all))
                t_saved = time.perf_counter()
        if bar is not None:
            bar.close()
    for m in members:     # a run's total wall time (its share of it when stacked), evaluation included
        if not m.diverged:
            m.steps = step
            m.seconds = m.seconds_before + (time.perf_counter() - t_start) / k_all
    return [m.record(k_all) for m in members]
