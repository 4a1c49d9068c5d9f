"""Where the Optuna study lives: a database every tuning worker reaches.

Optuna's RDB storage keeps a study in ordinary tables; two workers on one study need one database,
not one SQLite file on one pod's disk. The choice, first match wins:

1. ``storage.optuna_url`` (or the CLI's ``--storage``): any SQLAlchemy URL Optuna accepts;
2. the PostgreSQL warehouse: the same server and database, in the schema ``<pg_schema>_optuna`` (kept
   apart from the platform's tables, so the warehouse's schema comparison and roles stay as they are);
3. the embedded default: a SQLite file ``tuning/lgb_rank.db`` under a *local* artifacts location.
   A remote artifact store with a DuckDB warehouse has no shared database to offer: the user is told
   to set ``storage.optuna_url``.

Optuna creates its tables on first use; two workers starting together on a fresh PostgreSQL schema
would both try, so the schema and tables are created under an advisory lock first. Trial numbers are
then unique by Optuna's own rule (the study row is locked while a trial is numbered).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import optuna
import psycopg

from asin_platform.resources.warehouse import Warehouse
from asin_platform.resources.warehouse.urls import backend_of, redact_url
from asin_platform.settings import Settings
from asin_platform.storage.store import artifacts_store

STUDY_FILE = "tuning/lgb_rank.db"


def schema_url(url: str, schema: str) -> str:
    """``url`` (postgresql://...) as SQLAlchemy's psycopg URL whose connections use ``schema`` alone."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))


def optuna_schema(pg_schema: str) -> str:
    return f"{pg_schema}_optuna"


def optuna_storage(settings: Settings, warehouse_url: str, pg_schema: str = "public") -> str:
    """The study's database URL (see the module docstring for the order)."""
    if settings.storage.optuna_url:
        return settings.storage.optuna_url
    if backend_of(warehouse_url) == "postgres":
        return schema_url(warehouse_url, optuna_schema(pg_schema))
    store = artifacts_store(settings)
    if not store.is_local:
        raise ValueError(
            f"the artifact store {store} is remote and the warehouse is DuckDB: tuning workers share no "
            "database; set storage.optuna_url (e.g. the PostgreSQL URL) or ASIN_PLATFORM__STORAGE__OPTUNA_URL"
        )
    path = Path(str(store)) / STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def prepare(url: str) -> None:
    """Create a PostgreSQL study schema and Optuna's tables once, under an advisory lock, so workers
    starting together do not race on the DDL. Other databases need nothing here."""
    if not url.startswith("postgresql"):
        return
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(query).get("options", "").removeprefix("-csearch_path=").strip()
    # libpq's own URL: the same server and parameters (sslmode ...) without SQLAlchemy's driver name
    rest = urlencode([(k, v) for k, v in query if k != "options"])
    plain = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"asin_platform.optuna.{schema}"])
        try:
            if schema:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.RDBStorage(url)  # creates the tables when they are missing
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"asin_platform.optuna.{schema}"])


def shown_storage(url: str) -> str:
    """The study's URL for logs and metadata: password redacted, a SQLite file as its path."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else redact_url(url)


def run_storage(settings: Settings, warehouse: Warehouse) -> str:
    """The study's database for a run, from the run's warehouse resource (its URL may come from an
    ``EnvVar`` only a run resolves), ready for workers: see ``prepare``."""
    url = optuna_storage(settings, warehouse._plain_url(), warehouse.pg_schema)  # noqa: SLF001
    prepare(url)
    return url
