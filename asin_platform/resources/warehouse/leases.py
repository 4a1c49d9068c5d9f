"""Leases: one fetch per (resource, site, date) at a time, across processes and hosts.

A lease is a row of ``ingest_leases`` (migration 004_leases) naming its ``holder`` (a run id) and when it
expires, by the database clock. Acquiring is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that
takes a key when it is free, expired (its holder died or hung) or already ours (a renewal), so two
contenders for one key never both get it:

- PostgreSQL: the primary key makes the second ``INSERT`` wait for the first's commit, then see its row.
- DuckDB: a file admits one writing process at a time, and every warehouse operation opens and closes
  its own connection, so acquisitions from several processes are serialised by the file lock itself
  and the same statement decides. The lease does matter there: a second ingest process would otherwise
  wait for the file only during writes and spend the quota fetching between them. Acquire leases
  outside a ``Warehouse.session()`` block that spans the fetch: a session holds the file, so the other
  process would wait (up to ``lock_timeout``) for the file rather than learn who holds the lease.

Leases are advisory: only code that asks for one is kept out. A holder whose work outlives ``ttl_s``
renews by acquiring again (same holder) before it expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime

from asin_platform.resources.warehouse.sqltext import as_date
from asin_platform.resources.warehouse.transaction import WarehouseTx

LEASES_TABLE = "ingest_leases"

LeaseKey = tuple[str, date]  # (site, date)

# The keys as a relation of two array parameters (sites, dates): one statement for any number of keys.
_KEYS = "(SELECT unnest(CAST(? AS TEXT[])) AS site, unnest(CAST(? AS DATE[])) AS date) AS k"
_ACQUIRE = f"""
INSERT INTO {LEASES_TABLE} (resource, site, date, holder, acquired_at, expires_at)
SELECT ?, k.site, k.date, ?, now(), now() + CAST(? AS BIGINT) * INTERVAL '1 millisecond'
FROM {_KEYS}
ON CONFLICT (resource, site, date) DO UPDATE
SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
WHERE {LEASES_TABLE}.expires_at <= now() OR {LEASES_TABLE}.holder = EXCLUDED.holder
"""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease someone else asked for, and until when (UTC, database clock)."""

    holder: str
    expires_at: datetime


@dataclass
class LeaseGrant:
    """The outcome of one acquisition: the keys now ours, and who holds the others.

    True when every key asked for was acquired, so ``with warehouse.lease(...) as got: if got: ...``
    reads naturally for one key.
    """

    resource: str
    holder: str
    acquired: list[LeaseKey] = field(default_factory=list)
    held_by_others: dict[LeaseKey, LeaseHolder] = field(default_factory=dict)
    #: Acquired only after waiting for the holder named here to release (or its lease to expire): that
    #: holder has most likely just fetched the partition, so check the stored slice before fetching.
    waited_for: dict[LeaseKey, LeaseHolder] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return not self.held_by_others


def _keys(keys: Sequence[LeaseKey]) -> list[LeaseKey]:
    # Unique and in order: ON CONFLICT refuses to touch one row twice in a statement.
    return sorted({(site, as_date(day)) for site, day in keys})


def _check(resource: str, holder: str, ttl_s: float) -> None:
    if not resource or not holder:
        raise ValueError("a lease needs a resource name and a holder (the run id)")
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")


def acquire(
    tx: WarehouseTx, resource: str, keys: Sequence[LeaseKey], holder: str, ttl_s: float
) -> LeaseGrant:
    """Take every free, expired or already-ours key of ``keys`` for ``ttl_s`` seconds (in ``tx``)."""
    _check(resource, holder, ttl_s)
    wanted = _keys(keys)
    grant = LeaseGrant(resource, holder)
    if not wanted:
        return grant
    sites, days = [s for s, _ in wanted], [d for _, d in wanted]
    tx.execute(_ACQUIRE, [resource, holder, round(ttl_s * 1000), sites, days])
    rows = tx.query(
        f"SELECT l.site, l.date, l.holder, l.expires_at FROM {LEASES_TABLE} AS l JOIN {_KEYS} "
        "ON l.site = k.site AND l.date = k.date WHERE l.resource = ?",
        [sites, days, resource],
    )
    stored = {(site, day): LeaseHolder(who, expires) for site, day, who, expires in rows.iter_rows()}
    for key in wanted:
        current = stored[key]  # the INSERT left a row for every key
        if current.holder == holder:
            grant.acquired.append(key)
        else:
            grant.held_by_others[key] = current
    return grant


def release(tx: WarehouseTx, resource: str, keys: Sequence[LeaseKey], holder: str) -> None:
    """Give back the keys of ``keys`` that ``holder`` holds (others' leases are left alone)."""
    wanted = _keys(keys)
    if not wanted:
        return
    tx.execute(
        f"DELETE FROM {LEASES_TABLE} AS l USING {_KEYS} "
        "WHERE l.site = k.site AND l.date = k.date AND l.resource = ? AND l.holder = ?",
        [[s for s, _ in wanted], [d for _, d in wanted], resource, holder],
    )


@contextmanager
def held(
    take: Callable[[list[LeaseKey]], LeaseGrant],
    give_back: Callable[[list[LeaseKey]], None],
    keys: Sequence[LeaseKey],
    *,
    wait_s: float,
    poll_s: float,
) -> Iterator[LeaseGrant]:
    """Acquire ``keys`` (retrying the ones held by others every ``poll_s`` for up to ``wait_s``),
    yield the grant, and release what was acquired when the block exits, even on error."""
    grant = take(list(keys))
    deadline = time.monotonic() + wait_s
    while grant.held_by_others and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        retry = take(list(grant.held_by_others))
        grant.waited_for.update({k: grant.held_by_others[k] for k in retry.acquired})
        grant.acquired = sorted({*grant.acquired, *retry.acquired})
        grant.held_by_others = retry.held_by_others
    try:
        yield grant
    except BaseException:
        if grant.acquired:
            # The block's error is what matters; a lease that cannot be released expires anyway.
            with suppress(Exception):
                give_back(grant.acquired)
        raise
    if grant.acquired:
        give_back(grant.acquired)
