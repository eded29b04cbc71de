"""Rate limits per principal, and for failed authentication per client address and per
presented credential.

Failures never lock out a credential that verifies: every presented token is verified (a user
token is an HMAC in memory, an API key one indexed read, the same as any request's), and the
failure budgets decide only how a failing attempt is answered. Within them it is a 401; past
the address's budget, or the credential's, it is a 429 with Retry-After. So 60 bad tokens from a
shared address cannot take the admin key or a valid user's token away, while a guesser there
is slowed to the budget's pace of answers it can use. Guessing itself is hopeless whatever the
pace (an API key holds 256 random bits, a user token's secret at least 32 bytes); what the
budgets bound is the work and the noise a guesser costs. The credential budget catches one bad
credential replayed from many addresses (a leaked, revoked or expired token in a retry loop).

Counters live in memory (one process) or, when `COFFER_REDIS_URL` is set, in Redis, so processes
behind one load balancer share them. The strategy is a sliding-window counter: two counters per
key, no burst of twice the limit at a window's edge, and constant memory whatever the limit.
Credentials are counted by a digest, never by the token itself, and only while their address is
within its budget, so a flood of distinct guesses adds no keys past an address's budget.

If Redis is unreachable the limiter fails open (the request goes through, a warning is logged):
the limits protect capacity, not money, and an outage of an optional cache must not take the
payments API down with it. Its client has short timeouts so an outage costs milliseconds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

import structlog
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from coffer.auth.principal import Principal
from coffer.errors import RateLimited

log = structlog.get_logger(__name__)

REDIS_TIMEOUT_S = 0.25
RETRY_AFTER_S_MIN = 1
NAMESPACE_DEFAULT = "coffer"
CREDENTIAL_DIGEST_HEX_LENGTH = 32  # 128 bits: tells credentials apart, reveals nothing of them


class SweptMemoryStorage(MemoryStorage):
    """`limits`' in-memory storage without a thread per hit.

    Upstream starts a `threading.Timer` (a new OS thread) to drop expired keys whenever the last
    one has finished, which under steady traffic is nearly every request: measured with
    cProfile, those thread starts were a third of an authenticated GET's CPU. Reads already
    treat an expired key as absent (`get` checks its expiry), so the sweep only frees memory:
    here it runs inline, at most once every `SWEEP_INTERVAL_S`.
    """

    SWEEP_INTERVAL_S = 1.0

    def __init__(self) -> None:
        self._next_sweep_s = 0.0
        super().__init__()
        self.timer.cancel()  # the one upstream starts in __init__; none follow it

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - the name-mangled hook
        now_s = time.monotonic()
        if now_s >= self._next_sweep_s:
            self._next_sweep_s = now_s + self.SWEEP_INTERVAL_S
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


def credential_digest(token: str) -> str:
    """A failing credential's name in the counters (the token itself is never stored)."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:CREDENTIAL_DIGEST_HEX_LENGTH]


def parse_limits(text: str) -> list[RateLimitItem]:
    """`"600/minute"` or `"20/second;600/minute"` (the `limits` notation); ValueError if bad."""
    try:
        items = parse_many(text)
    except ValueError as exc:
        raise ValueError(f"not a rate limit: {text!r} (write e.g. '600/minute')") from exc
    if not items:
        raise ValueError(f"not a rate limit: {text!r} (write e.g. '600/minute')")
    return list(items)


class RateLimiter:
    """Counts requests per principal, and authentication failures per client address and per
    credential."""

    def __init__(
        self,
        *,
        per_principal: str,
        auth_failures: str,
        storage_url: str | None = None,
        namespace: str = NAMESPACE_DEFAULT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._per_principal = parse_limits(per_principal)
        self._auth_failures = parse_limits(auth_failures)
        self._namespace = namespace
        self._clock = clock
        # Only synchronous storages are asked for here ("memory://", "redis://").
        self._storage: Storage
        if storage_url:
            self._storage = storage_from_string(  # type: ignore[assignment]
                storage_url,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
        else:
            self._storage = SweptMemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self.backend = "redis" if storage_url else "memory"

    def hit_principal(self, principal: Principal) -> None:
        """Count one request by `principal`; `RateLimited` when it is over its limit."""
        ids = self._ids("principal", principal.kind, principal.id)
        for item in self._per_principal:
            if not self._allowed(item, ids, consume=True):
                raise self._refusal(item, ids)

    def record_failure(self, *, address: str, token: str) -> RateLimited | None:
        """Count one failed authentication from `address` presenting `token`.

        Returns the refusal to answer instead of a 401 when the address or the credential is
        past its budget (None while both are within it). Only failures are ever refused: a
        token that verifies never reaches here.
        """
        address_ids = self._ids("auth-failures", "address", address)
        for item in self._auth_failures:
            if not self._allowed(item, address_ids, consume=True):
                # Past the address's budget its guesses are not counted per credential: a
                # flood of distinct tokens adds no keys.
                return self._refusal(item, address_ids)
        credential_ids = self._ids("auth-failures", "credential", credential_digest(token))
        for item in self._auth_failures:
            if not self._allowed(item, credential_ids, consume=True):
                return self._refusal(item, credential_ids)
        return None

    def _ids(self, *identifiers: str) -> tuple[str, ...]:
        return (self._namespace, *identifiers)

    def _allowed(self, item: RateLimitItem, ids: tuple[str, ...], *, consume: bool) -> bool:
        try:
            if consume:
                return self._limiter.hit(item, *ids)
            return self._limiter.test(item, *ids)
        except StorageError as exc:
            log.warning("rate_limit_storage_unavailable", backend=self.backend, error=str(exc))
            return True

    def _refusal(self, item: RateLimitItem, ids: tuple[str, ...]) -> RateLimited:
        retry_after_s = item.get_expiry()
        try:
            stats = self._limiter.get_window_stats(item, *ids)
            retry_after_s = math.ceil(stats.reset_time - self._clock())
        except StorageError:
            pass
        retry_after_s = max(RETRY_AFTER_S_MIN, min(retry_after_s, item.get_expiry()))
        return RateLimited(
            f"too many requests: the limit is {item.amount} per {_window(item)}",
            retry_after_s=retry_after_s,
        )

    def close(self) -> None:
        """Let go of the Redis connection pool (the in-memory storage holds nothing to free)."""
        client = getattr(self._storage, "storage", None) if self.backend == "redis" else None
        close = getattr(client, "close", None)
        if callable(close):
            close()


def _window(item: RateLimitItem) -> str:
    granularity = item.GRANULARITY.name
    return granularity if item.multiples == 1 else f"{item.multiples} {granularity}s"
