"""The run store: one SQL table of training runs, shared safely by any number of workers.

    store = Store("sqlite:///results/runs.sqlite")     # or "postgresql://user@host/db"
    if store.claim(key, config, worker_id()):          # atomic: exactly one worker gets it
        ...train, calling store.heartbeat(key, me) now and then...
        store.finish(key, me, result)                  # one transaction: done + result

Table ``runs`` (one row per run configuration):
  key        primary key: hash of the full configuration and the rule's code (sweep.RunConfig.key)
  model, rule             for quick counts (``python -m optreport.runs status``)
  config     JSON of the configuration
  status     'running' | 'done' | 'failed' | 'queued' (queued: to be run again, e.g. --force)
  worker     who holds or held it: "host:pid"
  heartbeat  unix time of the holder's last sign of life
  attempts   how many times the run was claimed (1 unless a worker died or it was re-run)
  result     JSON of the trainer's record (compacted, see sweep.compact_record); error text if failed
  created, finished   unix times

Claiming. A worker INSERTs the key with status 'running'; the primary key lets only one insert
win. If the row exists and is 'queued', or 'running' but stale -- its worker is on this host
and its pid is gone, or its heartbeat is older than the lease -- the worker takes it with a
compare-and-swap UPDATE (WHERE the row still has the status, worker and heartbeat it read), so
two workers racing for a dead worker's run cannot both win. ``finish`` is also conditional on
still holding the run, so a worker that lost its lease cannot overwrite the new holder's result.
SQLite runs in WAL mode with a busy timeout, so concurrent processes wait rather than fail.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import sqlalchemy as sa

__all__ = ["Store", "worker_id", "pid_alive", "DEFAULT_URL", "LEASE_SECONDS", "HEARTBEAT_SECONDS"]

DEFAULT_URL = "sqlite:///results/runs.sqlite"   # relative to the working directory
LEASE_SECONDS = 300.0       # a 'running' row whose heartbeat is older than this is up for grabs
HEARTBEAT_SECONDS = 30.0    # how often a worker refreshes its heartbeat while training
BUSY_TIMEOUT_MS = 60_000    # SQLite: wait this long for a lock held by another process

_meta = sa.MetaData()
runs = sa.Table(
    "runs", _meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(32)),
    sa.Column("rule", sa.String(32), index=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("worker", sa.String(128)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("result", sa.Text),
    sa.Column("created", sa.Float),
    sa.Column("finished", sa.Float),
)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie (killed but not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _is_stale(worker: str | None, heartbeat: float | None, lease: float, now: float) -> bool:
    if heartbeat is None or now - heartbeat > lease:
        return True
    host, _, pid = (worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not pid_alive(int(pid))
    return False


class Store:
    """A run table behind any SQLAlchemy URL (SQLite file by default)."""

    def __init__(self, url: str = DEFAULT_URL, *, lease: float = LEASE_SECONDS):
        if "://" not in url:          # a bare path means a SQLite file
            url = f"sqlite:///{url}"
        self.url, self.lease = url, lease
        u = sa.engine.make_url(url)
        kwargs = {}
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        self.engine = sa.create_engine(url, **kwargs)
        if u.get_backend_name() == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")            # readers never block the writer
                cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA synchronous=NORMAL")          # durable at checkpoints; safe in WAL
                cur.close()
        for attempt in range(5):   # several processes may create the table at once
            try:
                _meta.create_all(self.engine)
                break
            except sa.exc.OperationalError:
                time.sleep(0.2 * (attempt + 1))

    def __repr__(self):
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    # ------------------------------------------------------------------ claiming
    def claim(self, key: str, config: dict, worker: str, *, model=None, rule=None) -> bool:
        """Take the run ``key`` for ``worker``; False if it is done or held by a live worker."""
        now = time.time()
        try:
            with self.engine.begin() as c:
                c.execute(runs.insert().values(
                    key=key, model=model, rule=rule, config=json.dumps(config, sort_keys=True),
                    status="running", worker=worker, heartbeat=now, attempts=1, created=now))
            return True
        except sa.exc.IntegrityError:
            pass
        with self.engine.begin() as c:
            row = c.execute(sa.select(runs.c.status, runs.c.worker, runs.c.heartbeat)
                            .where(runs.c.key == key)).first()
            if row is None:        # deleted meanwhile: try again from the start
                return self.claim(key, config, worker, model=model, rule=rule)
            status, old_worker, old_hb = row
            if status == "queued" or (status == "running" and _is_stale(old_worker, old_hb, self.lease, now)):
                res = c.execute(runs.update()
                                .where(runs.c.key == key, runs.c.status == status,
                                       runs.c.worker.is_(None) if old_worker is None else runs.c.worker == old_worker,
                                       runs.c.heartbeat.is_(None) if old_hb is None else runs.c.heartbeat == old_hb)
                                .values(status="running", worker=worker, heartbeat=now,
                                        attempts=runs.c.attempts + 1,
                                        config=json.dumps(config, sort_keys=True)))
                return res.rowcount == 1
        return False

    def heartbeat(self, key: str, worker: str) -> bool:
        """Refresh the lease; False if the run is no longer ours."""
        with self.engine.begin() as c:
            res = c.execute(runs.update().where(runs.c.key == key, runs.c.worker == worker,
                                                runs.c.status == "running").values(heartbeat=time.time()))
        return res.rowcount == 1

    def finish(self, key: str, worker: str, result: dict, *, status: str = "done") -> bool:
        """Store the result and mark the run done, in one transaction; False if we lost it."""
        now = time.time()
        text = result if isinstance(result, str) else json.dumps(result, allow_nan=False)
        with self.engine.begin() as c:
            res = c.execute(runs.update().where(runs.c.key == key, runs.c.worker == worker,
                                                runs.c.status == "running")
                            .values(status=status, result=text, heartbeat=now, finished=now))
        return res.rowcount == 1

    def release(self, key: str, worker: str) -> None:
        """Give a run back (e.g. on Ctrl-C): delete our 'running' row so another worker takes it."""
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.key == key, runs.c.worker == worker,
                                          runs.c.status == "running")
                      .values(status="queued", heartbeat=None))

    def requeue(self, keys, *, statuses=("done", "failed")) -> int:
        """Mark finished runs to be run again (their old result stays until replaced)."""
        n = 0
        keys = list(keys)
        with self.engine.begin() as c:
            for i in range(0, len(keys), 500):
                n += c.execute(runs.update().where(runs.c.key.in_(keys[i:i + 500]),
                                                   runs.c.status.in_(statuses))
                               .values(status="queued")).rowcount
        return n

    # ------------------------------------------------------------------ reading
    def statuses(self, keys=None) -> dict[str, str]:
        return {r.key: r.status for r in self.rows(keys, columns=("key", "status"))}

    def rows(self, keys=None, *, columns=None, status=None) -> list:
        cols = [runs.c[c] for c in columns] if columns else [runs]
        q = sa.select(*cols)
        if status is not None:
            q = q.where(runs.c.status == status)
        with self.engine.connect() as c:
            if keys is None:
                return list(c.execute(q))
            keys, out = list(keys), []
            for i in range(0, len(keys), 500):
                out += c.execute(q.where(runs.c.key.in_(keys[i:i + 500])))
            return out

    def counts(self) -> list[tuple[str, str, str, int]]:
        """(model, rule, status, count) for every group."""
        with self.engine.connect() as c:
            return [tuple(r) for r in c.execute(
                sa.select(runs.c.model, runs.c.rule, runs.c.status, sa.func.count())
                .group_by(runs.c.model, runs.c.rule, runs.c.status)
                .order_by(runs.c.model, runs.c.rule, runs.c.status))]
