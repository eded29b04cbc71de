"""Remembered user tokens: a verified token is not re-checked until it expires, and nothing
that did not verify, or that changed by a byte, is ever answered from memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt
import pytest

from coffer.auth import tokens
from coffer.errors import Unauthenticated

SECRET = "s" * 64


class Clock:
    def __init__(self) -> None:
        self.now_s = time.time()

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens that went through the full signature-and-claims check."""
    seen: list[str] = []
    verify = tokens._verify

    def counting(secret: str, token: str) -> tokens._Verified:
        seen.append(token)
        return verify(secret, token)

    monkeypatch.setattr(tokens, "_verify", counting)
    return seen


def _token(user_id: str = "u1", ttl_s: int = 600) -> str:
    return tokens.mint_user_token(SECRET, user_id=user_id, ttl_s=ttl_s, now=datetime.now(UTC)).token


def test_a_verified_token_is_checked_once_until_it_expires(checks: list[str]) -> None:
    clock = Clock()
    verified = tokens.VerifiedTokens(SECRET, now_s=clock)
    token = _token(ttl_s=600)
    assert [verified.user_of(token) for _ in range(5)] == ["u1"] * 5
    assert checks == [token]
    clock.now_s += 600 + tokens.CLOCK_LEEWAY_S + 1  # past exp and its leeway, by this clock
    verified.user_of(token)  # checked again (PyJWT's clock still finds it valid)
    assert checks == [token, token]


def test_a_changed_byte_is_another_token_and_is_refused(checks: list[str]) -> None:
    verified = tokens.VerifiedTokens(SECRET)
    token = _token()
    verified.user_of(token)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{header}.{payload}.{flipped}", token + "x", " " + token):
        with pytest.raises(Unauthenticated):
            verified.user_of(forged)
    assert len(checks) == 4


def test_refused_tokens_are_not_remembered(checks: list[str]) -> None:
    verified = tokens.VerifiedTokens(SECRET)
    other_secret = tokens.mint_user_token(
        "o" * 64, user_id="u1", ttl_s=600, now=datetime.now(UTC)
    ).token
    expired = jwt.encode({"sub": "u1", "exp": int(time.time()) - 3_600}, SECRET, "HS256")
    early = jwt.encode(
        {"sub": "u1", "exp": int(time.time()) + 7_200, "nbf": int(time.time()) + 3_600},
        SECRET,
        "HS256",
    )
    for bad in (other_secret, expired, early):
        for _ in range(2):
            with pytest.raises(Unauthenticated):
                verified.user_of(bad)
    assert len(checks) == 6  # every attempt checked in full


def test_not_before_bounds_the_remembered_window() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "u1", "exp": now + 600, "nbf": now - 10}, SECRET, "HS256")
    clock = Clock()
    verified = tokens.VerifiedTokens(SECRET, now_s=clock)
    assert verified.user_of(token) == "u1"
    remembered = verified._verified[token]
    assert remembered.valid_from_s == now - 10 - tokens.CLOCK_LEEWAY_S
    assert remembered.valid_until_s == now + 600 + tokens.CLOCK_LEEWAY_S


def test_memory_is_bounded(checks: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS_MAX", 3)
    verified = tokens.VerifiedTokens(SECRET)
    for index in range(10):
        verified.user_of(_token(user_id=f"u{index}"))
        assert len(verified._verified) <= 3
    long_token = jwt.encode(
        {"sub": "u1", "exp": int(time.time()) + 600, "pad": "p" * 2_000}, SECRET, "HS256"
    )
    verified.user_of(long_token)
    verified.user_of(long_token)
    assert long_token not in verified._verified
    assert checks.count(long_token) == 2
