"""Who is calling and what they may do: API keys, user tokens, principals and rate limits.

API keys (`ck_...`, role admin or service) are stored only as a SHA-256 hash (`keys.py` says why).
User tokens are HS256 JWTs whose `sub` is the user id; the secret is `COFFER_JWT_SECRET`, or one
generated on the first start and kept in the `auth_settings` table when that is unset, so
tokens survive restarts and every process sharing the database accepts them.
"""

from coffer.auth.authenticator import Authenticator
from coffer.auth.principal import (
    ROLES,
    USER_ID_LENGTH_MAX,
    USER_ID_PATTERN,
    Principal,
    PrincipalKind,
    Role,
    ensure_acts_for,
    is_user_id,
)
from coffer.auth.ratelimit import RateLimiter, parse_limits
from coffer.auth.repository import ApiKey
from coffer.auth.service import (
    NewApiKey,
    create_api_key,
    is_active_admin_key,
    issue_first_admin_key,
    jwt_secret,
    list_api_keys,
    mock_webhook_secret,
    revoke_api_key,
)
from coffer.auth.tokens import (
    TOKEN_TTL_S_DEFAULT,
    TOKEN_TTL_S_MAX,
    TOKEN_TTL_S_MIN,
    IssuedToken,
    mint_user_token,
)

__all__ = [
    "ROLES",
    "TOKEN_TTL_S_DEFAULT",
    "TOKEN_TTL_S_MAX",
    "TOKEN_TTL_S_MIN",
    "USER_ID_LENGTH_MAX",
    "USER_ID_PATTERN",
    "ApiKey",
    "Authenticator",
    "IssuedToken",
    "NewApiKey",
    "Principal",
    "PrincipalKind",
    "RateLimiter",
    "Role",
    "create_api_key",
    "ensure_acts_for",
    "is_active_admin_key",
    "is_user_id",
    "issue_first_admin_key",
    "jwt_secret",
    "list_api_keys",
    "mint_user_token",
    "mock_webhook_secret",
    "parse_limits",
    "revoke_api_key",
]
