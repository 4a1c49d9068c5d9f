"""Faster event writes for runs executed in this process on the embedded SQLite Dagster instance.

Dagster's ``SqliteEventLogStorage`` opens a new SQLAlchemy engine and SQLite connection for every
statement group of every event (the run's database, then the cross-run index database), and
stores the events of a batch one by one. A ranged run of the demo stores ~6,000 events (one
materialisation-planned event, one materialisation and one check evaluation per partition and
asset), so this per-event bookkeeping was most of the demo's wall time.

:func:`speed_up_event_writes` gives the instance's event storage two changes, for this process
only (the databases, their schema and their contents are the same; the UI and the daemon keep
Dagster's own class on the same files):

- one open connection per database (the run's, the index), reused under the storage's own lock
  instead of a new engine per statement group (a few recent run databases are kept open), and
  the index schema probed once instead of on every asset event;
- ``store_event_batch`` writes a batch (Dagster batches a run's planned events and a ranged step's
  per-partition materialisations when ``DAGSTER_EVENT_BATCH_SIZE`` is set) in one transaction per
  database instead of one per event.

Any other storage (PostgreSQL instance, a custom class) is left as it is.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import TYPE_CHECKING, Any

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlalchemy_compat import db_result
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.events.log import EventLogEntry
    from sqlalchemy.engine import Connection, Engine

# Events per batched write (Dagster's own switch; 0 or unset: every event alone).
EVENT_BATCH_SIZE = "1000"
_OPEN_RUN_DATABASES = 4  # run databases kept open besides the index (runs of one phase overlap little)
_SQLITE_BUSY_TIMEOUT_S = 30  # as Dagster's SQLITE_BUSY_TIMEOUT_SECONDS: wait for another writer


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one reused connection per database and batched writes.

    Installed on an existing storage object by :func:`speed_up_event_writes` (its ``__init__`` is
    Dagster's), so its state is created on first use."""

    def _engines(self) -> OrderedDict[str, Engine]:
        engines = self.__dict__.get("_asin_engines")
        if engines is None:
            engines = self.__dict__["_asin_engines"] = OrderedDict()
        return engines

    def _engine(self, shard: str) -> Engine:
        engines = self._engines()
        engine = engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                # one connection, used under self._db_lock only, so any thread may hold it
                poolclass=StaticPool,
                connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            engines[shard] = engine
            runs = [name for name in engines if name != INDEX_SHARD_NAME]
            for old in runs[: max(0, len(runs) - _OPEN_RUN_DATABASES)]:
                engines.pop(old).dispose()
        else:
            engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    # Schema probes: Dagster inspects the index database's schema on every asset event (a new
    # engine for has_table, column reflection for the asset_keys columns). A table or column once
    # present stays (migrations only add), so a positive answer is kept.
    def _schema_seen(self) -> set[tuple[str, str]]:
        seen = self.__dict__.get("_asin_schema_seen")
        if seen is None:
            seen = self.__dict__["_asin_schema_seen"] = set()
        return seen

    def has_table(self, table_name: str) -> bool:
        if ("table", table_name) in self._schema_seen():
            return True
        found = super().has_table(table_name)
        if found:
            self._schema_seen().add(("table", table_name))
        return found

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if ("asset_keys column", column_name) in self._schema_seen():
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._schema_seen().add(("asset_keys column", column_name))
        return found

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Asset events (materialisations, planned materialisations, observations) written in one
        transaction per database, in order; any other event (a planned check) through
        ``store_event``."""
        for batched, group in groupby(events, key=_batchable):
            group = list(group)
            if batched and len(group) > 1:
                self._store_asset_events(group)
            else:
                for event in group:
                    self.store_event(event)

    def _store_asset_events(self, events: list[EventLogEntry]) -> None:
        statements = [self.prepare_insert_event(e) for e in events]
        for run_id in dict.fromkeys(e.run_id for e in events):
            with self.run_connection(run_id) as conn:
                for event, statement in zip(events, statements, strict=True):
                    if event.run_id == run_id:
                        conn.execute(statement)
        # mirrored in the cross-run index database, as store_event does
        with self.index_transaction() as conn:
            for event, statement in zip(events, statements, strict=True):
                with db_result(conn, statement) as result:
                    event_id = result.inserted_primary_key[0]
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)

    def dispose(self) -> None:
        super().dispose()
        engines = self._engines()
        while engines:
            engines.popitem()[1].dispose()


def _batchable(event: EventLogEntry) -> bool:
    return bool(
        event.is_dagster_event
        and event.dagster_event_type in ASSET_EVENTS
        and event.dagster_event_type not in ASSET_CHECK_EVENTS
        and event.dagster_event_type not in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
    )


def speed_up_event_writes(instance: dg.DagsterInstance) -> bool:
    """Give ``instance``'s event storage reused connections and batched writes when it is
    Dagster's plain SQLite storage (the embedded default); True when it did. Affects this process
    only: Dagster batches events when ``DAGSTER_EVENT_BATCH_SIZE`` is set, which this sets for
    the process unless it is set already."""
    storage: Any = instance.event_log_storage
    if type(storage) is not SqliteEventLogStorage:
        return False
    storage.__class__ = PooledSqliteEventLogStorage
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
    return True
