"""The warehouse's errors (messages name the warehouse, never its password)."""

from __future__ import annotations


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the warehouse but never its password."""


class WarehouseLockedError(WarehouseError):
    """The DuckDB file stayed locked by another process for longer than ``lock_timeout``."""
