"""Every stored run's key is reproducible from its stored configuration.

A run file ``results/runs/<model>/<rule>/<key>.json`` stores ``config`` = ``RunConfig.keyed()``
(the configuration with the code versions it ran under). Rebuilding the RunConfig from it and
hashing it again must give the stored key and the file's name: a new RunConfig field (e.g.
``data_protocol``) must leave the key of every existing run exactly as it was.
"""
import hashlib
import json
from pathlib import Path

import pytest

from optreport.runs.keys import RunConfig

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"
FILES = sorted(RUNS.glob("*/*/*.json"))


def _key_under_stored_versions(cfg: RunConfig, stored_versions: dict) -> str:
    """The key ``cfg`` gets when hashed with the code versions it was stored under (the stored
    versions may be older than the code's; the hash recipe is RunConfig.key's)."""
    keyed = {**cfg.keyed(), "versions": stored_versions}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, allow_nan=False).encode()).hexdigest()[:32]


def test_there_are_stored_runs():
    assert len(FILES) > 0


def test_every_stored_key_is_recomputed_from_its_config():
    bad, checked = [], 0
    for path in FILES:
        run = json.loads(path.read_text())
        stored = run["config"]
        cfg = RunConfig.from_dict(stored)
        # what was hashed is exactly what keyed() gives back: no field added, none lost
        assert {**cfg.keyed(), "versions": stored["versions"]} == stored, path
        key = _key_under_stored_versions(cfg, stored["versions"])
        if stored["versions"] == cfg.keyed()["versions"]:
            assert key == cfg.key
        if not (key == run["key"] == path.stem):
            bad.append(f"{path.relative_to(RUNS)}: stored {run['key']}, recomputed {key}")
        checked += 1
    assert not bad, f"{len(bad)} of {checked} stored runs changed key:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("protocol", ["report"])
def test_default_protocol_is_not_in_the_key(protocol):
    cfg = RunConfig(rule="sgd", hparams={"lr": 0.1}, epochs=1)
    assert "data_protocol" not in cfg.keyed()
