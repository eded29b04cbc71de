"""Idempotency-Key parsing, fingerprints and the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coffer import idempotency
from coffer.db import Database
from coffer.errors import IdempotencyConflict, ValidationFailed
from coffer.idempotency import tasks


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("abc", "abc"),
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("  padded  ", "padded"),
        ("k" * 255, "k" * 255),
        ("with space inside", "with space inside"),
    ],
)
def test_keys_parse(raw: str, key: str) -> None:
    assert idempotency.parse_key(raw) == key


@pytest.mark.parametrize(
    "raw", ["", "  ", '""', "k" * 256, "tab\there", 'qu"ote', "back\\slash", "é"]
)
def test_malformed_keys_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        idempotency.parse_key(raw)
    assert caught.value.details["fields"][0]["field"] == "header.Idempotency-Key"


def _fp(body: bytes, *, method: str = "POST", path: str = "/api/v1/x", query: str = "") -> bytes:
    return idempotency.fingerprint(method=method, path=path, query=query, body=body)


def test_fingerprint_ignores_json_layout_but_not_content() -> None:
    assert _fp(b'{"a": 1, "b": [1, 2]}') == _fp(b'{"b":[1,2],"a":1}')
    assert _fp(b'{"a": 1}') != _fp(b'{"a": 2}')
    assert _fp(b'{"a": 1}') != _fp(b'{"a": 1.0}')  # an int and a float are different requests
    assert _fp(b'{"a": 1}') != _fp(b'{"a": 1}', path="/api/v1/y")
    assert _fp(b'{"a": 1}') != _fp(b'{"a": 1}', method="PUT")
    assert _fp(b"") == _fp(b"")
    assert _fp(b"not json") != _fp(b"not  json")
    assert _fp(b"", query="b=2&a=1") == _fp(b"", query="a=1&b=2")
    assert _fp(b"", query="a=1") != _fp(b"", query="a=2")


def test_a_claim_is_replayed_only_for_the_same_request(db: Database) -> None:
    first = _fp(b'{"amount": 5}')
    with db.unit_of_work() as session:
        assert (
            idempotency.claim(
                session, scope="user:u1", key="k1", fingerprint=first, method="POST", path="/p"
            )
            is None
        )
        idempotency.record_response(
            session, scope="user:u1", key="k1", status_code=201,
            content_type="application/json", body=b'{"ok":true}',
        )  # fmt: skip
    with db.unit_of_work() as session:
        earlier = idempotency.claim(
            session, scope="user:u1", key="k1", fingerprint=first, method="POST", path="/p"
        )
        assert earlier is not None
        record = idempotency.replayable(earlier, fingerprint=first)
        assert (record.status_code, record.body) == (201, b'{"ok":true}')
        with pytest.raises(IdempotencyConflict):
            idempotency.replayable(earlier, fingerprint=_fp(b'{"amount": 6}'))
    # Another principal's key of the same name is its own.
    with db.unit_of_work() as session:
        assert (
            idempotency.claim(
                session, scope="user:u2", key="k1", fingerprint=first, method="POST", path="/p"
            )
            is None
        )
        idempotency.record_response(
            session, scope="user:u2", key="k1", status_code=200,
            content_type="application/json", body=b"{}",
        )  # fmt: skip


def test_purge_keeps_a_day_and_works_in_bounded_batches(db: Database) -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    with db.unit_of_work() as session:
        for index in range(7):
            created = now - timedelta(hours=72) if index < 5 else now - timedelta(hours=23)
            idempotency.claim(
                session, scope="user:u1", key=f"k{index}", fingerprint=_fp(b""),
                method="POST", path="/p", now=created,
            )  # fmt: skip
            idempotency.record_response(
                session, scope="user:u1", key=f"k{index}", status_code=200,
                content_type="application/json", body=b"{}",
            )  # fmt: skip
    with db.unit_of_work() as session:
        assert idempotency.purge_expired(session, now=now, batch_size_max=2) == 2
    assert tasks.purge_expired_keys(db, now=now, batch_size_max=2) == 3
    with db.read() as session:
        left = [idempotency.find(session, scope="user:u1", key=f"k{i}") for i in range(7)]
    assert [record is not None for record in left] == [False] * 5 + [True] * 2
    with db.unit_of_work() as session, pytest.raises(AssertionError):
        idempotency.purge_expired(session, now=now, retention_s=3_600)
