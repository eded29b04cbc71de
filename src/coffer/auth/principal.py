"""Who is calling: an admin key, a service key, or a user (by token)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from coffer.errors import Forbidden

PrincipalKind = Literal["admin", "service", "user"]
Role = Literal["admin", "service"]
ROLES: tuple[Role, ...] = ("admin", "service")

# A user id is the host app's own id for its user: 1-64 characters of [A-Za-z0-9_.:-]. It is
# defined here, below wallets, because a token's `sub` must be one before anything else runs.
USER_ID_LENGTH_MAX = 64
USER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_USER_ID = re.compile(USER_ID_PATTERN)


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    `id` is the API key's id for keys and the user id for users; `user_id` is set only for users.
    """

    kind: PrincipalKind
    id: str
    user_id: str | None = None

    def __post_init__(self) -> None:
        assert (self.kind == "user") == (self.user_id is not None)
        assert self.kind != "user" or self.user_id == self.id

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def is_service(self) -> bool:
        """A service key, or an admin key (which may do everything a service key may)."""
        return self.kind in ("admin", "service")

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def scope(self) -> str:
        """A stable string naming this principal, e.g. for idempotency records and rate limits."""
        return f"{self.kind}:{self.id}"


def ensure_acts_for(principal: Principal, user_id: str) -> None:
    """A user token acts on its own user only; service and admin keys act for any user."""
    if principal.is_user and principal.user_id != user_id:
        raise Forbidden("this token may act only on its own user")


__all__ = [
    "ROLES",
    "USER_ID_LENGTH_MAX",
    "USER_ID_PATTERN",
    "Principal",
    "PrincipalKind",
    "Role",
    "ensure_acts_for",
    "is_user_id",
]
