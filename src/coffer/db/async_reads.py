"""Reads awaited on the event loop: the same sync read code, without a worker thread.

A `def` route runs in the thread pool: a hand-off to a worker thread and back, then each
statement releasing and re-taking the GIL against forty other threads. For a read of a row or
two that was most of a request's CPU (bench/README.md, "Reads on the event loop"). On
PostgreSQL `AsyncReads.run(read, ...)` runs the very function `Database.read()` would run,
`read(session, ...)`, inside SQLAlchemy's greenlet bridge (`AsyncSession.run_sync`) over
psycopg's async driver: its statements are awaited on the event loop, which serves other
requests meanwhile. The connections are the read pool's kind (autocommit, read-only).

SQLite has no async driver here (and its reads are calls into a file, not a network wait):
`Database.read_async` runs its reads in the thread pool as before, and this is not enabled.

The hottest reads skip even that: `AsyncReads.fetch(statement, params)` runs one prebuilt
SELECT straight on a psycopg async pool (`psycopg_pool`), its SQL compiled once by SQLAlchemy
and its columns' result processors applied to the rows, and answers them as mappings. The
session, the greenlet hop and SQLAlchemy's result machinery were ~400 µs of a balance's
~1 ms of CPU (bench/README.md, "The balance straight over psycopg"). Its connections are the same
kind (autocommit, read-only, UTC), pinged before use only after PING_AFTER_IDLE_S idle.

Pooled async connections belong to the event loop that opened them. A process has one loop;
tests open one per app, so an engine and a pool are made for the loop they are first used on,
and `aclose()` (the app's shutdown) closes them on that loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Dialect, Select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from coffer.ledger import LedgerUnavailable

P = ParamSpec("P")
T = TypeVar("T")
# `fetch` takes prebuilt statements only (each compiled once and kept): a bound on those.
STATEMENTS_MAX = 64


@dataclass(frozen=True)
class PoolOptions:
    """What `fetch`'s psycopg pool connects with (db/engine.py fills it in)."""

    conninfo: str
    connect_kwargs: dict[str, Any]
    dialect: Dialect
    size_max: int
    timeout_s: float
    ping_after_idle_s: float


@dataclass(frozen=True)
class _Query:
    sql: str
    defaults: dict[str, Any]  # the values bound when the statement was built
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


class AsyncReads:
    def __init__(
        self, make_engine: Callable[[], AsyncEngine] | None, pool: PoolOptions | None = None
    ) -> None:
        """`make_engine` makes the async read engine and `pool` says how `fetch` connects;
        None: not enabled (SQLite)."""
        self._make_engine = make_engine
        self._engine: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool_options = pool
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._queries: dict[Select[Any], _Query] = {}
        self._idle_since: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def run(
        self, read: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(session, *args, **kwargs)` in a read-only session; its result."""
        async with AsyncSession(self._engine_for_this_loop(), expire_on_commit=False) as session:
            return await session.run_sync(read, *args, **kwargs)

    async def fetch(
        self, statement: Select[Any], params: Mapping[str, str | int]
    ) -> list[dict[str, Any]]:
        """The rows of a prebuilt SELECT (made once, e.g. under `functools.cache`) as dicts of
        its columns' keys, as SQLAlchemy would have given them back."""
        assert all(type(v) in (str, int) for v in params.values()), "plain values only"
        query = self._queries.get(statement) or self._compile(statement)
        pool = await self._pool_for_this_loop()
        try:
            async with pool.connection() as connection:
                bound = {**query.defaults, **params}
                cursor = await connection.execute(query.sql, bound, prepare=True)
                rows = await cursor.fetchall()
                self._idle_since[connection] = time.monotonic()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # The server went away under the connection, or none came in time: a 503 to retry
            # (the pool drops a broken connection when it comes back).
            raise LedgerUnavailable("the database did not answer; retry") from exc
        names, processors = query.names, query.processors
        return [
            {
                name: value if process is None or value is None else process(value)
                for name, process, value in zip(names, processors, row, strict=True)
            }
            for row in rows
        ]

    @property
    def enabled(self) -> bool:
        return self._make_engine is not None

    async def aclose(self) -> None:
        """Close this loop's connections (an app's shutdown)."""
        engine, self._engine, self._loop = self._engine, None, None
        if engine is not None:
            await engine.dispose()
        pool, self._pool, self._pool_loop = self._pool, None, None
        if pool is not None:
            await pool.close()

    def _compile(self, statement: Select[Any]) -> _Query:
        assert self._pool_options is not None
        assert len(self._queries) < STATEMENTS_MAX, "fetch takes prebuilt statements only"
        dialect = self._pool_options.dialect
        compiled = statement.compile(dialect=dialect)
        assert compiled.positiontup is None, "named parameters, as psycopg's %(name)s takes them"
        columns = list(statement.selected_columns)
        defaults = {name: value for name, value in compiled.params.items() if value is not None}
        assert all(type(v) in (str, int) for v in defaults.values()), "plain values only"
        query = _Query(
            sql=str(compiled),
            defaults=defaults,
            names=tuple(str(column.key) for column in columns),
            processors=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            ),
        )
        assert len(set(query.names)) == len(query.names), "each column needs its own key"
        self._queries[statement] = query
        return query

    async def _pool_for_this_loop(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        options = self._pool_options
        assert options is not None
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                options.conninfo,
                kwargs=options.connect_kwargs,
                min_size=1,
                max_size=options.size_max,
                timeout=options.timeout_s,
                configure=self._opened,
                check=self._ping_if_idle,
                open=False,
                name="coffer-reads",
            )
            self._pool, self._pool_loop = pool, loop
            await pool.open(wait=False)
        return self._pool

    async def _opened(self, connection: AsyncConnection[Any]) -> None:
        self._idle_since[connection] = time.monotonic()

    async def _ping_if_idle(self, connection: AsyncConnection[Any]) -> None:
        """The pool's check at checkout: a round trip only after PING_AFTER_IDLE_S idle (a
        connection that fails it is discarded and another one given)."""
        assert self._pool_options is not None
        idle_since = self._idle_since.get(connection, 0.0)
        if time.monotonic() - idle_since < self._pool_options.ping_after_idle_s:
            return
        await AsyncConnectionPool.check_connection(connection)

    def _engine_for_this_loop(self) -> AsyncEngine:
        assert self._make_engine is not None
        loop = asyncio.get_running_loop()
        if self._engine is None or self._loop is not loop:
            if self._engine is not None:
                # Its loop is gone or elsewhere: its connections cannot be closed from here.
                self._engine.sync_engine.dispose(close=False)
            self._engine, self._loop = self._make_engine(), loop
        return self._engine
