"""Several `coffer serve` processes against one database stay correct (issue 8, item 1): many
concurrent gifts to one host and top-ups through two servers, then the books verify clean and
every acknowledged request is in them, once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from coffer import auth
from coffer.audit.verify import verify_books
from coffer.db import Database
from coffer.gifts.tables import gifts
from coffer.payments.tables import payment_orders
from tests.api.harness import TEST_JWT_SECRET
from tests.support.servers import coffer_serve

pytestmark = pytest.mark.slow

SENDERS = 8
GIFTS_PER_SENDER = 12
TOPUPS_PER_SENDER = 3


def test_two_servers_share_one_ledger(db: Database, tmp_path: Path) -> None:
    url = db.engine.url.render_as_string(hide_password=False)
    minter = auth.Authenticator(db, jwt_secret=TEST_JWT_SECRET)

    def headers(user_id: str, key: str | None = None) -> dict[str, str]:
        token = minter.mint_user_token(user_id=user_id).token
        extra = {"Idempotency-Key": key} if key else {}
        return {"Authorization": f"Bearer {token}", **extra}

    with (
        coffer_serve(url, jwt_secret=TEST_JWT_SECRET, log_dir=tmp_path) as one,
        coffer_serve(url, jwt_secret=TEST_JWT_SECRET, log_dir=tmp_path) as two,
    ):
        servers = [one.base_url, two.base_url]
        with db.unit_of_work() as session:
            service_key = auth.create_api_key(session, role="service").key
        with httpx.Client(timeout=30) as client:
            response = client.put(
                f"{one.base_url}/users/host",
                json={"display_name": "Host"},
                headers={"Authorization": f"Bearer {service_key}"},
            )
            assert response.status_code == 200, response.text

        acknowledged_gifts: list[dict[str, Any]] = []
        acknowledged_orders: set[str] = set()
        lock = threading.Lock()
        start = threading.Barrier(SENDERS)

        def sender(index: int) -> None:
            user = f"fan{index}"
            with httpx.Client(timeout=30) as client:
                start.wait()
                for round_ in range(TOPUPS_PER_SENDER):
                    base = servers[(index + round_) % 2]
                    made = client.post(
                        f"{base}/wallet/topup",
                        json={"diamonds": 100},
                        headers=headers(user, f"top-{round_}"),
                    )
                    assert made.status_code == 201, made.text
                    order = made.json()["order"]
                    other = servers[(index + round_ + 1) % 2]
                    paid = client.post(
                        f"{other}/wallet/verify",
                        json={"order_id": order["id"], **order["checkout"]},
                        headers=headers(user),
                    )
                    assert paid.status_code == 200, paid.text
                    with lock:
                        acknowledged_orders.add(order["id"])
                for round_ in range(GIFTS_PER_SENDER):
                    base = servers[round_ % 2]
                    key = f"gift-{round_}"
                    # Every gift is sent twice, once to each server, with one key: one moves.
                    answers = [
                        client.post(
                            f"{url_}/wallet/send-gift",
                            json={"receiver_id": "host", "diamonds": 20},
                            headers=headers(user, key),
                        )
                        for url_ in (base, servers[(round_ + 1) % 2])
                    ]
                    statuses = {a.status_code for a in answers}
                    assert statuses <= {201, 402}, [a.text for a in answers]
                    if 201 in statuses:
                        assert answers[0].content == answers[1].content
                        with lock:
                            acknowledged_gifts.append(answers[0].json()["gift"])

        with ThreadPoolExecutor(SENDERS) as pool:
            for future in [pool.submit(sender, i) for i in range(SENDERS)]:
                future.result()

    # 300 diamonds each buy 15 gifts of 20; 12 were asked for: every one must have gone through.
    assert len(acknowledged_gifts) == SENDERS * GIFTS_PER_SENDER
    with db.read() as session:
        gift_rows = session.execute(select(gifts.c.id, gifts.c.host_amount)).all()
        orders = session.execute(
            select(func.count()).where(payment_orders.c.status == "succeeded")
        ).scalar_one()
    assert {r.id for r in gift_rows} == {g["id"] for g in acknowledged_gifts}
    assert orders == len(acknowledged_orders) == SENDERS * TOPUPS_PER_SENDER
    report = verify_books(db)
    assert report.ok, report.as_dict()
