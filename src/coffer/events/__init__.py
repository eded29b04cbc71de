"""The events outbox: every change a client cares about, in the same commit as the change."""

from coffer.events.live import ANY_USER_PREFIX, Hub, Subscription, TooManyStreams
from coffer.events.retention import horizon, purge
from coffer.events.service import (
    NOTIFY_CHANNEL,
    TYPES,
    Event,
    NewEvent,
    emit,
    latest_id,
    list_after,
)
from coffer.events.streams import IDLE, Reset, Start, begin, follow

__all__ = [
    "ANY_USER_PREFIX",
    "IDLE",
    "NOTIFY_CHANNEL",
    "TYPES",
    "Event",
    "Hub",
    "NewEvent",
    "Reset",
    "Start",
    "Subscription",
    "TooManyStreams",
    "begin",
    "emit",
    "follow",
    "horizon",
    "latest_id",
    "list_after",
    "purge",
]
