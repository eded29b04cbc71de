"""A request whose database connection died under it answers 503 `unavailable` (retry), not a
500, and the next request is served on fresh connections."""

from __future__ import annotations

import psycopg
import pytest

from coffer.db import Database, engine
from tests.api.harness import assert_error, make_api


def test_a_connection_cut_under_a_read_is_a_503_then_served(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("a PostgreSQL backend is what can be cut under a pooled connection")
    monkeypatch.setattr(engine, "PING_AFTER_IDLE_S", 3_600.0)  # no ping: the query finds out
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as killer:  # a connection of no pool's
        row = killer.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        # Its own pools, so that only its connections are cut (the suite's stay whole).
        database = Database.connect(url)
        try:
            with make_api(database) as api:
                user = api.user("fan")
                assert api.client.get("/wallet/transactions", headers=user).status_code == 200
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_start > %s",
                    (row[0],),
                )
                cut = api.client.get("/wallet/transactions", headers=user)
                assert_error(cut, 503, "unavailable")
                assert cut.headers["Retry-After"] == "1"
                again = api.client.get("/wallet/transactions", headers=user)
                assert again.status_code == 200, again.text
        finally:
            database.dispose()
