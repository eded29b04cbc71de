"""Engines and units of work for SQLite (the default, a file in WAL mode) and PostgreSQL.

Every write transaction on SQLite begins IMMEDIATE: it takes the database's write lock up front,
so two writers queue on the busy timeout instead of deadlocking when both try to upgrade a read
lock. Reads begin DEFERRED and see a snapshot (WAL), never blocking writers. On PostgreSQL writes
run at READ COMMITTED with explicit, ordered row locks; `snapshot()` reads at REPEATABLE READ.

PostgreSQL reads have a pool of their own: read-only connections (`default_transaction_read_only`,
so a write slipped into a read fails instead of committing) in autocommit. At READ COMMITTED each
statement sees its own snapshot whether or not a transaction is open, so the BEGIN and ROLLBACK
around a read bought nothing but two round trips. A read that needs one instant for several
statements, or that streams its rows (`yield_per`: a server-side cursor lives in a transaction),
asks for `snapshot()`. A pooled connection is pinged before use only when it has been
idle for PING_AFTER_IDLE_S (a connection in steady use proves itself with every statement, and a
ping on every checkout was a round trip per request); one that fails is replaced, and a failure
of a connection in use (the server restarted under load) invalidates the whole pool, so at most the
requests that were on those connections see a 503.

SQLite durability is `PRAGMA synchronous=FULL` unless the URL asks for NORMAL
(`sqlite:///./coffer.db?synchronous=NORMAL`). In WAL mode, FULL syncs the log at every commit:
a committed transfer survives a crash of the process, of the operating system and a power cut.
NORMAL syncs only at checkpoints: a commit still survives the process crashing (the log is in the
operating system's cache), but the last transactions before an operating-system crash or a power
cut may be lost (never corrupted: the database rolls back to an earlier commit). NORMAL is for
development and for data you can replay; FULL is the default because a ledger acknowledges money.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from coffer.db.async_reads import AsyncReads, PoolOptions

SQLITE_BUSY_TIMEOUT_S = 30
# At least the sync routes' thread pool (COFFER_THREADS) plus the writer and the jobs: a pool
# smaller than its users opens and closes overflow connections all the time (on SQLite each
# one re-runs its PRAGMAs: measured as 5 % of a gift's CPU under load).
POOL_SIZE = 20
POOL_OVERFLOW_MAX = 20
POOL_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
# PostgreSQL reads: their own pool (see the module docstring). Up to the thread pool's 40
# sync routes may read at once; most reads now await on the event loop (ASYNC_READ_POOL_SIZE).
READ_POOL_SIZE = 10
READ_POOL_OVERFLOW_MAX = 30
# Reads awaited on the event loop are not capped by the thread pool: with an overflow, 64
# concurrent gifts opened and closed a connection (a PostgreSQL backend) per request. They wait
# in line on the event loop for one of these instead (a plan's reads take a millisecond).
ASYNC_READ_POOL_SIZE = 10
# The hottest reads (`fetch_async`: a balance) on a psycopg pool of their own, as capped.
FETCH_POOL_SIZE = 10
FETCH_POOL_NAME = "coffer-reads"
PING_AFTER_IDLE_S = 10.0
_IDLE_SINCE = "coffer_idle_since"
_READ_ONLY = "coffer_read_only"
P = ParamSpec("P")
T = TypeVar("T")
# `synchronous` in a SQLite URL's query; OFF is not offered (an OS crash can corrupt the file).
SQLITE_SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
SQLITE_SYNCHRONOUS_DEFAULT = "FULL"


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` URLs for the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    parsed = make_url(url)
    synchronous = str(parsed.query.get("synchronous", SQLITE_SYNCHRONOUS_DEFAULT)).upper()
    if synchronous not in SQLITE_SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS_MODES)}")
    parsed = parsed.difference_update_query(["synchronous"])
    engine = create_engine(
        parsed,
        echo=echo,
        hide_parameters=True,  # bound values (ids, reasons, secrets' hashes) stay out of logs
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW_MAX,
        pool_timeout=POOL_TIMEOUT_S,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is always DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            # FULL (the default): a committed transfer survives a power cut, not only a crash of
            # the process. NORMAL, when the URL asks for it: see the module docstring.
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _postgres_options(*, read_only: bool) -> dict[str, Any]:
    options = "-c timezone=UTC"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return {
        "echo": False,
        "hide_parameters": True,  # bound values (ids, reasons, secrets' hashes) stay out of logs
        "pool_size": READ_POOL_SIZE if read_only else POOL_SIZE,
        "max_overflow": READ_POOL_OVERFLOW_MAX if read_only else POOL_OVERFLOW_MAX,
        "pool_timeout": POOL_TIMEOUT_S,
        "isolation_level": "AUTOCOMMIT" if read_only else "READ COMMITTED",
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S, "options": options},
    }


def _postgres_engine(url: str, *, echo: bool, read_only: bool = False) -> Engine:
    engine = create_engine(url, **{**_postgres_options(read_only=read_only), "echo": echo})
    _ping_after_idle(engine)
    return engine


def _postgres_async_read_engine(url: str) -> AsyncEngine:
    options = {**_postgres_options(read_only=True), "pool_size": ASYNC_READ_POOL_SIZE}
    engine = create_async_engine(url, **{**options, "max_overflow": 0})
    _ping_after_idle(engine.sync_engine)
    return engine


def _postgres_fetch_pool(url: str, engine: Engine) -> PoolOptions:
    """How `fetch_async`'s psycopg pool connects: as the read pool does, on libpq's own URL."""
    options = _postgres_options(read_only=True)
    return PoolOptions(
        conninfo=make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
        # Named, so pg_stat_activity tells these connections from the other pools'.
        connect_kwargs={
            "autocommit": True,
            "application_name": FETCH_POOL_NAME,
            **options["connect_args"],
        },
        dialect=engine.dialect,
        size_max=FETCH_POOL_SIZE,
        timeout_s=POOL_TIMEOUT_S,
        ping_after_idle_s=PING_AFTER_IDLE_S,
    )


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it sat idle for PING_AFTER_IDLE_S.

    Raising DisconnectionError from a checkout listener makes the pool discard the connection
    and check out another (SQLAlchemy's documented custom pessimistic ping)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError("the pooled connection is gone") from error
        if not alive:
            raise DisconnectionError("the pooled connection is gone")


@dataclass(frozen=True)
class Database:
    """One database: its engine and the sessions the edges use to own their transactions."""

    engine: Engine
    writer: sessionmaker[Session]
    reader: sessionmaker[Session]
    # The engine reads run on: `engine` itself on SQLite, a read-only pool on PostgreSQL.
    read_engine: Engine
    # `read_async`: on PostgreSQL a read awaited on the event loop (db/async_reads.py).
    async_reads: AsyncReads

    @classmethod
    def connect(cls, url: str, *, echo: bool = False) -> Database:
        url = normalise_url(url)
        name = make_url(url).get_backend_name()
        read_engine: Engine
        if name == "sqlite":
            engine = _sqlite_engine(url, echo=echo)
            read_engine = engine.execution_options(**{_READ_ONLY: True})
        elif name == "postgresql":
            engine = _postgres_engine(url, echo=echo)
            read_engine = _postgres_engine(url, echo=echo, read_only=True)
        else:
            raise ValueError(f"unsupported database {name!r}: use sqlite or postgresql")
        make_async = (lambda: _postgres_async_read_engine(url)) if name == "postgresql" else None
        pool = _postgres_fetch_pool(url, engine) if name == "postgresql" else None
        return cls(
            engine=engine,
            writer=sessionmaker(bind=engine, expire_on_commit=False),
            reader=sessionmaker(bind=read_engine, expire_on_commit=False),
            read_engine=read_engine,
            async_reads=AsyncReads(make_async, pool),
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def awaits_reads(self) -> bool:
        """Reads are awaited on the event loop (PostgreSQL), so one more costs a round trip;
        False (SQLite): each `read_async`/`fetch_async` is a hop to the thread pool."""
        return self.async_reads.enabled

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One write transaction: committed if the block succeeds, rolled back if it raises."""
        with self.writer() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never commits anything)."""
        with self.reader() as session:
            try:
                yield session
            finally:
                session.rollback()

    async def read_async(
        self, read: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(session, ...)` as `read()` would run it, for an `async def` route: on
        PostgreSQL awaited on the event loop, on SQLite in the thread pool."""
        if self.async_reads.enabled:
            return await self.async_reads.run(read, *args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(self._read, read, *args, **kwargs))

    async def fetch_async(
        self, statement: Select[Any], params: Mapping[str, str | int]
    ) -> Sequence[Mapping[Any, Any]]:
        """The rows of one prebuilt SELECT, for an `async def` route's hottest reads: on
        PostgreSQL straight over psycopg on the event loop (db/async_reads.py), on SQLite in
        the thread pool; the same mappings either way."""
        if self.async_reads.enabled:
            return await self.async_reads.fetch(statement, params)
        return await anyio.to_thread.run_sync(functools.partial(self._fetch, statement, params))

    def _fetch(
        self, statement: Select[Any], params: Mapping[str, str | int]
    ) -> Sequence[Mapping[Any, Any]]:
        with self.read() as session:
            return session.execute(statement, params).mappings().all()

    async def write_async(
        self, write: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`write(session, ...)` in a `unit_of_work()`, in the thread pool, for an `async def`
        route (money moves go through the writer instead: db/writer.py)."""
        return await anyio.to_thread.run_sync(
            functools.partial(self._write, write, *args, **kwargs)
        )

    def _write(
        self, write: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.unit_of_work() as session:
            return write(session, *args, **kwargs)

    def _read(
        self, read: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.read() as session:
            return read(session, *args, **kwargs)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read transaction that sees one consistent instant, for audits and `verify`."""
        with self.reader() as session:
            if self.dialect == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                yield session
            finally:
                session.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.dialect == "postgresql":
            self.read_engine.dispose()
