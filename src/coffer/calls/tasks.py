"""The calls' bounded jobs: mark lapsed calls expired, warn when authorised time runs out.

Each finds its candidates with a read, then hands the writer one unit per call; the unit checks
again under the ledger's write lock, so several processes running the same job at once never
expire or warn about a call twice.
"""

from __future__ import annotations

from coffer.calls import service
from coffer.db import Database, Writer
from coffer.kit.clock import Clock

BATCH_SIZE_MAX = 100


def expire_lapsed(
    database: Database, writer: Writer, clock: Clock, *, limit: int = BATCH_SIZE_MAX
) -> int:
    """Calls whose hold has lapsed become `expired` (the caller pays nothing); how many."""
    now = clock()
    with database.read() as session:
        due = service.lapsed(session, now=now, limit=limit)
    return sum(1 for call_id in due if writer.run(service.expire_work(call_id, now=now)))


def warn_nearly_used(
    database: Database, writer: Writer, clock: Clock, *, limit: int = BATCH_SIZE_MAX
) -> int:
    """`call.updated` with a warning for calls about to use up their authorised time."""
    now = clock()
    with database.read() as session:
        due = service.nearly_used(session, now=now, limit=limit)
    return sum(1 for call_id in due if writer.run(service.warn_work(call_id, now=now)))
