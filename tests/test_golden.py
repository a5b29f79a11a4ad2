"""Golden trajectories: a behaviour change must come with a version bump.

Every stored run is keyed by the versions of its rule (``optimizers.<Rule>.version``), the
trainer (``optreport.engine.train.TRAINER_VERSION``), the model
(``optreport.engine.models.MODEL_VERSIONS``) and the data pipeline
(``optreport.engine.data.DATA_VERSION``).  For each of them, tests/golden/ holds the exact
numbers of a short fixed run (sha256 digests of tensor bytes, floats as ``float.hex``) and the
versions they were recorded under:

* a rule: 20 steps on a small fixed problem (float32), default hyper-parameters with a lr and a
  case with non-default options and a per-step lr schedule, eager (``compiled=False``) and
  compiled (``compiled=True``, slow);
* a model: its seeded initial weights and a forward pass on a fixed input;
* the trainer: the record of a 30-step ``train`` run on a synthetic Fashion-MNIST (every field
  but the timings), with the eager step and (slow) with the compiled step;
* the data pipeline: the tensors ``load_fashion_mnist`` returns for a fixture written with a
  fixed seed, and the indices of its validation split.

Same versions, different numbers: the test fails and asks for a version bump (a refactor that
keeps the numbers keeps every stored run; a real change invalidates exactly what it changes).
A version that differs from the recorded one: the test fails and asks to regenerate. Both:

    UPDATE_GOLDEN=1 pytest tests/test_golden.py        # rewrites tests/golden/*.json

The numbers are those of a machine type (CPU kernel family and vendor, :func:`machine_type`; one
thread, flush-denormal on, as training): the same code gives other bits on another type, so each
file holds one set per machine type recorded, and a run must equal one of them. A new machine type
(CI moved, a newcomer's laptop) fails with a message saying so: record its numbers with the
command above once the code is known to be unchanged.  Last, the same configuration trained in two fresh processes gives
bit-identical records (timings excluded): same key, same machine type, same numbers.
"""
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import optimizers as O
from optreport.engine.data import DATA_VERSION, FILES, load_fashion_mnist, read_idx, write_fixture
from optreport.engine.data import DEEPOBS_DATA_VERSION as O_DEEPOBS_VERSION
from optreport.engine.models import MODEL_VERSIONS, MODELS, build_model
from optreport.engine.train import TRAINER_VERSION, denormals_flushed, train

from conftest import needs_torch_compile

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
REGENERATE = "UPDATE_GOLDEN=1 pytest tests/test_golden.py"
STEPS = 20
SHAPES = [(8, 5), (5,), (4, 3, 2), ()]

# rule -> case -> hyper-parameters; "options" also changes the lr at every step (a schedule)
RULE_CASES = {
    "sgd": {"default": dict(lr=0.1), "options": dict(lr=0.1, weight_decay=0.01)},
    "momentum": {"default": dict(lr=0.1),
                 "options": dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.01)},
    "nag": {"default": dict(lr=0.1), "options": dict(lr=0.05, momentum=0.5, weight_decay=0.01)},
    "adagrad": {"default": dict(lr=0.01),
                "options": dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6,
                                weight_decay=0.01)},
    "rmsprop": {"default": dict(lr=0.01),
                "options": dict(lr=0.003, alpha=0.9, eps=1e-6, momentum=0.9, centered=True,
                                weight_decay=0.01)},
    "adadelta": {"default": dict(lr=1.0), "options": dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01)},
    "adam": {"default": dict(lr=1e-3),
             "options": dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, amsgrad=True, weight_decay=0.01)},
    "nadam": {"default": dict(lr=2e-3),
              "options": dict(lr=3e-3, betas=(0.8, 0.99), momentum_decay=8e-3,
                              decoupled_weight_decay=True, weight_decay=0.01)},
    "adamw": {"default": dict(lr=1e-3), "options": dict(lr=3e-3, amsgrad=True, weight_decay=0.1)},
    "gravity": {"default": dict(lr=0.1), "options": dict(lr=0.3, accumulate=False, weight_decay=0.01)},
    "cosine": {"default": dict(lr=0.01), "options": dict(lr=0.02, C=1.5, per="tensor", weight_decay=0.01)},
}
TRAIN_RUN = dict(model="small_mlp", rule="adam", hparams={"lr": 3e-3}, epochs=2, batch_size=32,
                 seed=0, max_steps=30, threads=1, schedule="cosine")


# --------------------------------------------------------------------------- the check
def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def _versions(**extra):
    return {**extra, "torch": torch.__version__}


def machine_type() -> str:
    """The CPU kernel family torch dispatches to and the CPU vendor ("AVX2 AuthenticAMD"): float
    results of the same code differ between machine types (vectorised kernels, BLAS paths)."""
    vendor = "unknown vendor"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{torch.backends.cpu.get_cpu_capability()} {vendor}"


#: numbers recorded before machine types were told apart (2026-12-01): the type CI ran on then
LEGACY = "machine type not recorded (CI's, before 2026-12-01)"


def _sets(recorded: dict) -> dict:
    """{machine type: numbers} of a golden file (the old one-set format read as LEGACY)."""
    return recorded.get("machines") or {LEGACY: recorded["numbers"]}


def check_golden(name: str, subject: str, bump: str, versions: dict, numbers: dict):
    """Compare ``numbers`` (key -> JSON value) with tests/golden/<name>.json, or record them
    there (UPDATE_GOLDEN=1, under this machine's type; entries this call does not compute and other
    machine types' numbers are kept while the versions are unchanged). The numbers must equal those
    recorded for one machine type: a behaviour change cannot match any of them."""
    path = GOLDEN / f"{name}.json"
    recorded = json.loads(path.read_text()) if path.exists() else None
    here = machine_type()
    if UPDATE:
        sets = _sets(recorded) if recorded and recorded["versions"] == versions else {}
        sets[here] = {**sets.get(here, {}), **numbers}
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps({"subject": subject, "versions": versions, "machines": sets},
                                   indent=1, sort_keys=True) + "\n")
        return
    if recorded is None:
        pytest.fail(f"no golden numbers for {subject} ({path.name}): record them with {REGENERATE}")
    if recorded["versions"] != versions:
        pytest.fail(f"{subject}: golden numbers were recorded under versions {recorded['versions']}, "
                    f"these are {versions}: regenerate with {REGENERATE} (on every machine type CI may use)")
    sets = _sets(recorded)
    complete = {m: ns for m, ns in sets.items() if set(numbers) <= set(ns)}
    if not complete:
        missing = sorted(set(numbers) - set(sets.get(here, next(iter(sets.values())))))
        pytest.fail(f"{subject}: no golden numbers for {missing}: record them with {REGENERATE}")
    if any(all(ns[k] == v for k, v in numbers.items()) for ns in complete.values()):
        return
    ref_type = here if here in complete else next(iter(complete))
    ref = complete[ref_type]
    changed = [k for k in numbers if ref[k] != numbers[k]]
    where = []
    for k in changed[:5]:
        a, b = ref[k], numbers[k]
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            where.append(f"{k} from item {first}")
        else:
            where.append(k)
    new_type = "" if here in sets else (f" This machine type ({here}) has no numbers of its own yet (recorded: "
                                         f"{', '.join(sets)}); if the code did not change, record them with "
                                         f"{REGENERATE}.")
    pytest.fail(f"behaviour of {subject} changed against {ref_type} ({', '.join(where)}"
                f"{' ...' if len(changed) > 5 else ''}): bump {subject}'s version ({bump}) "
                f"and regenerate with {REGENERATE}.{new_type}")


@pytest.fixture(autouse=True)
def _like_training():
    """One thread and flushed denormals, as the trainer runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with denormals_flushed(True):
        yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- rules
def rule_trajectory(name: str, case: str, compiled: bool) -> list[str]:
    """Digest of the parameters after each of STEPS steps (float32)."""
    hparams = RULE_CASES[name][case]
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen) for s in SHAPES]
    opt = O.OPTIMIZERS[name](params, compiled=compiled, **hparams)
    out = []
    for t in range(STEPS):
        if case == "options":
            opt.param_groups[0]["lr"] = hparams["lr"] * (1.0 - t / (2 * STEPS))
        noise = [torch.randn(s, generator=gen) for s in SHAPES]
        for p, n in zip(params, noise):
            p.grad = 0.5 * p + 0.3 * torch.sin(3 * p) + n
        opt.step()
        out.append(_digest(params))
    return out


def _check_rule(name, compiled):
    path = "compiled" if compiled else "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)     # a fallback to eager is not "compiled"
        numbers = {f"{path}/{case}": rule_trajectory(name, case, compiled) for case in RULE_CASES[name]}
    cls = O.OPTIMIZERS[name]
    check_golden(f"rule_{name}", f"rule {name}", f"optimizers.{cls.__name__}.version",
                 _versions(rule=O.rule_version(name)), numbers)


def test_every_rule_has_cases():
    assert set(RULE_CASES) == set(O.OPTIMIZERS)


@pytest.mark.parametrize("name", list(O.OPTIMIZERS))
def test_rule_eager(name):
    _check_rule(name, compiled=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(O.OPTIMIZERS))
def test_rule_compiled(name):
    needs_torch_compile()
    _check_rule(name, compiled=True)


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["mlp", "cnn", "small_mlp"])
def test_model(name):
    assert set(MODELS) == {"mlp", "cnn", "small_mlp"}
    net = build_model(name, seed=0)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x)
    numbers = {"init": _digest(net.state_dict().values()), "forward": _digest([out]),
               "forward_sum": float(out.double().sum()).hex()}
    check_golden(f"model_{name}", f"model {name}", f"optreport.engine.models.MODEL_VERSIONS[{name!r}]",
                 _versions(model=MODEL_VERSIONS[name]), numbers)


# --------------------------------------------------------------------------- data pipeline
@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("fmnist"), n_train=600, n_test=100, seed=0)


def _fixture_data(folder):
    return load_fashion_mnist(root=folder, val_size=100, download=False)


def test_data_pipeline(fixture_dir):
    d = _fixture_data(fixture_dir)
    # the indices of the validation images in the training file (each fixture image is unique)
    raw = read_idx(next(Path(fixture_dir).glob(FILES["train_images"] + "*")))
    index = {img.tobytes(): i for i, img in enumerate(raw)}
    assert len(index) == len(raw)
    val_u8 = np.rint((d.val_x.squeeze(1).double().numpy() * d.std + d.mean) * 255).astype(np.uint8)
    val_idx = [index[img.tobytes()] for img in val_u8]
    numbers = {name: _digest([getattr(d, name)]) for name in
               ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
    numbers.update(mean=float(d.mean).hex(), std=float(d.std).hex(), val_indices=val_idx)
    check_golden("data", "the data pipeline", "optreport.engine.data.DATA_VERSION",
                 _versions(data=DATA_VERSION), numbers)


# --------------------------------------------------------------------------- trainer
def numbers_of(record: dict) -> dict:
    """A train() record flattened to key -> value, floats as float.hex, without the timings and
    the data folder (which vary from run to run)."""
    out = {}

    def walk(prefix, x):
        if isinstance(x, dict):
            for k, v in x.items():
                if not (k.endswith("seconds") or k in ("data_source", "torch")):
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(f"{prefix}[{i}]", v)
        else:
            out[prefix] = float(x).hex() if isinstance(x, float) else x
    walk("", record)
    return out


def _check_trainer(fixture_dir, compile_step):
    record = train(data=_fixture_data(fixture_dir), compile_step=compile_step, **TRAIN_RUN)
    assert record["config"]["compiled_step"] is compile_step
    path = "compiled" if compile_step else "eager"
    numbers = {f"{path}/{k}": v for k, v in numbers_of(record).items()}
    check_golden("trainer", "the trainer", "optreport.engine.train.TRAINER_VERSION",
                 _versions(trainer=TRAINER_VERSION, rule=O.rule_version(TRAIN_RUN["rule"]),
                           model=MODEL_VERSIONS[TRAIN_RUN["model"]], data=DATA_VERSION), numbers)


def test_trainer_eager_step(fixture_dir):
    _check_trainer(fixture_dir, compile_step=False)


@pytest.mark.slow
def test_trainer_compiled_step(fixture_dir):
    needs_torch_compile()
    _check_trainer(fixture_dir, compile_step=True)


_FRESH_PROCESS = """
import json, sys
from optreport.engine.data import load_fashion_mnist
from optreport.engine.train import train
run = json.loads(sys.argv[2])
data = load_fashion_mnist(root=sys.argv[1], val_size=100, download=False)
print(json.dumps(train(data=data, compile_step=True, **run)))
"""


@pytest.mark.slow
def test_same_configuration_in_two_fresh_processes_gives_identical_records(fixture_dir):
    needs_torch_compile()
    records = []
    procs = [subprocess.Popen([sys.executable, "-c", _FRESH_PROCESS, str(fixture_dir), json.dumps(TRAIN_RUN)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:                       # run side by side, each in a fresh interpreter
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        records.append(json.loads(out.strip().splitlines()[-1]))
    assert records[0]["config"]["compiled_step"] is True
    assert numbers_of(records[0]) == numbers_of(records[1])


# --------------------------------------------------------------------------- the check itself
def test_check_golden_asks_for_a_bump_or_a_regeneration(tmp_path, monkeypatch):
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "GOLDEN", tmp_path)
    monkeypatch.setattr(this, "UPDATE", True)
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "2"]})
    monkeypatch.setattr(this, "UPDATE", False)
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "2"]})
    with pytest.raises(pytest.fail.Exception, match=r"behaviour of rule x changed against .* \(eager/a from item 1\): "
                       r"bump rule x's version \(optimizers.X.version\) and regenerate with UPDATE_GOLDEN=1"):
        check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "3"]})
    with pytest.raises(pytest.fail.Exception, match="recorded under versions .* regenerate with UPDATE_GOLDEN=1"):
        check_golden("x", "rule x", "optimizers.X.version", {"rule": 2}, {"eager/a": ["1", "3"]})
    with pytest.raises(pytest.fail.Exception, match="no golden numbers"):
        check_golden("y", "rule y", "optimizers.Y.version", {"rule": 1}, {"eager/a": []})
    # another machine type's numbers: equal to one recorded set passes; a third set fails and says so
    monkeypatch.setattr(this, "machine_type", lambda: "AVX512 OtherVendor")
    with pytest.raises(pytest.fail.Exception, match=r"This machine type \(AVX512 OtherVendor\) has no numbers"):
        check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "9"]})
    monkeypatch.setattr(this, "UPDATE", True)
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "9"]})
    monkeypatch.setattr(this, "UPDATE", False)
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "9"]})
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "2"]})   # the first type's
    with pytest.raises(pytest.fail.Exception, match="changed against AVX512 OtherVendor"):
        check_golden("x", "rule x", "optimizers.X.version", {"rule": 1}, {"eager/a": ["1", "3"]})
    assert len(json.loads((tmp_path / "x.json").read_text())["machines"]) == 2
    # regenerating under a new version drops the numbers of the old one, of every machine type
    monkeypatch.setattr(this, "UPDATE", True)
    check_golden("x", "rule x", "optimizers.X.version", {"rule": 2}, {"eager/b": ["4"]})
    assert json.loads((tmp_path / "x.json").read_text())["machines"] == {"AVX512 OtherVendor": {"eager/b": ["4"]}}


def test_legacy_golden_files_read_as_one_machine_type():
    assert _sets({"numbers": {"a": 1}}) == {LEGACY: {"a": 1}}
    assert _sets({"machines": {"T": {"a": 2}}}) == {"T": {"a": 2}}


# --------------------------------------------------------------------------- the deepobs data protocol
# Its own golden file (tests/golden/deepobs.json), under its own version
# (optreport.engine.data.DEEPOBS_DATA_VERSION) and the trainer's: the report protocol's goldens
# above are untouched by it.
DEEPOBS_RUN = dict(model="small_mlp", rule="momentum", hparams={"lr": 0.01, "momentum": 0.99}, epochs=2,
                   batch_size=32, seed=0, threads=1, data_protocol="deepobs")


def _deepobs_fixture_data(folder):
    return load_fashion_mnist(root=folder, val_size=100, download=False, protocol="deepobs", batch_size=32)


def test_deepobs_protocol(fixture_dir):
    d = _deepobs_fixture_data(fixture_dir)
    numbers = {f"data/{name}": _digest([getattr(d, name)]) for name in
               ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
    record = train(data=d, compile_step=False, **DEEPOBS_RUN)
    assert record["steps"] == 2 * (500 // 32)       # the last partial batch of each epoch dropped
    numbers.update({f"trainer/{k}": v for k, v in numbers_of(record).items()})
    check_golden("deepobs", "the deepobs data protocol",
                 "optreport.engine.data.DEEPOBS_DATA_VERSION (data) or optreport.engine.train.TRAINER_VERSION",
                 _versions(data_deepobs=O_DEEPOBS_VERSION, trainer=TRAINER_VERSION,
                           rule=O.rule_version(DEEPOBS_RUN["rule"]), model=MODEL_VERSIONS[DEEPOBS_RUN["model"]]),
                 numbers)
