"""The collect store's tests on both databases: SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL is the server named by RLHF_TEST_PG_URL (.ci/postgres.sh start prints one, and
.ci/run exports it). Each test gets a schema of its own in that database (a search_path on the
URL), dropped when the test ends, so tests never see each other's rows. Without a reachable
server the PostgreSQL cases are skipped with the reason; under CI (CI=true) they fail instead,
so a CI machine that lost its server cannot pass by skipping.

Use: `from databases import db_url  # noqa: F401` in a test module, then take `db_url` (a
SQLite path or a PostgreSQL URL, one test per database) or call `fresh_pg_url()` directly.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from core.config import mask_url

PG_ENV = "RLHF_TEST_PG_URL"
DATABASES = ("sqlite", "postgresql")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@lru_cache(maxsize=1)
def pg_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    url = os.environ.get(PG_ENV, "")
    if not url:
        return f"{PG_ENV} is not set (start a server with `.ci/postgres.sh start`, export its URL)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (make setup installs it from requirements.lock)"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as e:
        first = (str(e.orig).strip().splitlines() or [""])[0]
        return f"no PostgreSQL server at {mask_url(url)}: {mask_url(first)}"
    finally:
        engine.dispose()
    return None


def require_pg() -> str:
    """The server's URL; skips the test when there is none, fails it under CI."""
    why = pg_unavailable()
    if why is not None:
        if under_ci():
            pytest.fail(f"CI=true needs PostgreSQL for this test: {why}")
        pytest.skip(why)
    return os.environ[PG_ENV]


@contextmanager
def fresh_pg_url() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema; the schema is dropped afterwards."""
    url = require_pg()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        try:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            admin.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path) -> Iterator[str]:
    """Where a test's store lives: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "sub" / "annotations.db")
    else:
        with fresh_pg_url() as url:
            yield url


@pytest.fixture(scope="module", params=DATABASES)
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """db_url for a module's one server: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("db") / "annotations.db")
    else:
        with fresh_pg_url() as url:
            yield url


def store_with(url: str, names: list[str], n_items: int):
    """A store at `url` with annotators `names` (no passwords) and items i0..i{n_items-1}."""
    from collect.assign import add_items
    from collect.store import User, open_store

    store = open_store(url)
    with store.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash="-") for n in names)
    add_items(store, [{"id": f"i{k}", "prompt": f"q{k}", "response_a": "A", "response_b": "B"}
                      for k in range(n_items)])
    return store
