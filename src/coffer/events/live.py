"""Wake-ups for this process's live streams (SSE, WebSocket): who to wake, and when.

The payload never travels. A wake-up says only "events were committed somewhere"; the hub then
reads whose events are new (one query per wake-up for the whole process, however many streams
are open) and wakes those users' streams, each of which reads its own events from the table by
its own cursor (`events/streams.py`). So a lost wake-up costs latency and a spare one costs a
read, never an event, and a process that dies between COMMIT and delivery loses nothing.

Where wake-ups come from:
- this process's writer, after every COMMIT (`Hub.wake`, safe from any thread);
- PostgreSQL: `NOTIFY coffer_events`, sent inside every transaction that wrote events
  (events/service.py) and so delivered exactly when it commits; each hub LISTENs on a
  connection of its own, so an event written through one `coffer serve` reaches streams held
  on every other;
- Redis pub/sub instead of LISTEN when `COFFER_REDIS_URL` is set: each hub publishes after its
  writer's commits (from a small thread, coalesced) and subscribes;
- a slow poll (`poll_s`) as a safety net, whatever the transport.

Limits: connections per user and per process (`TooManyStreams`, a 429), one wake bit per
stream (nothing queues up behind a slow client), bounded scans and pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio.to_thread
import structlog

from coffer.db import Database
from coffer.errors import RateLimited
from coffer.events.service import NOTIFY_CHANNEL, latest_id, users_after

log = structlog.get_logger(__name__)

REDIS_CHANNEL = "coffer:events"
# A subscription keyed by this prefix is woken by anyone's events (the operators' console:
# its live tiles re-read their figures); no user id can start with it.
ANY_USER_PREFIX = "*"
POLL_S = 5.0
SCAN_LIMIT = 10_000
CONNECTIONS_PER_USER_MAX = 5
CONNECTIONS_MAX = 1_000
RETRY_AFTER_S = 5
RECONNECT_BACKOFF_MIN_S = 0.5
RECONNECT_BACKOFF_MAX_S = 30.0
CONNECT_TIMEOUT_S = 10
Transport = Literal["local", "postgres", "redis"]


class TooManyStreams(RateLimited):
    """The user (or this process) has as many live streams open as it may."""


@dataclass(eq=False)
class Subscription:
    """One open stream's place in the hub: a single wake bit, never a queue."""

    user_id: str
    loop: asyncio.AbstractEventLoop
    _woken: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    # Set by `stop` (the server is shutting down): the stream ends at its next wake-up.
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        self.notify()

    def notify(self) -> None:
        """Set the wake bit (from the hub's loop, or any thread)."""
        try:
            if asyncio.get_running_loop() is self.loop:
                self._woken.set()
                return
        except RuntimeError:
            pass
        with contextlib.suppress(RuntimeError):  # its loop is gone: so is the stream
            self.loop.call_soon_threadsafe(self._woken.set)

    async def wait(self, timeout_s: float) -> bool:
        """True once woken (and the bit is cleared again), False after `timeout_s` idle."""
        try:
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        except TimeoutError:
            return False
        self._woken.clear()
        return True


class Hub:
    """The process's wake-ups for its streams (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        *,
        redis_url: str | None = None,
        redis_channel: str = REDIS_CHANNEL,
        poll_s: float = POLL_S,
        connections_per_user_max: int = CONNECTIONS_PER_USER_MAX,
        connections_max: int = CONNECTIONS_MAX,
    ) -> None:
        assert poll_s > 0 and connections_per_user_max > 0 and connections_max > 0
        self.database = database
        self.transport: Transport = (
            "redis" if redis_url else "postgres" if database.dialect == "postgresql" else "local"
        )
        self._redis_url = redis_url
        self._redis_channel = redis_channel
        self._poll_s = poll_s
        self._per_user_max = min(connections_per_user_max, connections_max)
        self._total_max = connections_max
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._count = 0
        self._opened = 0  # streams ever opened: a scan tells whether any opened during it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_seen: int | None = None
        self._publisher = _Publisher(redis_url, redis_channel) if redis_url else None
        self._closed = False

    # -- streams ------------------------------------------------------------------------------

    def open(self, user_id: str) -> Subscription:
        """A place for one stream of `user_id`, on the running loop; `TooManyStreams` past the
        limits. Open it *before* the stream's first read, so no commit after it goes unseen."""
        loop = asyncio.get_running_loop()
        self._ensure_running(loop)
        with self._lock:
            mine = self._subscriptions.setdefault(user_id, set())
            if len(mine) >= self._per_user_max:
                raise TooManyStreams(
                    f"at most {self._per_user_max} live streams per user",
                    retry_after_s=RETRY_AFTER_S,
                    limit=self._per_user_max,
                )
            if self._count >= self._total_max:
                raise TooManyStreams(
                    "this server holds as many live streams as it may; retry shortly",
                    retry_after_s=RETRY_AFTER_S,
                )
            subscription = Subscription(user_id, loop)
            mine.add(subscription)
            self._count += 1
            self._opened += 1
        return subscription

    def release(self, subscription: Subscription) -> None:
        """Give the stream's place back (safe to call more than once)."""
        with self._lock:
            if subscription.closed:
                return
            subscription.closed = True
            mine = self._subscriptions.get(subscription.user_id)
            if mine is not None:
                mine.discard(subscription)
                if not mine:
                    del self._subscriptions[subscription.user_id]
            self._count -= 1
            assert self._count >= 0

    def open_streams(self, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is None:
                return self._count
            return len(self._subscriptions.get(user_id, ()))

    # -- wake-ups -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Events may have been committed (the writer calls this after each COMMIT): look."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wakeup.set)
        if self._publisher is not None:
            self._publisher.poke()

    def _ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            raise RuntimeError("the hub is closed")
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        # First stream in this loop (a server's loop; tests start several in turn).
        wakeup = asyncio.Event()
        self._loop, self._wakeup = loop, wakeup
        self._task = loop.create_task(self._run(wakeup), name="coffer-event-hub")

    async def _run(self, wakeup: asyncio.Event) -> None:
        listener = None
        if self.transport == "postgres":
            listener = asyncio.create_task(self._listen_postgres(wakeup))
        elif self.transport == "redis":
            listener = asyncio.create_task(self._listen_redis(wakeup))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._poll_s)
                wakeup.clear()
                try:
                    if await self._scan():
                        wakeup.set()  # more new rows than one scan takes: go on at once
                except Exception as exc:  # the database is away: the next turn tries again
                    log.warning("event_hub_scan_failed", error=type(exc).__name__)
                    await asyncio.sleep(RECONNECT_BACKOFF_MIN_S)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener

    async def _scan(self) -> bool:
        """Wake the streams of every user with events above the last id seen; True if there
        were more new rows than one scan reads."""
        database = self.database
        opened = self._opened
        after = self._last_seen
        if after is None or not self.open_streams():
            # Nobody to wake (or the first look): learn the newest id, so later scans stay
            # short; streams opened meanwhile are woken below and read for themselves.

            def newest() -> int:
                with database.read() as session:
                    return latest_id(session)

            self._last_seen = await anyio.to_thread.run_sync(newest)
            self._wake_opened_since(None if after is None else opened)
            return False

        def scan() -> tuple[set[str], int, bool]:
            with database.read() as session:
                return users_after(session, after=after, limit=SCAN_LIMIT)

        users, last, more = await anyio.to_thread.run_sync(scan)
        self._last_seen = last
        with self._lock:
            woken = [s for user in users for s in self._subscriptions.get(user, ())]
            if users:
                woken += [
                    s
                    for key, mine in self._subscriptions.items()
                    if key.startswith(ANY_USER_PREFIX)
                    for s in mine
                ]
        for subscription in woken:
            subscription.notify()
        self._wake_opened_since(opened)
        return more

    def _wake_opened_since(self, opened: int | None) -> None:
        """A stream opened while a scan read may have missed that scan's news: a spare wake-up
        costs it one read (all of them when `opened` is None)."""
        with self._lock:
            if opened is not None and self._opened == opened:
                return
            every = [s for mine in self._subscriptions.values() for s in mine]
        for subscription in every:
            subscription.notify()

    async def _listen_postgres(self, wakeup: asyncio.Event) -> None:
        import psycopg

        url = self.database.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)

        async def once() -> None:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            ) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                wakeup.set()  # whatever committed while nobody listened
                async for _ in conn.notifies():
                    wakeup.set()

        await _forever("postgres", once)

    async def _listen_redis(self, wakeup: asyncio.Event) -> None:
        from redis import asyncio as aioredis

        assert self._redis_url is not None
        url, channel = self._redis_url, self._redis_channel

        async def once() -> None:
            client = aioredis.Redis.from_url(
                url, socket_connect_timeout=CONNECT_TIMEOUT_S, health_check_interval=30
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    wakeup.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            wakeup.set()
            finally:
                await client.aclose()

        await _forever("redis", once)

    def close(self) -> None:
        """Stop listening and publishing (streams still open end with their server)."""
        self._closed = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._publisher is not None:
            self._publisher.close()


async def _forever(name: str, once: Callable[[], Any]) -> None:
    """Run a listener, reconnecting with bounded exponential backoff; after each reconnect the
    listener wakes the hub, which reads whatever it missed from the table."""
    backoff_s = RECONNECT_BACKOFF_MIN_S
    while True:
        try:
            await once()
            backoff_s = RECONNECT_BACKOFF_MIN_S
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("event_listener_lost", transport=name, error=type(exc).__name__)
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, RECONNECT_BACKOFF_MAX_S)


class _Publisher:
    """Publishes "events committed" to Redis from a thread of its own: the writer only sets a
    flag, so a slow Redis never slows a COMMIT, and many commits coalesce into one message."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._poked = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name="coffer-event-publisher", daemon=True
                    )
                    self._thread.start()
        self._poked.set()

    def _run(self) -> None:
        import redis

        client = redis.Redis.from_url(
            self._url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        backoff_s = RECONNECT_BACKOFF_MIN_S
        try:
            while True:
                self._poked.wait()
                if self._stopping:
                    return
                self._poked.clear()
                try:
                    client.publish(self._channel, b"")
                    backoff_s = RECONNECT_BACKOFF_MIN_S
                except redis.RedisError as exc:
                    # The other processes' polls still find the events; say so and go on.
                    log.warning("event_publish_failed", error=type(exc).__name__)
                    self._poked.set()
                    threading.Event().wait(backoff_s)
                    backoff_s = min(backoff_s * 2, RECONNECT_BACKOFF_MAX_S)
        finally:
            client.close()

    def close(self) -> None:
        self._stopping = True
        self._poked.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(CONNECT_TIMEOUT_S)


__all__ = ["REDIS_CHANNEL", "Hub", "Subscription", "TooManyStreams", "Transport"]
