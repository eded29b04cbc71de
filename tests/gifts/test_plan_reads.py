"""A gift's plan reads its parties two ways: in one session (`_read_parties`, SQLite's path, one
hop to the thread pool) and statement by statement over `fetch_async` (`_fetch_parties`,
PostgreSQL's, each a round trip on the event loop). Both find the same, and refuse the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coffer.errors import AccountFrozen, CofferError, NotFound
from coffer.gifts import service
from tests.api.harness import Api
from tests.gifts.test_send_gift import gift, put_user
from tests.payments.helpers import paid_topup


def both(api: Api, sender_id: str, receiver_id: str) -> tuple[Any, Any]:
    """(what the session read found, what the fetches found): a result or the error raised."""
    database = api.database

    def outcome_of_read() -> Any:
        try:
            with database.read() as session:
                return service._read_parties(session, sender_id=sender_id, receiver_id=receiver_id)
        except CofferError as error:
            return type(error), str(error)

    async def fetched() -> Any:
        try:
            return await service._fetch_parties(
                database, sender_id=sender_id, receiver_id=receiver_id
            )
        except CofferError as error:
            return type(error), str(error)
        finally:
            await database.async_reads.aclose()

    return outcome_of_read(), asyncio.run(fetched())


def test_the_session_and_the_fetches_find_the_same_parties(api: Api) -> None:
    response = api.client.put(
        "/agencies/ag1", json={"name": "Agency", "commission_bps": 1000}, headers=api.admin()
    )
    assert response.status_code == 200, response.text
    put_user(api, "host", agency_id="ag1")
    put_user(api, "solo")
    paid_topup(api, "fan")
    put_user(api, "frozen")
    frozen = api.client.post(
        "/admin/users/frozen/freeze", json={"reason": "chargebacks"}, headers=api.admin()
    )
    assert frozen.status_code == 200, frozen.text

    cases = {
        ("fan", "host"): None,  # with an agency; its earnings account not opened yet
        ("fan", "solo"): None,  # without one
        ("nobody", "host"): NotFound,
        ("fan", "nobody"): NotFound,
        ("frozen", "host"): AccountFrozen,
    }
    for (sender, receiver), refused in cases.items():
        read, fetched = both(api, sender, receiver)
        assert read == fetched, (sender, receiver)
        if refused is None:
            assert isinstance(read, service._Parties)
            assert read.accounts is None  # the hosts have no earnings account yet
        else:
            assert read[0] is refused, read

    # Once the first gifts opened every account, both find them all, with the same ids.
    for receiver in ("host", "solo"):
        assert gift(api, "fan", receiver_id=receiver, diamonds=10).status_code == 201
        read, fetched = both(api, "fan", receiver)
        assert read == fetched and read.accounts is not None
    read, _ = both(api, "fan", "host")
    assert read.agency is not None and read.agency.commission_bps == 1000
    assert read.accounts.agency is not None


@pytest.mark.parametrize("ids", [[], ["a"] * 9])
def test_the_fetch_path_takes_a_few_ids_only(ids: list[str]) -> None:
    from coffer.wallets import repository

    assert repository.users_query(ids) is None
