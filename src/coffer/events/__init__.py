"""The events outbox: every change a client cares about, in the same commit as the change."""

from coffer.events.service import TYPES, Event, NewEvent, emit, list_after

__all__ = ["TYPES", "Event", "NewEvent", "emit", "list_after"]
