"""Runs as Optuna trials: one storage (a SQLite file, or PostgreSQL for many machines) that any
number of workers share.

Every training run is a trial of the study ``runs`` in an Optuna ``RDBStorage``. A grid is a set
of *enqueued* trials (``WAITING``, the run's configuration and key in the trial's user
attributes); a worker pops a waiting trial (Optuna's atomic ``WAITING -> RUNNING`` transition),
trains, and tells the result (``COMPLETE``, value = final validation accuracy, so that
``optuna-dashboard`` shows a sweep live). The trainer's full record goes to the study
``runs-records`` (one trial per finished run, read only by :func:`export`) and, on a worker that
has the report's runs folder, straight to its file (results.write_run), before the trial is told
complete: a finished run is never only in flight.

Failures and retries, all Optuna's machinery:
* a worker beats Optuna's heartbeat (``RDBStorage.record_heartbeat``) every
  ``heartbeat_interval`` s from a thread that survives database outages; a trial whose heartbeat
  is older than ``grace_period`` is failed by the next worker that looks
  (``optuna.storages.fail_stale_trials``) and re-enqueued by
  ``RetryHeartbeatStaleTrialCallback(max_retry)``;
* on the same machine a dead worker is noticed at once: a trial records its worker's identity
  (host name, boot id, pid namespace, pid and process start time), and a worker in the same
  boot and pid namespace whose pid is gone or reused has its trial failed and retried at once.
  A host name alone is never trusted (containers and cloned machines share them);
* a run that raises is told ``FAIL`` and re-enqueued by the same callback, up to ``max_retry``
  times;
* every storage call retries through connection errors for up to ``DB_PATIENCE`` s (a
  restarted or briefly stopped PostgreSQL loses nothing); pooled connections are pre-pinged.

Two workers given the same grid at once may both enqueue a run; the later of two trials of one
key that see each other yields (it is told ``PRUNED``, user attribute ``duplicate_of``), so a
run is trained and stored once.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from optreport.runs import results

__all__ = ["open_study", "storage_url", "worker_identity", "identity_alive", "DB_PATIENCE",
           "HEARTBEAT_INTERVAL", "GRACE_PERIOD", "MAX_RETRY", "STUDY", "retrying", "StorageMissing",
           "Queue"]

STUDY = "runs"                 # the study holding one trial per run attempt
RECORDS = "runs-records"       # the study holding one trial per finished run's full record
HEARTBEAT_INTERVAL = 20        # s between heartbeats of a running trial
GRACE_PERIOD = 300             # s without a heartbeat after which another worker retries the run
MAX_RETRY = 2                  # times a failed or stale run is re-enqueued (per enqueue)
DB_PATIENCE = 900.0            # s a worker keeps retrying a storage call through connection errors

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageMissing(FileNotFoundError):
    """A SQLite storage file that does not exist (for commands that only read)."""


def storage_url(url: str) -> str:
    """A SQLAlchemy URL for ``url``: a bare path means a SQLite file."""
    return url if "://" in url else f"sqlite:///{url}"


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return None if path in ("", ":memory:") else Path(path)
    return None


def open_storage(url: str, *, create: bool = True, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD, max_retry: int = MAX_RETRY) -> RDBStorage:
    url = storage_url(url)
    path = _sqlite_path(url)
    if path is not None:
        if not path.exists() and not create:
            raise StorageMissing(f"no run storage at {path} (nothing has run against it yet)")
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}

    def build():
        with _schema_lock(url), _quiet_experimental():
            return RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
    return retrying(build, "open the run storage")


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive ``flock`` on the SQLite database file itself (independent of SQLite's own
    byte-range locks), released when the file closes, also if the process dies."""
    with open(path, "ab") as fh:            # an empty file is a valid, empty SQLite database
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_SCHEMA_LOCK = 0x6F70747265706F72  # any fixed 64-bit key: "optrepor"


@contextlib.contextmanager
def _schema_lock(url: str):
    """One process at a time creates Optuna's tables: workers started together on an empty store
    otherwise race in ``CREATE TYPE``/``CREATE TABLE``/``INSERT INTO alembic_version`` and all but
    one die (UniqueViolation on PostgreSQL, IntegrityError on SQLite; both seen in CI). On
    PostgreSQL a session-level advisory lock, on SQLite an exclusive ``flock`` on the database file
    itself (independent of SQLite's own byte-range locks); both are released when their connection
    or file closes, also if the process dies."""
    path = _sqlite_path(url)
    if path is not None:
        with _file_lock(path):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    eng = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with eng.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK})
    finally:
        eng.dispose()


@contextlib.contextmanager
def _quiet_experimental():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_study(url: str, name: str = STUDY, **kwargs) -> optuna.Study:
    storage = open_storage(url, **kwargs)
    return retrying(lambda: optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                                load_if_exists=True), f"open study {name}")


# ---------------------------------------------------------------------------- retries

_TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
              optuna.exceptions.StorageInternalError)


def retrying(fn, what: str, patience: float | None = None):
    """``fn()``, retried with backoff through connection errors for up to ``patience`` s."""
    patience = DB_PATIENCE if patience is None else patience
    deadline, wait = time.monotonic() + patience, 0.5
    while True:
        try:
            return fn()
        except _TRANSIENT as e:
            if time.monotonic() > deadline:
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"[runs] storage unavailable ({what}): {msg[:160]}; retrying in {wait:.0f} s",
                  file=sys.stderr, flush=True)
            time.sleep(wait)
            wait = min(wait * 2, 15.0)


# ---------------------------------------------------------------------------- worker identity

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split()[19] if stat else ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def worker_identity() -> dict:
    """Who runs a trial: host name (for people), and what tells a live process apart on the same
    machine: boot id, pid namespace, pid and the process's start time."""
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pidns": _pid_namespace(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def identity_alive(ident: dict | None) -> bool | None:
    """True/False when ``ident`` is a process of this boot and pid namespace (alive or not);
    None when this machine cannot tell (another machine or container: wait for the heartbeat)."""
    if not ident:
        return None
    me = worker_identity()
    if not me["boot_id"] or ident.get("boot_id") != me["boot_id"] or ident.get("pidns") != me["pidns"]:
        return None
    pid = ident.get("pid")
    if not isinstance(pid, int):
        return None
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and fields[19] == ident.get("start")


# ---------------------------------------------------------------------------- the queue

def _now() -> str:
    """Local time as Optuna stores its datetimes (naive, local), so the two compare."""
    return datetime.datetime.now().isoformat(timespec="microseconds")


@contextlib.contextmanager
def _claim_lock(url: str):
    """Around taking a trial: on SQLite an exclusive ``flock`` on the database file, because pysqlite
    runs Optuna's read of the trial's state outside the transaction of its update, so two workers
    could both move one WAITING trial to RUNNING and both train it (seen in CI: one run started by
    both workers). On PostgreSQL Optuna's ``SELECT ... FOR UPDATE`` already makes it atomic."""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    with _file_lock(path):
        yield


class Queue:
    """The runs of one storage: enqueue, pop, finish, retry. Workers use it; so do tests."""

    def __init__(self, url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD, max_retry: int = MAX_RETRY, create: bool = True):
        self.url = storage_url(url)
        self.max_retry = max_retry
        self.study = open_study(self.url, STUDY, create=create, heartbeat_interval=heartbeat_interval,
                                grace_period=grace_period, max_retry=max_retry)
        self.storage = self.study._storage
        self.records = retrying(lambda: optuna.create_study(storage=self.storage, study_name=RECORDS,
                                                            direction="maximize", load_if_exists=True),
                                "open the records study")
        with _quiet_experimental():
            self.retry_callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    # -- reading
    def trials(self, states=None) -> list:
        return retrying(lambda: self.study.get_trials(deepcopy=False, states=states), "read trials")

    def by_key(self, keys=None) -> dict[str, list]:
        """{key: [trials of that key, oldest first]} (all keys, or those in ``keys``)."""
        wanted = None if keys is None else set(keys)
        out: dict[str, list] = {}
        for t in self.trials():
            k = t.user_attrs.get("key")
            if k is not None and (wanted is None or k in wanted):
                out.setdefault(k, []).append(t)
        return out

    # -- enqueueing
    def enqueue(self, configs, *, skip=frozenset(), force=False, experiment: str | None = None) -> int:
        """Enqueue the configs that have no waiting, running or complete trial (and whose key is
        not in ``skip``, e.g. stored locally); ``force``: enqueue even complete ones. Returns the
        number enqueued."""
        existing = self.by_key([c.key for c in configs])
        n = 0
        for cfg in configs:
            key = cfg.key
            if key in skip and not force:
                continue
            states = {t.state for t in existing.get(key, [])}
            if TrialState.WAITING in states or TrialState.RUNNING in states:
                continue
            if TrialState.COMPLETE in states and not force:
                continue
            attrs = {"key": key, "config": cfg.keyed(), "rule": cfg.rule, "model": cfg.model,
                     "enqueued": _now(), "force": bool(force)}
            if experiment:
                attrs["experiment"] = experiment
            retrying(lambda a=attrs: self.study.enqueue_trial({}, user_attrs=a), "enqueue a run")
            n += 1
        return n

    # -- reaping dead workers' runs
    def reap(self) -> int:
        """Fail (and retry) the running trials whose worker is gone: on this machine by its pid at
        once, anywhere by Optuna's heartbeat. Returns how many this call failed by pid."""
        with _quiet_experimental():
            retrying(lambda: fail_stale_trials(self.study), "fail stale trials")
        n = 0
        for t in self.trials(states=(TrialState.RUNNING,)):
            if identity_alive(t.user_attrs.get("worker")) is False:
                if self._fail(t._trial_id):
                    n += 1
                    self._retry(t._trial_id)
        return n

    def _fail(self, trial_id: int) -> bool:
        try:
            return retrying(lambda: self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL),
                            "fail a trial")
        except optuna.exceptions.UpdateFinishedTrialError:
            return False          # someone else finished or failed it first

    def _retry(self, trial_id: int) -> bool:
        """Re-enqueue a failed trial (Optuna's retry callback); False when its retries are used up."""
        t = retrying(lambda: self.storage.get_trial(trial_id), "read a trial")
        with _quiet_experimental():
            history = RetryHeartbeatStaleTrialCallback.retry_history(t)
        if len(history) >= self.max_retry:
            return False
        retrying(lambda: self.retry_callback(self.study, t), "re-enqueue a run")
        return True

    # -- popping
    def pop(self, keys) -> optuna.trial.FrozenTrial | None:
        """Take a waiting trial of one of ``keys`` (atomic; None when there is none)."""
        keys = set(keys)
        for t in self.trials(states=(TrialState.WAITING,)):
            if t.user_attrs.get("key") not in keys:
                continue
            try:
                with _claim_lock(self.url):
                    won = retrying(lambda t=t: self.storage.set_trial_state_values(t._trial_id,
                                                                                  state=TrialState.RUNNING),
                                   "take a run")
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if won:
                ident = worker_identity()
                retrying(lambda t=t, ident=ident: self.storage.set_trial_user_attr(t._trial_id, "worker", ident),
                         "sign a run")
                retrying(lambda t=t: self.storage.record_heartbeat(t._trial_id), "first heartbeat")
                return retrying(lambda t=t: self.storage.get_trial(t._trial_id), "read a trial")
        return None

    def duplicate_of(self, trial) -> int | None:
        """The number of a trial that makes ``trial`` redundant: a complete one of the same key
        (completed after ``trial`` was enqueued, if it was forced), or a running one that started
        before it."""
        key = trial.user_attrs["key"]
        mine = (trial.datetime_start, trial.number)
        for t in self.by_key([key]).get(key, []):
            if t.number == trial.number:
                continue
            if t.state == TrialState.COMPLETE:
                enqueued = trial.user_attrs.get("enqueued", "")
                if not trial.user_attrs.get("force") or (
                        t.datetime_complete and t.datetime_complete.isoformat() >= enqueued):
                    return t.number
            elif t.state == TrialState.RUNNING and t.datetime_start and (t.datetime_start, t.number) < mine:
                return t.number
        return None

    def yield_to(self, trial, other: int) -> None:
        retrying(lambda: self.storage.set_trial_user_attr(trial._trial_id, "duplicate_of", other), "mark")
        try:
            retrying(lambda: self.storage.set_trial_state_values(trial._trial_id, state=TrialState.PRUNED),
                     "prune a duplicate")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    # -- heartbeat
    @contextlib.contextmanager
    def heartbeat(self, trial_id: int, interval: float | None = None):
        """Beat the trial's heartbeat from a thread while inside; database errors are reported and
        outlived, never raised into the run."""
        interval = float(interval or self.storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL)
        stop = threading.Event()

        def beat():
            while not stop.wait(interval):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:             # noqa: BLE001 -- an outage must not kill the run
                    print(f"[runs] heartbeat of trial {trial_id} failed: {str(e).splitlines()[0][:120]}",
                          file=sys.stderr, flush=True)
        th = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
        th.start()
        try:
            yield
        finally:
            stop.set()
            th.join(timeout=5)

    # -- finishing
    def finish(self, trial, record: dict, value: float) -> bool:
        """Store the record (records study), then tell the trial COMPLETE. False when the trial was
        failed meanwhile (e.g. its heartbeat lapsed during an outage): the record is kept, and
        the retry finds it."""
        key = trial.user_attrs["key"]
        compact = results.compact_record(record)
        retrying(lambda: self.records.add_trial(optuna.create_trial(
            state=TrialState.COMPLETE, value=value,
            user_attrs={"key": key, "config": trial.user_attrs["config"], "record": json.dumps(compact)})),
            "store a finished run")
        summary = {"outcome": "diverged" if record.get("diverged") else "finished",
                   "seconds": record.get("seconds"), "finished": _now()}
        try:
            retrying(lambda: self.storage.set_trial_user_attr(trial._trial_id, "result", summary), "result")
            return retrying(lambda: self.storage.set_trial_state_values(
                trial._trial_id, state=TrialState.COMPLETE, values=[value]), "complete a run")
        except optuna.exceptions.UpdateFinishedTrialError:
            now = retrying(lambda: self.storage.get_trial(trial._trial_id), "read a trial")
            return now.state == TrialState.COMPLETE

    def complete_from(self, trial, value: float) -> None:
        """Tell a trial COMPLETE whose run is already stored (a retry of a run that finished)."""
        try:
            retrying(lambda: self.storage.set_trial_user_attr(trial._trial_id, "result",
                                                              {"outcome": "stored", "finished": _now()}), "r")
            retrying(lambda: self.storage.set_trial_state_values(trial._trial_id, state=TrialState.COMPLETE,
                                                                 values=[value]), "complete a run")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def fail(self, trial, error: str) -> bool:
        """Tell a trial FAIL with its error; re-enqueue it unless its retries are used up.
        Returns True when it was re-enqueued."""
        retrying(lambda: self.storage.set_trial_user_attr(trial._trial_id, "error", error[-4000:]), "error")
        if not self._fail(trial._trial_id):
            return False
        return self._retry(trial._trial_id)

    # -- exporting
    def records_by_key(self, keys=None) -> dict[str, tuple[dict, dict]]:
        """{key: (config, compact record)} of every stored finished run (first one per key)."""
        wanted = None if keys is None else set(keys)
        out = {}
        for t in retrying(lambda: self.records.get_trials(deepcopy=False), "read records"):
            k = t.user_attrs.get("key")
            if k is None or k in out or (wanted is not None and k not in wanted):
                continue
            out[k] = (t.user_attrs["config"], json.loads(t.user_attrs["record"]))
        return out


def export(queue: Queue, runs_dir, keys=None) -> int:
    """Write the finished runs of the storage that ``runs_dir`` lacks; returns how many."""
    have = results.stored_keys(runs_dir)
    n = 0
    for key, (config, record) in queue.records_by_key(keys).items():
        if key not in have:
            results.write_run(runs_dir, key, config, record)
            n += 1
    return n
