"""One user's live stream, read from the outbox: what both SSE and WebSocket send.

    subscription = hub.open(user_id)            # before the first read: no commit goes unseen
    start = await begin(hub, user_id, after=cursor)          # then answer the client
    async for item in follow(hub, subscription, start, idle_s=15):
        ...  # an Event, a Reset (then events after its id), or IDLE (time for a heartbeat)

The cursor is an event id. No cursor: live from now. A cursor at or above the retention
horizon resumes without loss (every event above it is still in the table, events/retention.py);
one below it, or above every id there is (another database's), gets one `Reset` whose id is the
new cursor: the client re-reads its balance and takes the events after that. Memory is bounded
by one page per stream; the stream waits on its single wake bit, re-reading the table after
`idle_s` without one in any case (the safety net for a wake-up that never came). A stopped
subscription (the server is shutting down) ends the stream at its next wake-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

import anyio.to_thread

from coffer.events.live import Hub, Subscription
from coffer.events.retention import horizon
from coffer.events.service import Event, latest_id, list_after

PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Reset:
    """The cursor is past retention (or unknown): re-read the state, then resume from `id`."""

    id: int
    reason: Literal["cursor_expired", "cursor_unknown"]


class _Idle:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IDLE"


IDLE: Final = _Idle()
Item = Event | Reset | _Idle


@dataclass(frozen=True, slots=True)
class Start:
    """Where a stream begins: its cursor, and the `Reset` it must send first, if any."""

    cursor: int
    reset: Reset | None = None


async def begin(hub: Hub, user_id: str, *, after: int | None) -> Start:
    """Resolve a client's cursor (see the module docstring). Call it after `hub.open` and
    before answering the client, so that "live from now" means from before it was answered."""
    database = hub.database

    def resolve() -> Start:
        with database.read() as session:
            if after is None:
                return Start(latest_id(session, user_id=user_id))
            floor = horizon(session)
            newest = max(latest_id(session), floor)
            if floor <= after <= newest:
                return Start(after)
            resume = max(floor, latest_id(session, user_id=user_id))
            reason: Literal["cursor_expired", "cursor_unknown"] = (
                "cursor_expired" if after < floor else "cursor_unknown"
            )
            return Start(resume, Reset(resume, reason))

    return await anyio.to_thread.run_sync(resolve)


async def follow(
    hub: Hub,
    subscription: Subscription,
    start: Start,
    *,
    idle_s: float,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[Item]:
    """The subscription's user's events after `start`, then live, for as long as it is read."""
    assert 0 < page_size <= 500 and idle_s > 0
    database = hub.database
    user_id = subscription.user_id
    if start.reset is not None:
        yield start.reset
    cursor = start.cursor
    while True:

        def page(cursor: int = cursor) -> tuple[list[Event], bool]:
            with database.read() as session:
                return list_after(session, user_id=user_id, after=cursor, limit=page_size)

        found, more = await anyio.to_thread.run_sync(page)
        for event in found:
            yield event
            cursor = event.id
        if subscription.stopped:
            return
        if more:
            continue
        if not await subscription.wait(idle_s):
            yield IDLE
        if subscription.stopped:
            return


__all__ = ["IDLE", "PAGE_SIZE", "Item", "Reset", "Start", "begin", "follow"]
