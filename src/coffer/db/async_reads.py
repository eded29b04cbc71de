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

Pooled async connections belong to the event loop that opened them. A process has one loop;
tests open one per app, so an engine is made for the loop it is first used on, and `aclose()`
(the app's shutdown) closes it on that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

P = ParamSpec("P")
T = TypeVar("T")


class AsyncReads:
    def __init__(self, make_engine: Callable[[], AsyncEngine] | None) -> None:
        """`make_engine` makes the async read engine; None: not enabled (SQLite)."""
        self._make_engine = make_engine
        self._engine: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(
        self, read: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(session, *args, **kwargs)` in a read-only session; its result."""
        async with AsyncSession(self._engine_for_this_loop(), expire_on_commit=False) as session:
            return await session.run_sync(read, *args, **kwargs)

    @property
    def enabled(self) -> bool:
        return self._make_engine is not None

    async def aclose(self) -> None:
        """Close this loop's connections (an app's shutdown)."""
        engine, self._engine, self._loop = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    def _engine_for_this_loop(self) -> AsyncEngine:
        assert self._make_engine is not None
        loop = asyncio.get_running_loop()
        if self._engine is None or self._loop is not loop:
            if self._engine is not None:
                # Its loop is gone or elsewhere: its connections cannot be closed from here.
                self._engine.sync_engine.dispose(close=False)
            self._engine, self._loop = self._make_engine(), loop
        return self._engine
