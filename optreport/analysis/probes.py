"""Look inside an optimizer during training: record a quantity every few steps.

    from optreport.analysis.probes import probe_run
    r = probe_run("gravity", {"lr": 0.1}, "effective_lr", epochs=3, every=50)
    r["steps"], r["values"]          # steps (n,), Gravity's 1/k at those steps (n,)
    r = probe_run("cosine", {"lr": 0.1}, "cos", epochs=3, every=50)
    r["values"]                      # (n, rows): every per-row cosine of every parameter

Probes (``PROBES``):
* ``effective_lr``: ``optimizer.effective_lr()[0]`` (Gravity: the step size 1/k of the last step);
* ``cos``: the per-row cosines ``optimizer.state[p]['cos']`` of Cosine for the weight
  matrices (rows of every parameter with ``ndim >= 2``), concatenated in model order;
* ``cos_all``: the same for every parameter, biases included (however the rule splits a
  bias vector into "rows").

Runs go through ``engine.train.train`` with a callback, so they are the same training as the
sweep's runs with the same config and seed (one thread, compiled step, like the sweeps). Results
are cached as ``.npz`` in ``cache_dir``, named by the run's key (configuration and code versions,
see runs.keys) and the probe; ``force=True`` recomputes.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from optreport.engine.train import train
from optreport.runs.keys import RunConfig, validate

__all__ = ["PROBES", "probe_run"]


def _effective_lr(model, optimizer):
    return np.float64(optimizer.effective_lr()[0])


def _cosines(model, optimizer, *, min_ndim=2):
    parts = [optimizer.state[p]["cos"].detach().double().reshape(-1) for p in model.parameters()
             if p.ndim >= min_ndim and p in optimizer.state and "cos" in optimizer.state[p]]
    return torch.cat(parts).numpy().copy() if parts else np.empty(0)


def _cosines_all(model, optimizer):
    return _cosines(model, optimizer, min_ndim=0)


PROBES = {"effective_lr": _effective_lr, "cos": _cosines, "cos_all": _cosines_all}


def probe_run(rule: str, hparams: dict, probe: str, *, epochs: int = 1, seed: int = 0,
              every: int = 50, max_steps: int | None = None, model: str = "mlp",
              batch_size: int = 64, cache_dir=None, force: bool = False, data=None, threads: int = 1) -> dict:
    """Train once, recording ``PROBES[probe]`` after step 1 and every ``every`` steps.

    Returns ``{'steps': (n,), 'values': (n,) or (n, k), 'final': last epoch's record,
    'diverged': bool}``.
    """
    fn = PROBES[probe]
    cfg = RunConfig(model=model, rule=rule, hparams=dict(hparams), epochs=epochs, seed=seed, batch_size=batch_size,
                    max_steps=max_steps, threads=threads,
                    val_size=len(data.val_y) if data is not None else RunConfig.val_size)
    validate(cfg)
    path = None
    if cache_dir is not None:      # named by the run's key (configuration and code versions) and the probe
        ident = {"run": cfg.key, "probe": probe, "every": every}
        h = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
        path = Path(cache_dir) / f"{rule}_{probe}_{h[:16]}.npz"
        if path.exists() and not force:
            z = np.load(path, allow_pickle=False)
            return {"steps": z["steps"], "values": z["values"],
                    "final": json.loads(str(z["final"])), "diverged": bool(z["diverged"])}
    steps, values = [], []

    def callback(step, net, optimizer, loss):
        if step == 1 or step % every == 0:
            steps.append(step)
            values.append(fn(net, optimizer))

    rec = train(data=data, callback=callback, **cfg.train_kwargs())
    out = {"steps": np.asarray(steps), "values": np.asarray(values),
           "final": rec["epochs"][-1] if rec["epochs"] else {}, "diverged": bool(rec["diverged"])}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, steps=out["steps"], values=out["values"],
                 final=json.dumps(out["final"]), diverged=out["diverged"])
    return out
