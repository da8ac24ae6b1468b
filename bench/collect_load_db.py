"""The bench's databases: two fresh stores (SQLite files, or new schemas in a PostgreSQL
database), filled with annotators and items, and the vote count check afterwards."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, func, select

from collect.assign import add_items
from collect.store import User, Vote, open_store, store_url
from collect.users import hash_password

PASSWORD = "load test password"


def make_db(path: Path | str, n_items: int, names: list[str]) -> None:
    store = open_store(path)
    # One cheap hash for all (the parameters live in the hash): the bench measures voting;
    # 32 log-ins at the production cost would eat a fifth of the time budget on 2 cores.
    hashed = hash_password(PASSWORD, n=2**10)
    with store.write() as s:
        s.add_all(User(name=n, role="annotator", password_hash=hashed) for n in names)
    filler = "Thanks for reaching out! Our store on Main Street opens at 9am on weekdays. " * 3
    add_items(store, [{"id": f"load-{k:05d}", "prompt": f"When do you open on day {k}?",
                       "response_a": f"A {k}. {filler}", "response_b": f"B {k}. {filler}"}
                      for k in range(n_items)])
    store.close()


def check_db(path: Path | str, acked: int) -> dict:
    """Votes in the database against acknowledged submits."""
    store = open_store(path)
    with store.read() as s:
        rows = s.scalar(select(func.count()).select_from(Vote))
        active = s.scalar(select(func.count()).select_from(Vote).where(Vote.active))
        dup = s.execute(select(Vote.item_id, Vote.annotator).where(Vote.active)
                        .group_by(Vote.item_id, Vote.annotator).having(func.count() > 1)).all()
    store.close()
    return {"db_votes": rows, "lost": max(0, acked - active),
            "duplicated": len(dup) + max(0, rows - acked)}


@contextmanager
def databases(tmp: Path, url: str | None):
    """Two fresh stores, {"direct": ..., "http": ...}: SQLite files in tmp, or new schemas in
    the PostgreSQL database at url (dropped when the bench ends)."""
    if url is None:
        yield {mode: tmp / f"{mode}.db" for mode in ("direct", "http")}
        return
    url = store_url(url)
    schemas = {mode: f"bench_{mode}_{uuid.uuid4().hex[:8]}" for mode in ("direct", "http")}
    admin = create_engine(url)
    with admin.begin() as conn:
        for schema in schemas.values():
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield {mode: f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
               for mode, schema in schemas.items()}
    finally:
        with admin.begin() as conn:
            for schema in schemas.values():
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
