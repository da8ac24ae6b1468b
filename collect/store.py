"""The annotation store: SQLAlchemy 2 ORM over SQLite (WAL) by default, or PostgreSQL
(`postgresql+psycopg://user:pass@host/db`); see docs/collect-store.md.

Every write is one short transaction (`Store.transact`), so a process killed mid-write loses
no committed vote and leaves nothing half-written. What keeps concurrent writers correct:

- SQLite: a write transaction starts with BEGIN IMMEDIATE. It takes the database's single write
  lock before its first read, so writers are serialized and a check-then-insert (is this item
  still under its overlap?) cannot interleave with another writer's. Within one process the
  writers first take turns on a threading.Lock: SQLite's busy handler sleeps between polls,
  and a lock hands over at once.
- PostgreSQL (READ COMMITTED): explicit row locks (FOR UPDATE SKIP LOCKED) only spread writers
  out; correctness never rests on them. Claiming an item's slot is one conditional UPDATE
  (`n_assigned = n_assigned + 1 WHERE n_assigned < cap`, collect/assign.py `_claim`): a second
  writer blocks on the row lock the first one's UPDATE took and then re-checks the condition
  against the committed row, so no item goes over its overlap. Releasing an assignment and
  voting on it are conditional UPDATEs of its row in the same way (collect/lease.py). Every
  other check-then-insert is backed by a unique constraint (one assignment per item and
  annotator, one active vote per assignment, unique user names and item ids); the loser's
  IntegrityError rolls its transaction back and `transact` re-runs it, and the re-run sees the
  winner's row. Deadlocks and serialization failures are retried like SQLite's BUSY.

The audit log is append-only in the database itself: triggers refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL), whatever client writes to it.

Times are unix seconds (float, UTC): unambiguous across databases and easy to subtract for the
undo window. JSON columns hold aspects {aspect: 1..5, or null when not rated}, harm flags and
free-form details.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (JSON, Boolean, CheckConstraint, Float, ForeignKey, ForeignKeyConstraint,
                        Index, Integer, String, Text, UniqueConstraint, create_engine, event,
                        false, inspect, select, text)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateColumn

from core.config import UserError, mask_url

ROLES = ("annotator", "reviewer", "admin")
CHOICES = ("a", "b", "tie", "both_bad")  # canonical order: a/b are the item's own responses
SIDES = ("a", "b")
DECISIONS = ("confirm_harmful", "dismiss", "reference_answer")

T = TypeVar("T")

# SQLITE_BUSY that outlived busy_timeout (a long checkpoint, a slow disk): worth a few retries
# before failing a vote the annotator has already typed in.
_BUSY_RETRIES = 5


class CollectError(UserError):
    """A request the caller can fix (bad rating, duplicate id, nothing to undo ...)."""


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {ROLES}", name="user_role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Log-in sessions that began before this time are over (a password reset or a disabled
    # account sets it: collect/users.py); 0 = none ended.
    sessions_from: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))


class Item(Base):
    __tablename__ = "items"
    # The work queue: the newest annotation round first (the loop waits for its votes), then
    # regular items by how many annotators already have them, fullest first.
    __table_args__ = (Index("items_queue_rounds", "is_gold", "review_only", text("round DESC"),
                            text("n_assigned DESC"), "created_at", "id"),)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    response_a: Mapped[str] = mapped_column(Text)
    response_b: Mapped[str] = mapped_column(Text)
    source_a: Mapped[str] = mapped_column(String(200), default="")
    source_b: Mapped[str] = mapped_column(String(200), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    # One flagged output for the safety reviewers (eval/safety.py), never handed to annotators.
    review_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    gold_choice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The annotation round that made the item (1, 2, ...): the loop's rounds compare each
    # round's new policies, and the export and the admin's progress say which round a pair is.
    round: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # Assignments so far, kept in the assignment's own transaction: counting them per item on
    # every request would scan the whole assignments table (40 ms at 5k items).
    n_assigned: Mapped[int] = mapped_column(Integer, default=0)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "annotator", name="one_assignment"),
                      Index("assignments_open", "annotator", "done", "assigned_at"),
                      Index("assignments_lease", "done", "released", "assigned_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    annotator: Mapped[str] = mapped_column(ForeignKey("users.name"))
    swapped: Mapped[bool] = mapped_column(Boolean)  # True: response b was shown on the left
    # When the item was last handed to the annotator (assigned, handed again after a release, or
    # back after an undo): the lease (collect/lease.py) runs from here.
    assigned_at: Mapped[float] = mapped_column(Float, default=now)
    # "Has an active vote", set by submit and cleared by undo in their own transactions:
    # finding the open assignment by anti-joining votes cost O(assignments) per request.
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    # Given back to the queue without a vote (its lease ran out, or the account was disabled):
    # it no longer holds a slot on the item. The row stays, since undone votes refer to it; the
    # same annotator may be handed the item again (the row is then taken up again).
    released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Released because the annotator skipped the item (could not judge it): never handed to
    # them again (collect/lease.py skip).
    skipped: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint(f"choice IN {CHOICES}", name="vote_choice"),
        # A vote exists only for an assignment: nobody votes on an item they were not given.
        ForeignKeyConstraint(["item_id", "annotator"],
                             ["assignments.item_id", "assignments.annotator"]),
        # History is kept (undone votes stay, inactive), but at most one vote counts.
        Index("one_active_vote", "item_id", "annotator", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
        Index("votes_by_annotator", "annotator", "active"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200))
    annotator: Mapped[str] = mapped_column(String(64))
    choice: Mapped[str] = mapped_column(String(16))
    swapped: Mapped[bool] = mapped_column(Boolean)
    aspects_a: Mapped[dict[str, Any]] = mapped_column()
    aspects_b: Mapped[dict[str, Any]] = mapped_column()
    harm_flags: Mapped[list[Any]] = mapped_column(default=list)
    rationale: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    submitted_at: Mapped[float] = mapped_column(Float, default=now)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    replaced_by: Mapped[int | None] = mapped_column(ForeignKey("votes.id"), nullable=True)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint(f"decision IN {DECISIONS}", name="review_decision"),
                      CheckConstraint(f"side IN {SIDES}", name="review_side"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), index=True)
    side: Mapped[str] = mapped_column(String(1))
    reviewer: Mapped[str] = mapped_column(ForeignKey("users.name"))
    decision: Mapped[str] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reference_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[float] = mapped_column(Float, default=now)


class Flag(Base):
    """An output flagged outside the app: by the eval stage's safety audit, or `collect import` of a
    review-only item."""
    __tablename__ = "flags"
    __table_args__ = (CheckConstraint(f"side IN {SIDES}", name="flag_side"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), index=True)
    side: Mapped[str] = mapped_column(String(1))
    source: Mapped[str] = mapped_column(String(64), default="eval")
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float, default=now)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, default=now)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


_AUDIT_INSERT = AuditEntry.__table__.insert()

# The database itself refuses to rewrite history, not only the Python API.
_APPEND_ONLY = [f"""CREATE TRIGGER IF NOT EXISTS audit_log_no_{op} BEFORE {op.upper()} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""" for op in ("update", "delete")]

_PG_APPEND_ONLY_FN = """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"""
# name -> DDL; created when missing (CREATE TRIGGER has no IF NOT EXISTS on PostgreSQL).
_PG_APPEND_ONLY = {
    "audit_log_no_update_delete": """CREATE TRIGGER audit_log_no_update_delete
BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    "audit_log_no_truncate": """CREATE TRIGGER audit_log_no_truncate
BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
}


class Store:
    """An engine plus short transactions. Thread-safe: every call opens its own Session."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._write_lock is None:
            with self._write_sessions() as session, session.begin():
                yield session
            return
        with self._write_lock, self._write_sessions() as session, session.begin():
            yield session

    def transact(self, fn: Callable[[Session], T], retry_integrity: int = 0) -> T:
        """fn(session) in one write transaction, retried on a lost race (IntegrityError, up
        to retry_integrity times: fn re-reads and sees the winner's row) or a busy database."""
        busy = integrity = 0
        while True:
            try:
                with self.write() as session:
                    return fn(session)
            except IntegrityError:
                integrity += 1
                if integrity > retry_integrity:
                    raise
            except OperationalError as e:
                busy += 1
                if busy > _BUSY_RETRIES or not _is_busy(e):
                    raise
                time.sleep(0.05 * busy)

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """Newest first. There is deliberately no update or delete for the audit log."""
        with self.read() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc())
            return list(s.scalars(q.limit(limit) if limit else q))

    def integrity_check(self) -> str:
        """'ok' when SQLite's integrity_check passes (other databases: 'ok' if reachable)."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT 1"))
                return "ok"
            return "\n".join(r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check"))

    def close(self) -> None:
        self.engine.dispose()


def audit(session: Session, actor: str, action: str, **detail: Any) -> None:
    """Append to the audit log inside the caller's transaction (it commits with the change).
    A plain INSERT, not an ORM object: nothing reads the row back, and the unit of work
    would cost a flush per change."""
    session.connection().execute(_AUDIT_INSERT, {"at": now(), "actor": actor,
                                                 "action": action, "detail": detail})


def _is_busy(e: OperationalError) -> bool:
    """SQLite's BUSY/locked, PostgreSQL's deadlock and serialization failures: the
    transaction was rolled back as a whole and running it again is safe."""
    code = getattr(e.orig, "sqlstate", None)  # psycopg: 40P01 deadlock, 40001 serialization
    if code in ("40P01", "40001"):
        return True
    msg = str(e.orig).lower()
    return "locked" in msg or "busy" in msg


def store_url(url_or_path: str | Path) -> str:
    """A SQLAlchemy URL: a path as SQLite's; a bare postgresql:// (postgres://) URL gets the
    psycopg 3 driver this project installs, other URLs stay as they are."""
    url = str(url_or_path)
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).expanduser().resolve()}"


def store_exists(url_or_path: str | Path) -> bool:
    """Whether a store was ever opened there, without creating anything: for SQLite whether
    the file exists, elsewhere whether the server is reachable and has the store's tables.
    Unreachable servers raise CollectError (with the password masked)."""
    url = store_url(url_or_path)
    engine = _engine(url)
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        return db not in (None, "", ":memory:") and Path(db).exists()
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table(Item.__tablename__)
    except DBAPIError as e:
        raise CollectError(f"cannot reach the store at {mask_url(url)}: "
                           f"{mask_url(_first_line(e.orig))}") from None
    finally:
        engine.dispose()


def _engine(url: str) -> Engine:
    """An engine (no connection yet); a malformed URL or a missing driver is a CollectError."""
    try:
        return create_engine(url)
    except ArgumentError as e:
        raise CollectError(f"not a database URL: {mask_url(url)} ({e})") from None
    except ImportError as e:  # the URL's driver is not installed
        raise CollectError(f"cannot open the store at {mask_url(url)}: {e} (PostgreSQL: "
                           "postgresql+psycopg://..., from pip install 'rlhf-loop[postgres]')") from None


def _first_line(e: BaseException | None) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def open_store(url_or_path: str | Path) -> Store:
    """A Store on a SQLAlchemy URL ('postgresql+psycopg://...') or a SQLite file path (dirs
    created); tables and triggers are created when missing."""
    url = store_url(url_or_path)
    if "://" not in str(url_or_path):
        path = Path(make_url(url).database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A new store is readable by its owner only: it holds password hashes, votes and
        # rationales (SQLite gives its -wal and -shm files the database file's mode)
        path.touch(mode=0o600, exist_ok=True)
    engine = _engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine)
    busy = 0
    while True:
        try:
            _create_schema(engine)
            return Store(engine)
        except OperationalError as e:
            # A new SQLite file switching to WAL while another process does the same can
            # answer BUSY without waiting on busy_timeout: try again after a moment.
            busy += 1
            if not _is_busy(e) or busy > _BUSY_RETRIES:
                engine.dispose()
                raise CollectError(f"cannot open the store at {mask_url(url)}: "
                                   f"{mask_url(_first_line(e.orig))}") from None
            time.sleep(0.05 * busy)


# Key of the PostgreSQL advisory lock that serializes schema set-up between processes.
_SCHEMA_LOCK = 0x726C6866  # "rlhf"


def _create_schema(engine: Engine) -> None:
    """Tables, new columns and the audit triggers, whatever is missing, in one transaction.
    Processes opening a new store at once take turns (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock), so the second finds the first one's tables instead of racing to create
    them."""
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        Base.metadata.create_all(conn)
        _add_new_columns(conn)
        _current_indexes(conn)
        _append_only(conn)


def _append_only(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for ddl in _APPEND_ONLY:
            conn.exec_driver_sql(ddl)
    elif conn.dialect.name == "postgresql":
        for name, ddl in _PG_APPEND_ONLY.items():
            if not _pg_has_trigger(conn, name):
                conn.exec_driver_sql(_PG_APPEND_ONLY_FN)
                conn.exec_driver_sql(ddl)


def _pg_has_trigger(conn: Connection, name: str) -> bool:
    q = text("SELECT 1 FROM pg_trigger WHERE tgname = :name "
             "AND tgrelid = to_regclass(current_schema() || '.audit_log')")
    return conn.execute(q, {"name": name}).first() is not None


# Columns added after stores were first created: create_all makes missing tables, not missing
# columns, so a store from an older version gets them here (with their server default);
# _current_indexes then builds the indexes over them.
_NEW_COLUMNS = (Item.__table__.c.review_only, Item.__table__.c.round, User.__table__.c.sessions_from,
                Assignment.__table__.c.released, Assignment.__table__.c.skipped)


def _add_new_columns(conn: Connection) -> None:
    for col in _NEW_COLUMNS:
        if col.name in {c["name"] for c in inspect(conn).get_columns(col.table.name)}:
            continue
        ddl = CreateColumn(col).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {col.table.name} ADD COLUMN {ddl}")


# Indexes a newer version replaced: dropped when a store from before is opened.
_OLD_INDEXES = ("items_queue",)


def _current_indexes(conn: Connection) -> None:
    """The indexes of this version, on a store made by an older one (create_all makes the
    indexes of the tables it creates, not new indexes of tables that exist)."""
    for name in _OLD_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take BEGIN away from the sqlite3 module (it would open transactions lazily, at the
        # first write, too late for a race-free check-then-insert) and issue it in "begin".
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # First: switching to WAL below needs the lock another process may hold a moment.
        cur.execute("PRAGMA busy_timeout=5000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        # NORMAL in WAL mode: a killed process loses nothing committed; only a power cut can
        # drop the last transactions (never corrupt the file). FULL would fsync every vote.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
