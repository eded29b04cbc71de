"""Background jobs in several processes at once (issue 9, item 3): two `coffer tasks run`
processes over the same due escrows and lapsed calls release and expire each exactly once,
and the claims of the provider-calling jobs never hand one row to two claimers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from coffer.calls.tables import calls
from coffer.db import Database, claims
from coffer.escrow.tables import escrows
from coffer.events.tables import events
from coffer.kit.clock import utc_now
from coffer.ledger.tables import holds, transfers
from coffer.webhooks.tables import inbox
from tests.api.harness import Api
from tests.calls.test_calls import start
from tests.escrow.test_escrow import funded
from tests.payments.helpers import assert_books_clean, paid_topup

pytestmark = pytest.mark.slow

ESCROWS = 12
CALLS = 6


def _tasks_run(url: str) -> subprocess.Popen[str]:
    coffer = str(Path(sys.executable).with_name("coffer"))
    env = {**os.environ, "COFFER_DATABASE_URL": url}
    return subprocess.Popen(
        [coffer, "tasks", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_release_and_expire_each_once(api: Api) -> None:
    soon = (utc_now() + timedelta(hours=1)).isoformat()
    for n in range(ESCROWS):
        funded(api, f"payer{n}", f"payee{n}", auto_release_at=soon)
    for n in range(CALLS):
        paid_topup(api, f"caller{n}")
        response = start(api, caller=f"caller{n}", host=f"host{n}")
        assert response.status_code == 201, response.text
    past = utc_now() - timedelta(minutes=5)
    with api.database.unit_of_work() as session:
        session.execute(update(escrows).values(auto_release_at=past))
        session.execute(update(calls).values(expires_at=past))
        session.execute(update(holds).where(holds.c.status == "pending").values(expires_at=past))
    api.coffer.close_writer()  # nothing of this process's in flight while the others run
    url = api.database.engine.url.render_as_string(hide_password=False)
    runs = [_tasks_run(url) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
    with api.database.read() as session:
        statuses = session.execute(select(escrows.c.status)).scalars().all()
        assert statuses == ["released"] * ESCROWS
        releases = session.execute(
            select(func.count()).select_from(transfers).where(transfers.c.type == "escrow_release")
        ).scalar_one()
        assert releases == ESCROWS  # one payee transfer each: never released twice
        assert session.execute(select(calls.c.status)).scalars().all() == ["expired"] * CALLS
        expired_events = session.execute(
            select(func.count())
            .select_from(events)
            .where(events.c.type == "call.updated", events.c.data.contains('"expired"'))
        ).scalar_one()
        assert expired_events == 2 * CALLS  # caller and host, once each
    assert_books_clean(api)


def test_claims_never_hand_a_row_to_two_claimers(db: Database) -> None:
    now = utc_now()
    with db.unit_of_work() as session:
        for n in range(40):
            session.execute(
                inbox.insert().values(
                    provider="mock", event_id=f"evt_{n}", provider_type="payment.succeeded",
                    kind="payment_succeeded", event="{}", raw_body=b"{}", status="received",
                    received_at=now, next_attempt_at=now - timedelta(seconds=1), attempts=0,
                )
            )  # fmt: skip
    due = (
        select(inbox.c.id)
        .where(inbox.c.status == "received", inbox.c.next_attempt_at <= now)
        .order_by(inbox.c.id)
        .limit(15)
    )
    got: list[list[int]] = []
    gate = threading.Barrier(4)

    def claimer() -> None:
        gate.wait()
        for _ in range(3):
            until = now + timedelta(minutes=2)
            got.append(
                claims.claim(db, due, table=inbox, lease=inbox.c.next_attempt_at, until=until)
            )

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [i for batch in got for i in batch]
    assert len(claimed) == len(set(claimed)) == 40  # each row once, every row in the end
