"""Escrow's bounded job: release what is due.

Each release is a unit of work whose `before` re-checks, under the escrow's row lock and the
ledger's write lock, that the escrow is still held and due: two processes running the job at
once plan the same escrow, one releases it and the other is refused there, so nothing is
released twice. No claim row is written first: the move is decided where the writer already
serialises, and a claim would cost a write per escrow for nothing.
"""

from __future__ import annotations

import structlog

from coffer.db import Database, Writer
from coffer.errors import CofferError
from coffer.escrow import records, service
from coffer.kit.clock import Clock

BATCH_SIZE_MAX = 100

log = structlog.get_logger(__name__)


def release_due(
    database: Database, writer: Writer, *, clock: Clock, batch_size: int = BATCH_SIZE_MAX
) -> int:
    """Release up to `batch_size` escrows whose `auto_release_at` has passed; returns how many."""
    assert 0 < batch_size <= BATCH_SIZE_MAX
    now = clock()
    with database.read() as session:
        due = records.due_for_release(session, now=now, limit=batch_size)
    released = 0
    for escrow_id in due:
        try:
            work = service.plan_release(
                database,
                escrow_id=escrow_id,
                role=records.SYSTEM,
                amount=None,
                move="auto_release",
                now=now,
            )
            writer.run(work)
        except CofferError as exc:  # disputed, released or refunded meanwhile: not ours now
            log.info("escrow_auto_release_skipped", escrow_id=escrow_id, code=exc.code)
            continue
        released += 1
    return released
