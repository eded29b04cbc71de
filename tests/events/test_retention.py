"""Retention of the outbox: the purge deletes a prefix of ids past the cut-off, never the newest
event, a bounded batch at a time, and the horizon it leaves is what streams compare cursors with."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from coffer import events
from coffer.events.tables import events as events_table
from coffer.events.tasks import purge_old_events
from coffer.kit.clock import utc_now
from tests.api.harness import Api
from tests.gifts.test_send_gift import gift, put_user
from tests.payments.helpers import paid_topup


def ids(api: Api) -> list[int]:
    with api.database.read() as session:
        return list(
            session.execute(select(events_table.c.id).order_by(events_table.c.id)).scalars()
        )


def age(api: Api, event_ids: list[int], days: int) -> None:
    with api.database.unit_of_work() as session:
        session.execute(
            update(events_table)
            .where(events_table.c.id.in_(event_ids))
            .values(created_at=utc_now() - timedelta(days=days))
        )


def make_events(api: Api) -> list[int]:
    put_user(api, "host")
    paid_topup(api, "fan")
    for diamonds in (1, 2, 3):
        assert gift(api, "fan", receiver_id="host", diamonds=diamonds).status_code == 201
    made = ids(api)
    assert len(made) >= 8
    return made


def test_only_an_old_prefix_is_purged_and_the_horizon_follows(api: Api) -> None:
    made = make_events(api)
    age(api, made[:3], days=40)
    age(api, made[4:6], days=40)  # old, but behind a young one: kept (a prefix only)
    assert purge_old_events(api.database, utc_now, retention_days=30) == 3
    assert ids(api) == made[3:]
    with api.database.read() as session:
        assert events.horizon(session) == made[2]
    # Nothing more to do: the horizon stays where it is.
    assert purge_old_events(api.database, utc_now, retention_days=30) == 0
    with api.database.read() as session:
        assert events.horizon(session) == made[2]


def test_the_newest_event_is_always_kept_and_ids_keep_growing(api: Api) -> None:
    made = make_events(api)
    age(api, made, days=40)
    assert purge_old_events(api.database, utc_now, retention_days=30) == len(made) - 1
    assert ids(api) == [made[-1]]
    assert gift(api, "fan", receiver_id="host", diamonds=1).status_code == 201
    assert min(ids(api)[1:]) > made[-1]  # SQLite would reuse purged ids of an emptied table


def test_a_purge_run_is_bounded(api: Api) -> None:
    made = make_events(api)
    age(api, made, days=40)
    deleted = purge_old_events(
        api.database, utc_now, retention_days=30, batch_size_max=2, rounds_max=2
    )
    assert deleted == 4 and ids(api) == made[4:]
    with api.database.read() as session:
        assert events.horizon(session) == made[3]


def test_events_an_outbound_endpoint_still_needs_are_kept(api: Api) -> None:
    from coffer.outbound import service as outbound
    from coffer.outbound.tables import endpoints

    made = make_events(api)
    response = api.client.post(
        "/admin/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["*"], "reason": "test"},
        headers=api.admin(),
    )
    assert response.status_code == 201, response.text
    with api.database.unit_of_work() as session:  # the endpoint has been given made[:3] only
        session.execute(update(endpoints).values(last_event_id=made[2]))
    age(api, made, days=40)
    purged = purge_old_events(
        api.database, utc_now, retention_days=30, keep_from=outbound.oldest_event_needed
    )
    assert purged == 3 and ids(api) == made[3:]
