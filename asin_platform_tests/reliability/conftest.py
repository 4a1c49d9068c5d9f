"""A throwaway PostgreSQL database per test: the CLI always uses the ``public`` schema of its URL's
database, so a random schema of the shared test database cannot be selected."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from asin_platform_tests.conftest import POSTGRES_SKIP_MESSAGE, POSTGRES_URL_ENV


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(POSTGRES_SKIP_MESSAGE)
    import psycopg

    from asin_platform_tests.ops.stack import database_url

    name = f"asin_reliab_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
