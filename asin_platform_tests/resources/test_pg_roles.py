"""The least-privilege warehouse roles of deploy/warehouse_roles.sql on the real PostgreSQL server.

A warehouse is set up in a throwaway schema by the admin user (as a first deployment would be), the
script hands it to a pipeline role and creates a reader; the platform then writes as the pipeline
and a dashboard reads as the reader: the views answer, the mart refuses every write, read and DDL
with PostgreSQL's permission error (SQLSTATE 42501). Role names are unique per test session and
the roles are dropped at the end (roles are cluster-wide, schemas are not).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import psycopg
import pytest
from psycopg import errors, sql

from asin_platform_tests.conftest import PgSchemas

pytestmark = pytest.mark.postgres

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "warehouse_roles.sql"
DAY = date(2025, 3, 10)
INSUFFICIENT_PRIVILEGE = "42501"


def as_user(url: str, user: str) -> str:
    """``url`` with its user replaced (the test server trusts loopback, so no password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


def apply_roles(admin_url: str, schema: str, pipeline: str, reader: str) -> None:
    """What the operator's psql command does: the three settings, then the script."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name, value in (("schema", schema), ("pipeline_role", pipeline), ("reader_role", reader)):
            conn.execute("SELECT set_config(%s, %s, false)", [f"asin_platform.{name}", value])
        conn.execute(ROLES_SQL.read_text())


@dataclass
class Roles:
    admin_url: str
    schema: str
    pipeline: str
    reader: str

    def apply(self) -> None:
        apply_roles(self.admin_url, self.schema, self.pipeline, self.reader)

    def reader_conn(self) -> psycopg.Connection[Any]:
        # No search_path of our own: the script gives the reader one, as a BI tool would find it.
        return psycopg.connect(as_user(self.admin_url, self.reader), autocommit=True)

    def drop(self) -> None:
        """The schema, then the roles (a role that owns or holds anything cannot be dropped)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
            for role in (self.pipeline, self.reader):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def roles(pg_schemas: PgSchemas) -> Iterator[Roles]:
    from asin_platform.resources.warehouse import Warehouse

    schema = pg_schemas.new()
    made = Roles(pg_schemas.url, schema, f"{pg_schemas.prefix}_pipeline", f"{pg_schemas.prefix}_reader")
    Warehouse(url=pg_schemas.url, pg_schema=schema).setup()  # tables owned by the admin user
    try:
        made.apply()
        made.apply()  # idempotent: the second run changes nothing and fails on nothing
        yield made
    finally:
        made.drop()


@pytest.fixture(scope="module")
def pipeline_wrote(roles: Roles) -> Roles:
    """The platform connected as the pipeline role: set-up check and one day of data written."""
    from asin_platform.resources.warehouse import Warehouse

    warehouse = Warehouse(url=as_user(roles.admin_url, roles.pipeline), pg_schema=roles.schema)
    warehouse.setup()
    key = {"site": ["US", "US"], "date": [DAY, DAY], "asin": ["B000000001", "B000000002"]}
    warehouse.upsert(
        "dim_asin", pl.DataFrame({**key, "title": ["Kettle", "Lamp"], "brand": ["A", "B"]}).drop("date")
    )
    slice_args: dict[str, Any] = {"sites": ["US"], "start": DAY, "end": DAY}
    mart = pl.DataFrame({**key, "price": [19.5, 7.25], "bsr_root": [1200, 45000]})
    warehouse.replace_slices("mart_timeseries_daily", mart, **slice_args)
    score = pl.DataFrame(
        {**key, "explosive_score": [3.5, 0.5], "rank_in_site": [1, 2], "reason": ["bsr", "-"]}
    )
    warehouse.replace_slices("score_baseline_daily", score, **slice_args)
    return roles


def owners(roles: Roles) -> dict[str, str]:
    with psycopg.connect(roles.admin_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'v')",
            [roles.schema],
        ).fetchall()
    return dict(rows)


def test_the_pipeline_owns_every_table_and_view_and_is_no_superuser(roles: Roles) -> None:
    owned = owners(roles)
    some = {"mart_timeseries_daily", "raw_payloads", "schema_migrations", "vw_top_candidates_daily"}
    assert some <= set(owned)
    assert set(owned.values()) == {roles.pipeline}
    with psycopg.connect(roles.admin_url) as conn:
        flags = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
            "WHERE rolname IN (%s, %s) ORDER BY rolname = %s",
            [roles.pipeline, roles.reader, roles.reader],
        ).fetchall()
    assert flags == [(roles.pipeline, False, False, False, True), (roles.reader, False, False, False, True)]


def test_the_reader_selects_the_dashboard_views(pipeline_wrote: Roles) -> None:
    with pipeline_wrote.reader_conn() as conn:
        top = conn.execute(
            "SELECT rank, asin, title, brand, price, bsr_root, explosive_score, reason "
            "FROM vw_top_candidates_daily WHERE site = 'US' AND date = %s ORDER BY rank",
            [DAY],
        ).fetchall()
        assert top == [
            (1, "B000000001", "Kettle", "A", 19.5, 1200, 3.5, "bsr"),
            (2, "B000000002", "Lamp", "B", 7.25, 45000, 0.5, "-"),
        ]
        assert conn.execute("SELECT count(*) FROM score_baseline_daily").fetchone() == (2,)
        empty = ("vw_pred_rank_daily", "vw_features_latest", "predictions_rank_daily", "model_evaluation")
        for name in empty:
            count = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
            assert conn.execute(count).fetchone() == (0,), name


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO mart_timeseries_daily (site, date, asin) VALUES ('US', '2025-03-11', 'B000000009')",
        "DELETE FROM mart_timeseries_daily",
        "UPDATE score_baseline_daily SET explosive_score = 99",
        "TRUNCATE mart_timeseries_daily",
        "DROP TABLE mart_timeseries_daily",
        "DROP VIEW vw_top_candidates_daily",
        "ALTER TABLE mart_timeseries_daily ADD COLUMN x int",
        "CREATE TABLE scratch (x int)",
        "SELECT count(*) FROM mart_timeseries_daily",  # only through the views
        "SELECT body FROM raw_payloads",
    ],
)
def test_the_reader_cannot_write_drop_or_read_the_mart(pipeline_wrote: Roles, statement: str) -> None:
    with pipeline_wrote.reader_conn() as conn, pytest.raises(errors.InsufficientPrivilege) as raised:
        conn.execute(statement)
    assert raised.value.sqlstate == INSUFFICIENT_PRIVILEGE
    # and nothing changed
    with psycopg.connect(pipeline_wrote.admin_url) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(pipeline_wrote.schema)))
        assert conn.execute("SELECT count(*) FROM mart_timeseries_daily").fetchone() == (2,)
        assert conn.execute("SELECT max(explosive_score) FROM score_baseline_daily").fetchone() == (3.5,)


def test_rerunning_the_script_takes_back_a_grant_made_by_hand(roles: Roles) -> None:
    table = sql.Identifier(roles.schema, "mart_timeseries_daily")
    with psycopg.connect(roles.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT, DELETE ON {} TO {}").format(table, sql.Identifier(roles.reader)))
    with roles.reader_conn() as conn:
        conn.execute("SELECT count(*) FROM mart_timeseries_daily")  # the hand-made grant works ...
    roles.apply()
    with roles.reader_conn() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM mart_timeseries_daily")  # ... until the script runs again


def test_the_script_refuses_to_narrow_a_superuser(roles: Roles) -> None:
    """The script forces NOSUPERUSER on both roles: naming the admin user by mistake must fail."""
    admin = psycopg.conninfo.conninfo_to_dict(roles.admin_url).get("user") or "postgres"
    with pytest.raises(errors.RaiseException, match="superuser or the user running this script"):
        apply_roles(roles.admin_url, roles.schema, admin, roles.reader)


def test_fresh_deployment_roles_first_then_the_pipeline_sets_up_then_roles_again(
    pg_schemas: PgSchemas,
) -> None:
    """The documented order on an empty database: the script creates the roles and the schema, the
    platform's first run creates the tables as the pipeline, the script's second run lets the
    reader see the views (until then they do not exist for it)."""
    from asin_platform.resources.warehouse import Warehouse

    prefix = f"{pg_schemas.prefix}_fresh"
    roles = Roles(pg_schemas.url, pg_schemas.new(), f"{prefix}_pipeline", f"{prefix}_reader")
    try:
        roles.apply()  # nothing of the warehouse exists yet
        Warehouse(url=as_user(roles.admin_url, roles.pipeline), pg_schema=roles.schema).setup()
        assert set(owners(roles).values()) == {roles.pipeline}  # created by the pipeline itself
        with roles.reader_conn() as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM vw_top_candidates_daily")
        roles.apply()
        with roles.reader_conn() as conn:
            assert conn.execute("SELECT count(*) FROM vw_top_candidates_daily").fetchone() == (0,)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("DELETE FROM mart_timeseries_daily")
    finally:
        roles.drop()
