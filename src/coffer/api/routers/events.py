"""The caller's events, pulled from the outbox (the streams read the same table)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coffer import events
from coffer.api import errors
from coffer.api.deps import DatabaseDep, UserPrincipal
from coffer.api.pagination import Limit

router = APIRouter(tags=["events"], responses=errors.responses(*errors.AUTHENTICATED))


class EventOut(BaseModel):
    id: int
    sequence: int
    type: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: events.Event) -> EventOut:
        return cls(
            id=event.id,
            sequence=event.sequence,
            type=event.type,
            created_at=event.created_at,
            data=event.data,
        )


class EventPageOut(BaseModel):
    data: list[EventOut]
    has_more: bool
    next_cursor: str | None


@router.get("/events", summary="The caller's events after an id, oldest first")
def list_events(
    principal: UserPrincipal,
    database: DatabaseDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="an event id; 0 for the first")
    ] = 0,
    limit: Limit = 50,
) -> EventPageOut:
    assert principal.user_id is not None
    with database.read() as session:
        found, has_more = events.list_after(
            session, user_id=principal.user_id, after=after, limit=limit
        )
    return EventPageOut(
        data=[
            EventOut(
                id=e.id, sequence=e.sequence, type=e.type, created_at=e.created_at, data=e.data
            )
            for e in found
        ],
        has_more=has_more,
        next_cursor=str(found[-1].id) if has_more else None,
    )
