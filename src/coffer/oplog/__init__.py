"""The operator audit trail: who did what to whom, when and why.

Any domain records its operator actions here in its own unit of work, so an entry exists exactly
when the action it describes committed. Listed at `GET /admin/audit-log`.
"""

from coffer.oplog.service import (
    ACTION_PATTERN,
    REASON_LENGTH_MAX,
    Entry,
    list_entries,
    record,
)

__all__ = ["ACTION_PATTERN", "REASON_LENGTH_MAX", "Entry", "list_entries", "record"]
